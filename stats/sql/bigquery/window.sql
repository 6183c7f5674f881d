-- The window, for BigQuery (stored/schema/bigquery.json), as the common table expressions
-- every metric query (sql/metrics/*.sql) reads; the same names and columns as the SQLite
-- window's TEMP tables. The store fills in:
--   {table}      `PROJECT.DATASET.TABLE_deduplicated`, the ingester's view with one row per
--                report (insertAll's deduplication is best-effort)
--   {start}, {end}  TIMESTAMP literals, end exclusive: the only filter on receivedAt, the
--                partitioning column, so the query reads the window's partitions and nothing
--                else (the table requires a partition filter)
--   {synthetic}  TRUE to keep reports marked spartakus.dev/synthetic=true
--   {kinds}      the workload kinds, from report::Kind::ALL
--   {report_clip}  the most reports one cluster counts for
--   the majorities (win_cluster_os and the like, the table's name in braces): SELECTs
--                generated from stats::store::MAJORITIES, the same in both dialects
-- A cluster's key is the reportID of its latest report in the window.
win_candidates AS (
    SELECT r.reportID, r.receivedAt, r.clusterID, r.version, r.masterVersion, r.schemaVersion,
           r.namespaces, r.nodes, r.workloads
    FROM {table} AS r
    WHERE r.receivedAt >= {start} AND r.receivedAt < {end}
      AND ({synthetic} OR NOT EXISTS (
          SELECT 1 FROM UNNEST(r.extensions) AS e
          WHERE e.name = 'spartakus.dev/synthetic' AND e.value = 'true'))
),
-- Reports, each cluster counting at most {report_clip}.
win_counts AS (
    SELECT COALESCE(SUM(LEAST(n, {report_clip})), 0) AS reports
    FROM (SELECT clusterID, COUNT(*) AS n FROM win_candidates GROUP BY clusterID) AS per_cluster
),
-- One scan of the window: the latest report of each cluster, picked from the rows already read.
win_rows AS (
    SELECT reportID, version, masterVersion, schemaVersion, namespaces, nodes, workloads
    FROM (
        SELECT c.*, ROW_NUMBER() OVER (
            PARTITION BY c.clusterID ORDER BY UNIX_SECONDS(c.receivedAt) DESC, c.reportID DESC) AS rn
        FROM win_candidates AS c) AS ranked
    WHERE rn = 1
),
win_reports AS (
    SELECT reportID AS report,
           version,
           masterVersion AS master_version,
           schemaVersion AS schema_version,
           namespaces,
           ARRAY_LENGTH(nodes) AS node_count
    FROM win_rows
),
win_nodes AS (
    SELECT r.reportID AS report,
           os_family(n.osImage) AS os_family,
           os_version(n.osImage) AS os_version,
           kernel_minor(n.kernelVersion) AS kernel,
           runtime_name(n.containerRuntimeVersion) AS runtime,
           runtime_version(n.containerRuntimeVersion) AS runtime_version,
           architecture(n.architecture) AS architecture,
           cloud_provider(n.cloudProvider) AS cloud_provider,
           -- In minors, within one major only (report::version): unknown across two.
           CASE WHEN kube_major(n.kubeletVersion) = kube_major(r.masterVersion)
                THEN kube_minor_number(n.kubeletVersion) - kube_minor_number(r.masterVersion)
           END AS skew,
           (SELECT MAX(quantity(c.value)) FROM UNNEST(n.capacity) AS c WHERE c.resource = 'cpu') AS cpu,
           (SELECT MAX(quantity(c.value)) FROM UNNEST(n.capacity) AS c WHERE c.resource = 'memory') AS memory
    FROM win_rows AS r, UNNEST(r.nodes) AS n
),
win_accel AS (
    SELECT DISTINCT r.reportID AS report, accelerator_vendor(c.resource) AS vendor
    FROM win_rows AS r, UNNEST(r.nodes) AS n, UNNEST(n.capacity) AS c
    WHERE accelerator_vendor(c.resource) IS NOT NULL AND quantity(c.value) > 0
),
win_workloads AS (
    SELECT r.reportID AS report, w.kind, w.total, w.ageHours.median AS age_median_hours
    FROM win_rows AS r, UNNEST(r.workloads) AS w
),
win_kinds AS (
    {kinds}
),
-- One value per cluster from its nodes: generated SELECTs (stats::store::MAJORITIES), the same
-- in both dialects.
win_cluster_os AS (
{win_cluster_os}
),
win_cluster_runtime AS (
{win_cluster_runtime}
),
win_cluster_kernel AS (
{win_cluster_kernel}
),
win_cluster_cloud AS (
{win_cluster_cloud}
),
win_cluster_arch AS (
    SELECT report, STRING_AGG(architecture, '+' ORDER BY architecture) AS architectures
    FROM (SELECT DISTINCT report, architecture FROM win_nodes WHERE architecture <> 'unknown') AS a
    GROUP BY report
),
win_cluster_accel AS (
    SELECT report, STRING_AGG(vendor, '+' ORDER BY vendor) AS accelerators
    FROM win_accel
    GROUP BY report
),
win_cluster_skew AS (
    SELECT report, CASE WHEN mx > 0 AND mx + mn >= 0 THEN mx ELSE mn END AS skew
    FROM (SELECT report, MIN(skew) AS mn, MAX(skew) AS mx FROM win_nodes
          WHERE skew IS NOT NULL GROUP BY report) AS s
)
