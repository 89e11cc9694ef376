-- Room secrets (rooms.md §4.2): per realm one current secret (valid_until NULL)
-- and at most one previous secret that stays valid until valid_until.
CREATE TABLE room_secret (
    realm_id INTEGER NOT NULL,
    kid INTEGER NOT NULL,
    secret BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    valid_until INTEGER,
    PRIMARY KEY (realm_id, kid)
);
