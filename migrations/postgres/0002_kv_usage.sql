-- Bytes each kv namespace holds (keys and values, expired entries until
-- they are swept), kept by triggers so a write can check its plugin's
-- `[limits] kv_mb` in the same statement.
CREATE TABLE gatehouse_kv_usage (
    namespace TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    bytes     BIGINT NOT NULL
);
INSERT INTO gatehouse_kv_usage (namespace, bytes)
SELECT namespace, sum(octet_length(key) + octet_length(value))
FROM gatehouse_kv GROUP BY namespace;

-- A write (one row) locks its entry, then its namespace's usage.
CREATE FUNCTION gatehouse_kv_usage_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO gatehouse_kv_usage (namespace, bytes)
        VALUES (NEW.namespace, octet_length(NEW.key) + octet_length(NEW.value))
        ON CONFLICT (namespace) DO UPDATE SET bytes = gatehouse_kv_usage.bytes + excluded.bytes;
    ELSE
        UPDATE gatehouse_kv_usage
        SET bytes = bytes + octet_length(NEW.value) - octet_length(OLD.value)
        WHERE namespace = NEW.namespace;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER gatehouse_kv_usage_write AFTER INSERT OR UPDATE ON gatehouse_kv
    FOR EACH ROW EXECUTE FUNCTION gatehouse_kv_usage_write();

-- A delete (a sweep may take many rows) counts once all its rows are
-- locked, so it never holds a usage row while it waits for an entry a
-- write holds: the two cannot deadlock.
CREATE FUNCTION gatehouse_kv_usage_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE gatehouse_kv_usage AS usage SET bytes = usage.bytes - gone.bytes
    FROM (SELECT namespace, sum(octet_length(key) + octet_length(value)) AS bytes
          FROM gone_rows GROUP BY namespace) AS gone
    WHERE usage.namespace = gone.namespace;
    RETURN NULL;
END
$$;
CREATE TRIGGER gatehouse_kv_usage_delete AFTER DELETE ON gatehouse_kv
    REFERENCING OLD TABLE AS gone_rows
    FOR EACH STATEMENT EXECUTE FUNCTION gatehouse_kv_usage_delete();
