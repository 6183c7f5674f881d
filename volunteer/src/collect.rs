//! Reads the cluster: the only module that talks to the Kubernetes API.
//!
//! Gentle on the API server and on memory: one request in flight at a time; nodes in
//! pages of [`NODE_PAGE`] full objects (the only kind read in full); namespaces and
//! workloads as metadata-only pages (`PartialObjectMetadata`) of [`METADATA_PAGE`],
//! counted as each page arrives and then dropped. Paged lists are served from etcd
//! (kube drops `resourceVersion=0` when a limit is set), so counts are consistent.
//!
//! A paged list whose continue token expired part-way (410 Gone: the API server
//! compacted etcd past the list's snapshot) is restarted once from the beginning; what
//! it had counted is discarded first, so nothing is counted twice. The expired token
//! is not followed: the server would hand back an inconsistent remainder.
//!
//! A section the volunteer may not read (403) or that the server does not serve (404)
//! is recorded as skipped; so is one whose list fails otherwise, or expires again after
//! its restart (reason `error`). The rest of the report is still collected.

use std::fmt::Debug;
use std::future::Future;
use std::path::Path;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Service};
use kube::api::{Api, ListParams, ObjectList};
use kube::core::NamespaceResourceScope;
use report::{Kind, SkipReason};
use serde::de::DeserializeOwned;

use crate::extensions;
use crate::snapshot::{KindCounts, NodeSnapshot, Section, Snapshot};

/// Full node objects per page: nodes can be large (image lists), so keep pages small.
pub const NODE_PAGE: u32 = 100;
/// Metadata-only objects per page.
pub const METADATA_PAGE: u32 = 500;

/// What to collect (what is omitted is not even read).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// Read `/version`.
    pub master_version: bool,
    /// List nodes.
    pub nodes: bool,
    /// List namespaces.
    pub namespaces: bool,
    /// List workloads.
    pub workloads: bool,
    /// Read these extensions.
    pub extensions: Option<std::path::PathBuf>,
}

/// Why the cluster could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum CollectError {
    /// Reading the kube-system namespace (for the default key) failed.
    #[error(
        "reading the kube-system namespace's UID for the anonymization key (grant `get` on it, or pass --key-file): {0}"
    )]
    KubeSystem(#[source] kube::Error),
    /// The kube-system namespace has no UID.
    #[error("the kube-system namespace has no UID")]
    NoUid,
}

/// The UID of the kube-system namespace, from which the default key is derived.
pub async fn kube_system_uid(client: &kube::Client) -> Result<String, CollectError> {
    let ns: Api<Namespace> = Api::all(client.clone());
    let ns = ns
        .get("kube-system")
        .await
        .map_err(CollectError::KubeSystem)?;
    ns.metadata.uid.ok_or(CollectError::NoUid)
}

/// What the collection cost, for logs and the benchmark.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cost {
    /// Requests made to the API server.
    pub requests: u64,
}

/// Collects one snapshot. Never fails: what cannot be read is marked skipped.
pub async fn collect(client: &kube::Client, plan: &Plan, taken_at: i64) -> (Snapshot, Cost) {
    let mut cost = Cost::default();

    let master_version = if plan.master_version {
        cost.requests += 1;
        match client.apiserver_version().await {
            Ok(info) => Section::Ok(info.git_version),
            Err(e) => skipped("masterVersion", &e),
        }
    } else {
        Section::Skipped(SkipReason::Omitted)
    };

    let nodes = if plan.nodes {
        match nodes(client, &mut cost).await {
            Ok(n) => Section::Ok(n),
            Err(e) => skipped("nodes", &e),
        }
    } else {
        Section::Skipped(SkipReason::Omitted)
    };

    let namespaces = if plan.namespaces {
        match namespaces(client, &mut cost).await {
            Ok(n) => Section::Ok(n),
            Err(e) => skipped("namespaces", &e),
        }
    } else {
        Section::Skipped(SkipReason::Omitted)
    };

    let workloads = if plan.workloads {
        let mut kinds = Vec::new();
        for kind in Kind::ALL {
            let name = format!("workloads.{}", kind.as_str());
            let counted = match kind {
                Kind::Pod => count::<Pod>(client, &name, &mut cost).await,
                Kind::Service => count::<Service>(client, &name, &mut cost).await,
                Kind::Deployment => count::<Deployment>(client, &name, &mut cost).await,
                Kind::StatefulSet => count::<StatefulSet>(client, &name, &mut cost).await,
                Kind::DaemonSet => count::<DaemonSet>(client, &name, &mut cost).await,
                Kind::Job => count::<Job>(client, &name, &mut cost).await,
                Kind::CronJob => count::<CronJob>(client, &name, &mut cost).await,
            };
            let section = match counted {
                Ok(c) => Section::Ok(c),
                Err(e) => skipped(&name, &e),
            };
            kinds.push((kind, section));
        }
        Section::Ok(kinds)
    } else {
        Section::Skipped(SkipReason::Omitted)
    };

    let extensions = match &plan.extensions {
        None => Section::Ok(Vec::new()),
        Some(path) => read_extensions(path),
    };

    let snapshot = Snapshot {
        taken_at,
        master_version,
        nodes,
        namespaces,
        workloads,
        extensions,
    };
    (snapshot, cost)
}

fn read_extensions(path: &Path) -> Section<Vec<(String, String)>> {
    match extensions::read(path) {
        Ok(pairs) => Section::Ok(pairs),
        Err(e) => {
            tracing::warn!(error = %e, "extensions skipped");
            Section::Skipped(SkipReason::Error)
        }
    }
}

/// Logs why a section is missing and classifies it.
fn skipped<T>(section: &str, e: &kube::Error) -> Section<T> {
    let reason = skip_reason(e);
    match reason {
        SkipReason::Forbidden | SkipReason::NotFound => {
            tracing::info!(section, ?reason, "section skipped");
        }
        _ => tracing::warn!(section, error = %e, "section skipped"),
    }
    Section::Skipped(reason)
}

/// 403 → forbidden, 404 → not found, anything else → error.
pub fn skip_reason(e: &kube::Error) -> SkipReason {
    match e {
        kube::Error::Api(status) if status.code == 403 => SkipReason::Forbidden,
        kube::Error::Api(status) if status.code == 404 => SkipReason::NotFound,
        _ => SkipReason::Error,
    }
}

/// The API server's answer to an expired continue token (reason `Expired`).
fn is_gone(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(status) if status.code == 410)
}

/// Reads every page of one list, adding each page's items to a fresh `A` as the page
/// arrives (so only one page is held at a time). `fetch` sends one request; every request
/// counts in `cost`, the restart's too.
///
/// On 410 Gone the list restarts once from the first page with a fresh `A`: the pages
/// already added belong to a snapshot the server no longer has, and the rest must not
/// be added to them. A second 410, or any other error, is returned.
async fn paged<T, A, F, Fut>(
    section: &str,
    limit: u32,
    cost: &mut Cost,
    fetch: F,
    mut add: impl FnMut(&mut A, Vec<T>),
) -> Result<A, kube::Error>
where
    T: Clone,
    A: Default,
    F: Fn(ListParams) -> Fut,
    Fut: Future<Output = Result<ObjectList<T>, kube::Error>>,
{
    let mut restarted = false;
    loop {
        let mut acc = A::default();
        let mut lp = ListParams::default().limit(limit);
        let mut pages: u32 = 0;
        let gone = loop {
            cost.requests += 1;
            match fetch(lp.clone()).await {
                Ok(page) => {
                    pages += 1;
                    let token = page.metadata.continue_;
                    add(&mut acc, page.items);
                    match token {
                        Some(t) if !t.is_empty() => lp.continue_token = Some(t),
                        _ => return Ok(acc),
                    }
                }
                Err(e) if is_gone(&e) && !restarted => break e,
                Err(e) => return Err(e),
            }
        };
        // Only the section and the page count: object names never reach the logs.
        tracing::warn!(
            section,
            pages_discarded = pages,
            reason = gone_reason(&gone),
            "list expired (410 Gone); restarting it from the first page"
        );
        restarted = true;
    }
}

/// The `reason` of a 410 (normally `Expired`), without its message.
fn gone_reason(e: &kube::Error) -> &str {
    match e {
        kube::Error::Api(status) => status.reason.as_str(),
        _ => "",
    }
}

async fn nodes(client: &kube::Client, cost: &mut Cost) -> Result<Vec<NodeSnapshot>, kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    paged(
        "nodes",
        NODE_PAGE,
        cost,
        |lp| {
            let api = api.clone();
            async move { api.list(&lp).await }
        },
        |out: &mut Vec<NodeSnapshot>, items| out.extend(items.into_iter().map(node)),
    )
    .await
}

/// Keeps only what `anonymize` may use; the rest of the object is dropped here.
fn node(n: Node) -> NodeSnapshot {
    let status = n.status.unwrap_or_default();
    let info = status.node_info;
    NodeSnapshot {
        uid: n.metadata.uid.unwrap_or_default(),
        provider_id: n.spec.and_then(|s| s.provider_id),
        operating_system: info.as_ref().map(|i| i.operating_system.clone()),
        os_image: info.as_ref().map(|i| i.os_image.clone()),
        kernel_version: info.as_ref().map(|i| i.kernel_version.clone()),
        architecture: info.as_ref().map(|i| i.architecture.clone()),
        container_runtime_version: info.as_ref().map(|i| i.container_runtime_version.clone()),
        kubelet_version: info.as_ref().map(|i| i.kubelet_version.clone()),
        capacity: status
            .capacity
            .unwrap_or_default()
            .into_iter()
            .map(|(name, q)| (name, q.0))
            .collect(),
    }
}

async fn namespaces(client: &kube::Client, cost: &mut Cost) -> Result<Vec<String>, kube::Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    paged(
        "namespaces",
        METADATA_PAGE,
        cost,
        |lp| {
            let api = api.clone();
            async move { api.list_metadata(&lp).await }
        },
        |out: &mut Vec<String>, items| {
            out.extend(items.into_iter().filter_map(|i| i.metadata.name));
        },
    )
    .await
}

async fn count<K>(
    client: &kube::Client,
    section: &str,
    cost: &mut Cost,
) -> Result<KindCounts, kube::Error>
where
    K: kube::Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(client.clone());
    paged(
        section,
        METADATA_PAGE,
        cost,
        |lp| {
            let api = api.clone();
            async move { api.list_metadata(&lp).await }
        },
        |counts: &mut KindCounts, items| {
            for item in items {
                let meta = item.metadata;
                if let Some(ns) = meta.namespace {
                    match counts.per_namespace.get_mut(&ns) {
                        Some(n) => *n += 1,
                        None => {
                            counts.per_namespace.insert(ns, 1);
                        }
                    }
                }
                if let Some(t) = meta.creation_timestamp {
                    counts.created.push(t.0.as_second());
                }
            }
        },
    )
    .await
}
