-- Image registries of an environment: where images come from, with the credentials and the
-- private CA their pulls need. The password is sealed with the key kept outside this file
-- (crates/store/src/sealing.rs); a plaintext password is never stored.
CREATE TABLE registries (
    id INTEGER PRIMARY KEY,
    environment_id INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    -- HOST[:PORT], lowercase; Docker Hub is docker.io.
    host TEXT NOT NULL,
    username TEXT,
    -- Sealed (`sealed1:...`), or NULL when the registry needs no login.
    password TEXT,
    ca_pem TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (environment_id, host)
);
