//! Building the messages a stateful proxy sends, sans-IO: the forwarded copy
//! of a request (one per branch), and the CANCEL and the non-2xx ACK of a branch.
//!
//! ```text
//! RFC 3261 §16.6: copy the request; update the Request-URI; decrement
//! Max-Forwards; optionally add a Record-Route; [...] postprocess routing
//! information (Route); add a Via header field value whose branch is unique.
//! RFC 3261 §9.1: The Request-URI, Call-ID, To, the numeric part of CSeq,
//! and From header fields in the CANCEL request MUST be identical to those
//! in the request being cancelled, including tags. A CANCEL [...] MUST have a
//! single Via header field value matching the top Via value in the request
//! being cancelled. [...] If the request being cancelled contains a Route
//! header field, the CANCEL request MUST include that Route header field's values.
//! RFC 3261 §17.1.1.3: The ACK request constructed by the client transaction
//! MUST contain values for the Call-ID, From, and Request-URI that are equal
//! to the values of those header fields in the request passed to the
//! transport by the client transaction [...] The To header field in the ACK
//! MUST equal the To header field in the response being acknowledged.
//! ```

use std::fmt::Write as _;

use bytes::Bytes;
use sipedge_shared::sip::{Editor, HeaderName, Message};

/// How to make the forwarded copy of a request.
#[derive(Debug, Clone, Default)]
pub struct ForwardSpec<'a> {
    /// New Request-URI (`None`: unchanged).
    pub ruri: Option<&'a str>,
    /// Route values that name us, as (header index, value index): removed.
    pub pop_routes: &'a [(usize, usize)],
    /// Route values put on top, in order (a stored Path).
    pub push_routes: &'a [String],
    /// Our Record-Route value, when we stay in the dialog.
    pub record_route: Option<&'a str>,
    /// Our Via value (with its branch).
    pub via: &'a str,
}

/// The forwarded copy. The caller has checked that Max-Forwards is not 0.
pub fn forward(msg: &Message, spec: &ForwardSpec<'_>) -> Bytes {
    let mut e = Editor::new(msg);
    if let Some(ruri) = spec.ruri {
        e.set_request_uri(ruri);
    }
    match (msg.find(HeaderName::MaxForwards), msg.max_forwards()) {
        (Some(idx), Ok(Some(mf))) => {
            let v = mf.decrement().map_or(0, |m| m.get());
            e.replace_value(idx, &v.to_string());
        }
        _ => e.insert_top(HeaderName::MaxForwards, "70"),
    }
    remove_values(msg, &mut e, spec.pop_routes);
    if !spec.push_routes.is_empty() {
        e.insert_top(HeaderName::Route, &spec.push_routes.join(", "));
    }
    if let Some(rr) = spec.record_route {
        e.insert_top(HeaderName::RecordRoute, rr);
    }
    e.insert_top(HeaderName::Via, spec.via);
    e.finish()
}

/// Removes the given (header, value) positions; a header losing several
/// values is rewritten whole.
fn remove_values(msg: &Message, e: &mut Editor<'_>, positions: &[(usize, usize)]) {
    let mut headers: Vec<usize> = positions.iter().map(|(h, _)| *h).collect();
    headers.dedup();
    for idx in headers {
        let gone: Vec<usize> = positions
            .iter()
            .filter(|(h, _)| *h == idx)
            .map(|(_, v)| *v)
            .collect();
        let all: Vec<&str> = msg
            .value_spans(idx)
            .map(|s| std::str::from_utf8(&msg.as_bytes()[s.range()]).unwrap_or(""))
            .collect();
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
    }
}

fn line(out: &mut String, name: &str, value: &str) {
    let _ = write!(out, "{name}: {value}\r\n");
}

/// Start line, top Via, Route set, From, Call-ID, Max-Forwards of `req`
/// under `method`, with `to` and `CSeq: <n> <method>`.
fn hop_request(req: &Message, method: &str, to: &str) -> Option<Bytes> {
    let ruri = req.request_uri()?;
    let cseq = req.cseq().ok()?;
    let via = req.values(HeaderName::Via).next()?;
    let mut out = String::with_capacity(512);
    let _ = write!(out, "{method} {ruri} SIP/2.0\r\n");
    line(&mut out, "Via", via);
    line(&mut out, "Max-Forwards", "70");
    for (name, _, value) in req.headers() {
        if name == HeaderName::Route {
            line(&mut out, "Route", value);
        }
    }
    line(&mut out, "From", &req.header(HeaderName::From)?);
    line(&mut out, "To", to);
    line(&mut out, "Call-ID", req.call_id().ok()?);
    let _ = write!(out, "CSeq: {} {method}\r\n", cseq.seq);
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(Bytes::from(out))
}

/// The CANCEL for a forwarded INVITE (§9.1); `None` if it is unparsable.
pub fn cancel(invite: &Message) -> Option<Bytes> {
    let to = invite.header(HeaderName::To)?;
    hop_request(invite, "CANCEL", &to)
}

/// The ACK for a non-2xx final `response` to the forwarded `invite` (§17.1.1.3).
pub fn ack(invite: &Message, response: &Message) -> Option<Bytes> {
    let to = response.header(HeaderName::To)?;
    hop_request(invite, "ACK", &to)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sipedge_shared::sip::Limits;

    fn parse(s: &str) -> Message {
        Message::parse_datagram(Bytes::from(s.to_owned()), &Limits::default()).expect("parses")
    }

    const INVITE: &str = "INVITE sip:bob@sipedge.local SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.1:5080;branch=z9hG4bKlb\r\n\
        Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKua;received=192.0.2.9;rport=4000\r\n\
        Route: <sip:127.0.0.1:5071;lr>, <sip:other;lr>\r\n\
        Record-Route: <sip:10.0.0.1:5080;lr>\r\n\
        Max-Forwards: 69\r\nFrom: <sip:alice@sipedge.local>;tag=a\r\nTo: <sip:bob@sipedge.local>\r\n\
        Call-ID: c1\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n";

    #[test]
    fn forward_edits() {
        let m = parse(INVITE);
        let route_idx = m.find(HeaderName::Route).expect("route");
        let path = vec!["<sip:TOK@10.0.0.1:5080;lr;ob>".to_string()];
        let out = forward(
            &m,
            &ForwardSpec {
                ruri: Some("sip:bob@192.0.2.7:5062"),
                pop_routes: &[(route_idx, 0)],
                push_routes: &path,
                record_route: Some("<sip:127.0.0.1:5071;lr>"),
                via: "SIP/2.0/UDP 127.0.0.1:5071;branch=z9hG4bKp1",
            },
        );
        let f = parse(std::str::from_utf8(&out).expect("utf8"));
        assert_eq!(f.request_uri(), Some("sip:bob@192.0.2.7:5062"));
        assert_eq!(f.max_forwards().ok().flatten().map(|m| m.get()), Some(68));
        let routes: Vec<String> = f
            .routes()
            .map(|r| r.map(|n| n.uri.as_str().to_owned()).unwrap_or_default())
            .collect();
        assert_eq!(routes, ["sip:TOK@10.0.0.1:5080;lr;ob", "sip:other;lr"]);
        let rr: Vec<String> = f
            .record_routes()
            .map(|r| r.map(|n| n.uri.as_str().to_owned()).unwrap_or_default())
            .collect();
        assert_eq!(rr, ["sip:127.0.0.1:5071;lr", "sip:10.0.0.1:5080;lr"]);
        assert_eq!(f.top_via().expect("via").host_str, "127.0.0.1");
        assert_eq!(f.vias().count(), 3);
    }

    #[test]
    fn cancel_and_ack() {
        let m = parse(INVITE);
        let resp = parse(
            "SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 10.0.0.1:5080;branch=z9hG4bKlb\r\n\
             From: <sip:alice@sipedge.local>;tag=a\r\nTo: <sip:bob@sipedge.local>;tag=b\r\n\
             Call-ID: c1\r\nCSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n",
        );
        let c = parse(std::str::from_utf8(&cancel(&m).expect("cancel")).expect("utf8"));
        let a = parse(std::str::from_utf8(&ack(&m, &resp).expect("ack")).expect("utf8"));
        for (msg, method, tag) in [(&c, "CANCEL", None), (&a, "ACK", Some("b"))] {
            assert_eq!(msg.method_str(), method);
            assert_eq!(msg.request_uri(), Some("sip:bob@sipedge.local"));
            assert_eq!(msg.vias().count(), 1);
            assert_eq!(
                msg.top_via().expect("via").branch.map(|b| b.as_str()),
                Some("z9hG4bKlb")
            );
            assert_eq!(msg.cseq().expect("cseq").seq, 7);
            assert_eq!(msg.to().expect("to").tag(), tag);
            assert_eq!(msg.routes().count(), 2);
        }
    }
}
