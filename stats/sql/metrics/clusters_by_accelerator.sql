-- Clusters by the set of accelerator vendors on their nodes (a non-zero capacity).
-- Unit: clusters (each cluster of the window in exactly one cell).
SELECT COALESCE(x.accelerators, CASE WHEN w.node_count = 0 THEN 'no nodes' ELSE 'none' END) AS a,
       CAST(NULL AS STRING) AS b,
       CAST(NULL AS STRING) AS c,
       COUNT(*) AS clusters,
       CAST(NULL AS INT64) AS nodes,
       CAST(NULL AS INT64) AS max_nodes
FROM win_reports AS w LEFT JOIN win_cluster_accel AS x ON x.report = w.report
GROUP BY 1
