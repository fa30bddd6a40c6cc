//! Digest credentials (RFC 2617, RFC 7616, RFC 8760): parse an `Authorization`
//! or `Proxy-Authorization` value and compute/verify the response from HA1.
//!
//! ```text
//! RFC 7616 §3.4.1: response = <"> < KD ( H(A1), unq(nonce) ":" nc ":"
//!                  unq(cnonce) ":" unq(qop) ":" H(A2) ) <">
//!   A1 = unq(username) ":" unq(realm) ":" passwd
//!   A2 = Method ":" request-uri            (qop "auth")
//! RFC 7616 §3.4.2: for -sess algorithms
//!   A1 = H( unq(username) ":" unq(realm) ":" passwd ) ":" unq(nonce-prime) ":" unq(cnonce-prime)
//! RFC 2617 §3.2.2.1: without qop, response = KD(H(A1), unq(nonce) ":" H(A2))
//! ```

use md5::Md5;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Longest header value we look at; longer values are rejected unparsed.
pub const MAX_HEADER_LEN: usize = 4096;

/// Why a credentials header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// The value is longer than [`MAX_HEADER_LEN`].
    #[error("credentials header too long")]
    TooLong,
    /// The scheme is not `Digest`.
    #[error("authentication scheme is not Digest")]
    NotDigest,
    /// The parameter list is not `name=value` pairs separated by commas.
    #[error("malformed parameter list at byte {0}")]
    Syntax(usize),
    /// A parameter occurred twice.
    #[error("duplicate parameter `{0}`")]
    Duplicate(String),
    /// A required parameter is missing.
    #[error("missing parameter `{0}`")]
    Missing(&'static str),
    /// A parameter has a value we cannot accept (bad nc, unknown qop…).
    #[error("bad value for `{0}`")]
    BadValue(&'static str),
    /// The algorithm is not one we implement.
    #[error("unsupported algorithm `{0}`")]
    UnsupportedAlgorithm(String),
    /// `userhash=true` (RFC 7616 §3.4.4) is not supported.
    #[error("userhash is not supported")]
    UserHash,
}

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// MD5 (RFC 2617; the default when `algorithm` is absent).
    Md5,
    /// MD5-sess.
    Md5Sess,
    /// SHA-256 (RFC 7616, RFC 8760).
    Sha256,
    /// SHA-256-sess.
    Sha256Sess,
}

impl Algorithm {
    /// Parses the `algorithm` token (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_uppercase().as_str() {
            "MD5" => Some(Self::Md5),
            "MD5-SESS" => Some(Self::Md5Sess),
            "SHA-256" => Some(Self::Sha256),
            "SHA-256-SESS" => Some(Self::Sha256Sess),
            _ => None,
        }
    }

    /// The token as written in headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::Md5Sess => "MD5-sess",
            Self::Sha256 => "SHA-256",
            Self::Sha256Sess => "SHA-256-sess",
        }
    }

    /// The base hash, without the session variant.
    pub fn base(self) -> Self {
        match self {
            Self::Md5 | Self::Md5Sess => Self::Md5,
            Self::Sha256 | Self::Sha256Sess => Self::Sha256,
        }
    }

    fn is_sess(self) -> bool {
        matches!(self, Self::Md5Sess | Self::Sha256Sess)
    }

    /// Lowercase hex of the hash of `parts` joined by `:`.
    pub fn hash_hex(self, parts: &[&str]) -> String {
        match self.base() {
            Self::Sha256 => hex(&joined::<Sha256>(parts)),
            _ => hex(&joined::<Md5>(parts)),
        }
    }
}

fn joined<D: sha2::Digest>(parts: &[&str]) -> Vec<u8> {
    let mut d = D::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            d.update(b":");
        }
        d.update(p.as_bytes());
    }
    d.finalize().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// HA1 = H(user ":" realm ":" password), lowercase hex: what the store keeps
/// instead of the password. `alg` is reduced to its base hash.
pub fn ha1(alg: Algorithm, user: &str, realm: &str, password: &str) -> String {
    alg.base().hash_hex(&[user, realm, password])
}

/// Whether `s` looks like an HA1 for `alg` (lowercase or uppercase hex of the right length).
pub fn is_ha1(alg: Algorithm, s: &str) -> bool {
    let len = match alg.base() {
        Algorithm::Sha256 => 64,
        _ => 32,
    };
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Parsed digest credentials. Values are unquoted and unescaped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `uri` (the digest-uri, RFC 3261 §22.4: should equal the Request-URI).
    pub uri: String,
    /// `response`, as sent (hex).
    pub response: String,
    /// `algorithm` (MD5 when absent).
    pub algorithm: Algorithm,
    /// `cnonce`, required with qop.
    pub cnonce: Option<String>,
    /// `nc` as a number, required with qop.
    pub nc: Option<u32>,
    /// `nc` as sent (8 hex digits); the response is computed over this text.
    pub nc_text: Option<String>,
    /// Whether `qop=auth` was given (auth-int is refused).
    pub qop_auth: bool,
    /// `opaque`, if any.
    pub opaque: Option<String>,
}

/// Parses `Digest k=v, k="v", ...`. Any order; unknown parameters ignored;
/// duplicates, missing required parameters and bad values are errors. Never panics.
pub fn parse_credentials(value: &str) -> Result<Credentials, DigestError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(DigestError::TooLong);
    }
    let v = value.trim_matches(|c: char| c == ' ' || c == '\t' || c == '\r' || c == '\n');
    let scheme_end = v.find([' ', '\t']).ok_or(DigestError::NotDigest)?;
    if !v[..scheme_end].eq_ignore_ascii_case("digest") {
        return Err(DigestError::NotDigest);
    }
    let params = parse_params(v, scheme_end)?;

    let mut seen: Vec<&str> = Vec::with_capacity(params.len());
    for (name, _) in &params {
        if seen.iter().any(|s| s.eq_ignore_ascii_case(name)) {
            return Err(DigestError::Duplicate(name.to_ascii_lowercase()));
        }
        seen.push(name);
    }
    let get = |key: &str| {
        params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.clone())
    };
    let need = |key: &'static str| get(key).ok_or(DigestError::Missing(key));

    let algorithm = match get("algorithm") {
        None => Algorithm::Md5,
        Some(a) => Algorithm::parse(&a).ok_or(DigestError::UnsupportedAlgorithm(a))?,
    };
    if get("userhash").is_some_and(|u| u.eq_ignore_ascii_case("true")) {
        return Err(DigestError::UserHash);
    }
    let qop_auth = match get("qop") {
        None => false,
        Some(q) if q.eq_ignore_ascii_case("auth") => true,
        Some(_) => return Err(DigestError::BadValue("qop")),
    };
    let cnonce = get("cnonce");
    let nc_text = get("nc");
    let nc = match &nc_text {
        None => None,
        Some(t) if t.len() == 8 && t.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(u32::from_str_radix(t, 16).map_err(|_| DigestError::BadValue("nc"))?)
        }
        Some(_) => return Err(DigestError::BadValue("nc")),
    };
    if qop_auth {
        if cnonce.is_none() {
            return Err(DigestError::Missing("cnonce"));
        }
        if nc.is_none() {
            return Err(DigestError::Missing("nc"));
        }
    }
    if algorithm.is_sess() && cnonce.is_none() {
        return Err(DigestError::Missing("cnonce"));
    }
    let response = need("response")?;
    if response.is_empty() || !response.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(DigestError::BadValue("response"));
    }
    Ok(Credentials {
        username: need("username")?,
        realm: need("realm")?,
        nonce: need("nonce")?,
        uri: need("uri")?,
        response,
        algorithm,
        cnonce,
        nc,
        nc_text,
        qop_auth,
        opaque: get("opaque"),
    })
}

/// Splits the auth-param list after the scheme into (name, unquoted value).
fn parse_params(v: &str, start: usize) -> Result<Vec<(&str, String)>, DigestError> {
    let b = v.as_bytes();
    let mut i = start;
    let mut out = Vec::new();
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && matches!(b[*i], b' ' | b'\t' | b'\r' | b'\n') {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        // Tolerate empty list elements (`a=1,,b=2`), as RFC 7230 #rule allows.
        if i < b.len() && b[i] == b',' {
            i += 1;
            continue;
        }
        if i >= b.len() {
            break;
        }
        let name_start = i;
        while i < b.len() && is_tchar(b[i]) {
            i += 1;
        }
        if i == name_start {
            return Err(DigestError::Syntax(i));
        }
        let name = &v[name_start..i];
        skip_ws(&mut i);
        if i >= b.len() || b[i] != b'=' {
            return Err(DigestError::Syntax(i));
        }
        i += 1;
        skip_ws(&mut i);
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let mut s = String::new();
            let mut closed = false;
            while i < b.len() {
                match b[i] {
                    b'"' => {
                        closed = true;
                        i += 1;
                        break;
                    }
                    b'\\' if i + 1 < b.len() => {
                        // quoted-pair: the next character stands for itself.
                        let ch = v[i + 1..].chars().next().ok_or(DigestError::Syntax(i))?;
                        s.push(ch);
                        i += 1 + ch.len_utf8();
                    }
                    _ => {
                        let ch = v[i..].chars().next().ok_or(DigestError::Syntax(i))?;
                        s.push(ch);
                        i += ch.len_utf8();
                    }
                }
            }
            if !closed {
                return Err(DigestError::Syntax(i));
            }
            s
        } else {
            let vs = i;
            while i < b.len() && is_tchar(b[i]) {
                i += 1;
            }
            if i == vs {
                return Err(DigestError::Syntax(i));
            }
            v[vs..i].to_string()
        };
        out.push((name, value));
        skip_ws(&mut i);
        if i < b.len() {
            if b[i] != b',' {
                return Err(DigestError::Syntax(i));
            }
            i += 1;
        }
    }
    if out.is_empty() {
        return Err(DigestError::Syntax(i));
    }
    Ok(out)
}

/// RFC 7230 tchar, plus `/` `:` `@` `[` `]` `=`-free URI characters some UAs send unquoted.
fn is_tchar(c: u8) -> bool {
    c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~/:@[]?;".contains(&c)
}

/// Picks, among a request's `Authorization`/`Proxy-Authorization` values,
/// the Digest one for `realm` (a request may carry credentials for several
/// proxies, RFC 3261 §22.3). Values that do not parse are skipped.
pub fn pick_for_realm<'a>(
    values: impl IntoIterator<Item = &'a str>,
    realm: &str,
) -> Option<&'a str> {
    values.into_iter().find(|v| {
        v.len() <= MAX_HEADER_LEN
            && v.trim_start()
                .get(..6)
                .is_some_and(|s| s.eq_ignore_ascii_case("digest"))
            && parse_params(v.trim(), 6).is_ok_and(|ps| {
                ps.iter()
                    .any(|(n, val)| n.eq_ignore_ascii_case("realm") && val == realm)
            })
    })
}

/// The expected `response` for `cred` given the stored HA1 for its base
/// algorithm (`ha1` is H(user:realm:password) in lowercase hex).
pub fn expected_response(cred: &Credentials, method: &str, ha1: &str) -> String {
    let alg = cred.algorithm;
    let cnonce = cred.cnonce.as_deref().unwrap_or("");
    let ha1 = ha1.to_ascii_lowercase();
    let ha1 = if alg.is_sess() {
        alg.hash_hex(&[&ha1, &cred.nonce, cnonce])
    } else {
        ha1
    };
    let ha2 = alg.hash_hex(&[method, &cred.uri]);
    match (&cred.nc_text, cred.qop_auth) {
        (Some(nc), true) => alg.hash_hex(&[&ha1, &cred.nonce, nc, cnonce, "auth", &ha2]),
        _ => alg.hash_hex(&[&ha1, &cred.nonce, &ha2]),
    }
}

/// Checks `cred.response` against the stored HA1 in constant time.
pub fn verify(cred: &Credentials, method: &str, ha1: &str) -> bool {
    let expected = expected_response(cred, method, ha1);
    let got = cred.response.to_ascii_lowercase();
    expected.len() == got.len() && bool::from(expected.as_bytes().ct_eq(got.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    // RFC 2617 §3.5.
    #[test]
    fn rfc2617_example() {
        let h = r#"Digest username="Mufasa",
                 realm="testrealm@host.com",
                 nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093",
                 uri="/dir/index.html",
                 qop=auth,
                 nc=00000001,
                 cnonce="0a4f113b",
                 response="6629fae49393a05397450978507c4ef1",
                 opaque="5ccc069c403ebaf9f0171e9517f40e41""#;
        let c = parse_credentials(h).expect("parses");
        assert_eq!(c.algorithm, Algorithm::Md5);
        assert_eq!(c.nc, Some(1));
        let ha1 = ha1(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
        );
        assert!(verify(&c, "GET", &ha1));
        assert!(!verify(&c, "POST", &ha1));
    }

    // RFC 7616 §3.9.1, both algorithms.
    #[test]
    fn rfc7616_examples() {
        let table = [
            ("MD5", "8ca523f5e9506fed4657c9700eebdbec"),
            (
                "SHA-256",
                "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
            ),
        ];
        for (alg, resp) in table {
            let h = format!(
                "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", uri=\"/dir/index.html\", \
                 algorithm={alg}, nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, \
                 cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, \
                 response=\"{resp}\", opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\""
            );
            let c = parse_credentials(&h).expect("parses");
            let a = Algorithm::parse(alg).expect("known");
            let ha1 = ha1(a, "Mufasa", "http-auth@example.org", "Circle of Life");
            assert!(verify(&c, "GET", &ha1), "{alg}");
            let wrong = ha1_wrong(a);
            assert!(!verify(&c, "GET", &wrong), "{alg}");
        }
    }

    fn ha1_wrong(a: Algorithm) -> String {
        ha1(a, "Mufasa", "http-auth@example.org", "Circle of life")
    }

    #[test]
    fn legacy_no_qop_and_sess() {
        let ha1 = ha1(Algorithm::Md5, "u", "r", "p");
        let base = Credentials {
            username: "u".into(),
            realm: "r".into(),
            nonce: "n".into(),
            uri: "sip:r".into(),
            response: String::new(),
            algorithm: Algorithm::Md5,
            cnonce: None,
            nc: None,
            nc_text: None,
            qop_auth: false,
            opaque: None,
        };
        // RFC 2069 form: H(HA1:nonce:HA2).
        let ha2 = Algorithm::Md5.hash_hex(&["REGISTER", "sip:r"]);
        let mut c = base.clone();
        c.response = Algorithm::Md5.hash_hex(&[&ha1, "n", &ha2]);
        assert!(verify(&c, "REGISTER", &ha1));
        // -sess: HA1' = H(HA1:nonce:cnonce).
        let mut s = base;
        s.algorithm = Algorithm::Md5Sess;
        s.cnonce = Some("c".into());
        let ha1s = Algorithm::Md5.hash_hex(&[&ha1, "n", "c"]);
        s.response = Algorithm::Md5.hash_hex(&[&ha1s, "n", &ha2]);
        assert!(verify(&s, "REGISTER", &ha1));
    }

    #[test]
    fn parse_table() {
        let ok = r#"username="a",realm="r",nonce="n",uri="sip:x",response="ab""#;
        let good: &[(&str, &str)] = &[
            (&format!("Digest {ok}"), "a"),
            (&format!("digest   {ok}  "), "a"),
            (
                r#"Digest response="ab", uri="sip:x", nonce="n", realm="r", username="a""#,
                "a",
            ),
            (
                r#"Digest username = "a\"b" , realm="r",nonce="n",uri="sip:x",response="ab",foo=bar"#,
                "a\"b",
            ),
            (
                r#"Digest username=a,realm=r,nonce=n,uri=sip:x@h,response=ab,,"#,
                "a",
            ),
            (
                &format!("Digest {ok},qop=auth,nc=0000000a,cnonce=\"c\",algorithm=sha-256"),
                "a",
            ),
        ];
        for (h, user) in good {
            let c = parse_credentials(h).unwrap_or_else(|e| panic!("{h}: {e}"));
            assert_eq!(c.username, *user, "{h}");
        }
        let bad: &[(&str, DigestError)] = &[
            ("", DigestError::NotDigest),
            ("Basic abc", DigestError::NotDigest),
            ("Digest", DigestError::NotDigest),
            ("Digest ", DigestError::NotDigest),
            ("Digest ,,", DigestError::Syntax(9)),
            (
                &format!("Digest {ok},username=\"b\""),
                DigestError::Duplicate("username".into()),
            ),
            (
                &format!("Digest {ok},USERNAME=\"b\""),
                DigestError::Duplicate("username".into()),
            ),
            (
                r#"Digest realm="r",nonce="n",uri="sip:x",response="ab""#,
                DigestError::Missing("username"),
            ),
            (
                &format!("Digest {ok},qop=auth,nc=00000001"),
                DigestError::Missing("cnonce"),
            ),
            (
                &format!("Digest {ok},qop=auth,cnonce=c"),
                DigestError::Missing("nc"),
            ),
            (
                &format!("Digest {ok},qop=auth,cnonce=c,nc=1"),
                DigestError::BadValue("nc"),
            ),
            (
                &format!("Digest {ok},qop=auth-int,cnonce=c,nc=00000001"),
                DigestError::BadValue("qop"),
            ),
            (
                &format!("Digest {ok},algorithm=SHA-512"),
                DigestError::UnsupportedAlgorithm("SHA-512".into()),
            ),
            (&format!("Digest {ok},userhash=true"), DigestError::UserHash),
            (r#"Digest username="a"#, DigestError::Syntax(18)),
            (r#"Digest username"#, DigestError::Syntax(15)),
            (r#"Digest username="a" realm="r""#, DigestError::Syntax(20)),
            (r#"Digest =a"#, DigestError::Syntax(7)),
            (
                r#"Digest username="a",realm="r",nonce="n",uri="sip:x",response="zz""#,
                DigestError::BadValue("response"),
            ),
            (&"x".repeat(MAX_HEADER_LEN + 1), DigestError::TooLong),
        ];
        for (h, want) in bad {
            assert_eq!(parse_credentials(h).as_ref(), Err(want), "{h}");
        }
    }

    #[test]
    fn pick_realm() {
        let ours =
            r#"Digest username="a", realm="sipedge.local", nonce="n", uri="u", response="00""#;
        let theirs =
            r#"Digest username="a", realm="carrier.example", nonce="n", uri="u", response="00""#;
        let table: &[(&[&str], Option<&str>)] = &[
            (&[theirs, ours], Some(ours)),
            (&[ours], Some(ours)),
            (&[theirs], None),
            (&["Basic xyz", "Digest realm=\"", ours], Some(ours)),
            (&[], None),
        ];
        for (values, want) in table {
            assert_eq!(
                pick_for_realm(values.iter().copied(), "sipedge.local"),
                *want
            );
        }
    }

    #[test]
    fn ha1_shape() {
        assert!(is_ha1(Algorithm::Md5, &ha1(Algorithm::Md5, "a", "b", "c")));
        assert!(is_ha1(
            Algorithm::Sha256,
            &ha1(Algorithm::Sha256Sess, "a", "b", "c")
        ));
        assert!(!is_ha1(
            Algorithm::Sha256,
            &ha1(Algorithm::Md5, "a", "b", "c")
        ));
        assert!(!is_ha1(Algorithm::Md5, "zz"));
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(s in ".{0,300}") {
            let _ = parse_credentials(&s);
            let _ = parse_credentials(&format!("Digest {s}"));
        }

        #[test]
        fn arbitrary_params_never_panic(s in r#"[a-z=", \\\t]{0,80}"#) {
            let _ = parse_credentials(&format!("Digest username=\"u\",{s}"));
        }
    }
}
