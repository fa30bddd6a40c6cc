//! Glue between SIP requests and the [`Authenticator`](crate::auth::Authenticator):
//! who the client really is behind the LB, which credentials to check, and
//! the response for each outcome.
//!
//! ```text
//! RFC 3261 §22.3: a proxy challenges with 407 and Proxy-Authenticate; a
//! registrar with 401 and WWW-Authenticate. RFC 3581 §4: the received and
//! rport parameters of a Via give the address the request came from.
//! ```

use std::net::{IpAddr, SocketAddr};

use sipedge_shared::sip::{HeaderName, Message, Method};

use crate::auth::digest::parse_credentials;

/// The client's address: behind the LB (two or more Vias), the
/// `received`/`rport` the LB wrote on the second Via; otherwise the packet's
/// source.
pub fn client_addr(msg: &Message, source: SocketAddr) -> SocketAddr {
    let mut vias = msg.vias();
    let _top = vias.next();
    let Some(Ok(v)) = vias.next() else {
        return source;
    };
    let ip: Option<IpAddr> = v
        .received
        .and_then(|r| r.trim_matches(['[', ']']).parse().ok())
        .or_else(|| v.host_str.trim_matches(['[', ']']).parse().ok());
    let port = match v.rport {
        Some(Some(p)) => p,
        _ => v.port.unwrap_or(5060),
    };
    ip.map_or(source, |ip| SocketAddr::new(ip, port))
}

/// The credentials header value for `realm`: `Authorization` on REGISTER,
/// `Proxy-Authorization` otherwise; the one naming our realm, else the first.
pub fn credentials_for<'m>(msg: &'m Message, realm: &str) -> Option<std::borrow::Cow<'m, str>> {
    let name = if msg.method() == Some(Method::Register) {
        HeaderName::Authorization
    } else {
        HeaderName::ProxyAuthorization
    };
    let mut first = None;
    for (idx, h) in msg.header_entries().iter().enumerate() {
        if h.name != name {
            continue;
        }
        let v = msg.header_unfolded(idx);
        let ours = parse_credentials(&v).is_ok_and(|c| c.realm.eq_ignore_ascii_case(realm));
        if ours {
            return Some(v);
        }
        first.get_or_insert(v);
    }
    first
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sipedge_shared::sip::Limits;

    fn parse(s: String) -> Message {
        Message::parse_datagram(Bytes::from(s), &Limits::default()).expect("parses")
    }

    #[test]
    fn client_behind_lb() {
        let src: SocketAddr = "10.0.0.1:5080".parse().expect("literal");
        let table: &[(&str, &str)] = &[
            // LB on top, client Via with received and rport.
            (
                "Via: SIP/2.0/UDP 10.0.0.1:5080;branch=z9hG4bKa\r\nVia: SIP/2.0/UDP 192.168.1.2:5060;rport=4000;received=198.51.100.7;branch=z9hG4bKb\r\n",
                "198.51.100.7:4000",
            ),
            // No received: the sent-by.
            (
                "Via: SIP/2.0/UDP 10.0.0.1:5080;branch=z9hG4bKa\r\nVia: SIP/2.0/TCP 192.0.2.5:5070;branch=z9hG4bKb\r\n",
                "192.0.2.5:5070",
            ),
            // Direct: the packet source.
            ("Via: SIP/2.0/UDP 192.0.2.5:5070;branch=z9hG4bKb\r\n", "10.0.0.1:5080"),
        ];
        for (vias, want) in table {
            let m = parse(format!(
                "OPTIONS sip:x SIP/2.0\r\n{vias}From: <sip:a@b>;tag=1\r\nTo: <sip:x>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
            ));
            assert_eq!(client_addr(&m, src).to_string(), *want);
        }
    }

    #[test]
    fn picks_our_realm() {
        let m = parse(
            "REGISTER sip:sipedge.local SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.5;branch=z9hG4bKb\r\n\
             Authorization: Digest username=\"a\", realm=\"other\", nonce=\"n\", uri=\"sip:x\", response=\"00\"\r\n\
             Authorization: Digest username=\"a\", realm=\"sipedge.local\", nonce=\"n\", uri=\"sip:x\", response=\"11\"\r\n\
             From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
                .into(),
        );
        let v = credentials_for(&m, "sipedge.local").expect("found");
        assert!(v.contains("\"11\""), "{v}");
        assert!(credentials_for(&m, "nope")
            .expect("first")
            .contains("\"00\""));
    }
}
