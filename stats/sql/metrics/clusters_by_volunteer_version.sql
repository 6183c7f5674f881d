-- Clusters by the volunteer version of their latest report (vX.Y.Z, else other).
-- Unit: clusters (each cluster of the window in exactly one cell).
SELECT volunteer_version(w.version) AS a,
       CAST(NULL AS STRING) AS b,
       CAST(NULL AS STRING) AS c,
       COUNT(*) AS clusters,
       CAST(NULL AS INT64) AS nodes,
       CAST(NULL AS INT64) AS max_nodes
FROM win_reports AS w
GROUP BY 1
