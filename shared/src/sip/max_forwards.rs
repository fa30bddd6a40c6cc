//! `MaxForwards`: the hop limit of a request, 0..=255, built only from valid input.
//!
//! ```text
//! RFC 3261 §20.22 Max-Forwards = "Max-Forwards" HCOLON 1*DIGIT
//!                 The Max-Forwards value is an integer in the range 0-255.
//! RFC 3261 §16.6 step 3: the proxy MUST decrement the Max-Forwards value by one.
//! ```

use super::cseq::parse_u32;
use super::error::ParseError;
use super::scan;

/// A Max-Forwards value (0..=255).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MaxForwards(u8);

impl MaxForwards {
    /// The value RFC 3261 §8.1.1.6 recommends for a new request.
    pub const DEFAULT: MaxForwards = MaxForwards(70);

    /// Build from a number.
    pub fn new(v: u8) -> Self {
        MaxForwards(v)
    }

    /// Parse a raw value; more than 255 is an overflow (400).
    pub fn parse(s: &str) -> Result<MaxForwards, ParseError> {
        Self::parse_bytes(s.as_bytes())
    }

    /// [`MaxForwards::parse`] on the raw value (no text view needed).
    pub(crate) fn parse_bytes(s: &[u8]) -> Result<MaxForwards, ParseError> {
        let s = scan::trim_bytes(s);
        if s.is_empty() || !s.iter().all(u8::is_ascii_digit) {
            return Err(ParseError::BadHeader("Max-Forwards"));
        }
        let v = parse_u32(s).ok_or(ParseError::Overflow("Max-Forwards"))?;
        u8::try_from(v)
            .map(MaxForwards)
            .map_err(|_| ParseError::Overflow("Max-Forwards"))
    }

    /// The number.
    pub fn get(self) -> u8 {
        self.0
    }

    /// One less, or `None` at zero (the request must not be forwarded: 483).
    pub fn decrement(self) -> Option<MaxForwards> {
        self.0.checked_sub(1).map(MaxForwards)
    }
}

impl std::fmt::Display for MaxForwards {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_table() {
        let table: &[(&str, Result<u8, ParseError>)] = &[
            ("70", Ok(70)),
            ("0068", Ok(68)),
            ("0", Ok(0)),
            ("255", Ok(255)),
            ("256", Err(ParseError::Overflow("Max-Forwards"))),
            ("300000000000000", Err(ParseError::Overflow("Max-Forwards"))),
            ("", Err(ParseError::BadHeader("Max-Forwards"))),
            ("7a", Err(ParseError::BadHeader("Max-Forwards"))),
            ("-1", Err(ParseError::BadHeader("Max-Forwards"))),
        ];
        for (i, want) in table {
            assert_eq!(MaxForwards::parse(i).map(MaxForwards::get), *want, "{i}");
        }
        assert_eq!(MaxForwards::new(1).decrement(), Some(MaxForwards::new(0)));
        assert_eq!(MaxForwards::new(0).decrement(), None);
    }
}
