-- Clusters per Kubernetes minor version, counting each cluster once by its latest report,
-- among clusters that reported in the last 30 days.
SELECT master_minor AS kubernetes, count(*) AS clusters
FROM latest_reports
WHERE received_at >= unixepoch('now', '-30 days')
GROUP BY master_minor
ORDER BY clusters DESC, kubernetes DESC;
