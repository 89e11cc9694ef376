-- nonce-auth replay store (ks.md §1.2): one row per consumed nonce.
CREATE TABLE nonce_entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    nonce TEXT NOT NULL,
    context TEXT,
    expires_at INTEGER NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX idx_nonce_entries_nonce ON nonce_entries (nonce);
CREATE INDEX idx_nonce_entries_expires_at ON nonce_entries (expires_at);
