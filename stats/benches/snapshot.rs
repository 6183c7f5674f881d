//! One snapshot over 1,000,000 stored reports in SQLite: about 100,000 clusters reporting ten
//! times each in the window, 2.6 M nodes in their latest reports. Prints the time and the peak
//! RSS of computing and publishing the snapshot (targets: 60 s and 256 MiB on 2 cores).
//!
//! `cargo bench -p stats --bench snapshot` (`SPARTAKUS_BENCH_CLUSTERS=N` for another size).
//!
//! The database is filled once per size and kept in `target/stats-bench/`: directly, with
//! prepared INSERTs into the committed schema (`stored/schema/sqlite.sql`), in one transaction;
//! the tests fill theirs through NATS and the real ingester, which at this size would take the
//! bench's budget many times over. Only each cluster's latest report carries nodes, capacity and
//! workloads (the earlier nine are as a volunteer with `--omit nodes` sends them): the window's
//! query never reads an earlier report's nodes, and 25 M node rows would cost gigabytes of disk
//! for the same measurement. The snapshot itself runs in a child process, so its peak RSS is its
//! own, not the filling's.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use rusqlite::{Connection, params};
use stats::config::Config;
use stats::output::Output;
use stats::store::sqlite::SqliteStore;

const REPORTS_PER_CLUSTER: i64 = 10;
/// The snapshot's day; reports are received in the 10 days before it.
const DAY: &str = "2026-11-29";

const OS: [&str; 8] = [
    "Ubuntu 24.04.1 LTS",
    "Ubuntu 22.04.5 LTS",
    "Container-Optimized OS from Google",
    "Bottlerocket OS 1.20.0 (aws-k8s-1.29)",
    "Amazon Linux 2023.6.20241121",
    "Flatcar Container Linux by Kinvolk 3815.2.0 (Oklo)",
    "Debian GNU/Linux 12 (bookworm)",
    "Talos (v1.8.0)",
];
const KERNELS: [&str; 6] = [
    "6.8.0-1015-gke",
    "6.1.100+",
    "5.15.0-1071-aws",
    "6.6.50",
    "5.10.226-214.880.amzn2.x86_64",
    "6.11.0",
];
const RUNTIMES: [&str; 6] = [
    "containerd://1.7.22",
    "containerd://2.0.1",
    "cri-o://1.31.1",
    "containerd://1.6.30",
    "docker://24.0.7",
    "cri-o://1.30.4",
];
const MASTERS: [&str; 10] = [
    "v1.37.2",
    "v1.36.4",
    "v1.35.1-gke.100",
    "v1.34.3-eks-a737599",
    "v1.33.5+k3s1",
    "v1.37.1+rke2r1",
    "v1.32.9",
    "v1.36.2-gke.300",
    "v1.29.8",
    "v1.31.1",
];
const CLOUDS: [&str; 5] = ["gce", "aws", "azure", "hcloud", "other"];
const CPUS: [&str; 5] = ["2", "4", "8", "16", "3500m"];
const MEMORY: [&str; 4] = ["8145236Ki", "16393236Ki", "32Gi", "65842584Ki"];
const KINDS: [&str; 7] = [
    "Pod",
    "Service",
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "CronJob",
];

fn nodes_of(cluster: i64) -> i64 {
    if cluster % 1000 == 999 {
        2000
    } else {
        1 + (cluster * 7919) % 48
    }
}

fn fill(path: &Path, clusters: i64) -> rusqlite::Result<()> {
    let mut conn = Connection::open(path)?;
    stored::sqlite::migrate(&mut conn).map_err(|e| match e {
        stored::sqlite::SchemaError::Sqlite(e) => e,
        other => rusqlite::Error::UserFunctionError(Box::new(other)),
    })?;
    conn.execute_batch("PRAGMA journal_mode = OFF; PRAGMA synchronous = OFF;")?;
    let tx = conn.transaction()?;
    {
        let mut report = tx.prepare(
            "INSERT INTO reports (id, report_id, received_at, version, timestamp, cluster_id,
                 master_version, master_minor, schema_version, namespaces)
             VALUES (?1, ?2, ?3, 'v0.1.0', '1764000000', ?4, ?5, NULL, ?6, ?7)",
        )?;
        let mut node = tx.prepare(
            "INSERT INTO nodes (report, idx, node_id, operating_system, os_image, kernel_version,
                 architecture, container_runtime_version, kubelet_version, cloud_provider)
             VALUES (?1, ?2, ?3, 'linux', ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut capacity = tx.prepare(
            "INSERT INTO capacity (report, node, idx, resource, value) VALUES (?1, ?2, ?3, ?4, ?5)",
        )?;
        let mut workload = tx.prepare(
            "INSERT INTO workloads (report, idx, kind, total, age_median_hours, age_p90_hours)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        let mut extension = tx.prepare(
            "INSERT INTO extensions (report, idx, name, value) VALUES (?1, 0, 'example.com/team', 'a')",
        )?;
        let day: jiff::civil::Date = DAY.parse().map_err(|_| rusqlite::Error::InvalidQuery)?;
        let end = day
            .to_zoned(jiff::tz::TimeZone::UTC)
            .map_err(|_| rusqlite::Error::InvalidQuery)?
            .timestamp()
            .as_second();
        let mut id: i64 = 0;
        for c in 0..clusters {
            let master = MASTERS[(c % 10) as usize];
            let v2 = c % 4 != 0;
            for r in 0..REPORTS_PER_CLUSTER {
                id += 1;
                let latest = r == REPORTS_PER_CLUSTER - 1;
                let at = end - 86_400 * (REPORTS_PER_CLUSTER - r) + (c % 80_000);
                report.execute(params![
                    id,
                    format!("{:08x}-0000-4000-8000-{:012x}", c, r),
                    at,
                    format!("cluster-{c:06}"),
                    master,
                    if v2 { Some(2) } else { None },
                    if v2 { Some(5 + c % 300) } else { None },
                ])?;
                if c % 10 == 0 {
                    extension.execute(params![id])?;
                }
                if !latest {
                    continue;
                }
                for n in 0..nodes_of(c) {
                    let k = c + n;
                    node.execute(params![
                        id,
                        n,
                        format!("{:032x}", id * 10_000 + n),
                        OS[((c + n / 7) % 8) as usize],
                        KERNELS[(k % 6) as usize],
                        if n % 5 == 4 { "arm64" } else { "amd64" },
                        RUNTIMES[(c % 6) as usize],
                        MASTERS[((c + n % 2) % 10) as usize],
                        CLOUDS[(c % 5) as usize],
                    ])?;
                    capacity.execute(params![id, n, 0, "cpu", CPUS[(k % 5) as usize]])?;
                    capacity.execute(params![id, n, 1, "memory", MEMORY[(k % 4) as usize]])?;
                    capacity.execute(params![id, n, 2, "pods", "110"])?;
                    if c % 50 == 0 {
                        capacity.execute(params![id, n, 3, "nvidia.com/gpu", "8"])?;
                    }
                }
                if v2 {
                    for (i, kind) in KINDS.iter().enumerate() {
                        let total = (c * (i as i64 + 3)) % 400;
                        let age = (total > 0).then_some(c % 9000);
                        workload.execute(params![
                            id,
                            i as i64,
                            kind,
                            total,
                            age,
                            age.map(|a| a * 2)
                        ])?;
                    }
                }
            }
        }
    }
    tx.commit()?;
    conn.execute_batch("ANALYZE;")?;
    Ok(())
}

fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
}

/// The measured part, in its own process.
fn measure(db: &Path, out: &Path) -> Result<(), Box<dyn std::error::Error>> {
    use clap::Parser;
    let config = Config::try_parse_from([
        "stats",
        "--once",
        "--store",
        &format!("sqlite:{}", db.display()),
        "--out",
        out.to_str().ok_or("utf-8 path")?,
        "--date",
        DAY,
    ])?;
    let store = SqliteStore::new(db);
    let output = Output::new(out);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Instant::now();
    let mut ledger = stats::ledger::Ledger::new();
    let mut rng = stats::privacy::os_rng()?;
    let done = runtime.block_on(stats::run::compute(
        &config,
        &store,
        &output,
        &mut ledger,
        config.date.ok_or("date")?,
        &mut rng,
    ))?;
    let elapsed = started.elapsed();
    println!(
        "snapshot {}: {} clusters published; computed and written in {:.1} s; peak RSS {} MiB",
        done.date,
        done.clusters
            .map_or("withheld".to_owned(), |c| c.to_string()),
        elapsed.as_secs_f64(),
        peak_rss_kib().unwrap_or(0) / 1024
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let clusters: i64 = std::env::var("SPARTAKUS_BENCH_CLUSTERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/stats-bench");
    let db = dir.join(format!("reports-{clusters}.sqlite"));
    let out = dir.join(format!("out-{clusters}"));
    if let Ok(child) = std::env::var("SPARTAKUS_BENCH_CHILD") {
        let _ = child;
        return measure(&db, &out);
    }
    std::fs::create_dir_all(&dir)?;
    if !db.is_file() {
        let tmp = dir.join(format!("reports-{clusters}.sqlite.tmp"));
        let _ = std::fs::remove_file(&tmp);
        let started = Instant::now();
        fill(&tmp, clusters)?;
        std::fs::rename(&tmp, &db)?;
        println!(
            "filled {} with {} reports ({clusters} clusters) in {:.1} s ({} MiB)",
            db.display(),
            clusters * REPORTS_PER_CLUSTER,
            started.elapsed().as_secs_f64(),
            std::fs::metadata(&db)?.len() / (1024 * 1024)
        );
    } else {
        println!("reusing {}", db.display());
    }
    let conn = Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    let (reports, nodes): (i64, i64) = conn.query_row(
        "SELECT (SELECT count(*) FROM reports), (SELECT count(*) FROM nodes)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    drop(conn);
    println!("{reports} reports stored, {nodes} nodes in the latest reports");
    let _ = std::fs::remove_dir_all(&out);
    let status = Command::new(std::env::current_exe()?)
        .env("SPARTAKUS_BENCH_CHILD", "1")
        .env("SPARTAKUS_BENCH_CLUSTERS", clusters.to_string())
        .status()?;
    if !status.success() {
        return Err(format!("the measured run failed: {status}").into());
    }
    println!(
        "BigQuery: bigquery-emulator v0.8.1 reports no totalBytesProcessed for query jobs (see tests/stores.rs); the job's query reads only the window's partitions of the columns it names"
    );
    Ok(())
}
