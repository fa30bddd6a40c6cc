//! Step 3 of the request pipeline: Route sanitising. Route headers from
//! outside are not trusted. Our own Record-Route entries at the top carry an
//! HMAC over what they assert (host, flow token, chosen proxy); we pop them
//! and keep what they assert. Entries signed by a sibling LB (same key, other
//! host) are kept; every other entry is removed and counted, so an outsider
//! can never steer a request to an internal element
//! (`Route: <sip:b2bua-14;lr>`).
//!
//! ```text
//! RFC 3261 §16.4: If the first value in the Route header field indicates
//!   this proxy, the proxy MUST remove that value from the request.
//! ```

use smallvec::SmallVec;

use sipedge_shared::flow_token::{verify_params, FlowKey};
use sipedge_shared::sip::{HeaderName, Message, NameAddr};

use super::span_str;

/// URI parameter names of our Record-Route.
pub const P_FLOW: &str = "ftok";
/// The proxy the dialog was sent to.
pub const P_PROXY: &str = "px";
/// HMAC over host, flow token and proxy.
pub const P_SIG: &str = "sig";

/// A Route header (by index) and the values it keeps.
pub type Rewrite<'m> = (usize, SmallVec<[&'m str; 4]>);

/// What sanitising decided.
#[derive(Debug, Default)]
pub struct RouteDecision<'m> {
    /// Per Route header index: the values to keep (None: untouched).
    pub rewrites: SmallVec<[Rewrite<'m>; 2]>,
    /// Untrusted entries removed.
    pub stripped: usize,
    /// The proxy id our popped Record-Route pinned the dialog to.
    pub pinned_proxy: Option<&'m str>,
    /// The first Route value left after sanitising ("" if none).
    pub top_route: &'m str,
}

/// Whom a signed route entry belongs to.
#[derive(Debug, PartialEq, Eq)]
enum Owner<'m> {
    /// Signed, and its host is this LB: pop it.
    Us { proxy: &'m str },
    /// Signed by the shared key for another LB: keep it.
    Sibling,
    /// Not signed by us: strip it.
    Stranger,
}

fn owner<'m>(value: &'m str, our_hosts: &[&str], keys: &[FlowKey]) -> Owner<'m> {
    let Ok(na) = NameAddr::parse(value) else {
        return Owner::Stranger;
    };
    let uri = na.uri;
    let (Some(Some(ftok)), Some(Some(px)), Some(Some(sig))) =
        (uri.param(P_FLOW), uri.param(P_PROXY), uri.param(P_SIG))
    else {
        return Owner::Stranger;
    };
    let host = host_port(value).unwrap_or(uri.host_str);
    if verify_params(
        keys,
        &[host.as_bytes(), ftok.as_bytes(), px.as_bytes()],
        sig,
    )
    .is_err()
    {
        return Owner::Stranger;
    }
    if our_hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        Owner::Us { proxy: px }
    } else {
        Owner::Sibling
    }
}

/// True when `value` is a Record-Route entry this LB signed for itself.
pub fn is_ours(value: &str, our_hosts: &[&str], keys: &[FlowKey]) -> bool {
    matches!(owner(value, our_hosts, keys), Owner::Us { .. })
}

/// The `host[:port]` of a `<sip:host:port;params>` value, as written.
pub fn host_port(value: &str) -> Option<&str> {
    let start = value.find("sip:")? + 4;
    let rest = value.get(start..)?;
    let rest = rest.rsplit_once('@').map_or(rest, |(_, h)| h);
    let end = rest.find([';', '>', '?']).unwrap_or(rest.len());
    rest.get(..end)
}

/// Sanitises the Route set of a request from outside. `our_hosts` are the
/// `host[:port]` strings our Record-Routes carry (inner and outer face).
pub fn sanitise<'m>(msg: &'m Message, our_hosts: &[&str], keys: &[FlowKey]) -> RouteDecision<'m> {
    let mut d = RouteDecision::default();
    let mut at_top = true;
    for (idx, h) in msg.header_entries().iter().enumerate() {
        if h.name != HeaderName::Route {
            continue;
        }
        let mut keep: SmallVec<[&'m str; 4]> = SmallVec::new();
        let mut changed = false;
        for span in msg.value_spans(idx) {
            let v = span_str(msg, span);
            match owner(v, our_hosts, keys) {
                Owner::Us { proxy } if at_top => {
                    d.pinned_proxy = Some(proxy);
                    changed = true;
                }
                Owner::Us { .. } | Owner::Sibling => {
                    at_top = false;
                    if d.top_route.is_empty() {
                        d.top_route = v;
                    }
                    keep.push(v);
                }
                Owner::Stranger => {
                    d.stripped += 1;
                    changed = true;
                }
            }
        }
        if changed {
            d.rewrites.push((idx, keep));
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sipedge_shared::flow_token::sign_params;
    use sipedge_shared::sip::Limits;

    fn key() -> FlowKey {
        FlowKey::from_secret(b"0123456789abcdef0123").expect("16+ bytes")
    }

    fn rr(host: &str, px: &str) -> String {
        let sig = sign_params(&key(), &[host.as_bytes(), b"TOK", px.as_bytes()]);
        format!("<sip:{host};lr;ftok=TOK;px={px};sig={sig}>")
    }

    fn req(routes: &str) -> Message {
        let text = format!(
            "BYE sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n{routes}From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>;tag=2\r\nCall-ID: c\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse_datagram(Bytes::from(text), &Limits::default()).expect("valid")
    }

    const US: [&str; 2] = ["10.0.1.1:5060", "203.0.113.10"];

    #[test]
    fn strangers_are_stripped() {
        let m = req("Route: <sip:b2bua-14;lr>\r\nRoute: <sip:10.9.9.9;lr>, <sip:x;lr>\r\n");
        let d = sanitise(&m, &US, &[key()]);
        assert_eq!(d.stripped, 3);
        assert_eq!(d.pinned_proxy, None);
        assert_eq!(d.top_route, "");
        assert!(d.rewrites.iter().all(|(_, keep)| keep.is_empty()));
    }

    #[test]
    fn our_signed_routes_are_popped_and_pin_the_proxy() {
        let routes = format!(
            "Route: {}, {}\r\nRoute: <sip:evil;lr>\r\nRoute: {}\r\n",
            rr("203.0.113.10", "p2"),
            rr("10.0.1.1:5060", "p2"),
            rr("10.0.2.1:5060", "p3"),
        );
        let m = req(&routes);
        let d = sanitise(&m, &US, &[key()]);
        assert_eq!(d.pinned_proxy, Some("p2"));
        assert_eq!(d.stripped, 1);
        assert!(d.top_route.contains("10.0.2.1:5060"), "sibling kept");
    }

    #[test]
    fn forged_signature_is_a_stranger() {
        let forged = rr("10.0.1.1:5060", "p2").replace("px=p2", "px=p9");
        let m = req(&format!("Route: {forged}\r\n"));
        let d = sanitise(&m, &US, &[key()]);
        assert_eq!((d.stripped, d.pinned_proxy), (1, None));
    }

    #[test]
    fn host_port_of_values() {
        assert_eq!(host_port("<sip:10.0.1.1:5060;lr>"), Some("10.0.1.1:5060"));
        assert_eq!(host_port("<sip:tok@[::1]:5060;lr;ob>"), Some("[::1]:5060"));
        assert_eq!(host_port("sip:h"), Some("h"));
        assert_eq!(host_port("<tel:+1>"), None);
    }
}
