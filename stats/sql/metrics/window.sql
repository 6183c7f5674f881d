-- The window's totals, one row each: clusters (one latest report each), reports, nodes in the
-- latest reports, clusters with at least one node, and the node count of the largest cluster.
SELECT 'clusters' AS a, CAST(NULL AS STRING) AS b, CAST(NULL AS STRING) AS c,
       (SELECT COUNT(*) FROM win_reports) AS clusters, CAST(NULL AS INT64) AS nodes, CAST(NULL AS INT64) AS max_nodes
UNION ALL
SELECT 'reports', CAST(NULL AS STRING), CAST(NULL AS STRING),
       (SELECT reports FROM win_counts), CAST(NULL AS INT64), CAST(NULL AS INT64)
UNION ALL
SELECT 'nodes', CAST(NULL AS STRING), CAST(NULL AS STRING),
       (SELECT COUNT(*) FROM win_reports WHERE node_count > 0),
       (SELECT COUNT(*) FROM win_nodes),
       (SELECT COALESCE(MAX(node_count), 0) FROM win_reports)
