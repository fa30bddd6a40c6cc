//! Request routing of the proxy core (RFC 3261 §16.4–16.6): our own Route
//! entries, the target decision (registrar lookup, sip2pstn, relay), who must
//! authenticate, in-dialog next hops, and handing the targets to the fork.
//!
//! ```text
//! RFC 3261 §16.4: If the first value in the Route header field indicates
//! this proxy, the proxy MUST remove that value from the request.
//! RFC 3261 §16.5: If the Request-URI of the request contains a value this
//! proxy is configured to own, the proxy MUST replace the Request-URI with
//! the results of the applicable location service.
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use sipedge_shared::sip::{HeaderName, Message, Method, NameAddr, Uri};

use super::state::{stateless_branch, CallInfo, Dest, Target};
use super::{build, register, route_addr, uri_addr, Core, Source};
use crate::transaction::ServerKey;

/// Where the request is going, as decided by §16.5.
#[derive(Debug)]
enum Decision {
    /// Registered contacts of a local user (fork).
    Local(Vec<Target>),
    /// Answer this status ourselves.
    Reply(u16, &'static str),
    /// Gateways of a group, in order.
    Pstn(Vec<Target>),
    /// A foreign domain (resolved after authentication).
    Foreign,
    /// A foreign domain's next hop.
    Relay(Target),
}

impl Core {
    /// Route values at the top of `msg` that name us (§16.4), as positions.
    fn our_routes(&self, msg: &Message) -> Vec<(usize, usize)> {
        let mut ours = Vec::new();
        for (idx, h) in msg.header_entries().iter().enumerate() {
            if h.name != HeaderName::Route {
                continue;
            }
            for (vi, span) in msg.value_spans(idx).enumerate() {
                let v = std::str::from_utf8(&msg.as_bytes()[span.range()]).unwrap_or("");
                match NameAddr::parse(v) {
                    Ok(na) if self.is_us(&na.uri) => ours.push((idx, vi)),
                    _ => return ours,
                }
            }
        }
        ours
    }

    /// The first Route value left after popping ours.
    fn next_route<'m>(&self, msg: &'m Message, pops: &[(usize, usize)]) -> Option<&'m str> {
        msg.values(HeaderName::Route).nth(pops.len())
    }

    pub(super) async fn handle_request(self: Arc<Self>, msg: Message, src: Source, key: ServerKey) {
        let method = msg.method();
        if msg
            .max_forwards()
            .ok()
            .flatten()
            .is_some_and(|m| m.get() == 0)
        {
            self.reply(&key, 483, "Too Many Hops", &[]);
            return;
        }
        let pops = self.our_routes(&msg);
        let in_dialog = msg.to().is_ok_and(|t| t.tag().is_some());
        if in_dialog {
            match self.in_dialog_target(&msg, &pops).await {
                Some(t) => self.proxy_to(&key, pops, false, vec![t], None),
                None => self.reply(&key, 404, "Not Found", &[]),
            }
            return;
        }
        let ruri = msg.request_uri().unwrap_or("");
        let Ok(uri) = Uri::parse(ruri) else {
            self.reply(&key, 416, "Unsupported URI Scheme", &[]);
            return;
        };
        // A Route beyond ours: follow it (loose routing, §16.4 / §16.6 step
        // 6), but only for someone we authenticate (no relay by Route).
        let routed = match self.next_route(&msg, &pops) {
            None => None,
            Some(route) => match route_addr(route) {
                Some(hop) => Some(Target {
                    ruri: None,
                    routes: vec![],
                    next_hop: hop,
                }),
                None => {
                    self.reply(&key, 404, "Route Not Resolvable", &[]);
                    return;
                }
            },
        };
        if method == Some(Method::Register) && routed.is_none() {
            register::handle(&self, &msg, &src, &key).await;
            return;
        }
        let host = uri.host_str.to_ascii_lowercase();
        let local = self.is_local_domain(&host) || self.is_us(&uri);
        if method == Some(Method::Options) && uri.user.is_none() && local && routed.is_none() {
            self.reply(
                &key,
                200,
                "OK",
                &[
                    ("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, INFO, UPDATE, PRACK, SUBSCRIBE, NOTIFY, REFER"),
                    ("Accept", "application/sdp"),
                    ("Supported", "path, outbound"),
                ],
            );
            return;
        }
        let from_domain = msg
            .from()
            .ok()
            .map(|f| f.uri.host_str.to_ascii_lowercase())
            .unwrap_or_default();
        let from_local = self.is_local_domain(&from_domain);
        let domain = if self.is_local_domain(&host) {
            host.clone()
        } else {
            self.cfg.domains.first().cloned().unwrap_or_default()
        };
        // A foreign domain is resolved only after authentication (no DNS
        // work for strangers).
        let decision = match routed {
            Some(t) => Decision::Relay(t),
            None if local => self.decide_local(&uri, &domain).await,
            None => Decision::Foreign,
        };
        if let Decision::Reply(503, reason) = decision {
            self.env.metrics.overload.increment(1);
            self.reply(&key, 503, reason, &[("Retry-After", "5")]);
            return;
        }
        // Our users always authenticate; anyone else only to reach the PSTN
        // or a foreign domain (no open relay).
        let needs_auth = from_local
            || matches!(
                decision,
                Decision::Pstn(_) | Decision::Foreign | Decision::Relay(_)
            );
        if needs_auth {
            let realm = if from_local {
                from_domain.as_str()
            } else {
                domain.as_str()
            };
            // A stranger reaching beyond us gets one challenge for an INVITE,
            // then 403 (no open relay).
            let strict = !from_local;
            let Some(user) = self.authenticate(&msg, &src, &key, realm, strict).await else {
                return;
            };
            // Our users speak as themselves: the From user must be the one
            // whose credentials we checked.
            let from_user = msg.from().ok().map(|f| f.uri.user_unescaped().into_owned());
            if from_local && from_user.as_deref() != Some(user.as_str()) {
                self.env.metrics.auth_forbidden.increment(1);
                self.reply(&key, 403, "From Does Not Match Credentials", &[]);
                return;
            }
        }
        let decision = match decision {
            Decision::Foreign => match uri_addr(&uri) {
                Some(hop) => Decision::Relay(Target {
                    ruri: None,
                    routes: vec![],
                    next_hop: hop,
                }),
                None => match self.resolve(&uri).await {
                    Some(hop) => Decision::Relay(Target {
                        ruri: None,
                        routes: vec![],
                        next_hop: hop,
                    }),
                    None => Decision::Reply(404, "Domain Not Resolvable"),
                },
            },
            d => d,
        };
        let record_route = matches!(
            method,
            Some(Method::Invite | Method::Subscribe | Method::Refer)
        );
        let call = (method == Some(Method::Invite)).then(|| CallInfo {
            from: msg
                .from()
                .map(|f| f.uri.as_str().to_owned())
                .unwrap_or_default(),
            to: ruri.to_owned(),
            route: match &decision {
                Decision::Pstn(_) => "sip2pstn",
                Decision::Relay(_) | Decision::Foreign => "relay",
                _ => "sip2sip",
            },
            start: SystemTime::now(),
            answer: None,
        });
        match decision {
            Decision::Reply(status, reason) => self.reply(&key, status, reason, &[]),
            Decision::Local(targets) => self.proxy_to(&key, pops, record_route, targets, call),
            Decision::Relay(t) => self.proxy_to(&key, pops, record_route, vec![t], call),
            Decision::Foreign => self.reply(&key, 404, "Domain Not Resolvable", &[]),
            Decision::Pstn(mut gws) => {
                let first = gws.remove(0);
                {
                    let mut st = self.lock();
                    if let Some(ctx) = st.ctxs.get_mut(&key) {
                        ctx.serial = gws.into();
                    }
                }
                self.proxy_to(&key, pops, record_route, vec![first], call);
            }
        }
    }

    /// §16.5 for a local domain: registered contacts (ours, replicas, or
    /// a peer's), 480, sip2pstn or 404.
    async fn decide_local(&self, uri: &Uri<'_>, domain: &str) -> Decision {
        let user = uri.user_unescaped();
        if user.is_empty() {
            return Decision::Reply(404, "Not Found");
        }
        let aor = format!("{user}@{domain}");
        let now = Instant::now();
        let local = self.registrar.location().lookup(&aor, now);
        let bindings = self.churn.routable(&aor, local, now);
        if !bindings.is_empty() {
            return contacts_decision(bindings);
        }
        match self.store.lookup(&user, domain).await {
            Ok(Some(_)) => {
                // A subscriber without a binding here: their home proxy may
                // have left the live set. Only known users cost a peer lookup.
                let found = self.churn.ask_peers(&aor).await;
                if !found.is_empty() {
                    return contacts_decision(found);
                }
                return Decision::Reply(480, "Temporarily Unavailable");
            }
            Ok(None) => {}
            Err(e) if e.is_unavailable() => {
                tracing::warn!(error = %e, "subscriber store unavailable");
                return Decision::Reply(503, "Subscriber Store Unavailable");
            }
            Err(e) => {
                tracing::warn!(error = %e, "subscriber lookup failed");
                return Decision::Reply(500, "Subscriber Lookup Failed");
            }
        }
        let digits = self.cfg.pstn.as_ref().and_then(|p| p.matches(&user));
        let Some(digits) = digits else {
            return Decision::Reply(404, "Not Found");
        };
        let Some(group) = self.cfg.gateways.lookup(digits) else {
            return Decision::Reply(404, "No Route To Number");
        };
        let gws: Vec<Target> = group
            .gateways
            .iter()
            .map(|gw| Target {
                ruri: Some(format!("sip:{}@{gw}", uri.user.unwrap_or(digits))),
                routes: vec![],
                next_hop: *gw,
            })
            .collect();
        if gws.is_empty() {
            return Decision::Reply(502, "No Gateway");
        }
        Decision::Pstn(gws)
    }

    async fn resolve(&self, uri: &Uri<'_>) -> Option<SocketAddr> {
        let target = format!("{}:{}", uri.host_str, uri.port.unwrap_or(5060));
        let lookup = tokio::net::lookup_host(target);
        match tokio::time::timeout(std::time::Duration::from_secs(2), lookup).await {
            Ok(Ok(mut addrs)) => addrs.next(),
            _ => None,
        }
    }

    /// Next hop of an in-dialog request (§16.4, §16.12): the next Route; or,
    /// for a dialog we created (the LB strips our Record-Route), the callee's
    /// Path when the caller sends and the caller's LB Record-Routes when the
    /// callee does; else the Request-URI.
    async fn in_dialog_target(&self, msg: &Message, pops: &[(usize, usize)]) -> Option<Target> {
        if let Some(route) = self.next_route(msg, pops) {
            return Some(Target {
                ruri: None,
                routes: vec![],
                next_hop: route_addr(route)?,
            });
        }
        let call_id = msg.call_id().ok()?;
        let dialog = self.lock().dialogs.get(call_id).cloned();
        if let Some(d) = dialog {
            let from_caller = msg.from().ok().and_then(|f| f.tag()) == Some(d.caller_tag.as_str());
            if from_caller {
                return Some(Target {
                    ruri: None,
                    routes: d.callee_routes,
                    next_hop: d.callee_hop,
                });
            }
            if let Some(hop) = d.caller_routes.first().and_then(|r| route_addr(r)) {
                return Some(Target {
                    ruri: None,
                    routes: d.caller_routes,
                    next_hop: hop,
                });
            }
        }
        let uri = Uri::parse(msg.request_uri()?).ok()?;
        match uri_addr(&uri) {
            Some(a) => Some(Target {
                ruri: None,
                routes: vec![],
                next_hop: a,
            }),
            None => self.resolve(&uri).await.map(|a| Target {
                ruri: None,
                routes: vec![],
                next_hop: a,
            }),
        }
    }

    /// Forwards an ACK for a 2xx statelessly (§16.11).
    pub(super) async fn forward_ack(&self, msg: Message) {
        let pops = self.our_routes(&msg);
        let Some(t) = self.in_dialog_target(&msg, &pops).await else {
            return;
        };
        let via = format!(
            "SIP/2.0/UDP {};branch={}",
            self.env.advertise,
            stateless_branch(&msg)
        );
        let b = build::forward(
            &msg,
            &build::ForwardSpec {
                ruri: t.ruri.as_deref(),
                pop_routes: &pops,
                push_routes: &t.routes,
                record_route: None,
                via: &via,
            },
        );
        self.net.send(Dest::Udp(t.next_hop), b);
    }

    /// Forks `key`'s request to `targets` (first gateway only for sip2pstn).
    fn proxy_to(
        &self,
        key: &ServerKey,
        pops: Vec<(usize, usize)>,
        record_route: bool,
        targets: Vec<Target>,
        call: Option<CallInfo>,
    ) {
        let mut out = Vec::new();
        {
            let mut st = self.lock();
            let Some(ctx) = st.ctxs.get_mut(key) else {
                return;
            };
            if ctx.final_sent() {
                return; // CANCELled while we were deciding.
            }
            ctx.pops = pops;
            ctx.record_route = record_route;
            ctx.call = call;
            let mut started = 0;
            for t in targets {
                if st.start_branch(&self.env, key, t, &mut out) {
                    started += 1;
                }
            }
            if started == 0 {
                st.respond(&self.env, key, 500, "Could Not Forward", &[], &mut out);
            }
        }
        self.wake.notify_one();
        self.flush(out);
    }
}

/// Targets for a user's bindings, each through its stored Path (RFC 3327):
/// the first Path entry is the next hop; without a Path, the contact itself.
fn contacts_decision(bindings: Vec<crate::registrar::Binding>) -> Decision {
    let mut targets = Vec::new();
    for b in bindings {
        let routes: Vec<String> = b.path.iter().map(|p| format!("<{p}>")).collect();
        let hop = match routes.first() {
            Some(r) => route_addr(r),
            None => Uri::parse(&b.contact).ok().as_ref().and_then(uri_addr),
        };
        if let Some(next_hop) = hop {
            targets.push(Target {
                ruri: Some(b.contact),
                routes,
                next_hop,
            });
        }
    }
    if targets.is_empty() {
        return Decision::Reply(480, "Temporarily Unavailable");
    }
    Decision::Local(targets)
}
