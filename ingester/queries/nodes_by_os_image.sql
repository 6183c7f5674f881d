-- Nodes by OS image and architecture, in the latest report of each cluster that reported in
-- the last 30 days.
SELECT n.os_image, n.architecture, count(*) AS nodes
FROM latest_reports AS r
JOIN nodes AS n ON n.report = r.id
WHERE r.received_at >= unixepoch('now', '-30 days')
GROUP BY n.os_image, n.architecture
ORDER BY nodes DESC, n.os_image, n.architecture;
