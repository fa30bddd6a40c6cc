//! Challenge header values for 401 (`WWW-Authenticate`, REGISTER) and 407
//! (`Proxy-Authenticate`, everything else), offering SHA-256 before MD5.
//!
//! ```text
//! RFC 8760 §2.4: when the UAS or proxy ... supports multiple algorithms, it
//!   MUST add one challenge per algorithm ... in order of preference,
//!   the most preferred first.
//! RFC 3261 §22.3: a proxy ... MUST respond with 407 and a Proxy-Authenticate header.
//! RFC 7616 §3.3: stale: a flag indicating that the previous request ... was
//!   rejected because the nonce value was stale.
//! ```

use crate::auth::digest::Algorithm;

/// Which kind of challenge a method gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeKind {
    /// 401 with `WWW-Authenticate` (a registrar, RFC 3261 §22.2): REGISTER.
    Www,
    /// 407 with `Proxy-Authenticate` (a proxy, RFC 3261 §22.3): any other method.
    Proxy,
}

impl ChallengeKind {
    /// REGISTER is answered by us as registrar (401); the rest as proxy (407).
    pub fn for_method(method: &str) -> Self {
        if method.eq_ignore_ascii_case("REGISTER") {
            Self::Www
        } else {
            Self::Proxy
        }
    }

    /// 401 or 407.
    pub fn status(self) -> u16 {
        match self {
            Self::Www => 401,
            Self::Proxy => 407,
        }
    }

    /// The header carrying the challenge.
    pub fn challenge_header(self) -> &'static str {
        match self {
            Self::Www => "WWW-Authenticate",
            Self::Proxy => "Proxy-Authenticate",
        }
    }

    /// The header the client answers with (the caller reads this one).
    pub fn credentials_header(self) -> &'static str {
        match self {
            Self::Www => "Authorization",
            Self::Proxy => "Proxy-Authorization",
        }
    }
}

/// The algorithms we offer, most preferred first.
pub const OFFERED: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

/// One challenge value per offered algorithm, SHA-256 first.
pub fn challenge_values(realm: &str, nonce: &str, stale: bool) -> Vec<String> {
    challenge_values_for(&OFFERED, realm, nonce, stale)
}

/// One challenge value per algorithm of `offered`, in that order (the
/// `auth.challenge_order` setting; some clients, SIPp 3.6 among them, only
/// read the first challenge and only know MD5).
pub fn challenge_values_for(
    offered: &[Algorithm],
    realm: &str,
    nonce: &str,
    stale: bool,
) -> Vec<String> {
    offered
        .iter()
        .map(|alg| {
            let mut v = format!(
                "Digest realm=\"{}\", nonce=\"{}\", algorithm={}, qop=\"auth\"",
                quote_escape(realm),
                quote_escape(nonce),
                alg.as_str()
            );
            if stale {
                v.push_str(", stale=true");
            }
            v
        })
        .collect()
}

/// Escapes `"` and `\` for a quoted-string (RFC 3261 §25.1).
fn quote_escape(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '"' || c == '\\' {
            o.push('\\');
        }
        o.push(c);
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        let table = [
            ("REGISTER", 401, "WWW-Authenticate", "Authorization"),
            ("register", 401, "WWW-Authenticate", "Authorization"),
            ("INVITE", 407, "Proxy-Authenticate", "Proxy-Authorization"),
            ("MESSAGE", 407, "Proxy-Authenticate", "Proxy-Authorization"),
        ];
        for (m, code, ch, cr) in table {
            let k = ChallengeKind::for_method(m);
            assert_eq!(
                (k.status(), k.challenge_header(), k.credentials_header()),
                (code, ch, cr)
            );
        }
    }

    #[test]
    fn values() {
        let v = challenge_values("sipedge.local", "abc", false);
        assert_eq!(
            v,
            [
                r#"Digest realm="sipedge.local", nonce="abc", algorithm=SHA-256, qop="auth""#,
                r#"Digest realm="sipedge.local", nonce="abc", algorithm=MD5, qop="auth""#,
            ]
        );
        let s = challenge_values("a\"b", "n", true);
        assert!(s[0].starts_with(r#"Digest realm="a\"b""#), "{}", s[0]);
        assert!(s.iter().all(|v| v.ends_with(", stale=true")));
    }
}
