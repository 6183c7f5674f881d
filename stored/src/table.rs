//! `bigquery://PROJECT/DATASET/TABLE`: one parser for the ingester's `--sink` and stats'
//! `--store`, so that a table one accepts the other accepts too.
//!
//! The characters are BigQuery's own rules, checked at start-up so that a name BigQuery would
//! refuse fails in one line naming the part and the rule instead of at the first API call:
//!
//! - project: 6 to 30 of `a-z`, `0-9` and `-`, starting with a letter and not ending with `-`,
//!   optionally after a `domain.example:` prefix (domain-scoped projects);
//! - dataset: 1 to 1,024 of `A-Z`, `a-z`, `0-9` and `_`;
//! - table: 1 to 1,024 bytes of letters, digits (any script), `_`, `-` and spaces. BigQuery
//!   also allows combining marks and other connector or dash punctuation; those are refused here
//!   (a narrower set, never a wider one).
//!
//! Every accepted name is safe inside backquotes in SQL: none holds a backquote or a backslash.

use std::fmt;
use std::str::FromStr;

/// The deduplicating view's name is the table's with this suffix, in the table's dataset.
pub const VIEW_SUFFIX: &str = "_deduplicated";

/// The erasure tombstones table's name is the table's with this suffix, in its dataset.
pub const TOMBSTONES_SUFFIX: &str = "_tombstones";

/// A fully qualified BigQuery table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    /// The Google Cloud project.
    pub project: String,
    /// The dataset.
    pub dataset: String,
    /// The table (its view and tombstones are named from it with [`VIEW_SUFFIX`] and
    /// [`TOMBSTONES_SUFFIX`]).
    pub table: String,
}

/// Why a table reference is refused: the part and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadTableRef(String);

impl TableRef {
    /// Parses `PROJECT/DATASET/TABLE` (the part after `bigquery://`).
    pub fn parse(s: &str) -> Result<Self, BadTableRef> {
        let parts: Vec<&str> = s.split('/').collect();
        let [project, dataset, table] = parts[..] else {
            return Err(BadTableRef(format!(
                "{s:?}: expected PROJECT/DATASET/TABLE"
            )));
        };
        if !valid_project(project) {
            return Err(BadTableRef(format!(
                "project {project:?}: 6 to 30 of a-z, 0-9 and '-', starting with a letter and not ending with '-' (optionally after a 'domain.example:' prefix)"
            )));
        }
        if !valid_dataset(dataset) {
            return Err(BadTableRef(format!(
                "dataset {dataset:?}: 1 to 1024 of A-Z, a-z, 0-9 and '_' (BigQuery allows no '-' or '.' in a dataset name)"
            )));
        }
        // The longer of the two derived names must fit too.
        let longest = table.len() + VIEW_SUFFIX.len().max(TOMBSTONES_SUFFIX.len());
        if !valid_table(table) || longest > 1024 {
            return Err(BadTableRef(format!(
                "table {table:?}: 1 to {} bytes of letters, digits, '_', '-' and spaces (BigQuery allows no '.' in a table name)",
                1024 - VIEW_SUFFIX.len().max(TOMBSTONES_SUFFIX.len())
            )));
        }
        Ok(TableRef {
            project: project.to_owned(),
            dataset: dataset.to_owned(),
            table: table.to_owned(),
        })
    }

    /// `project.dataset.table` quoted for SQL, the table's name with `suffix` appended.
    pub fn sql_name(&self, suffix: &str) -> String {
        format!("`{}.{}.{}{suffix}`", self.project, self.dataset, self.table)
    }

    /// The deduplicating view, quoted for SQL.
    pub fn view_sql(&self) -> String {
        self.sql_name(VIEW_SUFFIX)
    }

    /// The view's table ID (in the same dataset).
    pub fn view_id(&self) -> String {
        format!("{}{VIEW_SUFFIX}", self.table)
    }

    /// The tombstones table's ID (in the same dataset).
    pub fn tombstones_id(&self) -> String {
        format!("{}{TOMBSTONES_SUFFIX}", self.table)
    }
}

impl FromStr for TableRef {
    type Err = BadTableRef;
    fn from_str(s: &str) -> Result<Self, BadTableRef> {
        TableRef::parse(s)
    }
}

impl fmt::Display for TableRef {
    /// `bigquery://PROJECT/DATASET/TABLE`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bigquery://{}/{}/{}",
            self.project, self.dataset, self.table
        )
    }
}

fn valid_project(p: &str) -> bool {
    let (domain, id) = match p.rsplit_once(':') {
        Some((domain, id)) => (Some(domain), id),
        None => (None, p),
    };
    let domain_ok = domain.is_none_or(|d| {
        !d.is_empty()
            && d.len() <= 253
            && d.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
    });
    domain_ok
        && (6..=30).contains(&id.len())
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn valid_dataset(d: &str) -> bool {
    (1..=1024).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn valid_table(t: &str) -> bool {
    !t.is_empty()
        && t.chars()
            .all(|c| c.is_alphanumeric() || c == '_' || c == '-' || c == ' ')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_reference_names_project_dataset_and_table_and_derives_its_view_and_tombstones() {
        let t: TableRef = "my-proj/spartakus/reports".parse().unwrap();
        assert_eq!(t.project, "my-proj");
        assert_eq!(t.view_sql(), "`my-proj.spartakus.reports_deduplicated`");
        assert_eq!(t.view_id(), "reports_deduplicated");
        assert_eq!(t.tombstones_id(), "reports_tombstones");
        assert_eq!(t.to_string(), "bigquery://my-proj/spartakus/reports");
        assert_eq!(
            t.to_string()
                .strip_prefix("bigquery://")
                .unwrap()
                .parse::<TableRef>(),
            Ok(t)
        );
    }

    #[test]
    fn names_bigquery_allows_are_accepted() {
        for ok in [
            "spartakus-test/spartakus/reports",
            "example.com:my-project/d_1/t",
            "abcdef/D/reports-v2",
            "abcdef/d/Отчёты 2026",
            "abcdef/d/報告",
        ] {
            assert!(ok.parse::<TableRef>().is_ok(), "{ok}");
        }
    }

    #[test]
    fn names_bigquery_refuses_are_refused_naming_the_part_and_the_rule() {
        for (bad, part) in [
            ("my-proj/my-data/t", "dataset"),
            ("my-proj/d/reports.v2", "table"),
            ("my-proj/d/a`b", "table"),
            ("my-proj/d/a\\b", "table"),
            ("p/d/t", "project"),
            ("My-Proj/d/t", "project"),
            ("my-proj-/d/t", "project"),
            ("1-proj-x/d/t", "project"),
            ("my-proj/d", "PROJECT/DATASET/TABLE"),
            ("my-proj/d/t/x", "PROJECT/DATASET/TABLE"),
            ("my-proj//t", "dataset"),
        ] {
            let e = bad.parse::<TableRef>().unwrap_err().to_string();
            assert!(e.contains(part), "{bad}: {e}");
        }
        let long = format!("abcdef/d/{}", "t".repeat(1020));
        assert!(
            long.parse::<TableRef>().is_err(),
            "its view's name would be too long"
        );
    }
}
