//! Build a response to a received request, as a UAS or a stateless proxy does.
//!
//! ```text
//! RFC 3261 §8.2.6.2 The From field of the response MUST equal the From header
//!                 field of the request. The Call-ID ... MUST equal. The CSeq ...
//!                 MUST equal. The Via header field values in the response MUST
//!                 equal the Via header field values in the request and MUST
//!                 maintain the same ordering. If a request contained a To tag in
//!                 the request, the To header field in the response MUST equal
//!                 that of the request. However, if the To header field in the
//!                 request did not contain a tag, the URI in the To header field in
//!                 the response MUST equal the URI in the To header field;
//!                 additionally, the UAS MUST add a tag to the To header field
//! ```

use bytes::Bytes;

use super::header_name::HeaderName;
use super::message::Message;
use super::name_addr::NameAddr;

/// Build `SIP/2.0 <status> <reason>` for `req`: Via (all, in order), From, To
/// (with `;tag=to_tag` added when given and the request's To has none), Call-ID,
/// CSeq, then `extra` headers (name, value) and `Content-Length: 0`.
pub fn build_response(
    req: &Message,
    status: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[(&str, &str)],
) -> Bytes {
    let mut out = Vec::with_capacity(256 + req.len() / 2);
    write_response(req, status, reason, to_tag, extra, &mut out);
    Bytes::from(out)
}

/// Like [`build_response`], appending into a caller's buffer.
pub fn write_response(
    req: &Message,
    status: u16,
    reason: &str,
    to_tag: Option<&str>,
    extra: &[(&str, &str)],
    out: &mut Vec<u8>,
) {
    // Reason-Phrase must not hold CR/LF; drop them rather than corrupt framing.
    let reason: String = reason
        .chars()
        .filter(|c| *c != '\r' && *c != '\n')
        .collect();
    out.extend_from_slice(format!("SIP/2.0 {status} {reason}\r\n").as_bytes());
    let mut line = |name: &str, value: &str| {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    for (name, _, value) in req.headers() {
        match name {
            HeaderName::Via => line("Via", value),
            HeaderName::From => line("From", value),
            HeaderName::CallId => line("Call-ID", value),
            HeaderName::CSeq => line("CSeq", value),
            HeaderName::To => {
                let has_tag = NameAddr::parse(value).ok().and_then(|t| t.tag()).is_some();
                match to_tag {
                    Some(tag) if !has_tag => line("To", &format!("{value};tag={tag}")),
                    _ => line("To", value),
                }
            }
            _ => {}
        }
    }
    for (n, v) in extra {
        line(n, v);
    }
    line("Content-Length", "0");
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Limits;

    #[test]
    #[allow(clippy::type_complexity)]
    fn builds_response() {
        let req = b"INVITE sip:b@example.com SIP/2.0\r\nv: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP b;branch=z9hG4bK2\r\nt: <sip:b@example.com>\r\nf: <sip:a@example.com>;tag=9\r\ni: cid\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nl: 0\r\n\r\n";
        let m = Message::parse_datagram(Bytes::from_static(req), &Limits::default()).expect("req");
        let table: &[(u16, &str, Option<&str>, &[(&str, &str)], &[&str])] = &[
            (
                100,
                "Trying",
                None,
                &[],
                &["SIP/2.0 100 Trying\r\n", "To: <sip:b@example.com>\r\n"],
            ),
            (
                503,
                "Service Unavailable",
                Some("x1"),
                &[("Retry-After", "42")],
                &["Retry-After: 42\r\n", "To: <sip:b@example.com>;tag=x1\r\n"],
            ),
        ];
        for (status, reason, tag, extra, must) in table {
            let out = build_response(&m, *status, reason, *tag, extra);
            let s = std::str::from_utf8(&out).expect("utf8");
            for want in *must {
                assert!(s.contains(want), "{s}");
            }
            assert!(
                s.contains("Via: SIP/2.0/UDP a;branch=z9hG4bK1\r\nVia: SIP/2.0/UDP b"),
                "{s}"
            );
            let r = Message::parse_datagram(out.clone(), &Limits::default()).expect("parses");
            assert_eq!(r.status(), Some(*status));
            assert!(crate::sip::validate::check_response(&r).is_ok());
            assert_eq!(r.content_length(), Ok(Some(0)));
        }
    }
}
