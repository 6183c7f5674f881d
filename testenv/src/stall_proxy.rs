//! A TCP proxy that stops answering on command: the fault no real server can be told to show.
//!
//! A server that accepts a connection and then never answers (a crash inside it that leaves a
//! lock held, a frozen VM, a half-dead load balancer) is what a deadline exists for. The real
//! servers here cannot be made to do that on demand, and a stopped process is a different fault
//! (its connections are refused or reset, which every client already notices). So this proxy
//! forwards bytes both ways until [`StallProxy::stall`]; from then on it still accepts new
//! connections and reads what clients send, but passes nothing on in either direction, also on
//! connections already open (a request in flight never gets its answer), not even a close, until
//! [`StallProxy::resume`]. It works for any protocol over TCP: HTTP, NATS, kube-apiserver's TLS.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::Error;

/// What the proxy counted.
#[derive(Debug, Default)]
struct Counts {
    /// Connections accepted.
    connections: AtomicU64,
    /// Bytes clients sent while the proxy was stalled (held, not yet forwarded).
    held_bytes: AtomicU64,
}

/// A TCP proxy on a free loopback port in front of `upstream`. It serves on the Tokio runtime it
/// was started on until dropped; dropping it closes every connection through it.
#[derive(Debug)]
pub struct StallProxy {
    addr: SocketAddr,
    stalled: watch::Sender<bool>,
    counts: Arc<Counts>,
    task: JoinHandle<()>,
}

impl StallProxy {
    /// Starts forwarding to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Result<Self, Error> {
        let listener = TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(|e| Error::io("binding the stall proxy", e))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::io("the stall proxy's address", e))?;
        let (stalled, gate) = watch::channel(false);
        let counts = Arc::new(Counts::default());
        let task = tokio::spawn(accept(listener, upstream, gate, Arc::clone(&counts)));
        Ok(Self {
            addr,
            stalled,
            counts,
            task,
        })
    }

    /// The proxy's address (`127.0.0.1:PORT`).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// From now on nothing passes, in either direction, on any connection: new connections are
    /// accepted and read, never answered.
    pub fn stall(&self) {
        self.stalled.send_replace(true);
    }

    /// Passes everything again, first what was held.
    pub fn resume(&self) {
        self.stalled.send_replace(false);
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> u64 {
        self.counts.connections.load(Ordering::SeqCst)
    }

    /// Bytes clients sent while the proxy was stalled: evidence a client did try, and is
    /// waiting for an answer that will not come.
    pub fn held_bytes(&self) -> u64 {
        self.counts.held_bytes.load(Ordering::SeqCst)
    }
}

impl Drop for StallProxy {
    fn drop(&mut self) {
        // The connections' tasks live in the accept task's JoinSet: they end with it.
        self.task.abort();
    }
}

async fn accept(
    listener: TcpListener,
    upstream: SocketAddr,
    gate: watch::Receiver<bool>,
    counts: Arc<Counts>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((client, _)) = accepted else { continue };
                counts.connections.fetch_add(1, Ordering::SeqCst);
                connections.spawn(connection(client, upstream, gate.clone(), Arc::clone(&counts)));
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn connection(
    client: TcpStream,
    upstream: SocketAddr,
    gate: watch::Receiver<bool>,
    counts: Arc<Counts>,
) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    let up = pipe(client_read, server_write, gate.clone(), Some(counts));
    let down = pipe(server_read, client_write, gate, None);
    tokio::join!(up, down);
}

/// Copies `from` to `to`, holding each chunk while the gate says stalled.
async fn pipe(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut gate: watch::Receiver<bool>,
    held: Option<Arc<Counts>>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(n) if n > 0 => n,
            // The end of a connection is held like its data: a server that closes an idle
            // connection (the BigQuery emulator does after 15 s) must not answer for it while
            // stalled. A dropped proxy ends the wait.
            _ => {
                let _ = gate.wait_for(|stalled| !*stalled).await;
                break;
            }
        };
        if *gate.borrow_and_update()
            && let Some(counts) = &held
        {
            counts.held_bytes.fetch_add(n as u64, Ordering::SeqCst);
        }
        if gate.wait_for(|stalled| !*stalled).await.is_err() {
            break;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::time::Duration;

    use super::*;

    /// An echo server on loopback.
    async fn echo() -> SocketAddr {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(
        s: &mut TcpStream,
        msg: &[u8],
    ) -> Result<Vec<u8>, tokio::time::error::Elapsed> {
        s.write_all(msg).await.unwrap();
        let mut got = vec![0u8; msg.len()];
        tokio::time::timeout(Duration::from_millis(300), s.read_exact(&mut got))
            .await
            .map(|r| {
                r.unwrap();
                got
            })
    }

    #[tokio::test]
    async fn it_forwards_until_stalled_then_answers_nothing_on_old_or_new_connections_until_resumed()
     {
        let proxy = StallProxy::start(echo().await).await.unwrap();
        let mut open = TcpStream::connect(proxy.addr()).await.unwrap();
        assert_eq!(round_trip(&mut open, b"hello").await.unwrap(), b"hello");

        proxy.stall();
        assert!(
            round_trip(&mut open, b"stuck").await.is_err(),
            "an open connection stalls"
        );
        let mut new = TcpStream::connect(proxy.addr()).await.unwrap();
        assert!(
            round_trip(&mut new, b"new").await.is_err(),
            "a new one is accepted, never answered"
        );
        testenv_eventually(|| proxy.held_bytes() == 8).await;
        assert_eq!(proxy.connections(), 2);

        proxy.resume();
        let mut got = vec![0u8; 5];
        open.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"stuck", "what was held is delivered on resume");
        new.write_all(b"again").await.unwrap();
        let mut got = vec![0u8; 8];
        new.read_exact(&mut got).await.unwrap();
        assert_eq!(got, b"newagain");
    }

    #[tokio::test]
    async fn a_close_from_the_server_is_held_while_stalled() {
        // A server that closes every connection at once, as one closing idle connections.
        let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let upstream = listener.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (s, _) = listener.accept().await.unwrap();
                drop(s);
            }
        });
        let proxy = StallProxy::start(upstream).await.unwrap();
        proxy.stall();
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(Duration::from_millis(300), client.read(&mut byte)).await;
        assert!(read.is_err(), "the close passed while stalled: {read:?}");
        proxy.resume();
        assert_eq!(
            client.read(&mut byte).await.unwrap(),
            0,
            "closed once resumed"
        );
    }

    async fn testenv_eventually(mut check: impl FnMut() -> bool) {
        crate::eventually(Duration::from_secs(5), "the held bytes", || {
            let ok = check();
            async move { ok }
        })
        .await;
    }
}
