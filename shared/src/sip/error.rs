//! `ParseError`: everything that can be wrong with a received SIP message, and
//! the one place that maps each fault to the SIP status code a server answers with.
//!
//! ```text
//! RFC 3261 §21.4.1  400 Bad Request: the request could not be understood due to
//!                   malformed syntax. The Reason-Phrase SHOULD identify the
//!                   syntax problem in more detail.
//! RFC 3261 §21.5.14 513 Message Too Large
//! RFC 3261 §21.5.15 505 Version Not Supported
//! RFC 3261 §21.4.17 416 Unsupported URI Scheme
//! RFC 3261 §21.4.15 420 Bad Extension
//! ```

/// A SIP message (or one of its parts) is malformed, too large or not supported.
///
/// [`ParseError::status`] is the single mapping from a fault to the status code of
/// the response; [`ParseError::reason`] (and `Display`) says what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The input ended before the start line was complete (stream: wait for more).
    #[error("incomplete message")]
    Incomplete,
    /// The buffer holds no message at all (empty or only CRLFs).
    #[error("empty message")]
    Empty,
    /// The start line is neither `Method SP Request-URI SP SIP-Version` nor
    /// `SIP-Version SP Status-Code SP Reason-Phrase`.
    #[error("malformed start line")]
    BadStartLine,
    /// The status code of a response is not three digits in 100..=699.
    #[error("bad status code")]
    BadStatus,
    /// The method token contains characters that are not allowed in a token.
    #[error("bad method")]
    BadMethod,
    /// The SIP version is well formed but not SIP/2.0 (505).
    #[error("SIP version not supported")]
    UnsupportedVersion,
    /// A header line has no colon or an invalid field name.
    #[error("malformed header line")]
    BadHeaderLine,
    /// A continuation line (starting with whitespace) appears before any header.
    #[error("continuation line before first header")]
    BadFolding,
    /// Header bytes are not valid UTF-8.
    #[error("header is not UTF-8")]
    NotUtf8,
    /// A header that must appear is absent; the name says which.
    #[error("missing {0} header")]
    MissingHeader(&'static str),
    /// A header that must appear once appears more than once.
    #[error("duplicate {0} header")]
    DuplicateHeader(&'static str),
    /// A header value does not follow its grammar; the name says which header.
    #[error("malformed {0} header")]
    BadHeader(&'static str),
    /// A numeric field is out of range (CSeq > 2^32-1, Max-Forwards > 255 …).
    #[error("{0} value out of range")]
    Overflow(&'static str),
    /// Content-Length is not a non-negative decimal number.
    #[error("bad Content-Length")]
    BadContentLength,
    /// Several Content-Length headers disagree, framing cannot be trusted.
    #[error("conflicting Content-Length headers")]
    ConflictingContentLength,
    /// Content-Length announces more octets than the datagram holds.
    #[error("Content-Length larger than message")]
    ContentLengthTooLarge,
    /// A stream message has no Content-Length (mandatory on streams, RFC 3261 §18.3).
    #[error("missing Content-Length on stream")]
    MissingContentLength,
    /// A URI is malformed.
    #[error("malformed URI")]
    BadUri,
    /// The Request-URI scheme is not sip, sips or tel (416).
    #[error("unsupported URI scheme")]
    UnsupportedScheme,
    /// The CSeq method differs from the request method.
    #[error("CSeq method does not match request method")]
    CSeqMismatch,
    /// A method that is unknown and whose CSeq does not match (501).
    #[error("method not implemented")]
    NotImplemented,
    /// Proxy-Require lists options we do not support (420); the value lists them.
    #[error("bad extension: {0}")]
    BadExtension(String),
    /// The whole message exceeds `Limits::max_message` (513).
    #[error("message too large")]
    MessageTooLarge,
    /// Content-Length announces a body larger than the limit allows (413).
    #[error("body too large")]
    BodyTooLarge,
    /// More headers than `Limits::max_headers` (513).
    #[error("too many headers")]
    TooManyHeaders,
    /// A line longer than `Limits::max_line` (513).
    #[error("line too long")]
    LineTooLong,
    /// The stream ended (peer closed) in the middle of a message.
    #[error("stream ended inside a message")]
    Truncated,
    /// A stream carried bytes that are not a message nor a keepalive; framing is lost.
    #[error("stream framing lost")]
    FramingLost,
}

impl ParseError {
    /// The SIP status code a server answers with (RFC 3261 §21).
    pub fn status(&self) -> u16 {
        match self {
            ParseError::UnsupportedVersion => 505,
            ParseError::UnsupportedScheme => 416,
            ParseError::NotImplemented => 501,
            ParseError::BadExtension(_) => 420,
            ParseError::MessageTooLarge | ParseError::TooManyHeaders | ParseError::LineTooLong => {
                513
            }
            ParseError::BodyTooLarge => 413,
            _ => 400,
        }
    }

    /// A reason phrase that says what was wrong (used in the status line).
    pub fn reason(&self) -> String {
        match self {
            ParseError::UnsupportedVersion => "Version Not Supported".to_owned(),
            ParseError::UnsupportedScheme => "Unsupported URI Scheme".to_owned(),
            ParseError::NotImplemented => "Not Implemented".to_owned(),
            ParseError::BadExtension(_) => "Bad Extension".to_owned(),
            ParseError::MessageTooLarge | ParseError::TooManyHeaders | ParseError::LineTooLong => {
                format!("Message Too Large ({self})")
            }
            ParseError::BodyTooLarge => "Request Entity Too Large".to_owned(),
            other => {
                let mut s = format!("Bad Request ({other})");
                // Reason-Phrase is TEXT-UTF8 without CR/LF; our messages never hold them.
                s.retain(|c| c != '\r' && c != '\n');
                s
            }
        }
    }

    /// The option tags for an `Unsupported` header, for a 420 answer.
    pub fn unsupported(&self) -> Option<&str> {
        match self {
            ParseError::BadExtension(list) => Some(list),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_table() {
        let table: &[(ParseError, u16)] = &[
            (ParseError::BadStartLine, 400),
            (ParseError::UnsupportedVersion, 505),
            (ParseError::UnsupportedScheme, 416),
            (ParseError::MessageTooLarge, 513),
            (ParseError::BodyTooLarge, 413),
            (ParseError::BadExtension("foo".into()), 420),
            (ParseError::NotImplemented, 501),
            (ParseError::Overflow("CSeq"), 400),
        ];
        for (e, s) in table {
            assert_eq!(e.status(), *s, "{e:?}");
            assert!(!e.reason().is_empty());
        }
        assert_eq!(
            ParseError::MissingHeader("Call-ID").reason(),
            "Bad Request (missing Call-ID header)"
        );
        assert_eq!(
            ParseError::BadExtension("a, b".into()).unsupported(),
            Some("a, b")
        );
    }
}
