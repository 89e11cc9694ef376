-- AIS current signing key (ais.md §5): a single row with id = 1.
CREATE TABLE current_key (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    key_id INTEGER NOT NULL,
    public_key TEXT NOT NULL,
    fetched_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    tolerance_seconds INTEGER NOT NULL
);
