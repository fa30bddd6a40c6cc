//! The INVITE client transaction (RFC 3261 §17.1.1, with RFC 6026's
//! Accepted state): Calling → Proceeding → Completed/Accepted → Terminated.
//!
//! ```text
//! RFC 3261 §17.1.1.2: If an unreliable transport is being used, the client
//! transaction MUST start timer A with a value of T1. [...] When timer A
//! fires, the client transaction MUST retransmit the request [...] and reset
//! the timer with a value of 2*T1. [...] If the client transaction is still
//! in the Calling state when timer B fires, the client transaction SHOULD
//! inform the TU that a timeout has occurred.
//! When in either the "Calling" or "Proceeding" states, reception of a
//! response with status code from 300-699 MUST cause the client transaction
//! to transition to "Completed". The client transaction MUST pass the
//! received response up to the TU, and the client transaction MUST generate
//! an ACK request, even if the transport is reliable [...] The client
//! transaction SHOULD start timer D when it enters the "Completed" state,
//! with a value of at least 32 seconds for unreliable transports, and a
//! value of zero seconds for reliable transports. Any retransmissions of the
//! final response that are received while in the "Completed" state MUST
//! cause the ACK to be re-passed to the transport layer for retransmission,
//! but the newly received response MUST NOT be passed up to the TU.
//! RFC 6026 §8.4: [on a 2xx] the client transaction MUST transition to the
//! "Accepted" state, and Timer M MUST be started with a value of 64*T1.
//! [...] any 2xx response [in Accepted] MUST be passed up to the TU.
//! RFC 3261 §9.1: If there is no final response for the original request in
//! 64*T1 seconds [after the CANCEL], the client SHOULD then consider the
//! original transaction cancelled and SHOULD destroy the client transaction
//! handling the original request.
//! ```
//!
//! Timer C (§16.6 step 11) belongs to the proxy core: when it fires, the core
//! sends the CANCEL and calls [`ClientInvite::cancel_sent`].

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{earliest, Action, Timers, Transport, TuEvent};

/// Builds the ACK for a non-2xx final response (§17.1.1.3) from that
/// response's bytes; the caller captures the original INVITE. Called once:
/// retransmitted final responses get the same ACK bytes.
pub type AckBuilder = Box<dyn FnOnce(&Bytes) -> Bytes + Send>;

/// States of [`ClientInvite`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientInviteState {
    /// INVITE sent, no response yet (timers A and B run).
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// A 300–699 arrived and was ACKed; absorbing retransmissions (timer D).
    Completed,
    /// A 2xx arrived (RFC 6026); further 2xx are passed up (timer M).
    Accepted,
    /// Done.
    Terminated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    A,
    B,
    D,
    M,
    /// §9.1: 64*T1 after our CANCEL without a final response.
    Cancel,
}

/// An INVITE client transaction.
pub struct ClientInvite {
    state: ClientInviteState,
    transport: Transport,
    timers: Timers,
    request: Bytes,
    ack_builder: Option<AckBuilder>,
    ack: Option<Bytes>,
    /// Next firing of A and the interval that was used to arm it.
    timer_a: Option<(Instant, Duration)>,
    timer_b: Option<Instant>,
    timer_d: Option<Instant>,
    timer_m: Option<Instant>,
    timer_cancel: Option<Instant>,
}

impl std::fmt::Debug for ClientInvite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientInvite")
            .field("state", &self.state)
            .field("transport", &self.transport)
            .field("poll_timeout", &self.poll_timeout())
            .finish_non_exhaustive()
    }
}

impl ClientInvite {
    /// Starts the transaction: the returned actions send the INVITE.
    pub fn new(
        request: Bytes,
        ack_builder: AckBuilder,
        transport: Transport,
        timers: Timers,
        now: Instant,
    ) -> (Self, Vec<Action>) {
        let tx = ClientInvite {
            state: ClientInviteState::Calling,
            transport,
            timers,
            request: request.clone(),
            ack_builder: Some(ack_builder),
            ack: None,
            timer_a: timers.retransmit(transport).map(|t1| (now + t1, t1)),
            timer_b: Some(now + timers.t1x64()),
            timer_d: None,
            timer_m: None,
            timer_cancel: None,
        };
        (tx, vec![Action::Send(request)])
    }

    /// The current state.
    pub fn state(&self) -> ClientInviteState {
        self.state
    }

    /// The INVITE this transaction sends (for building a CANCEL, §9.1).
    pub fn request(&self) -> &Bytes {
        &self.request
    }

    /// True when a CANCEL may be sent for this INVITE: §9.1 says only after a
    /// provisional response has been received.
    pub fn can_cancel(&self) -> bool {
        self.state == ClientInviteState::Proceeding
    }

    /// CANCEL hook: the TU has sent a CANCEL for this INVITE. If no final
    /// response arrives within 64·T1, the transaction ends with
    /// [`TuEvent::Timeout`] (§9.1), so a peer that never answers 487 cannot
    /// leak it. Idempotent; ignored once a final response arrived.
    pub fn cancel_sent(&mut self, now: Instant) {
        let open = matches!(
            self.state,
            ClientInviteState::Calling | ClientInviteState::Proceeding
        );
        if open && self.timer_cancel.is_none() {
            self.timer_cancel = Some(now + self.timers.t1x64());
        }
    }

    /// A response matched to this transaction (§17.1.3) arrived.
    pub fn handle_response(&mut self, now: Instant, status: u16, message: Bytes) -> Vec<Action> {
        use ClientInviteState::*;
        let mut out = Vec::new();
        if !(100..=699).contains(&status) {
            return out;
        }
        match (self.state, status) {
            (Calling | Proceeding, 100..=199) => {
                self.state = Proceeding;
                // A provisional stops retransmissions and, with them, timer B.
                self.timer_a = None;
                self.timer_b = None;
                out.push(Action::PassUp(TuEvent::Response { status, message }));
            }
            (Calling | Proceeding, 200..=299) => {
                self.state = Accepted;
                self.timer_a = None;
                self.timer_b = None;
                self.timer_cancel = None;
                self.timer_m = Some(now + self.timers.t1x64());
                out.push(Action::PassUp(TuEvent::Response { status, message }));
            }
            (Calling | Proceeding, _) => {
                self.timer_a = None;
                self.timer_b = None;
                self.timer_cancel = None;
                let ack = match self.ack_builder.take() {
                    Some(build) => build(&message),
                    None => Bytes::new(),
                };
                self.ack = Some(ack.clone());
                out.push(Action::Send(ack));
                out.push(Action::PassUp(TuEvent::Response { status, message }));
                let d = self.timers.d(self.transport);
                if d.is_zero() {
                    self.terminate(&mut out);
                } else {
                    self.state = Completed;
                    self.timer_d = Some(now + d);
                }
            }
            (Completed, 300..=699) => {
                if let Some(ack) = &self.ack {
                    out.push(Action::Send(ack.clone()));
                }
            }
            (Accepted, 200..=299) => {
                out.push(Action::PassUp(TuEvent::Response { status, message }));
            }
            // Anything else (late provisionals, a 2xx after a non-2xx, …) is
            // absorbed: the RFC gives it no meaning in that state.
            _ => {}
        }
        out
    }

    /// The transport failed to send the INVITE (§17.1.4).
    pub fn handle_transport_error(&mut self, _now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if matches!(
            self.state,
            ClientInviteState::Calling | ClientInviteState::Proceeding
        ) {
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
            (self.timer_a.map(|(at, _)| at), Timer::A),
            (self.timer_b, Timer::B),
            (self.timer_d, Timer::D),
            (self.timer_m, Timer::M),
            (self.timer_cancel, Timer::Cancel),
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
                Timer::A => {
                    let interval = self.timer_a.map_or(self.timers.t1, |(_, i)| i) * 2;
                    self.timer_a = Some((now + interval, interval));
                    out.push(Action::Send(self.request.clone()));
                }
                Timer::B | Timer::Cancel => {
                    out.push(Action::PassUp(TuEvent::Timeout));
                    self.terminate(&mut out);
                }
                Timer::D | Timer::M => self.terminate(&mut out),
            }
        }
        out
    }

    /// True once Terminated.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientInviteState::Terminated
    }

    fn terminate(&mut self, out: &mut Vec<Action>) {
        self.state = ClientInviteState::Terminated;
        self.timer_a = None;
        self.timer_b = None;
        self.timer_d = None;
        self.timer_m = None;
        self.timer_cancel = None;
        out.push(Action::Terminated);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::testutil::{b, ms, run_until, send_times};

    fn start(tp: Transport) -> (ClientInvite, Instant) {
        let now = Instant::now();
        let ack: AckBuilder = Box::new(|resp: &Bytes| {
            let mut v = b"ACK for ".to_vec();
            v.extend_from_slice(resp);
            Bytes::from(v)
        });
        let (tx, actions) = ClientInvite::new(b("INVITE"), ack, tp, Timers::default(), now);
        assert_eq!(actions, vec![Action::Send(b("INVITE"))]);
        (tx, now)
    }

    fn run(tx: &mut ClientInvite, t0: Instant, until: Duration) -> Vec<(Duration, Vec<Action>)> {
        run_until(
            tx,
            t0,
            until,
            |t| t.poll_timeout(),
            |t, now| t.handle_timeout(now),
        )
    }

    #[test]
    fn timer_a_doubles_until_timer_b_reports_408() {
        let (mut tx, t0) = start(Transport::Unreliable);
        let log = run(&mut tx, t0, Duration::from_secs(60));
        // A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s (doubling, no cap for INVITE).
        assert_eq!(send_times(&log), vec![500, 1500, 3500, 7500, 15500, 31500]);
        let (at, last) = log.last().expect("timer B fired");
        assert_eq!(*at, ms(32_000));
        assert_eq!(
            last,
            &vec![Action::PassUp(TuEvent::Timeout), Action::Terminated]
        );
        assert_eq!(TuEvent::Timeout.status(), Some(408));
        assert!(tx.is_terminated());
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn reliable_transport_never_retransmits_but_times_out() {
        let (mut tx, t0) = start(Transport::Reliable);
        let log = run(&mut tx, t0, Duration::from_secs(60));
        assert_eq!(send_times(&log), Vec::<u128>::new());
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].0, ms(32_000));
    }

    #[test]
    fn provisional_stops_retransmission_and_timer_b() {
        let (mut tx, t0) = start(Transport::Unreliable);
        let a = tx.handle_response(t0 + ms(100), 180, b("180"));
        assert_eq!(
            a,
            vec![Action::PassUp(TuEvent::Response {
                status: 180,
                message: b("180")
            })]
        );
        assert_eq!(tx.state(), ClientInviteState::Proceeding);
        assert!(tx.can_cancel());
        assert_eq!(tx.poll_timeout(), None);
    }

    #[test]
    fn non_2xx_final_acks_and_timer_d_per_transport() {
        // (transport, status, want state after, want timer D)
        let table = [
            (
                Transport::Unreliable,
                486,
                ClientInviteState::Completed,
                Some(ms(32_000)),
            ),
            (
                Transport::Unreliable,
                302,
                ClientInviteState::Completed,
                Some(ms(32_000)),
            ),
            (
                Transport::Reliable,
                486,
                ClientInviteState::Terminated,
                None,
            ),
        ];
        for (tp, status, want_state, want_d) in table {
            let (mut tx, t0) = start(tp);
            let resp = Bytes::from(status.to_string());
            let a = tx.handle_response(t0 + ms(10), status, resp.clone());
            let ack = Bytes::from(format!("ACK for {status}"));
            assert_eq!(a[0], Action::Send(ack.clone()), "{tp:?} {status}");
            assert_eq!(
                a[1],
                Action::PassUp(TuEvent::Response {
                    status,
                    message: resp.clone()
                })
            );
            assert_eq!(tx.state(), want_state, "{tp:?} {status}");
            assert_eq!(tx.poll_timeout().map(|t| t - t0 - ms(10)), want_d);
            if want_state == ClientInviteState::Completed {
                // A retransmitted final: ACK again, nothing passed up.
                let again = tx.handle_response(t0 + ms(600), status, resp);
                assert_eq!(again, vec![Action::Send(ack)]);
                let done = tx.handle_timeout(t0 + ms(10) + ms(32_000));
                assert_eq!(done, vec![Action::Terminated]);
            } else {
                assert_eq!(a.last(), Some(&Action::Terminated));
            }
        }
    }

    #[test]
    fn two_xx_enters_accepted_and_passes_retransmissions_up() {
        let (mut tx, t0) = start(Transport::Unreliable);
        tx.handle_response(t0 + ms(50), 180, b("180"));
        let a = tx.handle_response(t0 + ms(100), 200, b("200"));
        assert_eq!(
            a,
            vec![Action::PassUp(TuEvent::Response {
                status: 200,
                message: b("200")
            })]
        );
        assert_eq!(tx.state(), ClientInviteState::Accepted);
        // Retransmitted 2xx (or one from another fork) goes to the TU.
        let a = tx.handle_response(t0 + ms(600), 200, b("200"));
        assert_eq!(a.len(), 1);
        // A late provisional is absorbed.
        assert!(tx.handle_response(t0 + ms(700), 183, b("183")).is_empty());
        // Timer M = 64*T1.
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(100) + ms(32_000)));
        assert_eq!(tx.handle_timeout(t0 + ms(32_100)), vec![Action::Terminated]);
    }

    #[test]
    fn cancel_hook_only_while_proceeding() {
        // §9.1: CANCEL only after a provisional and before a final response.
        // (responses fed in order, want can_cancel after the last one)
        let table: [(&[u16], bool); 5] = [
            (&[], false),
            (&[100], true),
            (&[180, 183], true),
            (&[180, 486], false),
            (&[180, 200], false),
        ];
        for (responses, want) in table {
            let (mut tx, t0) = start(Transport::Unreliable);
            for &s in responses {
                tx.handle_response(t0 + ms(10), s, b("r"));
            }
            assert_eq!(tx.can_cancel(), want, "{responses:?}");
            assert_eq!(tx.request(), &b("INVITE"));
        }
    }

    #[test]
    fn cancelled_invite_without_final_ends_after_64_t1() {
        let (mut tx, t0) = start(Transport::Unreliable);
        tx.handle_response(t0 + ms(100), 180, b("180"));
        assert_eq!(
            tx.poll_timeout(),
            None,
            "Proceeding waits for the TU's Timer C"
        );
        tx.cancel_sent(t0 + ms(1000));
        tx.cancel_sent(t0 + ms(2000)); // idempotent
        assert_eq!(tx.poll_timeout(), Some(t0 + ms(33_000)));
        let a = tx.handle_timeout(t0 + ms(33_000));
        assert_eq!(
            a,
            vec![Action::PassUp(TuEvent::Timeout), Action::Terminated]
        );

        // A 487 in time disarms it.
        let (mut tx, t0) = start(Transport::Unreliable);
        tx.handle_response(t0 + ms(100), 180, b("180"));
        tx.cancel_sent(t0 + ms(1000));
        tx.handle_response(t0 + ms(1100), 487, b("487"));
        assert_eq!(
            tx.poll_timeout(),
            Some(t0 + ms(1100) + ms(32_000)),
            "only timer D"
        );
    }

    #[test]
    fn transport_error_and_bogus_status() {
        let (mut tx, t0) = start(Transport::Unreliable);
        assert!(tx.handle_response(t0, 99, b("x")).is_empty());
        assert!(tx.handle_response(t0, 700, b("x")).is_empty());
        assert_eq!(
            tx.handle_transport_error(t0),
            vec![Action::PassUp(TuEvent::TransportError), Action::Terminated]
        );
        assert_eq!(TuEvent::TransportError.status(), Some(503));
    }
}
