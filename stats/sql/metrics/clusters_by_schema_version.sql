-- Clusters by the schema version of their latest report (absent means 1).
-- Unit: clusters (each cluster of the window in exactly one cell).
SELECT CASE COALESCE(w.schema_version, 1) WHEN 1 THEN '1' WHEN 2 THEN '2' ELSE 'other' END AS a,
       CAST(NULL AS STRING) AS b,
       CAST(NULL AS STRING) AS c,
       COUNT(*) AS clusters,
       CAST(NULL AS INT64) AS nodes,
       CAST(NULL AS INT64) AS max_nodes
FROM win_reports AS w
GROUP BY 1
