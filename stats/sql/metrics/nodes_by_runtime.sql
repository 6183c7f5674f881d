-- Nodes by container runtime.
-- Unit: nodes (each node of the window's latest reports in exactly one cell), each cluster
-- counting at most {node_clip} nodes: a larger cluster's n nodes in a cell count
-- floor(n * {node_clip} / its nodes), so one cluster adds at most {node_clip} to the metric.
SELECT a,
       CAST(NULL AS STRING) AS b,
       CAST(NULL AS STRING) AS c,
       COUNT(*) AS clusters,
       SUM(DIV(per_cluster.n * {node_clip},
               CASE WHEN w.node_count > {node_clip} THEN w.node_count ELSE {node_clip} END)) AS nodes,
       CAST(NULL AS INT64) AS max_nodes
FROM (
    SELECT report, runtime AS a, COUNT(*) AS n
    FROM win_nodes
    GROUP BY report, 2
) AS per_cluster
JOIN win_reports AS w ON w.report = per_cluster.report
GROUP BY a
