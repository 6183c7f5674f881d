-- The window's totals, one row each: clusters (one latest report each), reports (each cluster
-- counting at most {report_clip}, in win_counts), and nodes in the latest reports (each cluster
-- counting at most {node_clip}).
SELECT 'clusters' AS a, CAST(NULL AS STRING) AS b, CAST(NULL AS STRING) AS c,
       (SELECT COUNT(*) FROM win_reports) AS clusters, CAST(NULL AS INT64) AS nodes, CAST(NULL AS INT64) AS max_nodes
UNION ALL
SELECT 'reports', CAST(NULL AS STRING), CAST(NULL AS STRING),
       (SELECT reports FROM win_counts), CAST(NULL AS INT64), CAST(NULL AS INT64)
UNION ALL
SELECT 'nodes', CAST(NULL AS STRING), CAST(NULL AS STRING),
       (SELECT COUNT(*) FROM win_reports WHERE node_count > 0),
       (SELECT COALESCE(SUM(CASE WHEN node_count > {node_clip} THEN {node_clip} ELSE node_count END), 0)
        FROM win_reports),
       CAST(NULL AS INT64)
