//! What the sink holds, against what the volunteers were told.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use super::load::{Fate, Sent};
use super::{Accounting, Scenario};

/// One stored row of a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub cluster_id: String,
    pub timestamp: String,
    pub master_version: String,
    /// Node IDs with their capacity entries; `None` where the sink cannot be read back
    /// (the emulator mangles records nested in repeated records: testenv/tests/it/bigquery.rs).
    pub nodes: Option<Vec<(String, usize)>>,
}

/// Every report in the SQLite file, by report ID.
pub fn sqlite(path: &Path) -> Result<HashMap<String, Vec<Stored>>, String> {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| format!("opening {}: {e}", path.display()))?;
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(|e| e.to_string())?;
    let e = |e: rusqlite::Error| format!("reading {}: {e}", path.display());
    let mut nodes: HashMap<i64, Vec<(String, usize)>> = HashMap::new();
    let mut stmt = conn
        .prepare(
            "SELECT n.report, n.node_id,
                    (SELECT count(*) FROM capacity c WHERE c.report = n.report AND c.node = n.idx)
             FROM nodes n ORDER BY n.report, n.idx",
        )
        .map_err(e)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(e)?;
    for row in rows {
        let (report, node, capacity) = row.map_err(e)?;
        nodes
            .entry(report)
            .or_default()
            .push((node, usize::try_from(capacity).unwrap_or(0)));
    }
    let mut out: HashMap<String, Vec<Stored>> = HashMap::new();
    let mut stmt = conn
        .prepare("SELECT id, report_id, cluster_id, timestamp, master_version FROM reports")
        .map_err(e)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, Option<String>>(4)?,
            ))
        })
        .map_err(e)?;
    for row in rows {
        let (id, report_id, cluster_id, timestamp, master_version) = row.map_err(e)?;
        out.entry(report_id).or_default().push(Stored {
            cluster_id,
            timestamp: timestamp.unwrap_or_default(),
            master_version: master_version.unwrap_or_default(),
            nodes: Some(nodes.remove(&id).unwrap_or_default()),
        });
    }
    Ok(out)
}

/// Every row of the emulator's table, by report ID, through a query (scalar columns only).
pub async fn bigquery(
    endpoint: &str,
    project: &str,
    dataset: &str,
    table: &str,
) -> Result<HashMap<String, Vec<Stored>>, String> {
    let http = reqwest::Client::new();
    let url = format!("{endpoint}/bigquery/v2/projects/{project}/queries");
    let response: serde_json::Value = http
        .post(&url)
        .json(&serde_json::json!({
            "query": format!("SELECT reportID, clusterID, timestamp, masterVersion FROM `{project}.{dataset}.{table}`"),
            "useLegacySql": false,
            "maxResults": 10_000_000,
            "timeoutMs": 60_000,
        }))
        .send()
        .await
        .map_err(|e| format!("querying the emulator: {e}"))?
        .json()
        .await
        .map_err(|e| format!("the emulator's answer: {e}"))?;
    if response.get("error").is_some() || response["jobComplete"] == false {
        return Err(format!("the emulator's answer: {response}"));
    }
    if response.get("pageToken").is_some() {
        return Err("the emulator paged its answer; raise maxResults".into());
    }
    let mut out: HashMap<String, Vec<Stored>> = HashMap::new();
    let cell = |row: &serde_json::Value, i: usize| {
        row["f"][i]["v"].as_str().unwrap_or_default().to_owned()
    };
    for row in response["rows"].as_array().into_iter().flatten() {
        out.entry(cell(row, 0)).or_default().push(Stored {
            cluster_id: cell(row, 1),
            timestamp: cell(row, 2),
            master_version: cell(row, 3),
            nodes: None,
        });
    }
    Ok(out)
}

/// Compares what was sent and acknowledged with what is stored.
#[allow(clippy::too_many_arguments)]
pub fn account(
    scenario: &Scenario,
    sent: Vec<Sent>,
    stored: &HashMap<String, Vec<Stored>>,
    stream_messages: u64,
    dead_lettered: u64,
    events: Vec<String>,
    load_time: Duration,
    total_time: Duration,
) -> Accounting {
    let ids: HashSet<&str> = sent.iter().map(|s| s.report_id.as_str()).collect();
    let mut a = Accounting {
        sink: scenario.sink,
        seed: scenario.load.seed,
        sent: sent.len(),
        acknowledged: 0,
        gave_up: Vec::new(),
        duplicate_sends: 0,
        duplicate_sends_failed: 0,
        attempts: 0,
        stored: 0,
        duplicates: 0,
        lost: Vec::new(),
        mismatched: Vec::new(),
        unexpected: stored
            .keys()
            .filter(|id| !ids.contains(id.as_str()))
            .cloned()
            .collect(),
        gave_up_but_stored: 0,
        stream_messages,
        dead_lettered,
        events,
        errors_logged: Vec::new(),
        load_time,
        total_time,
    };
    for s in &sent {
        a.attempts += u64::from(s.attempts);
        if let Some(dup) = &s.duplicate {
            a.duplicate_sends += 1;
            a.duplicate_sends_failed += usize::from(dup.is_err());
        }
        let rows = stored
            .get(&s.report_id)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if !rows.is_empty() {
            a.stored += 1;
            a.duplicates += rows.len() - 1;
        }
        let expected = Stored {
            cluster_id: s.cluster_id.clone(),
            timestamp: s.timestamp.clone(),
            master_version: s.master_version.clone(),
            nodes: Some(s.nodes.clone()),
        };
        let same = |r: &Stored| {
            r.cluster_id == expected.cluster_id
                && r.timestamp == expected.timestamp
                && r.master_version == expected.master_version
                && (r.nodes.is_none() || r.nodes == expected.nodes)
        };
        if rows.iter().any(|r| !same(r)) {
            a.mismatched.push(s.report_id.clone());
        }
        match &s.fate {
            Fate::Acknowledged => {
                a.acknowledged += 1;
                if rows.is_empty() {
                    a.lost.push(s.report_id.clone());
                }
            }
            Fate::GaveUp(error) => {
                a.gave_up.push((s.report_id.clone(), error.clone()));
                a.gave_up_but_stored += usize::from(!rows.is_empty());
            }
        }
    }
    a
}
