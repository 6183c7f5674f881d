//! Rate limits per client IP address and per clusterID (requests per minute, a burst of the
//! same size), and the client IP they are keyed on.
//!
//! Keys live only in memory, for at most a minute after their last request (see [`RateLimits::forget_idle`]):
//! the address is used to limit, never logged or stored.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::http::HeaderMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::error::ApiError;

/// The two keyed limiters; each is off when its quota is `None`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RateLimits {
    per_ip: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
    per_cluster: Option<Arc<DefaultKeyedRateLimiter<String>>>,
    clock: DefaultClock,
}

impl RateLimits {
    /// Limiters allowing `per_ip` and `per_cluster` requests per minute.
    pub(crate) fn new(per_ip: Option<NonZeroU32>, per_cluster: Option<NonZeroU32>) -> Self {
        RateLimits {
            per_ip: per_ip.map(|n| Arc::new(RateLimiter::keyed(Quota::per_minute(n)))),
            per_cluster: per_cluster.map(|n| Arc::new(RateLimiter::keyed(Quota::per_minute(n)))),
            clock: DefaultClock::default(),
        }
    }

    /// Takes one request from `ip`'s allowance.
    pub(crate) fn check_ip(&self, ip: IpAddr) -> Result<(), ApiError> {
        let Some(limiter) = &self.per_ip else {
            return Ok(());
        };
        limiter
            .check_key(&ip)
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

/// How often [`RateLimits::forget_idle`] runs.
pub(crate) const FORGET_EVERY: Duration = Duration::from_secs(60);

/// The client's IP: the TCP peer, or, with `trust_forwarded_for`, the first address in
/// `X-Forwarded-For` (the original client as seen by the first proxy).
pub(crate) fn client_ip(
    peer: SocketAddr,
    headers: &HeaderMap,
    trust_forwarded_for: bool,
) -> IpAddr {
    if trust_forwarded_for
        && let Some(ip) = headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .and_then(|first| first.trim().parse::<IpAddr>().ok())
    {
        return ip;
    }
    peer.ip()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn a_cluster_over_its_quota_is_refused_with_a_wait() {
        let limits = RateLimits::new(None, NonZeroU32::new(2));
        assert!(limits.check_cluster("a").is_ok());
        assert!(limits.check_cluster("a").is_ok());
        match limits.check_cluster("a") {
            Err(ApiError::RateLimitedCluster { retry_after }) => {
                assert!(retry_after > Duration::ZERO && retry_after <= Duration::from_secs(30));
            }
            other => panic!("expected a rate limit, got {other:?}"),
        }
        assert!(
            limits.check_cluster("b").is_ok(),
            "another cluster has its own allowance"
        );
        assert!(
            limits.check_ip("127.0.0.1".parse().unwrap()).is_ok(),
            "per-IP limit is off"
        );
    }

    #[test]
    fn forwarded_for_is_used_only_when_trusted() {
        let peer: SocketAddr = "10.0.0.1:5000".parse().unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.7, 10.0.0.9"),
        );
        assert_eq!(client_ip(peer, &headers, false), peer.ip());
        assert_eq!(
            client_ip(peer, &headers, true),
            "203.0.113.7".parse::<IpAddr>().unwrap()
        );
        headers.insert("x-forwarded-for", HeaderValue::from_static("garbage"));
        assert_eq!(client_ip(peer, &headers, true), peer.ip());
    }
}
