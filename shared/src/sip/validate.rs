//! Request and response checks a server applies before acting on a message;
//! each failure is a [`ParseError`], whose `status()` gives the answer (400, 416,
//! 420, 501, 505).
//!
//! ```text
//! RFC 3261 §8.1.1 A valid SIP request formulated by a UAC MUST, at a minimum,
//!                 contain the following header fields: To, From, CSeq, Call-ID,
//!                 Max-Forwards, and Via
//! RFC 3261 §8.2.2.1 / §16.3 step 1: Request-URI scheme not understood -> 416
//! RFC 3261 §16.3 step 6 / §16.3: Proxy-Require with unknown option-tags -> 420,
//!                 listing them in Unsupported
//! RFC 3261 §21.5.15 505 Version Not Supported
//! ```
//! A missing Max-Forwards is tolerated (RFC 2543 senders, RFC 4475 inv2543); the
//! proxy inserts one. Max-Forwards 0 (483) is the forwarding logic's decision.

use super::contact::Contact;
use super::cseq::CSeq;
use super::error::ParseError;
use super::header_name::HeaderName;
use super::message::Message;
use super::method::Method;
use super::name_addr::NameAddr;
use super::uri::Uri;
use super::via::Via;

/// What a passed [`check_request`] already parsed, handed back so that the
/// caller does not parse the same headers again (the LB routes on all of them).
#[derive(Debug, Clone, Copy)]
pub struct Checked<'m> {
    /// The Request-URI (scheme sip, sips or tel).
    pub request_uri: Uri<'m>,
    /// The topmost Via value.
    pub top_via: Via<'m>,
    /// From.
    pub from: NameAddr<'m>,
    /// To.
    pub to: NameAddr<'m>,
    /// Call-ID.
    pub call_id: &'m str,
    /// CSeq (its method matches the request's).
    pub cseq: CSeq<'m>,
}

/// The identifying headers [`check_common`] parsed.
struct Common<'m> {
    top_via: Via<'m>,
    from: NameAddr<'m>,
    to: NameAddr<'m>,
    call_id: &'m str,
    cseq: CSeq<'m>,
}

const SINGLE: &[(HeaderName, &str)] = &[
    (HeaderName::From, "From"),
    (HeaderName::To, "To"),
    (HeaderName::CallId, "Call-ID"),
    (HeaderName::CSeq, "CSeq"),
    (HeaderName::MaxForwards, "Max-Forwards"),
];

fn check_version(msg: &Message) -> Result<(), ParseError> {
    if msg.version().eq_ignore_ascii_case("SIP/2.0") {
        Ok(())
    } else {
        Err(ParseError::UnsupportedVersion)
    }
}

/// Headers both requests and responses must carry and that must parse.
fn check_common(msg: &Message) -> Result<Common<'_>, ParseError> {
    for (name, label) in SINGLE {
        if msg.count(*name) > 1 {
            return Err(ParseError::DuplicateHeader(label));
        }
    }
    let mut vias = msg.vias();
    let top_via = vias.next().ok_or(ParseError::MissingHeader("Via"))??;
    for v in vias {
        v?;
    }
    Ok(Common {
        top_via,
        from: msg.from()?,
        to: msg.to()?,
        call_id: msg.call_id()?,
        cseq: msg.cseq()?,
    })
}

/// Check a request: version, Request-URI, required and single-valued headers,
/// typed values, CSeq method, Proxy-Require. `Ok` means: forward or process
/// it, with the headers it routes on already parsed.
pub fn check_request(msg: &Message) -> Result<Checked<'_>, ParseError> {
    let Some(ruri) = msg.request_uri() else {
        return Err(ParseError::BadStartLine);
    };
    check_version(msg)?;
    let uri = Uri::parse(ruri)?;
    if !uri.is_supported_scheme() {
        return Err(ParseError::UnsupportedScheme);
    }
    let common = check_common(msg)?;
    if common.cseq.method_str != msg.method_str() {
        // RFC 4475 mismatch02: an unknown method with a mismatching CSeq is 501.
        return Err(if msg.method() == Some(Method::Other) {
            ParseError::NotImplemented
        } else {
            ParseError::CSeqMismatch
        });
    }
    msg.max_forwards()?;
    msg.content_length()?;
    if let Some(i) = msg.find(HeaderName::Expires) {
        let v = msg.header_raw(i).unwrap_or("").trim();
        if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit()) {
            return Err(ParseError::BadHeader("Expires"));
        }
        if super::cseq::parse_u32(v.as_bytes()).is_none() {
            return Err(ParseError::Overflow("Expires"));
        }
    }
    if let Contact::List(list) = msg.contacts()? {
        for c in list {
            let c = c?;
            c.expires()?;
            c.q()?;
        }
    }
    for r in msg.routes() {
        r?;
    }
    for r in msg.record_routes() {
        r?;
    }
    // We support no option tags a proxy would need (RFC 3261 §16.3 step 6).
    let tags: Vec<&str> = msg
        .values(HeaderName::ProxyRequire)
        .filter(|t| !t.is_empty())
        .collect();
    if !tags.is_empty() {
        return Err(ParseError::BadExtension(tags.join(", ")));
    }
    Ok(Checked {
        request_uri: uri,
        top_via: common.top_via,
        from: common.from,
        to: common.to,
        call_id: common.call_id,
        cseq: common.cseq,
    })
}

/// Check a response before relaying it: version and the headers that identify
/// its transaction (Via, From, To, Call-ID, CSeq).
pub fn check_response(msg: &Message) -> Result<(), ParseError> {
    if msg.status().is_none() {
        return Err(ParseError::BadStartLine);
    }
    check_version(msg)?;
    check_common(msg).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Limits;

    const BASE: &str = "Via: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: x@y\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n";

    fn check(start: &str, extra: &str) -> Result<(), ParseError> {
        let raw = format!("{start}\r\n{BASE}{extra}Content-Length: 0\r\n\r\n");
        let m = Message::parse_datagram(bytes::Bytes::from(raw), &Limits::default())?;
        if m.is_request() {
            check_request(&m).map(|_| ())
        } else {
            check_response(&m)
        }
    }

    #[test]
    fn request_table() {
        let table: &[(&str, &str, Result<(), u16>)] = &[
            ("OPTIONS sip:u@example.com SIP/2.0", "", Ok(())),
            ("OPTIONS sips:u@[2001:db8::1] SIP/2.0", "", Ok(())),
            ("OPTIONS tel:+4930 SIP/2.0", "", Ok(())),
            ("OPTIONS sip:u@example.com SIP/7.0", "", Err(505)),
            ("OPTIONS nobody:opaque SIP/2.0", "", Err(416)),
            ("OPTIONS <sip:u@example.com> SIP/2.0", "", Err(400)),
            ("INVITE sip:u@example.com SIP/2.0", "", Err(400)),
            ("NEWMETHOD sip:u@example.com SIP/2.0", "", Err(501)),
            (
                "OPTIONS sip:u@example.com SIP/2.0",
                "Proxy-Require: foo, bar\r\n",
                Err(420),
            ),
            (
                "OPTIONS sip:u@example.com SIP/2.0",
                "Call-ID: again\r\n",
                Err(400),
            ),
            (
                "OPTIONS sip:u@example.com SIP/2.0",
                "Max-Forwards: 1\r\n",
                Err(400),
            ),
            (
                "OPTIONS sip:u@example.com SIP/2.0",
                "Expires: 99999999999\r\n",
                Err(400),
            ),
            (
                "OPTIONS sip:u@example.com SIP/2.0",
                "Contact: <sip:a@b>;;\r\n",
                Err(400),
            ),
            (
                "OPTIONS sip:u@example.com SIP/2.0",
                "Via: SIP/2.0/UDP h;;,\r\n",
                Err(400),
            ),
            (
                "OPTIONS sip:u@example.com SIP/2.0",
                "Route: <sip:r;lr>\r\nContact: *\r\n",
                Ok(()),
            ),
            ("SIP/2.0 200 OK", "", Ok(())),
            ("SIP/3.0 200 OK", "", Err(505)),
        ];
        for (start, extra, want) in table {
            assert_eq!(
                check(start, extra).map_err(|e| e.status()),
                *want,
                "{start} {extra}"
            );
        }
        let e = check(
            "OPTIONS sip:u@example.com SIP/2.0",
            "Proxy-Require: foo, bar\r\n",
        )
        .err();
        assert_eq!(e.as_ref().and_then(|e| e.unsupported()), Some("foo, bar"));
    }
}
