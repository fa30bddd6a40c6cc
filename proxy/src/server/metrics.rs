//! The proxy's Prometheus metrics as pre-registered handles (the hot path
//! never formats a label set), all labelled with `edge`.

use metrics::{Counter, Gauge};
use sipedge_shared::metrics::edge_labels;

/// How a call ended, for `sipedge_proxy_calls_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// A 2xx was forwarded.
    Answered,
    /// A final non-2xx was forwarded (not a CANCEL).
    Failed,
    /// The caller cancelled.
    Cancelled,
}

/// Handles, registered once at start.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// Bindings in the location store.
    pub registrations: Gauge,
    /// Live transactions.
    pub transactions: Gauge,
    /// Transactions created.
    pub transactions_total: Counter,
    /// Challenges sent (401/407).
    pub auth_challenges: Counter,
    /// Requests refused 403 by authentication.
    pub auth_forbidden: Counter,
    /// REGISTERs answered 200.
    pub registers_ok: Counter,
    /// Requests answered 503 because we could not serve them.
    pub overload: Counter,
    /// Calls answered.
    pub calls_answered: Counter,
    /// Calls failed.
    pub calls_failed: Counter,
    /// Calls cancelled.
    pub calls_cancelled: Counter,
}

impl Metrics {
    /// Registers every handle with the `edge` label.
    pub fn new(edge: &str) -> Self {
        let l = |extra: &[(&'static str, &str)]| edge_labels(edge, extra);
        Metrics {
            registrations: metrics::gauge!("sipedge_proxy_registrations_active", l(&[])),
            transactions: metrics::gauge!("sipedge_proxy_transactions", l(&[])),
            transactions_total: metrics::counter!("sipedge_proxy_transactions_total", l(&[])),
            auth_challenges: metrics::counter!("sipedge_proxy_auth_challenges_total", l(&[])),
            auth_forbidden: metrics::counter!("sipedge_proxy_auth_forbidden_total", l(&[])),
            registers_ok: metrics::counter!("sipedge_proxy_registers_total", l(&[])),
            overload: metrics::counter!("sipedge_proxy_overload_total", l(&[])),
            calls_answered: metrics::counter!(
                "sipedge_proxy_calls_total",
                l(&[("outcome", "answered")])
            ),
            calls_failed: metrics::counter!(
                "sipedge_proxy_calls_total",
                l(&[("outcome", "failed")])
            ),
            calls_cancelled: metrics::counter!(
                "sipedge_proxy_calls_total",
                l(&[("outcome", "cancelled")])
            ),
        }
    }

    /// Counts one call outcome.
    pub fn call(&self, outcome: CallOutcome) {
        match outcome {
            CallOutcome::Answered => self.calls_answered.increment(1),
            CallOutcome::Failed => self.calls_failed.increment(1),
            CallOutcome::Cancelled => self.calls_cancelled.increment(1),
        }
    }
}
