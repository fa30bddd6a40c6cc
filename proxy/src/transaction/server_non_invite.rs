//! The non-INVITE server transaction (RFC 3261 §17.2.2):
//! Trying → Proceeding → Completed → Terminated, timer J.
//!
//! ```text
//! RFC 3261 §17.2.2: Once in the "Trying" state, any further request
//! retransmissions are discarded. [...] If a retransmission of the request
//! is received while in the "Proceeding" state, the most recently sent
//! provisional response MUST be passed to the transport layer for
//! retransmission. [...] When the server transaction enters the "Completed"
//! state, it MUST set Timer J to fire in 64*T1 seconds for unreliable
//! transports, and zero seconds for reliable transports. While in the
//! "Completed" state, the server transaction MUST pass the final response to
//! the transport layer for retransmission whenever a retransmission of the
//! request is received. Any other final responses passed by the TU to the
//! server transaction MUST be discarded while in the "Completed" state.
//! ```

use std::time::Instant;

use bytes::Bytes;

use super::{Action, Timers, Transport, TuEvent};

/// States of [`ServerNonInvite`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerNonInviteState {
    /// The request is with the TU; retransmissions are discarded.
    Trying,
    /// A provisional was sent.
    Proceeding,
    /// A final response was sent; re-sent on each retransmission (J).
    Completed,
    /// Done.
    Terminated,
}

/// A non-INVITE server transaction (also used for CANCEL, which is its own
/// transaction, §9.2).
#[derive(Debug)]
pub struct ServerNonInvite {
    state: ServerNonInviteState,
    transport: Transport,
    timers: Timers,
    last_response: Option<Bytes>,
    timer_j: Option<Instant>,
}

impl ServerNonInvite {
    /// Creates the transaction for a new request; the returned actions pass
    /// it up to the TU.
    pub fn new(request: Bytes, transport: Transport, timers: Timers) -> (Self, Vec<Action>) {
        let tx = ServerNonInvite {
            state: ServerNonInviteState::Trying,
            transport,
            timers,
            last_response: None,
            timer_j: None,
        };
        (tx, vec![Action::PassUp(TuEvent::Request(request))])
    }

    /// The current state.
    pub fn state(&self) -> ServerNonInviteState {
        self.state
    }

    /// A retransmission of the request arrived.
    pub fn handle_request(&mut self, _now: Instant, _message: Bytes) -> Vec<Action> {
        match (self.state, &self.last_response) {
            (ServerNonInviteState::Proceeding | ServerNonInviteState::Completed, Some(r)) => {
                vec![Action::Send(r.clone())]
            }
            _ => Vec::new(),
        }
    }

    /// The TU sends a response on this transaction.
    pub fn send_response(&mut self, now: Instant, status: u16, message: Bytes) -> Vec<Action> {
        use ServerNonInviteState::*;
        let mut out = Vec::new();
        match (self.state, status) {
            (Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                self.last_response = Some(message.clone());
                out.push(Action::Send(message));
            }
            (Trying | Proceeding, 200..=699) => {
                self.last_response = Some(message.clone());
                out.push(Action::Send(message));
                let j = self.timers.j(self.transport);
                if j.is_zero() {
                    self.terminate(&mut out);
                } else {
                    self.state = Completed;
                    self.timer_j = Some(now + j);
                }
            }
            _ => {}
        }
        out
    }

    /// The transport failed to send a response (§17.2.4).
    pub fn handle_transport_error(&mut self, _now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if !self.is_terminated() {
            out.push(Action::PassUp(TuEvent::TransportError));
            self.terminate(&mut out);
        }
        out
    }

    /// When `handle_timeout` must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timer_j
    }

    /// Fires timer J if due.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.timer_j.is_some_and(|j| j <= now) {
            self.terminate(&mut out);
        }
        out
    }

    /// True once Terminated.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerNonInviteState::Terminated
    }

    fn terminate(&mut self, out: &mut Vec<Action>) {
        self.state = ServerNonInviteState::Terminated;
        self.timer_j = None;
        out.push(Action::Terminated);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::testutil::{b, ms};

    fn start(tp: Transport) -> (ServerNonInvite, Instant) {
        let (tx, a) = ServerNonInvite::new(b("REGISTER"), tp, Timers::default());
        assert_eq!(a, vec![Action::PassUp(TuEvent::Request(b("REGISTER")))]);
        (tx, Instant::now())
    }

    #[test]
    fn trying_discards_retransmissions() {
        let (mut tx, t0) = start(Transport::Unreliable);
        assert!(tx.handle_request(t0 + ms(500), b("REGISTER")).is_empty());
        assert_eq!(tx.poll_timeout(), None, "no timer before a final response");
    }

    #[test]
    fn proceeding_resends_last_provisional() {
        let (mut tx, t0) = start(Transport::Unreliable);
        assert_eq!(
            tx.send_response(t0, 100, b("100")),
            vec![Action::Send(b("100"))]
        );
        assert_eq!(tx.state(), ServerNonInviteState::Proceeding);
        assert_eq!(
            tx.handle_request(t0 + ms(500), b("R")),
            vec![Action::Send(b("100"))]
        );
    }

    #[test]
    fn completed_and_timer_j_per_transport() {
        let table = [
            (Transport::Unreliable, Some(ms(32_000))),
            (Transport::Reliable, None),
        ];
        for (tp, want_j) in table {
            let (mut tx, t0) = start(tp);
            let a = tx.send_response(t0, 200, b("200"));
            assert_eq!(a[0], Action::Send(b("200")));
            match want_j {
                Some(j) => {
                    assert_eq!(tx.state(), ServerNonInviteState::Completed);
                    assert_eq!(tx.poll_timeout(), Some(t0 + j));
                    // Retransmitted request → final again; later finals dropped.
                    assert_eq!(
                        tx.handle_request(t0 + ms(1), b("R")),
                        vec![Action::Send(b("200"))]
                    );
                    assert!(tx.send_response(t0 + ms(2), 500, b("500")).is_empty());
                    assert!(tx.handle_timeout(t0 + j - ms(1)).is_empty());
                    assert_eq!(tx.handle_timeout(t0 + j), vec![Action::Terminated]);
                }
                None => assert_eq!(a.last(), Some(&Action::Terminated)),
            }
        }
    }

    #[test]
    fn transport_error() {
        let (mut tx, t0) = start(Transport::Reliable);
        assert_eq!(
            tx.handle_transport_error(t0),
            vec![Action::PassUp(TuEvent::TransportError), Action::Terminated]
        );
    }
}
