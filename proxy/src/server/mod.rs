//! The proxy server: receives SIP messages, runs them through the
//! transaction layer, and decides (registrar, authentication, routing) what
//! to answer or where to forward.
//!
//! ```text
//! RFC 3261 §16.3: request validation (syntax, URI scheme, Max-Forwards,
//! loop, Proxy-Require, Proxy-Authorization); §16.4: route information
//! preprocessing (pop our own Route); §16.5: determining request targets;
//! §16.6: forwarding; §16.7: response processing; §16.10: CANCEL.
//! ```

pub mod authn;
pub mod build;
pub mod cdr;
pub mod fork;
pub mod metrics;
pub mod register;
pub mod request;
pub mod routing;
pub mod state;
pub mod transport;

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use sipedge_shared::sip::{build_response, check_request, Host, Message, Method, NameAddr, Uri};
use tokio::sync::Notify;

use crate::auth::{AuthInput, AuthOutcome, Authenticator};
use crate::churn::Churn;
use crate::config::ProxyConfig;
use crate::registrar::Registrar;
use crate::transaction::{
    RequestIds, ServerInvite, ServerKey, ServerNonInvite, Transaction, Transport,
};
use crate::users::SubscriberStore;
use state::{random_token, Ctx, Dest, Env, Out, State};

/// Timer C (RFC 3261 §16.6 step 11: "greater than 3 minutes").
pub const TIMER_C: std::time::Duration = std::time::Duration::from_secs(181);

/// Where a request came from.
#[derive(Debug, Clone, Copy)]
pub struct Source {
    /// The peer address.
    pub peer: SocketAddr,
    /// Where responses go.
    pub dest: Dest,
    /// How it arrived.
    pub transport: Transport,
}

/// The shared server state (one per process).
pub struct Core {
    /// Validated configuration.
    pub cfg: ProxyConfig,
    /// Immutable environment of the transaction user.
    pub env: Env,
    /// The registrar.
    pub registrar: Registrar,
    /// Digest authentication.
    pub auth: Authenticator,
    /// Subscribers.
    pub store: Arc<dyn SubscriberStore>,
    /// Sockets.
    pub net: transport::Net,
    /// Our own addresses (Route entries naming one of them are ours).
    pub local_addrs: Vec<SocketAddr>,
    /// Replicas and peer lookups (off without peers).
    pub churn: Churn,
    state: Mutex<State>,
    /// Wakes the timer loop when a transaction was added.
    pub wake: Notify,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("id", &self.cfg.id)
            .field("advertise", &self.env.advertise)
            .finish_non_exhaustive()
    }
}

/// A URI's `host[:port]` as a socket address, when the host is an IP literal.
pub fn uri_addr(uri: &Uri<'_>) -> Option<SocketAddr> {
    let ip: IpAddr = match uri.host? {
        Host::Domain(d) if d.eq_ignore_ascii_case("localhost") => IpAddr::from([127, 0, 0, 1]),
        Host::Domain(_) => return None,
        _ => uri.host_str.trim_matches(['[', ']']).parse().ok()?,
    };
    Some(SocketAddr::new(ip, uri.port.unwrap_or(5060)))
}

/// First-hop address of a Route value (`<sip:...;lr>`).
fn route_addr(route: &str) -> Option<SocketAddr> {
    let na = NameAddr::parse(route).ok()?;
    uri_addr(&na.uri)
}

impl Core {
    /// Assembles the core.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: ProxyConfig,
        env: Env,
        registrar: Registrar,
        auth: Authenticator,
        store: Arc<dyn SubscriberStore>,
        net: transport::Net,
        local_addrs: Vec<SocketAddr>,
        churn: Churn,
    ) -> Self {
        Core {
            cfg,
            env,
            registrar,
            auth,
            store,
            net,
            local_addrs,
            churn,
            state: Mutex::new(State::default()),
            wake: Notify::new(),
        }
    }

    /// The state lock; a panic elsewhere does not stop the server.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Sends what was decided under the lock.
    pub fn flush(&self, out: Out) {
        for (d, b) in out {
            self.net.send(d, b);
        }
    }

    fn is_local_domain(&self, host: &str) -> bool {
        self.cfg
            .domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(host))
    }

    /// True when `uri` names this proxy (our advertise or a listen address).
    fn is_us(&self, uri: &Uri<'_>) -> bool {
        let hp = match uri.port {
            Some(p) => format!("{}:{p}", uri.host_str),
            None => uri.host_str.to_owned(),
        };
        if hp.eq_ignore_ascii_case(&self.env.advertise) {
            return true;
        }
        uri_addr(uri).is_some_and(|a| self.local_addrs.contains(&a))
    }

    /// One message from the network.
    pub fn on_message(self: &Arc<Self>, data: Bytes, src: Source) {
        let Ok(msg) = Message::parse_datagram(data, &self.env.limits) else {
            return; // Unparsable: no Via to answer to.
        };
        if msg.is_request() {
            self.on_request(msg, src);
        } else {
            self.on_response(msg);
        }
    }

    fn stateless_reply(
        &self,
        msg: &Message,
        src: &Source,
        status: u16,
        reason: &str,
        extra: &[(&str, &str)],
    ) {
        let tag = random_token("sx");
        let b = build_response(msg, status, reason, Some(&tag), extra);
        self.net.send(src.dest, b);
    }

    fn on_response(&self, msg: Message) {
        let (Ok(via), Ok(cseq)) = (msg.top_via(), msg.cseq()) else {
            return;
        };
        let (Some(branch), Some(status)) = (via.branch, msg.status()) else {
            return;
        };
        let ids = crate::transaction::ResponseIds {
            branch: branch.as_str(),
            cseq_method: cseq.method_str,
        };
        let Ok(key) = crate::transaction::ClientKey::from_response(&ids) else {
            return;
        };
        let mut out = Vec::new();
        {
            let mut st = self.lock();
            let now = Instant::now();
            if let Some(actions) = st
                .table
                .handle_response(now, &key, status, msg.bytes().clone())
            {
                let k = crate::transaction::TxKey::Client(key);
                for a in actions {
                    st.action(&self.env, &k, a, &mut out);
                }
            }
            // No match: a stray or late response; a stateful proxy drops it
            // (2xx retransmissions are absorbed by the Accepted state).
        }
        self.flush(out);
    }

    fn on_request(self: &Arc<Self>, msg: Message, src: Source) {
        let method = msg.method();
        if let Err(e) = check_request(&msg) {
            if method != Some(Method::Ack) {
                let mut extra = Vec::new();
                if let Some(u) = e.unsupported() {
                    extra.push(("Unsupported", u));
                }
                self.stateless_reply(&msg, &src, e.status(), &e.reason(), &extra);
            }
            return;
        }
        let Ok(via) = msg.top_via() else { return };
        let Some(branch) = via.branch.filter(|b| b.is_rfc3261()) else {
            if method != Some(Method::Ack) {
                self.stateless_reply(&msg, &src, 400, "RFC 3261 Branch Required", &[]);
            }
            return;
        };
        let ids = RequestIds {
            method: msg.method_str(),
            branch: branch.as_str(),
            sent_by_host: via.host_str,
            sent_by_port: via.port,
        };
        let Ok(key) = ServerKey::from_request(&ids) else {
            return;
        };
        let now = Instant::now();
        let mut out = Vec::new();
        match method {
            Some(Method::Ack) => {
                let mut pass_up = false;
                let matched = {
                    let mut st = self.lock();
                    match st
                        .table
                        .handle_request(now, &key, true, msg.bytes().clone())
                    {
                        Some(actions) => {
                            let k = crate::transaction::TxKey::Server(key.clone());
                            for a in actions {
                                if matches!(a, crate::transaction::Action::PassUp(_)) {
                                    pass_up = true;
                                } else {
                                    st.action(&self.env, &k, a, &mut out);
                                }
                            }
                            true
                        }
                        None => false,
                    }
                };
                self.flush(out);
                // An ACK for a 2xx (end to end) is forwarded statelessly.
                if !matched || pass_up {
                    let me = Arc::clone(self);
                    tokio::spawn(async move { me.forward_ack(msg).await });
                }
                return;
            }
            Some(Method::Cancel) => {
                // §9.2/§16.10: the CANCEL gets its own (non-INVITE) server
                // transaction, so its retransmissions get the same answer.
                {
                    let mut st = self.lock();
                    let k = crate::transaction::TxKey::Server(key.clone());
                    if let Some(actions) =
                        st.table
                            .handle_request(now, &key, false, msg.bytes().clone())
                    {
                        for a in actions {
                            st.action(&self.env, &k, a, &mut out);
                        }
                    } else {
                        let (tx, _) = ServerNonInvite::new(
                            msg.bytes().clone(),
                            src.transport,
                            self.env.timers,
                        );
                        let ctx = Ctx::new(msg.clone(), random_token("px"));
                        let target = st.table.cancel_target(&key);
                        if st.insert_server(
                            key.clone(),
                            Transaction::ServerNonInvite(tx),
                            src.dest,
                            ctx,
                        ) {
                            match target {
                                Some(invite) => {
                                    st.respond(&self.env, &key, 200, "OK", &[], &mut out);
                                    st.cancel_from_upstream(&self.env, &invite, &mut out);
                                }
                                None => st.respond(
                                    &self.env,
                                    &key,
                                    481,
                                    "Call/Transaction Does Not Exist",
                                    &[],
                                    &mut out,
                                ),
                            }
                        }
                    }
                }
                self.wake.notify_one();
                self.flush(out);
                return;
            }
            _ => {}
        }
        let is_invite = method == Some(Method::Invite);
        {
            let mut st = self.lock();
            if let Some(actions) = st
                .table
                .handle_request(now, &key, false, msg.bytes().clone())
            {
                // A retransmission: the transaction answers it.
                let k = crate::transaction::TxKey::Server(key.clone());
                for a in actions {
                    st.action(&self.env, &k, a, &mut out);
                }
                drop(st);
                self.flush(out);
                return;
            }
            if st.table.len() >= self.cfg.max_transactions {
                drop(st);
                self.env.metrics.overload.increment(1);
                let ra = rand::random::<u32>() % 20 + 5;
                self.stateless_reply(
                    &msg,
                    &src,
                    503,
                    "Service Unavailable",
                    &[("Retry-After", &ra.to_string())],
                );
                return;
            }
            let ctx = Ctx::new(msg.clone(), random_token("px"));
            let tx = if is_invite {
                let trying = build_response(&msg, 100, "Trying", None, &[]);
                let (tx, _pass_up) = ServerInvite::new(
                    msg.bytes().clone(),
                    trying.clone(),
                    src.transport,
                    self.env.timers,
                    now,
                );
                Transaction::ServerInvite(tx)
            } else {
                let (tx, _pass_up) =
                    ServerNonInvite::new(msg.bytes().clone(), src.transport, self.env.timers);
                Transaction::ServerNonInvite(tx)
            };
            if !st.insert_server(key.clone(), tx, src.dest, ctx) {
                return;
            }
            self.env.metrics.transactions_total.increment(1);
            if is_invite {
                // 100 Trying at once: the LB's failover timer waits for it.
                st.respond(&self.env, &key, 100, "Trying", &[], &mut out);
            }
        }
        self.wake.notify_one();
        self.flush(out);
        let me = Arc::clone(self);
        tokio::spawn(async move { me.handle_request(msg, src, key).await });
    }

    /// Responds on server transaction `key` and sends at once.
    pub fn reply(&self, key: &ServerKey, status: u16, reason: &str, extra: &[(&str, &str)]) {
        let mut out = Vec::new();
        self.lock()
            .respond(&self.env, key, status, reason, extra, &mut out);
        self.flush(out);
    }

    /// Authenticates `msg` for `realm`; on failure the answer (401/407, 403,
    /// 503) is sent and `None` returned. `strict`: instead of a new challenge,
    /// answer 403 unless this is an INVITE without credentials.
    pub async fn authenticate(
        &self,
        msg: &Message,
        src: &Source,
        key: &ServerKey,
        realm: &str,
        strict: bool,
    ) -> Option<String> {
        let client = authn::client_addr(msg, src.peer);
        let creds = authn::credentials_for(msg, realm);
        let input = AuthInput {
            method: msg.method_str(),
            uri: msg.request_uri().unwrap_or(""),
            header_value: creds.as_deref(),
            source_ip: client.ip(),
            realm,
        };
        let first_try = creds.is_none() && msg.method() == Some(Method::Invite);
        match self.auth.check(input, SystemTime::now()).await {
            AuthOutcome::Authenticated { user } => Some(user),
            AuthOutcome::Challenge { .. } if strict && !first_try => {
                self.env.metrics.auth_forbidden.increment(1);
                self.reply(key, 403, "Relaying Denied", &[]);
                None
            }
            AuthOutcome::Challenge {
                status,
                header_name,
                header_values,
                ..
            } => {
                self.env.metrics.auth_challenges.increment(1);
                let extra: Vec<(&str, &str)> = header_values
                    .iter()
                    .map(|v| (header_name, v.as_str()))
                    .collect();
                let reason = if status == 401 {
                    "Unauthorized"
                } else {
                    "Proxy Authentication Required"
                };
                self.reply(key, status, reason, &extra);
                None
            }
            AuthOutcome::Forbidden { reason } => {
                self.env.metrics.auth_forbidden.increment(1);
                tracing::info!(ip = %client.ip(), ?reason, "authentication refused");
                self.reply(key, 403, "Forbidden", &[]);
                None
            }
            AuthOutcome::Unavailable { reason } => {
                self.env.metrics.overload.increment(1);
                tracing::warn!(%reason, "subscriber store unavailable");
                self.reply(key, 503, "Service Unavailable", &[("Retry-After", "5")]);
                None
            }
        }
    }

    /// The authenticator (for tests and admin views).
    pub fn authenticator(&self) -> &Authenticator {
        &self.auth
    }

    /// Runs the timers until `shutdown`; purges expired bindings and dialogs.
    pub async fn timer_loop(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let mut last_purge = Instant::now();
        loop {
            let next = self.lock().table.poll_timeout();
            let now = Instant::now();
            let wait = next.map_or(std::time::Duration::from_secs(1), |t| {
                t.saturating_duration_since(now)
                    .min(std::time::Duration::from_secs(1))
            });
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
            let now = Instant::now();
            let mut out = Vec::new();
            {
                let mut st = self.lock();
                st.on_timeout(&self.env, now, &mut out);
                if now.duration_since(last_purge) >= std::time::Duration::from_secs(5) {
                    st.expire_dialogs(now, std::time::Duration::from_secs(86_400));
                    st.timer_c(&self.env, now, TIMER_C, &mut out);
                }
            }
            self.flush(out);
            if now.duration_since(last_purge) >= std::time::Duration::from_secs(5) {
                last_purge = now;
                self.registrar.location().purge_expired(now);
                self.churn.purge(now);
                self.env
                    .metrics
                    .registrations
                    .set(self.registrar.location().count() as f64);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_and_route_addresses() {
        let table: &[(&str, Option<&str>)] = &[
            ("sip:bob@192.0.2.1:5062", Some("192.0.2.1:5062")),
            ("sip:bob@192.0.2.1", Some("192.0.2.1:5060")),
            (
                "sip:[2001:db8::1]:5070;transport=tcp",
                Some("[2001:db8::1]:5070"),
            ),
            ("sip:localhost:5071", Some("127.0.0.1:5071")),
            ("sip:bob@example.com", None),
        ];
        for (uri, want) in table {
            let got = Uri::parse(uri).ok().as_ref().and_then(uri_addr);
            assert_eq!(got.map(|a| a.to_string()).as_deref(), *want, "{uri}");
        }
        assert_eq!(
            route_addr("<sip:TOK@10.0.0.1:5080;lr;ob>").map(|a| a.to_string()),
            Some("10.0.0.1:5080".into())
        );
        assert_eq!(route_addr("not a route"), None);
    }
}
