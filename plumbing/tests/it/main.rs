//! plumbing's integration tests, in one binary (each extra test binary links the world again, on
//! a CI machine of two cores).
//!
//! - `serve`: `plumbing::serve::serve` bounds every connection: slow heads closed by the header
//!   timeout, idle keep-alive connections by the idle timeout, the connection cap making room
//!   or waiting, HTTP/2 not served, a draining shutdown.
//! - `server`: the server under test (in this process, on 127.0.0.1:0, with a small router
//!   whose requests the test can hold), raw HTTP/1.1 over TCP, and what the kernel holds for
//!   its port.

mod serve;
mod server;
