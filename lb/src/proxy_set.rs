//! The live proxy set: one `ArcSwap` over one whole routing snapshot, replaced
//! when monitor reports change which proxies a majority of fresh monitors see up.
//!
//! The decision logic ([`Membership`]) is sans-IO and takes `now: Instant`;
//! [`ProxySet`] wraps it with the snapshot store and metrics. A swap affects
//! new transactions only: a transaction keeps the `Arc` it loaded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use sipedge_shared::hash;

/// A proxy of the routing set. Its `id` is its identity for hashing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Proxy {
    /// Configured id, e.g. `p1`.
    pub id: String,
    /// Where to send its requests.
    pub addr: SocketAddr,
}

impl AsRef<str> for Proxy {
    fn as_ref(&self) -> &str {
        &self.id
    }
}

/// Where the current set came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// The config's static list (no monitor has been accepted yet).
    Static,
    /// Monitor reports.
    Monitors,
}

/// One immutable routing snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutingSnapshot {
    /// Bumped by one each time the live set changes.
    pub generation: u64,
    /// The live proxies, sorted by id.
    pub proxies: Vec<Proxy>,
    /// Where the set came from.
    pub source: Source,
}

impl RoutingSnapshot {
    /// The best proxy for `key` (rendezvous hashing on proxy ids).
    pub fn best(&self, key: &str) -> Option<&Proxy> {
        hash::best(key, &self.proxies).map(|i| &self.proxies[i])
    }

    /// The proxies for `key`, best first: the first is the target, the rest
    /// are failover candidates. Does not allocate for up to 16 proxies.
    pub fn ranked<'a>(&'a self, key: &str) -> impl Iterator<Item = &'a Proxy> + 'a {
        hash::rank(key, &self.proxies).map(move |i| &self.proxies[i])
    }

    /// The live proxy with this id (for in-dialog requests whose signed
    /// Record-Route names it).
    pub fn get(&self, id: &str) -> Option<&Proxy> {
        self.proxies
            .binary_search_by(|p| p.id.as_str().cmp(id))
            .ok()
            .map(|i| &self.proxies[i])
    }
}

/// One proxy's state as a monitor reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedProxy {
    /// Proxy id.
    pub id: String,
    /// Its address.
    pub addr: SocketAddr,
    /// Whether the monitor sees it up.
    pub up: bool,
}

/// A monitor's report (the body of `PUT /v1/proxies`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonitorReport {
    /// Monitor id.
    pub monitor: String,
    /// Strictly increasing per monitor.
    pub generation: u64,
    /// Every proxy the monitor probes.
    pub proxies: Vec<ReportedProxy>,
}

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The report's generation is not above the last accepted one from
    /// the same monitor.
    #[error("stale generation (last accepted {last})")]
    Stale {
        /// The last generation accepted from this monitor.
        last: u64,
    },
    /// Accepting it would leave no live proxy; the last good set is kept.
    #[error("empty set refused")]
    Empty,
    /// The report itself is malformed (empty monitor id, duplicate proxy ids).
    #[error("invalid report: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone)]
struct Stored {
    generation: u64,
    received: Instant,
    proxies: Vec<ReportedProxy>,
}

/// A monitor's report as seen from now, for `GET /v1/proxies`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MonitorStatus {
    /// Monitor id.
    pub id: String,
    /// Last accepted generation.
    pub generation: u64,
    /// Milliseconds since it was received.
    pub age_ms: u64,
    /// Ids it reported up.
    pub up: Vec<String>,
    /// Whether it counts (younger than the freshness window).
    pub fresh: bool,
}

/// The sans-IO voting logic: one report per monitor; a proxy is live when a
/// strict majority of the monitors heard from within `freshness` report it up.
#[derive(Debug, Clone)]
pub struct Membership {
    freshness: Duration,
    reports: BTreeMap<String, Stored>,
}

impl Membership {
    /// Reports older than `freshness` stop counting.
    pub fn new(freshness: Duration) -> Self {
        Membership {
            freshness,
            reports: BTreeMap::new(),
        }
    }

    fn is_fresh(&self, s: &Stored, now: Instant) -> bool {
        now.saturating_duration_since(s.received) <= self.freshness
    }

    /// Records `report` if acceptable and returns the resulting live set
    /// (sorted by id, never empty). A refused report leaves no trace.
    pub fn offer(&mut self, report: MonitorReport, now: Instant) -> Result<Vec<Proxy>, Refusal> {
        if report.monitor.is_empty() {
            return Err(Refusal::Invalid("empty monitor id".into()));
        }
        let mut ids: Vec<&str> = report.proxies.iter().map(|p| p.id.as_str()).collect();
        ids.sort_unstable();
        if let Some(w) = ids.windows(2).find(|w| w[0] == w[1]) {
            return Err(Refusal::Invalid(format!("duplicate proxy id `{}`", w[0])));
        }
        if ids.first().is_some_and(|id| id.is_empty()) {
            return Err(Refusal::Invalid("empty proxy id".into()));
        }
        if let Some(prev) = self.reports.get(&report.monitor) {
            if report.generation <= prev.generation {
                return Err(Refusal::Stale {
                    last: prev.generation,
                });
            }
        }
        let stored = Stored {
            generation: report.generation,
            received: now,
            proxies: report.proxies,
        };
        let previous = self.reports.insert(report.monitor.clone(), stored);
        match self.live(now) {
            Some(live) if !live.is_empty() => Ok(live),
            _ => {
                // Roll back: the refused report must not count later either.
                match previous {
                    Some(p) => self.reports.insert(report.monitor, p),
                    None => self.reports.remove(&report.monitor),
                };
                Err(Refusal::Empty)
            }
        }
    }

    /// The live set by majority of fresh monitors, or `None` when no report
    /// is fresh (the caller then keeps its last snapshot). May be empty.
    pub fn live(&self, now: Instant) -> Option<Vec<Proxy>> {
        let fresh: Vec<&Stored> = self
            .reports
            .values()
            .filter(|s| self.is_fresh(s, now))
            .collect();
        if fresh.is_empty() {
            return None;
        }
        // id -> (up votes, address from the newest report that saw it up)
        let mut votes: BTreeMap<&str, (usize, Instant, SocketAddr)> = BTreeMap::new();
        for s in &fresh {
            for p in s.proxies.iter().filter(|p| p.up) {
                let e = votes
                    .entry(p.id.as_str())
                    .or_insert((0, s.received, p.addr));
                e.0 += 1;
                if s.received > e.1 {
                    (e.1, e.2) = (s.received, p.addr);
                }
            }
        }
        let n = fresh.len();
        Some(
            votes
                .into_iter()
                .filter(|(_, (up, _, _))| 2 * up > n)
                .map(|(id, (_, _, addr))| Proxy {
                    id: id.to_owned(),
                    addr,
                })
                .collect(),
        )
    }

    /// The last accepted generation from `monitor`.
    pub fn last_generation(&self, monitor: &str) -> Option<u64> {
        self.reports.get(monitor).map(|s| s.generation)
    }

    /// Every monitor's report, as seen at `now`.
    pub fn monitors(&self, now: Instant) -> Vec<MonitorStatus> {
        self.reports
            .iter()
            .map(|(id, s)| MonitorStatus {
                id: id.clone(),
                generation: s.generation,
                age_ms: u64::try_from(now.saturating_duration_since(s.received).as_millis())
                    .unwrap_or(u64::MAX),
                up: s
                    .proxies
                    .iter()
                    .filter(|p| p.up)
                    .map(|p| p.id.clone())
                    .collect(),
                fresh: self.is_fresh(s, now),
            })
            .collect()
    }
}

/// The result of an accepted report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The snapshot generation after the report.
    pub generation: u64,
    /// Whether the live set changed (and the generation was bumped).
    pub changed: bool,
    /// Live proxy ids, sorted.
    pub live: Vec<String>,
}

struct SetMetrics {
    live: metrics::Gauge,
    generation: metrics::Gauge,
    accepted: metrics::Counter,
    stale: metrics::Counter,
    empty: metrics::Counter,
    invalid: metrics::Counter,
}

impl SetMetrics {
    fn new(edge: &str) -> Self {
        use sipedge_shared::metrics::edge_labels;
        let reports = |outcome: &str| {
            metrics::counter!(
                "sipedge_lb_proxy_reports_total",
                edge_labels(edge, &[("outcome", outcome)])
            )
        };
        SetMetrics {
            live: metrics::gauge!("sipedge_lb_live_proxies", edge_labels(edge, &[])),
            generation: metrics::gauge!("sipedge_lb_proxy_set_generation", edge_labels(edge, &[])),
            accepted: reports("accepted"),
            stale: reports("stale"),
            empty: reports("empty"),
            invalid: reports("invalid"),
        }
    }

    fn publish(&self, snap: &RoutingSnapshot) {
        self.live.set(snap.proxies.len() as f64);
        self.generation.set(snap.generation as f64);
    }
}

/// The LB's live proxy set: readers [`load`](Self::snapshot) a snapshot
/// lock-free; writers (the admin API) serialise on a short sync lock.
pub struct ProxySet {
    current: ArcSwap<RoutingSnapshot>,
    membership: Mutex<Membership>,
    metrics: SetMetrics,
}

impl std::fmt::Debug for ProxySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxySet")
            .field("current", &self.current.load())
            .finish()
    }
}

impl ProxySet {
    /// Starts from the config's static list (generation 1, source static).
    pub fn new(mut static_proxies: Vec<Proxy>, monitor_freshness: Duration, edge: &str) -> Self {
        static_proxies.sort();
        let snap = RoutingSnapshot {
            generation: 1,
            proxies: static_proxies,
            source: Source::Static,
        };
        let metrics = SetMetrics::new(edge);
        metrics.publish(&snap);
        ProxySet {
            current: ArcSwap::from_pointee(snap),
            membership: Mutex::new(Membership::new(monitor_freshness)),
            metrics,
        }
    }

    /// The current snapshot; hold it for the whole transaction.
    pub fn snapshot(&self) -> Arc<RoutingSnapshot> {
        self.current.load_full()
    }

    /// How many proxies are live now.
    pub fn live_count(&self) -> usize {
        self.current.load().proxies.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Membership> {
        // A panic while holding the lock cannot leave Membership half-updated
        // in a way that matters (offer rolls back), so poisoning is ignored.
        self.membership
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Swaps in `live` (under the membership lock) if it differs.
    fn install(&self, live: Vec<Proxy>) -> Arc<RoutingSnapshot> {
        let cur = self.current.load_full();
        if cur.proxies == live && cur.source == Source::Monitors {
            return cur;
        }
        let generation = if cur.proxies == live {
            cur.generation
        } else {
            cur.generation + 1
        };
        let next = Arc::new(RoutingSnapshot {
            generation,
            proxies: live,
            source: Source::Monitors,
        });
        self.current.store(next.clone());
        self.metrics.publish(&next);
        next
    }

    /// Applies a monitor report received at `now`.
    pub fn apply_report(&self, report: MonitorReport, now: Instant) -> Result<Accepted, Refusal> {
        let mut m = self.lock();
        let before = self.current.load().generation;
        match m.offer(report, now) {
            Ok(live) => {
                let snap = self.install(live);
                self.metrics.accepted.increment(1);
                Ok(Accepted {
                    generation: snap.generation,
                    changed: snap.generation != before,
                    live: snap.proxies.iter().map(|p| p.id.clone()).collect(),
                })
            }
            Err(e) => {
                match e {
                    Refusal::Stale { .. } => &self.metrics.stale,
                    Refusal::Empty => &self.metrics.empty,
                    Refusal::Invalid(_) => &self.metrics.invalid,
                }
                .increment(1);
                Err(e)
            }
        }
    }

    /// Re-evaluates the vote as reports age (call every second or so, and
    /// before reporting status). Keeps the snapshot when no report is fresh
    /// or the vote would leave no proxy. Returns whether the set changed.
    pub fn refresh(&self, now: Instant) -> bool {
        let m = self.lock();
        match m.live(now) {
            Some(live) if !live.is_empty() => {
                let before = self.current.load().generation;
                self.install(live).generation != before
            }
            _ => false,
        }
    }

    /// Every monitor's last report, as seen at `now`.
    pub fn monitors(&self, now: Instant) -> Vec<MonitorStatus> {
        self.lock().monitors(now)
    }

    /// Runs [`Self::refresh`] every `interval` until `shutdown`.
    pub async fn run_refresh(
        self: Arc<Self>,
        interval: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => { self.refresh(Instant::now()); }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn report(monitor: &str, generation: u64, up: &[(&str, bool)]) -> MonitorReport {
        MonitorReport {
            monitor: monitor.into(),
            generation,
            proxies: up
                .iter()
                .enumerate()
                .map(|(i, (id, up))| ReportedProxy {
                    id: (*id).into(),
                    addr: addr(5071 + i as u16),
                    up: *up,
                })
                .collect(),
        }
    }

    fn ids(v: &[Proxy]) -> Vec<&str> {
        v.iter().map(|p| p.id.as_str()).collect()
    }

    const ALL_UP: &[(&str, bool)] = &[("p1", true), ("p2", true), ("p3", true)];
    const P2_DOWN: &[(&str, bool)] = &[("p1", true), ("p2", false), ("p3", true)];

    #[test]
    fn majority_of_fresh_monitors() {
        let t0 = Instant::now();
        let mut m = Membership::new(Duration::from_secs(10));
        // One monitor: its report is the set.
        assert_eq!(
            ids(&m.offer(report("a", 1, P2_DOWN), t0).expect("ok")),
            ["p1", "p3"]
        );
        // Two monitors: a proxy needs both (strict majority of 2).
        assert_eq!(
            ids(&m.offer(report("b", 1, ALL_UP), t0).expect("ok")),
            ["p1", "p3"]
        );
        // Three: two of three say p2 is up.
        assert_eq!(
            ids(&m.offer(report("c", 1, ALL_UP), t0).expect("ok")),
            ["p1", "p2", "p3"]
        );
        // A second monitor seeing p2 down removes it.
        assert_eq!(
            ids(&m.offer(report("b", 2, P2_DOWN), t0).expect("ok")),
            ["p1", "p3"]
        );
    }

    #[test]
    fn stale_reports_stop_counting() {
        let t0 = Instant::now();
        let k = Duration::from_secs(10);
        let mut m = Membership::new(k);
        m.offer(report("a", 1, P2_DOWN), t0).expect("ok");
        m.offer(report("b", 1, ALL_UP), t0).expect("ok");
        let later = t0 + Duration::from_secs(6);
        m.offer(report("b", 2, ALL_UP), later).expect("ok");
        // At t0 + 11 s only b is fresh: its report is the set.
        let live = m.live(t0 + Duration::from_secs(11)).expect("b fresh");
        assert_eq!(ids(&live), ["p1", "p2", "p3"]);
        // When no report is fresh there is no opinion.
        assert_eq!(m.live(later + k + Duration::from_millis(1)), None);
        let st = m.monitors(t0 + Duration::from_secs(11));
        assert_eq!(
            st.iter().map(|s| s.fresh).collect::<Vec<_>>(),
            [false, true]
        );
        assert_eq!(st[0].age_ms, 11_000);
        assert_eq!(st[0].up, ["p1", "p3"]);
    }

    #[test]
    fn refusals() {
        let t0 = Instant::now();
        let mut m = Membership::new(Duration::from_secs(10));
        m.offer(report("a", 5, ALL_UP), t0).expect("ok");
        let cases: [(MonitorReport, Refusal); 5] = [
            (report("a", 5, ALL_UP), Refusal::Stale { last: 5 }),
            (report("a", 4, ALL_UP), Refusal::Stale { last: 5 }),
            (report("a", 6, &[("p1", false)]), Refusal::Empty),
            (
                report("", 1, ALL_UP),
                Refusal::Invalid("empty monitor id".into()),
            ),
            (
                report("b", 1, &[("p1", true), ("p1", true)]),
                Refusal::Invalid("duplicate proxy id `p1`".into()),
            ),
        ];
        for (r, want) in cases {
            assert_eq!(m.offer(r.clone(), t0), Err(want), "{r:?}");
        }
        // The refused empty report left no trace: generation 6 is still new.
        assert_eq!(m.last_generation("a"), Some(5));
        assert!(m.offer(report("a", 6, P2_DOWN), t0).is_ok());
        // A first report that would empty the set leaves no monitor behind.
        let mut fresh = Membership::new(Duration::from_secs(10));
        assert_eq!(fresh.offer(report("x", 1, &[]), t0), Err(Refusal::Empty));
        assert_eq!(fresh.last_generation("x"), None);
    }

    #[test]
    fn newest_address_wins() {
        let t0 = Instant::now();
        let mut m = Membership::new(Duration::from_secs(10));
        m.offer(report("a", 1, ALL_UP), t0).expect("ok");
        let mut r = report("b", 1, ALL_UP);
        r.proxies[0].addr = addr(6000);
        let live = m.offer(r, t0 + Duration::from_secs(1)).expect("ok");
        assert_eq!(live[0].addr, addr(6000));
    }

    fn static_set() -> Vec<Proxy> {
        ["p3", "p1", "p2"]
            .iter()
            .enumerate()
            .map(|(i, id)| Proxy {
                id: (*id).into(),
                addr: addr(5071 + i as u16),
            })
            .collect()
    }

    #[test]
    fn generation_moves_only_when_the_set_changes() {
        let set = ProxySet::new(static_set(), Duration::from_secs(10), "test");
        let s0 = set.snapshot();
        assert_eq!((s0.generation, s0.source), (1, Source::Static));
        assert_eq!(ids(&s0.proxies), ["p1", "p2", "p3"]);
        let t0 = Instant::now();

        // Same ids but the report's addresses differ from the static list's
        // order-derived ones → a change.
        let a = set.apply_report(report("a", 1, P2_DOWN), t0).expect("ok");
        assert_eq!((a.generation, a.changed, a.live.len()), (2, true, 2));
        let a = set.apply_report(report("a", 2, P2_DOWN), t0).expect("ok");
        assert_eq!((a.generation, a.changed), (2, false));
        assert_eq!(
            set.apply_report(report("a", 2, ALL_UP), t0),
            Err(Refusal::Stale { last: 2 })
        );
        assert_eq!(
            set.apply_report(report("a", 3, &[]), t0),
            Err(Refusal::Empty)
        );
        assert_eq!(set.live_count(), 2);
        let a = set.apply_report(report("a", 3, ALL_UP), t0).expect("ok");
        assert_eq!(
            (a.generation, a.live),
            (3, vec!["p1".into(), "p2".into(), "p3".into()])
        );
        assert_eq!(set.snapshot().source, Source::Monitors);
        // Old snapshots stay valid for whoever holds them.
        assert_eq!(s0.generation, 1);
        // Nothing fresh: refresh keeps the set.
        assert!(!set.refresh(t0 + Duration::from_secs(60)));
        assert_eq!(set.snapshot().generation, 3);
    }

    #[test]
    fn refresh_follows_aging_reports() {
        let set = ProxySet::new(static_set(), Duration::from_secs(10), "test");
        let t0 = Instant::now();
        set.apply_report(report("a", 1, ALL_UP), t0).expect("ok");
        set.apply_report(report("b", 1, ALL_UP), t0 + Duration::from_secs(5))
            .expect("ok");
        set.apply_report(report("c", 1, P2_DOWN), t0 + Duration::from_secs(5))
            .expect("ok");
        assert_eq!(set.live_count(), 3);
        // At +12 s monitor a is stale: b says up, c says down → no majority for p2.
        assert!(set.refresh(t0 + Duration::from_secs(12)));
        assert_eq!(ids(&set.snapshot().proxies), ["p1", "p3"]);
    }

    #[test]
    fn snapshot_routing_helpers() {
        let set = ProxySet::new(static_set(), Duration::from_secs(10), "test");
        let snap = set.snapshot();
        let best = snap.best("alice@example.com").expect("non-empty");
        let ranked: Vec<&Proxy> = snap.ranked("alice@example.com").collect();
        assert_eq!(ranked.len(), 3);
        assert_eq!(ranked[0], best);
        assert_eq!(snap.get("p2").map(|p| p.addr), Some(addr(5073)));
        assert_eq!(snap.get("p9"), None);
    }
}
