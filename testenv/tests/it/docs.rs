//! The flag tables in the documentation are what each binary's `--help` says.
//!
//! `README.md` and the pages of `docs/` hold one table per binary, wherever it is read, between
//! `<!-- BEGIN FLAGS name -->` and `<!-- END FLAGS name -->`. This test renders the table from
//! `name --help` and fails on any difference; `SPARTAKUS_BLESS=1` rewrites the file that holds it
//! instead. The binaries must be built first (`cargo build --workspace --bins`).

use std::path::{Path, PathBuf};

const BINARIES: [&str; 4] = ["volunteer", "gateway", "ingester", "stats"];

const BEGIN: &str = "<!-- BEGIN FLAGS ";
const END: &str = "<!-- END FLAGS ";

#[derive(Debug, Default)]
struct Flag {
    name: String,
    env: String,
    default: String,
    doc: String,
}

/// Reads clap's help in either layout: long (`--name <VALUE>` on its own line, then doc lines,
/// then `[env: …=]`, `[default: …]`) or compact (doc and notes on the option's line).
fn parse_help(help: &str) -> Vec<Flag> {
    let mut options: Vec<(String, Vec<String>)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        if (2..=6).contains(&indent) && trimmed.starts_with('-') {
            let (spec, rest) = trimmed.split_once("  ").unwrap_or((trimmed, ""));
            let name = spec
                .split([' ', ','])
                .find(|t| t.starts_with("--"))
                .unwrap_or_default()
                .to_string();
            options.push((name, vec![rest.trim().to_string()]));
        } else if let Some((_, text)) = options.last_mut() {
            text.push(trimmed.to_string());
        }
    }
    options
        .into_iter()
        .filter(|(name, _)| !name.is_empty() && name != "--help" && name != "--version")
        .map(|(name, lines)| {
            let all = lines.join(" ");
            let note = |key: &str, stop: char| {
                all.find(key)
                    .map(|i| {
                        let rest = &all[i + key.len()..];
                        rest[..rest.find(stop).unwrap_or(rest.len())].to_string()
                    })
                    .unwrap_or_default()
            };
            let doc = lines
                .iter()
                .map(|l| l.split(" [").next().unwrap_or_default().trim())
                .find(|l| !l.is_empty() && !l.starts_with('['))
                .unwrap_or_default()
                .to_string();
            Flag {
                env: note("[env: ", '='),
                default: note("[default: ", ']'),
                name,
                doc,
            }
        })
        .collect()
}

fn render(flags: &[Flag]) -> String {
    let mut out =
        String::from("| flag | environment | default | meaning |\n| --- | --- | --- | --- |\n");
    for f in flags {
        let code = |s: &str| {
            if s.is_empty() {
                String::new()
            } else {
                format!("`{s}`")
            }
        };
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            f.name,
            code(&f.env),
            code(&f.default),
            f.doc.replace('|', "\\|")
        ));
    }
    out
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `README.md` and every `docs/*.md`, in a stable order.
fn documents() -> Vec<PathBuf> {
    let root = workspace();
    let mut pages: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ is readable")
        .map(|entry| entry.expect("docs/ lists").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "md"))
        .collect();
    pages.sort();
    let mut all = vec![root.join("README.md")];
    all.extend(pages);
    all
}

/// The byte range of `bin`'s table in `text`, if `text` holds it: the lines between its
/// markers, each marker a line of its own (prose may quote a marker inside a line).
fn table_range(text: &str, bin: &str, file: &Path) -> Option<std::ops::Range<usize>> {
    let begin = format!("\n{BEGIN}{bin} -->\n");
    let end = format!("\n{END}{bin} -->");
    let start = text.find(&begin)? + begin.len();
    assert!(
        !text[start..].contains(&begin),
        "{} has two `{}` markers",
        file.display(),
        begin.trim()
    );
    let stop = start
        + text[start - 1..]
            .find(&end)
            .unwrap_or_else(|| panic!("{} has no `{}` marker", file.display(), end.trim()));
    Some(start..stop)
}

fn help_table(bin: &'static str) -> String {
    let out = testenv::Launch::named(bin)
        .arg("--help")
        .run_blocking(std::time::Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{bin} --help: {e}"));
    assert!(out.status.success(), "{bin} --help failed: {}", out.stderr);
    let flags = parse_help(&out.stdout_text());
    assert!(
        flags.len() >= 3 && flags.iter().all(|f| !f.env.is_empty()),
        "{bin}: every flag has an environment variable: {flags:?}"
    );
    render(&flags)
}

#[test]
fn the_flag_tables_match_each_binarys_help() {
    let bless = std::env::var_os("SPARTAKUS_BLESS").is_some();
    let mut docs: Vec<(PathBuf, String)> = documents()
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, text)
        })
        .collect();
    let mut stale = Vec::new();
    for bin in BINARIES {
        let holders: Vec<usize> = (0..docs.len())
            .filter(|&i| table_range(&docs[i].1, bin, &docs[i].0).is_some())
            .collect();
        let [holder] = holders[..] else {
            panic!(
                "`{BEGIN}{bin} -->` must be in exactly one of README.md and docs/*.md; found in {:?}",
                holders.iter().map(|&i| &docs[i].0).collect::<Vec<_>>()
            );
        };
        let (path, text) = &mut docs[holder];
        let range = table_range(text, bin, path).expect("found above");
        let table = help_table(bin);
        if text[range.clone()] != table {
            let shown = path.strip_prefix(workspace()).unwrap_or(path);
            stale.push(format!("{bin} (in {})", shown.display()));
            text.replace_range(range, &table);
            if bless {
                std::fs::write(&*path, &*text)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            }
        }
    }
    assert!(
        bless || stale.is_empty(),
        "flag tables differ from --help for {stale:?}; run with SPARTAKUS_BLESS=1 to update"
    );
}

#[test]
fn every_flag_table_names_a_binary() {
    for path in documents() {
        let text = std::fs::read_to_string(&path).expect("readable");
        for line in text.lines() {
            let Some(rest) = line.strip_prefix(BEGIN).or_else(|| line.strip_prefix(END)) else {
                continue;
            };
            let name = rest.split_whitespace().next().unwrap_or_default();
            assert!(
                BINARIES.contains(&name),
                "{}: `{line}` names no binary of {BINARIES:?}",
                path.display()
            );
        }
    }
}

#[test]
fn help_parsing_reads_the_compact_layout_too() {
    let help = "Options:\n      --period <PERIOD>  Time between reports [env: SPARTAKUS_PERIOD=] [default: 24h]\n  -h, --help  Print help\n";
    let flags = parse_help(help);
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0].name, "--period");
    assert_eq!(flags[0].env, "SPARTAKUS_PERIOD");
    assert_eq!(flags[0].default, "24h");
    assert_eq!(flags[0].doc, "Time between reports");
}

#[test]
fn help_parsing_reads_name_env_default_and_doc() {
    let help = "Options:\n      --listen <LISTEN>\n          Address to listen on\n          \n          [env: SPARTAKUS_LISTEN=]\n          [default: 0.0.0.0:8080]\n\n  -h, --help\n          Print help\n";
    let flags = parse_help(help);
    assert_eq!(flags.len(), 1);
    assert_eq!(flags[0].name, "--listen");
    assert_eq!(flags[0].env, "SPARTAKUS_LISTEN");
    assert_eq!(flags[0].default, "0.0.0.0:8080");
    assert_eq!(flags[0].doc, "Address to listen on");
}

/// The repository paths the docs name: the top-level folders a path may start with.
const TOP: [&str; 14] = [
    "report",
    "stored",
    "plumbing",
    "gateway",
    "ingester",
    "volunteer",
    "stats",
    "testenv",
    "systests",
    "fuzz",
    "k8s",
    "nix",
    "docs",
    ".ci",
];

/// Every repository path the README and the manual name (`ingester/src/consume.rs`,
/// `stored/schema/`) as a path, not a pattern (no `*`, `{`, `…`).
fn named_paths(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for top in TOP {
        let needle = format!("{top}/");
        let mut from = 0;
        while let Some(i) = text[from..].find(&needle) {
            let start = from + i;
            from = start + needle.len();
            // A path starts the word: not `src/gateway/` or `https://…/docs/`.
            let before = text[..start].chars().next_back();
            if before
                .is_some_and(|c| c.is_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | ':'))
            {
                continue;
            }
            let rest = &text[start..];
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-')))
                .unwrap_or(rest.len());
            let path = rest[..end].trim_end_matches('.');
            let next = rest[end..].chars().next();
            if next.is_some_and(|c| matches!(c, '*' | '{' | '…' | '<')) {
                continue;
            }
            out.push(path.to_owned());
        }
    }
    out
}

#[test]
fn every_repository_path_the_docs_name_exists() {
    let root = workspace();
    let mut missing = Vec::new();
    let mut checked = 0;
    for doc in documents() {
        let text = std::fs::read_to_string(&doc).expect("readable");
        for path in named_paths(&text) {
            checked += 1;
            if !root.join(&path).exists() {
                missing.push(format!("{}: {path}", doc.display()));
            }
        }
    }
    assert!(checked > 50, "only {checked} paths found");
    assert!(
        missing.is_empty(),
        "named but not in the repository:\n{}",
        missing.join("\n")
    );
}

#[test]
fn named_paths_are_found_where_a_path_starts_and_patterns_are_left_out() {
    let mut found = named_paths(
        "see `stats/src/store.rs`, stored/schema/. and docs/x.md, not a/docs/y.md or stats/sql/*.sql",
    );
    found.sort();
    assert_eq!(found, ["docs/x.md", "stats/src/store.rs", "stored/schema/"]);
}
