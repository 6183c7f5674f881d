//! The README's flag table for `stats` (between `<!-- BEGIN FLAGS stats -->` and
//! `<!-- END FLAGS stats -->`) names every flag of `stats --help` with its variable and default.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn the_readme_lists_every_flag_with_its_variable_and_default() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let start = readme
        .find("<!-- BEGIN FLAGS stats -->")
        .expect("README has the stats flag table");
    let end = readme[start..].find("<!-- END FLAGS stats -->").unwrap() + start;
    let table = &readme[start..end];
    let out = Command::new(env!("CARGO_BIN_EXE_stats"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    let mut current: Option<String> = None;
    let mut checked = 0;
    for line in help.lines() {
        let t = line.trim_start();
        if t.starts_with("--") {
            current = t.split([' ', ',']).next().map(str::to_owned);
        } else if let (Some(flag), Some(env)) = (&current, t.strip_prefix("[env: ")) {
            let env = env.trim_end_matches(['=', ']']);
            let row = table
                .lines()
                .find(|r| r.starts_with(&format!("| `{flag}` |")))
                .unwrap_or_else(|| panic!("README lacks {flag}"));
            assert!(row.contains(&format!("`{env}`")), "{flag}: {row}");
            checked += 1;
        } else if let (Some(flag), Some(default)) = (&current, t.strip_prefix("[default: ")) {
            let default = default.trim_end_matches(']');
            let row = table
                .lines()
                .find(|r| r.starts_with(&format!("| `{flag}` |")))
                .unwrap();
            assert!(
                row.contains(&format!("`{default}`")),
                "{flag} default {default}: {row}"
            );
        }
    }
    assert!(checked >= 10, "{checked} flags checked");
    assert_eq!(
        table.lines().filter(|l| l.starts_with("| `--")).count(),
        checked
    );
}
