//! The flag tables in README.md are what each binary's `--help` says.
//!
//! The README holds one table per binary between `<!-- BEGIN FLAGS name -->` and
//! `<!-- END FLAGS name -->`. This test renders the table from `name --help` and fails on any
//! difference; `SPARTAKUS_BLESS=1` rewrites the README instead.

use std::path::PathBuf;
use std::process::Command;

const BINARIES: [&str; 3] = ["volunteer", "gateway", "ingester"];

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

fn readme_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../README.md")
}

#[test]
fn the_readme_flag_tables_match_each_binarys_help() {
    let path = readme_path();
    let mut readme = std::fs::read_to_string(&path).expect("README.md is readable");
    let bless = std::env::var_os("SPARTAKUS_BLESS").is_some();
    let mut stale = Vec::new();
    for bin in BINARIES {
        let exe = testenv::workspace_bin(bin).expect("the workspace's binaries are built");
        let out = Command::new(&exe).arg("--help").output().expect("runs");
        assert!(out.status.success(), "{bin} --help failed");
        let flags = parse_help(&String::from_utf8_lossy(&out.stdout));
        assert!(
            flags.len() >= 3 && flags.iter().all(|f| !f.env.is_empty()),
            "{bin}: every flag has an environment variable: {flags:?}"
        );
        let table = render(&flags);
        let begin = format!("<!-- BEGIN FLAGS {bin} -->\n");
        let end = format!("<!-- END FLAGS {bin} -->");
        let start = readme
            .find(&begin)
            .unwrap_or_else(|| panic!("README.md has no `{}` marker", begin.trim()))
            + begin.len();
        let stop = start
            + readme[start..]
                .find(&end)
                .unwrap_or_else(|| panic!("README.md has no `{end}` marker"));
        if readme[start..stop] != table {
            stale.push(bin);
            readme.replace_range(start..stop, &table);
        }
    }
    if bless {
        std::fs::write(&path, readme).expect("README.md is writable");
    } else {
        assert!(
            stale.is_empty(),
            "README flag tables differ from --help for {stale:?}; run with SPARTAKUS_BLESS=1 to update"
        );
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
