-- Each entry also counts 64 bytes toward its namespace's `kv_mb`, for the
-- row and its index entry: empty keys and values are not free, so a
-- plugin cannot fill the host's disk with millions of them.
DROP TRIGGER gatehouse_kv_usage_insert;
DROP TRIGGER gatehouse_kv_usage_delete;
CREATE TRIGGER gatehouse_kv_usage_insert AFTER INSERT ON gatehouse_kv BEGIN
    INSERT INTO gatehouse_kv_usage (namespace, bytes)
    VALUES (NEW.namespace, length(CAST(NEW.key AS BLOB)) + length(CAST(NEW.value AS BLOB)) + 64)
    ON CONFLICT (namespace) DO UPDATE SET bytes = bytes + excluded.bytes;
END;
CREATE TRIGGER gatehouse_kv_usage_delete AFTER DELETE ON gatehouse_kv BEGIN
    UPDATE gatehouse_kv_usage
    SET bytes = bytes - length(CAST(OLD.key AS BLOB)) - length(CAST(OLD.value AS BLOB)) - 64
    WHERE namespace = OLD.namespace;
END;
UPDATE gatehouse_kv_usage
SET bytes = bytes + 64 * (SELECT count(*) FROM gatehouse_kv k WHERE k.namespace = gatehouse_kv_usage.namespace);
