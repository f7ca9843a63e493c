-- Each entry also counts 64 bytes toward its namespace's `kv_mb`, for the
-- row and its index entry: empty keys and values are not free, so a
-- plugin cannot fill the database with millions of them.
CREATE OR REPLACE FUNCTION gatehouse_kv_usage_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        INSERT INTO gatehouse_kv_usage (namespace, bytes)
        VALUES (NEW.namespace, octet_length(NEW.key) + octet_length(NEW.value) + 64)
        ON CONFLICT (namespace) DO UPDATE SET bytes = gatehouse_kv_usage.bytes + excluded.bytes;
    ELSE
        UPDATE gatehouse_kv_usage
        SET bytes = bytes + octet_length(NEW.value) - octet_length(OLD.value)
        WHERE namespace = NEW.namespace;
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION gatehouse_kv_usage_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE gatehouse_kv_usage AS usage SET bytes = usage.bytes - gone.bytes
    FROM (SELECT namespace, sum(octet_length(key) + octet_length(value) + 64) AS bytes
          FROM gone_rows GROUP BY namespace) AS gone
    WHERE usage.namespace = gone.namespace;
    RETURN NULL;
END
$$;

UPDATE gatehouse_kv_usage AS usage
SET bytes = usage.bytes + 64 * (SELECT count(*) FROM gatehouse_kv k WHERE k.namespace = usage.namespace);
