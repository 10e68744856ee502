-- Core model: environment -> host, stack -> service -> container record.
-- Times are RFC 3339 text in UTC.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE environments (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE COLLATE NOCASE,
    join_token TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL
);

-- API tokens are stored as SHA-256 hashes; the secret is shown once.
CREATE TABLE api_tokens (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    secret_hash TEXT NOT NULL UNIQUE,
    created_at  TEXT NOT NULL
);

CREATE TABLE hosts (
    id             TEXT PRIMARY KEY,          -- chosen by the agent, kept in its state dir
    environment_id INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    name           TEXT NOT NULL,
    address        TEXT NOT NULL,
    docker_version TEXT NOT NULL,
    cpus           INTEGER NOT NULL,
    memory_bytes   INTEGER NOT NULL,
    os             TEXT NOT NULL,
    kernel         TEXT NOT NULL,
    agent_version  TEXT NOT NULL,
    labels         TEXT NOT NULL,             -- JSON object
    state          TEXT NOT NULL,             -- active | disconnected
    state_since    TEXT NOT NULL,
    last_seen      TEXT NOT NULL,
    created_at     TEXT NOT NULL,
    UNIQUE (environment_id, name)
);

CREATE TABLE stacks (
    id             INTEGER PRIMARY KEY,
    environment_id INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    name           TEXT NOT NULL COLLATE NOCASE,
    created_at     TEXT NOT NULL,
    UNIQUE (environment_id, name)
);

CREATE TABLE services (
    id          INTEGER PRIMARY KEY,
    stack_id    INTEGER NOT NULL REFERENCES stacks(id) ON DELETE CASCADE,
    name        TEXT NOT NULL COLLATE NOCASE,
    kind        TEXT NOT NULL,                -- container | load-balancer
    image       TEXT NOT NULL,
    command     TEXT NOT NULL,                -- JSON array
    env         TEXT NOT NULL,                -- JSON array of KEY=VALUE
    ports       TEXT NOT NULL,                -- JSON array of PortSpec
    labels      TEXT NOT NULL,                -- JSON object
    constraints TEXT NOT NULL,                -- JSON array of host.LABEL=VALUE
    scale       INTEGER NOT NULL,
    revision    INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL,
    UNIQUE (stack_id, name)
);

-- Where each instance of a service is placed. The container name is STACK-SERVICE-N.
CREATE TABLE containers (
    id         INTEGER PRIMARY KEY,
    service_id INTEGER NOT NULL REFERENCES services(id) ON DELETE CASCADE,
    instance   INTEGER NOT NULL,
    host_id    TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (service_id, instance)
);
CREATE INDEX containers_by_host ON containers(host_id);

-- The last set of managed containers each agent reported.
CREATE TABLE observed (
    host_id    TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    docker_id  TEXT NOT NULL,
    image      TEXT NOT NULL,
    state      TEXT NOT NULL,
    status     TEXT NOT NULL,
    ip         TEXT,
    ports      TEXT NOT NULL,                 -- JSON array of PortSpec
    labels     TEXT NOT NULL,                 -- JSON object
    updated_at TEXT NOT NULL,
    PRIMARY KEY (host_id, name)
);
