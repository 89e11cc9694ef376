-- Actor revocations (issue 14): an identity revoked by the admin API or
-- `actrix actor revoke` is refused by every process sharing this store until
-- its tokens have expired (expires_at); then the row is purged. The serial is
-- the u64 in lowercase hex (TEXT: SQLite and PostgreSQL integers are signed).
CREATE TABLE actor_revocation (
    realm_id INTEGER NOT NULL,
    serial TEXT NOT NULL,
    actor_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    revoked_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (realm_id, serial)
);

CREATE INDEX actor_revocation_expiry ON actor_revocation (expires_at);
