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
use super::uri::{is_domain_byte, port_number, Host};

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

/// Length of `SIP/2.0/`, the prefix of the common shape.
const PREFIX: usize = 8;

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
        let s = scan::trim(s);
        match Self::parse_common(s) {
            Some(via) => Ok(via),
            None => Self::parse_general(s),
        }
    }

    /// The shape nearly every Via has, `SIP/2.0/TRANSPORT host[:port]` then
    /// `;name[=value]` parameters, without white space, quotes or brackets:
    /// one pass. `None` for anything else, and for anything the general parser
    /// would refuse; it then decides (and names the error). The general parser
    /// walked the value five times (token, trim, find, params, validation).
    fn parse_common(s: &'a str) -> Option<Via<'a>> {
        Self::common_prefix(s)
            .filter(|&(_, len)| len == s.len())
            .map(|(via, _)| via)
    }

    /// The first via-parm of a whole Via header value when it has the common
    /// shape: it then ends at a `,` or the end (none of its bytes can be a
    /// comma, quote or `<`), so it needs no comma split first.
    pub(crate) fn first_of_value(raw: &'a str) -> Option<Via<'a>> {
        let (via, len) = Self::common_prefix(raw)?;
        matches!(raw.as_bytes().get(len), None | Some(b',')).then_some(via)
    }

    /// The common shape at the start of `s`, up to the first byte that cannot
    /// continue it, and its length.
    fn common_prefix(s: &'a str) -> Option<(Via<'a>, usize)> {
        let b = s.as_bytes();
        let rest = b.strip_prefix(b"SIP/2.0/")?;
        let t_len = rest.iter().position(|&c| !is_token_byte(c))?;
        if t_len == 0 || rest[t_len] != b' ' {
            return None;
        }
        let host_start = PREFIX + t_len + 1;
        let mut i = host_start;
        while i < b.len() && is_domain_byte(b[i]) {
            i += 1;
        }
        let host_str = s.get(host_start..i)?;
        let mut port = None;
        if b.get(i) == Some(&b':') {
            let p = i + 1;
            i = p;
            while i < b.len() && b[i].is_ascii_digit() {
                i += 1;
            }
            port = Some(port_number(b.get(p..i)?)?);
        }
        let params_start = i;
        let mut via = Via::sent_by(
            [s.get(..3)?, s.get(4..7)?, s.get(PREFIX..PREFIX + t_len)?],
            Host::of_domain_bytes(host_str).ok()?,
            host_str,
            port,
            Params::default(),
        );
        // Here `b[i]` is the `;` of the next parameter.
        while b.get(i) == Some(&b';') {
            let name_start = i + 1;
            let mut j = name_start;
            while j < b.len() && is_token_byte(b[j]) {
                j += 1;
            }
            let name = s.get(name_start..j).filter(|n| !n.is_empty())?;
            let mut token_value = true;
            let value = if b.get(j) == Some(&b'=') {
                let v = j + 1;
                j = v;
                while j < b.len() && is_token_byte(b[j]) {
                    j += 1;
                }
                // Host values (`received=2001:db8::1`) go on past the token.
                while j < b.len() && scan::is_param_value_byte(b[j]) {
                    token_value = false;
                    j += 1;
                }
                Some(s.get(v..j).filter(|v| !v.is_empty())?)
            } else {
                None
            };
            let known = match value {
                // The value was just seen to be a token: no second walk.
                Some(v) if token_value && name.eq_ignore_ascii_case("branch") => {
                    via.branch = Some(Branch(v));
                    true
                }
                _ => via.take_param(name, value),
            };
            if !known {
                return None;
            }
            i = j;
        }
        via.params = Params::new(s.get(params_start..i)?);
        Some((via, i))
    }

    /// Any via-parm: LWS around the slashes, IPv6 references, quoted
    /// parameter values, folds.
    fn parse_general(s: &'a str) -> Result<Via<'a>, ParseError> {
        let bad = ParseError::BadHeader("Via");
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
        let mut via = Via::sent_by([protocol, version, transport], host, host_str, port, params);
        // One pass: validate every parameter and pick out the ones we know.
        if params.is_valid_with(|name, value| via.take_param(name, value)) {
            Ok(via)
        } else {
            Err(bad)
        }
    }

    /// A Via with no known parameter picked out yet.
    fn sent_by(
        [protocol, version, transport]: [&'a str; 3],
        host: Host<'a>,
        host_str: &'a str,
        port: Option<u16>,
        params: Params<'a>,
    ) -> Via<'a> {
        Via {
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
        }
    }

    /// Record a parameter we know (length first, so most names cost one
    /// compare); `false` when its value is not valid for it.
    fn take_param(&mut self, name: &'a str, value: Option<&'a str>) -> bool {
        let is = |known: &str| name.len() == known.len() && name.eq_ignore_ascii_case(known);
        if is("branch") {
            self.branch = value.and_then(Branch::new);
            self.branch.is_some()
        } else if is("received") {
            self.received = value.filter(|v| Host::parse_lenient(v).is_ok());
            self.received.is_some()
        } else if is("rport") {
            match value.map(parse_port) {
                None => self.rport = Some(None),
                Some(Ok(p)) => self.rport = Some(Some(p)),
                Some(Err(_)) => return false,
            }
            true
        } else if is("ttl") {
            self.ttl = value.and_then(|v| v.parse::<u8>().ok());
            self.ttl.is_some()
        } else if is("maddr") {
            self.maddr = value;
            value.is_some()
        } else {
            true
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
    port_number(p.as_bytes()).ok_or(ParseError::BadHeader("Via"))
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
    fn common_shape_agrees_with_general() {
        let table = [
            "SIP/2.0/UDP 198.51.100.23:5060;branch=z9hG4bK74bf9a1c2e;rport",
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776",
            "SIP/2.0/TCP h.example.com;rport=5070;received=1.2.3.4",
            "SIP/2.0/TLS h.example.com;received=2001:db8::1;maddr=x;ttl=3",
            "SIP/2.0/UDP host;BRANCH=z9hG4bKa;Rport",
            "SIP/2.0/UDP host;branch=a;branch=b",
            "SIP/2.0/WSS df7jal23ls0d.invalid;branch=z9hG4bKx;ext;x=[::1]",
            "SIP/2.0/UDP [2001:db8::1]:5061;branch=z9hG4bKa",
            "SIP/2.0/UDP 01.2.3.4;branch=z9hG4bKa",
            "SIP/2.0/UDP 256.1.1.1",
            "SIP/2.0/UDP -bad.example.com",
            "SIP/2.0/UDP host:99999",
            "SIP/2.0/UDP host:",
            "SIP/2.0/UDP host:5060 ;branch=x",
            "SIP/2.0/UDP host ;branch=x",
            "SIP/2.0/UDP  host",
            "SIP/2.0/UDP\thost",
            "SIP/2.0/UDP host;;",
            "SIP/2.0/UDP host;",
            "SIP/2.0/UDP host;branch",
            "SIP/2.0/UDP host;branch=",
            "SIP/2.0/UDP host;rport=x",
            "SIP/2.0/UDP host;ttl=300",
            "SIP/2.0/UDP host;received=not-an-ip",
            "SIP/2.0/UDP host;x=\"q;uoted\"",
            "SIP/2.0/UDP host;a=b=c",
            "SIP/2.0/UDP host;branch=z9hG4bK:x",
            "SIP/2.0/UDP host;Branch=z9hG4bK1;received=[::1]",
            "SIP/2.0/UDP host;branch=z9hG4bK1\r\n ;rport",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP ",
            "SIP/2.0/ host",
            "SIP/2.0/UDP host,",
            "sip/2.0/udp host",
            "SIP  /   2.0\r\n /UDP\r\n    192.0.2.2;branch=390skdjuw",
            "SIP/2.0/UDP h\u{e9}st;branch=z9hG4bK1",
            "SIP/2.0/UDP host;n\u{e9}=1",
        ];
        for input in table {
            let general = Via::parse_general(input);
            // Where the common shape answers, it agrees; elsewhere it declines.
            if let Some(v) = Via::parse_common(input) {
                assert_eq!(Ok(v), general, "{input:?}");
            }
            assert_eq!(Via::parse(input), general, "{input:?}");
        }
        // The usual Vias take the common path.
        for input in &table[..7] {
            assert!(Via::parse_common(input).is_some(), "{input:?}");
        }
    }

    #[test]
    fn first_of_value_agrees_with_comma_split() {
        let table = [
            "SIP/2.0/UDP 198.51.100.23:5060;branch=z9hG4bK74bf9a1c2e;rport",
            "SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/TCP b;branch=z9hG4bK2",
            "SIP/2.0/UDP a;branch=z9hG4bK1,SIP/2.0/TCP b",
            "SIP/2.0/UDP a,SIP/2.0/TCP b",
            "SIP/2.0/UDP a ;branch=z9hG4bK1, SIP/2.0/TCP b",
            "SIP/2.0/UDP a;x=\"1,2\", SIP/2.0/TCP b",
            "SIP/2.0/UDP a;branch=z9hG4bK1 , SIP/2.0/TCP b",
            "SIP/2.0/UDP [::1]:5060, SIP/2.0/TCP b",
            "SIP/2.0/UDP a;;, SIP/2.0/TCP b",
            ", SIP/2.0/TCP b",
            "",
        ];
        for raw in table {
            let (a, b) = scan::CommaSplit::new(raw).next().expect("one value");
            let general = Via::parse(&raw[a..b]);
            if let Some(v) = Via::first_of_value(raw) {
                assert_eq!(Ok(v), general, "{raw:?}");
            }
        }
        assert!(Via::first_of_value(table[1]).is_some());
        assert!(Via::first_of_value(table[3]).is_some());
    }

    #[test]
    fn port_agrees_with_std() {
        for p in [
            "0", "5060", "65535", "65536", "99999", "00000", "000001", "", "+1", "-1", "1a", " 1",
        ] {
            let std = (!p.is_empty() && p.len() <= 5 && p.bytes().all(|c| c.is_ascii_digit()))
                .then(|| p.parse::<u16>().ok())
                .flatten();
            assert_eq!(parse_port(p).ok(), std, "{p:?}");
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
