//! What every worker of one LB shares: typed settings, the routing snapshot,
//! the flow table, the sockets toward users, metrics and flood control.
//! Nothing here is per transaction; workers own their transactions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use sipedge_shared::carrier::CarrierMap;
use sipedge_shared::flow_token::FlowKey;
use sipedge_shared::sip::Limits;

use crate::flood::Flood;
use crate::flow::FlowTable;
use crate::metrics::LbMetrics;
use crate::proxy_set::ProxySet;
use crate::txn::Timers;

/// Typed settings the pipeline needs (validated config).
#[derive(Debug, Clone)]
pub struct Settings {
    /// This LB's id (in flow tokens).
    pub lb_id: u16,
    /// Site/region label for metrics.
    pub edge: String,
    /// Host[:port] of the outer face (VIP or public address) for the outer
    /// Record-Route.
    pub advertise: String,
    /// The internal unicast address proxies reach us on (Path, inner
    /// Record-Route); the host is never the anycast VIP.
    pub internal: SocketAddr,
    /// Flow-token keys: sign with the first, verify with any.
    pub flow_keys: Vec<FlowKey>,
    /// Failover and linger timers.
    pub timers: Timers,
    /// Transactions a worker may hold (`transaction.max_per_worker`).
    pub max_transactions: usize,
    /// Idle interval before a keepalive ping on stream flows.
    pub keepalive_interval: Duration,
    /// Pongs a ponging flow may miss before it is closed.
    pub keepalive_max_missed: u32,
    /// Message limits.
    pub limits: Limits,
    /// TLS/TCP handshake and first-message timeout.
    pub handshake_timeout: Duration,
    /// Share of requests and final responses logged as JSON lines
    /// (0.0..=1.0); local error answers are always logged.
    pub log_sample: f64,
}

/// Shared by all workers and connection tasks.
#[derive(Debug)]
pub struct Shared {
    /// Settings.
    pub settings: Settings,
    /// The live proxy set.
    pub proxies: Arc<ProxySet>,
    /// Open stream flows.
    pub flows: Arc<FlowTable>,
    /// External UDP sockets by listener index (to send to UDP flows).
    pub ext_udp: Vec<Arc<std::net::UdpSocket>>,
    /// Via sent-by (`host:port`) of each external listener, by index.
    pub ext_sent_by: Vec<String>,
    /// Source CIDR → carrier.
    pub carriers: CarrierMap,
    /// Metrics handles.
    pub metrics: LbMetrics,
    /// Flood control.
    pub flood: Flood,
}
