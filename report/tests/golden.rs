//! Golden files: the seed README's example, a v2 report with every field, and
//! bad bodies each with the exact error text expected. `SPARTAKUS_BLESS=1`
//! rewrites the `.expected` files from what the code now says.
#![allow(clippy::unwrap_used)]

use report::{DecodeError, Report, decode};
use std::path::{Path, PathBuf};

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata")
        .join(name)
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(testdata(name)).unwrap()
}

/// Decodes, then checks that serializing gives back the input, field for field.
fn round_trips(body: &[u8]) -> Report {
    let report = decode(body).unwrap().into_report();
    let input: serde_json::Value = serde_json::from_slice(body).unwrap();
    let output = serde_json::to_value(&report).unwrap();
    assert_eq!(input, output);
    report
}

#[test]
fn the_seed_readme_example_parses_validates_and_round_trips() {
    let report = round_trips(&read("v1-seed.json"));
    assert_eq!(report.cluster_id, "2f9c93d3-156c-47aa-8802-578ffca9b50e");
    assert_eq!(report.timestamp.as_deref(), Some("867530909031976"));
    assert_eq!(report.nodes.as_ref().map(Vec::len), Some(2));
    assert_eq!(report.report_id, None);
}

#[test]
fn the_seed_example_is_the_one_in_the_mission() {
    // The golden file is the README's payload verbatim, not a tidied copy.
    let mission = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/mission.md"),
    );
    let Ok(mission) = mission else {
        return; // shared/ sits beside the repository only in the project's sessions and CI
    };
    let start = mission.find("```json\n").unwrap() + "```json\n".len();
    let len = mission[start..].find("```").unwrap();
    assert_eq!(
        &mission[start..start + len],
        std::str::from_utf8(&read("v1-seed.json")).unwrap()
    );
}

#[test]
fn the_v2_example_sets_every_field_and_round_trips() {
    let report = round_trips(&read("v2-full.json"));
    // Exhaustive patterns: a new field breaks this test until the example has it.
    let Report {
        version: _,
        timestamp: Some(_),
        cluster_id: _,
        master_version: Some(_),
        nodes: Some(nodes),
        extensions: Some(_),
        report_id: Some(_),
        schema_version: Some(2),
        namespaces: Some(_),
        workloads: Some(workloads),
        skipped: Some(_),
    } = report
    else {
        panic!("v2-full.json leaves a field out");
    };
    let report::Node {
        id: _,
        operating_system: Some(_),
        os_image: Some(_),
        kernel_version: Some(_),
        architecture: Some(_),
        container_runtime_version: Some(_),
        kubelet_version: Some(_),
        cloud_provider: Some(_),
        capacity: Some(_),
    } = &nodes[0]
    else {
        panic!("v2-full.json's first node leaves a field out");
    };
    assert!(workloads.iter().any(|w| w.age_hours.is_some()));
}

/// The error text a `.expected` file holds: the syntax message, or one
/// `path: rule` per line.
fn error_text(err: &DecodeError) -> String {
    match err {
        DecodeError::Syntax(msg) => format!("{msg}\n"),
        DecodeError::Invalid(errors) => errors.iter().map(|e| format!("{e}\n")).collect(),
    }
}

#[test]
fn every_bad_body_fails_with_exactly_the_expected_errors() {
    let bless = std::env::var_os("SPARTAKUS_BLESS").is_some_and(|v| v == "1");
    let mut bodies: Vec<PathBuf> = std::fs::read_dir(testdata("bad"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    bodies.sort();
    assert!(bodies.len() >= 15, "only {} bad bodies", bodies.len());

    let mut failures = Vec::new();
    for body in &bodies {
        let expected_path = body.with_extension("expected");
        let actual = match decode(&std::fs::read(body).unwrap()) {
            Ok(_) => "ACCEPTED (a bad body must be rejected)\n".to_owned(),
            Err(e) => error_text(&e),
        };
        if bless {
            std::fs::write(&expected_path, &actual).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if actual != expected {
            failures.push(format!(
                "{}:\n--- expected\n{expected}--- actual\n{actual}",
                body.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} bad bodies differ (SPARTAKUS_BLESS=1 rewrites the expected files):\n{}",
        failures.len(),
        bodies.len(),
        failures.join("\n")
    );
}
