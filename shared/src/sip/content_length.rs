//! Content-Length: the body size in octets, mandatory on stream transports.
//!
//! ```text
//! RFC 3261 §20.14 Content-Length = ( "Content-Length" / "l" ) HCOLON 1*DIGIT
//! ```

use super::error::ParseError;
use super::scan;

/// Parse a raw Content-Length value. Only digits are allowed (RFC 4475 ncl:
/// `-999` is an error); values beyond `usize` are an error too.
pub fn parse_content_length(s: &str) -> Result<usize, ParseError> {
    parse_content_length_bytes(s.as_bytes())
}

/// [`parse_content_length`] on the raw value bytes (the datagram parser reads
/// it before any text view exists).
pub(crate) fn parse_content_length_bytes(s: &[u8]) -> Result<usize, ParseError> {
    let s = scan::trim_bytes(s);
    if s.is_empty() || !s.iter().all(|c| c.is_ascii_digit()) {
        return Err(ParseError::BadContentLength);
    }
    s.iter()
        .try_fold(0usize, |acc, &d| {
            acc.checked_mul(10)?.checked_add(usize::from(d - b'0'))
        })
        .ok_or(ParseError::BadContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let table: &[(&str, Option<usize>)] = &[
            ("0", Some(0)),
            (" 150 ", Some(150)),
            ("007", Some(7)),
            ("-999", None),
            ("", None),
            ("1 2", None),
            ("99999999999999999999999999", None),
        ];
        for (i, want) in table {
            assert_eq!(parse_content_length(i).ok(), *want, "{i}");
        }
    }
}
