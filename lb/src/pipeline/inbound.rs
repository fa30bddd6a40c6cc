//! Messages from the other side of a transaction: responses from proxies
//! (relay, or fail over on 408/503), requests from proxies toward users
//! (verify the flow token in our Path/Record-Route and send over that flow,
//! 430 when it is gone, 403 when the token is bad), and users' responses to
//! those requests (back along the Via chain).
//!
//! ```text
//! RFC 5626 §5.3: ... if the flow token is invalid ... the proxy SHOULD send
//!   a 403 (Forbidden) response. If the flow no longer exists the proxy SHOULD
//!   send a 430 (Flow Failed) response to the request.
//! RFC 3261 §16.7 step 3: ... a proxy MUST remove the topmost Via header field
//!   value from the response.
//! ```

use std::fmt::Write;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use bytes::Bytes;
use sipedge_shared::flow_token::{FlowToken, Transport};
use sipedge_shared::sip::{build_response, Editor, HeaderName, Message, Method, NameAddr};
use smallvec::SmallVec;

use super::forward;
use super::loop_guard::{self, MaxForwardsEdit};
use super::route::{self, host_port, P_FLOW};
use super::{branch_of, local_tag, span_str, Core, Dest, Out};
use crate::branch::Branch;
use crate::flow::{FlowId, FlowTransport};
use crate::txn::Phase;

/// Our branch on the top Via of a response, if it is ours.
fn our_branch(msg: &Message) -> Option<Branch> {
    let idx = msg.find(HeaderName::Via)?;
    if let Some(b) = msg.header_raw(idx).and_then(own_via_branch) {
        return Some(b);
    }
    let via = msg.top_via().ok()?;
    Branch::parse(via.branch?.as_str())
}

/// The branch of a Via value exactly as `forward::build` writes ours,
/// `SIP/2.0/UDP sent-by;branch=<ours>[;more][, next]`, without the general
/// Via parser; anything else is left to the parser (`None`).
fn own_via_branch(raw: &str) -> Option<Branch> {
    let rest = raw.strip_prefix("SIP/2.0/UDP ")?;
    let (sent_by, params) = rest.split_once(';')?;
    if sent_by.contains([',', ' ', '\t', '\r', '\n']) {
        return None;
    }
    let value = params.strip_prefix("branch=")?;
    let end = value
        .find([',', ';', ' ', '\t', '\r', '\n'])
        .unwrap_or(value.len());
    Branch::parse(value.get(..end)?)
}

/// The response without our top Via.
fn pop_via(msg: &Message) -> Option<Bytes> {
    let idx = msg.find(HeaderName::Via)?;
    let mut e = Editor::new(msg);
    e.remove_value(idx, 0);
    Some(e.finish())
}

/// A response from a proxy to a request we forwarded.
pub fn response_from_proxy(core: &mut Core, msg: Message, now: Instant) {
    let Some(branch) = our_branch(&msg) else {
        return; // Not ours (RFC 4475 unreason/noreason): discard silently.
    };
    let Some(status) = msg.status() else {
        return;
    };
    let key = branch.key();
    let is_cancel_response = msg.cseq().is_ok_and(|c| c.method == Method::Cancel);
    let Some(txn) = core.txns.get(&key) else {
        return; // The transaction is over; late retransmissions are dropped.
    };
    let (flow, is_invite, phase, current, proxy, started) = (
        txn.source,
        txn.is_invite,
        txn.phase,
        txn.branch.attempt,
        txn.proxy,
        txn.started,
    );
    if is_cancel_response {
        relay(core, &msg, flow);
        return;
    }
    if branch.attempt != current {
        // A late answer from a proxy we already gave up on: a 2xx to an
        // INVITE still establishes the call and is relayed; a non-2xx final
        // is acknowledged hop by hop and dropped.
        if is_invite && (200..300).contains(&status) {
            relay(core, &msg, flow);
        } else if is_invite && status >= 300 {
            send_ack(core, &msg, branch, proxy);
        }
        return;
    }
    let shared = std::sync::Arc::clone(&core.shared);
    let m = &shared.metrics;
    if status < 200 {
        let bytes = pop_via(&msg);
        core.txns.on_provisional(key, bytes.clone(), now);
        if let Some(bytes) = bytes {
            core.out.push(Out {
                dest: Dest::Flow(flow),
                bytes,
            });
        }
        return;
    }
    if (status == 408 || status == 503) && phase != Phase::Completed {
        if status == 408 {
            m.failover_408.increment(1);
        } else {
            m.failover_503.increment(1);
        }
        if is_invite {
            send_ack(core, &msg, branch, proxy);
        }
        core.failover(key, now);
        return;
    }
    if is_invite && status >= 300 {
        send_ack(core, &msg, branch, proxy);
    }
    if phase == Phase::Completed {
        // A final again: the proxy answering a retransmitted request we
        // relayed (the final is not kept here), or a 2xx retransmitted by
        // the callee. Relayed, and counted once, the first time.
        relay(core, &msg, flow);
        return;
    }
    if let Some(bytes) = pop_via(&msg) {
        m.txn_seconds
            .record(now.saturating_duration_since(started).as_secs_f64());
        let carrier = shared.carriers.lookup_index(flow.peer.ip());
        m.carrier(carrier).response(status);
        if core.sampler.take() {
            if let Some(req) = core.txns.get(&key).and_then(|t| t.request.as_ref()) {
                super::log::response(req, status, flow.peer, false);
            }
        }
        core.txns.on_final(key, status, None, now);
        core.out.push(Out {
            dest: Dest::Flow(flow),
            bytes,
        });
    }
}

/// Relays `msg` to the client's flow without our Via (dropped when it has none).
fn relay(core: &mut Core, msg: &Message, flow: FlowId) {
    if let Some(bytes) = pop_via(msg) {
        core.out.push(Out {
            dest: Dest::Flow(flow),
            bytes,
        });
    }
}

/// The hop-by-hop ACK for a non-2xx final answer to our INVITE
/// (RFC 3261 §17.1.1.3): same branch, To from the response.
fn send_ack(core: &mut Core, resp: &Message, branch: Branch, proxy: SocketAddr) {
    let (Ok(cseq), Ok(call_id), Some(from), Some(to)) = (
        resp.cseq(),
        resp.call_id(),
        resp.header(HeaderName::From),
        resp.header(HeaderName::To),
    ) else {
        return;
    };
    let ruri = core
        .txns
        .get(&branch.key())
        .and_then(|t| t.request.as_ref()?.request_uri().map(str::to_string))
        .unwrap_or_else(|| "sip:invalid".to_string());
    let mut s = String::with_capacity(320);
    let _ = write!(
        s,
        "ACK {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP {};branch={branch}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {} ACK\r\nContent-Length: 0\r\n\r\n",
        core.sent_by, cseq.seq
    );
    core.out.push(Out {
        dest: Dest::Internal(proxy),
        bytes: Bytes::from(s),
    });
}

/// Where the next Via (below ours) says a response goes.
fn next_hop(msg: &Message) -> Option<SocketAddr> {
    let via = msg.vias().nth(1)?.ok()?;
    let ip: IpAddr = match via.received {
        Some(r) => r
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?,
        None => via
            .host_str
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse()
            .ok()?,
    };
    let port = via.rport.flatten().or(via.port).unwrap_or(5060);
    Some(SocketAddr::new(ip, port))
}

/// A user's response to a request we sent toward them: back to the proxy.
pub fn response_from_user(core: &mut Core, msg: &Message) {
    if our_branch(msg).is_none() {
        return;
    }
    let (Some(dest), Some(bytes)) = (next_hop(msg), pop_via(msg)) else {
        return;
    };
    core.out.push(Out {
        dest: Dest::Internal(dest),
        bytes,
    });
}

/// A request from a proxy: it must carry our Path or Record-Route on top.
pub fn request_toward_user(core: &mut Core, msg: &Message, from: SocketAddr) {
    if let Err((status, reason)) = toward_user(core, msg, from) {
        if msg.method() == Some(Method::Ack) {
            return;
        }
        if status == 403 {
            core.shared.metrics.bad_tokens.increment(1);
        } else if status == 430 {
            core.shared.metrics.flow_failed.increment(1);
        }
        let tag = local_tag(msg);
        let bytes = build_response(msg, status, reason, Some(&tag), &[]);
        core.out.push(Out {
            dest: Dest::Internal(from),
            bytes,
        });
    }
}

fn toward_user(
    core: &mut Core,
    msg: &Message,
    from: SocketAddr,
) -> Result<(), (u16, &'static str)> {
    let internal = core.shared.settings.internal.to_string();
    let keys = core.shared.settings.flow_keys.clone();
    // Our entries at the top of the Route set: (header, value) positions.
    let mut ours: SmallVec<[(usize, usize); 2]> = SmallVec::new();
    let mut token: Option<String> = None;
    'headers: for (idx, h) in msg.header_entries().iter().enumerate() {
        if h.name != HeaderName::Route {
            continue;
        }
        for (vi, span) in msg.value_spans(idx).enumerate() {
            let v = span_str(msg, span);
            let Ok(na) = NameAddr::parse(v) else {
                break 'headers;
            };
            let hp = host_port(v).unwrap_or("");
            if let (Some(user), true) = (na.uri.user, hp == internal) {
                // Path: <sip:TOKEN@internal;lr;ob>
                token.get_or_insert_with(|| user.to_string());
                ours.push((idx, vi));
                continue;
            }
            let hosts = [internal.as_str(), core.shared.settings.advertise.as_str()];
            let signed_by_us = route::is_ours(v, &hosts, &keys);
            if signed_by_us {
                if let Some(Some(t)) = na.uri.param(P_FLOW) {
                    token.get_or_insert_with(|| t.to_string());
                }
                ours.push((idx, vi));
                continue;
            }
            break 'headers;
        }
        if ours.is_empty() {
            break;
        }
    }
    let token = token.ok_or((403, "Not Routable Through This Edge"))?;
    let ft = FlowToken::decode(&token, &keys).map_err(|_| (403, "Invalid Flow Token"))?;
    if ft.lb_id() != core.shared.settings.lb_id {
        return Err((403, "Flow Token Of Another Edge"));
    }
    let transport = match ft.transport() {
        Transport::Udp => FlowTransport::Udp,
        Transport::Tcp => FlowTransport::Tcp,
        Transport::Tls => FlowTransport::Tls,
        Transport::Ws | Transport::Wss => return Err((430, "Flow Failed")),
    };
    let flow = FlowId {
        transport,
        conn: ft.conn_id(),
        peer: ft.peer(),
        listener: u16::from(ft.local().unwrap_or(0)),
    };
    if transport != FlowTransport::Udp && !core.shared.flows.is_open(&flow) {
        return Err((430, "Flow Failed"));
    }
    let mf = loop_guard::max_forwards(msg).map_err(|_| (483, "Too Many Hops"))?;
    let top_route = "";
    let branch = branch_of(msg, top_route).map_err(|_| (400, "Bad Request"))?;
    let sent_by = core
        .shared
        .ext_sent_by
        .get(usize::from(flow.listener))
        .cloned()
        .unwrap_or_else(|| core.shared.settings.advertise.clone());
    let mut e = Editor::new(msg);
    let via = format!(
        "SIP/2.0/{} {sent_by};branch={branch}",
        transport.via_token()
    );
    e.insert_top(HeaderName::Via, &via);
    match mf {
        MaxForwardsEdit::Insert => {
            e.insert_top(HeaderName::MaxForwards, loop_guard::DEFAULT_MAX_FORWARDS)
        }
        MaxForwardsEdit::Replace(idx, v) => e.replace_value(idx, &v.to_string()),
    }
    remove_values(msg, &mut e, &ours);
    // On a dialog-creating request toward the user, Record-Route both faces
    // (outer on top: the user's first hop back is the VIP) so the callee's
    // in-dialog requests return through the edge to the same proxy instead
    // of to the proxy's internal address.
    if forward::creates_dialog(msg) {
        let snapshot = core.shared.proxies.snapshot();
        if let Some(proxy) = snapshot.proxies.iter().find(|p| p.addr == from) {
            let t = transport.uri_param();
            let s = &core.shared.settings;
            let outer = forward::record_route(core, &s.advertise, &token, &proxy.id, t);
            let inner =
                forward::record_route(core, &s.internal.to_string(), &token, &proxy.id, None);
            e.insert_top(HeaderName::RecordRoute, &outer);
            e.insert_top(HeaderName::RecordRoute, &inner);
        }
    }
    core.out.push(Out {
        dest: Dest::Flow(flow),
        bytes: e.finish(),
    });
    Ok(())
}

/// Removes the given (header, value) positions, rewriting a header whole
/// when it loses several of its values.
fn remove_values(msg: &Message, e: &mut Editor<'_>, positions: &[(usize, usize)]) {
    let mut i = 0;
    while i < positions.len() {
        let idx = positions[i].0;
        let gone: SmallVec<[usize; 4]> = positions
            .iter()
            .filter(|(h, _)| *h == idx)
            .map(|(_, v)| *v)
            .collect();
        let all: SmallVec<[&str; 4]> = msg.value_spans(idx).map(|s| span_str(msg, s)).collect();
        if gone.len() >= all.len() {
            e.remove_header(idx);
        } else if gone.len() == 1 {
            e.remove_value(idx, gone[0]);
        } else {
            let keep: Vec<&str> = all
                .iter()
                .enumerate()
                .filter(|(vi, _)| !gone.contains(vi))
                .map(|(_, v)| *v)
                .collect();
            e.replace_value(idx, &keep.join(", "));
        }
        i += gone.len();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::branch::BranchInput;

    #[test]
    fn own_via_fast_path_agrees_with_our_format_and_declines_the_rest() {
        let b = Branch::compute(&BranchInput::default(), 3);
        let cases = [
            (format!("SIP/2.0/UDP 10.0.0.1:5080;branch={b}"), Some(b)),
            (
                format!("SIP/2.0/UDP 10.0.0.1:5080;branch={b};received=10.0.0.9"),
                Some(b),
            ),
            (
                format!("SIP/2.0/UDP [::1]:5080;branch={b}, SIP/2.0/UDP x;branch=z9hG4bK1"),
                Some(b),
            ),
            (format!("SIP/2.0/UDP a, SIP/2.0/UDP b;branch={b}"), None),
            (format!("SIP/2.0/TCP 10.0.0.1;branch={b}"), None),
            (format!("SIP/2.0/UDP 10.0.0.1;rport;branch={b}"), None),
            (format!("SIP/2.0/UDP 10.0.0.1 ;branch={b}"), None),
            ("SIP/2.0/UDP 10.0.0.1;branch=z9hG4bKother".to_string(), None),
            ("SIP/2.0/UDP 10.0.0.1".to_string(), None),
        ];
        for (raw, want) in cases {
            assert_eq!(own_via_branch(&raw), want, "{raw}");
        }
    }
}
