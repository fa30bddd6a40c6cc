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

/// ASCII case-insensitive comparison of a received name with a canonical one.
#[inline(always)]
fn eq(b: &[u8], canon: &[u8]) -> bool {
    // Inlined with a literal `canon`, this is a fixed-length loop the compiler
    // unrolls (a `memcmp` call per header showed in the parse profile).
    b.len() == canon.len() && b.iter().zip(canon).all(|(x, y)| x.eq_ignore_ascii_case(y))
}

impl HeaderName {
    /// Resolve a received field name (any case, compact forms included).
    pub fn parse(b: &[u8]) -> HeaderName {
        if b.len() == 1 {
            return Self::compact(b[0].to_ascii_lowercase());
        }
        let Some(&first) = b.first() else {
            return HeaderName::Other;
        };
        // Length and first byte select the candidate; one comparison confirms it.
        match (b.len(), first.to_ascii_lowercase()) {
            (3, b'v') if eq(b, b"Via") => HeaderName::Via,
            (4, b'f') if eq(b, b"From") => HeaderName::From,
            (2, b't') if eq(b, b"To") => HeaderName::To,
            (7, b'c') if eq(b, b"Call-ID") => HeaderName::CallId,
            (4, b'c') if eq(b, b"CSeq") => HeaderName::CSeq,
            (12, b'm') if eq(b, b"Max-Forwards") => HeaderName::MaxForwards,
            (14, b'c') if eq(b, b"Content-Length") => HeaderName::ContentLength,
            (12, b'c') if eq(b, b"Content-Type") => HeaderName::ContentType,
            (16, b'c') if eq(b, b"Content-Encoding") => HeaderName::ContentEncoding,
            (7, b'c') if eq(b, b"Contact") => HeaderName::Contact,
            (5, b'r') if eq(b, b"Route") => HeaderName::Route,
            (12, b'r') if eq(b, b"Record-Route") => HeaderName::RecordRoute,
            (4, b'p') if eq(b, b"Path") => HeaderName::Path,
            (7, b'e') if eq(b, b"Expires") => HeaderName::Expires,
            (11, b'm') if eq(b, b"Min-Expires") => HeaderName::MinExpires,
            (9, b's') if eq(b, b"Supported") => HeaderName::Supported,
            (7, b'r') if eq(b, b"Require") => HeaderName::Require,
            (13, b'p') if eq(b, b"Proxy-Require") => HeaderName::ProxyRequire,
            (11, b'u') if eq(b, b"Unsupported") => HeaderName::Unsupported,
            (5, b'a') if eq(b, b"Allow") => HeaderName::Allow,
            (13, b'a') if eq(b, b"Authorization") => HeaderName::Authorization,
            (19, b'p') if eq(b, b"Proxy-Authorization") => HeaderName::ProxyAuthorization,
            (16, b'w') if eq(b, b"WWW-Authenticate") => HeaderName::WwwAuthenticate,
            (18, b'p') if eq(b, b"Proxy-Authenticate") => HeaderName::ProxyAuthenticate,
            (11, b'r') if eq(b, b"Retry-After") => HeaderName::RetryAfter,
            (10, b'u') if eq(b, b"User-Agent") => HeaderName::UserAgent,
            (6, b's') if eq(b, b"Server") => HeaderName::Server,
            (7, b's') if eq(b, b"Subject") => HeaderName::Subject,
            (5, b'e') if eq(b, b"Event") => HeaderName::Event,
            (8, b'r') if eq(b, b"Refer-To") => HeaderName::ReferTo,
            (11, b'r') if eq(b, b"Referred-By") => HeaderName::ReferredBy,
            (14, b'a') if eq(b, b"Accept-Contact") => HeaderName::AcceptContact,
            (14, b'r') if eq(b, b"Reject-Contact") => HeaderName::RejectContact,
            (19, b'r') if eq(b, b"Request-Disposition") => HeaderName::RequestDisposition,
            (15, b's') if eq(b, b"Session-Expires") => HeaderName::SessionExpires,
            (6, b'm') if eq(b, b"Min-SE") => HeaderName::MinSe,
            (4, b'd') if eq(b, b"Date") => HeaderName::Date,
            (9, b't') if eq(b, b"Timestamp") => HeaderName::Timestamp,
            (6, b'a') if eq(b, b"Accept") => HeaderName::Accept,
            (15, b'a') if eq(b, b"Accept-Encoding") => HeaderName::AcceptEncoding,
            (15, b'a') if eq(b, b"Accept-Language") => HeaderName::AcceptLanguage,
            (12, b'a') if eq(b, b"Allow-Events") => HeaderName::AllowEvents,
            (8, b'i') if eq(b, b"Identity") => HeaderName::Identity,
            (6, b'r') if eq(b, b"Reason") => HeaderName::Reason,
            (7, b'p') if eq(b, b"Privacy") => HeaderName::Privacy,
            (19, b'p') if eq(b, b"P-Asserted-Identity") => HeaderName::PAssertedIdentity,
            (20, b'p') if eq(b, b"P-Preferred-Identity") => HeaderName::PPreferredIdentity,
            (18, b's') if eq(b, b"Subscription-State") => HeaderName::SubscriptionState,
            (7, b'w') if eq(b, b"Warning") => HeaderName::Warning,
            (12, b'o') if eq(b, b"Organization") => HeaderName::Organization,
            (8, b'p') if eq(b, b"Priority") => HeaderName::Priority,
            (8, b'r') if eq(b, b"Reply-To") => HeaderName::ReplyTo,
            (11, b'i') if eq(b, b"In-Reply-To") => HeaderName::InReplyTo,
            (19, b'c') if eq(b, b"Content-Disposition") => HeaderName::ContentDisposition,
            (16, b'c') if eq(b, b"Content-Language") => HeaderName::ContentLanguage,
            (12, b'm') if eq(b, b"MIME-Version") => HeaderName::MimeVersion,
            (19, b'a') if eq(b, b"Authentication-Info") => HeaderName::AuthenticationInfo,
            (10, b'e') if eq(b, b"Error-Info") => HeaderName::ErrorInfo,
            (9, b'c') if eq(b, b"Call-Info") => HeaderName::CallInfo,
            (10, b'a') if eq(b, b"Alert-Info") => HeaderName::AlertInfo,
            (8, b'r') if eq(b, b"Replaces") => HeaderName::Replaces,
            (4, b'r') if eq(b, b"RSeq") => HeaderName::Rseq,
            (4, b'r') if eq(b, b"RAck") => HeaderName::Rack,
            (10, b'f') if eq(b, b"Flow-Timer") => HeaderName::Flowtimer,
            (8, b's') if eq(b, b"SIP-ETag") => HeaderName::SipEtag,
            (12, b's') if eq(b, b"SIP-If-Match") => HeaderName::SipIfMatch,
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
