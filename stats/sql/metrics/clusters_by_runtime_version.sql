-- Clusters by container runtime and minor version of most of their nodes (refines clusters_by_runtime).
-- Unit: clusters (each cluster of the window in exactly one cell).
SELECT COALESCE(r.runtime, 'no nodes') AS a,
       COALESCE(r.runtime_version, 'no nodes') AS b,
       CAST(NULL AS STRING) AS c,
       COUNT(*) AS clusters,
       CAST(NULL AS INT64) AS nodes,
       CAST(NULL AS INT64) AS max_nodes
FROM win_reports AS w LEFT JOIN win_cluster_runtime AS r ON r.report = w.report
GROUP BY 1, 2
