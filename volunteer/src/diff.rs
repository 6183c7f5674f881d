//! `--diff`: what the next report changes relative to the last one delivered, as field paths
//! with old and new values. Pure: two JSON documents in, a list of changes out.
//!
//! Arrays of objects are matched by their identifying field, so a node added in the middle
//! does not shift every later node: nodes by `id` (shown by their index, as IDs are long
//! hashes), the others by the field that names them, shown in the path
//! (`capacity[resource=cpu]`, `workloads[kind=Pod]`, `perNamespace[min=2]`,
//! `extensions[name=…]`, `skipped[section=…]`). Other arrays are compared index by index.

use std::fmt;
use std::fmt::Write;

use serde_json::Value;

use crate::status::{Status, StatusError, key, sha256_hex};

/// Top-level fields that differ in every report.
pub(crate) const VOLATILE: [&str; 2] = ["reportID", "timestamp"];

/// Fields that identify an element of an array of objects, in order of preference.
const KEYS: [&str; 6] = ["id", "resource", "name", "kind", "section", "min"];

/// One field that changed.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Change {
    /// Its path, e.g. `nodes[3].kubeletVersion`.
    pub(crate) path: String,
    /// The value in the last delivered report; `None`: absent.
    pub(crate) old: Option<Value>,
    /// The value in the next report; `None`: absent.
    pub(crate) new: Option<Value>,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |v: &Option<Value>| match v {
            Some(v) => v.to_string(),
            None => "(absent)".to_owned(),
        };
        write!(
            f,
            "{}: {} -> {}",
            self.path,
            show(&self.old),
            show(&self.new)
        )
    }
}

/// The changes from `old` to `new`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Diff {
    /// Changes to the cluster's data, in document order.
    pub(crate) changes: Vec<Change>,
    /// Changes of [`VOLATILE`] fields, which every report has.
    pub(crate) volatile: Vec<Change>,
}

/// Compares two reports (or any JSON documents).
pub(crate) fn diff(old: &Value, new: &Value) -> Diff {
    let mut all = Vec::new();
    walk("", Some(old), Some(new), &mut all);
    let (volatile, changes) = all
        .into_iter()
        .partition(|c| VOLATILE.contains(&c.path.as_str()));
    Diff { changes, volatile }
}

/// Why `--diff` cannot compare.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// The stored body cannot be read back.
    #[error(transparent)]
    Status(#[from] StatusError),
    /// The stored body is not JSON.
    #[error("the last delivered body in ConfigMap {0} is not JSON")]
    Json(String, #[source] serde_json::Error),
}

/// What `--diff` prints: the changes from the last delivered report recorded in `status`
/// (read from ConfigMap `configmap`; `None`: there is none) to `next` (the body that
/// would be sent).
pub(crate) fn explain(
    configmap: &str,
    status: Option<&Status>,
    next: &[u8],
) -> Result<String, DiffError> {
    let mut out = String::new();
    let never = |out: &mut String, why: &str| {
        let _ = writeln!(
            out,
            "{why}: every field of the next report ({} bytes) would be new.",
            next.len()
        );
    };
    match status {
        None => never(
            &mut out,
            &format!("No status in ConfigMap {configmap} yet, so no report to compare with"),
        ),
        Some(status) if status.get(key::LAST_DELIVERED).is_none() => never(
            &mut out,
            &format!(
                "ConfigMap {configmap} records no delivered report (the last attempt, at {}, {})",
                status.get(key::LAST_ATTEMPT).unwrap_or("unknown"),
                status.get(key::OUTCOME).unwrap_or("unknown")
            ),
        ),
        Some(status) => {
            let get = |k| status.get(k).unwrap_or("unknown");
            let _ = writeln!(
                out,
                "Compared with the report delivered at {} (reportID {}, {} bytes, SHA-256 {}), from ConfigMap {configmap}:",
                get(key::LAST_DELIVERED),
                get(key::LAST_DELIVERED_REPORT_ID),
                get(key::LAST_DELIVERED_BYTES),
                get(key::LAST_DELIVERED_SHA256),
            );
            match status.delivered_body()? {
                None => {
                    let _ = writeln!(
                        out,
                        "  only its digest is kept ({}), so fields cannot be compared. The next report is {} bytes, SHA-256 {}; the digests differ in any case, as every report has a new reportID and timestamp.",
                        get(key::LAST_DELIVERED_BODY),
                        next.len(),
                        sha256_hex(next)
                    );
                }
                Some(old) => {
                    let old: Value = serde_json::from_slice(&old)
                        .map_err(|e| DiffError::Json(configmap.to_owned(), e))?;
                    // The caller's own serialized report: JSON by construction.
                    let new: Value = serde_json::from_slice(next).unwrap_or(Value::Null);
                    let d = diff(&old, &new);
                    for c in &d.changes {
                        let _ = writeln!(out, "  {c}");
                    }
                    let _ = match d.changes.len() {
                        0 => writeln!(
                            out,
                            "Nothing would change but what changes in every report:"
                        ),
                        n => writeln!(out, "{n} field(s) would change; and, as in every report:"),
                    };
                    for c in &d.volatile {
                        let _ = writeln!(out, "  {c}");
                    }
                }
            }
        }
    }
    let _ = writeln!(out, "Nothing was sent.");
    Ok(out)
}

fn field(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

fn walk(path: &str, old: Option<&Value>, new: Option<&Value>, out: &mut Vec<Change>) {
    match (old, new) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            // In name order, whatever order the maps keep.
            let names: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for name in names {
                walk(&field(path, name), a.get(name), b.get(name), out);
            }
        }
        (Some(Value::Array(a)), Some(Value::Array(b))) => match key_of(a, b) {
            Some(key) => keyed(path, key, a, b, out),
            None => {
                for i in 0..a.len().max(b.len()) {
                    walk(&format!("{path}[{i}]"), a.get(i), b.get(i), out);
                }
            }
        },
        (a, b) if a == b => {}
        (a, b) => out.push(Change {
            path: path.to_owned(),
            old: a.cloned(),
            new: b.cloned(),
        }),
    }
}

/// The field that identifies every element of both arrays uniquely, if there is one.
fn key_of(a: &[Value], b: &[Value]) -> Option<&'static str> {
    if a.is_empty() && b.is_empty() {
        return None;
    }
    KEYS.into_iter().find(|key| {
        [a, b].iter().all(|items| {
            let mut seen = std::collections::HashSet::new();
            items.iter().all(|v| {
                v.get(*key)
                    .is_some_and(|k| !k.is_object() && seen.insert(k.to_string()))
            })
        })
    })
}

fn keyed(path: &str, key: &str, a: &[Value], b: &[Value], out: &mut Vec<Change>) {
    let segment = |i: usize, v: &Value| {
        if key == "id" {
            format!("{path}[{i}]")
        } else {
            let k = &v[key];
            format!(
                "{path}[{key}={}]",
                k.as_str().map_or_else(|| k.to_string(), str::to_owned)
            )
        }
    };
    for (i, new) in b.iter().enumerate() {
        let old = a.iter().find(|o| o[key] == new[key]);
        walk(&segment(i, new), old, Some(new), out);
    }
    for (i, old) in a.iter().enumerate() {
        if !b.iter().any(|n| n[key] == old[key]) {
            walk(&segment(i, old), Some(old), None, out);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test fails
mod tests {
    use super::*;
    use serde_json::json;

    fn lines(d: &Diff) -> Vec<String> {
        d.changes.iter().map(ToString::to_string).collect()
    }

    fn node(id: &str, kubelet: &str, cpu: &str) -> Value {
        json!({"id": id, "kubeletVersion": kubelet,
               "capacity": [{"resource": "cpu", "value": cpu}, {"resource": "pods", "value": "110"}]})
    }

    #[test]
    fn a_changed_node_field_is_shown_with_its_path_and_both_values() {
        let old = json!({"reportID": "a", "timestamp": "1", "clusterID": "c",
                         "nodes": [node("n0", "v1.36.1", "4"), node("n1", "v1.36.1", "4")]});
        let new = json!({"reportID": "b", "timestamp": "2", "clusterID": "c",
                         "nodes": [node("n0", "v1.36.1", "4"), node("n1", "v1.37.2", "8")]});
        let d = diff(&old, &new);
        assert_eq!(
            lines(&d),
            [
                r#"nodes[1].capacity[resource=cpu].value: "4" -> "8""#,
                r#"nodes[1].kubeletVersion: "v1.36.1" -> "v1.37.2""#,
            ]
        );
        let volatile: Vec<&str> = d.volatile.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(volatile, ["reportID", "timestamp"]);
    }

    #[test]
    fn nodes_are_matched_by_id_so_an_added_node_shifts_nothing() {
        let old = json!({"nodes": [node("a", "v1", "4"), node("c", "v1", "4")]});
        let new =
            json!({"nodes": [node("a", "v1", "4"), node("b", "v1", "4"), node("c", "v1", "4")]});
        let d = diff(&old, &new);
        assert_eq!(d.changes.len(), 1, "{:?}", lines(&d));
        assert_eq!(d.changes[0].path, "nodes[1]");
        assert_eq!(d.changes[0].old, None);
        assert_eq!(d.changes[0].new, Some(node("b", "v1", "4")));
        let back = diff(&new, &old);
        assert_eq!(
            lines(&back)[0],
            format!("nodes[1]: {} -> (absent)", node("b", "v1", "4"))
        );
    }

    #[test]
    fn added_and_removed_fields_and_sections_are_shown() {
        let old = json!({"namespaces": 12, "masterVersion": "v1.36.1",
                         "workloads": [{"kind": "Pod", "total": 8}]});
        let new = json!({"namespaces": 13,
                         "workloads": [{"kind": "Pod", "total": 9}, {"kind": "Job", "total": 1}],
                         "skipped": [{"section": "masterVersion", "reason": "omitted"}]});
        assert_eq!(
            lines(&diff(&old, &new)),
            [
                r#"masterVersion: "v1.36.1" -> (absent)"#,
                "namespaces: 12 -> 13",
                r#"skipped: (absent) -> [{"reason":"omitted","section":"masterVersion"}]"#,
                "workloads[kind=Pod].total: 8 -> 9",
                r#"workloads[kind=Job]: (absent) -> {"kind":"Job","total":1}"#,
            ]
        );
    }

    #[test]
    fn identical_reports_differ_only_in_volatile_fields() {
        let old = json!({"reportID": "a", "timestamp": "1", "nodes": [node("a", "v1", "4")]});
        let mut new = old.clone();
        new["reportID"] = json!("b");
        new["timestamp"] = json!("2");
        let d = diff(&old, &new);
        assert!(d.changes.is_empty());
        assert_eq!(d.volatile.len(), 2);
    }

    fn status_of(body: &[u8], limit: usize) -> Status {
        let attempt = crate::status::Attempt {
            at: jiff::Timestamp::from_second(1_800_000_000).unwrap(),
            outcome: crate::status::Outcome::Delivered,
            http_status: Some(204),
            attempts: Some(1),
            error: None,
            report_id: "r-old".into(),
            body,
            collector_host: "c.example.org".into(),
            next_due: None,
            period: std::time::Duration::ZERO,
            version: "v0.1.0".into(),
            version_skew: None,
        };
        let (data, binary) = crate::status::to_data(None, &attempt, limit);
        Status {
            configmap: "ns/cm".into(),
            data,
            body_gzip: binary.get(crate::status::BODY_KEY).map(|b| b.0.clone()),
        }
    }

    #[test]
    fn the_explanation_lists_changes_then_the_volatile_fields() {
        let old = br#"{"reportID":"r-old","timestamp":"1","namespaces":3}"#;
        let new = br#"{"reportID":"r-new","timestamp":"2","namespaces":4}"#;
        let text = explain("ns/cm", Some(&status_of(old, 1 << 20)), new).unwrap();
        assert_eq!(
            text,
            format!(
                "Compared with the report delivered at 2027-01-15T08:00:00Z (reportID r-old, {} bytes, SHA-256 {}), from ConfigMap ns/cm:\n  namespaces: 3 -> 4\n1 field(s) would change; and, as in every report:\n  reportID: \"r-old\" -> \"r-new\"\n  timestamp: \"1\" -> \"2\"\nNothing was sent.\n",
                old.len(),
                sha256_hex(old)
            )
        );
    }

    #[test]
    fn without_a_kept_body_or_a_status_the_explanation_says_so() {
        let old = br#"{"namespaces":3}"#;
        let text = explain("ns/cm", Some(&status_of(old, 1)), b"{}").unwrap();
        assert!(
            text.contains("only its digest is kept (digest only:"),
            "{text}"
        );
        let text = explain("ns/cm", None, b"{}").unwrap();
        assert!(
            text.starts_with("No status in ConfigMap ns/cm yet"),
            "{text}"
        );
        assert!(text.ends_with("Nothing was sent.\n"), "{text}");
    }

    #[test]
    fn arrays_without_a_unique_key_are_compared_by_index() {
        let old = json!({"x": [{"kind": "A", "v": 1}, {"kind": "A", "v": 2}]});
        let new = json!({"x": [{"kind": "A", "v": 1}, {"kind": "A", "v": 3}]});
        assert_eq!(lines(&diff(&old, &new)), ["x[1].v: 2 -> 3"]);
    }
}
