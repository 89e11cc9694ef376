-- KS key pairs (ks.md §4). AUTOINCREMENT: ids are never reused after deletes.
CREATE TABLE keys (
    key_id INTEGER PRIMARY KEY AUTOINCREMENT,
    public_key TEXT NOT NULL,
    secret_key TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX idx_keys_expires_at ON keys (expires_at);
