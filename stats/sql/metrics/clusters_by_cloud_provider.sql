-- Clusters by the cloud provider most of their nodes name.
-- Unit: clusters (each cluster of the window in exactly one cell).
SELECT COALESCE(p.cloud_provider, 'no nodes') AS a,
       CAST(NULL AS STRING) AS b,
       CAST(NULL AS STRING) AS c,
       COUNT(*) AS clusters,
       CAST(NULL AS INT64) AS nodes,
       CAST(NULL AS INT64) AS max_nodes
FROM win_reports AS w LEFT JOIN win_cluster_cloud AS p ON p.report = w.report
GROUP BY 1
