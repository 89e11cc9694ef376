-- Admin tokens and the audit log (issue 14). A token is shown once; only the
-- SHA-256 of its secret part is kept, found by its public key_id.
CREATE TABLE admin_token (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    secret_sha256 TEXT NOT NULL,
    read_only INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER,
    last_used_at INTEGER
);

CREATE TABLE admin_audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    who TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    details TEXT NOT NULL,
    remote TEXT NOT NULL
);

CREATE INDEX admin_audit_at ON admin_audit (at);
