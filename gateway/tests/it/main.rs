//! The gateway's integration tests, in one binary (each extra test binary links the world again,
//! on a CI machine of two cores): gateways in-process (`gateway::run` on a bound listener) and
//! the gateway binary (started by `testenv::Launch`), in front of a real nats-server.
//!
//! - `api`: the HTTP contract (v1 and v2 intake, refusals, limits, shedding, NATS outages,
//!   draining at shutdown, health, metrics).
//! - `backdate`: `--backdate-synthetic`.
//! - `bomb`: a gzip bomb cut off at the decoded cap in bounded memory.
//! - `budget`: a flood of bombs and maximal reports refused beyond `--memory-budget`.
//! - `client_address`: what the per-IP rate limit keys on, behind a proxy or not.
//! - `connections`: the connection flags reach `plumbing::serve` (tested in plumbing), and
//!   slow heads leave honest reports served in bounded memory.
//! - `erasure`: `POST /api/v2/erasure`.
//! - `hostile`: the hostile corpus and slow-loris bodies.
//! - `overload`: twice the capacity, shed politely.
//! - `privacy`: hostile reports are queued sanitized with re-keyed node IDs; impossible values
//!   and wrong types are refused naming the field; no node-ID key, no start.
//! - `streams`: the streams' retention and budgets, and a stream made by an earlier gateway.
//! - `slow`: slowhttptest's slow bodies and slow heads against the shipped flags, while an
//!   honest volunteer on another address is served.
//! - `helpers`: an in-process gateway, launching the binary, reading the streams.
//! - `load`: the overload harness, shared with `benches/overload.rs`.
//!
//! Time: the rate limiters' waits are tested under tokio's paused clock beside their code
//! (`src/limit.rs`). Here every timeout and latency belongs to a real server (an in-process
//! gateway talking to a real nats-server, or the gateway binary), so the wall clock measures
//! them: a paused clock would jump over the network waits and fire the timeouts under test.

mod api;
mod backdate;
mod bomb;
mod budget;
mod client_address;
mod connections;
mod deadlines;
mod erasure;
mod helpers;
mod hostile;
mod load;
mod overload;
mod privacy;
mod slow;
mod streams;
