-- Clusters by their worst node's version skew (kubelet minor minus API server minor).
-- Unit: clusters (each cluster of the window in exactly one cell).
SELECT CASE WHEN w.node_count = 0 THEN 'no nodes' ELSE skew_bucket(s.skew) END AS a,
       CAST(NULL AS STRING) AS b,
       CAST(NULL AS STRING) AS c,
       COUNT(*) AS clusters,
       CAST(NULL AS INT64) AS nodes,
       CAST(NULL AS INT64) AS max_nodes
FROM win_reports AS w LEFT JOIN win_cluster_skew AS s ON s.report = w.report
GROUP BY 1
