//! What may be kept of a report's free text: the rules that cut or drop whatever could name a
//! machine, a person or a place (IP addresses, URL hosts, e-mail addresses, `#…@buildhost`
//! build details), and fold names that only one company would use into shared ones.
//!
//! One set of rules for both ends. The volunteer applies them while it builds a report, and
//! [`Report::validate`](crate::Report::validate) applies them to every report that passes the
//! rules, so the gateway queues, and the ingester stores, only what they let through, whichever
//! client sent it. They are idempotent: a report already sanitized is left as it is.
//!
//! - Free text (`version`, `masterVersion`, `nodes[].osImage`) goes through [`info`]: printable
//!   ASCII, cut before the first word holding `#` or `@`, at most [`MAX_INFO_LEN`] bytes, and
//!   dropped whole if an IP address or a URL host remains.
//! - Node strings that are one token in practice (`operatingSystem`, `kernelVersion`,
//!   `architecture`, `containerRuntimeVersion`, `kubeletVersion`) keep only their first word
//!   ([`token`]).
//! - An optional string with nothing left is dropped (absent), as the volunteer drops it. The
//!   one required string, `version`, is refused instead ([`RULE_NOTHING_LEFT`]).
//! - `cloudProvider` is a listed provider or [`OTHER_PROVIDER`] ([`cloud_provider`]).
//! - Capacity keeps standard resources and listed vendors' extended resources; every other
//!   extended resource is summed under [`OTHER_RESOURCE`] ([`capacity`]).
//!
//! Extension values are the operator's explicit words and are kept as sent; node IDs are
//! re-keyed by the collector ([`crate::node_id`]).

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::vocabulary::{CLOUD_PROVIDERS, OTHER_PROVIDER, is_vendor_domain};
use crate::{Node, Report, Resource};

/// Longest free-text string kept, in bytes; longer ones are cut.
pub const MAX_INFO_LEN: usize = 64;

/// The resource name under which extended resources of unlisted vendors are summed.
pub const OTHER_RESOURCE: &str = "other";

/// The rule a required string breaks when [`info`] leaves nothing of it.
pub const RULE_NOTHING_LEFT: &str =
    "nothing left once addresses, URL hosts and build details (words with # or @) are removed";

/// Makes a free-text string safe to keep, or drops it (`None`).
///
/// Custom kernels and OS images can carry build details such as `#1 SMP builder@host`, or an
/// address. The rule:
/// 1. keep printable ASCII only (anything else counts as whitespace);
/// 2. drop everything from the first word containing `#` or `@` on (build metadata: build
///    number, `user@host`, an e-mail address), collapse whitespace, cut to [`MAX_INFO_LEN`];
/// 3. drop the value entirely if what is left still contains an IPv4 or IPv6 literal, or a URL
///    (`://` followed by a host), or is empty.
pub fn info(raw: &str) -> Option<String> {
    let printable: String = raw
        .chars()
        .map(|c| if c.is_ascii_graphic() { c } else { ' ' })
        .collect();
    let mut out = printable
        .split_whitespace()
        .take_while(|word| !word.contains(['#', '@']))
        .collect::<Vec<_>>()
        .join(" ");
    if out.len() > MAX_INFO_LEN {
        // ASCII only by now, so any index is a character boundary.
        out.truncate(MAX_INFO_LEN);
        out = out.trim_end().to_owned();
    }
    if out.is_empty() || contains_ip(&out) || contains_url_host(&out) {
        return None;
    }
    Some(out)
}

/// [`info`], then only the first word: kernel releases, runtime and kubelet versions, OS and
/// architecture names never contain spaces; what follows a space is build detail.
pub fn token(raw: &str) -> Option<String> {
    info(raw).map(|s| first_word(&s))
}

fn first_word(s: &str) -> String {
    s.split_whitespace().next().unwrap_or_default().to_owned()
}

/// Whether `s` contains something that parses as an IPv4 address (four dot-separated numbers,
/// each at most 255) or an IPv6 address (at least two colons).
fn contains_ip(s: &str) -> bool {
    let v4 = s
        .split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .any(|token| {
            let parts: Vec<&str> = token.split('.').collect();
            parts
                .windows(4)
                .any(|w| w.join(".").parse::<Ipv4Addr>().is_ok())
        });
    let v6 = s
        .split(|c: char| !(c.is_ascii_hexdigit() || c == ':' || c == '.'))
        .any(|token| {
            let token = token.trim_matches('.');
            token.matches(':').count() >= 2 && token.parse::<Ipv6Addr>().is_ok()
        });
    v4 || v6
}

/// Whether `s` contains `scheme://` followed by a non-empty authority (a host), as in
/// `https://build.example.org`. A container runtime's `containerd://1.7.13` is a scheme
/// followed by a version, which is allowed; anything after `://` that is not a version is a
/// host.
fn contains_url_host(s: &str) -> bool {
    s.match_indices("://").any(|(i, _)| {
        let rest = &s[i + 3..];
        let authority = rest.split(['/', ' ']).next().unwrap_or_default();
        // A version starts with a digit or `v` + digit; anything else is a host name.
        let is_version = authority.starts_with(|c: char| c.is_ascii_digit())
            || (authority.starts_with('v')
                && authority[1..].starts_with(|c: char| c.is_ascii_digit()));
        !authority.is_empty() && !is_version
    })
}

/// A provider name as kept: itself when listed in [`CLOUD_PROVIDERS`], else [`OTHER_PROVIDER`]
/// (a name of one's own, `acme-dc7`, would say whose cluster it is).
pub fn cloud_provider(name: &str) -> String {
    if CLOUD_PROVIDERS.contains(&name) {
        name.to_owned()
    } else {
        OTHER_PROVIDER.to_owned()
    }
}

/// Whether `name` is a standard resource, kept verbatim.
fn is_standard_resource(name: &str) -> bool {
    matches!(
        name,
        "cpu" | "memory" | "pods" | "ephemeral-storage" | "storage"
    ) || name
        .strip_prefix("hugepages-")
        .is_some_and(|size| !size.is_empty() && size.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// Whether an extended resource name's domain is a listed vendor's
/// ([`crate::vocabulary::RESOURCE_VENDORS`]).
fn is_vendor_resource(name: &str) -> bool {
    let Some((domain, rest)) = name.split_once('/') else {
        return false;
    };
    let valid_name = !rest.is_empty()
        && rest.len() <= 63
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    valid_name && is_vendor_domain(domain)
}

/// Capacity as kept, in the order given: standard and listed-vendor resources verbatim when
/// their value is a capacity ([`crate::validate::check_capacity`]; a value that is not is left
/// out), every other extended resource summed into one [`OTHER_RESOURCE`] entry where the first
/// of them was (extended resources are whole numbers; a value that is not is left out). So
/// applying the rule again (the gateway to a volunteer's report, the ingester to the gateway's)
/// changes nothing, not even the order.
pub fn capacity<'a>(resources: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<Resource> {
    let mut out = Vec::new();
    let mut other: Option<u64> = None;
    let mut other_at = 0;
    for (name, value) in resources {
        if is_standard_resource(name) || is_vendor_resource(name) {
            if crate::validate::check_capacity(value).is_ok() {
                out.push(Resource {
                    resource: name.to_owned(),
                    value: value.to_owned(),
                });
            }
        } else if let Ok(n) = value.parse::<u64>() {
            if other.is_none() {
                other_at = out.len();
            }
            other = Some(other.unwrap_or(0).saturating_add(n));
        }
    }
    if let Some(n) = other {
        out.insert(
            other_at,
            Resource {
                resource: OTHER_RESOURCE.to_owned(),
                value: n.to_string(),
            },
        );
    }
    out
}

/// The report with every rule of this module applied. Called on a report that passed
/// validation, which refused a `version` that [`info`] empties.
pub(crate) fn report(mut r: Report) -> Report {
    if let Some(v) = info(&r.version) {
        r.version = v;
    }
    r.master_version = r.master_version.as_deref().and_then(info);
    if let Some(nodes) = &mut r.nodes {
        for n in nodes {
            node(n);
        }
    }
    r
}

fn node(n: &mut Node) {
    let tok = |v: &mut Option<String>| *v = v.as_deref().and_then(token);
    tok(&mut n.operating_system);
    n.os_image = n.os_image.as_deref().and_then(info);
    tok(&mut n.kernel_version);
    tok(&mut n.architecture);
    tok(&mut n.container_runtime_version);
    tok(&mut n.kubelet_version);
    n.cloud_provider = n.cloud_provider.as_deref().map(cloud_provider);
    if let Some(c) = &mut n.capacity {
        *c = capacity(c.iter().map(|r| (r.resource.as_str(), r.value.as_str())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn build_details_are_cut_from_kernel_strings() {
        let cases = [
            ("5.15.0-1057-aws", Some("5.15.0-1057-aws")),
            ("5.15.0-foo #1 SMP builder@buildhost", Some("5.15.0-foo")),
            ("6.1.0 built by jane@host.corp", Some("6.1.0 built by")),
            ("5.15.0-foo@buildhost", None),
            ("Ubuntu 22.04.4 LTS", Some("Ubuntu 22.04.4 LTS")),
            ("custom 10.1.2.3", None),
            ("custom-fe80::1", None),
            ("kernel 2001:db8::17 build", None),
            ("containerd://1.7.22", Some("containerd://1.7.22")),
            ("image from https://build.corp.example", None),
            ("\u{7}\n ", None),
            (
                "Windows Server 2022 Datacenter",
                Some("Windows Server 2022 Datacenter"),
            ),
            ("10.0.20348.2340", Some("10.0.20348.2340")),
        ];
        for (raw, want) in cases {
            assert_eq!(info(raw).as_deref(), want, "{raw:?}");
        }
        assert_eq!(info(&"x".repeat(200)).map(|s| s.len()), Some(MAX_INFO_LEN));
    }

    #[test]
    fn single_token_fields_keep_their_first_word() {
        assert_eq!(
            token("6.1.0-13-amd64 (custom)").as_deref(),
            Some("6.1.0-13-amd64")
        );
        assert_eq!(
            token("v1.37.2 built by ops@corp").as_deref(),
            Some("v1.37.2")
        );
        assert_eq!(token("jane@corp.example v1"), None);
    }

    #[test]
    fn only_listed_cloud_providers_are_kept_by_name() {
        assert_eq!(cloud_provider("gce"), "gce");
        assert_eq!(cloud_provider("other"), "other");
        assert_eq!(cloud_provider("unknown"), "other");
        assert_eq!(cloud_provider("acme-dc7-rack3"), "other");
    }

    #[test]
    fn capacity_keeps_standard_and_vendor_resources_and_folds_the_rest() {
        let c = capacity([
            ("cpu", "4"),
            ("memory", "16393220Ki"),
            ("pods", "110"),
            ("nvidia.com/gpu", "1"),
            ("acme.internal/fpga", "2"),
            ("secret-team.example/dongle", "3"),
            ("hugepages-2Mi", "0"),
        ]);
        let got: Vec<(&str, &str)> = c
            .iter()
            .map(|r| (r.resource.as_str(), r.value.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("cpu", "4"),
                ("memory", "16393220Ki"),
                ("pods", "110"),
                ("nvidia.com/gpu", "1"),
                ("other", "5"),
                ("hugepages-2Mi", "0"),
            ]
        );
        // Applied again (the gateway to a volunteer's report), nothing changes, not the order.
        let again = capacity(c.iter().map(|r| (r.resource.as_str(), r.value.as_str())));
        assert_eq!(again, c);
        // Nor to the volunteer's, sorted by name with `other` among the rest.
        let sorted = [
            ("cpu", "4"),
            ("memory", "1Gi"),
            ("other", "34"),
            ("pods", "58"),
        ];
        let kept = capacity(sorted);
        let kept: Vec<(&str, &str)> = kept
            .iter()
            .map(|r| (r.resource.as_str(), r.value.as_str()))
            .collect();
        assert_eq!(kept, sorted);
    }

    #[test]
    fn a_capacity_value_that_is_not_a_capacity_is_left_out() {
        let c = capacity([
            ("cpu", "4"),
            ("memory", "1Kii"),
            ("nvidia.com/gpu", "1 GPU"),
            ("amd.com/gpu", "1e"),
            ("intel.com/qat", "0x10"),
            ("storage", "-1"),
            ("ephemeral-storage", "1e400"),
            ("acme.internal/fpga", "1.5"),
            ("pods", "110"),
        ]);
        let names: Vec<&str> = c.iter().map(|r| r.resource.as_str()).collect();
        assert_eq!(names, ["cpu", "pods"]);
    }

    proptest! {
        #[test]
        fn sanitized_strings_never_carry_an_address_or_build_host(
            version in "[0-9]{1,2}\\.[0-9]{1,2}\\.[0-9]{1,3}(-[a-z0-9]{1,8})?",
            host in "[a-z]{3,12}",
            a in 1u8..=255, b in any::<u8>(), c in any::<u8>(), d in 1u8..=255,
        ) {
            let ip = format!("{a}.{b}.{c}.{d}");
            let raw = format!("{version} #1 SMP {host}@{host}-build {ip}");
            let s = info(&raw);
            prop_assert_eq!(s.as_deref(), Some(version.as_str()));
            let glued = format!("{version}-{ip}");
            prop_assert!(info(&glued).is_none());
        }

        #[test]
        fn sanitizing_twice_changes_nothing(raw in "(?s).{0,120}") {
            let once = info(&raw);
            prop_assert_eq!(once.as_deref().and_then(info), once.clone());
            let tok = token(&raw);
            prop_assert_eq!(tok.as_deref().and_then(token), tok.clone());
        }
    }
}
