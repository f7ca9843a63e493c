//! The firewall: who may connect (allow and deny networks), how many
//! connections each may hold, and how fast each may send requests. The
//! client address is the socket peer's, unless the peer is a trusted proxy
//! that says otherwise (PROXY protocol, X-Forwarded-For).

use crate::config::{Cidr, FirewallConfig, RateConfig};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// What the edge turned away, counted for the admin API.
#[derive(Debug, Default, serde::Serialize)]
pub struct Stats {
    /// Connections closed because the peer's network is denied.
    pub connections_denied: AtomicU64,
    /// Connections refused by `max_connections`.
    pub connections_over_total: AtomicU64,
    /// Connections refused by `max_connections_per_ip`.
    pub connections_over_per_ip: AtomicU64,
    /// Requests answered 403 (a forwarded client address that is denied).
    pub requests_denied: AtomicU64,
    /// Requests answered 429.
    pub requests_rate_limited: AtomicU64,
    /// Requests answered 413.
    pub bodies_too_large: AtomicU64,
    /// Request heads over `max_header_bytes` (431).
    pub headers_too_large: AtomicU64,
    /// Connections cut because the request head (or TLS handshake) was too slow.
    pub header_timeouts: AtomicU64,
    /// Connections cut because the client took none of its response for
    /// `send_timeout_ms`.
    pub send_timeouts: AtomicU64,
    /// Request bodies cut off because the client sent none of the rest for
    /// `body_timeout_ms`.
    pub body_timeouts: AtomicU64,
    /// TLS handshakes that failed.
    pub tls_handshake_failures: AtomicU64,
    /// PROXY protocol headers that were missing or malformed.
    pub proxy_header_errors: AtomicU64,
}

impl Stats {
    /// Adds one to a counter.
    pub fn count(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its network is denied, or not allowed.
    Denied,
    /// `max_connections` are open.
    OverTotal,
    /// `max_connections_per_ip` are open from this address.
    OverPerIp,
}

/// The firewall of every listener.
pub struct Firewall {
    allow: Vec<Cidr>,
    deny: Vec<Cidr>,
    trusted: Vec<Cidr>,
    /// `rate` and its per-client state, shared with the firewall a reload
    /// replaced when `rate` did not change.
    limiter: Option<(RateConfig, Arc<DefaultKeyedRateLimiter<IpAddr>>)>,
    max_connections: usize,
    max_per_ip: usize,
    /// Open connections by client address, and in all; shared with the
    /// firewall a reload replaced, whose connections are still open.
    open: Arc<Mutex<(HashMap<IpAddr, usize>, usize)>>,
    /// The counters; kept across config reloads.
    pub stats: Arc<Stats>,
    /// Log lines about refusals, throttled.
    pub log: ThrottledLog,
}

impl Firewall {
    /// Builds the firewall from `[firewall]` (already validated).
    pub fn new(config: &FirewallConfig) -> Firewall {
        Firewall::build(config, None)
    }

    /// The firewall of a reloaded `[firewall]` that replaces `previous`. It
    /// keeps counting into the same stats and the same open connections (so
    /// `max_connections_per_ip` still sees those opened before), and keeps
    /// each client's rate-limit allowance when `rate` is unchanged.
    pub fn after(config: &FirewallConfig, previous: &Firewall) -> Firewall {
        Firewall::build(config, Some(previous))
    }

    fn build(config: &FirewallConfig, previous: Option<&Firewall>) -> Firewall {
        let kept = previous
            .and_then(|p| p.limiter.as_ref())
            .filter(|(rate, _)| Some(rate) == config.rate.as_ref())
            .cloned();
        let limiter = kept.or_else(|| {
            let rate = config.rate.as_ref()?;
            let (count, period) = rate.parse().ok()?;
            let burst = NonZeroU32::new(rate.burst.unwrap_or(count)).unwrap_or(NonZeroU32::MIN);
            let quota = Quota::with_period(period / count)?.allow_burst(burst);
            Some((rate.clone(), Arc::new(RateLimiter::keyed(quota))))
        });
        let (open, stats) = match previous {
            Some(previous) => (previous.open.clone(), previous.stats.clone()),
            None => Default::default(),
        };
        Firewall {
            allow: config.allow.clone(),
            deny: config.deny.clone(),
            trusted: config.trusted_proxies.clone(),
            limiter,
            max_connections: config.max_connections.unwrap_or(usize::MAX),
            max_per_ip: config.max_connections_per_ip.unwrap_or(usize::MAX),
            open,
            stats,
            log: ThrottledLog::new(Duration::from_secs(1)),
        }
    }

    /// Whether `ip` may talk to us at all: deny wins; an empty allow list
    /// allows everyone.
    pub fn permits(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        let within = |nets: &[Cidr]| nets.iter().any(|net| net.0.contains(&ip));
        !within(&self.deny) && (self.allow.is_empty() || within(&self.allow))
    }

    /// Whether `ip` is a trusted proxy.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.trusted.iter().any(|net| net.0.contains(&ip))
    }

    /// Admits a new connection from `ip`, or says why not. The returned slot
    /// holds its place in the connection counts until dropped.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, Refusal> {
        if !self.permits(ip) {
            Stats::count(&self.stats.connections_denied);
            return Err(Refusal::Denied);
        }
        let mut open = self.open.lock().unwrap();
        let (per_ip, total) = &mut *open;
        if *total >= self.max_connections {
            Stats::count(&self.stats.connections_over_total);
            return Err(Refusal::OverTotal);
        }
        let mine = per_ip.entry(ip).or_default();
        if *mine >= self.max_per_ip {
            Stats::count(&self.stats.connections_over_per_ip);
            return Err(Refusal::OverPerIp);
        }
        *mine += 1;
        *total += 1;
        Ok(Slot {
            firewall: self.clone(),
            ip,
        })
    }

    /// Takes one request from `ip`'s allowance, or says how long to wait.
    pub fn check_rate(&self, ip: IpAddr) -> Result<(), Duration> {
        let Some((_, limiter)) = &self.limiter else {
            return Ok(());
        };
        limiter.check_key(&canonical(ip)).map_err(|not_until| {
            not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ))
        })
    }

    /// Forgets rate-limit state of addresses that have been quiet; call now
    /// and then so the table does not grow without bound.
    pub fn forget_quiet_clients(&self) {
        if let Some((_, limiter)) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// The client's address: the peer's, or, when the peer is a trusted
    /// proxy, the nearest untrusted address of its X-Forwarded-For chain.
    pub fn client_ip(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        if !self.is_trusted(peer) {
            return peer;
        }
        let chain: Vec<IpAddr> = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|part| part.trim().parse().ok())
            .collect();
        chain
            .iter()
            .rev()
            .copied()
            .find(|ip| !self.is_trusted(*ip))
            .or_else(|| chain.first().copied())
            .unwrap_or(peer)
    }
}

/// A connection's place in the connection counts.
pub struct Slot {
    firewall: Arc<Firewall>,
    ip: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.firewall.open.lock().unwrap();
        let (per_ip, total) = &mut *open;
        *total -= 1;
        if let Some(mine) = per_ip.get_mut(&self.ip) {
            *mine -= 1;
            if *mine == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// `::ffff:a.b.c.d` is the IPv4 address it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// A log that writes at most one line per period and says how many it held
/// back, so a flood of refusals cannot flood the log.
pub struct ThrottledLog {
    period: Duration,
    state: Mutex<(Option<Instant>, u64)>,
}

impl ThrottledLog {
    /// At most one line per `period`.
    pub fn new(period: Duration) -> ThrottledLog {
        ThrottledLog {
            period,
            state: Mutex::new((None, 0)),
        }
    }

    /// Logs `message` at warn level unless a line went out less than a
    /// period ago.
    pub fn warn(&self, message: impl FnOnce() -> String) {
        let mut state = self.state.lock().unwrap();
        let now = Instant::now();
        if state
            .0
            .is_some_and(|last| now.duration_since(last) < self.period)
        {
            state.1 += 1;
            return;
        }
        let held_back = std::mem::take(&mut state.1);
        state.0 = Some(now);
        drop(state);
        if held_back > 0 {
            tracing::warn!("{} ({held_back} similar lines held back)", message());
        } else {
            tracing::warn!("{}", message());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn firewall(toml: &str) -> Arc<Firewall> {
        let config: FirewallConfig = toml::from_str(toml).unwrap();
        Arc::new(Firewall::new(&config))
    }

    #[test]
    fn deny_wins_over_allow() {
        let fw = firewall("allow = [\"10.0.0.0/8\", \"::1\"]\ndeny = [\"10.1.0.0/16\"]\n");
        assert!(fw.permits("10.2.3.4".parse().unwrap()));
        assert!(!fw.permits("10.1.3.4".parse().unwrap()));
        assert!(!fw.permits("192.168.1.1".parse().unwrap()));
        assert!(fw.permits("::1".parse().unwrap()));
        assert!(fw.permits("::ffff:10.2.3.4".parse().unwrap()));
    }

    #[test]
    fn connection_caps_count_and_release() {
        let fw = firewall("max_connections = 3\nmax_connections_per_ip = 2\n");
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let first = fw.admit(a).unwrap();
        let _second = fw.admit(a).unwrap();
        assert_eq!(fw.admit(a).err(), Some(Refusal::OverPerIp));
        let _third = fw.admit(b).unwrap();
        assert_eq!(fw.admit(b).err(), Some(Refusal::OverTotal));
        drop(first);
        assert!(fw.admit(a).is_ok());
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let fw = firewall("trusted_proxies = [\"127.0.0.1/32\", \"10.0.0.0/8\"]\n");
        let mut headers = http::HeaderMap::new();
        headers.insert("x-forwarded-for", "198.51.100.7, 10.0.0.2".parse().unwrap());
        assert_eq!(
            fw.client_ip("127.0.0.1".parse().unwrap(), &headers),
            "198.51.100.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(
            fw.client_ip("192.0.2.1".parse().unwrap(), &headers),
            "192.0.2.1".parse::<IpAddr>().unwrap()
        );
    }
}
