-- A deactivated host keeps what it runs (and heals it in place) but gets no new containers.
ALTER TABLE hosts ADD COLUMN deactivated_at TEXT;

-- The value of the io.corral.environment label on the environment's containers: the name it
-- was created with. Labels are part of a container's spec hash, so a rename that changed them
-- would recreate every container; the label keeps its first value instead.
ALTER TABLE environments ADD COLUMN label TEXT;
UPDATE environments SET label = name;

-- Hosts removed from the control plane, by agent id: an agent that comes back with the removed
-- host's credential is told it was revoked (and stops) instead of being let in by its join
-- token. Running the join command again (the agent has forgotten the credential) lifts this.
CREATE TABLE removed_hosts (
    id              TEXT PRIMARY KEY,
    environment_id  INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    name            TEXT NOT NULL,
    credential_hash TEXT,
    removed_at      TEXT NOT NULL
);

-- Failed logins, kept so a restart does not forget them; counted per user name (whatever the
-- address) and per address (whatever the user). Rows older than the window are purged.
CREATE TABLE login_failures (
    id        INTEGER PRIMARY KEY,
    user_name TEXT NOT NULL COLLATE NOCASE,
    address   TEXT NOT NULL,
    at_ms     INTEGER NOT NULL
);
CREATE INDEX login_failures_by_user ON login_failures(user_name, at_ms);
CREATE INDEX login_failures_by_address ON login_failures(address, at_ms);
