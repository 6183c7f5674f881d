//! One NATS release, named once: `testenv/nats/go.mod` requires it and `testenv/build.sh` builds
//! the tests' nats-server from there. Everything else that names a release follows it, and this
//! test fails when one does not: the image in `k8s/` (an exact tag, never a floating one), the
//! flake's pinned build (`nix/nats-server.nix`, used by `flake.nix` instead of nixpkgs'), and
//! the versions the docs state. The module shared by etcd and kube-apiserver must not name it
//! again, or two builds could disagree.

use std::path::{Path, PathBuf};

const MODULE: &str = "github.com/nats-io/nats-server/v2";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// Files under `dir` (recursively) whose name ends with one of `suffixes`, relative to the root.
fn files(dir: &str, suffixes: &[&str], out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(root().join(dir)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("{dir}/{name}");
        if entry.path().is_dir() {
            files(&rel, suffixes, out);
        } else if suffixes.iter().any(|s| name.ends_with(s)) {
            out.push(rel);
        }
    }
}

/// The release `testenv/nats/go.mod` requires, without the `v` (`2.15.3`).
fn pinned() -> String {
    let go_mod = read("testenv/nats/go.mod");
    let versions: Vec<&str> = go_mod
        .lines()
        .filter_map(|l| l.trim().strip_prefix(MODULE)?.trim().strip_prefix('v'))
        .map(|rest| rest.split_whitespace().next().unwrap_or_default())
        .collect();
    assert_eq!(
        versions.len(),
        1,
        "testenv/nats/go.mod must require {MODULE} exactly once: {versions:?}"
    );
    let version = versions[0].to_string();
    let parts: Vec<&str> = version.split('.').collect();
    assert!(
        parts.len() == 3 && parts.iter().all(|p| p.parse::<u32>().is_ok()),
        "testenv/nats/go.mod: {MODULE} v{version} is not a release (vMAJOR.MINOR.PATCH)"
    );
    assert!(
        go_mod.lines().any(|l| l.trim() == format!("tool {MODULE}")),
        "testenv/nats/go.mod must declare `tool {MODULE}`"
    );
    version
}

/// Each `WORD<sep>VERSION` in `text` (VERSION: digits and dots, optional leading `v`), as
/// (line number, version without `v`).
fn mentions(text: &str, word: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let mut rest = line;
        while let Some(at) = rest.find(word) {
            rest = &rest[at + word.len()..];
            let after = rest.trim_start_matches('v');
            let version: String = after
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            let version = version.trim_end_matches('.');
            if version.starts_with(|c: char| c.is_ascii_digit()) && version.contains('.') {
                found.push((n + 1, version.to_string()));
            }
        }
    }
    found
}

#[test]
fn testenv_builds_nats_server_from_its_own_module_only() {
    pinned();
    let shared = read("testenv/go.mod");
    assert!(
        !shared.contains("nats-server") && !shared.contains("nats-io/"),
        "testenv/go.mod (etcd, kube-apiserver) must not name nats-server or its dependencies: \
         testenv/nats/go.mod owns them"
    );
    let build = read("testenv/build.sh");
    assert!(
        build
            .lines()
            .any(|l| l.trim().starts_with("nats-server)") && l.contains(r#""$here/nats" "#)),
        "testenv/build.sh must build nats-server from \"$here/nats\""
    );
}

#[test]
fn every_nats_image_in_k8s_is_the_pinned_release() {
    let version = pinned();
    let want = format!("nats:{version}");
    let mut manifests = Vec::new();
    files("k8s", &[".yaml", ".yml", ".tpl"], &mut manifests);
    let mut images = Vec::new();
    for file in &manifests {
        for (n, line) in read(file).lines().enumerate() {
            let Some(image) = line.trim().trim_start_matches("- ").strip_prefix("image:") else {
                continue;
            };
            let image = image.trim().trim_matches(['"', '\'']);
            let name = image.split([':', '@']).next().unwrap_or_default();
            if name == "nats" || name.ends_with("/nats") {
                assert_eq!(
                    image,
                    want,
                    "{file}:{}: the NATS image must be exactly {want}, the release \
                     testenv/nats/go.mod names (no floating tag, no other release)",
                    n + 1
                );
                images.push(format!("{file}:{}", n + 1));
            }
        }
    }
    assert!(
        images
            .iter()
            .any(|i| i.starts_with("k8s/base/nats/statefulset.yaml:")),
        "no NATS image found in k8s/base/nats/statefulset.yaml (found: {images:?})"
    );
}

#[test]
fn the_flake_builds_the_pinned_release() {
    let version = pinned();
    let nix = read("nix/nats-server.nix");
    let declared: Vec<&str> = nix
        .lines()
        .filter_map(|l| l.trim().strip_prefix("version = \""))
        .filter_map(|rest| rest.strip_suffix("\";"))
        .collect();
    assert_eq!(
        declared,
        [version.as_str()],
        "nix/nats-server.nix must set `version = \"{version}\";` once, as testenv/nats/go.mod \
         requires (and recompute its hashes)"
    );
    for needle in [
        "https://proxy.golang.org/${module}/@v/v${version}.zip",
        "modRoot = \"${module}@v${version}\";",
        &format!("module = \"{MODULE}\";"),
        "../testenv/nats/go.mod",
    ] {
        assert!(
            nix.contains(needle),
            "nix/nats-server.nix no longer contains {needle}"
        );
    }
    let flake = read("flake.nix");
    assert!(
        flake.contains("import ./nix/nats-server.nix"),
        "flake.nix must build nats-server with nix/nats-server.nix"
    );
    let mut nix_files = vec!["flake.nix".to_string()];
    files("nix", &[".nix"], &mut nix_files);
    for file in nix_files.iter().filter(|f| !f.starts_with("nix/stubs/")) {
        assert!(
            !read(file).contains("pkgs.nats-server"),
            "{file} uses nixpkgs' nats-server, not the pinned one (nix/nats-server.nix)"
        );
    }
}

#[test]
fn the_docs_state_the_pinned_release() {
    let version = pinned();
    let mut docs = vec!["README.md".to_string(), "k8s/README.md".to_string()];
    files("docs", &[".md"], &mut docs);
    // A dated record of runs: each names the release it ran on, which stays true after an
    // upgrade. Everywhere else a stated release is a claim about today's pin.
    docs.retain(|d| d != "docs/measurements.md");
    let mut stated = 0;
    for file in &docs {
        let text = read(file);
        for word in ["nats-server ", "nats:", "NATS "] {
            for (line, said) in mentions(&text, word) {
                assert_eq!(
                    said, version,
                    "{file}:{line}: says {word}{said}, but testenv/nats/go.mod pins {version}"
                );
                stated += 1;
            }
        }
    }
    assert!(
        read("k8s/README.md").contains(&format!("`nats:{version}`")),
        "k8s/README.md must name the image `nats:{version}`"
    );
    assert!(stated > 1, "no doc states the NATS release");
}

#[test]
fn mentions_finds_versions_and_ignores_prose() {
    let text = "image nats:2.15.3 here\nnats-server v2.12.4, and nats-server 2.12's\nnats-server with JetStream\nNATS 2.";
    assert_eq!(
        mentions(text, "nats:"),
        [(1, "2.15.3".to_string())],
        "an image tag"
    );
    assert_eq!(
        mentions(text, "nats-server "),
        [(2, "2.12.4".to_string()), (2, "2.12".to_string())]
    );
    assert!(
        mentions(text, "NATS ").is_empty(),
        "`NATS 2.` is no version"
    );
}
