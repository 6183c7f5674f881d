//! The wire contract's integration tests: golden files and round trips.
//!
//! One integration-test binary per crate: each extra binary links the world again.

mod golden;
mod roundtrip;
