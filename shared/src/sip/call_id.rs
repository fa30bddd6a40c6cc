//! Call-ID: the dialog identifier, `word ["@" word]`.
//!
//! ```text
//! RFC 3261 §25.1 callid = word [ "@" word ]
//!                word   = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`"
//!                         / "'" / "~" / "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE
//!                         / "/" / "[" / "]" / "?" / "{" / "}" )
//! ```

use super::error::ParseError;
use super::scan;

/// Check and return a trimmed Call-ID value.
pub fn parse_call_id(s: &str) -> Result<&str, ParseError> {
    let s = scan::trim(s);
    // One pass: every byte visible, at most one '@'. A fold without early
    // exit, so that the compiler checks many bytes per instruction.
    let (graphic, ats) = s.bytes().fold((true, 0u32), |(g, ats), c| {
        (g & c.is_ascii_graphic(), ats + u32::from(c == b'@'))
    });
    let ok = !s.is_empty() && graphic && ats <= 1;
    if ok {
        Ok(s)
    } else {
        Err(ParseError::BadHeader("Call-ID"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let table: &[(&str, bool)] = &[
            ("a84b4c76e66710@pc33.example.com", true),
            ("wsinv.ndaksdj@192.0.2.1", true),
            ("abc", true),
            ("", false),
            ("a b", false),
            ("a@b@c", false),
        ];
        for (i, ok) in table {
            assert_eq!(parse_call_id(i).is_ok(), *ok, "{i}");
        }
    }
}
