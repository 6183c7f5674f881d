-- Nodes by OS image and architecture, in each cluster's latest report.
SELECT n.os_image, n.architecture, count(*) AS nodes
FROM latest_reports AS r
JOIN nodes AS n ON n.report = r.id
GROUP BY n.os_image, n.architecture
ORDER BY nodes DESC, n.os_image, n.architecture;
