-- Room secrets (rooms.md §4.2), PostgreSQL: BYTEA, and a change bumps the realm
-- change counter (and NOTIFYs) like any realm change, so every node reloads.
CREATE TABLE room_secret (
    realm_id BIGINT NOT NULL,
    kid BIGINT NOT NULL,
    secret BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    valid_until BIGINT,
    PRIMARY KEY (realm_id, kid)
);

CREATE TRIGGER room_secret_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON room_secret FOR EACH STATEMENT EXECUTE FUNCTION realm_changed();
