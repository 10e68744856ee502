-- Resource usage history with bounded size: raw samples (every 5 s) for the last hour, 1-minute
-- averages for the last day, 1-hour averages for the last month. A series row names what is
-- measured once; sample rows are integers only, keyed by (series, ts) without a rowid.
CREATE TABLE metric_series (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('host', 'container')),
    environment_id INTEGER NOT NULL REFERENCES environments(id) ON DELETE CASCADE,
    -- Host name or container name.
    name TEXT NOT NULL,
    -- A container's stack and service (from its labels), for per-service totals.
    stack TEXT NOT NULL DEFAULT '',
    service TEXT NOT NULL DEFAULT '',
    UNIQUE (kind, environment_id, name)
);
CREATE INDEX metric_series_service ON metric_series (environment_id, stack, service);

-- ts: Unix seconds (start of the bucket in roll-ups). cpu and load1: hundredths (of a percent,
-- of a load). Rates: bytes per second. disk_*: hosts only (0 for containers).
CREATE TABLE metric_raw (
    series INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    cpu INTEGER NOT NULL,
    memory INTEGER NOT NULL,
    memory_limit INTEGER NOT NULL,
    net_rx INTEGER NOT NULL,
    net_tx INTEGER NOT NULL,
    block_read INTEGER NOT NULL,
    block_write INTEGER NOT NULL,
    disk_used INTEGER NOT NULL,
    disk_total INTEGER NOT NULL,
    load1 INTEGER NOT NULL,
    PRIMARY KEY (series, ts)
) WITHOUT ROWID;

CREATE TABLE metric_1m (
    series INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    cpu INTEGER NOT NULL,
    memory INTEGER NOT NULL,
    memory_limit INTEGER NOT NULL,
    net_rx INTEGER NOT NULL,
    net_tx INTEGER NOT NULL,
    block_read INTEGER NOT NULL,
    block_write INTEGER NOT NULL,
    disk_used INTEGER NOT NULL,
    disk_total INTEGER NOT NULL,
    load1 INTEGER NOT NULL,
    PRIMARY KEY (series, ts)
) WITHOUT ROWID;

CREATE TABLE metric_1h (
    series INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    cpu INTEGER NOT NULL,
    memory INTEGER NOT NULL,
    memory_limit INTEGER NOT NULL,
    net_rx INTEGER NOT NULL,
    net_tx INTEGER NOT NULL,
    block_read INTEGER NOT NULL,
    block_write INTEGER NOT NULL,
    disk_used INTEGER NOT NULL,
    disk_total INTEGER NOT NULL,
    load1 INTEGER NOT NULL,
    PRIMARY KEY (series, ts)
) WITHOUT ROWID;
