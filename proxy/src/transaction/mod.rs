//! The RFC 3261 §17 transaction layer: four sans-IO state machines, their
//! timers, transaction matching and a table the I/O layer drives.
//!
//! Every machine is fed `now: Instant` and bytes, and answers with a list of
//! [`Action`]s; none of them touches a socket or a clock (quinn-proto style).
//! After any `handle_*` call the caller re-reads `poll_timeout()` (the
//! [`table::TransactionTable`] does this for you) and calls
//! `handle_timeout(now)` when that instant is reached.
//!
//! ```text
//! RFC 3261 §17: "A transaction is a request sent by a client transaction
//! (using the transport layer) to a server transaction, along with all
//! responses to that request sent from the server transaction back to the
//! client."
//! ```

pub mod client_invite;
pub mod client_non_invite;
pub mod key;
pub mod server_invite;
pub mod server_non_invite;
pub mod table;
pub mod timers;

use std::time::Instant;

use bytes::Bytes;

pub use client_invite::{AckBuilder, ClientInvite, ClientInviteState};
pub use client_non_invite::{ClientNonInvite, ClientNonInviteState};
pub use key::{ClientKey, KeyError, RequestIds, ResponseIds, ServerKey};
pub use server_invite::{ServerInvite, ServerInviteState};
pub use server_non_invite::{ServerNonInvite, ServerNonInviteState};
pub use table::{TableError, Transaction, TransactionTable, TxKey};
pub use timers::{Timers, TimersConfig, Transport};

/// What a state machine asks its caller to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Hand these bytes to the transport toward the peer of the transaction
    /// (request, retransmission, response, 100 Trying or ACK).
    Send(Bytes),
    /// Deliver an event to the transaction user.
    PassUp(TuEvent),
    /// The transaction has reached Terminated; the owner drops it.
    Terminated,
}

/// What the transaction layer tells the transaction user (TU).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TuEvent {
    /// A response received by a client transaction (provisional, final, or a
    /// retransmitted 2xx in RFC 6026's Accepted state).
    Response {
        /// The status code, 100–699.
        status: u16,
        /// The response as received.
        message: Bytes,
    },
    /// A request received by a server transaction: the request that created
    /// it, or (RFC 6026 Accepted state) an ACK for the 2xx.
    Request(Bytes),
    /// Timer B or F fired: §8.1.3.1 says the TU treats this as a 408
    /// (Request Timeout) response; see [`TuEvent::status`].
    Timeout,
    /// Timer H fired in Completed: the ACK for our non-2xx final response
    /// never came (§17.2.1, "a transaction failure has occurred").
    AckTimeout,
    /// The transport reported a failure sending for this transaction
    /// (§17.1.4, §17.2.4); for a client transaction the TU treats it as 503.
    TransportError,
}

impl TuEvent {
    /// The status code the TU should act on, if the event stands for one
    /// (408 for a timeout, §8.1.3.1; 503 for a transport error, §8.1.3.1).
    pub fn status(&self) -> Option<u16> {
        match self {
            TuEvent::Response { status, .. } => Some(*status),
            TuEvent::Timeout => Some(408),
            TuEvent::TransportError => Some(503),
            TuEvent::Request(_) | TuEvent::AckTimeout => None,
        }
    }
}

/// The earliest armed timer of a machine, with which one it is.
pub(crate) fn earliest<K: Copy>(timers: &[(Option<Instant>, K)]) -> Option<(Instant, K)> {
    timers
        .iter()
        .filter_map(|(at, k)| at.map(|at| (at, *k)))
        .min_by_key(|(at, _)| *at)
}

/// Helpers for the simulated-time tests of the four machines.
#[cfg(test)]
pub(crate) mod testutil {
    use super::*;
    use std::time::Duration;

    /// Steps `now` through every timeout of `poll` up to `until`, collecting
    /// `(offset from start, actions)` for each firing.
    pub fn run_until<M>(
        m: &mut M,
        start: Instant,
        until: Duration,
        poll: impl Fn(&M) -> Option<Instant>,
        fire: impl Fn(&mut M, Instant) -> Vec<Action>,
    ) -> Vec<(Duration, Vec<Action>)> {
        let mut out = Vec::new();
        // Bounded: no machine has more than a few dozen firings.
        for _ in 0..1000 {
            let Some(at) = poll(m) else { break };
            if at - start > until {
                break;
            }
            out.push((at - start, fire(m, at)));
        }
        out
    }

    /// Offsets (ms) of the firings whose actions contain a `Send`.
    pub fn send_times(log: &[(Duration, Vec<Action>)]) -> Vec<u128> {
        log.iter()
            .filter(|(_, a)| a.iter().any(|a| matches!(a, Action::Send(_))))
            .map(|(t, _)| t.as_millis())
            .collect()
    }

    pub fn b(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    pub fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }
}
