-- Realms and actor ACL (config.md §5), shared by the daemon and the CLI.
CREATE TABLE realm (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    realm_id INTEGER NOT NULL UNIQUE,
    name TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'Normal',
    expires_at INTEGER,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE realmconfig (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    realm_rowid INTEGER NOT NULL REFERENCES realm(rowid) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    UNIQUE (realm_rowid, key)
);

CREATE TABLE actoracl (
    rowid INTEGER PRIMARY KEY AUTOINCREMENT,
    realm_id INTEGER NOT NULL,
    from_type TEXT NOT NULL,
    to_type TEXT NOT NULL,
    access INTEGER NOT NULL
);

CREATE INDEX actoracl_lookup ON actoracl (realm_id, from_type, to_type);
