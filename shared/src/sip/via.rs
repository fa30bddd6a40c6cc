//! `Via`: one via-parm (sent-protocol, sent-by and parameters) and the `Branch`
//! newtype that knows the RFC 3261 magic cookie.
//!
//! ```text
//! RFC 3261 §25.1  via-parm      = sent-protocol LWS sent-by *( SEMI via-params )
//!                 sent-protocol = protocol-name SLASH protocol-version SLASH transport
//!                 sent-by       = host [ COLON port ]
//!                 via-params    = via-ttl / via-maddr / via-received / via-branch
//!                                 / via-extension
//! RFC 3261 §8.1.1.7 The branch ID inserted by an element compliant with this
//!                 specification MUST always begin with the characters "z9hG4bK".
//! RFC 3581 §3     response-port = "rport" [EQUAL 1*DIGIT]
//! ```

use super::error::ParseError;
use super::method::is_token_byte;
use super::scan::{self, Params};
use super::uri::Host;

/// The RFC 3261 branch magic cookie.
pub const MAGIC_COOKIE: &str = "z9hG4bK";

/// A Via `branch` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Branch<'a>(&'a str);

impl<'a> Branch<'a> {
    /// Wrap a branch value (non-empty token).
    pub fn new(s: &'a str) -> Option<Branch<'a>> {
        (!s.is_empty() && s.bytes().all(is_token_byte)).then_some(Branch(s))
    }
    /// The value as received.
    pub fn as_str(&self) -> &'a str {
        self.0
    }
    /// Starts with the magic cookie (and has something after it, so that it can
    /// actually identify a transaction).
    pub fn is_rfc3261(&self) -> bool {
        self.0.len() > MAGIC_COOKIE.len() && self.0.starts_with(MAGIC_COOKIE)
    }
}

/// One Via value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Via<'a> {
    /// Protocol name, normally `SIP`.
    pub protocol: &'a str,
    /// Protocol version, normally `2.0`.
    pub version: &'a str,
    /// Transport token (UDP, TCP, TLS, SCTP, WS, WSS or any other token).
    pub transport: &'a str,
    /// The sent-by host.
    pub host: Host<'a>,
    /// The sent-by host text as received.
    pub host_str: &'a str,
    /// The sent-by port.
    pub port: Option<u16>,
    /// The branch parameter.
    pub branch: Option<Branch<'a>>,
    /// The received parameter (an IP address).
    pub received: Option<&'a str>,
    /// `rport`: `Some(None)` when present without value (RFC 3581 request).
    pub rport: Option<Option<u16>>,
    /// The ttl parameter.
    pub ttl: Option<u8>,
    /// The maddr parameter.
    pub maddr: Option<&'a str>,
    /// All parameters, raw.
    pub params: Params<'a>,
}

fn token_at(s: &str) -> (&str, &str) {
    let end = s.bytes().position(|c| !is_token_byte(c)).unwrap_or(s.len());
    (&s[..end], scan::trim_start(&s[end..]))
}

fn expect(s: &str, c: char) -> Result<&str, ParseError> {
    s.strip_prefix(c)
        .map(scan::trim_start)
        .ok_or(ParseError::BadHeader("Via"))
}

impl<'a> Via<'a> {
    /// Parse one via-parm (already split at commas).
    pub fn parse(s: &'a str) -> Result<Via<'a>, ParseError> {
        let bad = ParseError::BadHeader("Via");
        let s = scan::trim(s);
        let (protocol, rest) = token_at(s);
        let rest = expect(rest, '/')?;
        let (version, rest) = token_at(rest);
        let rest = expect(rest, '/')?;
        let (transport, rest) = token_at(rest);
        if protocol.is_empty() || version.is_empty() || transport.is_empty() {
            return Err(bad);
        }
        // sent-by ends at ';' (params) — or at the end.
        let end = scan::find_byte(rest, b';').unwrap_or(rest.len());
        let sent_by = scan::trim(&rest[..end]);
        let params = Params::new(&rest[end..]);
        let (host_str, port) = if sent_by.starts_with('[') {
            let close = scan::find_byte(sent_by, b']').ok_or(bad.clone())?;
            let after = scan::trim_start(&sent_by[close + 1..]);
            let port = match after.strip_prefix(':') {
                Some(p) => Some(parse_port(scan::trim_start(p))?),
                None if after.is_empty() => None,
                None => return Err(bad),
            };
            (&sent_by[..close + 1], port)
        } else {
            match scan::find_byte(sent_by, b':') {
                Some(c) => (
                    scan::trim(&sent_by[..c]),
                    Some(parse_port(scan::trim(&sent_by[c + 1..]))?),
                ),
                None => (sent_by, None),
            }
        };
        let host = Host::parse(host_str).map_err(|_| bad.clone())?;
        let mut via = Via {
            protocol,
            version,
            transport,
            host,
            host_str,
            port,
            branch: None,
            received: None,
            rport: None,
            ttl: None,
            maddr: None,
            params,
        };
        // One pass: validate every parameter and pick out the ones we know
        // (length first, so most names cost one compare).
        let ok = params.is_valid_with(|name, value| {
            let is = |known: &str| name.len() == known.len() && name.eq_ignore_ascii_case(known);
            if is("branch") {
                via.branch = value.and_then(Branch::new);
                via.branch.is_some()
            } else if is("received") {
                via.received = value.filter(|v| Host::parse_lenient(v).is_ok());
                via.received.is_some()
            } else if is("rport") {
                match value.map(parse_port) {
                    None => via.rport = Some(None),
                    Some(Ok(p)) => via.rport = Some(Some(p)),
                    Some(Err(_)) => return false,
                }
                true
            } else if is("ttl") {
                via.ttl = value.and_then(|v| v.parse::<u8>().ok());
                via.ttl.is_some()
            } else if is("maddr") {
                via.maddr = value;
                value.is_some()
            } else {
                true
            }
        });
        if ok {
            Ok(via)
        } else {
            Err(bad)
        }
    }

    /// A parameter by name.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params.get(name)
    }

    /// `protocol/version` is `SIP/2.0`.
    pub fn is_sip_2_0(&self) -> bool {
        self.protocol.eq_ignore_ascii_case("SIP") && self.version == "2.0"
    }
}

fn parse_port(p: &str) -> Result<u16, ParseError> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()) {
        return Err(ParseError::BadHeader("Via"));
    }
    p.parse().map_err(|_| ParseError::BadHeader("Via"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::type_complexity)]
    fn parse_table() {
        // (input, transport, host, port, branch, rport)
        let table: &[(
            &str,
            &str,
            &str,
            Option<u16>,
            Option<&str>,
            Option<Option<u16>>,
        )] = &[
            (
                "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776",
                "UDP",
                "192.0.2.1",
                Some(5060),
                Some("z9hG4bK776"),
                None,
            ),
            (
                "SIP/2.0/TCP [2001:db8::1]:5061;branch=z9hG4bKa;rport",
                "TCP",
                "[2001:db8::1]",
                Some(5061),
                Some("z9hG4bKa"),
                Some(None),
            ),
            (
                "SIP/2.0/TLS h.example.com;rport=5070;received=1.2.3.4",
                "TLS",
                "h.example.com",
                None,
                None,
                Some(Some(5070)),
            ),
            (
                "SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw",
                "UDP",
                "192.0.2.2",
                None,
                Some("390skdjuw"),
                None,
            ),
            (
                "SIP  / 2.0  / TCP     spindle.example.com   ;\r\n  branch  =   z9hG4bK9ikj8",
                "TCP",
                "spindle.example.com",
                None,
                Some("z9hG4bK9ikj8"),
                None,
            ),
            (
                "SIP/2.0/UDP 192.168.255.111   ; branch=\r\n z9hG4bK30239",
                "UDP",
                "192.168.255.111",
                None,
                Some("z9hG4bK30239"),
                None,
            ),
            (
                "SIP/2.0/UNKNOWN t.example.com",
                "UNKNOWN",
                "t.example.com",
                None,
                None,
                None,
            ),
            (
                "SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKx",
                "WSS",
                "df7jal23ls0d.invalid",
                None,
                Some("z9hG4bKx"),
                None,
            ),
            ("SIP/2.0/UDP [::1]", "UDP", "[::1]", None, None, None),
        ];
        for (input, transport, host, port, branch, rport) in table {
            let v = Via::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(v.transport, *transport, "{input}");
            assert_eq!(v.host_str, *host, "{input}");
            assert_eq!(v.port, *port, "{input}");
            assert_eq!(v.branch.map(|b| b.as_str()), *branch, "{input}");
            assert_eq!(v.rport, *rport, "{input}");
            assert!(v.is_sip_2_0());
        }
    }

    #[test]
    fn rejects() {
        let bad = [
            "SIP/2.0/UDP 192.0.2.15;;",
            "SIP/2.0/UDP",
            "SIP/2.0 192.0.2.1",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP host;rport=x",
            "SIP/2.0/UDP host;branch",
            "SIP/2.0/UDP host;ttl=300",
            "SIP/2.0/UDP host;received=not an ip",
            "SIP/2.0/UDP [::1",
            "",
        ];
        for b in bad {
            assert!(Via::parse(b).is_err(), "{b}");
        }
    }

    #[test]
    fn branch_cookie() {
        assert_eq!(
            Branch::new("z9hG4bKabc").map(|b| b.is_rfc3261()),
            Some(true)
        );
        assert_eq!(Branch::new("z9hG4bK").map(|b| b.is_rfc3261()), Some(false));
        assert_eq!(
            Branch::new("390skdjuw").map(|b| b.is_rfc3261()),
            Some(false)
        );
        assert!(Branch::new("").is_none());
    }
}
