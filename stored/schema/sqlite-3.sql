-- Spartakus SQLite schema, migration 3 (PRAGMA user_version = 3): sampled per-namespace
-- histograms. Applied after migrations 1 and 2, never instead of them.
--
-- On a large cluster a volunteer may count a workload kind in a random sample of namespaces
-- instead of in every one, and scale the histogram (`workload_buckets`) to the namespace count.
-- The report then says how many namespaces it counted; NULL means every namespace was counted.

ALTER TABLE workloads ADD COLUMN namespaces_sampled INTEGER;
