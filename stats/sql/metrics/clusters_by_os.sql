-- Clusters by the OS family most of their nodes run.
-- Unit: clusters (each cluster of the window in exactly one cell).
SELECT COALESCE(o.os_family, 'no nodes') AS a,
       CAST(NULL AS STRING) AS b,
       CAST(NULL AS STRING) AS c,
       COUNT(*) AS clusters,
       CAST(NULL AS INT64) AS nodes,
       CAST(NULL AS INT64) AS max_nodes
FROM win_reports AS w LEFT JOIN win_cluster_os AS o ON o.report = w.report
GROUP BY 1
