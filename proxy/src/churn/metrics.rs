//! Metrics of the churn machinery as pre-registered handles labelled with
//! `edge`: replicas sent, failed and dropped; lookups and their outcomes.

use metrics::{Counter, Gauge};
use sipedge_shared::metrics::edge_labels;

/// Handles, registered once at start.
#[derive(Debug, Clone)]
pub struct ChurnMetrics {
    /// Replica sets a peer accepted (`sipedge_proxy_replicas_sent_total`).
    pub sent: Counter,
    /// Replica sets a peer refused or did not answer in time
    /// (`sipedge_proxy_replicas_failed_total`).
    pub failed: Counter,
    /// Replica sets dropped because the peer's queue was full
    /// (`sipedge_proxy_replicas_dropped_total`).
    pub dropped: Counter,
    /// Replica sets received from peers (`sipedge_proxy_replicas_received_total`).
    pub received: Counter,
    /// Replica bindings held for peers (`sipedge_proxy_replica_bindings`).
    pub held: Gauge,
    /// Peer lookups that found bindings
    /// (`sipedge_proxy_peer_lookups_total{result="found"}`).
    pub lookup_found: Counter,
    /// Peer lookups where no peer had any (`result="not_found"`).
    pub lookup_not_found: Counter,
    /// Lookups answered from the negative cache without asking (`result="cached"`).
    pub lookup_cached: Counter,
    /// Single peer requests of a lookup that failed or timed out
    /// (`sipedge_proxy_peer_lookup_errors_total`).
    pub lookup_errors: Counter,
}

impl ChurnMetrics {
    /// Registers every handle with the `edge` label.
    pub fn new(edge: &str) -> Self {
        let l = |extra: &[(&'static str, &str)]| edge_labels(edge, extra);
        ChurnMetrics {
            sent: metrics::counter!("sipedge_proxy_replicas_sent_total", l(&[])),
            failed: metrics::counter!("sipedge_proxy_replicas_failed_total", l(&[])),
            dropped: metrics::counter!("sipedge_proxy_replicas_dropped_total", l(&[])),
            received: metrics::counter!("sipedge_proxy_replicas_received_total", l(&[])),
            held: metrics::gauge!("sipedge_proxy_replica_bindings", l(&[])),
            lookup_found: metrics::counter!(
                "sipedge_proxy_peer_lookups_total",
                l(&[("result", "found")])
            ),
            lookup_not_found: metrics::counter!(
                "sipedge_proxy_peer_lookups_total",
                l(&[("result", "not_found")])
            ),
            lookup_cached: metrics::counter!(
                "sipedge_proxy_peer_lookups_total",
                l(&[("result", "cached")])
            ),
            lookup_errors: metrics::counter!("sipedge_proxy_peer_lookup_errors_total", l(&[])),
        }
    }
}
