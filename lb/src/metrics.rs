//! The LB's Prometheus metrics as pre-registered handles (a labelled macro
//! call on the hot path costs several times a handle increment), labelled by
//! `edge` and, for per-source counters, by `carrier` from the CIDR map.

use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use sipedge_shared::sip::Method;

const METHODS: [&str; 15] = [
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "REGISTER",
    "OPTIONS",
    "INFO",
    "UPDATE",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "REFER",
    "MESSAGE",
    "PUBLISH",
    "other",
];

fn method_index(m: Option<Method>) -> usize {
    match m {
        Some(Method::Invite) => 0,
        Some(Method::Ack) => 1,
        Some(Method::Bye) => 2,
        Some(Method::Cancel) => 3,
        Some(Method::Register) => 4,
        Some(Method::Options) => 5,
        Some(Method::Info) => 6,
        Some(Method::Update) => 7,
        Some(Method::Prack) => 8,
        Some(Method::Subscribe) => 9,
        Some(Method::Notify) => 10,
        Some(Method::Refer) => 11,
        Some(Method::Message) => 12,
        Some(Method::Publish) => 13,
        _ => 14,
    }
}

/// Counters for one carrier (source CIDR group).
#[derive(Debug, Clone)]
pub struct CarrierMetrics {
    requests: Vec<Counter>,
    responses: Vec<Counter>,
    /// Route headers from outside removed.
    pub routes_stripped: Counter,
    /// 503 answers from flood control.
    pub flood_503: Counter,
    /// Requests silently dropped by flood control.
    pub flood_drop: Counter,
    /// 482 Loop Detected answers.
    pub loops: Counter,
    /// 483 Too Many Hops answers.
    pub too_many_hops: Counter,
    /// Messages that did not parse (400 or dropped).
    pub bad_messages: Counter,
}

impl CarrierMetrics {
    fn new(edge: &str, carrier: &str) -> Self {
        let e = edge.to_string();
        let c = carrier.to_string();
        CarrierMetrics {
            requests: METHODS
                .iter()
                .map(|m| counter!("sipedge_lb_requests_total", "edge" => e.clone(), "carrier" => c.clone(), "method" => *m))
                .collect(),
            responses: ["1xx", "2xx", "3xx", "4xx", "5xx", "6xx"]
                .iter()
                .map(|k| counter!("sipedge_lb_responses_total", "edge" => e.clone(), "carrier" => c.clone(), "class" => *k))
                .collect(),
            routes_stripped: counter!("sipedge_lb_routes_stripped_total", "edge" => e.clone(), "carrier" => c.clone()),
            flood_503: counter!("sipedge_lb_flood_rejections_total", "edge" => e.clone(), "carrier" => c.clone(), "action" => "503"),
            flood_drop: counter!("sipedge_lb_flood_rejections_total", "edge" => e.clone(), "carrier" => c.clone(), "action" => "drop"),
            loops: counter!("sipedge_lb_loop_rejections_total", "edge" => e.clone(), "carrier" => c.clone(), "code" => "482"),
            too_many_hops: counter!("sipedge_lb_loop_rejections_total", "edge" => e.clone(), "carrier" => c.clone(), "code" => "483"),
            bad_messages: counter!("sipedge_lb_bad_messages_total", "edge" => e, "carrier" => c),
        }
    }

    /// Counts a request by method.
    pub fn request(&self, m: Option<Method>) {
        self.requests[method_index(m)].increment(1);
    }

    /// Counts a response sent toward this carrier by class.
    pub fn response(&self, status: u16) {
        let i = usize::from(status / 100).clamp(1, 6) - 1;
        self.responses[i].increment(1);
    }
}

/// All LB metrics.
#[derive(Debug, Clone)]
pub struct LbMetrics {
    carriers: Vec<CarrierMetrics>,
    /// Failovers after a 408 from a proxy.
    pub failover_408: Counter,
    /// Failovers after a 503 from a proxy.
    pub failover_503: Counter,
    /// Failovers after our own timer.
    pub failover_timeout: Counter,
    /// 500 answers after every candidate failed.
    pub all_failed: Counter,
    /// Requests refused (503) because the worker's transaction table was full.
    pub txn_table_full: Counter,
    /// Requests toward users whose flow was gone (430).
    pub flow_failed: Counter,
    /// Requests toward users with a bad flow token (403).
    pub bad_tokens: Counter,
    /// Keepalive pings sent.
    pub pings: Counter,
    /// Keepalive pongs received.
    pub pongs: Counter,
    /// Flows closed for missed pongs.
    pub keepalive_timeouts: Counter,
    /// Pings from clients answered with a pong.
    pub client_pings: Counter,
    /// STUN binding requests answered.
    pub stun: Counter,
    /// Request to final response through this LB.
    pub txn_seconds: Histogram,
    /// Open flows by transport (udp, tcp, tls).
    pub flows: [Gauge; 3],
}

impl LbMetrics {
    /// Registers every handle for `edge` and the configured carrier names
    /// (index `names.len()` is the `unknown` carrier).
    pub fn new(edge: &str, carrier_names: &[String]) -> Self {
        let mut carriers: Vec<CarrierMetrics> = carrier_names
            .iter()
            .map(|c| CarrierMetrics::new(edge, c))
            .collect();
        carriers.push(CarrierMetrics::new(edge, sipedge_shared::carrier::UNKNOWN));
        let e = edge.to_string();
        let fo = |reason: &'static str| counter!("sipedge_lb_failovers_total", "edge" => e.clone(), "reason" => reason);
        LbMetrics {
            carriers,
            failover_408: fo("408"),
            failover_503: fo("503"),
            failover_timeout: fo("timeout"),
            all_failed: counter!("sipedge_lb_all_proxies_failed_total", "edge" => e.clone()),
            txn_table_full: counter!("sipedge_lb_transaction_table_full_total", "edge" => e.clone()),
            flow_failed: counter!("sipedge_lb_flow_failed_total", "edge" => e.clone()),
            bad_tokens: counter!("sipedge_lb_bad_flow_tokens_total", "edge" => e.clone()),
            pings: counter!("sipedge_lb_keepalive_pings_total", "edge" => e.clone()),
            pongs: counter!("sipedge_lb_keepalive_pongs_total", "edge" => e.clone()),
            keepalive_timeouts: counter!("sipedge_lb_keepalive_timeouts_total", "edge" => e.clone()),
            client_pings: counter!("sipedge_lb_client_pings_total", "edge" => e.clone()),
            stun: counter!("sipedge_lb_stun_requests_total", "edge" => e.clone()),
            txn_seconds: histogram!("sipedge_lb_transaction_seconds", "edge" => e.clone()),
            flows: ["udp", "tcp", "tls"]
                .map(|t| gauge!("sipedge_lb_flows", "edge" => e.clone(), "transport" => t)),
        }
    }

    /// Handles for the carrier at `index` (from the carrier map; `None` is
    /// the unknown carrier).
    pub fn carrier(&self, index: Option<usize>) -> &CarrierMetrics {
        let last = self.carriers.len() - 1;
        &self.carriers[index.map_or(last, |i| i.min(last))]
    }
}
