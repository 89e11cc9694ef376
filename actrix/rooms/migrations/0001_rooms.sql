-- Room metadata of configured (persistent) rooms and room-token use counts
-- (rooms.md §2.5, §4.3). Live membership is never stored.
CREATE TABLE room (
    name TEXT PRIMARY KEY,
    realm_id INTEGER NOT NULL,
    max_peers INTEGER NOT NULL,
    metadata TEXT,
    created_at INTEGER NOT NULL
);

CREATE TABLE token_use (
    nonce TEXT PRIMARY KEY,
    uses INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
