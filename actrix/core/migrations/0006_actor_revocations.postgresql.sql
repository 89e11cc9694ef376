-- Actor revocations (issue 14), PostgreSQL: as the SQLite step, and a change
-- bumps the realm change counter and NOTIFYs like any realm change, so every
-- node reloads its revocation list at once.
CREATE TABLE actor_revocation (
    realm_id BIGINT NOT NULL,
    serial TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    revoked_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (realm_id, serial)
);

CREATE INDEX actor_revocation_expiry ON actor_revocation (expires_at);

CREATE TRIGGER actor_revocation_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE
    ON actor_revocation FOR EACH STATEMENT EXECUTE FUNCTION realm_changed();
