//! Property tests: every valid report survives JSON unchanged, and no input,
//! however broken, makes `decode` panic.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use proptest::sample::subsequence;
use report::validate::SECTIONS;
use report::{
    AgeHours, BUCKETS, Bucket, Extension, Kind, Node, Report, Resource, SkipReason, Skipped,
    WorkloadStats, decode,
};
use std::collections::BTreeMap;

/// One word of a version string: never an address, a URL or build details, which the
/// sanitizing rules would cut (`report::sanitize`, tested on its own and by the hostile
/// goldens), so that a report of such words round-trips unchanged.
const WORD: &str = "[A-Za-z0-9_+()-]{1,8}(\\.[0-9]{1,2}){0,2}";

/// Free text as the sanitizing rules keep it: one to four words, single spaces, under 64
/// bytes; never empty, since an empty optional string reads as absent (v1 leniency), so
/// `Some("")` cannot round-trip.
fn present_text() -> impl Strategy<Value = String> {
    prop::collection::vec(WORD, 1..=4).prop_map(|words| words.join(" "))
}

fn opt<T: std::fmt::Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
    proptest::option::of(s)
}

/// Resource names the sanitizing rules keep as they are: standard ones and listed vendors'.
fn resource_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "cpu",
            "memory",
            "pods",
            "ephemeral-storage",
            "storage"
        ])
        .prop_map(String::from),
        "hugepages-[0-9]{1,4}(Ki|Mi|Gi)",
        "(nvidia\\.com|amd\\.com|gpu\\.intel\\.com)/[a-z0-9]([-a-z0-9_.]{0,10}[a-z0-9])?",
    ]
}

fn qualified_name() -> impl Strategy<Value = String> {
    "(([a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?\\.){0,2}[a-z0-9]{1,10}/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?"
}

fn quantity() -> impl Strategy<Value = String> {
    // Zero or more and finite: the capacity rule refuses the rest.
    "[+]?([0-9]{1,12}(\\.[0-9]{0,6})?|\\.[0-9]{1,6})(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]{1,2})?"
}

fn node() -> impl Strategy<Value = Node> {
    (
        "[A-Za-z0-9_-]{1,64}",
        prop::array::uniform6(opt(WORD)),
        opt(present_text()),
        opt(
            prop::sample::select(report::vocabulary::CLOUD_PROVIDERS.to_vec())
                .prop_map(String::from),
        ),
        opt(prop::collection::vec(
            (resource_name(), quantity())
                .prop_map(|(resource, value)| Resource { resource, value }),
            0..8,
        )),
    )
        .prop_map(
            |(id, [os, _, kernel, arch, runtime, kubelet], image, cloud, capacity)| Node {
                id,
                operating_system: os,
                os_image: image,
                kernel_version: kernel,
                architecture: arch,
                container_runtime_version: runtime,
                kubelet_version: kubelet,
                cloud_provider: cloud,
                capacity,
            },
        )
}

/// Stats for `kind` whose histogram holds exactly `namespaces` namespaces.
fn workload(kind: Kind, namespaces: u64) -> impl Strategy<Value = WorkloadStats> {
    (
        prop::array::uniform7(0..=namespaces / 7),
        any::<u64>(),
        opt((0u64..1_000_000, 0u64..1_000_000)),
        opt(1..=namespaces.max(1)),
    )
        .prop_map(move |(rest, total, age, sampled)| {
            let first = namespaces - rest.iter().sum::<u64>();
            let counts = std::iter::once(first).chain(rest);
            WorkloadStats {
                kind,
                total,
                per_namespace: BUCKETS
                    .iter()
                    .zip(counts)
                    .map(|(&(min, max), namespaces)| Bucket {
                        min,
                        max,
                        namespaces,
                    })
                    .collect(),
                namespaces_sampled: sampled.filter(|_| namespaces > 0),
                age_hours: age.map(|(median, extra)| AgeHours {
                    median,
                    p90: median + extra,
                }),
            }
        })
}

fn skip_reason() -> impl Strategy<Value = SkipReason> {
    prop::sample::select(SkipReason::ALL.to_vec())
}

prop_compose! {
    fn report()(
        version in present_text(),
        timestamp in opt("[0-9]{1,20}"),
        cluster_id in "[A-Za-z0-9._:-]{1,128}",
        master_version in opt(present_text()),
        nodes in opt(prop::collection::vec(node(), 0..6)),
        extensions in opt(prop::collection::btree_map(qualified_name(), "(?s).{0,300}", 0..6)),
        report_id in opt(any::<[u8; 16]>()),
        schema_version in opt(1u32..=2),
        namespaces in 0u64..10_000,
        send_namespaces in any::<bool>(),
        kinds in opt(subsequence(Kind::ALL.to_vec(), 0..=Kind::ALL.len())),
        sections in opt(subsequence(SECTIONS.to_vec(), 0..=SECTIONS.len())),
        reasons in prop::collection::vec(skip_reason(), SECTIONS.len()),
    )(
        workloads in match kinds {
            Some(kinds) => kinds
                .into_iter()
                .map(|k| workload(k, namespaces))
                .collect::<Vec<_>>()
                .prop_map(Some)
                .boxed(),
            None => Just(None).boxed(),
        },
        version in Just(version),
        timestamp in Just(timestamp),
        cluster_id in Just(cluster_id),
        master_version in Just(master_version),
        nodes in Just(nodes),
        extensions in Just(extensions),
        report_id in Just(report_id),
        schema_version in Just(schema_version),
        namespaces in Just(send_namespaces.then_some(namespaces)),
        erasure_check in opt("[0-9a-f]{64}"),
        skipped in Just(sections.map(|s| {
            s.into_iter()
                .zip(reasons)
                .map(|(section, reason)| Skipped { section: section.to_owned(), reason })
                .collect::<Vec<_>>()
        })),
    ) -> Report {
        Report {
            version,
            timestamp,
            cluster_id,
            master_version,
            nodes,
            extensions: extensions.map(|m: BTreeMap<String, String>| {
                m.into_iter().map(|(name, value)| Extension { name, value }).collect()
            }),
            report_id: report_id.map(|b| uuid::Uuid::from_bytes(b).to_string()),
            schema_version,
            namespaces,
            workloads,
            skipped,
            erasure_check,
        }
    }
}

/// One small edit to a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, u8),
    Delete(usize),
    Truncate(usize),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let byte = prop_oneof![
        any::<u8>(),
        prop::sample::select(b"{}[]\",:0123456789-.eE \\nult".to_vec()),
    ];
    let one = prop_oneof![
        (any::<usize>(), byte.clone()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (any::<usize>(), byte).prop_map(|(i, b)| Mutation::Insert(i, b)),
        any::<usize>().prop_map(Mutation::Delete),
        any::<usize>().prop_map(Mutation::Truncate),
    ];
    prop::collection::vec(one, 1..6)
}

fn mutate(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match *m {
            Mutation::Flip(i, b) if !bytes.is_empty() => bytes[i % len] = b,
            Mutation::Insert(i, b) => bytes.insert(i % (bytes.len() + 1), b),
            Mutation::Delete(i) if !bytes.is_empty() => {
                bytes.remove(i % len);
            }
            Mutation::Truncate(i) => bytes.truncate(i % len),
            _ => {}
        }
    }
    bytes
}

/// What the fuzz target checks too: whatever decodes re-encodes to itself.
fn decodes_stably(bytes: &[u8]) {
    if let Ok(valid) = decode(bytes) {
        let again = serde_json::to_vec(valid.report()).unwrap();
        assert_eq!(decode(&again).unwrap(), valid);
    }
}

proptest! {
    #[test]
    fn every_valid_report_round_trips_through_json_unchanged(report in report()) {
        let json = serde_json::to_vec(&report).unwrap();
        let valid = decode(&json).unwrap_or_else(|e| panic!("{e}\n{}", String::from_utf8_lossy(&json)));
        prop_assert_eq!(valid.report(), &report);
        let again: serde_json::Value = serde_json::to_value(valid.report()).unwrap();
        prop_assert_eq!(again, serde_json::from_slice::<serde_json::Value>(&json).unwrap());
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decodes_stably(&bytes);
    }

    #[test]
    fn decode_never_panics_on_mutated_valid_reports(report in report(), edits in mutations()) {
        let json = serde_json::to_vec_pretty(&report).unwrap();
        decodes_stably(&mutate(json, &edits));
    }

    #[test]
    fn decode_never_panics_on_mutated_golden_files(edits in mutations()) {
        for body in [
            &include_bytes!("../../testdata/v1-seed.json")[..],
            &include_bytes!("../../testdata/v2-full.json")[..],
        ] {
            decodes_stably(&mutate(body.to_vec(), &edits));
        }
    }
}
