//! The INVITE server transaction (RFC 3261 §17.2.1, with RFC 6026's
//! Accepted state): Proceeding → Completed → Confirmed, or Accepted on 2xx.
//!
//! ```text
//! RFC 3261 §17.2.1: The server transaction MUST generate a 100 (Trying)
//! response unless it knows that the TU will generate a provisional or
//! final response within 200 ms [...] If a request retransmission is
//! received while in the "Proceeding" state, the most recent provisional
//! response that was received from the TU MUST be passed to the transport
//! layer for retransmission. [...] While in the "Proceeding" state, if the
//! TU passes a response with status code from 300 to 699 to the server
//! transaction, [...] the state machine MUST enter the "Completed" state.
//! For unreliable transports, timer G is set to fire in T1 seconds [...]
//! When the "Completed" state is entered, timer H MUST be set to fire in
//! 64*T1 seconds for all transports. [...] If timer G fires, the response is
//! passed to the transport layer once more for retransmission, and timer G
//! is set to fire in MIN(2*T1, T2) seconds. [...] If an ACK is received
//! while the server transaction is in the "Completed" state, the server
//! transaction MUST transition to the "Confirmed" state. [...] timer I is
//! set to fire in T4 seconds for unreliable transports, and zero seconds
//! for reliable transports.
//! RFC 6026 §8.5-8.7: a 2xx from the TU moves the transaction to
//! "Accepted" with Timer L = 64*T1; retransmitted INVITEs are absorbed, 2xx
//! retransmissions from the TU are sent, ACKs are passed up to the TU.
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{earliest, Action, Timers, Transport, TuEvent};

/// States of [`ServerInvite`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerInviteState {
    /// The INVITE is with the TU; provisionals may be sent.
    Proceeding,
    /// A 300–699 was sent; retransmitting it (G) until ACK or timeout (H).
    Completed,
    /// The ACK arrived; absorbing ACK retransmissions (I).
    Confirmed,
    /// A 2xx was sent (RFC 6026); ACKs go to the TU (L).
    Accepted,
    /// Done.
    Terminated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    Trying,
    G,
    H,
    I,
    L,
}

/// An INVITE server transaction.
#[derive(Debug)]
pub struct ServerInvite {
    state: ServerInviteState,
    transport: Transport,
    timers: Timers,
    trying: Bytes,
    timer_trying: Option<Instant>,
    /// The most recent response from the TU (or our own 100 Trying).
    last_response: Option<Bytes>,
    timer_g: Option<(Instant, Duration)>,
    timer_h: Option<Instant>,
    timer_i: Option<Instant>,
    timer_l: Option<Instant>,
}

impl ServerInvite {
    /// Creates the transaction for a new INVITE. `trying` is the 100 (Trying)
    /// response to send if the TU has not answered within
    /// [`Timers::trying_delay`] (zero: at once). The returned actions pass
    /// the INVITE up to the TU.
    pub fn new(
        request: Bytes,
        trying: Bytes,
        transport: Transport,
        timers: Timers,
        now: Instant,
    ) -> (Self, Vec<Action>) {
        let mut tx = ServerInvite {
            state: ServerInviteState::Proceeding,
            transport,
            timers,
            trying,
            timer_trying: Some(now + timers.trying_delay),
            last_response: None,
            timer_g: None,
            timer_h: None,
            timer_i: None,
            timer_l: None,
        };
        let mut out = vec![Action::PassUp(TuEvent::Request(request))];
        if timers.trying_delay.is_zero() {
            tx.send_trying(&mut out);
        }
        (tx, out)
    }

    /// The current state.
    pub fn state(&self) -> ServerInviteState {
        self.state
    }

    /// CANCEL hook (§9.2, §16.10): a CANCEL matched to this INVITE takes
    /// effect only while no final response has been sent. The TU answers the
    /// CANCEL 200 in its own transaction and then sends 487 here.
    pub fn is_cancellable(&self) -> bool {
        self.state == ServerInviteState::Proceeding
    }

    /// A request matched to this transaction (§17.2.3) arrived: a
    /// retransmitted INVITE (`is_ack == false`) or an ACK.
    pub fn handle_request(&mut self, now: Instant, is_ack: bool, message: Bytes) -> Vec<Action> {
        use ServerInviteState::*;
        let mut out = Vec::new();
        match (self.state, is_ack) {
            (Proceeding, false) => match &self.last_response {
                Some(r) => out.push(Action::Send(r.clone())),
                // The client is already retransmitting: answer now rather
                // than wait for the 200 ms mark.
                None => self.send_trying(&mut out),
            },
            (Completed, false) => {
                if let Some(r) = &self.last_response {
                    out.push(Action::Send(r.clone()));
                }
            }
            (Completed, true) => {
                self.timer_g = None;
                self.timer_h = None;
                let i = self.timers.i(self.transport);
                if i.is_zero() {
                    self.terminate(&mut out);
                } else {
                    self.state = Confirmed;
                    self.timer_i = Some(now + i);
                }
            }
            (Accepted, true) => out.push(Action::PassUp(TuEvent::Request(message))),
            // Proceeding+ACK cannot match a non-2xx yet; Confirmed absorbs
            // ACKs; Accepted absorbs INVITE retransmissions (RFC 6026 §8.7).
            _ => {}
        }
        out
    }

    /// The TU sends a response on this transaction.
    pub fn send_response(&mut self, now: Instant, status: u16, message: Bytes) -> Vec<Action> {
        use ServerInviteState::*;
        let mut out = Vec::new();
        match (self.state, status) {
            (Proceeding, 100..=199) => {
                self.timer_trying = None;
                self.last_response = Some(message.clone());
                out.push(Action::Send(message));
            }
            (Proceeding, 200..=299) => {
                self.timer_trying = None;
                self.last_response = Some(message.clone());
                out.push(Action::Send(message));
                self.state = Accepted;
                self.timer_l = Some(now + self.timers.t1x64());
            }
            (Proceeding, 300..=699) => {
                self.timer_trying = None;
                self.last_response = Some(message.clone());
                out.push(Action::Send(message));
                self.state = Completed;
                self.timer_g = self
                    .timers
                    .retransmit(self.transport)
                    .map(|t1| (now + t1, t1));
                self.timer_h = Some(now + self.timers.t1x64());
            }
            // RFC 6026 §8.6: the TU's 2xx retransmissions are sent as is.
            (Accepted, 200..=299) => out.push(Action::Send(message)),
            // Anything else is a TU bug; a stray response must not reach the wire.
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
        self.next_timer().map(|(at, _)| at)
    }

    fn next_timer(&self) -> Option<(Instant, Timer)> {
        earliest(&[
            (self.timer_trying, Timer::Trying),
            (self.timer_g.map(|(at, _)| at), Timer::G),
            (self.timer_h, Timer::H),
            (self.timer_i, Timer::I),
            (self.timer_l, Timer::L),
        ])
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some((at, timer)) = self.next_timer() {
            if at > now {
                break;
            }
            match timer {
                Timer::Trying => self.send_trying(&mut out),
                Timer::G => {
                    let prev = self.timer_g.map_or(self.timers.t1, |(_, i)| i);
                    let interval = (prev * 2).min(self.timers.t2);
                    self.timer_g = Some((now + interval, interval));
                    if let Some(r) = &self.last_response {
                        out.push(Action::Send(r.clone()));
                    }
                }
                Timer::H => {
                    out.push(Action::PassUp(TuEvent::AckTimeout));
                    self.terminate(&mut out);
                }
                Timer::I | Timer::L => self.terminate(&mut out),
            }
        }
        out
    }

    /// True once Terminated.
    pub fn is_terminated(&self) -> bool {
        self.state == ServerInviteState::Terminated
    }

    fn send_trying(&mut self, out: &mut Vec<Action>) {
        self.timer_trying = None;
        self.last_response = Some(self.trying.clone());
        out.push(Action::Send(self.trying.clone()));
    }

    fn terminate(&mut self, out: &mut Vec<Action>) {
        self.state = ServerInviteState::Terminated;
        self.timer_trying = None;
        self.timer_g = None;
        self.timer_h = None;
        self.timer_i = None;
        self.timer_l = None;
        out.push(Action::Terminated);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::testutil::{b, ms, run_until, send_times};

    fn start(tp: Transport) -> (ServerInvite, Instant) {
        let now = Instant::now();
        let (tx, a) = ServerInvite::new(b("INVITE"), b("100"), tp, Timers::default(), now);
        assert_eq!(a, vec![Action::PassUp(TuEvent::Request(b("INVITE")))]);
        (tx, now)
    }

    fn run(tx: &mut ServerInvite, t0: Instant, until: Duration) -> Vec<(Duration, Vec<Action>)> {
        run_until(
            tx,
            t0,
            until,
            |t| t.poll_timeout(),
            |t, now| t.handle_timeout(now),
        )
    }

    #[test]
    fn sends_100_trying_after_200ms_when_tu_is_silent() {
        let (mut tx, t0) = start(Transport::Unreliable);
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(200)));
        assert!(tx.handle_timeout(t0 + ms(199)).is_empty());
        assert_eq!(
            tx.handle_timeout(t0 + ms(200)),
            vec![Action::Send(b("100"))]
        );
        // A retransmitted INVITE gets the 100 again.
        assert_eq!(
            tx.handle_request(t0 + ms(500), false, b("INVITE")),
            vec![Action::Send(b("100"))]
        );
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn no_100_when_tu_answers_in_time() {
        let (mut tx, t0) = start(Transport::Unreliable);
        assert_eq!(
            tx.send_response(t0 + ms(50), 180, b("180")),
            vec![Action::Send(b("180"))]
        );
        assert_eq!(tx.poll_timeout(), None);
        // Retransmission → most recent provisional.
        assert_eq!(
            tx.handle_request(t0 + ms(500), false, b("INVITE")),
            vec![Action::Send(b("180"))]
        );
    }

    #[test]
    fn zero_delay_sends_100_at_once_and_early_retransmission_triggers_it() {
        let t0 = Instant::now();
        let timers = Timers {
            trying_delay: Duration::ZERO,
            ..Timers::default()
        };
        let (_, a) = ServerInvite::new(b("INVITE"), b("100"), Transport::Unreliable, timers, t0);
        assert_eq!(a[1], Action::Send(b("100")));
        let (mut tx, t0) = start(Transport::Unreliable);
        assert_eq!(
            tx.handle_request(t0 + ms(100), false, b("INVITE")),
            vec![Action::Send(b("100"))]
        );
        assert_eq!(tx.poll_timeout(), None, "100 already sent; no timer");
    }

    #[test]
    fn non_2xx_retransmits_with_g_until_h() {
        let (mut tx, t0) = start(Transport::Unreliable);
        tx.send_response(t0, 486, b("486"));
        assert_eq!(tx.state(), ServerInviteState::Completed);
        assert!(!tx.is_cancellable());
        let log = run(&mut tx, t0, Duration::from_secs(60));
        // G: 0.5, 1.5, 3.5, 7.5, then every T2 until H at 64*T1.
        assert_eq!(
            send_times(&log),
            vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        let (at, last) = log.last().expect("H fired");
        assert_eq!(*at, ms(32_000));
        assert_eq!(
            last,
            &vec![Action::PassUp(TuEvent::AckTimeout), Action::Terminated]
        );
    }

    #[test]
    fn completed_resends_final_on_retransmission_and_ack_confirms() {
        // (transport, want timer I)
        for (tp, want_i) in [
            (Transport::Unreliable, Some(ms(5000))),
            (Transport::Reliable, None),
        ] {
            let (mut tx, t0) = start(tp);
            tx.send_response(t0 + ms(10), 404, b("404"));
            if tp == Transport::Reliable {
                // Reliable: no G, only H.
                assert_eq!(tx.poll_timeout(), Some(t0 + ms(10) + ms(32_000)));
            }
            let again = tx.handle_request(t0 + ms(20), false, b("INVITE"));
            assert_eq!(again, vec![Action::Send(b("404"))]);
            let ack = tx.handle_request(t0 + ms(30), true, b("ACK"));
            match want_i {
                Some(i) => {
                    assert!(ack.is_empty());
                    assert_eq!(tx.state(), ServerInviteState::Confirmed);
                    assert_eq!(tx.poll_timeout(), Some(t0 + ms(30) + i));
                    // ACK retransmissions are absorbed, nothing passed up.
                    assert!(tx.handle_request(t0 + ms(40), true, b("ACK")).is_empty());
                    assert!(tx
                        .handle_request(t0 + ms(40), false, b("INVITE"))
                        .is_empty());
                    assert_eq!(tx.handle_timeout(t0 + ms(30) + i), vec![Action::Terminated]);
                }
                None => assert_eq!(ack, vec![Action::Terminated]),
            }
        }
    }

    #[test]
    fn two_xx_enters_accepted_acks_pass_up() {
        let (mut tx, t0) = start(Transport::Unreliable);
        assert_eq!(
            tx.send_response(t0, 200, b("200")),
            vec![Action::Send(b("200"))]
        );
        assert_eq!(tx.state(), ServerInviteState::Accepted);
        // INVITE retransmissions absorbed; the TU retransmits 2xx itself.
        assert!(tx
            .handle_request(t0 + ms(500), false, b("INVITE"))
            .is_empty());
        assert_eq!(
            tx.send_response(t0 + ms(500), 200, b("200")),
            vec![Action::Send(b("200"))]
        );
        assert_eq!(
            tx.handle_request(t0 + ms(600), true, b("ACK")),
            vec![Action::PassUp(TuEvent::Request(b("ACK")))]
        );
        // A non-2xx after 2xx never reaches the wire.
        assert!(tx.send_response(t0 + ms(700), 500, b("500")).is_empty());
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(32_000)));
        assert_eq!(tx.handle_timeout(t0 + ms(32_000)), vec![Action::Terminated]);
    }

    #[test]
    fn cancel_hook_then_487() {
        let (mut tx, t0) = start(Transport::Unreliable);
        tx.handle_timeout(t0 + ms(200));
        assert!(tx.is_cancellable());
        // The TU received a matching CANCEL: it answers 487 here.
        assert_eq!(
            tx.send_response(t0 + ms(300), 487, b("487")),
            vec![Action::Send(b("487"))]
        );
        assert!(!tx.is_cancellable());
        assert_eq!(tx.state(), ServerInviteState::Completed);
    }

    #[test]
    fn transport_error() {
        let (mut tx, t0) = start(Transport::Reliable);
        assert_eq!(
            tx.handle_transport_error(t0),
            vec![Action::PassUp(TuEvent::TransportError), Action::Terminated]
        );
        assert!(tx.handle_transport_error(t0).is_empty());
    }
}
