-- Bytes each kv namespace holds (keys and values, expired entries until
-- they are swept), kept by triggers so a write can check its plugin's
-- `[limits] kv_mb` in the same statement.
CREATE TABLE gatehouse_kv_usage (
    namespace TEXT    NOT NULL PRIMARY KEY,
    bytes     INTEGER NOT NULL
);
INSERT INTO gatehouse_kv_usage (namespace, bytes)
SELECT namespace, sum(length(CAST(key AS BLOB)) + length(CAST(value AS BLOB)))
FROM gatehouse_kv GROUP BY namespace;

CREATE TRIGGER gatehouse_kv_usage_insert AFTER INSERT ON gatehouse_kv BEGIN
    INSERT INTO gatehouse_kv_usage (namespace, bytes)
    VALUES (NEW.namespace, length(CAST(NEW.key AS BLOB)) + length(CAST(NEW.value AS BLOB)))
    ON CONFLICT (namespace) DO UPDATE SET bytes = bytes + excluded.bytes;
END;
CREATE TRIGGER gatehouse_kv_usage_update AFTER UPDATE OF value ON gatehouse_kv BEGIN
    UPDATE gatehouse_kv_usage
    SET bytes = bytes + length(CAST(NEW.value AS BLOB)) - length(CAST(OLD.value AS BLOB))
    WHERE namespace = NEW.namespace;
END;
CREATE TRIGGER gatehouse_kv_usage_delete AFTER DELETE ON gatehouse_kv BEGIN
    UPDATE gatehouse_kv_usage
    SET bytes = bytes - length(CAST(OLD.key AS BLOB)) - length(CAST(OLD.value AS BLOB))
    WHERE namespace = OLD.namespace;
END;
