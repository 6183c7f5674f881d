//! A fault-injecting proxy in front of [`KubeApi`]: it forwards every request to the real
//! kube-apiserver with the admin's credential, records it, and on command answers what the real
//! server cannot be made to answer here.
//!
//! Why it exists: a paged list whose continue token expires part-way gets `410 Gone`, and a
//! client must restart the list without counting anything twice. The real server cannot be made
//! to send that 410 on demand: an earlier session compacted etcd past a list's continue token,
//! and kube-apiserver v1.37.2 still served the next page from its watch cache. Nor can a real
//! server be told to leave out `remainingItemCount`, to refuse Table output, or to print a
//! Table without its AGE column, as older or unusual servers do. Everything else a client reads
//! through the proxy is the real server's answer, forwarded unchanged.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::json;
use tokio::task::JoinHandle;

use crate::{Error, KubeApi};

/// Which answers the proxy changes. Only requests carrying a `continue=` parameter can get a
/// 410: that is when a token can have expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeFault {
    /// No faults: every request is forwarded.
    None,
    /// `410 Gone` to the first continued request for this path (e.g. `/api/v1/pods`).
    Once(&'static str),
    /// `410 Gone` to every continued request for this path.
    Always(&'static str),
    /// No 410s, but every `limit=1` answer loses its `remainingItemCount`, as a server that
    /// does not count what remains would send it.
    NoRemainingCount,
    /// Every request for a Table is answered 406 Not Acceptable, as by a server that cannot
    /// print that kind.
    NoTables,
    /// Tables come without their AGE column (renamed), as from a server printing a kind
    /// without `creationTimestamp`.
    NoAgeColumn,
}

/// One request the proxy saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeRequest {
    /// The URL path, e.g. `/api/v1/pods`.
    pub path: String,
    /// Whether it carried a `continue=` parameter (a later page of a list).
    pub continued: bool,
    /// Whether the proxy answered it `410 Gone` instead of forwarding it.
    pub gone: bool,
}

#[derive(Debug)]
struct Shared {
    upstream: String,
    http: reqwest::Client,
    /// The armed fault, and whether a [`KubeFault::Once`] has fired.
    fault: Mutex<(KubeFault, bool)>,
    seen: Mutex<Vec<KubeRequest>>,
}

/// A plain-HTTP proxy on a free loopback port in front of a [`KubeApi`]. Point the client under
/// test at [`KubeProxy::url`] (with [`KubeProxy::client`] or a [`KubeProxy::kubeconfig`]); the
/// proxy adds the admin's client certificate, so the client needs no credential.
///
/// It forwards every request unchanged (bodies as the server encoded them) and records it, except
/// what the armed [`KubeFault`] picks, which gets a `Status` shaped like kube-apiserver's. It
/// serves on the Tokio runtime it was started on until dropped.
#[derive(Debug)]
pub struct KubeProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for KubeProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl KubeProxy {
    /// Starts the proxy in front of `kube`, with no fault armed.
    pub async fn start(kube: &KubeApi) -> Result<Self, Error> {
        // The admin credential, read from the kubeconfig testenv wrote.
        let path = kube.kubeconfig_path();
        let config: serde_json::Value = std::fs::read(path)
            .map_err(|e| Error::io(format!("reading {}", path.display()), e))
            .and_then(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|e| Error::io(format!("parsing {}", path.display()), e.into()))
            })?;
        let user = &config["users"][0]["user"];
        let file = |key: &str| -> Result<Vec<u8>, Error> {
            let name = user[key].as_str().ok_or_else(|| {
                Error::io(
                    format!("{key} in {}", path.display()),
                    std::io::Error::other("missing"),
                )
            })?;
            std::fs::read(name).map_err(|e| Error::io(format!("reading {name}"), e))
        };
        let mut identity = file("client-certificate")?;
        identity.extend(file("client-key")?);
        let tls = |e: reqwest::Error| Error::io("the proxy's client", std::io::Error::other(e));
        let http = reqwest::Client::builder()
            .add_root_certificate(
                reqwest::Certificate::from_pem(kube.ca_pem().as_bytes()).map_err(tls)?,
            )
            .identity(reqwest::Identity::from_pem(&identity).map_err(tls)?)
            // Pass bodies through as the server encoded them.
            .no_gzip()
            .build()
            .map_err(tls)?;
        let shared = Arc::new(Shared {
            upstream: kube.server_url().to_owned(),
            http,
            fault: Mutex::new((KubeFault::None, false)),
            seen: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| Error::io("binding 127.0.0.1:0", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("reading a local address", e))?;
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            // Serving ends only when the task is aborted (the proxy dropped).
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, shared, task })
    }

    /// Arms `fault` for the requests that follow and forgets the requests seen so far.
    pub fn arm(&self, fault: KubeFault) {
        *lock(&self.shared.fault) = (fault, false);
        lock(&self.shared.seen).clear();
    }

    /// The requests seen since the last [`KubeProxy::arm`], in order.
    pub fn seen(&self) -> Vec<KubeRequest> {
        lock(&self.shared.seen).clone()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client that talks to the proxy (which adds the credential).
    pub fn client(&self) -> Result<kube::Client, Error> {
        let url = self.url().parse().map_err(|e| {
            Error::io(
                format!("the proxy's URL {}", self.url()),
                std::io::Error::other(e),
            )
        })?;
        Ok(kube::Client::try_from(kube::Config::new(url))?)
    }

    /// Writes a kubeconfig that points at the proxy, without a credential, to
    /// `dir/proxy.kubeconfig` (for a program under test) and returns its path.
    pub fn kubeconfig(&self, dir: &Path) -> Result<PathBuf, Error> {
        let path = dir.join("proxy.kubeconfig");
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "proxy", "cluster": {"server": self.url()}}],
            "users": [{"name": "proxy", "user": {}}],
            "contexts": [{"name": "proxy", "context": {"cluster": "proxy", "user": "proxy"}}],
            "current-context": "proxy",
        });
        std::fs::write(&path, config.to_string())
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))?;
        Ok(path)
    }
}

/// A poisoned lock only means another request's handler panicked; the data is still whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// kube-apiserver's answer to an expired continue token (apiserver's storage errors).
fn gone() -> Response {
    failure(
        StatusCode::GONE,
        "Expired",
        "The provided continue parameter is too old to display a consistent list result. \
         You can start a new list without the continue parameter, or use the continue token \
         in this response to retrieve the remainder of the results. Continuing with the \
         provided token results in an inconsistent list - objects that were created, \
         modified, or deleted between the time the first chunk was returned and now may \
         show up in the list.",
    )
}

/// kube-apiserver's answer to an `Accept` it cannot serve.
fn not_acceptable() -> Response {
    failure(
        StatusCode::NOT_ACCEPTABLE,
        "NotAcceptable",
        "only the following media types are accepted: application/json",
    )
}

/// A `Status` of kind Failure, as kube-apiserver sends it.
fn failure(code: StatusCode, reason: &str, message: &str) -> Response {
    let status = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    let mut response = Response::new(Body::from(status.to_string()));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    match try_forward(&shared, request).await {
        Ok(response) => response,
        Err(e) => {
            let mut response = Response::new(Body::from(format!("kube proxy: {e}")));
            *response.status_mut() = StatusCode::BAD_GATEWAY;
            response
        }
    }
}

/// The one decision point: every request passes here, reading the armed fault.
async fn try_forward(shared: &Shared, request: Request) -> Result<Response, String> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let continued = parts
        .uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p.starts_with("continue=")));
    let (fault, gone_now) = {
        let mut fault = lock(&shared.fault);
        let hit = match fault.0 {
            KubeFault::Once(p) => continued && p == path && !fault.1,
            KubeFault::Always(p) => continued && p == path,
            KubeFault::None
            | KubeFault::NoRemainingCount
            | KubeFault::NoTables
            | KubeFault::NoAgeColumn => false,
        };
        fault.1 |= hit;
        (fault.0, hit)
    };
    lock(&shared.seen).push(KubeRequest {
        path: path.clone(),
        continued,
        gone: gone_now,
    });
    if gone_now {
        return Ok(gone());
    }
    let wants_table = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("as=Table"));
    if fault == KubeFault::NoTables && wants_table {
        return Ok(not_acceptable());
    }

    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or(path.as_str(), |pq| pq.as_str());
    let no_age = fault == KubeFault::NoAgeColumn && wants_table;
    let mut headers = parts.headers;
    if no_age {
        // An uncompressed answer, so the proxy can rewrite it.
        headers.remove(header::ACCEPT_ENCODING);
    }
    for h in [
        header::HOST,
        header::CONTENT_LENGTH,
        header::CONNECTION,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(h);
    }
    let body = axum::body::to_bytes(body, 64 << 20)
        .await
        .map_err(|e| format!("reading the request body: {e}"))?;
    let upstream = shared
        .http
        .request(parts.method, format!("{}{path_and_query}", shared.upstream))
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("forwarding {path}: {e}"))?;
    let status = upstream.status();
    let mut headers = upstream.headers().clone();
    for h in [
        header::CONTENT_LENGTH,
        header::CONNECTION,
        header::TRANSFER_ENCODING,
    ] {
        headers.remove(h);
    }
    let mut body = upstream
        .bytes()
        .await
        .map_err(|e| format!("reading the answer to {path}: {e}"))?;
    let json = |bytes: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(bytes)
            .map_err(|e| format!("the answer to {path} is not JSON: {e}"))
    };
    let first_of_one = parts
        .uri
        .query()
        .is_some_and(|q| q.split('&').any(|p| p == "limit=1"));
    if fault == KubeFault::NoRemainingCount
        && first_of_one
        && !headers.contains_key(header::CONTENT_ENCODING)
    {
        let mut list = json(&body)?;
        if let Some(meta) = list["metadata"].as_object_mut() {
            meta.remove("remainingItemCount");
        }
        body = list.to_string().into();
    }
    if no_age && status.is_success() {
        let mut table = json(&body)?;
        for column in table["columnDefinitions"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            if column["name"] == "Age" {
                column["name"] = "Created".into();
            }
        }
        body = table.to_string().into();
    }
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    Ok(response)
}
