//! `HeaderName`: the header fields we know, looked up from the received bytes
//! case-insensitively with compact forms resolved, without allocation.
//!
//! ```text
//! RFC 3261 §7.3.1  Field names are always case-insensitive.
//! RFC 3261 §7.3.3  SIP provides a mechanism to represent common header field
//!                  names in an abbreviated form (i, m, e, l, c, f, s, k, t, v)
//! RFC 3841/4028/3515/3892/3265/4474: a, j, d, x, r, b, o, u, y
//! ```

/// A header field name. `Other` is any header we do not know; its name stays in
/// the message as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HeaderName {
    /// `Via` (compact `v`)
    Via,
    /// `From` (compact `f`)
    From,
    /// `To` (compact `t`)
    To,
    /// `Call-ID` (compact `i`)
    CallId,
    /// `CSeq`
    CSeq,
    /// `Max-Forwards`
    MaxForwards,
    /// `Content-Length` (compact `l`)
    ContentLength,
    /// `Content-Type` (compact `c`)
    ContentType,
    /// `Content-Encoding` (compact `e`)
    ContentEncoding,
    /// `Contact` (compact `m`)
    Contact,
    /// `Route`
    Route,
    /// `Record-Route`
    RecordRoute,
    /// `Path`
    Path,
    /// `Expires`
    Expires,
    /// `Min-Expires`
    MinExpires,
    /// `Supported` (compact `k`)
    Supported,
    /// `Require`
    Require,
    /// `Proxy-Require`
    ProxyRequire,
    /// `Unsupported`
    Unsupported,
    /// `Allow`
    Allow,
    /// `Authorization`
    Authorization,
    /// `Proxy-Authorization`
    ProxyAuthorization,
    /// `WWW-Authenticate`
    WwwAuthenticate,
    /// `Proxy-Authenticate`
    ProxyAuthenticate,
    /// `Retry-After`
    RetryAfter,
    /// `User-Agent`
    UserAgent,
    /// `Server`
    Server,
    /// `Subject` (compact `s`)
    Subject,
    /// `Event` (compact `o`)
    Event,
    /// `Refer-To` (compact `r`)
    ReferTo,
    /// `Referred-By` (compact `b`)
    ReferredBy,
    /// `Accept-Contact` (compact `a`)
    AcceptContact,
    /// `Reject-Contact` (compact `j`)
    RejectContact,
    /// `Request-Disposition` (compact `d`)
    RequestDisposition,
    /// `Session-Expires` (compact `x`)
    SessionExpires,
    /// `Min-SE`
    MinSe,
    /// `Date`
    Date,
    /// `Timestamp`
    Timestamp,
    /// `Accept`
    Accept,
    /// `Accept-Encoding`
    AcceptEncoding,
    /// `Accept-Language`
    AcceptLanguage,
    /// `Allow-Events` (compact `u`)
    AllowEvents,
    /// `Identity` (compact `y`)
    Identity,
    /// `Reason`
    Reason,
    /// `Privacy`
    Privacy,
    /// `P-Asserted-Identity`
    PAssertedIdentity,
    /// `P-Preferred-Identity`
    PPreferredIdentity,
    /// `Subscription-State`
    SubscriptionState,
    /// `Warning`
    Warning,
    /// `Organization`
    Organization,
    /// `Priority`
    Priority,
    /// `Reply-To`
    ReplyTo,
    /// `In-Reply-To`
    InReplyTo,
    /// `Content-Disposition`
    ContentDisposition,
    /// `Content-Language`
    ContentLanguage,
    /// `MIME-Version`
    MimeVersion,
    /// `Authentication-Info`
    AuthenticationInfo,
    /// `Error-Info`
    ErrorInfo,
    /// `Call-Info`
    CallInfo,
    /// `Alert-Info`
    AlertInfo,
    /// `Replaces`
    Replaces,
    /// `RSeq`
    Rseq,
    /// `RAck`
    Rack,
    /// `Flow-Timer`
    Flowtimer,
    /// `SIP-ETag`
    SipEtag,
    /// `SIP-If-Match`
    SipIfMatch,
    /// Any other header field.
    Other,
}

/// A canonical name as machine words: the lowercased bytes, a mask with 0x20
/// at each letter, and a mask of the name's bytes. A received word (the name
/// and whatever follows it) matches when `(word | fold) & len == lower`:
/// OR-ing 0x20 lowercases exactly the letters, positions that are not letters
/// (`-`) must match exactly, and the bytes after the name do not count. One
/// or two wide compares replace a byte loop per header (the name lookup was
/// ~10 % of a parse).
#[derive(Clone, Copy)]
struct Key {
    lower: u128,
    fold: u128,
    len: u128,
}

impl Key {
    /// The key of `name[at..at + 16]` (or fewer bytes, zero-padded).
    const fn of(name: &[u8], at: usize) -> Key {
        let mut key = Key {
            lower: 0,
            fold: 0,
            len: 0,
        };
        let mut i = 0;
        while i < 16 && at + i < name.len() {
            let c = name[at + i];
            let sh = 8 * i as u32;
            key.lower |= (c.to_ascii_lowercase() as u128) << sh;
            if c.is_ascii_alphabetic() {
                key.fold |= 0x20u128 << sh;
            }
            key.len |= 0xffu128 << sh;
            i += 1;
        }
        key
    }

    #[inline(always)]
    fn matches(self, word: u128) -> bool {
        (word | self.fold) & self.len == self.lower
    }
}

/// The key of the first 16 bytes of a canonical name.
const fn head(name: &str) -> Key {
    Key::of(name.as_bytes(), 0)
}

/// The key of the last 16 bytes of a canonical name longer than 16 bytes.
const fn tail(name: &str) -> Key {
    Key::of(name.as_bytes(), name.len() - 16)
}

/// Up to 16 bytes of `b` as a little-endian word, zero-padded.
#[inline(always)]
fn load(b: &[u8]) -> u128 {
    match b.first_chunk::<16>() {
        Some(w) => u128::from_le_bytes(*w),
        None => {
            let mut w = [0u8; 16];
            let n = b.len().min(16);
            w[..n].copy_from_slice(&b[..n]);
            u128::from_le_bytes(w)
        }
    }
}

/// Position of the first `:` in the 16 bytes of `word`: a SWAR zero-byte
/// search on `half ^ ":::…"` (the lowest flagged byte is always a real match),
/// on 64-bit halves (u128 arithmetic cost twice as much, and most names end
/// in the first half).
#[inline(always)]
fn colon_in(word: u128) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    const COLONS: u64 = u64::from_le_bytes([b':'; 8]);
    let find = |half: u64| {
        let x = half ^ COLONS;
        let z = x.wrapping_sub(ONES) & !x & HIGHS;
        (z != 0).then(|| z.trailing_zeros() as usize / 8)
    };
    find(word as u64).or_else(|| find((word >> 64) as u64).map(|i| i + 8))
}

impl HeaderName {
    /// Resolve a received field name (any case, compact forms included).
    pub fn parse(b: &[u8]) -> HeaderName {
        if b.len() <= 16 {
            Self::lookup(load(b), b.len())
        } else {
            Self::lookup_long(b)
        }
    }

    /// The name that ends at the first `:` of a header line, when it is a
    /// known one written without white space before the colon (the usual
    /// case): `(name, its length)`. Any other line gives `None` and goes the
    /// general way (`Other` names, `Via :`, names longer than 15 bytes).
    /// A known name is all token characters, so the caller need not check them.
    #[inline]
    pub(crate) fn parse_at_colon(line: &[u8]) -> Option<(HeaderName, usize)> {
        let word = load(line);
        let len = colon_in(word).filter(|&c| c > 0 && c < line.len())?;
        match Self::lookup(word, len) {
            HeaderName::Other => None,
            name => Some((name, len)),
        }
    }

    /// `word`: 16 bytes that start with a name of `len` (1..=16) bytes (what
    /// follows the name does not matter: each key masks it off).
    #[inline(always)]
    fn lookup(word: u128, len: usize) -> HeaderName {
        let first = (word as u8) | 0x20;
        if len == 1 {
            // A compact form: `|0x20` lowercases letters and maps no other byte to one.
            return Self::compact(first);
        }
        // Length and first byte select the candidate; one compare confirms it.
        match (len, first) {
            (3, b'v') if const { head("Via") }.matches(word) => HeaderName::Via,
            (4, b'f') if const { head("From") }.matches(word) => HeaderName::From,
            (2, b't') if const { head("To") }.matches(word) => HeaderName::To,
            (7, b'c') if const { head("Call-ID") }.matches(word) => HeaderName::CallId,
            (4, b'c') if const { head("CSeq") }.matches(word) => HeaderName::CSeq,
            (12, b'm') if const { head("Max-Forwards") }.matches(word) => HeaderName::MaxForwards,
            (14, b'c') if const { head("Content-Length") }.matches(word) => {
                HeaderName::ContentLength
            }
            (12, b'c') if const { head("Content-Type") }.matches(word) => HeaderName::ContentType,
            (16, b'c') if const { head("Content-Encoding") }.matches(word) => {
                HeaderName::ContentEncoding
            }
            (7, b'c') if const { head("Contact") }.matches(word) => HeaderName::Contact,
            (5, b'r') if const { head("Route") }.matches(word) => HeaderName::Route,
            (12, b'r') if const { head("Record-Route") }.matches(word) => HeaderName::RecordRoute,
            (4, b'p') if const { head("Path") }.matches(word) => HeaderName::Path,
            (7, b'e') if const { head("Expires") }.matches(word) => HeaderName::Expires,
            (11, b'm') if const { head("Min-Expires") }.matches(word) => HeaderName::MinExpires,
            (9, b's') if const { head("Supported") }.matches(word) => HeaderName::Supported,
            (7, b'r') if const { head("Require") }.matches(word) => HeaderName::Require,
            (13, b'p') if const { head("Proxy-Require") }.matches(word) => HeaderName::ProxyRequire,
            (11, b'u') if const { head("Unsupported") }.matches(word) => HeaderName::Unsupported,
            (5, b'a') if const { head("Allow") }.matches(word) => HeaderName::Allow,
            (13, b'a') if const { head("Authorization") }.matches(word) => {
                HeaderName::Authorization
            }
            (16, b'w') if const { head("WWW-Authenticate") }.matches(word) => {
                HeaderName::WwwAuthenticate
            }
            (11, b'r') if const { head("Retry-After") }.matches(word) => HeaderName::RetryAfter,
            (10, b'u') if const { head("User-Agent") }.matches(word) => HeaderName::UserAgent,
            (6, b's') if const { head("Server") }.matches(word) => HeaderName::Server,
            (7, b's') if const { head("Subject") }.matches(word) => HeaderName::Subject,
            (5, b'e') if const { head("Event") }.matches(word) => HeaderName::Event,
            (8, b'r') if const { head("Refer-To") }.matches(word) => HeaderName::ReferTo,
            (11, b'r') if const { head("Referred-By") }.matches(word) => HeaderName::ReferredBy,
            (14, b'a') if const { head("Accept-Contact") }.matches(word) => {
                HeaderName::AcceptContact
            }
            (14, b'r') if const { head("Reject-Contact") }.matches(word) => {
                HeaderName::RejectContact
            }
            (15, b's') if const { head("Session-Expires") }.matches(word) => {
                HeaderName::SessionExpires
            }
            (6, b'm') if const { head("Min-SE") }.matches(word) => HeaderName::MinSe,
            (4, b'd') if const { head("Date") }.matches(word) => HeaderName::Date,
            (9, b't') if const { head("Timestamp") }.matches(word) => HeaderName::Timestamp,
            (6, b'a') if const { head("Accept") }.matches(word) => HeaderName::Accept,
            (15, b'a') if const { head("Accept-Encoding") }.matches(word) => {
                HeaderName::AcceptEncoding
            }
            (15, b'a') if const { head("Accept-Language") }.matches(word) => {
                HeaderName::AcceptLanguage
            }
            (12, b'a') if const { head("Allow-Events") }.matches(word) => HeaderName::AllowEvents,
            (8, b'i') if const { head("Identity") }.matches(word) => HeaderName::Identity,
            (6, b'r') if const { head("Reason") }.matches(word) => HeaderName::Reason,
            (7, b'p') if const { head("Privacy") }.matches(word) => HeaderName::Privacy,
            (7, b'w') if const { head("Warning") }.matches(word) => HeaderName::Warning,
            (12, b'o') if const { head("Organization") }.matches(word) => HeaderName::Organization,
            (8, b'p') if const { head("Priority") }.matches(word) => HeaderName::Priority,
            (8, b'r') if const { head("Reply-To") }.matches(word) => HeaderName::ReplyTo,
            (11, b'i') if const { head("In-Reply-To") }.matches(word) => HeaderName::InReplyTo,
            (16, b'c') if const { head("Content-Language") }.matches(word) => {
                HeaderName::ContentLanguage
            }
            (12, b'm') if const { head("MIME-Version") }.matches(word) => HeaderName::MimeVersion,
            (10, b'e') if const { head("Error-Info") }.matches(word) => HeaderName::ErrorInfo,
            (9, b'c') if const { head("Call-Info") }.matches(word) => HeaderName::CallInfo,
            (10, b'a') if const { head("Alert-Info") }.matches(word) => HeaderName::AlertInfo,
            (8, b'r') if const { head("Replaces") }.matches(word) => HeaderName::Replaces,
            (4, b'r') if const { head("RSeq") }.matches(word) => HeaderName::Rseq,
            (4, b'r') if const { head("RAck") }.matches(word) => HeaderName::Rack,
            (10, b'f') if const { head("Flow-Timer") }.matches(word) => HeaderName::Flowtimer,
            (8, b's') if const { head("SIP-ETag") }.matches(word) => HeaderName::SipEtag,
            (12, b's') if const { head("SIP-If-Match") }.matches(word) => HeaderName::SipIfMatch,
            _ => HeaderName::Other,
        }
    }

    /// Names of 17 to 20 bytes: the first and the last 16 bytes must match.
    fn lookup_long(b: &[u8]) -> HeaderName {
        let (Some(&first), Some(end)) = (b.first(), b.len().checked_sub(16)) else {
            return HeaderName::Other;
        };
        let (w1, w2) = (load(b), load(&b[end..]));
        let is = |h: Key, t: Key| h.matches(w1) && t.matches(w2);
        match (b.len(), first | 0x20) {
            (19, b'p')
                if is(
                    const { head("Proxy-Authorization") },
                    const { tail("Proxy-Authorization") },
                ) =>
            {
                HeaderName::ProxyAuthorization
            }
            (18, b'p')
                if is(
                    const { head("Proxy-Authenticate") },
                    const { tail("Proxy-Authenticate") },
                ) =>
            {
                HeaderName::ProxyAuthenticate
            }
            (19, b'r')
                if is(
                    const { head("Request-Disposition") },
                    const { tail("Request-Disposition") },
                ) =>
            {
                HeaderName::RequestDisposition
            }
            (19, b'p')
                if is(
                    const { head("P-Asserted-Identity") },
                    const { tail("P-Asserted-Identity") },
                ) =>
            {
                HeaderName::PAssertedIdentity
            }
            (20, b'p')
                if is(
                    const { head("P-Preferred-Identity") },
                    const { tail("P-Preferred-Identity") },
                ) =>
            {
                HeaderName::PPreferredIdentity
            }
            (18, b's')
                if is(
                    const { head("Subscription-State") },
                    const { tail("Subscription-State") },
                ) =>
            {
                HeaderName::SubscriptionState
            }
            (19, b'c')
                if is(
                    const { head("Content-Disposition") },
                    const { tail("Content-Disposition") },
                ) =>
            {
                HeaderName::ContentDisposition
            }
            (19, b'a')
                if is(
                    const { head("Authentication-Info") },
                    const { tail("Authentication-Info") },
                ) =>
            {
                HeaderName::AuthenticationInfo
            }
            _ => HeaderName::Other,
        }
    }

    fn compact(c: u8) -> HeaderName {
        match c {
            b'v' => HeaderName::Via,
            b'f' => HeaderName::From,
            b't' => HeaderName::To,
            b'i' => HeaderName::CallId,
            b'l' => HeaderName::ContentLength,
            b'c' => HeaderName::ContentType,
            b'e' => HeaderName::ContentEncoding,
            b'm' => HeaderName::Contact,
            b'k' => HeaderName::Supported,
            b's' => HeaderName::Subject,
            b'o' => HeaderName::Event,
            b'r' => HeaderName::ReferTo,
            b'b' => HeaderName::ReferredBy,
            b'a' => HeaderName::AcceptContact,
            b'j' => HeaderName::RejectContact,
            b'd' => HeaderName::RequestDisposition,
            b'x' => HeaderName::SessionExpires,
            b'u' => HeaderName::AllowEvents,
            b'y' => HeaderName::Identity,
            _ => HeaderName::Other,
        }
    }

    /// The canonical (long form) name; empty for `Other`.
    pub fn as_str(&self) -> &'static str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::ContentEncoding => "Content-Encoding",
            HeaderName::Contact => "Contact",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::Path => "Path",
            HeaderName::Expires => "Expires",
            HeaderName::MinExpires => "Min-Expires",
            HeaderName::Supported => "Supported",
            HeaderName::Require => "Require",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::Unsupported => "Unsupported",
            HeaderName::Allow => "Allow",
            HeaderName::Authorization => "Authorization",
            HeaderName::ProxyAuthorization => "Proxy-Authorization",
            HeaderName::WwwAuthenticate => "WWW-Authenticate",
            HeaderName::ProxyAuthenticate => "Proxy-Authenticate",
            HeaderName::RetryAfter => "Retry-After",
            HeaderName::UserAgent => "User-Agent",
            HeaderName::Server => "Server",
            HeaderName::Subject => "Subject",
            HeaderName::Event => "Event",
            HeaderName::ReferTo => "Refer-To",
            HeaderName::ReferredBy => "Referred-By",
            HeaderName::AcceptContact => "Accept-Contact",
            HeaderName::RejectContact => "Reject-Contact",
            HeaderName::RequestDisposition => "Request-Disposition",
            HeaderName::SessionExpires => "Session-Expires",
            HeaderName::MinSe => "Min-SE",
            HeaderName::Date => "Date",
            HeaderName::Timestamp => "Timestamp",
            HeaderName::Accept => "Accept",
            HeaderName::AcceptEncoding => "Accept-Encoding",
            HeaderName::AcceptLanguage => "Accept-Language",
            HeaderName::AllowEvents => "Allow-Events",
            HeaderName::Identity => "Identity",
            HeaderName::Reason => "Reason",
            HeaderName::Privacy => "Privacy",
            HeaderName::PAssertedIdentity => "P-Asserted-Identity",
            HeaderName::PPreferredIdentity => "P-Preferred-Identity",
            HeaderName::SubscriptionState => "Subscription-State",
            HeaderName::Warning => "Warning",
            HeaderName::Organization => "Organization",
            HeaderName::Priority => "Priority",
            HeaderName::ReplyTo => "Reply-To",
            HeaderName::InReplyTo => "In-Reply-To",
            HeaderName::ContentDisposition => "Content-Disposition",
            HeaderName::ContentLanguage => "Content-Language",
            HeaderName::MimeVersion => "MIME-Version",
            HeaderName::AuthenticationInfo => "Authentication-Info",
            HeaderName::ErrorInfo => "Error-Info",
            HeaderName::CallInfo => "Call-Info",
            HeaderName::AlertInfo => "Alert-Info",
            HeaderName::Replaces => "Replaces",
            HeaderName::Rseq => "RSeq",
            HeaderName::Rack => "RAck",
            HeaderName::Flowtimer => "Flow-Timer",
            HeaderName::SipEtag => "SIP-ETag",
            HeaderName::SipIfMatch => "SIP-If-Match",
            HeaderName::Other => "",
        }
    }
}

impl std::fmt::Display for HeaderName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_table() {
        let table: &[(&[u8], HeaderName)] = &[
            (b"Via", HeaderName::Via),
            (b"v", HeaderName::Via),
            (b"V", HeaderName::Via),
            (b"vIA", HeaderName::Via),
            (b"MaX-fOrWaRdS", HeaderName::MaxForwards),
            (b"i", HeaderName::CallId),
            (b"call-id", HeaderName::CallId),
            (b"l", HeaderName::ContentLength),
            (b"m", HeaderName::Contact),
            (b"e", HeaderName::ContentEncoding),
            (b"f", HeaderName::From),
            (b"t", HeaderName::To),
            (b"s", HeaderName::Subject),
            (b"k", HeaderName::Supported),
            (b"c", HeaderName::ContentType),
            (b"o", HeaderName::Event),
            (b"u", HeaderName::AllowEvents),
            (b"r", HeaderName::ReferTo),
            (b"b", HeaderName::ReferredBy),
            (b"x", HeaderName::SessionExpires),
            (b"y", HeaderName::Identity),
            (b"a", HeaderName::AcceptContact),
            (b"j", HeaderName::RejectContact),
            (b"d", HeaderName::RequestDisposition),
            (b"z", HeaderName::Other),
            (b"NewFangledHeader", HeaderName::Other),
            (b"", HeaderName::Other),
            (b"record-route", HeaderName::RecordRoute),
            (b"www-authenticate", HeaderName::WwwAuthenticate),
            (b"Vib", HeaderName::Other),
        ];
        for (b, n) in table {
            assert_eq!(HeaderName::parse(b), *n, "{:?}", String::from_utf8_lossy(b));
        }
    }

    /// Every name except `Other`.
    const ALL: &[HeaderName] = &[
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
        HeaderName::MaxForwards,
        HeaderName::ContentLength,
        HeaderName::ContentType,
        HeaderName::ContentEncoding,
        HeaderName::Contact,
        HeaderName::Route,
        HeaderName::RecordRoute,
        HeaderName::Path,
        HeaderName::Expires,
        HeaderName::MinExpires,
        HeaderName::Supported,
        HeaderName::Require,
        HeaderName::ProxyRequire,
        HeaderName::Unsupported,
        HeaderName::Allow,
        HeaderName::Authorization,
        HeaderName::ProxyAuthorization,
        HeaderName::WwwAuthenticate,
        HeaderName::ProxyAuthenticate,
        HeaderName::RetryAfter,
        HeaderName::UserAgent,
        HeaderName::Server,
        HeaderName::Subject,
        HeaderName::Event,
        HeaderName::ReferTo,
        HeaderName::ReferredBy,
        HeaderName::AcceptContact,
        HeaderName::RejectContact,
        HeaderName::RequestDisposition,
        HeaderName::SessionExpires,
        HeaderName::MinSe,
        HeaderName::Date,
        HeaderName::Timestamp,
        HeaderName::Accept,
        HeaderName::AcceptEncoding,
        HeaderName::AcceptLanguage,
        HeaderName::AllowEvents,
        HeaderName::Identity,
        HeaderName::Reason,
        HeaderName::Privacy,
        HeaderName::PAssertedIdentity,
        HeaderName::PPreferredIdentity,
        HeaderName::SubscriptionState,
        HeaderName::Warning,
        HeaderName::Organization,
        HeaderName::Priority,
        HeaderName::ReplyTo,
        HeaderName::InReplyTo,
        HeaderName::ContentDisposition,
        HeaderName::ContentLanguage,
        HeaderName::MimeVersion,
        HeaderName::AuthenticationInfo,
        HeaderName::ErrorInfo,
        HeaderName::CallInfo,
        HeaderName::AlertInfo,
        HeaderName::Replaces,
        HeaderName::Rseq,
        HeaderName::Rack,
        HeaderName::Flowtimer,
        HeaderName::SipEtag,
        HeaderName::SipIfMatch,
    ];

    /// The lookup as it was before the word compares: a byte-wise
    /// case-insensitive compare against every canonical name.
    fn reference(b: &[u8]) -> HeaderName {
        if let [c] = b {
            return HeaderName::compact(c.to_ascii_lowercase());
        }
        ALL.iter()
            .copied()
            .find(|n| n.as_str().as_bytes().eq_ignore_ascii_case(b))
            .unwrap_or(HeaderName::Other)
    }

    #[test]
    fn word_compare_agrees_with_bytewise() {
        // Every name in three spellings, and with each byte replaced by bytes
        // that differ only in bit 0x20 or are near misses ('-' vs '\r' or 'm').
        let mut inputs: Vec<Vec<u8>> = Vec::new();
        for n in ALL {
            let s = n.as_str();
            inputs.push(s.as_bytes().to_vec());
            inputs.push(s.to_ascii_lowercase().into_bytes());
            inputs.push(s.to_ascii_uppercase().into_bytes());
            for i in 0..s.len() {
                for c in [b'\r', b'm', b'-', b'_', b'\x0d', b'@', b'`', 0xc1, b' '] {
                    let mut v = s.as_bytes().to_vec();
                    v[i] = c;
                    inputs.push(v);
                }
                let mut v = s.as_bytes().to_vec();
                v[i] ^= 0x20;
                inputs.push(v);
            }
            inputs.push(format!("{s}x").into_bytes());
            inputs.push(s.as_bytes()[1..].to_vec());
        }
        for c in 0..=255u8 {
            inputs.push(vec![c]);
        }
        for b in &inputs {
            assert_eq!(
                HeaderName::parse(b),
                reference(b),
                "{:?}",
                String::from_utf8_lossy(b)
            );
        }
    }

    #[test]
    fn colon_fast_path_agrees() {
        // parse_at_colon either declines or finds the name the general lookup finds.
        let lines: &[&[u8]] = &[
            b"Via: SIP/2.0/UDP h",
            b"v: SIP/2.0/UDP h",
            b"VIA:x",
            b"Via : x",
            b"Via\t: x",
            b"X-Foo: y",
            b"Call-ID:abc",
            b"call-id: a",
            b"i:a",
            b":x",
            b"Proxy-Authorization: x",
            b"Content-Encoding: gzip",
            b"Content-Length:5",
            b"Session-Expires: 1",
            b"Via",
            b"Vi@: x",
            b"To:",
            b"t:",
            b"Max-Forwards: 70",
            b"max-forwards:70",
            b"Max-Forwards",
            b"Record-Route: <sip:a;lr>",
        ];
        for line in lines {
            let Some((name, len)) = HeaderName::parse_at_colon(line) else {
                continue;
            };
            assert_eq!(line.get(len), Some(&b':'));
            assert_eq!(
                name,
                reference(&line[..len]),
                "{:?}",
                String::from_utf8_lossy(line)
            );
            assert_ne!(name, HeaderName::Other);
        }
        let found = |l: &[u8]| HeaderName::parse_at_colon(l).map(|(n, _)| n);
        assert_eq!(found(b"Via: x"), Some(HeaderName::Via));
        assert_eq!(found(b"m:<sip:a>"), Some(HeaderName::Contact));
        assert_eq!(found(b"MAX-FORWARDS: 70"), Some(HeaderName::MaxForwards));
        assert_eq!(found(b"Via : x"), None);
        assert_eq!(found(b"X-Foo: y"), None);
    }

    #[test]
    fn canonical_names_round_trip() {
        for n in [
            HeaderName::Via,
            HeaderName::CSeq,
            HeaderName::ProxyRequire,
            HeaderName::MinSe,
        ] {
            assert_eq!(HeaderName::parse(n.as_str().as_bytes()), n);
            assert_eq!(
                HeaderName::parse(n.as_str().to_ascii_uppercase().as_bytes()),
                n
            );
        }
    }
}
