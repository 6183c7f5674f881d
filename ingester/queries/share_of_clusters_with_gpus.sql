-- Share of the clusters that reported in the last 30 days (by their latest report) with at
-- least one GPU on some node.
SELECT round(100.0 * avg(EXISTS (
           SELECT 1 FROM capacity AS c
           WHERE c.report = r.id
             AND (c.resource LIKE '%gpu%')
             AND c.value NOT IN ('0', '0m')
       )), 1) AS percent_with_gpus
FROM latest_reports AS r
WHERE r.received_at >= unixepoch('now', '-30 days');
