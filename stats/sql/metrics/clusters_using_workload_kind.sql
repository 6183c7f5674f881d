-- Per workload kind (a group each), clusters that have objects of it: yes, no, v1 (a v1 report,
-- which has no workload statistics), or unknown (a v2 report without them).
-- Unit: clusters (each cluster of the window in exactly one cell).
SELECT k.kind AS a,
       CASE WHEN wl.total IS NULL AND COALESCE(w.schema_version, 1) = 1 THEN 'v1' WHEN wl.total IS NULL THEN 'unknown' WHEN wl.total = 0 THEN 'no' ELSE 'yes' END AS b,
       CAST(NULL AS STRING) AS c,
       COUNT(*) AS clusters,
       CAST(NULL AS INT64) AS nodes,
       CAST(NULL AS INT64) AS max_nodes
FROM win_reports AS w CROSS JOIN win_kinds AS k
LEFT JOIN win_workloads AS wl ON wl.report = w.report AND wl.kind = k.kind
GROUP BY 1, 2
