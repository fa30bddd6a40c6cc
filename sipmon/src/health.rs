//! Per-proxy health with N/M hysteresis, sans-IO (`now: Instant` passed in):
//! consecutive counters, Up/Down state, flap count, RTT ring, last change.
//!
//! A proxy starts **Up**: at start-up (or when SRV adds it) the set is full
//! rather than empty, and a dead proxy leaves it after N failed probes, as
//! it would have in steady state. The LBs fail over on 408/503 meanwhile.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

/// Up or down, as pushed to the LBs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Receives traffic.
    Up,
    /// Removed from the live set.
    Down,
}

/// The result of one probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A final response not in `down_codes`, after `rtt`.
    Alive {
        /// Round-trip time of the probe.
        rtt: Duration,
    },
    /// Timeout, error, or a final response in `down_codes`.
    Failed,
}

/// N/M thresholds.
#[derive(Debug, Clone, Copy)]
pub struct Hysteresis {
    /// Consecutive failures that take an Up proxy down.
    pub down_after: NonZeroU32,
    /// Consecutive successes that bring a Down proxy up.
    pub up_after: NonZeroU32,
}

/// Number of RTT samples kept for the median.
pub const RTT_SAMPLES: usize = 16;

/// A fixed ring of recent RTTs.
#[derive(Debug, Clone, Default)]
pub struct RttRing {
    samples: Vec<Duration>,
    next: usize,
}

impl RttRing {
    /// Adds a sample, evicting the oldest when full.
    pub fn push(&mut self, rtt: Duration) {
        if self.samples.len() < RTT_SAMPLES {
            self.samples.push(rtt);
        } else {
            self.samples[self.next] = rtt;
        }
        self.next = (self.next + 1) % RTT_SAMPLES;
    }

    /// Median of the kept samples (lower median for an even count).
    pub fn p50(&self) -> Option<Duration> {
        let mut v = self.samples.clone();
        v.sort_unstable();
        v.get(v.len().checked_sub(1)? / 2).copied()
    }
}

/// One proxy's health.
#[derive(Debug, Clone)]
pub struct ProxyHealth {
    /// Where it is probed.
    pub addr: SocketAddr,
    /// Current state.
    pub state: State,
    /// Consecutive successes (reset by a failure).
    pub consecutive_ok: u32,
    /// Consecutive failures (reset by a success).
    pub consecutive_fail: u32,
    /// State changes since it was first seen.
    pub flaps: u64,
    /// When the state last changed (or the proxy was added).
    pub last_change: Instant,
    /// Recent RTTs.
    pub rtt: RttRing,
}

impl ProxyHealth {
    /// A proxy first seen at `now`, Up (see the module doc).
    pub fn new(addr: SocketAddr, now: Instant) -> Self {
        ProxyHealth {
            addr,
            state: State::Up,
            consecutive_ok: 0,
            consecutive_fail: 0,
            flaps: 0,
            last_change: now,
            rtt: RttRing::default(),
        }
    }

    /// True while the last probes disagree with the state (an Up proxy that
    /// failed, a Down one that answered): the verdict is pending.
    pub fn is_suspect(&self) -> bool {
        match self.state {
            State::Up => self.consecutive_fail > 0,
            State::Down => self.consecutive_ok > 0,
        }
    }

    /// Applies one probe result; returns the new state if it changed.
    pub fn record(&mut self, outcome: Outcome, h: Hysteresis, now: Instant) -> Option<State> {
        match outcome {
            Outcome::Alive { rtt } => {
                self.rtt.push(rtt);
                self.consecutive_ok = self.consecutive_ok.saturating_add(1);
                self.consecutive_fail = 0;
            }
            Outcome::Failed => {
                self.consecutive_fail = self.consecutive_fail.saturating_add(1);
                self.consecutive_ok = 0;
            }
        }
        let next = match self.state {
            State::Up if self.consecutive_fail >= h.down_after.get() => State::Down,
            State::Down if self.consecutive_ok >= h.up_after.get() => State::Up,
            s => s,
        };
        (next != self.state).then(|| {
            self.state = next;
            self.flaps += 1;
            self.last_change = now;
            next
        })
    }
}

/// A state change reported by [`HealthTable::record`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// Proxy id.
    pub id: String,
    /// The new state.
    pub state: State,
}

/// The health of every known proxy, keyed by id (ordered, so reports and
/// tables are stable).
#[derive(Debug, Clone)]
pub struct HealthTable {
    hysteresis: Hysteresis,
    proxies: BTreeMap<String, ProxyHealth>,
}

impl HealthTable {
    /// An empty table.
    pub fn new(hysteresis: Hysteresis) -> Self {
        HealthTable {
            hysteresis,
            proxies: BTreeMap::new(),
        }
    }

    /// Replaces the set of known proxies: new ids start Up, vanished ids are
    /// forgotten, an id whose address changed starts afresh.
    pub fn set_targets(&mut self, targets: &[(String, SocketAddr)], now: Instant) {
        self.proxies
            .retain(|id, p| targets.iter().any(|(tid, a)| tid == id && *a == p.addr));
        for (id, addr) in targets {
            self.proxies
                .entry(id.clone())
                .or_insert_with(|| ProxyHealth::new(*addr, now));
        }
    }

    /// Applies a probe result for `id` (unknown ids are ignored: the target
    /// list changed while the probe was in flight).
    pub fn record(&mut self, id: &str, outcome: Outcome, now: Instant) -> Option<Transition> {
        let h = self.hysteresis;
        let p = self.proxies.get_mut(id)?;
        p.record(outcome, h, now).map(|state| Transition {
            id: id.to_string(),
            state,
        })
    }

    /// Every proxy, ordered by id.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &ProxyHealth)> {
        self.proxies.iter()
    }

    /// The proxies to probe.
    pub fn targets(&self) -> Vec<(String, SocketAddr)> {
        self.proxies
            .iter()
            .map(|(id, p)| (id.clone(), p.addr))
            .collect()
    }

    /// True when some proxy's verdict is pending (see
    /// [`ProxyHealth::is_suspect`]): the probe loop then probes again at once
    /// instead of waiting a whole interval, so a death is confirmed in about
    /// N timeouts rather than N intervals.
    pub fn any_suspect(&self) -> bool {
        self.iter().any(|(_, h)| h.is_suspect())
    }

    /// Number of known proxies.
    pub fn len(&self) -> usize {
        self.proxies.len()
    }

    /// True when no proxy is known.
    pub fn is_empty(&self) -> bool {
        self.proxies.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hyst(n: u32, m: u32) -> Hysteresis {
        Hysteresis {
            down_after: NonZeroU32::new(n).expect("n ≥ 1"),
            up_after: NonZeroU32::new(m).expect("m ≥ 1"),
        }
    }

    const OK: Outcome = Outcome::Alive {
        rtt: Duration::from_millis(2),
    };
    const FAIL: Outcome = Outcome::Failed;

    #[test]
    fn hysteresis_in_simulated_time() {
        // (N, M, probe sequence, expected state after each probe)
        use State::{Down as D, Up as U};
        let cases: &[(u32, u32, &[Outcome], &[State])] = &[
            (3, 2, &[FAIL, FAIL, FAIL], &[U, U, D]),
            (3, 2, &[FAIL, FAIL, OK, FAIL, FAIL], &[U, U, U, U, U]),
            (
                3,
                2,
                &[FAIL, FAIL, FAIL, OK, FAIL, OK, OK],
                &[U, U, D, D, D, D, U],
            ),
            (1, 1, &[FAIL, OK, FAIL], &[D, U, D]),
            (
                2,
                3,
                &[OK, FAIL, FAIL, OK, OK, OK, OK],
                &[U, U, D, D, D, U, U],
            ),
        ];
        let t0 = Instant::now();
        for (n, m, seq, want) in cases {
            let mut p = ProxyHealth::new("127.0.0.1:5060".parse().expect("addr"), t0);
            let mut flaps = 0;
            let mut last = State::Up;
            for (i, (o, w)) in seq.iter().zip(want.iter()).enumerate() {
                let now = t0 + Duration::from_secs(i as u64 + 1);
                let changed = p.record(*o, hyst(*n, *m), now);
                assert_eq!(p.state, *w, "N={n} M={m} step {i}");
                if *w != last {
                    flaps += 1;
                    assert_eq!(changed, Some(*w));
                    assert_eq!(p.last_change, now);
                } else {
                    assert_eq!(changed, None);
                }
                last = *w;
            }
            assert_eq!(p.flaps, flaps, "N={n} M={m}");
        }
    }

    #[test]
    fn rtt_median() {
        let mut r = RttRing::default();
        assert_eq!(r.p50(), None);
        for ms in [5, 1, 3] {
            r.push(Duration::from_millis(ms));
        }
        assert_eq!(r.p50(), Some(Duration::from_millis(3)));
        // Fill past capacity with 100 ms: the old samples are evicted.
        for _ in 0..RTT_SAMPLES {
            r.push(Duration::from_millis(100));
        }
        assert_eq!(r.p50(), Some(Duration::from_millis(100)));
        assert_eq!(r.samples.len(), RTT_SAMPLES);
    }

    #[test]
    fn table_targets_and_transitions() {
        let t0 = Instant::now();
        let a: SocketAddr = "127.0.0.1:5071".parse().expect("addr");
        let b: SocketAddr = "127.0.0.1:5072".parse().expect("addr");
        let mut t = HealthTable::new(hyst(1, 1));
        t.set_targets(&[("p1".into(), a), ("p2".into(), b)], t0);
        assert_eq!(t.len(), 2);
        assert_eq!(
            t.record("p1", FAIL, t0),
            Some(Transition {
                id: "p1".into(),
                state: State::Down
            })
        );
        assert_eq!(t.record("nope", FAIL, t0), None);
        // p1 keeps its state when the list is re-applied; p2 goes; p3 arrives Up.
        t.set_targets(&[("p1".into(), a), ("p3".into(), b)], t0);
        let states: Vec<_> = t.iter().map(|(id, p)| (id.as_str(), p.state)).collect();
        assert_eq!(states, vec![("p1", State::Down), ("p3", State::Up)]);
        // An address change starts afresh.
        t.set_targets(&[("p1".into(), b)], t0);
        assert_eq!(t.iter().next().map(|(_, p)| p.state), Some(State::Up));
    }
}
