//! The system tests: one binary, one module per subject (alerts, attacks, broker, chaos, contracts,
//! dashboard, durability, e2e, memory), and `pipeline`, the write path and the turn that the
//! heavy ones share.
//!
//! One integration-test binary per crate: each extra binary links the world again.

mod alerts;
mod attacks;
mod broker;
mod chaos;
mod contracts;
mod dashboard;
mod durability;
mod e2e;
mod memory;
mod pipeline;
