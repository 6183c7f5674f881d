-- Clusters by the set of architectures of their nodes, e.g. amd64+arm64.
-- Unit: clusters (each cluster of the window in exactly one cell).
SELECT COALESCE(x.architectures, CASE WHEN w.node_count = 0 THEN 'no nodes' ELSE 'unknown' END) AS a,
       CAST(NULL AS STRING) AS b,
       CAST(NULL AS STRING) AS c,
       COUNT(*) AS clusters,
       CAST(NULL AS INT64) AS nodes,
       CAST(NULL AS INT64) AS max_nodes
FROM win_reports AS w LEFT JOIN win_cluster_arch AS x ON x.report = w.report
GROUP BY 1
