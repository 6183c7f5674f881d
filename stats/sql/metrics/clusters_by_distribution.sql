-- Clusters by distribution flavor, from the suffix of the API server's version.
-- Unit: clusters (each cluster of the window in exactly one cell).
SELECT distribution(w.master_version) AS a,
       CAST(NULL AS STRING) AS b,
       CAST(NULL AS STRING) AS c,
       COUNT(*) AS clusters,
       CAST(NULL AS INT64) AS nodes,
       CAST(NULL AS INT64) AS max_nodes
FROM win_reports AS w
GROUP BY 1
