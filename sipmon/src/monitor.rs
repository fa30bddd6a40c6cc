//! The probe loop: every interval, probe all proxies concurrently, feed the
//! health table, pass the candidate set through the safety gate and hand a
//! changed report to the push tasks. Also the status view of it all.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::health::{HealthTable, Outcome, State};
use crate::probe::Prober;
use crate::push::{lock, Pusher};
use crate::safety::{Decision, HoldReason, ReportEntry, Safety};
use crate::srv::{merge, SrvTargets};
use crate::status::{LbPushStatus, ProxyStatus, StatusReport};

/// State shared by the probe loop, the push tasks and the admin server.
#[derive(Debug)]
pub struct Monitor {
    /// Monitor id.
    pub id: String,
    /// Health of every known proxy.
    pub health: Mutex<HealthTable>,
    /// Why the safety gate holds, if it does.
    pub hold: Mutex<Option<HoldReason>>,
    /// Push tasks' shared state.
    pub pusher: Arc<Pusher>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Human text for a hold.
pub fn describe_hold(h: HoldReason) -> String {
    match h {
        HoldReason::AllDown => "every proxy looks down".into(),
        HoldReason::MassFailure { newly_down, total } => {
            format!("{newly_down} of {total} went down at once")
        }
    }
}

impl Monitor {
    /// The status document at `now`.
    pub fn status(&self, now: Instant) -> StatusReport {
        let proxies = lock(&self.health)
            .iter()
            .map(|(id, p)| ProxyStatus {
                id: id.clone(),
                addr: p.addr.to_string(),
                state: p.state,
                rtt_p50_ms: p.rtt.p50().map(|d| d.as_secs_f64() * 1000.0),
                last_change_ago_ms: ms(now.saturating_duration_since(p.last_change)),
                consecutive_fails: p.consecutive_fail,
                consecutive_oks: p.consecutive_ok,
                flaps: p.flaps,
            })
            .collect();
        let lbs = lock(&self.pusher.lbs)
            .iter()
            .map(|lb| LbPushStatus {
                url: lb.url.clone(),
                last_result: lb.last_result.as_ref().map(|o| o.describe()),
                last_success_ago_ms: lb
                    .last_success
                    .map(|t| ms(now.saturating_duration_since(t))),
                last_attempt_ago_ms: lb
                    .last_attempt
                    .map(|t| ms(now.saturating_duration_since(t))),
                last_generation: lb.last_generation,
                consecutive_failures: lb.consecutive_failures,
            })
            .collect();
        let hold = *lock(&self.hold);
        StatusReport {
            monitor: self.id.clone(),
            holding: hold.is_some(),
            hold_reason: hold.map(describe_hold),
            proxies,
            lbs,
        }
    }

    /// Applies one round of probe results and returns the candidate report.
    pub fn apply_round(&self, results: Vec<(String, Outcome)>, now: Instant) -> Vec<ReportEntry> {
        let mut health = lock(&self.health);
        for (id, outcome) in results {
            if let Outcome::Alive { rtt } = outcome {
                metrics::histogram!("sipmon_probe_rtt_seconds", "proxy" => id.clone())
                    .record(rtt.as_secs_f64());
            }
            if let Some(t) = health.record(&id, outcome, now) {
                tracing::info!(proxy = %t.id, state = ?t.state, "proxy state changed");
                metrics::counter!("sipmon_flaps_total", "proxy" => t.id).increment(1);
            }
        }
        health
            .iter()
            .map(|(id, p)| {
                let up = p.state == State::Up;
                metrics::gauge!("sipmon_proxy_up", "proxy" => id.clone()).set(if up {
                    1.0
                } else {
                    0.0
                });
                ReportEntry {
                    id: id.clone(),
                    addr: p.addr.to_string(),
                    up,
                }
            })
            .collect()
    }

    /// Records the gate's decision (gauge, log on hold changes).
    fn apply_decision(&self, d: &Decision) {
        let mut hold = lock(&self.hold);
        if *hold != d.hold {
            match d.hold {
                Some(h) => tracing::warn!(
                    reason = %describe_hold(h),
                    "holding the last pushed set: the monitor's own network is the likeliest failure"
                ),
                None => tracing::info!("probes recovered; no longer holding the last set"),
            }
        }
        *hold = d.hold;
        metrics::gauge!("sipmon_holding_last_set").set(if d.hold.is_some() { 1.0 } else { 0.0 });
    }
}

/// The probe loop's inputs.
#[derive(Debug)]
pub struct ProbeLoop {
    /// Shared state.
    pub monitor: Arc<Monitor>,
    /// UDP or TCP prober.
    pub prober: Arc<Prober>,
    /// Time between rounds.
    pub interval: Duration,
    /// Statically configured proxies.
    pub static_targets: Vec<(String, SocketAddr)>,
    /// One receiver per SRV name.
    pub srv: Vec<watch::Receiver<SrvTargets>>,
    /// Where decided reports go (the push tasks watch it).
    pub reports: watch::Sender<Option<Arc<Vec<ReportEntry>>>>,
    /// The safety gate.
    pub safety: Safety,
}

impl ProbeLoop {
    /// Runs rounds until `shutdown`.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut next_round = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(next_round) => {}
            }
            let started = tokio::time::Instant::now();
            let srv: Vec<SrvTargets> = self.srv.iter().map(|rx| rx.borrow().clone()).collect();
            let targets = merge(&self.static_targets, &srv);
            let targets = {
                let mut h = lock(&self.monitor.health);
                h.set_targets(&targets, Instant::now());
                h.targets()
            };
            if targets.is_empty() {
                continue; // SRV not resolved yet: nothing to judge or push
            }
            let mut probes = JoinSet::new();
            for (id, addr) in targets {
                let prober = self.prober.clone();
                probes.spawn(async move {
                    let outcome = prober.probe(&id, addr).await;
                    (id, outcome)
                });
            }
            let mut results = Vec::new();
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = probes.join_next() => match r {
                        Some(Ok(r)) => results.push(r),
                        Some(Err(e)) => tracing::error!(error = %e, "probe task failed"),
                        None => break,
                    }
                }
            }
            let candidate = self.monitor.apply_round(results, Instant::now());
            // While a verdict is pending, confirm it at once: a failing probe
            // already took a timeout, so rounds stay spaced by the timeout.
            let suspect = lock(&self.monitor.health).any_suspect();
            // A floor of interval/5 keeps fast-failing probes (a refused TCP
            // connect) from spinning.
            next_round = if suspect {
                tokio::time::Instant::now().max(started + self.interval / 5)
            } else {
                started + self.interval
            };
            let decision = self.safety.evaluate(candidate);
            self.monitor.apply_decision(&decision);
            if decision.changed {
                tracing::info!(report = ?decision.report, "pushing a changed set");
                self.reports.send_replace(decision.report.map(Arc::new));
            }
        }
    }
}
