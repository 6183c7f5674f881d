//! Reads the cluster: the only module that talks to the Kubernetes API.
//!
//! Gentle on the API server and on memory: one request in flight at a time, each page dropped
//! once counted, and no more bytes read than the report needs.
//! - Nodes in pages of [`NODE_PAGE`] full objects: `nodeInfo` and `capacity` exist only
//!   there. Namespaces as metadata-only pages (`PartialObjectMetadata`).
//! - Each workload kind first as a Table without objects ([`table`]), in pages of
//!   [`TABLE_PAGE`] rows: its total and every object's age, for about a tenth of the bytes of
//!   its metadata. A Table has no namespace column, so the per-namespace counts then come from
//!   whichever source [`counting`] estimates to be cheaper: metadata-only pages of the whole
//!   kind (each object's namespace), or one request per namespace (`limit=1`: the server's
//!   `remainingItemCount` is the count). With more than [`NAMESPACE_SAMPLE`] namespaces, only
//!   that many, drawn at random, are counted, and the report says so (`namespacesSampled`).
//! - A server that cannot print a kind as a Table (406), or prints it without an AGE column, is
//!   read as metadata, as before Tables.
//!
//! Paged lists are consistent snapshots (kube drops `resourceVersion=0` when a limit is set).
//! A paged list whose continue token expired part-way (410 Gone: the API server compacted etcd
//! past the list's snapshot) is restarted once from the beginning; what it had counted is
//! discarded first, so nothing is counted twice. The expired token is not followed: the server
//! would hand back an inconsistent remainder.
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
use std::collections::HashMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, ObjectList, PartialObjectMeta};
use kube::core::NamespaceResourceScope;
use report::{Kind, SkipReason};
use serde::de::DeserializeOwned;

use crate::extensions;
use crate::snapshot::{KindCounts, NamespaceCounts, NodeSnapshot, Section, Snapshot};
use crate::table::{self, Table};

/// Full node objects per page: nodes can be large (image lists), so keep pages small.
pub const NODE_PAGE: u32 = 100;
/// Metadata-only objects per page.
pub(crate) const METADATA_PAGE: u32 = 500;
/// Table rows per page. A row is 100–200 bytes of JSON, so a full page passes the 128 KiB
/// above which the API server compresses a response; a page of 500 would travel uncompressed.
pub const TABLE_PAGE: u32 = 2_000;
/// At most this many namespaces are asked for their count of a kind; in a cluster with more,
/// this many are drawn at random and the histogram is an estimate from them.
pub const NAMESPACE_SAMPLE: usize = 256;
/// What one object's metadata costs on the wire, compressed, as an estimate: 66 bytes for a
/// Service, 230 for a Deployment, 280 for a Pod in the big-cluster bench, most of it
/// `managedFields`.
pub(crate) const METADATA_BYTES: u64 = 300;
/// What counting one namespace costs on the wire, as an estimate: a `limit=1` Table is too
/// small to be compressed, and its column descriptions alone are 1.2–4.5 KiB.
pub(crate) const COUNT_BYTES: u64 = 4_096;

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
pub(crate) async fn kube_system_uid(client: &kube::Client) -> Result<String, CollectError> {
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
        let names = match &namespaces {
            Section::Ok(names) => Some(names.as_slice()),
            Section::Skipped(_) => None,
        };
        let mut kinds = Vec::new();
        for kind in Kind::ALL {
            let name = format!("workloads.{}", kind.as_str());
            let mut read = Reader {
                client,
                section: &name,
                taken_at,
                cost: &mut cost,
            };
            let counted = match kind {
                Kind::Pod => read.kind::<Pod>(names).await,
                Kind::Service => read.kind::<Service>(names).await,
                Kind::Deployment => read.kind::<Deployment>(names).await,
                Kind::StatefulSet => read.kind::<StatefulSet>(names).await,
                Kind::DaemonSet => read.kind::<DaemonSet>(names).await,
                Kind::Job => read.kind::<Job>(names).await,
                Kind::CronJob => read.kind::<CronJob>(names).await,
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
        // The whole cause chain: kube's own Display stops at "client error (Connect)" and
        // leaves out why (e.g. "deadline has elapsed" from --request-timeout).
        _ => tracing::warn!(section, error = %plumbing::Chain(e), "section skipped"),
    }
    Section::Skipped(reason)
}

/// 403 → forbidden, 404 → not found, anything else → error.
pub(crate) fn skip_reason(e: &kube::Error) -> SkipReason {
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

/// Reads every page of one list, adding each page to a fresh `A` as the page arrives (so only
/// one page is held at a time); `add` hands back the page's continue token. `fetch` sends one
/// request; every request counts in `cost`, the restart's too.
///
/// On 410 Gone the list restarts once from the first page with a fresh `A`: the pages
/// already added belong to a snapshot the server no longer has, and the rest must not
/// be added to them. A second 410, or any other error, is returned.
async fn paged<P, A, F, Fut>(
    section: &str,
    limit: u32,
    cost: &mut Cost,
    fetch: F,
    mut add: impl FnMut(&mut A, P) -> Option<String>,
) -> Result<A, kube::Error>
where
    A: Default,
    F: Fn(ListParams) -> Fut,
    Fut: Future<Output = Result<P, kube::Error>>,
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
                    match add(&mut acc, page) {
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
        |out: &mut Vec<NodeSnapshot>, page: ObjectList<Node>| {
            out.extend(page.items.into_iter().map(node));
            page.metadata.continue_
        },
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
        |out: &mut Vec<String>, page: ObjectList<PartialObjectMeta<Namespace>>| {
            out.extend(page.items.into_iter().filter_map(|i| i.metadata.name));
            page.metadata.continue_
        },
    )
    .await
}

/// Where a kind's per-namespace counts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// The kind has no objects: every namespace holds none.
    Nothing,
    /// Metadata-only pages of the whole kind: each object's namespace.
    Metadata,
    /// One `limit=1` request in each namespace.
    EveryNamespace,
    /// One `limit=1` request in each of this many namespaces, drawn at random.
    Sample(usize),
}

/// Picks the cheaper way, by estimate, to count `objects` objects of a kind per namespace in
/// a cluster of `namespaces` namespaces (`None`: the namespace list could not be read, so only
/// metadata can say where objects are): their metadata (`METADATA_BYTES` each), or one
/// request per namespace (`COUNT_BYTES` each), in at most [`NAMESPACE_SAMPLE`] namespaces.
pub fn counting(objects: u64, namespaces: Option<usize>) -> Counting {
    let Some(namespaces) = namespaces else {
        return if objects == 0 {
            Counting::Nothing
        } else {
            Counting::Metadata
        };
    };
    let asked = namespaces.min(NAMESPACE_SAMPLE);
    if objects == 0 {
        Counting::Nothing
    } else if objects.saturating_mul(METADATA_BYTES) <= asked as u64 * COUNT_BYTES {
        Counting::Metadata
    } else if namespaces <= NAMESPACE_SAMPLE {
        Counting::EveryNamespace
    } else {
        Counting::Sample(NAMESPACE_SAMPLE)
    }
}

/// What a Table of a whole kind gave: how many objects, and the age of each in seconds.
struct Tabled {
    objects: u64,
    ages: Vec<u64>,
    /// Every page had an AGE column (a whole kind's reading stops at the first without).
    aged: bool,
}

impl Default for Tabled {
    fn default() -> Self {
        Self {
            objects: 0,
            ages: Vec::new(),
            aged: true,
        }
    }
}

/// What metadata pages of a whole kind gave.
#[derive(Default)]
struct Located {
    per_namespace: HashMap<String, u64>,
    created: Vec<i64>,
}

/// Reads one workload kind, counting its requests in `cost`.
struct Reader<'a> {
    client: &'a kube::Client,
    /// `workloads.KIND`, for the logs.
    section: &'a str,
    taken_at: i64,
    cost: &'a mut Cost,
}

impl Reader<'_> {
    /// The kind's total, per-namespace counts and ages. `namespaces`: the namespace list, if
    /// it was read.
    async fn kind<K>(&mut self, namespaces: Option<&[String]>) -> Result<KindCounts, kube::Error>
    where
        K: kube::Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let tabled = match self.table::<K>(None).await {
            Ok(t) if t.aged => t,
            Ok(_) => {
                tracing::info!(section = self.section, "no AGE column; reading metadata");
                return self.metadata_only::<K>().await;
            }
            Err(kube::Error::Api(status)) if status.code == 406 => {
                tracing::info!(section = self.section, "no Table form; reading metadata");
                return self.metadata_only::<K>().await;
            }
            Err(e) => return Err(e),
        };
        let how = counting(tabled.objects, namespaces.map(<[String]>::len));
        let per_namespace = match (how, namespaces) {
            (Counting::Nothing, _) => NamespaceCounts::Every(HashMap::new()),
            (Counting::Metadata, _) => {
                NamespaceCounts::Every(self.located::<K>().await?.per_namespace)
            }
            (Counting::EveryNamespace, Some(names)) => {
                let mut counts = HashMap::new();
                for ns in names {
                    counts.insert(ns.clone(), self.count_in::<K>(ns).await?);
                }
                NamespaceCounts::Every(counts)
            }
            (Counting::Sample(n), Some(names)) => {
                let drawn = rand::seq::index::sample(&mut rand::rng(), names.len(), n);
                let mut counts = Vec::with_capacity(n);
                for i in drawn {
                    counts.push(self.count_in::<K>(&names[i]).await?);
                }
                NamespaceCounts::Sample {
                    counts,
                    of: names.len() as u64,
                }
            }
            // `counting` asks namespaces only when given their list.
            (Counting::EveryNamespace | Counting::Sample(_), None) => {
                NamespaceCounts::Every(self.located::<K>().await?.per_namespace)
            }
        };
        tracing::debug!(
            section = self.section,
            objects = tabled.objects,
            counting = ?how,
            "kind counted"
        );
        Ok(KindCounts {
            total: tabled.objects,
            per_namespace,
            ages: tabled.ages,
        })
    }

    /// The kind (`namespace: None`) or its objects in one namespace, as Table pages.
    async fn table<K>(&mut self, namespace: Option<&str>) -> Result<Tabled, kube::Error>
    where
        K: kube::Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        let url = K::url_path(&K::DynamicType::default(), namespace);
        let client = self.client;
        let whole_kind = namespace.is_none();
        paged(
            self.section,
            TABLE_PAGE,
            self.cost,
            |lp| {
                let request = table_request(&url, &lp);
                async move { client.request::<Table>(request?).await }
            },
            |acc: &mut Tabled, page: Table| {
                acc.objects += page.rows.len() as u64;
                match page.age_column() {
                    Some(column) => acc.ages.extend(page.ages(column)),
                    None => {
                        acc.aged = false;
                        // The whole kind's Table is read for its ages: without them it is
                        // read otherwise, so stop here. A namespace's is read for its rows.
                        if whole_kind {
                            return None;
                        }
                    }
                }
                page.continue_token().map(str::to_owned)
            },
        )
        .await
    }

    /// How many objects of the kind `namespace` holds: one `limit=1` Table, whose first row
    /// and `remainingItemCount` say it; pages through the namespace only if the server leaves
    /// the count out. A namespace deleted meanwhile holds none.
    async fn count_in<K>(&mut self, namespace: &str) -> Result<u64, kube::Error>
    where
        K: kube::Resource<Scope = NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        let url = K::url_path(&K::DynamicType::default(), Some(namespace));
        self.cost.requests += 1;
        let first = self
            .client
            .request::<Table>(table_request(&url, &ListParams::default().limit(1))?)
            .await;
        match first {
            Ok(page) => match page.list_len() {
                Some(n) => Ok(n),
                None => Ok(self.table::<K>(Some(namespace)).await?.objects),
            },
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// Each object's namespace and creation time, from metadata-only pages of the kind.
    async fn located<K>(&mut self) -> Result<Located, kube::Error>
    where
        K: kube::Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let api: Api<K> = Api::all(self.client.clone());
        paged(
            self.section,
            METADATA_PAGE,
            self.cost,
            |lp| {
                let api = api.clone();
                async move { api.list_metadata(&lp).await }
            },
            |acc: &mut Located, page: ObjectList<PartialObjectMeta<K>>| {
                for item in page.items {
                    locate(acc, item.metadata);
                }
                page.metadata.continue_
            },
        )
        .await
    }

    /// The kind from metadata alone, for a server without its Table form: exact ages from
    /// each object's creation time.
    async fn metadata_only<K>(&mut self) -> Result<KindCounts, kube::Error>
    where
        K: kube::Resource<Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
        K::DynamicType: Default,
    {
        let located = self.located::<K>().await?;
        let taken_at = self.taken_at;
        Ok(KindCounts {
            total: located.per_namespace.values().sum(),
            ages: located
                .created
                .iter()
                .map(|&c| u64::try_from(taken_at.saturating_sub(c)).unwrap_or(0))
                .collect(),
            per_namespace: NamespaceCounts::Every(located.per_namespace),
        })
    }
}

/// Counts one object in its namespace and keeps its creation time.
fn locate(acc: &mut Located, meta: ObjectMeta) {
    if let Some(ns) = meta.namespace {
        *acc.per_namespace.entry(ns).or_insert(0) += 1;
    }
    if let Some(t) = meta.creation_timestamp {
        acc.created.push(t.0.as_second());
    }
}

/// A list request for `url` asking for a Table without objects.
fn table_request(url: &str, lp: &ListParams) -> Result<http::Request<Vec<u8>>, kube::Error> {
    let mut request = kube::core::Request::new(url)
        .list(lp)
        .map_err(kube::Error::BuildRequest)?;
    let (key, value) = table::NO_OBJECTS;
    let uri = format!("{}&{key}={value}", request.uri());
    *request.uri_mut() = uri
        .parse()
        .map_err(|e: http::uri::InvalidUri| kube::Error::HttpError(e.into()))?;
    request.headers_mut().insert(
        http::header::ACCEPT,
        http::HeaderValue::from_static(table::ACCEPT),
    );
    Ok(request)
}
