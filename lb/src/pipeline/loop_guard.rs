//! Step 2 of the request pipeline: the loop guard. Max-Forwards is inserted
//! when missing, refused at 0 and otherwise decremented, never reset (a reset
//! turns a routing loop into an endless one); a request carrying our own
//! branch for the same request is a loop.
//!
//! ```text
//! RFC 3261 §16.3 step 3: If the request has a Max-Forwards value of zero,
//!   the element MUST NOT forward the request ... and return 483.
//! RFC 3261 §16.6 step 3: If the copy does not contain a Max-Forwards header
//!   field, the proxy MUST add one with a field value, which SHOULD be 70.
//!   If the copy contains a Max-Forwards header field, the proxy MUST
//!   decrement its value by one.
//! RFC 3261 §16.3 step 4: ... the request has looped ... the element MUST
//!   respond with a 482 (Loop Detected).
//! ```

use sipedge_shared::sip::{Message, ParseError};

use crate::branch::Branch;

/// What to write into the forwarded request's Max-Forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MaxForwardsEdit {
    /// Absent: insert 70.
    Insert,
    /// Present: replace with this decremented value at this header index.
    Replace(usize, u8),
}

/// Why the request must not be forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoopReject {
    /// Max-Forwards was 0: 483.
    TooManyHops,
    /// Our own branch for this request is in a Via: 482.
    Loop,
    /// Max-Forwards did not parse: 400.
    Bad(ParseError),
}

/// The value inserted when a request carries no Max-Forwards.
pub const DEFAULT_MAX_FORWARDS: &str = "70";

/// Checks and decrements Max-Forwards.
pub fn max_forwards(msg: &Message) -> Result<MaxForwardsEdit, LoopReject> {
    match msg.max_forwards().map_err(LoopReject::Bad)? {
        None => Ok(MaxForwardsEdit::Insert),
        Some(mf) => match mf.decrement() {
            None => Err(LoopReject::TooManyHops),
            Some(next) => {
                let idx = msg
                    .find(sipedge_shared::sip::HeaderName::MaxForwards)
                    .ok_or(LoopReject::TooManyHops)?;
                Ok(MaxForwardsEdit::Replace(idx, next.get()))
            }
        },
    }
}

/// True when a Via carries a branch we would generate for this very request
/// (same loop hash): it has passed through us before unchanged.
pub fn is_loop(msg: &Message, loop_hash: u64) -> bool {
    // Every branch we write starts with `PREFIX`: a message without that
    // text anywhere cannot carry our Via, so one scan spares parsing each Via.
    if memchr::memmem::find(msg.as_bytes(), crate::branch::PREFIX.as_bytes()).is_none() {
        return false;
    }
    msg.vias().flatten().any(|via| {
        via.branch
            .and_then(|b| Branch::parse(b.as_str()))
            .is_some_and(|b| b.loop_part == loop_hash)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use sipedge_shared::sip::Limits;

    fn req(extra: &str) -> Message {
        let text = format!(
            "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n{extra}From: <sip:x@y>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        );
        Message::parse_datagram(Bytes::from(text), &Limits::default()).expect("valid")
    }

    #[test]
    fn max_forwards_table() {
        assert_eq!(max_forwards(&req("")), Ok(MaxForwardsEdit::Insert));
        assert_eq!(
            max_forwards(&req("Max-Forwards: 0\r\n")),
            Err(LoopReject::TooManyHops)
        );
        assert!(matches!(
            max_forwards(&req("Max-Forwards: 1\r\n")),
            Ok(MaxForwardsEdit::Replace(_, 0))
        ));
        assert!(matches!(
            max_forwards(&req("Max-Forwards: 70\r\n")),
            Ok(MaxForwardsEdit::Replace(_, 69))
        ));
        assert!(matches!(
            max_forwards(&req("Max-Forwards: 256\r\n")),
            Err(LoopReject::Bad(_))
        ));
    }

    #[test]
    fn our_branch_with_same_loop_hash_is_a_loop() {
        let b = Branch {
            loop_part: 42,
            txn_part: 7,
            attempt: 0,
        };
        let m = req(&format!("Via: SIP/2.0/UDP lb;branch={b}\r\n"));
        assert!(is_loop(&m, 42));
        assert!(!is_loop(&m, 43));
        assert!(!is_loop(&req(""), 42));
    }
}
