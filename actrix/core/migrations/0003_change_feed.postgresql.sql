-- PostgreSQL: every node (and the CLI on any host) changes realms through the
-- shared schema, so each change bumps a counter (what a daemon polls once a
-- second, as it polls data_version in SQLite) and NOTIFYs the channel named
-- after this schema, which every daemon LISTENs on to reload at once.
CREATE TABLE realm_changes (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO realm_changes (id, version) VALUES (1, 0);

-- SET search_path FROM CURRENT pins this schema (the migration's search_path),
-- so a write through a schema-qualified name from any session finds the counter.
CREATE FUNCTION realm_changed() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    UPDATE realm_changes SET version = version + 1 WHERE id = 1;
    PERFORM pg_notify(TG_TABLE_SCHEMA, '');
    RETURN NULL;
END
$$;

CREATE TRIGGER realm_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON realm FOR EACH STATEMENT EXECUTE FUNCTION realm_changed();
CREATE TRIGGER realmconfig_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON realmconfig FOR EACH STATEMENT EXECUTE FUNCTION realm_changed();
CREATE TRIGGER actoracl_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON actoracl FOR EACH STATEMENT EXECUTE FUNCTION realm_changed();
