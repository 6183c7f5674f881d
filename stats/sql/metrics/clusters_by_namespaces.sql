-- Clusters by their number of namespaces: `v1` for v1 reports (the schema has none), `unknown`
-- for v2 reports that did not count them.
-- Unit: clusters (each cluster of the window in exactly one cell).
SELECT CASE WHEN w.namespaces IS NULL AND COALESCE(w.schema_version, 1) = 1 THEN 'v1' ELSE namespace_bucket(w.namespaces) END AS a,
       CAST(NULL AS STRING) AS b,
       CAST(NULL AS STRING) AS c,
       COUNT(*) AS clusters,
       CAST(NULL AS INT64) AS nodes,
       CAST(NULL AS INT64) AS max_nodes
FROM win_reports AS w
GROUP BY 1
