-- Clusters by minor and patch version of their API server (refines clusters_by_kubernetes_minor).
-- Unit: clusters (each cluster of the window in exactly one cell).
SELECT kube_minor(w.master_version) AS a,
       kube_patch(w.master_version) AS b,
       CAST(NULL AS STRING) AS c,
       COUNT(*) AS clusters,
       CAST(NULL AS INT64) AS nodes,
       CAST(NULL AS INT64) AS max_nodes
FROM win_reports AS w
GROUP BY 1, 2
