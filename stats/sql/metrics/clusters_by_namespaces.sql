-- Clusters by their number of namespaces (v2 reports that counted them).
-- Unit: clusters (each cluster of the window in exactly one cell).
SELECT namespace_bucket(w.namespaces) AS a,
       CAST(NULL AS STRING) AS b,
       CAST(NULL AS STRING) AS c,
       COUNT(*) AS clusters,
       CAST(NULL AS INT64) AS nodes,
       CAST(NULL AS INT64) AS max_nodes
FROM win_reports AS w
GROUP BY 1
