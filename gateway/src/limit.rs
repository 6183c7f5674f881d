//! What one client, and all of them together, may hold of the gateway: rate limits per client
//! address and per clusterID (a sustained rate per minute and a burst), the bodies one address
//! may have arriving at once ([`Uploads`]), the bytes all requests together may hold in memory
//! ([`Budget`]), and the client address the per-address limits are keyed on.
//!
//! Keys live only in memory, until their allowance is full again (see
//! [`RateLimits::forget_idle`]) or their last body has arrived: the address is used to limit,
//! never logged or stored.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::http::HeaderMap;
use governor::clock::Clock;
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};
use prometheus_client::metrics::gauge::Gauge;

use crate::error::ApiError;

/// The limiters' clock: tokio's, which is the monotonic clock except in a test that pauses it
/// (`tokio::time::pause`) to step through a minute of refills without waiting for it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokioClock;

impl Clock for TokioClock {
    type Instant = std::time::Instant;

    fn now(&self) -> std::time::Instant {
        tokio::time::Instant::now().into_std()
    }
}

/// A limiter with one allowance per key, on [`TokioClock`].
type KeyedLimiter<K> =
    RateLimiter<K, DashMapStateStore<K>, TokioClock, NoOpMiddleware<std::time::Instant>>;

/// The two keyed limiters; each is off when its quota is `None`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RateLimits {
    per_ip: Option<Arc<KeyedLimiter<IpAddr>>>,
    per_cluster: Option<Arc<KeyedLimiter<String>>>,
    clock: TokioClock,
}

impl RateLimits {
    /// Limiters with the quotas `per_ip` and `per_cluster`.
    pub(crate) fn new(per_ip: Option<Quota>, per_cluster: Option<Quota>) -> Self {
        let clock = TokioClock;
        RateLimits {
            per_ip: per_ip.map(|q| Arc::new(RateLimiter::dashmap_with_clock(q, clock))),
            per_cluster: per_cluster.map(|q| Arc::new(RateLimiter::dashmap_with_clock(q, clock))),
            clock,
        }
    }

    /// Takes one request from the allowance of `ip` (of its /64, for IPv6).
    pub(crate) fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        let Some(limiter) = &self.per_ip else {
            return Ok(());
        };
        limiter
            .check_key(&ip_key(ip))
            .map_err(|not_until| ApiError::RateLimitedIp {
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }

    /// Takes one report from `cluster_id`'s allowance.
    pub(crate) fn check_cluster(&self, cluster_id: &str) -> Result<(), ApiError> {
        let Some(limiter) = &self.per_cluster else {
            return Ok(());
        };
        limiter
            .check_key(&cluster_id.to_owned())
            .map_err(|not_until| ApiError::RateLimitedCluster {
                retry_after: not_until.wait_time_from(self.clock.now()),
            })
    }

    /// Drops the state of keys whose allowance is full again, so memory follows the number of
    /// recently active clients rather than every client ever seen.
    pub(crate) fn forget_idle(&self) {
        if let Some(limiter) = &self.per_ip {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.per_cluster {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

/// The requests whose body is still arriving, counted per client address (an IPv6 client as
/// its /64), so that one address cannot hold more than `max` of the gateway's connections with
/// bodies it sends slowly or never finishes. An honest client's body arrives in a moment, so
/// even many clients behind one NAT address rarely have more than a few arriving at once.
#[derive(Debug)]
pub(crate) struct Uploads {
    max: u32,
    arriving: Mutex<HashMap<IpAddr, u32>>,
}

impl Uploads {
    /// At most `max` bodies arriving at once per address; 0 turns the cap off.
    pub(crate) fn new(max: u32) -> Self {
        Uploads {
            max,
            arriving: Mutex::default(),
        }
    }

    /// One more body arriving from `ip`, counted until the returned guard drops; 429 at once
    /// when the address already has `max`.
    pub(crate) fn start(&self, ip: IpAddr) -> Result<Upload<'_>, ApiError> {
        let key = ip_key(ip);
        if self.max > 0 {
            let mut arriving = self.lock();
            let count = arriving.entry(key).or_insert(0);
            if *count >= self.max {
                return Err(ApiError::TooManyUploads);
            }
            *count += 1;
        }
        Ok(Upload { uploads: self, key })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, u32>> {
        // One counter changes under the lock; a panic elsewhere leaves the map consistent.
        self.arriving.lock().unwrap_or_else(PoisonError::into_inner)
    }

    #[cfg(test)]
    fn addresses(&self) -> usize {
        self.lock().len()
    }
}

/// A body arriving, counted in [`Uploads`] until dropped.
#[derive(Debug)]
pub(crate) struct Upload<'a> {
    uploads: &'a Uploads,
    key: IpAddr,
}

impl Drop for Upload<'_> {
    fn drop(&mut self) {
        if self.uploads.max == 0 {
            return;
        }
        let mut arriving = self.uploads.lock();
        if let Some(count) = arriving.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                arriving.remove(&self.key);
            }
        }
    }
}

/// The bytes that all requests in flight together may hold (`--memory-budget`), as the
/// OpenTelemetry Collector's `memory_limiter` bounds its pipelines: each request reserves its
/// buffers before it grows them and holds them until its publish is answered; a request that
/// would pass the budget is refused (503 with Retry-After) instead of growing. The count lives
/// in the exported gauge itself, so the metric is exactly what is reserved.
#[derive(Debug)]
pub(crate) struct Budget {
    limit: u64,
    used: Gauge,
}

impl Budget {
    /// A budget of `limit` bytes, counted in `used`.
    pub(crate) fn new(limit: u64, used: Gauge) -> Arc<Self> {
        Arc::new(Budget { limit, used })
    }

    /// An empty reservation, to grow as a request's buffers do.
    pub(crate) fn reservation(self: &Arc<Self>) -> Reservation {
        Reservation {
            budget: Arc::clone(self),
            held: 0,
        }
    }

    /// Bytes reserved now.
    #[cfg(test)]
    fn used(&self) -> u64 {
        u64::try_from(self.used.get()).unwrap_or(0)
    }
}

/// Bytes one request holds of the [`Budget`], given back when dropped.
#[derive(Debug)]
pub(crate) struct Reservation {
    budget: Arc<Budget>,
    held: u64,
}

impl Reservation {
    /// Reserves `more` bytes; [`ApiError::OverBudget`] if that would pass the budget, the
    /// reservation then unchanged.
    pub(crate) fn grow(&mut self, more: u64) -> Result<(), ApiError> {
        let more_i64 = i64::try_from(more).map_err(|_| ApiError::OverBudget)?;
        let limit = i64::try_from(self.budget.limit).unwrap_or(i64::MAX);
        self.budget
            .used
            .inner()
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more_i64).filter(|&after| after <= limit)
            })
            .map_err(|_| ApiError::OverBudget)?;
        self.held += more;
        Ok(())
    }

    /// Gives back all but `keep` bytes (when a request's buffers shrink).
    pub(crate) fn shrink_to(&mut self, keep: u64) {
        if keep < self.held {
            self.release(self.held - keep);
        }
    }

    /// Bytes held.
    #[cfg(test)]
    pub(crate) fn held(&self) -> u64 {
        self.held
    }

    fn release(&mut self, bytes: u64) {
        let bytes = bytes.min(self.held);
        self.held -= bytes;
        // `held` was added as an i64, so it fits in one.
        self.budget
            .used
            .dec_by(i64::try_from(bytes).unwrap_or(i64::MAX));
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.release(self.held);
    }
}

/// How often [`RateLimits::forget_idle`] runs.
pub(crate) const FORGET_EVERY: Duration = Duration::from_secs(60);

/// A quota of `rate` per minute with a bucket of `burst` (default: `rate`); `None` when `rate`
/// is 0, the limit being off.
pub(crate) fn per_minute(rate: u32, burst: Option<u32>) -> Option<Quota> {
    let quota = Quota::per_minute(NonZeroU32::new(rate)?);
    Some(match burst.and_then(NonZeroU32::new) {
        Some(burst) => quota.allow_burst(burst),
        None => quota,
    })
}

/// What an address is limited as: an IPv4 address as itself, an IPv6 address as its /64. One
/// subscriber line or host usually gets a whole /64, so keying on single IPv6 addresses would
/// let a client choose a fresh key for every request. IPv4-mapped IPv6 addresses are IPv4.
fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !u128::from(u64::MAX))),
        v4 => v4,
    }
}

/// The client's address: the TCP peer, or, with `trust_forwarded_for`, the last address of
/// `X-Forwarded-For`. The proxy in front appends the address it saw (or replaces the header
/// with it), so the last one is the only one the client cannot choose: anything before it
/// arrived from the client. When the last one is missing or not an address, the peer.
pub(crate) fn client_ip(
    peer: SocketAddr,
    headers: &HeaderMap,
    trust_forwarded_for: bool,
) -> IpAddr {
    if trust_forwarded_for && let Some(ip) = last_forwarded_for(headers) {
        return ip;
    }
    peer.ip()
}

/// The last address of the last `X-Forwarded-For` line (a proxy may add a line of its own
/// rather than append to the client's).
fn last_forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let line = headers.get_all("x-forwarded-for").iter().next_back()?;
    let last = line.to_str().ok()?.rsplit(',').next()?.trim();
    // Some proxies add the port: `192.0.2.1:4711`, `[2001:db8::1]:4711`.
    last.parse::<IpAddr>()
        .or_else(|_| last.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::http::HeaderValue;

    // The limiters run on tokio's clock: paused, no time passes unless a test advances it, so
    // every wait is exact and a minute of refills takes no time at all.

    fn wait(refusal: Result<(), ApiError>) -> Duration {
        match refusal {
            Err(ApiError::RateLimitedIp { retry_after })
            | Err(ApiError::RateLimitedCluster { retry_after }) => retry_after,
            other => panic!("expected a rate limit, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_cluster_over_its_quota_is_refused_with_a_wait() {
        let limits = RateLimits::new(None, per_minute(2, None));
        assert!(limits.check_cluster("a").is_ok());
        assert!(limits.check_cluster("a").is_ok());
        let refused = limits.check_cluster("a");
        assert!(matches!(refused, Err(ApiError::RateLimitedCluster { .. })));
        // Two a minute: one more every 30 s.
        assert_eq!(wait(refused), Duration::from_secs(30));
        assert!(
            limits.check_cluster("b").is_ok(),
            "another cluster has its own allowance"
        );
        assert!(
            limits.check_ip("127.0.0.1".parse().unwrap()).is_ok(),
            "per-IP limit is off"
        );

        tokio::time::advance(Duration::from_secs(29)).await;
        assert_eq!(
            wait(limits.check_cluster("a")),
            Duration::from_secs(1),
            "a wait counts down"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(limits.check_cluster("a").is_ok(), "the wait was enough");
        assert_eq!(wait(limits.check_cluster("a")), Duration::from_secs(30));
    }

    #[tokio::test(start_paused = true)]
    async fn a_burst_lets_many_through_at_once_then_the_rate_paces() {
        let limits = RateLimits::new(per_minute(1, Some(3)), None);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..3 {
            assert!(limits.check_ip(ip).is_ok());
        }
        let refused = limits.check_ip(ip);
        assert!(matches!(refused, Err(ApiError::RateLimitedIp { .. })));
        assert_eq!(wait(refused), Duration::from_secs(60));
        // After the burst, one a minute.
        for _ in 0..3 {
            tokio::time::advance(Duration::from_secs(60)).await;
            assert!(limits.check_ip(ip).is_ok());
            assert_eq!(wait(limits.check_ip(ip)), Duration::from_secs(60));
        }
        // Three quiet minutes fill the burst again.
        tokio::time::advance(Duration::from_secs(180)).await;
        for _ in 0..3 {
            assert!(limits.check_ip(ip).is_ok());
        }
        assert!(limits.check_ip(ip).is_err());
        assert_eq!(per_minute(0, Some(3)), None, "a rate of 0 is off");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_address_is_forgotten() {
        let limits = RateLimits::new(per_minute(1, Some(2)), None);
        let remembered = |limits: &RateLimits| limits.per_ip.as_ref().map_or(0, |l| l.len());
        assert!(limits.check_ip("192.0.2.1".parse().unwrap()).is_ok());
        limits.forget_idle();
        assert_eq!(remembered(&limits), 1, "its allowance is not full yet");
        // A minute refills the one request it took; governor keeps a key one interval (here a
        // minute) past that before it counts as fresh.
        tokio::time::advance(Duration::from_secs(119)).await;
        limits.forget_idle();
        assert_eq!(remembered(&limits), 1);
        tokio::time::advance(Duration::from_secs(1)).await;
        limits.forget_idle();
        assert_eq!(remembered(&limits), 0, "still remembered when idle");
    }

    fn forwarded(lines: &[&'static str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append("x-forwarded-for", HeaderValue::from_static(line));
        }
        headers
    }

    #[test]
    fn forwarded_for_is_used_only_when_trusted() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let headers = forwarded(&["203.0.113.7"]);
        assert_eq!(client_ip(peer, &headers, false), peer.ip());
        assert_eq!(
            client_ip(peer, &headers, true),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn the_client_cannot_choose_its_key_only_the_address_the_proxy_appended_counts() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let proxy_saw: IpAddr = "198.51.100.9".parse().unwrap();
        for lines in [
            &["198.51.100.9"][..],
            &["1.2.3.4, 198.51.100.9"],
            &["1.2.3.4,5.6.7.8 ,  198.51.100.9"],
            &["garbage, 198.51.100.9"],
            // The client's own line, then the proxy's.
            &["1.2.3.4, 5.6.7.8", "198.51.100.9"],
            &["198.51.100.9:4711"],
        ] {
            assert_eq!(
                client_ip(peer, &forwarded(lines), true),
                proxy_saw,
                "{lines:?}"
            );
        }
        // Nothing usable where the proxy's address belongs: the peer, never an earlier entry.
        for lines in [&["1.2.3.4, garbage"][..], &["1.2.3.4, "], &[""]] {
            assert_eq!(
                client_ip(peer, &forwarded(lines), true),
                peer.ip(),
                "{lines:?}"
            );
        }
        assert_eq!(client_ip(peer, &HeaderMap::new(), true), peer.ip());
        assert_eq!(
            client_ip(peer, &forwarded(&["1.2.3.4, [2001:db8::1]:4711"]), true),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn an_address_may_have_only_so_many_bodies_arriving_and_a_finished_one_makes_room() {
        let uploads = Uploads::new(2);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let first = uploads.start(ip("192.0.2.1")).unwrap();
        let _second = uploads.start(ip("192.0.2.1")).unwrap();
        assert!(matches!(
            uploads.start(ip("192.0.2.1")),
            Err(ApiError::TooManyUploads)
        ));
        assert!(
            uploads.start(ip("192.0.2.2")).is_ok(),
            "another address has its own"
        );
        let _v6 = uploads.start(ip("2001:db8::1")).unwrap();
        let _v6_again = uploads.start(ip("2001:db8::2")).unwrap();
        assert!(
            uploads.start(ip("2001:db8::ffff")).is_err(),
            "an IPv6 client counts as its /64"
        );
        drop(first);
        let _third = uploads.start(ip("192.0.2.1")).unwrap();
        drop((_second, _third, _v6, _v6_again));
        assert_eq!(
            uploads.addresses(),
            0,
            "an address with nothing arriving is forgotten"
        );
        let off = Uploads::new(0);
        let many: Vec<_> = (0..100)
            .map(|_| off.start(ip("192.0.2.1")).unwrap())
            .collect();
        assert_eq!(many.len(), 100, "0 is no cap");
    }

    #[test]
    fn the_budget_refuses_what_would_pass_it_and_takes_back_what_is_dropped() {
        let gauge = Gauge::default();
        let budget = Budget::new(100, gauge.clone());
        let mut a = budget.reservation();
        let mut b = budget.reservation();
        a.grow(60).unwrap();
        assert!(matches!(b.grow(41), Err(ApiError::OverBudget)));
        assert_eq!(b.held(), 0, "a refused reservation holds nothing");
        b.grow(40).unwrap();
        assert_eq!((budget.used(), gauge.get()), (100, 100));
        assert!(a.grow(1).is_err());
        a.shrink_to(10);
        assert_eq!(budget.used(), 50);
        a.grow(50).unwrap();
        drop(a);
        assert_eq!(budget.used(), 40);
        drop(b);
        assert_eq!((budget.used(), gauge.get()), (0, 0));
    }

    #[test]
    fn concurrent_reservations_never_pass_the_budget() {
        let gauge = Gauge::default();
        let budget = Budget::new(1000, gauge.clone());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let budget = Arc::clone(&budget);
                let gauge = gauge.clone();
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        let mut r = budget.reservation();
                        if r.grow(300).is_ok() {
                            assert!(gauge.get() <= 1000, "{}", gauge.get());
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn an_ipv6_client_is_limited_as_its_slash_64() {
        let limits = RateLimits::new(per_minute(1, None), None);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(limits.check_ip(ip("2001:db8:1:2::1")).is_ok());
        assert!(
            limits
                .check_ip(ip("2001:db8:1:2:ffff:ffff:ffff:ffff"))
                .is_err()
        );
        assert!(
            limits.check_ip(ip("2001:db8:1:3::1")).is_ok(),
            "another /64"
        );
        assert!(limits.check_ip(ip("192.0.2.1")).is_ok());
        assert!(
            limits.check_ip(ip("::ffff:192.0.2.1")).is_err(),
            "an IPv4-mapped address is the IPv4 address"
        );
        assert!(limits.check_ip(ip("192.0.2.2")).is_ok());
    }
}
