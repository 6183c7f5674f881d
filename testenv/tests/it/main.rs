//! testenv's own tests: each real server starts, answers and stops as the other tests rely on; the quickstart as a user runs it; one NATS release named once (pins); the workspace's shape and the docs' flag tables.
//!
//! One integration-test binary per crate: each extra binary links the world again.

mod bigquery;
mod cgroup;
mod deaths;
mod docs;
mod k8s_manifests;
mod kube;
mod kube_proxy;
mod lazyfs;
mod nats;
mod pins;
mod quickstart;
mod shape;
