//! `CSeq`: the command sequence number and method of a request or response.
//!
//! ```text
//! RFC 3261 §20.16 CSeq = "CSeq" HCOLON 1*DIGIT LWS Method
//!                 The sequence number MUST be expressible as a 32-bit unsigned integer.
//! ```

use super::error::ParseError;
use super::method::{is_token, Method};
use super::scan;

/// A parsed CSeq value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CSeq<'a> {
    /// The sequence number.
    pub seq: u32,
    /// The method, `Other` for extensions (see `method_str`).
    pub method: Method,
    /// The method token as received.
    pub method_str: &'a str,
}

impl<'a> CSeq<'a> {
    /// Parse a raw CSeq value (folds allowed).
    pub fn parse(s: &'a str) -> Result<CSeq<'a>, ParseError> {
        Self::parse_bytes(s.as_bytes())
    }

    /// [`CSeq::parse`] on the raw value: the message reads it without a text
    /// view, since a known method's text is its canonical name (exactly what
    /// `Method::parse` matched); only an extension method is turned into text.
    pub(crate) fn parse_bytes(s: &'a [u8]) -> Result<CSeq<'a>, ParseError> {
        let bad = ParseError::BadHeader("CSeq");
        let s = scan::trim_bytes(s);
        let end = s
            .iter()
            .position(|c| !c.is_ascii_digit())
            .unwrap_or(s.len());
        let digits = &s[..end];
        if digits.is_empty() {
            return Err(bad);
        }
        let rest = &s[end..];
        if !rest.first().is_some_and(|&c| scan::is_lws(c)) {
            return Err(bad);
        }
        let method_bytes = scan::trim_bytes(rest);
        // A known method is a token; only others need the check.
        let method = Method::parse(method_bytes);
        if method == Method::Other && !is_token(method_bytes) {
            return Err(bad);
        }
        let seq = parse_u32(digits).ok_or(ParseError::Overflow("CSeq"))?;
        let method_str = match method {
            Method::Other => std::str::from_utf8(method_bytes).map_err(|_| bad)?,
            known => known.as_str(),
        };
        Ok(CSeq {
            seq,
            method,
            method_str,
        })
    }
}

pub(crate) fn parse_u32(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &d| {
        acc.checked_mul(10)?
            .checked_add(u32::from(d.wrapping_sub(b'0')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let ok: &[(&str, u32, Method, &str)] = &[
            ("314159 INVITE", 314159, Method::Invite, "INVITE"),
            ("0009\r\n  INVITE", 9, Method::Invite, "INVITE"),
            ("4294967295 NEWMETHOD", u32::MAX, Method::Other, "NEWMETHOD"),
            ("1 REGISTER", 1, Method::Register, "REGISTER"),
        ];
        for (i, seq, m, ms) in ok {
            let c = CSeq::parse(i).unwrap_or_else(|e| panic!("{i}: {e}"));
            assert_eq!((c.seq, c.method, c.method_str), (*seq, *m, *ms), "{i}");
        }
        let bad: &[(&str, ParseError)] = &[
            (
                "36893488147419103232 REGISTER",
                ParseError::Overflow("CSeq"),
            ),
            ("4294967296 INVITE", ParseError::Overflow("CSeq")),
            ("INVITE", ParseError::BadHeader("CSeq")),
            ("1", ParseError::BadHeader("CSeq")),
            ("1INVITE", ParseError::BadHeader("CSeq")),
            ("-1 INVITE", ParseError::BadHeader("CSeq")),
            ("1 IN VITE", ParseError::BadHeader("CSeq")),
        ];
        for (i, e) in bad {
            assert_eq!(CSeq::parse(i).as_ref().err(), Some(e), "{i}");
        }
    }
}
