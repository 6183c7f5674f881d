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

/// Domains of public device-plugin vendors (GPUs, TPUs, FPGAs, other accelerators and
/// devices). A volunteer sends the extended resource names of these domains, or of any
/// subdomain of one ([`is_vendor_domain`]), verbatim in `nodes[].capacity[]`; every other
/// extended resource is summed under `other`, as its name could name a company. The statistics
/// publish accelerators by vendor only from these names.
pub const RESOURCE_VENDORS: &[&str] = &[
    "amd.com",
    "aws.amazon.com",
    "devices.kubevirt.io",
    "google.com",
    "habana.ai",
    "intel.com",
    "kubernetes.io",
    "nvidia.com",
    "xilinx.com",
];

/// Whether the domain of an extended resource name (`nvidia.com` in `nvidia.com/gpu`) is one of
/// [`RESOURCE_VENDORS`] or a subdomain of one (`gpu.intel.com`).
pub fn is_vendor_domain(domain: &str) -> bool {
    RESOURCE_VENDORS.iter().any(|v| {
        domain
            .strip_suffix(v)
            .is_some_and(|sub| sub.is_empty() || sub.ends_with('.'))
    })
}

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

    #[test]
    fn a_vendor_domain_is_a_listed_domain_or_a_subdomain_of_one() {
        for d in [
            "nvidia.com",
            "gpu.intel.com",
            "alpha.kubernetes.io",
            "aws.amazon.com",
        ] {
            assert!(is_vendor_domain(d), "{d}");
        }
        for d in [
            "",
            "com",
            "notnvidia.com",
            "nvidia.com.evil.example",
            "amazon.com",
            ".com",
        ] {
            assert!(!is_vendor_domain(d), "{d}");
        }
    }
}
