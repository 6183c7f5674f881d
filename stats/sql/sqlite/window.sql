-- The window, for SQLite (stored/schema/sqlite.sql). Parameters: :start and :end (UNIX
-- seconds, end exclusive), :synthetic (1 to keep reports marked spartakus.dev/synthetic=true).
--
-- It materializes, as TEMP tables, what every metric query (sql/metrics/*.sql) reads:
--   win_counts          reports in the window, each cluster counting at most {report_clip}
--   win_reports         each cluster's latest report in the window, one row per cluster; its
--                       integer id (`report`) is the cluster's key from here on
--   win_nodes           the nodes of those reports, normalized
--   win_accel           (report, vendor) of accelerators with a non-zero capacity
--   win_workloads       workload statistics of those reports
--   win_kinds           the workload kinds ({kinds}: the store puts report::Kind::ALL there)
--   win_cluster_*       one value per cluster for the cluster-unit metrics (the majorities:
--                       SELECTs generated from stats::store::MAJORITIES, which Query::bind puts
--                       where the table's name stands in braces)
-- Statements are separated by a semicolon at the end of a line.

DROP TABLE IF EXISTS temp.win_candidates;
DROP TABLE IF EXISTS temp.win_counts;
DROP INDEX IF EXISTS temp.win_reports_report;
DROP TABLE IF EXISTS temp.win_reports;
DROP TABLE IF EXISTS temp.win_nodes;
DROP TABLE IF EXISTS temp.win_accel;
DROP TABLE IF EXISTS temp.win_workloads;
DROP TABLE IF EXISTS temp.win_cluster_os;
DROP TABLE IF EXISTS temp.win_cluster_runtime;
DROP TABLE IF EXISTS temp.win_cluster_kernel;
DROP TABLE IF EXISTS temp.win_cluster_cloud;
DROP TABLE IF EXISTS temp.win_cluster_arch;
DROP TABLE IF EXISTS temp.win_cluster_accel;
DROP TABLE IF EXISTS temp.win_cluster_skew;
DROP TABLE IF EXISTS temp.win_kinds;

CREATE TEMP TABLE win_kinds AS {kinds};

CREATE TEMP TABLE win_candidates AS
SELECT r.id, r.report_id, r.received_at, r.cluster_id
FROM main.reports AS r
WHERE r.received_at >= :start AND r.received_at < :end
  AND (:synthetic OR NOT EXISTS (
      SELECT 1 FROM main.extensions AS e
      WHERE e.report = r.id AND e.name = 'spartakus.dev/synthetic' AND e.value = 'true'));

-- Reports, each cluster counting at most {report_clip}.
CREATE TEMP TABLE win_counts AS
SELECT COALESCE(SUM(MIN(n, {report_clip})), 0) AS reports
FROM (SELECT cluster_id, COUNT(*) AS n FROM temp.win_candidates GROUP BY cluster_id) AS per_cluster;

CREATE TEMP TABLE win_reports AS
SELECT r.id AS report,
       r.version,
       r.master_version,
       r.schema_version,
       r.namespaces,
       (SELECT COUNT(*) FROM main.nodes AS n WHERE n.report = r.id) AS node_count
FROM (
    SELECT id, ROW_NUMBER() OVER (
        PARTITION BY cluster_id ORDER BY received_at DESC, report_id DESC) AS rn
    FROM temp.win_candidates
) AS latest
JOIN main.reports AS r ON r.id = latest.id
WHERE latest.rn = 1;

-- Node metrics join each cluster's node count (to clip it) by this key.
CREATE UNIQUE INDEX temp.win_reports_report ON win_reports (report);

CREATE TEMP TABLE win_nodes AS
SELECT n.report,
       os_family(n.os_image) AS os_family,
       os_version(n.os_image) AS os_version,
       kernel_minor(n.kernel_version) AS kernel,
       runtime_name(n.container_runtime_version) AS runtime,
       runtime_version(n.container_runtime_version) AS runtime_version,
       architecture(n.architecture) AS architecture,
       cloud_provider(n.cloud_provider) AS cloud_provider,
       -- In minors, within one major only (report::version): unknown across two.
       CASE WHEN kube_major(n.kubelet_version) = kube_major(w.master_version)
            THEN kube_minor_number(n.kubelet_version) - kube_minor_number(w.master_version)
       END AS skew,
       (SELECT MAX(quantity(c.value)) FROM main.capacity AS c
        WHERE c.report = n.report AND c.node = n.idx AND c.resource = 'cpu') AS cpu,
       (SELECT MAX(quantity(c.value)) FROM main.capacity AS c
        WHERE c.report = n.report AND c.node = n.idx AND c.resource = 'memory') AS memory
FROM temp.win_reports AS w
JOIN main.nodes AS n ON n.report = w.report;

CREATE TEMP TABLE win_accel AS
SELECT DISTINCT c.report, accelerator_vendor(c.resource) AS vendor
FROM temp.win_reports AS w
JOIN main.capacity AS c ON c.report = w.report
WHERE accelerator_vendor(c.resource) IS NOT NULL AND quantity(c.value) > 0;

CREATE TEMP TABLE win_workloads AS
SELECT wl.report, wl.kind, wl.total, wl.age_median_hours
FROM temp.win_reports AS w
JOIN main.workloads AS wl ON wl.report = w.report;

-- One value per cluster from its nodes: the one most of them have (ties: the smaller), and an
-- OS or runtime version the one most of the nodes of that family have. Each SELECT is generated
-- from stats::store::MAJORITIES, the same in both dialects.
CREATE TEMP TABLE win_cluster_os AS
{win_cluster_os};

CREATE TEMP TABLE win_cluster_runtime AS
{win_cluster_runtime};

CREATE TEMP TABLE win_cluster_kernel AS
{win_cluster_kernel};

CREATE TEMP TABLE win_cluster_cloud AS
{win_cluster_cloud};

-- Sets, as names joined by '+' in byte order; 'unknown' architectures are left out.
CREATE TEMP TABLE win_cluster_arch AS
SELECT report, group_concat(architecture, '+' ORDER BY architecture) AS architectures
FROM (SELECT DISTINCT report, architecture FROM temp.win_nodes WHERE architecture <> 'unknown') AS a
GROUP BY report;

CREATE TEMP TABLE win_cluster_accel AS
SELECT report, group_concat(vendor, '+' ORDER BY vendor) AS accelerators
FROM temp.win_accel
GROUP BY report;

-- The worst node: the skew farthest from 0, the positive one on a tie.
CREATE TEMP TABLE win_cluster_skew AS
SELECT report, CASE WHEN mx > 0 AND mx + mn >= 0 THEN mx ELSE mn END AS skew
FROM (SELECT report, MIN(skew) AS mn, MAX(skew) AS mx FROM temp.win_nodes
      WHERE skew IS NOT NULL GROUP BY report) AS s;
