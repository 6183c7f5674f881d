-- Per workload kind, clusters by their number of objects of it (refines clusters_using_workload_kind).
-- Unit: clusters (each cluster of the window in exactly one cell).
SELECT k.kind AS a,
       CASE WHEN wl.total IS NULL AND COALESCE(w.schema_version, 1) = 1 THEN 'v1' WHEN wl.total IS NULL THEN 'unknown' WHEN wl.total = 0 THEN 'no' ELSE 'yes' END AS b,
       CASE WHEN wl.total IS NULL AND COALESCE(w.schema_version, 1) = 1 THEN 'v1' ELSE object_bucket(wl.total) END AS c,
       COUNT(*) AS clusters,
       CAST(NULL AS INT64) AS nodes,
       CAST(NULL AS INT64) AS max_nodes
FROM win_reports AS w CROSS JOIN win_kinds AS k
LEFT JOIN win_workloads AS wl ON wl.report = w.report AND wl.kind = k.kind
GROUP BY 1, 2, 3
