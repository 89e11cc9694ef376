-- signaling_cache.db: write-behind copy of the actor registry and the proto spec store.
CREATE TABLE service_registry (
    actor_key TEXT PRIMARY KEY,          -- "<realm_id>/<serial hex>"
    realm_id INTEGER NOT NULL,
    actr_id BLOB NOT NULL,               -- serialized actr.ActrId
    service_name TEXT NOT NULL,
    service_spec BLOB,                   -- serialized actr.ServiceSpec
    ws_address TEXT,
    last_heartbeat REAL NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX service_registry_expires ON service_registry (expires_at);

CREATE TABLE service_specs (
    manufacturer TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,               -- normalized version, "" when none
    fingerprint TEXT NOT NULL,
    spec BLOB NOT NULL,                  -- serialized actr.ServiceSpec
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (manufacturer, name, version, fingerprint)
);
CREATE INDEX service_specs_expires ON service_specs (expires_at);
