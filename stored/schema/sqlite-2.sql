-- Spartakus SQLite schema, migration 2 (PRAGMA user_version = 2): erasure. Applied after
-- migration 1 (sqlite.sql), never instead of it.
--
-- A v2 report carries `erasureCheck` = SHA-256(S), where S is a secret only the cluster can
-- derive. An erasure request that proves S (the gateway queues SHA-256(S), never S) deletes the
-- cluster's reports carrying that check and received up to the request, with their child rows,
-- and leaves a tombstone: a report of the cluster with that check received up to the request
-- that is still queued, or arrives later, is dropped instead of stored. Reports received after
-- the request are new data the cluster chose to send, and are kept. v1 reports carry no check:
-- no erasure can prove they are the cluster's, so none touches them.

-- SHA-256 of the cluster's erasure secret, 64 lowercase hex characters; NULL for v1 reports.
ALTER TABLE reports ADD COLUMN erasure_check TEXT;

-- One row per (cluster, check) that asked for erasure; `requested_at` the latest such request.
-- Removed by retention once `requested_at` is older than it (it then covers no stored report).
CREATE TABLE tombstones (
    cluster_id     TEXT    NOT NULL,
    erasure_check  TEXT    NOT NULL,
    requested_at   INTEGER NOT NULL,          -- gateway receipt time of the request, UNIX seconds
    PRIMARY KEY (cluster_id, erasure_check)
) WITHOUT ROWID;
