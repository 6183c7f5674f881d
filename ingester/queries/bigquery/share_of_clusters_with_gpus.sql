-- Share of the clusters that reported in the last 30 days (by their latest report) with at
-- least one GPU on some node.
-- PROJECT.DATASET.TABLE is the ingester's --sink bigquery://PROJECT/DATASET/TABLE.
WITH latest AS (
  SELECT *
  FROM `PROJECT.DATASET.TABLE_deduplicated`
  WHERE receivedAt >= TIMESTAMP_SUB(CURRENT_TIMESTAMP(), INTERVAL 30 DAY)
  QUALIFY ROW_NUMBER() OVER (PARTITION BY clusterID ORDER BY receivedAt DESC, reportID DESC) = 1
)
SELECT ROUND(100 * AVG(IF(EXISTS (
           SELECT 1 FROM UNNEST(r.nodes) AS n, UNNEST(n.capacity) AS c
           WHERE c.resource LIKE '%gpu%'
             AND c.value NOT IN ('0', '0m')
       ), 1, 0)), 1) AS percent_with_gpus
FROM latest AS r;
