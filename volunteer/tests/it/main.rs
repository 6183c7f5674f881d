//! The volunteer's integration tests: one binary, one module per subject.
//!
//! One integration-test binary per crate: each extra binary links the world again.

mod cluster;
mod common;
mod compare;
mod consent;
mod deadlines;
mod forget;
mod helm;
mod rbac;
mod relist;
mod sampling;
mod send;
mod skew;
mod startup;
mod status;
