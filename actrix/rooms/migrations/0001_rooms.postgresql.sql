-- Room metadata and room-token use counts, PostgreSQL (times in ms need BIGINT).
CREATE TABLE room (
    name TEXT PRIMARY KEY,
    realm_id BIGINT NOT NULL,
    max_peers BIGINT NOT NULL,
    metadata TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE token_use (
    nonce TEXT PRIMARY KEY,
    uses BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
