//! Closed vocabularies of report fields: the names a volunteer sends verbatim, and so the only
//! ones the statistics may publish by name. One list for both sides, so that what is sent and
//! what is published cannot drift apart.

/// Public cloud and platform providers, as the scheme of a node's `spec.providerID`
/// (`gce://…`, `aws://…`). `nodes[].cloudProvider` is one of these or `other`; a private
/// provider's scheme could name a company, so it is never sent.
pub const CLOUD_PROVIDERS: &[&str] = &[
    "alicloud",
    "aws",
    "azure",
    "baiducloud",
    "brightbox",
    "cloudstack",
    "digitalocean",
    "equinixmetal",
    "exoscale",
    "gce",
    "hcloud",
    "huaweicloud",
    "ibm",
    "ibmcloud",
    "k3s",
    "kind",
    "kubevirt",
    "linode",
    "oci",
    "openstack",
    "outscale",
    "ovhcloud",
    "packet",
    "scaleway",
    "tencentcloud",
    "upcloud",
    "vsphere",
    "vultr",
];

/// What `nodes[].cloudProvider` says for a provider not in [`CLOUD_PROVIDERS`].
pub const OTHER_PROVIDER: &str = "other";

/// The extension that marks a report as synthetic (a demo population, not a real cluster):
/// name and value. The statistics leave such reports out unless asked; a gateway started with
/// `--backdate-synthetic` (demos only) dates them by their own `timestamp`.
pub const SYNTHETIC_EXTENSION: (&str, &str) = ("spartakus.dev/synthetic", "true");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_provider_name_passes_the_cloud_provider_rule_and_is_listed_once() {
        let mut seen = std::collections::HashSet::new();
        for p in CLOUD_PROVIDERS {
            assert!(
                (1..=64).contains(&p.len())
                    && p.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                "{p}"
            );
            assert!(seen.insert(p), "{p} twice");
        }
        assert!(!CLOUD_PROVIDERS.contains(&OTHER_PROVIDER));
    }
}
