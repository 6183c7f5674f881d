-- Nodes by OS family and version (refines nodes_by_os).
-- Unit: nodes (each node of the window's latest reports in exactly one cell). `clusters` is the
-- number of clusters with nodes in the cell and `max_nodes` the largest one's nodes: used for
-- the threshold and the dominance rule, never published.
SELECT a,
       b AS b,
       CAST(NULL AS STRING) AS c,
       COUNT(*) AS clusters,
       SUM(n) AS nodes,
       MAX(n) AS max_nodes
FROM (
    SELECT report, os_family AS a, os_version AS b, COUNT(*) AS n
    FROM win_nodes
    GROUP BY report, 2, 3
) AS per_cluster
GROUP BY a, b
