//! The operator's extensions: a JSON object file of string to string, or a directory in
//! which every file whose name does not start with a dot is one pair (file name = key,
//! contents = value, one trailing newline removed), as the original volunteer read them.
//!
//! The rules for keys, values and their number are the report's
//! ([`report::check_extensions`]): they are checked when the volunteer starts, so that a key
//! the collector would refuse is a configuration error, not a failed report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use report::Extension;

/// Why the extensions could not be read or used.
#[derive(Debug, thiserror::Error)]
pub enum ExtensionsError {
    /// The file or directory could not be read.
    #[error("reading {}: {source}", path.display())]
    Read {
        /// What was read.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The file is not a JSON object of strings.
    #[error("{}: expected a JSON object of string to string: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A value read from a directory is not UTF-8.
    #[error("extension {0:?}: the value is not UTF-8 text")]
    NotText(String),
    /// The pairs break a rule of the report (a key, a value's length, their number).
    #[error("{}", .0.join("; "))]
    Rules(Vec<String>),
}

/// Reads the extensions at `path` as (key, value) pairs sorted by key, and checks them against
/// the report's rules.
pub(crate) fn read(path: &Path) -> Result<Vec<(String, String)>, ExtensionsError> {
    let extensions: Vec<Extension> = read_pairs(path)?
        .into_iter()
        .map(|(name, value)| Extension { name, value })
        .collect();
    let broken = report::check_extensions(&extensions);
    if broken.is_empty() {
        return Ok(extensions.into_iter().map(|e| (e.name, e.value)).collect());
    }
    // Name the operator's key rather than a position in a report they have not seen.
    let rules = broken
        .iter()
        .map(|e| {
            let key = e
                .path
                .strip_prefix("extensions[")
                .and_then(|rest| rest.split_once(']'))
                .and_then(|(i, _)| i.parse::<usize>().ok())
                .and_then(|i| extensions.get(i));
            match key {
                Some(ext) if e.path.ends_with(".value") => {
                    format!("extension {:?}: value {}", ext.name, e.rule)
                }
                Some(ext) => format!("extension {:?}: {}", ext.name, e.rule),
                None => format!("{} pairs: {}", extensions.len(), e.rule),
            }
        })
        .collect();
    Err(ExtensionsError::Rules(rules))
}

fn read_pairs(path: &Path) -> Result<BTreeMap<String, String>, ExtensionsError> {
    let read_err = |source| ExtensionsError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    if !meta.is_dir() {
        let bytes = std::fs::read(path).map_err(read_err)?;
        return serde_json::from_slice(&bytes).map_err(|source| ExtensionsError::Json {
            path: path.to_owned(),
            source,
        });
    }
    let mut pairs = BTreeMap::new();
    for entry in std::fs::read_dir(path).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        // Kubernetes mounts Secrets and ConfigMaps with `..data` links and dot folders.
        if name.starts_with('.') || !entry.path().is_file() {
            continue;
        }
        let bytes = std::fs::read(entry.path()).map_err(|source| ExtensionsError::Read {
            path: entry.path(),
            source,
        })?;
        let mut value =
            String::from_utf8(bytes).map_err(|_| ExtensionsError::NotText(name.clone()))?;
        if value.ends_with('\n') {
            value.pop();
        }
        pairs.insert(name, value);
    }
    Ok(pairs)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test fails
mod tests {
    use super::*;

    fn pairs(pairs: Vec<(String, String)>) -> Vec<(String, String)> {
        pairs
    }

    #[test]
    fn a_json_file_is_read_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ext.json");
        std::fs::write(&f, r#"{"example.com/b": "2", "a": "1"}"#).unwrap();
        assert_eq!(
            pairs(read(&f).unwrap()),
            vec![
                ("a".into(), "1".into()),
                ("example.com/b".into(), "2".into())
            ]
        );
        std::fs::write(&f, r#"{"a": 1}"#).unwrap();
        assert!(matches!(read(&f), Err(ExtensionsError::Json { .. })));
    }

    #[test]
    fn a_key_the_report_refuses_is_named_with_the_rule() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ext.json");
        std::fs::write(&f, r#"{"Bad.Domain/a": "1"}"#).unwrap();
        assert_eq!(
            read(&f).unwrap_err().to_string(),
            r#"extension "Bad.Domain/a": not an extension name ([DNS-subdomain/]name)"#
        );
    }

    #[test]
    fn a_directory_gives_one_pair_per_visible_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hello"), "world\n").unwrap();
        std::fs::write(dir.path().join(".hidden"), "no").unwrap();
        std::fs::create_dir(dir.path().join("..data")).unwrap();
        assert_eq!(
            pairs(read(dir.path()).unwrap()),
            vec![("hello".into(), "world".into())]
        );
        std::fs::write(
            dir.path().join("big"),
            "x".repeat(report::MAX_EXTENSION_VALUE + 1),
        )
        .unwrap();
        assert_eq!(
            read(dir.path()).unwrap_err().to_string(),
            r#"extension "big": value longer than 1024 bytes"#
        );
    }

    #[test]
    fn more_extensions_than_a_report_may_carry_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..=report::MAX_EXTENSIONS {
            std::fs::write(dir.path().join(format!("key{i:02}")), "v").unwrap();
        }
        assert_eq!(
            read(dir.path()).unwrap_err().to_string(),
            "65 pairs: more than 64 extensions"
        );
    }
}
