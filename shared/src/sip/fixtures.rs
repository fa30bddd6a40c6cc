//! Test and benchmark fixtures (hidden from docs): a realistic 903-byte INVITE
//! with SDP, the message the benchmark measures.

/// A typical INVITE with an SDP offer (CRLF line ends, correct Content-Length).
pub const INVITE_900: &[u8] = include_bytes!("../../tests/fixtures/invite900.sip");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::{check_request, Limits, Message};

    #[test]
    fn fixture_is_valid() {
        let m = Message::parse_datagram(bytes::Bytes::from_static(INVITE_900), &Limits::default())
            .expect("parses");
        assert!(check_request(&m).is_ok());
        assert_eq!(m.len(), INVITE_900.len());
        assert!((850..=950).contains(&m.len()));
        assert_eq!(m.content_length(), Ok(Some(m.body().len())));
        assert!(
            !m.index_spilled(),
            "a typical message fits the inline header index"
        );
    }
}
