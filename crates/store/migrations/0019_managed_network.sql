-- The managed network: each environment's IPv4 network, each host's /24 lease in it, and what
-- each host's agent said about its tunnel. Existing environments get 10.42.0.0/16, 10.43.0.0/16,
-- ... in the order they were made (at most 10.255.0.0/16; any beyond are given one at start-up).
ALTER TABLE environments ADD COLUMN subnet TEXT;
UPDATE environments SET subnet = '10.' || (41 + (SELECT count(*) FROM environments e2 WHERE e2.id <= environments.id)) || '.0.0/16'
    WHERE (SELECT count(*) FROM environments e2 WHERE e2.id <= environments.id) <= 214;

CREATE TABLE host_leases (
    host_id        TEXT PRIMARY KEY REFERENCES hosts(id) ON DELETE CASCADE,
    environment_id INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    subnet         TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    UNIQUE (environment_id, subnet)
);

ALTER TABLE hosts ADD COLUMN tunnel_key TEXT;
ALTER TABLE hosts ADD COLUMN tunnel_port INTEGER;
-- The host's own IPv4 networks (JSON array of CIDRs), so no managed network is laid over them.
ALTER TABLE hosts ADD COLUMN networks TEXT NOT NULL DEFAULT '[]';
