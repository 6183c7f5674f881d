-- Spartakus BigQuery view `TABLE_deduplicated`: the reports table with one row per report, and
-- none of the reports a cluster asked to erase.
--
-- The ingester creates this view beside the table (same dataset), and at every start replaces
-- its query if it differs from this file, with `PROJECT.DATASET.TABLE` replaced by the table it
-- writes. Read reports through the view, never the table: the table may hold a report more than
-- once, because insertAll deduplicates on insertId (= reportID) only on a best-effort basis for
-- about a minute, and the ingester sends a report again whenever it cannot be sure it was stored
-- (a failed or timed-out request, a JetStream redelivery).
--
-- Contract for readers (people, the stats component):
-- - Columns: exactly the table's (stored/schema/bigquery.json), no more.
-- - Erased reports are not here. A cluster that asked for the erasure of its reports (proving
--   the secret whose SHA-256 its v2 reports carry as erasureCheck) has a tombstone in
--   `TABLE_tombstones` (stored/schema/bigquery-tombstones.json); every report of that
--   cluster with that erasureCheck received up to the request's second is hidden here at once,
--   and deleted from the table as soon as BigQuery allows DML on it (rows still in the
--   streaming buffer, up to about 90 minutes after insertAll, cannot be deleted). Reports the
--   cluster sent after the request, and v1 reports (no erasureCheck), are not hidden.
-- - One row per (reportID, receivedAt). Every copy the ingester makes of a report comes from one
--   JetStream message, which carries the gateway's receivedAt, so copies share it and collapse to
--   one row. (The gateway publishes with Nats-Msg-Id = reportID, so JetStream keeps one message
--   per report within its duplicate window, 2 hours by default.)
-- - Filter on receivedAt, e.g.
--     WHERE receivedAt >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 28 DAY)
--   The table is partitioned by day of receivedAt and, when the ingester created it, requires a
--   partition filter: BigQuery refuses a query through this view that has no filter on
--   receivedAt. The filter reaches the table because receivedAt is a PARTITION BY column of the
--   window below (BigQuery pushes a filter through an analytic function only on those columns).
--   A filter on an expression such as DATE(receivedAt) may not prune partitions; compare
--   receivedAt itself with constants or CURRENT_TIMESTAMP() arithmetic.
-- - Rows written before report IDs existed (an original 2016 table: reportID and receivedAt are
--   NULL) are passed through unchanged; a receivedAt filter excludes them.
-- - Not collapsed: a report the gateway accepted twice, further apart than JetStream's duplicate
--   window (two messages, two receivedAt values). The volunteer gives up retrying long before
--   that, so this takes a v1 body without `timestamp` sent again hours later, whose derived
--   report ID repeats. Count clusters (by their latest report), not rows, and it cannot matter.
--
-- No ORDER BY in the window: the copies of one report are the same row.
SELECT *
FROM `PROJECT.DATASET.TABLE` AS r
WHERE NOT EXISTS (
    SELECT 1
    FROM `PROJECT.DATASET.TABLE_tombstones` AS t
    WHERE t.clusterID = r.clusterID
      AND t.erasureCheck = r.erasureCheck
      AND r.receivedAt < TIMESTAMP_ADD(t.requestedAt, INTERVAL 1 SECOND))
QUALIFY r.reportID IS NULL
    OR ROW_NUMBER() OVER (PARTITION BY r.reportID, r.receivedAt) = 1
