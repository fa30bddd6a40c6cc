//! Pushing the live set to every LB: one task per LB that PUTs on every
//! change and every heartbeat, retrying with capped exponential backoff.
//!
//! Contract (LB admin API):
//! ```text
//! PUT {lb}/v1/proxies   Authorization: Bearer <token>   Content-Type: application/json
//! {"monitor":"mon-a","generation":G,"proxies":[{"id":"p1","addr":"127.0.0.1:5071","up":true},...]}
//! 200 {"generation":N,"live":[...]}  401 bad token  400 malformed
//! 409 {"error":"stale generation","last":N}  422 {"error":"empty set refused"}
//! ```
//! Every PUT carries a fresh generation, so a re-push of the same set is
//! never refused as stale.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::generation::{unix_ms, GenerationClock};
use crate::safety::ReportEntry;

/// Capped exponential backoff (doubling from `min` to `max`), sans-IO.
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// A backoff whose first delay is `min`.
    pub fn new(min: Duration, max: Duration) -> Self {
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The delay before the next retry; doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// After a success: start again from `min`.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// The body of `PUT /v1/proxies`.
#[derive(Debug, Serialize)]
pub struct PushBody<'a> {
    /// Our monitor id.
    pub monitor: &'a str,
    /// Strictly increasing per monitor id.
    pub generation: u64,
    /// Every proxy we know, up or not.
    pub proxies: &'a [ReportEntry],
}

/// How one PUT went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushOutcome {
    /// 200: the LB took the report.
    Accepted,
    /// 401: the LB refused our token.
    Unauthorized,
    /// 400: the LB could not read the body.
    Malformed(String),
    /// 409: the LB holds a newer generation from our id (`last`, if given).
    Stale(Option<u64>),
    /// 422: the LB refused an empty set.
    Refused(String),
    /// Any other status.
    Http(u16),
    /// No HTTP answer: connect error or timeout.
    Unreachable(String),
}

impl PushOutcome {
    /// The `outcome` label of `sipmon_pushes_total`.
    pub fn label(&self) -> &'static str {
        match self {
            PushOutcome::Accepted => "ok",
            PushOutcome::Unauthorized => "unauthorized",
            PushOutcome::Malformed(_) => "malformed",
            PushOutcome::Stale(_) => "stale",
            PushOutcome::Refused(_) => "refused",
            PushOutcome::Http(_) => "http_error",
            PushOutcome::Unreachable(_) => "unreachable",
        }
    }

    /// A one-line description for `sipmon status`.
    pub fn describe(&self) -> String {
        match self {
            PushOutcome::Accepted => "200 ok".into(),
            PushOutcome::Unauthorized => "401 bad token".into(),
            PushOutcome::Malformed(m) => format!("400 {m}"),
            PushOutcome::Stale(Some(n)) => format!("409 stale (lb has {n})"),
            PushOutcome::Stale(None) => "409 stale".into(),
            PushOutcome::Refused(m) => format!("422 {m}"),
            PushOutcome::Http(c) => format!("http {c}"),
            PushOutcome::Unreachable(e) => format!("unreachable: {e}"),
        }
    }
}

/// What `sipmon status` shows per LB.
#[derive(Debug, Clone)]
pub struct LbState {
    /// The LB admin base URL.
    pub url: String,
    /// Last outcome, if any attempt was made.
    pub last_result: Option<PushOutcome>,
    /// When the last attempt finished.
    pub last_attempt: Option<Instant>,
    /// When the last accepted PUT finished.
    pub last_success: Option<Instant>,
    /// Generation of the last accepted PUT.
    pub last_generation: Option<u64>,
    /// Failed attempts since the last success.
    pub consecutive_failures: u32,
}

impl LbState {
    /// No attempt yet.
    pub fn new(url: String) -> Self {
        LbState {
            url,
            last_result: None,
            last_attempt: None,
            last_success: None,
            last_generation: None,
            consecutive_failures: 0,
        }
    }
}

/// The report every LB task pushes: `None` until the first round decided.
pub type ReportRx = watch::Receiver<Option<Arc<Vec<ReportEntry>>>>;

/// What every LB task shares.
#[derive(Debug)]
pub struct Pusher {
    /// Our monitor id.
    pub monitor: String,
    /// Bearer token.
    pub token: String,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Backoff bounds.
    pub retry_min: Duration,
    /// Backoff cap.
    pub retry_max: Duration,
    /// HTTP client (with the per-request timeout).
    pub client: reqwest::Client,
    /// Shared generation source.
    pub generations: Mutex<GenerationClock>,
    /// Per-LB state, indexed like the config's `push.lbs`.
    pub lbs: Mutex<Vec<LbState>>,
}

impl Pusher {
    /// One PUT of `report` to `url` with a fresh generation.
    pub async fn put(&self, url: &str, report: &[ReportEntry]) -> (u64, PushOutcome) {
        let generation = lock(&self.generations).next(unix_ms());
        let body = PushBody {
            monitor: &self.monitor,
            generation,
            proxies: report,
        };
        let resp = self
            .client
            .put(format!("{url}/v1/proxies"))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return (generation, PushOutcome::Unreachable(root_cause(&e))),
        };
        let status = resp.status().as_u16();
        // The body only matters for 409 (`last`) and for messages.
        let text = resp.text().await.unwrap_or_default();
        let json: Option<serde_json::Value> = serde_json::from_str(&text).ok();
        let message = || {
            json.as_ref()
                .and_then(|j| j.get("error"))
                .and_then(|e| e.as_str())
                .map(str::to_string)
                .unwrap_or_else(|| text.chars().take(80).collect())
        };
        let outcome = match status {
            200 => PushOutcome::Accepted,
            401 => PushOutcome::Unauthorized,
            400 => PushOutcome::Malformed(message()),
            409 => PushOutcome::Stale(
                json.as_ref()
                    .and_then(|j| j.get("last"))
                    .and_then(|l| l.as_u64()),
            ),
            422 => PushOutcome::Refused(message()),
            other => PushOutcome::Http(other),
        };
        (generation, outcome)
    }

    /// The task for LB number `index`: pushes each new report at once, the
    /// current one every heartbeat, and retries failures with backoff (capped
    /// at `retry_max` ≤ heartbeat, so a returning LB is current within one
    /// heartbeat).
    pub async fn run_lb(
        self: Arc<Self>,
        index: usize,
        mut rx: ReportRx,
        shutdown: CancellationToken,
    ) {
        let Some(url) = lock(&self.lbs).get(index).map(|l| l.url.clone()) else {
            return;
        };
        let mut backoff = Backoff::new(self.retry_min, self.retry_max);
        loop {
            let report = rx.borrow_and_update().clone();
            let wait = match report {
                None => self.heartbeat,
                Some(report) => {
                    let (generation, outcome) = tokio::select! {
                        _ = shutdown.cancelled() => return,
                        r = self.put(&url, &report) => r,
                    };
                    self.record(index, &url, generation, &outcome);
                    if outcome == PushOutcome::Accepted {
                        backoff.reset();
                        self.heartbeat
                    } else {
                        backoff.next_delay()
                    }
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => return,
                changed = rx.changed() => if changed.is_err() { return },
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// Books an attempt: status, metric, log.
    fn record(&self, index: usize, url: &str, generation: u64, outcome: &PushOutcome) {
        metrics::counter!("sipmon_pushes_total", "lb" => url.to_string(), "outcome" => outcome.label())
            .increment(1);
        match outcome {
            PushOutcome::Accepted => tracing::debug!(lb = url, generation, "pushed"),
            PushOutcome::Stale(last) => {
                // Another process with our monitor id, or a clock step.
                tracing::warn!(
                    lb = url,
                    generation,
                    ?last,
                    "push refused as stale generation; retrying with a fresh one"
                );
                if let Some(last) = last {
                    lock(&self.generations).observe(*last);
                }
            }
            other => {
                tracing::warn!(lb = url, generation, outcome = %other.describe(), "push failed")
            }
        }
        let now = Instant::now();
        let mut lbs = lock(&self.lbs);
        if let Some(lb) = lbs.get_mut(index) {
            lb.last_attempt = Some(now);
            lb.last_result = Some(outcome.clone());
            if *outcome == PushOutcome::Accepted {
                lb.last_success = Some(now);
                lb.last_generation = Some(generation);
                lb.consecutive_failures = 0;
            } else {
                lb.consecutive_failures = lb.consecutive_failures.saturating_add(1);
            }
        }
    }
}

/// Locks a std mutex; a poisoned lock still holds consistent plain data here.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The innermost cause of a client error (reqwest's own message is only
/// "error sending request"), or `timeout`.
fn root_cause(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "timeout".into();
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_schedule() {
        let ms = Duration::from_millis;
        // (min, max, expected delays)
        let cases: &[(u64, u64, &[u64])] = &[
            (200, 5000, &[200, 400, 800, 1600, 3200, 5000, 5000]),
            (100, 100, &[100, 100, 100]),
            (300, 1000, &[300, 600, 1000, 1000]),
        ];
        for (min, max, want) in cases {
            let mut b = Backoff::new(ms(*min), ms(*max));
            let got: Vec<u64> = want
                .iter()
                .map(|_| b.next_delay().as_millis() as u64)
                .collect();
            assert_eq!(&got, want, "{min}..{max}");
            b.reset();
            assert_eq!(b.next_delay(), ms(*min));
        }
    }

    #[test]
    fn body_matches_contract() {
        let report = vec![
            ReportEntry {
                id: "p1".into(),
                addr: "127.0.0.1:5071".into(),
                up: true,
            },
            ReportEntry {
                id: "p2".into(),
                addr: "127.0.0.1:5072".into(),
                up: false,
            },
        ];
        let body = PushBody {
            monitor: "mon-a",
            generation: 1_732_240_000_123,
            proxies: &report,
        };
        assert_eq!(
            serde_json::to_string(&body).expect("serialises"),
            r#"{"monitor":"mon-a","generation":1732240000123,"proxies":[{"id":"p1","addr":"127.0.0.1:5071","up":true},{"id":"p2","addr":"127.0.0.1:5072","up":false}]}"#
        );
    }

    #[test]
    fn outcome_labels() {
        let cases = [
            (PushOutcome::Accepted, "ok", "200 ok"),
            (PushOutcome::Unauthorized, "unauthorized", "401 bad token"),
            (PushOutcome::Stale(Some(7)), "stale", "409 stale (lb has 7)"),
            (
                PushOutcome::Refused("empty set refused".into()),
                "refused",
                "422 empty set refused",
            ),
            (PushOutcome::Http(500), "http_error", "http 500"),
            (
                PushOutcome::Unreachable("refused".into()),
                "unreachable",
                "unreachable: refused",
            ),
        ];
        for (o, label, text) in cases {
            assert_eq!(o.label(), label);
            assert_eq!(o.describe(), text);
        }
    }
}
