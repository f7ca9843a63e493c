-- The kv store: one namespace per plugin; expires_at in Unix milliseconds.
CREATE TABLE gatehouse_kv (
    namespace  TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      BLOB    NOT NULL,
    expires_at INTEGER,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX gatehouse_kv_expires ON gatehouse_kv (expires_at) WHERE expires_at IS NOT NULL;
