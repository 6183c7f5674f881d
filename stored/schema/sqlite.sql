-- Spartakus SQLite schema, migration 1 (PRAGMA user_version = 1).
--
-- One row in `reports` per report, however often it was delivered: `report_id` is unique and
-- the ingester inserts with INSERT OR IGNORE, writing a report's child rows only when its
-- report row was new. Child tables point at `reports.id` (a small integer) rather than
-- repeating the 36-character report ID.
--
-- Times: `received_at` is the gateway's clock in UNIX seconds, so the last 30 days is
-- `received_at >= unixepoch('now', '-30 days')`; `datetime(received_at, 'unixepoch')` shows it.

-- One row per report.
CREATE TABLE reports (
    id              INTEGER PRIMARY KEY,      -- surrogate key for joins
    report_id       TEXT    NOT NULL UNIQUE,  -- idempotency key (UUID), = BigQuery insertId
    received_at     INTEGER NOT NULL,         -- gateway receipt time, UNIX seconds (UTC)
    version         TEXT    NOT NULL,         -- volunteer build version
    timestamp       TEXT,                     -- volunteer's clock, as sent
    cluster_id      TEXT    NOT NULL,
    master_version  TEXT,                     -- API server gitVersion, e.g. v1.37.2
    master_minor    TEXT,                     -- derived: '1.37' (NULL when unparsable)
    schema_version  INTEGER,                  -- NULL means 1
    namespaces      INTEGER                   -- number of namespaces, when collected
);
CREATE INDEX reports_by_cluster ON reports (cluster_id, received_at);
CREATE INDEX reports_by_time ON reports (received_at);

-- One row per node of a report; `idx` is the node's position in the report.
CREATE TABLE nodes (
    report                     INTEGER NOT NULL REFERENCES reports (id),
    idx                        INTEGER NOT NULL,
    -- HMAC-SHA256(the gateway's --node-id-key-file key, clusterID, the client's node ID), 32
    -- hex characters: not recomputable without the collector's key, even where the client sent
    -- a plain hash (v1: an unsalted MD5 of the node's name, machine ID and system UUID). Stable
    -- for one node of one cluster while the key is kept.
    node_id                    TEXT    NOT NULL,
    operating_system           TEXT,
    os_image                   TEXT,
    kernel_version             TEXT,
    architecture               TEXT,
    container_runtime_version  TEXT,
    kubelet_version            TEXT,
    cloud_provider             TEXT,
    PRIMARY KEY (report, idx)
) WITHOUT ROWID;

-- One row per resource of a node's capacity, e.g. ('cpu', '4'), ('nvidia.com/gpu', '8').
CREATE TABLE capacity (
    report    INTEGER NOT NULL,
    node      INTEGER NOT NULL,              -- nodes.idx
    idx       INTEGER NOT NULL,
    resource  TEXT    NOT NULL,
    value     TEXT    NOT NULL,              -- Kubernetes quantity, as sent
    PRIMARY KEY (report, node, idx),
    FOREIGN KEY (report, node) REFERENCES nodes (report, idx)
) WITHOUT ROWID;

-- Operator-supplied extensions.
CREATE TABLE extensions (
    report  INTEGER NOT NULL REFERENCES reports (id),
    idx     INTEGER NOT NULL,
    name    TEXT    NOT NULL,
    value   TEXT    NOT NULL,
    PRIMARY KEY (report, idx)
) WITHOUT ROWID;

-- Statistics per workload kind (Pod, Service, Deployment, StatefulSet, DaemonSet, Job, CronJob).
CREATE TABLE workloads (
    report          INTEGER NOT NULL REFERENCES reports (id),
    idx             INTEGER NOT NULL,
    kind            TEXT    NOT NULL,
    total           INTEGER NOT NULL,        -- objects of this kind in the cluster
    age_median_hours INTEGER,                -- NULL when there are none
    age_p90_hours   INTEGER,
    PRIMARY KEY (report, idx)
) WITHOUT ROWID;

-- Per-namespace histogram of a workload kind: `namespaces` namespaces hold between `min` and
-- `max` (inclusive; NULL = unbounded) objects of that kind.
CREATE TABLE workload_buckets (
    report      INTEGER NOT NULL,
    workload    INTEGER NOT NULL,            -- workloads.idx
    idx         INTEGER NOT NULL,
    min         INTEGER NOT NULL,
    max         INTEGER,
    namespaces  INTEGER NOT NULL,
    PRIMARY KEY (report, workload, idx),
    FOREIGN KEY (report, workload) REFERENCES workloads (report, idx)
) WITHOUT ROWID;

-- Sections the volunteer did not collect, and why (forbidden, notFound, omitted, error).
CREATE TABLE skipped (
    report   INTEGER NOT NULL REFERENCES reports (id),
    idx      INTEGER NOT NULL,
    section  TEXT    NOT NULL,
    reason   TEXT    NOT NULL,
    PRIMARY KEY (report, idx)
) WITHOUT ROWID;

-- The latest report of each cluster: most questions are about clusters, not reports.
CREATE VIEW latest_reports AS
SELECT r.*
FROM reports AS r
WHERE r.id = (
    SELECT l.id FROM reports AS l
    WHERE l.cluster_id = r.cluster_id
    ORDER BY l.received_at DESC, l.id DESC
    LIMIT 1
);
