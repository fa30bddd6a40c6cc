//! The proxy core's transaction-user state behind one short-held lock: the
//! transaction table, where each transaction sends, the forking context of
//! every proxied request, and the dialogs we route toward callees.
//!
//! ```text
//! RFC 3261 §16.6 step 11 / §16.7: the proxy core creates a client
//! transaction per target, and handles their responses in the context of
//! the server transaction: relay provisionals and 2xx, hold the rest, send
//! the best final response when every branch is done.
//! ```

use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use sipedge_shared::sip::{build_response, Editor, HeaderName, Limits, Message, Method};

use super::build::{self, ForwardSpec};
use super::cdr::{unix_ms, CallRecord, CdrSink};
use super::fork::{BranchState, Fork, Verdict};
use super::metrics::{CallOutcome, Metrics};
use crate::transaction::{
    Action, ClientInvite, ClientKey, ClientNonInvite, ServerKey, Timers, Transaction,
    TransactionTable, Transport, TuEvent, TxKey,
};

/// Where bytes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dest {
    /// A UDP peer.
    Udp(SocketAddr),
    /// An accepted TCP connection, by id.
    Tcp(u64),
}

/// Sends decided under the lock, performed after it.
pub type Out = Vec<(Dest, Bytes)>;

/// What never changes while running.
#[derive(Debug, Clone)]
pub struct Env {
    /// `host:port` of our Via and Record-Route.
    pub advertise: String,
    /// Transaction timers.
    pub timers: Timers,
    /// Metric handles.
    pub metrics: Metrics,
    /// CDR sink.
    pub cdr: CdrSink,
    /// Message limits.
    pub limits: Limits,
}

/// One next hop of a proxied request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// New Request-URI (`None`: unchanged).
    pub ruri: Option<String>,
    /// Route values put on top (a stored Path, as `<uri>`).
    pub routes: Vec<String>,
    /// Where the request is sent.
    pub next_hop: SocketAddr,
}

/// A call being set up or established, for its CDR.
#[derive(Debug, Clone)]
pub struct CallInfo {
    /// From URI.
    pub from: String,
    /// To URI as dialled.
    pub to: String,
    /// `sip2sip`, `sip2pstn`, `relay`.
    pub route: &'static str,
    /// INVITE received.
    pub start: SystemTime,
    /// 2xx relayed.
    pub answer: Option<SystemTime>,
}

struct Branch {
    key: ClientKey,
    /// Sent, or last provisional (timer C restarts on each, §16.7 step 2).
    timer_c_from: Instant,
    /// The forwarded request (for its CANCEL).
    request: Message,
    next_hop: SocketAddr,
    routes: Vec<String>,
    final_msg: Option<Bytes>,
    cancel_sent: bool,
}

/// The proxying context of one server transaction.
pub struct Ctx {
    /// The request as received.
    pub request: Message,
    /// Our To tag for responses we generate.
    pub tag: String,
    /// Route values naming us, to pop from forwarded copies.
    pub pops: Vec<(usize, usize)>,
    /// Add our Record-Route to forwarded copies.
    pub record_route: bool,
    /// Gateways left for serial failover.
    pub serial: VecDeque<Target>,
    /// CDR data (initial INVITE).
    pub call: Option<CallInfo>,
    fork: Fork,
    branches: Vec<Branch>,
}

impl Ctx {
    /// A context for `request`.
    pub fn new(request: Message, tag: String) -> Self {
        Ctx {
            request,
            tag,
            pops: Vec::new(),
            record_route: false,
            serial: VecDeque::new(),
            call: None,
            fork: Fork::new(0),
            branches: Vec::new(),
        }
    }

    /// True when a final response already went upstream.
    pub fn final_sent(&self) -> bool {
        self.fork.final_sent()
    }
}

/// A dialog we forwarded: how to reach each side again. The LB strips our
/// Record-Route from in-dialog requests (it only trusts its own entries), so
/// they reach us without a Route and we route them from here.
#[derive(Debug, Clone)]
pub struct Dialog {
    /// The From tag of the dialog-creating request: requests carrying it
    /// come from the caller.
    pub caller_tag: String,
    /// The Record-Route entries the request arrived with (the caller's LB),
    /// which lead back to the caller, in order.
    pub caller_routes: Vec<String>,
    /// The callee's Path, as Route values.
    pub callee_routes: Vec<String>,
    /// The first hop toward the callee.
    pub callee_hop: SocketAddr,
    /// When it was established (dialogs are dropped after a day).
    pub created: Instant,
    /// CDR data.
    pub call: Option<CallInfo>,
}

/// Everything behind the lock.
#[derive(Default)]
pub struct State {
    /// Transactions.
    pub table: TransactionTable,
    dests: HashMap<TxKey, Dest>,
    /// Proxy contexts by server transaction.
    pub ctxs: HashMap<ServerKey, Ctx>,
    branch_of: HashMap<ClientKey, (ServerKey, usize)>,
    /// Dialogs by Call-ID.
    pub dialogs: HashMap<String, Dialog>,
}

impl std::fmt::Debug for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("State")
            .field("transactions", &self.table.len())
            .field("dialogs", &self.dialogs.len())
            .finish_non_exhaustive()
    }
}

/// A fresh branch (`z9hG4bK` + 64 random bits) or To tag.
pub fn random_token(prefix: &str) -> String {
    format!("{prefix}{:016x}", rand::random::<u64>())
}

/// The response without its top Via (ours).
fn pop_via(msg: &Message) -> Option<Bytes> {
    let idx = msg.find(HeaderName::Via)?;
    let mut e = Editor::new(msg);
    e.remove_value(idx, 0);
    Some(e.finish())
}

/// A deterministic branch for a statelessly forwarded request (§16.11): a
/// hash of the incoming top branch.
pub fn stateless_branch(msg: &Message) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    msg.top_via()
        .ok()
        .and_then(|v| v.branch)
        .map(|b| b.as_str())
        .unwrap_or("")
        .hash(&mut h);
    msg.call_id().unwrap_or("").hash(&mut h);
    format!("z9hG4bKsl{:016x}", h.finish())
}

impl State {
    /// Registers a server transaction's destination and context.
    pub fn insert_server(&mut self, key: ServerKey, tx: Transaction, dest: Dest, ctx: Ctx) -> bool {
        let k = TxKey::Server(key.clone());
        if self.table.insert(k.clone(), tx).is_err() {
            return false;
        }
        self.dests.insert(k, dest);
        self.ctxs.insert(key, ctx);
        true
    }

    /// Performs one transaction action.
    pub fn action(&mut self, env: &Env, key: &TxKey, a: Action, out: &mut Out) {
        match a {
            Action::Send(b) => {
                if let Some(d) = self.dests.get(key) {
                    out.push((*d, b));
                }
            }
            Action::PassUp(ev) => {
                if let TxKey::Client(ck) = key {
                    self.on_branch(env, ck, ev, out);
                }
            }
            Action::Terminated => {
                self.dests.remove(key);
                match key {
                    TxKey::Server(sk) => {
                        self.ctxs.remove(sk);
                    }
                    TxKey::Client(ck) => {
                        self.branch_of.remove(ck);
                    }
                }
            }
        }
    }

    fn actions(&mut self, env: &Env, key: &TxKey, actions: Vec<Action>, out: &mut Out) {
        for a in actions {
            self.action(env, key, a, out);
        }
    }

    /// Sends a response on server transaction `sk`.
    pub fn respond_bytes(
        &mut self,
        env: &Env,
        sk: &ServerKey,
        status: u16,
        b: Bytes,
        out: &mut Out,
    ) {
        if let Some(actions) = self.table.send_response(Instant::now(), sk, status, b) {
            self.actions(env, &TxKey::Server(sk.clone()), actions, out);
        }
    }

    /// Generates and sends `status` on `sk` (extra headers as given).
    pub fn respond(
        &mut self,
        env: &Env,
        sk: &ServerKey,
        status: u16,
        reason: &str,
        extra: &[(&str, &str)],
        out: &mut Out,
    ) {
        let Some(ctx) = self.ctxs.get_mut(sk) else {
            return;
        };
        if status >= 200 {
            if ctx.fork.final_sent() && status >= 300 {
                return;
            }
            ctx.fork.mark_final_sent();
        }
        let tag = (status > 100).then_some(ctx.tag.as_str());
        let b = build_response(&ctx.request, status, reason, tag, extra);
        self.respond_bytes(env, sk, status, b, out);
    }

    /// Starts a client transaction toward `t` for server transaction `sk`.
    pub fn start_branch(&mut self, env: &Env, sk: &ServerKey, t: Target, out: &mut Out) -> bool {
        let now = Instant::now();
        let Some(ctx) = self.ctxs.get_mut(sk) else {
            return false;
        };
        let branch = random_token("z9hG4bK");
        let via = format!("SIP/2.0/UDP {};branch={branch};rport", env.advertise);
        let rr = format!("<sip:{};lr>", env.advertise);
        let bytes = build::forward(
            &ctx.request,
            &ForwardSpec {
                ruri: t.ruri.as_deref(),
                pop_routes: &ctx.pops,
                push_routes: &t.routes,
                record_route: ctx.record_route.then_some(rr.as_str()),
                via: &via,
            },
        );
        let Ok(fwd) = Message::parse_datagram(bytes.clone(), &env.limits) else {
            return false;
        };
        let method = ctx.request.method_str().to_owned();
        let Ok(ck) = ClientKey::new(&branch, &method) else {
            return false;
        };
        let (tx, actions) = if ctx.request.method() == Some(Method::Invite) {
            let invite = fwd.clone();
            let limits = env.limits;
            let ack: crate::transaction::AckBuilder = Box::new(move |resp: &Bytes| {
                Message::parse_datagram(resp.clone(), &limits)
                    .ok()
                    .and_then(|r| build::ack(&invite, &r))
                    .unwrap_or_default()
            });
            let (tx, a) = ClientInvite::new(bytes, ack, Transport::Unreliable, env.timers, now);
            (Transaction::ClientInvite(tx), a)
        } else {
            let (tx, a) = ClientNonInvite::new(bytes, Transport::Unreliable, env.timers, now);
            (Transaction::ClientNonInvite(tx), a)
        };
        let idx = ctx.fork.add_branch();
        ctx.branches.push(Branch {
            key: ck.clone(),
            timer_c_from: now,
            request: fwd,
            next_hop: t.next_hop,
            routes: t.routes,
            final_msg: None,
            cancel_sent: false,
        });
        let k = TxKey::Client(ck.clone());
        if self.table.insert(k.clone(), tx).is_err() {
            return false;
        }
        env.metrics.transactions_total.increment(1);
        self.dests.insert(k.clone(), Dest::Udp(t.next_hop));
        self.branch_of.insert(ck, (sk.clone(), idx));
        self.actions(env, &k, actions, out);
        true
    }

    /// A response (or timeout) on a client transaction.
    fn on_branch(&mut self, env: &Env, ck: &ClientKey, ev: TuEvent, out: &mut Out) {
        let Some((sk, idx)) = self.branch_of.get(ck).cloned() else {
            return;
        };
        let Some(status) = ev.status() else {
            return;
        };
        let message = match ev {
            TuEvent::Response { message, .. } => Some(message),
            _ => None,
        };
        let Some(ctx) = self.ctxs.get_mut(&sk) else {
            return;
        };
        // Serial failover to the next gateway on 408/503 (§16.7 leaves the
        // target set to the proxy; DESIGN: sip2pstn fails over on 408/503).
        let mut next = None;
        if matches!(status, 408 | 503) && !ctx.fork.final_sent() && !ctx.fork.cancelled() {
            next = ctx.serial.pop_front();
        }
        if let Some(t) = next {
            if let Some(b) = ctx.branches.get_mut(idx) {
                b.final_msg = message.clone();
            }
            // Report after the new branch exists, so the fork holds this 503.
            self.start_branch(env, &sk, t, out);
            let Some(ctx) = self.ctxs.get_mut(&sk) else {
                return;
            };
            let _ = ctx.fork.on_response(idx, status);
            return;
        }
        let (verdict, cancel) = ctx.fork.on_response(idx, status);
        if let Some(b) = ctx.branches.get_mut(idx) {
            if (101..200).contains(&status) {
                b.timer_c_from = Instant::now();
            }
            if status >= 200 && b.final_msg.is_none() {
                b.final_msg = message.clone();
            }
        }
        let is_invite = ctx.request.method() == Some(Method::Invite);
        let method = ctx.request.method();
        match verdict {
            Verdict::Relay => {
                let Some(up) = message.as_ref().and_then(|m| {
                    Message::parse_datagram(m.clone(), &env.limits)
                        .ok()
                        .and_then(|m| pop_via(&m))
                }) else {
                    return;
                };
                if (200..300).contains(&status) && is_invite {
                    let call_id = ctx.request.call_id().unwrap_or("").to_owned();
                    let mut call = ctx.call.take();
                    if let Some(c) = call.as_mut() {
                        c.answer = Some(SystemTime::now());
                        env.metrics.call(CallOutcome::Answered);
                    }
                    let b = &ctx.branches[idx];
                    let req = &ctx.request;
                    let entry = self.dialogs.entry(call_id).or_insert_with(|| Dialog {
                        caller_tag: req
                            .from()
                            .ok()
                            .and_then(|f| f.tag())
                            .unwrap_or("")
                            .to_owned(),
                        caller_routes: req
                            .values(HeaderName::RecordRoute)
                            .map(str::to_owned)
                            .collect(),
                        callee_routes: b.routes.clone(),
                        callee_hop: b.next_hop,
                        created: Instant::now(),
                        call: None,
                    });
                    if call.is_some() {
                        entry.call = call;
                    }
                }
                if status >= 200 && method == Some(Method::Bye) {
                    self.end_call(env, &sk, status);
                }
                self.respond_bytes(env, &sk, status, up, out);
            }
            Verdict::SendBest { branch, status } => {
                // The LB fails over on 408 as on 503; a callee or gateway
                // that timed out is no reason to try another proxy.
                let status = upstream_status(status);
                let held = ctx.branches.get(branch).and_then(|b| b.final_msg.clone());
                let up = match held {
                    Some(m) if !matches!(status, 500 | 480) => {
                        Message::parse_datagram(m, &env.limits)
                            .ok()
                            .and_then(|m| pop_via(&m))
                    }
                    _ => None,
                };
                let up = up.unwrap_or_else(|| {
                    let reason = match status {
                        480 => "Temporarily Unavailable",
                        500 => "Server Internal Error",
                        _ => "Failed",
                    };
                    build_response(&ctx.request, status, reason, Some(&ctx.tag), &[])
                });
                if let Some(c) = ctx.call.take() {
                    let cancelled = ctx.fork.cancelled() && status == 487;
                    env.metrics.call(if cancelled {
                        CallOutcome::Cancelled
                    } else {
                        CallOutcome::Failed
                    });
                    write_cdr(env, &ctx.request, c, status, None);
                }
                if method == Some(Method::Bye) {
                    self.end_call(env, &sk, status);
                }
                self.respond_bytes(env, &sk, status, up, out);
            }
            Verdict::Hold | Verdict::Drop => {}
        }
        if (101..200).contains(&status) || cancel {
            self.cancel_pending(env, &sk, out);
        }
    }

    /// CANCELs every branch of `sk` that has had a provisional response
    /// (§9.1: not before one); later provisionals trigger it again.
    pub fn cancel_pending(&mut self, env: &Env, sk: &ServerKey, out: &mut Out) {
        let Some(ctx) = self.ctxs.get_mut(sk) else {
            return;
        };
        if !ctx.fork.cancelled() || ctx.request.method() != Some(Method::Invite) {
            return;
        }
        let mut cancels = Vec::new();
        let pending: Vec<(usize, BranchState)> = ctx.fork.pending().collect();
        for (i, state) in pending {
            let Some(b) = ctx.branches.get_mut(i) else {
                continue;
            };
            if state != BranchState::Proceeding || b.cancel_sent {
                continue;
            }
            b.cancel_sent = true;
            if let Some(c) = build::cancel(&b.request) {
                cancels.push((b.key.clone(), c, b.next_hop));
            }
        }
        self.send_cancels(env, cancels, out);
    }

    /// Timer C (§16.6 step 11): an INVITE branch that has rung for
    /// `timer_c` without a final response is CANCELled (its 487 then
    /// counts as that branch's answer).
    pub fn timer_c(
        &mut self,
        env: &Env,
        now: Instant,
        timer_c: std::time::Duration,
        out: &mut Out,
    ) {
        let mut cancels = Vec::new();
        for ctx in self.ctxs.values_mut() {
            if ctx.request.method() != Some(Method::Invite) {
                continue;
            }
            let pending: Vec<(usize, BranchState)> = ctx.fork.pending().collect();
            for (i, state) in pending {
                let Some(b) = ctx.branches.get_mut(i) else {
                    continue;
                };
                let due = now.saturating_duration_since(b.timer_c_from) >= timer_c;
                if state != BranchState::Proceeding || b.cancel_sent || !due {
                    continue;
                }
                b.cancel_sent = true;
                if let Some(c) = build::cancel(&b.request) {
                    cancels.push((b.key.clone(), c, b.next_hop));
                }
            }
        }
        self.send_cancels(env, cancels, out);
    }

    fn send_cancels(
        &mut self,
        env: &Env,
        cancels: Vec<(ClientKey, Bytes, SocketAddr)>,
        out: &mut Out,
    ) {
        let now = Instant::now();
        for (invite_key, bytes, hop) in cancels {
            self.table.cancel_sent(now, &invite_key);
            let Ok(ck) = ClientKey::new(invite_key.branch(), "CANCEL") else {
                continue;
            };
            let (tx, actions) = ClientNonInvite::new(bytes, Transport::Unreliable, env.timers, now);
            let k = TxKey::Client(ck);
            if self
                .table
                .insert(k.clone(), Transaction::ClientNonInvite(tx))
                .is_ok()
            {
                self.dests.insert(k.clone(), Dest::Udp(hop));
                self.actions(env, &k, actions, out);
            }
        }
    }

    /// The caller CANCELled INVITE `sk`: cancel the branches, answer 487.
    pub fn cancel_from_upstream(&mut self, env: &Env, sk: &ServerKey, out: &mut Out) {
        let Some(ctx) = self.ctxs.get_mut(sk) else {
            return;
        };
        ctx.fork.mark_cancelled();
        if let Some(c) = ctx.call.take() {
            env.metrics.call(CallOutcome::Cancelled);
            write_cdr(env, &ctx.request, c, 487, None);
        }
        self.cancel_pending(env, sk, out);
        self.respond(env, sk, 487, "Request Terminated", &[], out);
    }

    /// A BYE's final response went upstream: the call's CDR.
    fn end_call(&mut self, env: &Env, sk: &ServerKey, status: u16) {
        let Some(ctx) = self.ctxs.get(sk) else {
            return;
        };
        let call_id = ctx.request.call_id().unwrap_or("");
        if let Some(d) = self.dialogs.remove(call_id) {
            if let Some(c) = d.call {
                write_cdr(env, &ctx.request, c, 200, Some(status));
            }
        }
    }

    /// Fires due timers.
    pub fn on_timeout(&mut self, env: &Env, now: Instant, out: &mut Out) {
        for (k, a) in self.table.handle_timeout(now) {
            self.action(env, &k, a, out);
        }
        env.metrics.transactions.set(self.table.len() as f64);
    }

    /// Drops dialogs older than `max_age` (never ended by a BYE we saw).
    pub fn expire_dialogs(&mut self, now: Instant, max_age: std::time::Duration) {
        self.dialogs
            .retain(|_, d| now.saturating_duration_since(d.created) < max_age);
    }
}

/// The status sent upstream for the best response `status` (already
/// 503 → 500 by §16.7 step 6): a timeout (408) becomes 480, because the LB
/// would fail over on a 408 to a proxy that knows no more than we do.
pub fn upstream_status(status: u16) -> u16 {
    match status {
        408 => 480,
        s => s,
    }
}

fn write_cdr(env: &Env, req: &Message, c: CallInfo, invite_status: u16, bye_status: Option<u16>) {
    let end = SystemTime::now();
    let duration_s = c
        .answer
        .and_then(|a| end.duration_since(a).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    env.cdr.write(CallRecord {
        call_id: req.call_id().unwrap_or("").to_owned(),
        from: c.from,
        to: c.to,
        route: c.route.to_owned(),
        start_ms: unix_ms(c.start),
        answer_ms: c.answer.map(unix_ms),
        end_ms: unix_ms(end),
        duration_s,
        invite_status,
        bye_status,
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::{RequestIds, ServerInvite};

    const LB: &str = "10.0.0.1:5080";

    fn env() -> Env {
        Env {
            advertise: "127.0.0.1:5071".into(),
            timers: Timers::default(),
            metrics: Metrics::new("unit"),
            cdr: CdrSink::disabled(),
            limits: Limits::default(),
        }
    }

    fn parse(b: &Bytes) -> Message {
        Message::parse_datagram(b.clone(), &Limits::default()).expect("parses")
    }

    /// A State with one INVITE server transaction forked to `n` contacts
    /// behind the LB; returns the forwarded branch requests.
    fn forked(n: usize) -> (State, Env, ServerKey, Vec<Message>) {
        let env = env();
        let mut st = State::default();
        let invite = Bytes::from_static(
            b"INVITE sip:bob@sipedge.local SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.1:5080;branch=z9hG4bKlb1\r\n\
              Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKua1;rport=5060\r\nMax-Forwards: 69\r\n\
              From: <sip:alice@sipedge.local>;tag=a\r\nTo: <sip:bob@sipedge.local>\r\nCall-ID: fork1\r\n\
              CSeq: 2 INVITE\r\nContent-Length: 0\r\n\r\n",
        );
        let msg = parse(&invite);
        let via = msg.top_via().expect("via");
        let key = ServerKey::from_request(&RequestIds {
            method: "INVITE",
            branch: via.branch.expect("branch").as_str(),
            sent_by_host: via.host_str,
            sent_by_port: via.port,
        })
        .expect("key");
        let (tx, _) = ServerInvite::new(
            invite.clone(),
            Bytes::new(),
            Transport::Unreliable,
            env.timers,
            Instant::now(),
        );
        let lb: SocketAddr = LB.parse().expect("literal");
        assert!(st.insert_server(
            key.clone(),
            Transaction::ServerInvite(tx),
            Dest::Udp(lb),
            Ctx::new(msg, "pt".into())
        ));
        if let Some(ctx) = st.ctxs.get_mut(&key) {
            ctx.record_route = true;
        }
        let mut out = Vec::new();
        for i in 0..n {
            let t = Target {
                ruri: Some(format!("sip:bob@192.0.2.{}:5060", i + 1)),
                routes: vec![format!("<sip:TOK{i}@{LB};lr;ob>")],
                next_hop: lb,
            };
            assert!(st.start_branch(&env, &key, t, &mut out));
        }
        let sent: Vec<Message> = out.iter().map(|(_, b)| parse(b)).collect();
        assert_eq!(sent.len(), n);
        (st, env, key, sent)
    }

    /// A response from the contact to branch request `req`, fed like Core::on_response.
    fn answer(st: &mut State, env: &Env, req: &Message, status: u16) -> Out {
        let resp = build_response(req, status, "X", Some("callee"), &[]);
        let m = parse(&resp);
        let via = m.top_via().expect("via");
        let key = ClientKey::new(via.branch.expect("branch").as_str(), "INVITE").expect("key");
        let mut out = Vec::new();
        let actions = st
            .table
            .handle_response(Instant::now(), &key, status, resp)
            .expect("a branch");
        for a in actions {
            st.action(env, &TxKey::Client(key.clone()), a, &mut out);
        }
        out
    }

    fn methods_and_statuses(out: &Out) -> Vec<String> {
        out.iter()
            .map(|(_, b)| {
                let m = parse(b);
                m.status()
                    .map_or_else(|| m.method_str().to_owned(), |s| s.to_string())
            })
            .collect()
    }

    #[test]
    fn branches_carry_path_record_route_and_new_via() {
        let (_, _, _, sent) = forked(2);
        for (i, m) in sent.iter().enumerate() {
            assert_eq!(
                m.request_uri(),
                Some(format!("sip:bob@192.0.2.{}:5060", i + 1).as_str())
            );
            let route = m.values(HeaderName::Route).next().expect("route");
            assert_eq!(route, format!("<sip:TOK{i}@{LB};lr;ob>"));
            assert_eq!(
                m.values(HeaderName::RecordRoute).next(),
                Some("<sip:127.0.0.1:5071;lr>")
            );
            assert_eq!(m.top_via().expect("via").host_str, "127.0.0.1");
            assert_eq!(m.vias().count(), 3);
        }
        assert_ne!(
            sent[0].top_via().expect("via").branch,
            sent[1].top_via().expect("via").branch
        );
    }

    #[test]
    fn first_2xx_wins_and_cancels_the_ringing_branch() {
        let (mut st, env, _, sent) = forked(2);
        // Branch 0 rings: relayed upstream (our Via popped).
        let out = answer(&mut st, &env, &sent[0], 180);
        assert_eq!(methods_and_statuses(&out), ["180"]);
        assert_eq!(parse(&out[0].1).vias().count(), 2);
        // Branch 1 answers: 200 upstream, CANCEL to branch 0.
        let out = answer(&mut st, &env, &sent[1], 200);
        assert_eq!(methods_and_statuses(&out), ["200", "CANCEL"]);
        let cancel = parse(&out[1].1);
        assert_eq!(
            cancel.top_via().expect("via").branch,
            sent[0].top_via().expect("via").branch
        );
        assert_eq!(
            cancel.values(HeaderName::Route).next(),
            Some(format!("<sip:TOK0@{LB};lr;ob>").as_str())
        );
        // The dialog remembers the answering contact's Path.
        let d = st.dialogs.get("fork1").expect("dialog");
        assert_eq!(d.callee_routes, [format!("<sip:TOK1@{LB};lr;ob>")]);
        // Branch 0's 487 is ACKed by its transaction and not relayed.
        let out = answer(&mut st, &env, &sent[0], 487);
        assert_eq!(methods_and_statuses(&out), ["ACK"]);
    }

    #[test]
    fn all_fail_best_goes_up_and_503_becomes_500() {
        let (mut st, env, _, sent) = forked(2);
        let out = answer(&mut st, &env, &sent[0], 503);
        assert_eq!(methods_and_statuses(&out), ["ACK"]);
        let out = answer(&mut st, &env, &sent[1], 503);
        assert_eq!(methods_and_statuses(&out), ["ACK", "500"]);
    }

    #[test]
    fn timer_c_cancels_a_branch_that_rings_too_long() {
        let (mut st, env, _, sent) = forked(1);
        answer(&mut st, &env, &sent[0], 180);
        let mut out = Vec::new();
        st.timer_c(
            &env,
            Instant::now(),
            std::time::Duration::from_secs(180),
            &mut out,
        );
        assert!(out.is_empty(), "not yet");
        st.timer_c(
            &env,
            Instant::now() + std::time::Duration::from_secs(200),
            std::time::Duration::from_secs(180),
            &mut out,
        );
        assert_eq!(methods_and_statuses(&out), ["CANCEL"]);
    }

    #[test]
    fn upstream_statuses() {
        for (best, up) in [(408, 480), (500, 500), (486, 486), (603, 603), (404, 404)] {
            assert_eq!(upstream_status(best), up, "{best}");
        }
    }

    #[test]
    fn stateless_branch_is_deterministic() {
        let m = |branch: &str| {
            Message::parse_datagram(
                Bytes::from(format!(
                    "ACK sip:b@h SIP/2.0\r\nVia: SIP/2.0/UDP h;branch={branch}\r\nFrom: <sip:a@h>;tag=1\r\n\
                     To: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n"
                )),
                &Limits::default(),
            )
            .expect("parses")
        };
        let a = stateless_branch(&m("z9hG4bK1"));
        assert_eq!(a, stateless_branch(&m("z9hG4bK1")));
        assert_ne!(a, stateless_branch(&m("z9hG4bK2")));
        assert!(a.starts_with("z9hG4bK"));
    }
}
