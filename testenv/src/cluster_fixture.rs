//! A realistic cluster to create in a [`KubeApi`](crate::KubeApi): nodes modelled on real GKE,
//! EKS, AKS, kind and on-premises nodes, and namespaces holding pods, Services and the other
//! workload kinds, every object full of identifying strings (names, labels, annotations,
//! images, addresses, provider and machine IDs). [`ClusterFixture`] records those strings, so a
//! test can check that none of them left the cluster ([`ClusterFixture::leaks`]), and what a
//! report should say about each node ([`ExpectedNode`]).
//!
//! The volunteer's tests read it, and so does the system test that sends its report through
//! the gateway: one fixture, not a copy per crate.

use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
// kube's typed API needs serde's traits in these bounds; k8s-openapi re-exports serde.
use k8s_openapi::serde::Serialize;
use k8s_openapi::serde::de::DeserializeOwned;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

use crate::Error;

/// What a volunteer's report should say about one node of the fixture: the values the report
/// keeps (`None` where it must drop one, e.g. an OS image naming an address) and its capacity
/// as the report groups it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedNode {
    /// The node's UID, from which the report's node ID is derived.
    pub uid: String,
    /// `nodeInfo.operatingSystem`.
    pub operating_system: Option<&'static str>,
    /// `nodeInfo.osImage`, if the report may carry it.
    pub os_image: Option<&'static str>,
    /// The kernel's version, without its build details.
    pub kernel_version: Option<&'static str>,
    /// `nodeInfo.architecture`.
    pub architecture: Option<&'static str>,
    /// `nodeInfo.containerRuntimeVersion`.
    pub container_runtime_version: Option<&'static str>,
    /// `nodeInfo.kubeletVersion`.
    pub kubelet_version: Option<&'static str>,
    /// The provider, from the provider ID's scheme (`other` for one the report does not know).
    pub cloud_provider: Option<&'static str>,
    /// Resource and quantity, sorted, unknown extended resources summed as `other`.
    pub capacity: Vec<(&'static str, &'static str)>,
}

/// A realistic cluster made in a [`KubeApi`](crate::KubeApi): everything a test created, and
/// the strings that must never appear in a report.
#[derive(Debug, Clone, Default)]
pub struct ClusterFixture {
    /// Every name the fixture makes contains it, so that fixtures in one API server differ.
    pub prefix: String,
    /// The nodes, as a report should describe them.
    pub nodes: Vec<ExpectedNode>,
    /// The namespaces it created.
    pub namespaces: Vec<String>,
    /// Identifying strings of every created object.
    pub secrets: BTreeSet<String>,
    /// Public strings the report legitimately carries (node info values), exempt from
    /// the privacy check even if a label repeats them (e.g. `kubernetes.io/arch=amd64`).
    pub public: BTreeSet<String>,
}

/// Node JSON modelled on real GKE, EKS, AKS, kind and on-premises nodes, with what the
/// report should say about each.
fn node_models(prefix: &str) -> Vec<(Value, Value, ExpectedNode)> {
    let gke = format!("gke-{prefix}-default-pool-1a2b3c4d-x7k9");
    let eks = format!("ip-192-168-12-34-{prefix}.us-west-2.compute.internal");
    let aks = format!("aks-{prefix}gpu-12345678-vmss000000");
    let kind = format!("{prefix}-kind-worker");
    let onprem = format!("rack7-{prefix}-node03.corp.example");
    let e = |uid: &str| ExpectedNode {
        uid: uid.to_owned(),
        operating_system: Some("linux"),
        os_image: None,
        kernel_version: None,
        architecture: Some("amd64"),
        container_runtime_version: None,
        kubelet_version: None,
        cloud_provider: None,
        capacity: vec![],
    };
    let info = |kernel: &str, os: &str, runtime: &str, kubelet: &str, arch: &str, n: u32| {
        json!({
            "machineID": format!("9f8e7d6c5b4a39281706f5e4d3c2b1a{n}"),
            "systemUUID": format!("4c4c4544-0033-4a10-8052-b{n}c04f4d4e32"),
            "bootID": format!("e0c1d2b3-a4f5-4697-8899-aabbccdd00{n}"),
            "kernelVersion": kernel, "osImage": os, "containerRuntimeVersion": runtime,
            "kubeletVersion": kubelet, "kubeProxyVersion": "", "operatingSystem": "linux",
            "architecture": arch,
        })
    };
    let images = |n: u32| {
        json!([
            {"names": [format!("registry.corp-{prefix}.example/payments/api@sha256:{n}a4e2f0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1"),
                       format!("registry.corp-{prefix}.example/payments/api:2024.10.{n}")], "sizeBytes": 123456789},
            {"names": ["registry.k8s.io/pause:3.10"], "sizeBytes": 320368},
        ])
    };
    vec![
        (
            json!({
                "metadata": {"name": gke, "labels": {
                    "cloud.google.com/gke-nodepool": format!("{prefix}-default-pool"),
                    "cloud.google.com/machine-family": "e2",
                    "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux",
                    "kubernetes.io/hostname": gke,
                    "node.kubernetes.io/instance-type": "e2-standard-4",
                    "topology.kubernetes.io/region": "us-central1",
                    "topology.kubernetes.io/zone": "us-central1-a",
                    "team.acme.example/owner": format!("{prefix}-payments-team"),
                }, "annotations": {
                    "container.googleapis.com/instance_id": "4412345678901234567",
                    "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
                }},
                "spec": {"podCIDR": "10.52.3.0/24", "podCIDRs": ["10.52.3.0/24"],
                         "providerID": format!("gce://acme-{prefix}-4821/us-central1-a/{gke}")},
            }),
            json!({
                "addresses": [{"type": "InternalIP", "address": "10.128.0.42"},
                              {"type": "ExternalIP", "address": "34.123.45.67"},
                              {"type": "Hostname", "address": gke}],
                "capacity": {"cpu": "4", "ephemeral-storage": "98831908Ki", "hugepages-1Gi": "0",
                             "hugepages-2Mi": "0", "memory": "16393220Ki", "pods": "110"},
                "nodeInfo": info("6.1.100+", "Container-Optimized OS from Google", "containerd://1.7.22", "v1.37.2-gke.1000", "amd64", 1),
                "images": images(1),
            }),
            ExpectedNode {
                os_image: Some("Container-Optimized OS from Google"),
                kernel_version: Some("6.1.100+"),
                container_runtime_version: Some("containerd://1.7.22"),
                kubelet_version: Some("v1.37.2-gke.1000"),
                cloud_provider: Some("gce"),
                capacity: vec![
                    ("cpu", "4"),
                    ("ephemeral-storage", "98831908Ki"),
                    ("hugepages-1Gi", "0"),
                    ("hugepages-2Mi", "0"),
                    ("memory", "16393220Ki"),
                    ("pods", "110"),
                ],
                ..e("")
            },
        ),
        (
            json!({
                "metadata": {"name": eks, "labels": {
                    "eks.amazonaws.com/nodegroup": format!("{prefix}-ng-general"),
                    "eks.amazonaws.com/nodegroup-image": "ami-0a1b2c3d4e5f60718",
                    "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux",
                    "kubernetes.io/hostname": eks,
                    "node.kubernetes.io/instance-type": "m5.xlarge",
                    "topology.kubernetes.io/zone": "us-west-2b",
                }, "annotations": {"alpha.kubernetes.io/provided-node-ip": "192.168.12.34"}},
                "spec": {"providerID": "aws:///us-west-2b/i-0a1b2c3d4e5f67890"},
            }),
            json!({
                "addresses": [{"type": "InternalIP", "address": "192.168.12.34"},
                              {"type": "InternalDNS", "address": eks},
                              {"type": "Hostname", "address": eks}],
                "capacity": {"cpu": "4", "ephemeral-storage": "83873772Ki", "hugepages-1Gi": "0",
                             "hugepages-2Mi": "0", "memory": "15896764Ki", "pods": "58",
                             "attachable-volumes-aws-ebs": "25", "vpc.amazonaws.com/pod-eni": "9"},
                "nodeInfo": info("6.1.112-122.189.amzn2023.x86_64", "Amazon Linux 2023.6.20241010", "containerd://1.7.22", "v1.37.2-eks-a737599", "amd64", 2),
                "images": images(2),
            }),
            ExpectedNode {
                os_image: Some("Amazon Linux 2023.6.20241010"),
                kernel_version: Some("6.1.112-122.189.amzn2023.x86_64"),
                container_runtime_version: Some("containerd://1.7.22"),
                kubelet_version: Some("v1.37.2-eks-a737599"),
                cloud_provider: Some("aws"),
                capacity: vec![
                    ("cpu", "4"),
                    ("ephemeral-storage", "83873772Ki"),
                    ("hugepages-1Gi", "0"),
                    ("hugepages-2Mi", "0"),
                    ("memory", "15896764Ki"),
                    ("other", "34"),
                    ("pods", "58"),
                ],
                ..e("")
            },
        ),
        (
            json!({
                "metadata": {"name": aks, "labels": {
                    "agentpool": format!("{prefix}gpu"),
                    "kubernetes.azure.com/cluster": format!("MC_rg-{prefix}_aks-eastus"),
                    "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux",
                    "kubernetes.io/hostname": aks,
                    "node.kubernetes.io/instance-type": "Standard_NC6s_v3",
                }},
                "spec": {"providerID": format!("azure:///subscriptions/0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0/resourceGroups/mc_rg-{prefix}_aks_eastus/providers/Microsoft.Compute/virtualMachineScaleSets/aks-{prefix}gpu-12345678-vmss/virtualMachines/0")},
            }),
            json!({
                "addresses": [{"type": "InternalIP", "address": "10.224.0.5"},
                              {"type": "Hostname", "address": aks}],
                "capacity": {"cpu": "6", "ephemeral-storage": "129886128Ki", "memory": "115387448Ki",
                             "nvidia.com/gpu": "1", "pods": "110"},
                "nodeInfo": info("5.15.0-1073-azure", "Ubuntu 22.04.5 LTS", "containerd://1.7.20-1", "v1.37.2", "amd64", 3),
                "images": images(3),
            }),
            ExpectedNode {
                os_image: Some("Ubuntu 22.04.5 LTS"),
                kernel_version: Some("5.15.0-1073-azure"),
                container_runtime_version: Some("containerd://1.7.20-1"),
                kubelet_version: Some("v1.37.2"),
                cloud_provider: Some("azure"),
                capacity: vec![
                    ("cpu", "6"),
                    ("ephemeral-storage", "129886128Ki"),
                    ("memory", "115387448Ki"),
                    ("nvidia.com/gpu", "1"),
                    ("pods", "110"),
                ],
                ..e("")
            },
        ),
        (
            json!({
                "metadata": {"name": kind, "labels": {
                    "kubernetes.io/arch": "arm64", "kubernetes.io/os": "linux",
                    "kubernetes.io/hostname": kind,
                }, "annotations": {"kubeadm.alpha.kubernetes.io/cri-socket": format!("unix:///run/{prefix}/containerd.sock")}},
                "spec": {"podCIDR": "10.244.1.0/24", "providerID": format!("kind://docker/kind/{kind}")},
            }),
            json!({
                "addresses": [{"type": "InternalIP", "address": "172.18.0.3"},
                              {"type": "Hostname", "address": kind}],
                "capacity": {"cpu": "8", "ephemeral-storage": "479079112Ki", "memory": "32567328Ki", "pods": "110"},
                "nodeInfo": info("6.8.0-45-generic", "Debian GNU/Linux 12 (bookworm)", "containerd://1.7.18", "v1.37.2", "arm64", 4),
                "images": images(4),
            }),
            ExpectedNode {
                os_image: Some("Debian GNU/Linux 12 (bookworm)"),
                kernel_version: Some("6.8.0-45-generic"),
                architecture: Some("arm64"),
                container_runtime_version: Some("containerd://1.7.18"),
                kubelet_version: Some("v1.37.2"),
                cloud_provider: Some("kind"),
                capacity: vec![
                    ("cpu", "8"),
                    ("ephemeral-storage", "479079112Ki"),
                    ("memory", "32567328Ki"),
                    ("pods", "110"),
                ],
                ..e("")
            },
        ),
        (
            // A hand-built kernel whose version string names its build host and address,
            // an OS image naming an address, and a private provider ID scheme.
            json!({
                "metadata": {"name": onprem, "labels": {
                    "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux",
                    "kubernetes.io/hostname": onprem,
                    "corp.example/rack": format!("{prefix}-rack7"),
                }},
                "spec": {"providerID": format!("mycorp-{prefix}://dc1/rack7/node03")},
            }),
            json!({
                "addresses": [{"type": "InternalIP", "address": "10.20.30.40"},
                              {"type": "InternalIP", "address": "fd00:1234:5678::40"}],
                "capacity": {"cpu": "64", "memory": "263921152Ki", "pods": "250",
                             "corp.example/dongle": "2", "smarter-devices/fuse": "20"},
                "nodeInfo": info(&format!("5.15.0-1057-custom #1 SMP {prefix}builder@build-{prefix}-17 10.1.2.3"),
                                 "CorpOS 9 built on 10.20.30.41", "cri-o://1.30.4", "v1.37.2", "amd64", 5),
                "images": images(5),
            }),
            ExpectedNode {
                os_image: None,
                kernel_version: Some("5.15.0-1057-custom"),
                container_runtime_version: Some("cri-o://1.30.4"),
                kubelet_version: Some("v1.37.2"),
                cloud_provider: Some("other"),
                capacity: vec![
                    ("cpu", "64"),
                    ("memory", "263921152Ki"),
                    ("other", "22"),
                    ("pods", "250"),
                ],
                ..e("")
            },
        ),
    ]
}

impl ClusterFixture {
    /// How many pods the fixture puts in each of its namespaces: chosen, like the two counts
    /// below, to fill several histogram buckets (0, 1, 2–5, 6–10, 11–50, 51–100).
    pub const PODS_PER_NAMESPACE: [usize; 6] = [0, 1, 3, 7, 12, 55];
    /// How many Services it puts in each of its namespaces.
    pub const SERVICES_PER_NAMESPACE: [usize; 6] = [2, 0, 1, 6, 0, 11];
    /// How many of each other workload kind (Deployment, StatefulSet, DaemonSet, Job, CronJob)
    /// it puts in each of its namespaces.
    pub const OTHERS_PER_NAMESPACE: [usize; 6] = [1, 0, 2, 0, 1, 0];

    /// Creates the nodes and the namespaces with their workloads, every name containing
    /// `prefix`.
    pub async fn create(client: &kube::Client, prefix: &str) -> Result<Self, Error> {
        let mut f = ClusterFixture {
            prefix: prefix.to_owned(),
            ..Default::default()
        };
        f.create_nodes(client).await?;
        f.create_workloads(client).await?;
        Ok(f)
    }

    /// Only the nodes (of a fixture made with `prefix` set and nothing else).
    pub async fn create_nodes(&mut self, client: &kube::Client) -> Result<(), Error> {
        let nodes: Api<Node> = Api::all(client.clone());
        for (object, status, mut expected) in node_models(&self.prefix) {
            let node: Node = parse(object)?;
            let name = node.metadata.name.clone().unwrap_or_default();
            let created = nodes.create(&PostParams::default(), &node).await?;
            // Create drops status: it is set through the status subresource.
            let node = nodes
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": status})),
                )
                .await?;
            expected.uid = created.metadata.uid.clone().unwrap_or_default();
            if let Some(info) = node.status.as_ref().and_then(|s| s.node_info.as_ref()) {
                for v in [&info.operating_system, &info.architecture] {
                    self.public.insert(v.clone());
                }
            }
            self.collect_secrets(&node)?;
            self.nodes.push(expected);
        }
        Ok(())
    }

    async fn create_workloads(&mut self, client: &kube::Client) -> Result<(), Error> {
        let pp = PostParams::default();
        for (i, pods) in Self::PODS_PER_NAMESPACE.iter().enumerate() {
            let ns = format!("{}-team-{i}", self.prefix);
            let namespaces: Api<Namespace> = Api::all(client.clone());
            let created = namespaces
                .create(&pp, &parse(json!({"metadata": {"name": ns,
                    "labels": {"tenant.corp.example/id": format!("{}-tenant-{i}", self.prefix)},
                    "annotations": {"owner.corp.example/email": format!("alice.{}@corp.example", self.prefix)}}}))?)
                .await?;
            self.collect_secrets(&created)?;
            self.namespaces.push(ns.clone());
            let labels =
                json!({"app": format!("{}-checkout-{i}", self.prefix), "tier": "backend-tier"});
            let container = json!({"name": format!("{}-checkout", self.prefix),
                "image": format!("registry.corp-{}.example/shop/checkout:1.{i}.0", self.prefix),
                "env": [{"name": "DB_HOST", "value": format!("db-{}.corp.example", self.prefix)}]});
            let template =
                json!({"metadata": {"labels": labels}, "spec": {"containers": [container]}});
            for p in 0..*pods {
                let pod: Pod = parse(json!({
                    "metadata": {"name": format!("{}-checkout-{i}-{p}", self.prefix), "labels": labels,
                                 "annotations": {"build.corp.example/commit": format!("{}deadbeef{p}", self.prefix)}},
                    "spec": {"containers": [container], "hostname": format!("{}-host-{p}", self.prefix),
                             "nodeName": format!("{}-kind-worker", self.prefix)},
                }))?;
                let created = Api::<Pod>::namespaced(client.clone(), &ns)
                    .create(&pp, &pod)
                    .await?;
                self.collect_secrets(&created)?;
            }
            for s in 0..Self::SERVICES_PER_NAMESPACE[i] {
                let svc: Service = parse(json!({
                    "metadata": {"name": format!("{}-svc-{i}-{s}", self.prefix), "labels": labels},
                    "spec": {"clusterIP": "None", "selector": labels, "ports": [{"port": 8443}]},
                }))?;
                let created = Api::<Service>::namespaced(client.clone(), &ns)
                    .create(&pp, &svc)
                    .await?;
                self.collect_secrets(&created)?;
            }
            for o in 0..Self::OTHERS_PER_NAMESPACE[i] {
                let name = format!("{}-app-{i}-{o}", self.prefix);
                let selector = json!({"matchLabels": labels});
                let meta = json!({"name": name, "labels": labels});
                let deploy: Deployment = parse(json!({"metadata": meta,
                    "spec": {"selector": selector, "template": template}}))?;
                let sts: StatefulSet = parse(json!({"metadata": meta,
                    "spec": {"selector": selector, "serviceName": name, "template": template}}))?;
                let ds: DaemonSet = parse(json!({"metadata": meta,
                    "spec": {"selector": selector, "template": template}}))?;
                let job_template = json!({"metadata": {"labels": labels},
                    "spec": {"containers": [container], "restartPolicy": "Never"}});
                let job: Job = parse(json!({"metadata": meta,
                    "spec": {"template": job_template}}))?;
                let cron: CronJob = parse(json!({"metadata": meta,
                    "spec": {"schedule": "17 3 * * *", "jobTemplate": {"spec": {"template": job_template}}}}))?;
                let v = create_in(client, &ns, &deploy).await?;
                self.collect_secrets(&v)?;
                let v = create_in(client, &ns, &sts).await?;
                self.collect_secrets(&v)?;
                let v = create_in(client, &ns, &ds).await?;
                self.collect_secrets(&v)?;
                let v = create_in(client, &ns, &job).await?;
                self.collect_secrets(&v)?;
                let v = create_in(client, &ns, &cron).await?;
                self.collect_secrets(&v)?;
            }
        }
        Ok(())
    }

    /// Adds every identifying string of `object` to the secrets: names, UIDs, label and
    /// annotation keys and values, images, addresses, host names, provider IDs, machine
    /// IDs, CIDRs, environment values. Strings shorter than 5 characters are too common to
    /// search for (and none of the fixture's identifiers is that short).
    fn collect_secrets<T: Serialize>(&mut self, object: &T) -> Result<(), Error> {
        let value = serde_json::to_value(object).map_err(json_error)?;
        let mut found = Vec::new();
        walk(&value, None, &mut found);
        for s in found {
            if s.len() >= 5 && !self.public.contains(&s) {
                self.secrets.insert(s);
            }
        }
        Ok(())
    }

    /// Every secret that occurs in `body` (a report as sent, or anything else that left the
    /// cluster): empty when nothing identifying leaked.
    pub fn leaks(&self, body: &[u8]) -> Vec<String> {
        let text = String::from_utf8_lossy(body);
        self.secrets
            .iter()
            .filter(|s| text.contains(s.as_str()) && !self.public.contains(*s))
            .cloned()
            .collect()
    }
}

const IDENTIFYING_KEYS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "uid",
    "image",
    "address",
    "names",
    "providerID",
    "machineID",
    "systemUUID",
    "bootID",
    "podCIDR",
    "podCIDRs",
    "clusterIP",
    "clusterIPs",
    "hostname",
    "nodeName",
    "externalName",
    "serviceName",
    "value",
    "kernelVersion",
    "osImage",
];

fn walk(v: &Value, key: Option<&str>, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if matches!(
                    key,
                    Some("labels" | "annotations" | "matchLabels" | "selector")
                ) {
                    out.push(k.clone());
                    if let Value::String(s) = child {
                        out.push(s.clone());
                    }
                }
                walk(child, Some(k), out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| walk(i, key, out)),
        // A kernel string's build details (after the version) and any address in an OS
        // image must not leak; the version itself is reported.
        Value::String(s) if key == Some("kernelVersion") => {
            out.extend(s.split_whitespace().skip(1).map(str::to_owned));
        }
        Value::String(s) if key == Some("osImage") => {
            out.extend(
                s.split_whitespace()
                    .filter(|w| w.parse::<std::net::IpAddr>().is_ok())
                    .map(str::to_owned),
            );
        }
        // Every part of a provider ID names the machine, project or account.
        Value::String(s) if key == Some("providerID") => {
            out.push(s.clone());
            out.extend(s.split('/').skip(1).map(str::to_owned));
        }
        Value::String(s) if key.is_some_and(|k| IDENTIFYING_KEYS.contains(&k)) && s != "None" => {
            out.push(s.clone());
        }
        _ => {}
    }
}

async fn create_in<K>(client: &kube::Client, ns: &str, object: &K) -> Result<K, kube::Error>
where
    K: kube::Resource<Scope = kube::core::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), object)
        .await
}

/// A Kubernetes object from its JSON.
fn parse<T: DeserializeOwned>(value: Value) -> Result<T, Error> {
    serde_json::from_value(value).map_err(json_error)
}

fn json_error(e: serde_json::Error) -> Error {
    Error::io("a fixture object's JSON", e.into())
}
