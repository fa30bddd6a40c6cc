//! Our Via branch (RFC 3261 §16.6 step 8, §16.11): computable by any LB from
//! the request alone, so retransmissions, CANCEL and the ACK for a non-2xx
//! map to the same transaction without shared state, and a request that
//! comes back to us carrying our own branch is recognised as a loop.
//!
//! ```text
//! RFC 3261 §16.6 step 8: ... the branch parameter value MUST be unique across
//!   space and time for all requests sent by the proxy ... a proxy MAY use
//!   the stateless scheme of §16.11 ...
//! RFC 3261 §16.3 step 4: ... if the request contains a Via header field with
//!   a sent-by value that equals a value placed into previous requests by the
//!   proxy, the request has been forwarded by this element before. [...] the
//!   request has looped ... [unless] the Request-URI or Route changed (spiral).
//! ```
//!
//! Layout: `z9hG4bK` `se` LOOP(16 hex) TXN(16 hex) ATTEMPT(1 hex) where
//! LOOP hashes what identifies the request on its path (Request-URI, From
//! tag, To tag, Call-ID, CSeq number, top Route) and TXN adds the client's
//! top Via branch and sent-by. The method is left out so CANCEL and ACK land
//! on their INVITE's transaction; ATTEMPT counts failovers (0..=15).

use sipedge_shared::hash::{fmix64, fnv1a64};

/// The RFC 3261 magic cookie plus our marker.
pub const PREFIX: &str = "z9hG4bKse";
const LEN: usize = PREFIX.len() + 16 + 16 + 1;

/// What the branch is computed from (borrowed from the request).
#[derive(Debug, Clone, Copy, Default)]
pub struct BranchInput<'a> {
    /// Request-URI as received.
    pub request_uri: &'a str,
    /// From tag.
    pub from_tag: &'a str,
    /// To tag ("" outside a dialog).
    pub to_tag: &'a str,
    /// Call-ID.
    pub call_id: &'a str,
    /// CSeq number.
    pub cseq: u32,
    /// Top Route value after our own entries were popped ("" if none).
    pub top_route: &'a str,
    /// The client's top Via branch.
    pub via_branch: &'a str,
    /// The client's top Via sent-by (host:port as written).
    pub via_sent_by: &'a str,
}

fn mix(h: u64, part: &[u8]) -> u64 {
    // Hashing each part on its own and mixing keeps ("ab","c") and
    // ("a","bc") apart.
    fmix64((h ^ fnv1a64(part)).wrapping_add(0x9e37_79b9_7f4a_7c15))
}

/// The loop hash: equal for the same request coming back to us.
pub fn loop_hash(i: &BranchInput<'_>) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325;
    for part in [i.request_uri, i.from_tag, i.to_tag, i.call_id, i.top_route] {
        h = mix(h, part.as_bytes());
    }
    mix(h, &i.cseq.to_be_bytes())
}

/// The transaction id part: adds the client's own Via.
pub fn txn_hash(loop_hash: u64, i: &BranchInput<'_>) -> u64 {
    mix(
        mix(loop_hash, i.via_branch.as_bytes()),
        i.via_sent_by.as_bytes(),
    )
}

/// Our branch for one attempt (0 for the first proxy, +1 per failover).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Branch {
    /// Loop part.
    pub loop_part: u64,
    /// Transaction part.
    pub txn_part: u64,
    /// Failover attempt, 0..=15.
    pub attempt: u8,
}

impl Branch {
    /// Computes the branch of a request.
    pub fn compute(i: &BranchInput<'_>, attempt: u8) -> Branch {
        let loop_part = loop_hash(i);
        Branch {
            loop_part,
            txn_part: txn_hash(loop_part, i),
            attempt: attempt.min(15),
        }
    }

    /// The transaction key shared by all attempts.
    pub fn key(&self) -> (u64, u64) {
        (self.loop_part, self.txn_part)
    }

    /// The same transaction at another attempt.
    pub fn with_attempt(self, attempt: u8) -> Branch {
        Branch {
            attempt: attempt.min(15),
            ..self
        }
    }

    /// Parses one of our branches; `None` for anyone else's.
    pub fn parse(s: &str) -> Option<Branch> {
        if s.len() != LEN || !s.starts_with(PREFIX) {
            return None;
        }
        let hex = s.get(PREFIX.len()..)?;
        Some(Branch {
            loop_part: u64::from_str_radix(hex.get(..16)?, 16).ok()?,
            txn_part: u64::from_str_radix(hex.get(16..32)?, 16).ok()?,
            attempt: u8::from_str_radix(hex.get(32..33)?, 16).ok()?,
        })
    }
}

impl std::fmt::Display for Branch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // By hand, not `{:016x}`: this runs for every forwarded request.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; PREFIX.len() + 32 + 16];
        buf[..PREFIX.len()].copy_from_slice(PREFIX.as_bytes());
        let mut n = PREFIX.len();
        for part in [self.loop_part, self.txn_part] {
            for shift in (0..16).rev() {
                buf[n] = HEX[((part >> (shift * 4)) & 0xf) as usize];
                n += 1;
            }
        }
        let digits = (u64::BITS - u64::from(self.attempt).leading_zeros())
            .div_ceil(4)
            .max(1);
        for shift in (0..digits).rev() {
            buf[n] = HEX[((u64::from(self.attempt) >> (shift * 4)) & 0xf) as usize];
            n += 1;
        }
        f.write_str(std::str::from_utf8(&buf[..n]).map_err(|_| std::fmt::Error)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input() -> BranchInput<'static> {
        BranchInput {
            request_uri: "sip:alice@example.com",
            from_tag: "1928301774",
            to_tag: "",
            call_id: "a84b4c76e66710",
            cseq: 314159,
            top_route: "",
            via_branch: "z9hG4bK776asdhds",
            via_sent_by: "pc33.atlanta.com",
        }
    }

    #[test]
    fn deterministic_and_round_trips() {
        let b = Branch::compute(&input(), 0);
        assert_eq!(b, Branch::compute(&input(), 0));
        let s = b.to_string();
        assert_eq!(s.len(), LEN);
        assert_eq!(Branch::parse(&s), Some(b));
        let s3 = Branch::compute(&input(), 3).to_string();
        assert_eq!(Branch::parse(&s3).map(|b| b.attempt), Some(3));
        assert_eq!(b.with_attempt(3).to_string(), s3);
    }

    #[test]
    fn display_is_the_documented_hex_layout() {
        let b = Branch::compute(&input(), 0);
        for attempt in [0u8, 3, 15, 16, 255] {
            let b = Branch { attempt, ..b };
            let want = format!(
                "{PREFIX}{:016x}{:016x}{:x}",
                b.loop_part, b.txn_part, b.attempt
            );
            assert_eq!(b.to_string(), want);
        }
    }

    #[test]
    fn retransmission_and_cancel_share_the_key_other_requests_do_not() {
        let a = Branch::compute(&input(), 0);
        let mut other = input();
        other.cseq += 1;
        assert_ne!(a.key(), Branch::compute(&other, 0).key());
        let mut other = input();
        other.via_branch = "z9hG4bKother";
        let b = Branch::compute(&other, 0);
        assert_eq!(a.loop_part, b.loop_part, "same request on its path");
        assert_ne!(a.txn_part, b.txn_part, "different client transaction");
    }

    #[test]
    fn spiral_changes_the_loop_part() {
        let mut spiral = input();
        spiral.request_uri = "sip:alice@10.0.0.7";
        assert_ne!(
            Branch::compute(&input(), 0).loop_part,
            Branch::compute(&spiral, 0).loop_part
        );
    }

    #[test]
    fn foreign_branches_do_not_parse() {
        for s in [
            "",
            "z9hG4bK776asdhds",
            "z9hG4bKse",
            "z9hG4bKsexxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
            "z9hG4bKse0123456789abcdef0123456789abcdef",
            "z9hG4bKse0123456789abcdef0123456789abcdéf",
        ] {
            assert_eq!(Branch::parse(s), None, "{s}");
        }
    }
}
