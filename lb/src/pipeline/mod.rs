//! The LB's message handling, sans-IO: a worker's [`Core`] takes received
//! messages and `now`, and queues what to send where. The request pipeline
//! runs in the order DESIGN.md gives, one step per module:
//! parse and validate → loop guard ([`loop_guard`]) → Route sanitising
//! ([`route`]) → flood control (`crate::flood`) → proxy choice ([`choose`])
//! → our Via, received/rport, Path or Record-Route ([`forward`]) → forward
//! and keep the transaction for failover (`crate::txn`).
//! Requests from proxies toward users and responses are in [`inbound`].

pub mod choose;
pub mod forward;
pub mod inbound;
pub mod log;
pub mod loop_guard;
pub mod malformed;
pub mod route;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use sipedge_shared::sip::{
    build_response, check_request, Checked, Message, Method, NameAddr, Span, Via,
};

use crate::branch::{Branch, BranchInput};
use crate::context::Shared;
use crate::flood::Decision;
use crate::flow::FlowId;
use crate::txn::{Expiry, Phase, TxnTable};

use loop_guard::LoopReject;

/// Where an output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// A proxy (or any internal element), from this worker's internal socket.
    Internal(SocketAddr),
    /// A client flow: its UDP address or its stream connection.
    Flow(FlowId),
}

/// One message to send.
#[derive(Debug, Clone)]
pub struct Out {
    /// Destination.
    pub dest: Dest,
    /// Bytes on the wire.
    pub bytes: Bytes,
}

/// The text of a span of `msg` ("" if it is not UTF-8, which the parser
/// already excludes for header values).
pub fn span_str(msg: &Message, span: Span) -> &str {
    msg.as_bytes()
        .get(span.range())
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("")
}

/// The per-worker handling state.
#[derive(Debug)]
pub struct Core {
    /// What all workers share.
    pub shared: Arc<Shared>,
    /// This worker's internal `ip:port` (our Via sent-by toward proxies, so
    /// their responses come back to this worker).
    pub sent_by: String,
    /// `host[:port]` values our Record-Routes carry (inner, outer face).
    our_hosts: [String; 2],
    /// Transactions kept for failover.
    pub txns: TxnTable<Message>,
    /// Messages to send, drained by the I/O loop.
    pub out: Vec<Out>,
    /// Which requests and responses are logged.
    pub(crate) sampler: log::Sampler,
    /// Signed Record-Route pairs by flow and proxy (see `forward::record_routes`).
    pub(crate) rr_cache: std::cell::RefCell<forward::RrCache>,
    /// The routing key of the request in hand (reused: no allocation per request).
    key_buf: String,
    /// UDP peers heard recently (the UDP flow count).
    pub udp_peers: crate::udp_peers::UdpPeers,
}

/// Why a request is answered locally.
#[derive(Debug)]
struct Reject {
    status: u16,
    reason: String,
    extra: Option<(&'static str, String)>,
}

impl Reject {
    fn new(status: u16, reason: impl Into<String>) -> Self {
        Reject {
            status,
            reason: reason.into(),
            extra: None,
        }
    }
}

impl Core {
    /// A core whose internal socket is `internal` (the worker's own).
    pub fn new(shared: Arc<Shared>, internal: SocketAddr) -> Self {
        let s = &shared.settings;
        let our_hosts = [s.internal.to_string(), s.advertise.clone()];
        let txns = TxnTable::new(s.timers, s.max_transactions);
        Core {
            sent_by: internal.to_string(),
            our_hosts,
            txns,
            out: Vec::with_capacity(8),
            sampler: log::Sampler::new(shared.settings.log_sample),
            rr_cache: std::cell::RefCell::default(),
            key_buf: String::new(),
            // A UDP flow stays counted for two keepalive intervals of silence.
            udp_peers: crate::udp_peers::UdpPeers::new(s.keepalive_interval * 2),
            shared,
        }
    }

    fn our_hosts(&self) -> [&str; 2] {
        [self.our_hosts[0].as_str(), self.our_hosts[1].as_str()]
    }

    /// A request or response from a client flow.
    pub fn on_external(&mut self, msg: Message, flow: FlowId, now: Instant) {
        if msg.is_request() {
            let carrier = self.shared.carriers.lookup_index(flow.peer.ip());
            self.shared.metrics.carrier(carrier).request(msg.method());
            if self.sampler.take() {
                log::request(&msg, flow.peer);
            }
            if let Err(r) = self.external_request(&msg, flow, now) {
                self.reply(&msg, flow, r);
            }
        } else {
            inbound::response_from_user(self, &msg);
        }
    }

    /// A datagram or message from the internal side (a proxy).
    pub fn on_internal(&mut self, msg: Message, from: SocketAddr, now: Instant) {
        if msg.is_request() {
            inbound::request_toward_user(self, &msg, from);
        } else {
            inbound::response_from_proxy(self, msg, now);
        }
    }

    /// Answers `msg` locally on `flow`.
    fn reply(&mut self, msg: &Message, flow: FlowId, r: Reject) {
        if msg.method() == Some(Method::Ack) {
            return; // ACK is never answered.
        }
        log::response(msg, r.status, flow.peer, true);
        let tag = local_tag(msg);
        let extra: Vec<(&str, &str)> = r.extra.iter().map(|(n, v)| (*n, v.as_str())).collect();
        let bytes = build_response(msg, r.status, &r.reason, Some(&tag), &extra);
        let carrier = self.shared.carriers.lookup_index(flow.peer.ip());
        self.shared.metrics.carrier(carrier).response(r.status);
        self.out.push(Out {
            dest: Dest::Flow(flow),
            bytes,
        });
    }

    fn external_request(
        &mut self,
        msg: &Message,
        flow: FlowId,
        now: Instant,
    ) -> Result<(), Reject> {
        let m = &self.shared.metrics;
        let cm = m.carrier(self.shared.carriers.lookup_index(flow.peer.ip()));
        let checked = match check_request(msg) {
            Ok(c) => c,
            Err(e) => {
                cm.bad_messages.increment(1);
                let mut r = Reject::new(e.status(), e.reason());
                r.extra = e.unsupported().map(|u| ("Unsupported", u.to_string()));
                return Err(r);
            }
        };
        let method = msg.method();
        match self
            .shared
            .flood
            .check(flow.peer.ip(), method == Some(Method::Register), now)
        {
            Decision::Admit => {}
            Decision::Reject503 { retry_after } => {
                cm.flood_503.increment(1);
                let mut r = Reject::new(503, "Service Unavailable");
                r.extra = Some(("Retry-After", retry_after.to_string()));
                return Err(r);
            }
            Decision::Drop => {
                cm.flood_drop.increment(1);
                return Ok(());
            }
        }
        let mf = loop_guard::max_forwards(msg).map_err(|e| match e {
            LoopReject::TooManyHops => {
                cm.too_many_hops.increment(1);
                Reject::new(483, "Too Many Hops")
            }
            LoopReject::Loop => Reject::new(482, "Loop Detected"),
            LoopReject::Bad(e) => Reject::new(e.status(), e.reason()),
        })?;
        let keys = &self.shared.settings.flow_keys;
        let routes = route::sanitise(msg, &self.our_hosts(), keys);
        if routes.stripped > 0 {
            cm.routes_stripped.increment(routes.stripped as u64);
        }
        // Parsed once, by check_request, for the branch, the key and the copy.
        let branch = branch_of_checked(msg, &checked, routes.top_route);
        if loop_guard::is_loop(msg, branch.loop_part) {
            cm.loops.increment(1);
            return Err(Reject::new(482, "Loop Detected"));
        }

        // A request for a transaction we hold: retransmission, ACK, CANCEL.
        if let Some(txn) = self.txns.get(&branch.key()) {
            let (proxy, attempt, phase, last) = (
                txn.proxy,
                txn.branch.attempt,
                txn.phase,
                txn.last_response.clone(),
            );
            let final_status = txn.final_status;
            match method {
                Some(Method::Ack) if final_status.is_some_and(|s| s >= 300) => return Ok(()),
                Some(Method::Cancel) => {
                    let ctx = forward::Ctx {
                        msg,
                        routes: &routes,
                        mf,
                        branch: branch.with_attempt(attempt),
                        flow,
                        proxy_id: None,
                        checked: Some(&checked),
                    };
                    let bytes = forward::build(self, &ctx).map_err(|e| Reject::new(400, e))?;
                    self.out.push(Out {
                        dest: Dest::Internal(proxy),
                        bytes,
                    });
                    return Ok(());
                }
                _ => {}
            }
            if let Some(last) = last {
                self.out.push(Out {
                    dest: Dest::Flow(flow),
                    bytes: last,
                });
            } else if phase != Phase::Proceeding {
                // Relay the retransmission to the proxy now tried, or to the
                // one that answered: its transaction answers again.
                let ctx = forward::Ctx {
                    msg,
                    routes: &routes,
                    mf,
                    branch: branch.with_attempt(attempt),
                    flow,
                    proxy_id: None,
                    checked: Some(&checked),
                };
                let bytes = forward::build(self, &ctx).map_err(|e| Reject::new(400, e))?;
                self.out.push(Out {
                    dest: Dest::Internal(proxy),
                    bytes,
                });
            }
            return Ok(());
        }

        let starts_txn = !matches!(method, Some(Method::Ack) | Some(Method::Cancel));
        if starts_txn && self.txns.is_full() {
            self.shared.metrics.txn_table_full.increment(1);
            // Randomised like flood control's, so refused clients do not
            // come back in step.
            let mut r = Reject::new(503, "Transaction Table Full");
            let retry = self.shared.flood.retry_after();
            r.extra = Some(("Retry-After", retry.to_string()));
            return Err(r);
        }
        let mut key = std::mem::take(&mut self.key_buf);
        choose::routing_key_checked(msg, &checked, &mut key);
        let snapshot = self.shared.proxies.snapshot();
        let choice = choose::first(&snapshot, &key, routes.pinned_proxy);
        self.key_buf = key;
        let Some(choice) = choice else {
            let mut r = Reject::new(503, "No Proxy Available");
            r.extra = Some(("Retry-After", "5".to_string()));
            return Err(r);
        };
        let proxy_id = choice.id(&snapshot);
        let ctx = forward::Ctx {
            msg,
            routes: &routes,
            mf,
            branch,
            flow,
            proxy_id,
            checked: Some(&checked),
        };
        let bytes = forward::build(self, &ctx).map_err(|e| Reject::new(400, e))?;
        self.out.push(Out {
            dest: Dest::Internal(choice.addr),
            bytes,
        });
        // ACK (for a 2xx: a transaction of its own without response) and
        // CANCEL without its INVITE are forwarded statelessly.
        if starts_txn {
            let is_invite = method == Some(Method::Invite);
            self.txns.start(
                branch,
                flow,
                msg.clone(),
                is_invite,
                choice.rank,
                choice.addr,
                now,
            );
        }
        Ok(())
    }

    /// Moves a transaction to the next proxy, or answers 500 when none is
    /// left (not 503: upstream must not fail over and repeat what we tried).
    pub(crate) fn failover(&mut self, key: crate::txn::TxnKey, now: Instant) {
        // A transaction past its final response has no request left to retry.
        let Some((txn, msg)) = self
            .txns
            .get(&key)
            .and_then(|t| Some((t, t.request.clone()?)))
        else {
            return;
        };
        let (flow, rank, tried, branch) = (txn.source, txn.rank, txn.proxy, txn.branch);
        let attempt = branch.attempt;
        let snapshot = self.shared.proxies.snapshot();
        let next = choose::routing_key(&msg)
            .ok()
            .and_then(|k| choose::next(&snapshot, &k, rank, tried))
            .filter(|_| attempt < 15);
        // The copy for the next proxy; when there is none (or it cannot be
        // built), the client gets 500 and the transaction lingers as completed,
        // so nothing is left waiting without a timer.
        let forwarded = next.and_then(|choice| {
            let routes = route::sanitise(&msg, &self.our_hosts(), &self.shared.settings.flow_keys);
            let mf = loop_guard::max_forwards(&msg).ok()?;
            let ctx = forward::Ctx {
                msg: &msg,
                routes: &routes,
                mf,
                branch: branch.with_attempt(attempt + 1),
                flow,
                proxy_id: choice.id(&snapshot),
                checked: None,
            };
            let bytes = forward::build(self, &ctx).ok()?;
            Some((choice, bytes))
        });
        let Some((choice, bytes)) = forwarded else {
            self.shared.metrics.all_failed.increment(1);
            let tag = local_tag(&msg);
            let bytes = build_response(&msg, 500, "All Proxies Failed", Some(&tag), &[]);
            self.txns.on_final(key, 500, Some(bytes.clone()), now);
            self.out.push(Out {
                dest: Dest::Flow(flow),
                bytes,
            });
            return;
        };
        self.out.push(Out {
            dest: Dest::Internal(choice.addr),
            bytes,
        });
        self.txns.retry(key, choice.rank, choice.addr, now);
    }

    /// The earliest time [`Core::on_timeout`] has work.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.txns.next_deadline()
    }

    /// Runs expired timers: our 408 → failover.
    pub fn on_timeout(&mut self, now: Instant) {
        while let Some(exp) = self.txns.poll_expired(now) {
            if let Expiry::FailoverTimeout(key) = exp {
                self.shared.metrics.failover_timeout.increment(1);
                self.failover(key, now);
            }
        }
    }
}

/// Our branch for a request: the §16.11 inputs read from the message.
pub fn branch_of(msg: &Message, top_route: &str) -> Result<Branch, String> {
    let via = msg.top_via().map_err(|e| e.reason())?;
    let from = msg.from().map_err(|e| e.reason())?;
    let to = msg.to().map_err(|e| e.reason())?;
    let cseq = msg.cseq().map_err(|e| e.reason())?;
    let call_id = msg.call_id().map_err(|e| e.reason())?;
    Ok(branch_from(
        msg, &via, &from, &to, call_id, cseq.seq, top_route,
    ))
}

/// [`branch_of`] from the headers `check_request` already parsed.
pub fn branch_of_checked(msg: &Message, c: &Checked<'_>, top_route: &str) -> Branch {
    branch_from(
        msg, &c.top_via, &c.from, &c.to, c.call_id, c.cseq.seq, top_route,
    )
}

fn branch_from(
    msg: &Message,
    via: &Via<'_>,
    from: &NameAddr<'_>,
    to: &NameAddr<'_>,
    call_id: &str,
    cseq: u32,
    top_route: &str,
) -> Branch {
    let input = BranchInput {
        request_uri: msg.request_uri().unwrap_or(""),
        from_tag: from.tag().unwrap_or(""),
        to_tag: to.tag().unwrap_or(""),
        call_id,
        cseq,
        top_route,
        via_branch: via.branch.map_or("", |b| b.as_str()),
        via_sent_by: via_sent_by(msg),
    };
    Branch::compute(&input, 0)
}

/// The `host[:port]` text of the top Via's sent-by.
fn via_sent_by(msg: &Message) -> &str {
    let Some(idx) = msg.find(sipedge_shared::sip::HeaderName::Via) else {
        return "";
    };
    let Some(span) = msg.value_spans(idx).next() else {
        return "";
    };
    let v = span_str(msg, span);
    // "SIP/2.0/UDP host:port;params"
    v.split_once([' ', '\t'])
        .map(|(_, rest)| rest.trim_start())
        .map(|rest| rest.split(';').next().unwrap_or(rest).trim())
        .unwrap_or("")
}

/// A To tag for responses we generate, stable for retransmissions.
fn local_tag(msg: &Message) -> String {
    let id = msg.call_id().unwrap_or("");
    format!(
        "se{:x}",
        sipedge_shared::hash::fnv1a64(id.as_bytes()) & 0xffff_ffff
    )
}
