//! `Uri`: a SIP, SIPS or tel URI (or any other scheme, kept opaque) borrowing the
//! received text; `Host` covers domains, IPv4 and IPv6 references.
//!
//! ```text
//! RFC 3261 §25.1  SIP-URI  = "sip:" [ userinfo ] hostport uri-parameters [ headers ]
//!                 userinfo = ( user / telephone-subscriber ) [ ":" password ] "@"
//!                 hostport = host [ ":" port ]
//!                 host     = hostname / IPv4address / IPv6reference
//!                 IPv6reference = "[" IPv6address "]"
//!                 uri-parameters = *( ";" uri-parameter )
//!                 headers  = "?" header *( "&" header )
//! RFC 3261 §19.1.4 comparison: scheme and host are case-insensitive; user is
//!                 case-sensitive; characters other than those in the "reserved"
//!                 set are equivalent to their "%" HEX HEX encoding.
//! RFC 3966 §3     telephone-uri = "tel:" telephone-subscriber
//! ```

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use super::error::ParseError;
use super::scan::{self, Params};

/// The scheme of a URI.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme<'a> {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:`
    Tel,
    /// Any other syntactically valid scheme (answered with 416 on a Request-URI).
    Other(&'a str),
}

/// A host: domain name, IPv4 address or IPv6 reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Host<'a> {
    /// A domain name as received (compare case-insensitively).
    Domain(&'a str),
    /// An IPv4 address.
    Ipv4(Ipv4Addr),
    /// An IPv6 address (written `[...]` in URIs and Via sent-by).
    Ipv6(Ipv6Addr),
}

impl<'a> Host<'a> {
    /// Parse a host; IPv6 must be bracketed unless `bare_v6` (Via `received`).
    pub fn parse(s: &'a str) -> Result<Host<'a>, ParseError> {
        Self::parse_inner(s, false)
    }

    /// Parse a host where a bare IPv6 address is also accepted (RFC 3261
    /// `received = IPv4address / IPv6address`).
    pub fn parse_lenient(s: &'a str) -> Result<Host<'a>, ParseError> {
        Self::parse_inner(s, true)
    }

    fn parse_inner(s: &'a str, bare_v6: bool) -> Result<Host<'a>, ParseError> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner.strip_suffix(']').ok_or(ParseError::BadUri)?;
            return inner
                .parse()
                .map(Host::Ipv6)
                .map_err(|_| ParseError::BadUri);
        }
        // Only a string that starts with a digit can be an IPv4 address.
        if s.as_bytes().first().is_some_and(u8::is_ascii_digit) {
            if let Some(a) = parse_ipv4(s.as_bytes()) {
                return Ok(Host::Ipv4(a));
            }
        }
        if bare_v6 {
            if let Ok(a) = s.parse::<Ipv6Addr>() {
                return Ok(Host::Ipv6(a));
            }
        }
        let ok = !s.is_empty()
            && s.bytes().all(|c| CLASS[usize::from(c)] & DOMAIN != 0)
            && !s.starts_with(['.', '-']);
        if ok {
            Ok(Host::Domain(s))
        } else {
            Err(ParseError::BadUri)
        }
    }
}

/// Is `c` a byte of a domain name (letters, digits, `-`, `.`, `_`)?
pub(crate) fn is_domain_byte(c: u8) -> bool {
    CLASS[usize::from(c)] & DOMAIN != 0
}

impl<'a> Host<'a> {
    /// [`Host::parse`] for a host the caller has seen to hold only domain
    /// bytes: one that starts with a letter is a domain name without a
    /// second walk; others (IPv4, or a leading `-`) are parsed as usual.
    pub(crate) fn of_domain_bytes(s: &'a str) -> Result<Host<'a>, ParseError> {
        debug_assert!(s.bytes().all(is_domain_byte));
        match s.as_bytes().first() {
            Some(c) if c.is_ascii_alphabetic() => Ok(Host::Domain(s)),
            Some(c) if c.is_ascii_digit() => match parse_ipv4(s.as_bytes()) {
                Some(a) => Ok(Host::Ipv4(a)),
                None => Host::parse(s),
            },
            _ => Host::parse(s),
        }
    }
}

/// An IPv4 address as `Ipv4Addr::from_str` reads it: four decimal parts of one
/// to three digits, each at most 255, no leading zero (`01` is refused), and
/// nothing else. By hand: the generic std parser cost ~450 instructions a call
/// on the Via and URI hosts of every request.
///
/// ```text
/// RFC 3261 §25.1  IPv4address = 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT "." 1*3DIGIT
/// ```
pub(crate) fn parse_ipv4(s: &[u8]) -> Option<Ipv4Addr> {
    let (a, i) = octet(s, 0)?;
    let (b, i) = octet(s, dot(s, i)?)?;
    let (c, i) = octet(s, dot(s, i)?)?;
    let (d, i) = octet(s, dot(s, i)?)?;
    (i == s.len()).then(|| Ipv4Addr::new(a, b, c, d))
}

/// The offset after the `.` at `s[i]`.
#[inline(always)]
fn dot(s: &[u8], i: usize) -> Option<usize> {
    (s.get(i) == Some(&b'.')).then_some(i + 1)
}

/// One part of an IPv4 address at `s[i..]`: its value and the offset after it.
#[inline(always)]
fn octet(s: &[u8], i: usize) -> Option<(u8, usize)> {
    let digit = |k: usize| {
        s.get(i + k)
            .map(|c| c.wrapping_sub(b'0'))
            .filter(|d| *d < 10)
    };
    let d0 = digit(0)?;
    let Some(d1) = digit(1) else {
        return Some((d0, i + 1));
    };
    if d0 == 0 {
        return None; // a leading zero
    }
    let Some(d2) = digit(2) else {
        return Some((d0 * 10 + d1, i + 2));
    };
    let v = u16::from(d0) * 100 + u16::from(d1) * 10 + u16::from(d2);
    Some((u8::try_from(v).ok()?, i + 3))
}

impl std::fmt::Display for Host<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ipv4(a) => write!(f, "{a}"),
            Host::Ipv6(a) => write!(f, "[{a}]"),
        }
    }
}

/// A parsed URI borrowing its text. Printing gives the text exactly as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Uri<'a> {
    raw: &'a str,
    /// The scheme.
    pub scheme: Scheme<'a>,
    /// The user part (sip/sips), or the telephone-subscriber of a tel URI; escaped.
    pub user: Option<&'a str>,
    /// The password of the userinfo (deprecated but legal).
    pub password: Option<&'a str>,
    /// The host (absent for tel and opaque URIs).
    pub host: Option<Host<'a>>,
    /// The host text as received.
    pub host_str: &'a str,
    /// The port, when given.
    pub port: Option<u16>,
    params: Params<'a>,
    headers: Option<&'a str>,
}

const fn is_unreserved(c: u8) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            b'-' | b'_' | b'.' | b'!' | b'~' | b'*' | b'\'' | b'(' | b')'
        )
}

// Character classes of the URI grammar, one bit each in `CLASS`.
const USER: u8 = 1;
const PASSWORD: u8 = 2;
const PARAM: u8 = 4;
const HEADER: u8 = 8;
const DOMAIN: u8 = 16;
/// User bytes of the plain shape: `USER` without `;` `?` `/` `%`.
const PLAIN_USER: u8 = 32;

/// RFC 3261 §25.1 character sets of the URI parts, as a table (one load per
/// byte instead of a chain of range tests: URIs are read on every request).
const CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let c = i as u8;
        let u = is_unreserved(c);
        let mut bits = 0;
        if u || matches!(
            c,
            b'%' | b'&' | b'=' | b'+' | b'$' | b',' | b';' | b'?' | b'/'
        ) {
            bits |= USER;
        }
        if u || matches!(c, b'%' | b'&' | b'=' | b'+' | b'$' | b',') {
            bits |= PASSWORD;
        }
        if u || matches!(
            c,
            b'%' | b'[' | b']' | b'/' | b':' | b'&' | b'+' | b'$' | b';' | b'='
        ) {
            bits |= PARAM;
        }
        if u || matches!(
            c,
            b'%' | b'[' | b']' | b'/' | b'?' | b':' | b'+' | b'$' | b'&' | b'='
        ) {
            bits |= HEADER;
        }
        if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_') {
            bits |= DOMAIN;
        }
        if bits & USER != 0 && !matches!(c, b';' | b'?' | b'/' | b'%') {
            bits |= PLAIN_USER;
        }
        t[i] = bits;
        i += 1;
    }
    t
};

/// Every byte is in `class`, and every `%` is followed by two hex digits.
fn chars_ok(s: &str, class: u8) -> bool {
    let b = s.as_bytes();
    b.iter().all(|&c| CLASS[usize::from(c)] & class != 0)
        && (memchr::memchr(b'%', b).is_none() || escapes_ok(b))
}

/// Every `%` is followed by two hex digits.
fn escapes_ok(s: &[u8]) -> bool {
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'%' {
            let ok = s
                .get(i + 1..i + 3)
                .is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit));
            if !ok {
                return false;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    true
}

fn user_ok(s: &str) -> bool {
    !s.is_empty() && chars_ok(s, USER)
}

fn password_ok(s: &str) -> bool {
    chars_ok(s, PASSWORD)
}

fn paramchars_ok(s: &str) -> bool {
    chars_ok(s, PARAM)
}

fn headerchars_ok(s: &str) -> bool {
    chars_ok(s, HEADER)
}

/// A port: one to five digits, at most 65535 (by hand: `str::parse` cost
/// more than the rest of a sent-by).
pub(crate) fn port_number(p: &[u8]) -> Option<u16> {
    if p.is_empty() || p.len() > 5 {
        return None;
    }
    let v = p.iter().try_fold(0u32, |v, &d| {
        d.is_ascii_digit().then(|| v * 10 + u32::from(d - b'0'))
    })?;
    u16::try_from(v).ok()
}

fn scheme_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphabetic()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'))
}

impl<'a> Uri<'a> {
    /// Parse a URI. Unknown schemes parse as `Scheme::Other` with the rest opaque.
    pub fn parse(raw: &'a str) -> Result<Uri<'a>, ParseError> {
        match Self::parse_plain(raw) {
            Some(uri) => Ok(uri),
            None => Self::parse_general(raw),
        }
    }

    /// The shape of nearly every URI on the wire, `sip:` or `sips:`, an
    /// optional user of plain characters (no escapes) and `@`, a domain or
    /// IPv4 host, an optional port and `;name[=value]` parameters of plain
    /// characters, in one pass. `None` for anything else (escapes, passwords,
    /// IPv6, `?headers`, upper-case schemes) and for anything the general
    /// parser refuses: it then decides.
    fn parse_plain(raw: &'a str) -> Option<Uri<'a>> {
        Self::plain_prefix(raw).filter(|u| u.raw.len() == raw.len())
    }

    /// The plain-shape URI that `text` starts with, up to the first byte that
    /// cannot continue it (in a name-addr, the `>`); `None` when `text` does
    /// not start with one, or when a byte further on (an `@`, an escape) means
    /// the general parser must read it.
    pub(crate) fn plain_prefix(text: &'a str) -> Option<Uri<'a>> {
        let b = text.as_bytes();
        let (scheme, start) = if b.starts_with(b"sip:") {
            (Scheme::Sip, 4)
        } else if b.starts_with(b"sips:") {
            (Scheme::Sips, 5)
        } else {
            return None;
        };
        // End of the run of bytes of `class` from `i`.
        let run = |i: usize, class: u8| {
            let rest = b.get(i..).unwrap_or_default();
            i + rest
                .iter()
                .position(|&c| CLASS[usize::from(c)] & class == 0)
                .unwrap_or(rest.len())
        };
        let mut i = run(start, PLAIN_USER);
        let user = if b.get(i) == Some(&b'@') {
            let u = text.get(start..i).filter(|u| !u.is_empty())?;
            i += 1;
            Some(u)
        } else {
            // userinfo ends at the first '@' anywhere: one further on is not plain.
            if memchr::memchr(b'@', &b[i.min(b.len())..]).is_some() {
                return None;
            }
            i = start;
            None
        };
        let host_start = i;
        i = run(i, DOMAIN);
        let host_str = text.get(host_start..i).filter(|h| !h.is_empty())?;
        let mut port = None;
        if b.get(i) == Some(&b':') {
            let p = i + 1;
            i = p;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            port = Some(port_number(b.get(p..i)?)?);
        }
        let end = run(i, PARAM);
        let params = text.get(i..end)?;
        // Parameters: no escapes, and every `;` starts a non-empty name.
        let mut prev = 0u8;
        for &c in params.as_bytes() {
            if c == b'%' || (prev == b';' && matches!(c, b';' | b'=')) {
                return None;
            }
            prev = c;
        }
        if !(params.is_empty() || params.starts_with(';')) || prev == b';' {
            return None;
        }
        Some(Uri {
            raw: text.get(..end)?,
            scheme,
            user,
            password: None,
            host: Some(Host::of_domain_bytes(host_str).ok()?),
            host_str,
            port,
            params: Params::new(params),
            headers: None,
        })
    }

    /// Any URI.
    fn parse_general(raw: &'a str) -> Result<Uri<'a>, ParseError> {
        let colon = scan::find_byte(raw, b':').ok_or(ParseError::BadUri)?;
        let (scheme_s, rest) = (&raw[..colon], &raw[colon + 1..]);
        if !scheme_ok(scheme_s) {
            return Err(ParseError::BadUri);
        }
        let scheme = if scheme_s.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme_s.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme_s.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            if rest.is_empty() || rest.bytes().any(|c| c <= b' ' || c == 0x7f) {
                return Err(ParseError::BadUri);
            }
            return Ok(Uri {
                raw,
                scheme: Scheme::Other(scheme_s),
                user: None,
                password: None,
                host: None,
                host_str: "",
                port: None,
                params: Params::default(),
                headers: None,
            });
        };
        if scheme == Scheme::Tel {
            let end = scan::find_byte(rest, b';').unwrap_or(rest.len());
            let number = &rest[..end];
            let params = &rest[end..];
            let num_ok = !number.is_empty()
                && number.bytes().all(|c| {
                    c.is_ascii_hexdigit()
                        || matches!(c, b'+' | b'-' | b'.' | b'(' | b')' | b'*' | b'#')
                });
            if !num_ok || !paramchars_ok(params) {
                return Err(ParseError::BadUri);
            }
            return Ok(Uri {
                raw,
                scheme,
                user: Some(number),
                password: None,
                host: None,
                host_str: "",
                port: None,
                params: Params::new(params),
                headers: None,
            });
        }
        // userinfo ends at the first '@' ('@' is never legal unescaped elsewhere).
        let (userinfo, hostpart) = match scan::find_byte(rest, b'@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                // The user may hold ';' and '?' (semiuri); the password follows the first ':'.
                match scan::find_byte(ui, b':') {
                    Some(c) => (Some(&ui[..c]), Some(&ui[c + 1..])),
                    None => (Some(ui), None),
                }
            }
        };
        if user.is_some_and(|u| !user_ok(u)) || password.is_some_and(|p| !password_ok(p)) {
            return Err(ParseError::BadUri);
        }
        let params_at = |s: &str| memchr::memchr2(b';', b'?', s.as_bytes()).unwrap_or(s.len());
        let (hostport, after) = if hostpart.starts_with('[') {
            let close = scan::find_byte(hostpart, b']').ok_or(ParseError::BadUri)?;
            let rest = &hostpart[close + 1..];
            let e = params_at(rest);
            (&hostpart[..close + 1 + e], &rest[e..])
        } else {
            let e = params_at(hostpart);
            (&hostpart[..e], &hostpart[e..])
        };
        let (host_str, port) = match memchr::memrchr(b':', hostport.as_bytes()) {
            Some(c) if scan::find_byte(&hostport[c..], b']').is_none() => {
                let p = port_number(&hostport.as_bytes()[c + 1..]).ok_or(ParseError::BadUri)?;
                (&hostport[..c], Some(p))
            }
            _ => (hostport, None),
        };
        let host = Host::parse(host_str)?;
        let (params, headers) = match scan::find_byte(after, b'?') {
            Some(q) => (&after[..q], Some(&after[q + 1..])),
            None => (after, None),
        };
        if !paramchars_ok(params) || headers.is_some_and(|h| h.is_empty() || !headerchars_ok(h)) {
            return Err(ParseError::BadUri);
        }
        let params = Params::new(params);
        if params.iter().any(|(n, _)| n.is_empty()) {
            return Err(ParseError::BadUri);
        }
        Ok(Uri {
            raw,
            scheme,
            user,
            password,
            host: Some(host),
            host_str,
            port,
            params,
            headers,
        })
    }

    /// The URI text exactly as received.
    pub fn as_str(&self) -> &'a str {
        self.raw
    }

    /// Is the scheme sip, sips or tel (the ones we route)?
    pub fn is_supported_scheme(&self) -> bool {
        !matches!(self.scheme, Scheme::Other(_))
    }

    /// A URI parameter: `Some(None)` for a flag such as `lr`, `Some(Some(v))`.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        self.params.get(name)
    }

    /// The URI parameters.
    pub fn params(&self) -> Params<'a> {
        self.params
    }

    /// The raw `?headers` part (without `?`).
    pub fn headers(&self) -> Option<&'a str> {
        self.headers
    }

    /// The user part with `%HEX` escapes decoded. `%00` (and any escape that
    /// would not give UTF-8) is kept as written, so the AOR is never truncated.
    pub fn user_unescaped(&self) -> Cow<'a, str> {
        match self.user {
            None => Cow::Borrowed(""),
            Some(u) => unescape(u),
        }
    }

    /// The normalised address-of-record key `user@host` used for hashing: user
    /// unescaped, host lowercased; no port, no parameters. For tel: the number.
    pub fn aor_key(&self) -> String {
        let mut key = String::new();
        self.write_aor_key(&mut key);
        key
    }

    /// [`Uri::aor_key`] into `out` (cleared first), so a hot path can reuse
    /// one buffer instead of allocating a key per request.
    pub fn write_aor_key(&self, out: &mut String) {
        use std::fmt::Write as _;
        out.clear();
        let user = self.user_unescaped();
        match (self.scheme, &self.host) {
            (Scheme::Tel, _) => {
                out.push_str("tel:");
                out.push_str(&user);
            }
            (_, Some(h)) => {
                if !user.is_empty() {
                    out.push_str(&user);
                    out.push('@');
                }
                match h {
                    Host::Domain(d) => out.extend(d.chars().map(|c| c.to_ascii_lowercase())),
                    other => {
                        let _ = write!(out, "{other}");
                    }
                }
            }
            (_, None) => out.extend(self.raw.chars().map(|c| c.to_ascii_lowercase())),
        }
    }
}

impl std::fmt::Display for Uri<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.raw)
    }
}

/// Decode `%HEX HEX` escapes; `%00` and escapes that do not form UTF-8 stay as written.
pub fn unescape(s: &str) -> Cow<'_, str> {
    if scan::find_byte(s, b'%').is_none() {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            if let Some(h) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
            {
                if let Ok(v) = u8::from_str_radix(h, 16) {
                    if v != 0 {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                }
            }
        }
        out.push(b[i]);
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(_) => Cow::Borrowed(s),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::type_complexity)]
    fn parse_table() {
        // (input, scheme, user, host, port)
        let table: &[(&str, Scheme, Option<&str>, Option<Host>, Option<u16>)] = &[
            (
                "sip:alice@example.com",
                Scheme::Sip,
                Some("alice"),
                Some(Host::Domain("example.com")),
                None,
            ),
            (
                "SIPS:bob@10.0.0.1:5061;transport=tcp",
                Scheme::Sips,
                Some("bob"),
                Some(Host::Ipv4(Ipv4Addr::new(10, 0, 0, 1))),
                Some(5061),
            ),
            (
                "sip:[2001:db8::1]:5060;lr",
                Scheme::Sip,
                None,
                Some(Host::Ipv6("2001:db8::1".parse().expect("v6"))),
                Some(5060),
            ),
            (
                "sip:[2001:db8::1]",
                Scheme::Sip,
                None,
                Some(Host::Ipv6("2001:db8::1".parse().expect("v6"))),
                None,
            ),
            (
                "sip:user;par=u%40example.net@example.com",
                Scheme::Sip,
                Some("user;par=u%40example.net"),
                Some(Host::Domain("example.com")),
                None,
            ),
            (
                "tel:+1-201-555-0123;phone-context=x",
                Scheme::Tel,
                Some("+1-201-555-0123"),
                None,
                None,
            ),
            (
                "sip:example.com",
                Scheme::Sip,
                None,
                Some(Host::Domain("example.com")),
                None,
            ),
            (
                "nobodyKnowsThisScheme:totallyopaquecontent",
                Scheme::Other("nobodyKnowsThisScheme"),
                None,
                None,
                None,
            ),
            (
                "soap.beep://192.0.2.103:3002",
                Scheme::Other("soap.beep"),
                None,
                None,
                None,
            ),
        ];
        for (input, scheme, user, host, port) in table {
            let u = Uri::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(u.scheme, *scheme, "{input}");
            assert_eq!(u.user, *user, "{input}");
            assert_eq!(u.host, *host, "{input}");
            assert_eq!(u.port, *port, "{input}");
            assert_eq!(u.to_string(), *input);
        }
    }

    #[test]
    fn rejects() {
        let bad = [
            "<sip:user@example.com>",
            "sip:user@example.com; lr",
            "sip:user@exa mple.com",
            "sip:user@[::1",
            "sip:user@host:99999",
            "sip:user@host:",
            "sip:",
            "sip:us%zzer@host",
            "nocolon",
            "1sip:x",
            "sip:a@b;;",
            "sip:a@b?",
        ];
        for b in bad {
            assert!(Uri::parse(b).is_err(), "{b}");
        }
    }

    #[test]
    fn params_headers_and_keys() {
        let u = Uri::parse("sip:%61lice:pw@Example.COM:5060;lr;transport=tcp?Subject=x&h=y")
            .expect("ok");
        assert_eq!(u.param("lr"), Some(None));
        assert_eq!(u.param("TRANSPORT"), Some(Some("tcp")));
        assert_eq!(u.password, Some("pw"));
        assert_eq!(u.headers(), Some("Subject=x&h=y"));
        assert_eq!(u.user_unescaped(), "alice");
        assert_eq!(u.aor_key(), "alice@example.com");
        let n = Uri::parse("sip:null-%00-null@example.com").expect("ok");
        assert_eq!(n.aor_key(), "null-%00-null@example.com");
        let t = Uri::parse("tel:+4930").expect("ok");
        assert_eq!(t.aor_key(), "tel:+4930");
        let v6 = Uri::parse("sip:bob@[2001:DB8::1]").expect("ok");
        assert_eq!(v6.aor_key(), "bob@[2001:db8::1]");
    }

    #[test]
    fn plain_shape_agrees_with_general() {
        let table = [
            "sip:bob@biloxi.example.com",
            "sip:alice@198.51.100.23:5060;transport=udp",
            "sips:bob@10.0.0.1:5061;transport=tcp;lr",
            "sip:203.0.113.9;lr",
            "sip:biloxi.example.com",
            "sip:+4930123@gw.example.com;user=phone",
            "sip:a.b-c_d!~*'()&=+$,@h",
            "sip:%61lice@example.com",
            "sip:alice:pw@example.com",
            "sip:user;par=u%40example.net@example.com",
            "sip:user@[2001:db8::1]:5060;lr",
            "sip:user@host?Subject=x",
            "sip:user@host;;",
            "sip:user@host;",
            "sip:user@host;=x",
            "sip:user@host;a=;b",
            "sip:user@host;a=b=c;d=[::1]",
            "sip:user@host;maddr=%41",
            "sip:user@host:",
            "sip:user@host:99999",
            "sip:user@host:5060x",
            "sip:user@-host",
            "sip:user@01.2.3.4",
            "sip:user@256.1.1.1",
            "sip:@host",
            "sip:",
            "sip:user@",
            "sip:user@exa mple.com",
            "sip:user@host; lr",
            "SIP:user@host",
            "sip:us\u{e9}r@host",
            "sip:user@h\u{e9}st",
            "tel:+1-201-555-0123",
            "sip:a@b@c",
        ];
        for input in table {
            let general = Uri::parse_general(input);
            if let Some(u) = Uri::parse_plain(input) {
                assert_eq!(Ok(u), general, "{input:?}");
            }
            assert_eq!(Uri::parse(input), general, "{input:?}");
        }
        for input in &table[..7] {
            assert!(Uri::parse_plain(input).is_some(), "{input:?}");
        }
    }

    #[test]
    fn ipv4_agrees_with_std() {
        let mut inputs: Vec<String> = [
            "0.0.0.0",
            "255.255.255.255",
            "1.2.3.4",
            "198.51.100.23",
            "01.2.3.4",
            "1.2.3.04",
            "1.2.3.0",
            "256.1.1.1",
            "1.2.3",
            "1.2.3.4.5",
            "1..2.3",
            ".1.2.3",
            "1.2.3.4.",
            "1.2.3.4:5060",
            "1.2.3.1000",
            "1.2.3.-1",
            "1.2.3.+1",
            "",
            "1",
            "a.b.c.d",
            "1.2.3.4 ",
            " 1.2.3.4",
            "999.0.0.0",
            "0000.0.0.0",
            "00.0.0.0",
            "1.2.3.255a",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every short string over the digits, the dot and one other byte.
        let alphabet = ['0', '1', '2', '5', '9', '.', 'x'];
        let mut frontier = vec![String::new()];
        for _ in 0..7 {
            let mut next = Vec::new();
            for p in &frontier {
                for c in alphabet {
                    next.push(format!("{p}{c}"));
                }
            }
            inputs.extend(next.iter().cloned());
            frontier = next;
        }
        for p in ["1.2.3.", "25.5.2.", "0.0.", "199.", "255.255.255."] {
            for n in 0..=1100 {
                inputs.push(format!("{p}{n}"));
                inputs.push(format!("{p}0{n}"));
            }
        }
        for i in &inputs {
            assert_eq!(
                parse_ipv4(i.as_bytes()),
                i.parse::<Ipv4Addr>().ok(),
                "{i:?}"
            );
        }
    }

    #[test]
    fn unescape_table() {
        let table = [
            ("a%20b", "a b"),
            ("abc", "abc"),
            ("%00", "%00"),
            ("%zz", "%zz"),
            ("%4", "%4"),
            ("%ff", "%ff"),
        ];
        for (i, o) in table {
            assert_eq!(unescape(i), o, "{i}");
        }
    }
}
