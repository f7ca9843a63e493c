-- The kv store: one namespace per plugin; expires_at in Unix milliseconds.
-- Keys compare bytewise (COLLATE "C") so prefix listing is a range scan.
CREATE TABLE gatehouse_kv (
    namespace  TEXT COLLATE "C" NOT NULL,
    key        TEXT COLLATE "C" NOT NULL,
    value      BYTEA  NOT NULL,
    expires_at BIGINT,
    PRIMARY KEY (namespace, key)
);
CREATE INDEX gatehouse_kv_expires ON gatehouse_kv (expires_at) WHERE expires_at IS NOT NULL;
