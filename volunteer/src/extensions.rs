//! The operator's extensions: a JSON object file of string to string, or a directory in
//! which every file whose name does not start with a dot is one pair (file name = key,
//! contents = value, one trailing newline removed), as the original volunteer read them.
//!
//! Keys follow the original rules (Kubernetes "qualified names"): an optional
//! DNS-subdomain prefix and `/`, then a name of at most 63 characters of
//! `[A-Za-z0-9-_.]` starting and ending with a letter or digit, e.g.
//! `example.com/hello`. Values are at most [`MAX_VALUE_LEN`] bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Longest value accepted.
pub const MAX_VALUE_LEN: usize = 1024;

/// Why the extensions could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ExtensionsError {
    /// The file or directory could not be read.
    #[error("reading extensions {}: {source}", path.display())]
    Read {
        /// What was read.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The file is not a JSON object of strings.
    #[error("extensions {}: expected a JSON object of string to string: {source}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A key breaks the naming rules.
    #[error(
        "extension key {0:?}: expected [DNS-subdomain/]name, name at most 63 characters of [A-Za-z0-9-_.] starting and ending alphanumeric"
    )]
    Key(String),
    /// A value is too long or not UTF-8.
    #[error("extension {0:?}: value must be UTF-8 text of at most {MAX_VALUE_LEN} bytes")]
    Value(String),
}

/// Reads the extensions at `path`, sorted by key.
pub fn read(path: &Path) -> Result<Vec<(String, String)>, ExtensionsError> {
    let read_err = |source| ExtensionsError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read_err)?;
    let mut pairs = BTreeMap::new();
    if meta.is_dir() {
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
                String::from_utf8(bytes).map_err(|_| ExtensionsError::Value(name.clone()))?;
            if value.ends_with('\n') {
                value.pop();
            }
            pairs.insert(name, value);
        }
    } else {
        let bytes = std::fs::read(path).map_err(read_err)?;
        pairs = serde_json::from_slice(&bytes).map_err(|source| ExtensionsError::Json {
            path: path.to_owned(),
            source,
        })?;
    }
    for (key, value) in &pairs {
        if !is_qualified_name(key) {
            return Err(ExtensionsError::Key(key.clone()));
        }
        if value.len() > MAX_VALUE_LEN {
            return Err(ExtensionsError::Value(key.clone()));
        }
    }
    Ok(pairs.into_iter().collect())
}

/// `[prefix/]name` as Kubernetes label keys.
pub fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    name_ok && prefix.is_none_or(is_dns_subdomain)
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a panic is how a test fails
mod tests {
    use super::*;

    #[test]
    fn keys_follow_the_qualified_name_rules() {
        for ok in ["hello", "example.com/hello", "a.b-c/x_y.z", "A1"] {
            assert!(is_qualified_name(ok), "{ok}");
        }
        for bad in [
            "",
            "/x",
            "Example.com/x",
            "a/b/c",
            "-x",
            "x-",
            "a..b/x",
            &"x".repeat(64),
        ] {
            assert!(!is_qualified_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_json_file_is_read_sorted() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("ext.json");
        std::fs::write(&f, r#"{"example.com/b": "2", "a": "1"}"#).unwrap();
        assert_eq!(
            read(&f).unwrap(),
            vec![
                ("a".into(), "1".into()),
                ("example.com/b".into(), "2".into())
            ]
        );
        std::fs::write(&f, r#"{"a": 1}"#).unwrap();
        assert!(matches!(read(&f), Err(ExtensionsError::Json { .. })));
        std::fs::write(&f, r#"{"Bad.Domain/a": "1"}"#).unwrap();
        assert!(matches!(read(&f), Err(ExtensionsError::Key(_))));
    }

    #[test]
    fn a_directory_gives_one_pair_per_visible_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("hello"), "world\n").unwrap();
        std::fs::write(dir.path().join(".hidden"), "no").unwrap();
        std::fs::create_dir(dir.path().join("..data")).unwrap();
        assert_eq!(
            read(dir.path()).unwrap(),
            vec![("hello".into(), "world".into())]
        );
        std::fs::write(dir.path().join("big"), "x".repeat(MAX_VALUE_LEN + 1)).unwrap();
        assert!(matches!(read(dir.path()), Err(ExtensionsError::Value(_))));
    }
}
