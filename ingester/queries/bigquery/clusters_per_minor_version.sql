-- Clusters per Kubernetes minor version, counting each cluster once by its latest report,
-- among clusters that reported in the last 30 days.
-- PROJECT.DATASET.TABLE is the ingester's --sink bigquery://PROJECT/DATASET/TABLE.
WITH latest AS (
  SELECT *
  FROM `PROJECT.DATASET.TABLE_deduplicated`
  WHERE receivedAt >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 30 DAY)
  QUALIFY ROW_NUMBER() OVER (PARTITION BY clusterID ORDER BY receivedAt DESC, reportID DESC) = 1
)
SELECT REGEXP_EXTRACT(masterVersion, r'^v?(\d+\.\d+)') AS kubernetes, COUNT(*) AS clusters
FROM latest
GROUP BY kubernetes
ORDER BY clusters DESC, kubernetes DESC;
