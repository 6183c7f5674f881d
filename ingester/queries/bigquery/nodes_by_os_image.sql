-- Nodes by OS image and architecture, in the latest report of each cluster that reported in
-- the last 30 days.
-- PROJECT.DATASET.TABLE is the ingester's --sink bigquery://PROJECT/DATASET/TABLE.
WITH latest AS (
  SELECT *
  FROM `PROJECT.DATASET.TABLE_deduplicated`
  WHERE receivedAt >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 30 DAY)
  QUALIFY ROW_NUMBER() OVER (PARTITION BY clusterID ORDER BY receivedAt DESC, reportID DESC) = 1
)
SELECT n.osImage AS os_image, n.architecture, COUNT(*) AS nodes
FROM latest AS r, UNNEST(r.nodes) AS n
GROUP BY os_image, architecture
ORDER BY nodes DESC, os_image, architecture;
