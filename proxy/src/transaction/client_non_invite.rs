//! The non-INVITE client transaction (RFC 3261 §17.1.2):
//! Trying → Proceeding → Completed → Terminated, timers E, F and K.
//!
//! ```text
//! RFC 3261 §17.1.2.2: [...] timer F MUST be set to fire in 64*T1 seconds.
//! If an unreliable transport is in use, the client transaction MUST set
//! timer E to fire in T1 seconds. If timer E fires while still in this
//! state, the timer is reset, but this time with a value of MIN(2*T1, T2).
//! [...] If Timer E fires while in the "Proceeding" state, the request MUST
//! be passed to the transport layer for retransmission, and Timer E MUST be
//! reset with a value of T2 seconds. If timer F fires while in the
//! "Proceeding" state, the TU MUST be informed of a timeout [...]
//! Once the client transaction enters the "Completed" state, it MUST set
//! Timer K to fire in T4 seconds for unreliable transports, and zero
//! seconds for reliable transports.
//! ```

use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{earliest, Action, Timers, Transport, TuEvent};

/// States of [`ClientNonInvite`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientNonInviteState {
    /// Request sent, no response yet.
    Trying,
    /// A provisional response arrived.
    Proceeding,
    /// A final response arrived; absorbing its retransmissions (timer K).
    Completed,
    /// Done.
    Terminated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    E,
    F,
    K,
}

/// A non-INVITE client transaction.
#[derive(Debug)]
pub struct ClientNonInvite {
    state: ClientNonInviteState,
    transport: Transport,
    timers: Timers,
    request: Bytes,
    timer_e: Option<(Instant, Duration)>,
    timer_f: Option<Instant>,
    timer_k: Option<Instant>,
}

impl ClientNonInvite {
    /// Starts the transaction: the returned actions send the request.
    pub fn new(
        request: Bytes,
        transport: Transport,
        timers: Timers,
        now: Instant,
    ) -> (Self, Vec<Action>) {
        let tx = ClientNonInvite {
            state: ClientNonInviteState::Trying,
            transport,
            timers,
            request: request.clone(),
            timer_e: timers.retransmit(transport).map(|t1| (now + t1, t1)),
            timer_f: Some(now + timers.t1x64()),
            timer_k: None,
        };
        (tx, vec![Action::Send(request)])
    }

    /// The current state.
    pub fn state(&self) -> ClientNonInviteState {
        self.state
    }

    /// A response matched to this transaction (§17.1.3) arrived.
    pub fn handle_response(&mut self, now: Instant, status: u16, message: Bytes) -> Vec<Action> {
        use ClientNonInviteState::*;
        let mut out = Vec::new();
        if !(100..=699).contains(&status) {
            return out;
        }
        match (self.state, status) {
            (Trying | Proceeding, 100..=199) => {
                self.state = Proceeding;
                out.push(Action::PassUp(TuEvent::Response { status, message }));
            }
            (Trying | Proceeding, _) => {
                self.timer_e = None;
                self.timer_f = None;
                out.push(Action::PassUp(TuEvent::Response { status, message }));
                let k = self.timers.k(self.transport);
                if k.is_zero() {
                    self.terminate(&mut out);
                } else {
                    self.state = Completed;
                    self.timer_k = Some(now + k);
                }
            }
            // Completed absorbs every retransmission (§17.1.2.2).
            _ => {}
        }
        out
    }

    /// The transport failed to send the request (§17.1.4).
    pub fn handle_transport_error(&mut self, _now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if matches!(
            self.state,
            ClientNonInviteState::Trying | ClientNonInviteState::Proceeding
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
            (self.timer_e.map(|(at, _)| at), Timer::E),
            (self.timer_f, Timer::F),
            (self.timer_k, Timer::K),
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
                Timer::E => {
                    let prev = self.timer_e.map_or(self.timers.t1, |(_, i)| i);
                    let interval = match self.state {
                        ClientNonInviteState::Proceeding => self.timers.t2,
                        _ => (prev * 2).min(self.timers.t2),
                    };
                    self.timer_e = Some((now + interval, interval));
                    out.push(Action::Send(self.request.clone()));
                }
                Timer::F => {
                    out.push(Action::PassUp(TuEvent::Timeout));
                    self.terminate(&mut out);
                }
                Timer::K => self.terminate(&mut out),
            }
        }
        out
    }

    /// True once Terminated.
    pub fn is_terminated(&self) -> bool {
        self.state == ClientNonInviteState::Terminated
    }

    fn terminate(&mut self, out: &mut Vec<Action>) {
        self.state = ClientNonInviteState::Terminated;
        self.timer_e = None;
        self.timer_f = None;
        self.timer_k = None;
        out.push(Action::Terminated);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::testutil::{b, ms, run_until, send_times};

    fn start(tp: Transport) -> (ClientNonInvite, Instant) {
        let now = Instant::now();
        let (tx, a) = ClientNonInvite::new(b("OPTIONS"), tp, Timers::default(), now);
        assert_eq!(a, vec![Action::Send(b("OPTIONS"))]);
        (tx, now)
    }

    fn run(tx: &mut ClientNonInvite, t0: Instant, until: Duration) -> Vec<(Duration, Vec<Action>)> {
        run_until(
            tx,
            t0,
            until,
            |t| t.poll_timeout(),
            |t, now| t.handle_timeout(now),
        )
    }

    #[test]
    fn timer_e_doubles_capped_at_t2_then_f_reports_408() {
        let (mut tx, t0) = start(Transport::Unreliable);
        let log = run(&mut tx, t0, Duration::from_secs(60));
        // 0.5, 1.5, 3.5, 7.5, then every T2 = 4 s until F at 32 s.
        assert_eq!(
            send_times(&log),
            vec![500, 1500, 3500, 7500, 11500, 15500, 19500, 23500, 27500, 31500]
        );
        let (at, last) = log.last().expect("F fired");
        assert_eq!(*at, ms(32_000));
        assert_eq!(
            last,
            &vec![Action::PassUp(TuEvent::Timeout), Action::Terminated]
        );
    }

    #[test]
    fn proceeding_retransmits_every_t2() {
        let (mut tx, t0) = start(Transport::Unreliable);
        let log = run(&mut tx, t0, ms(600)); // E fired once at 0.5 s
        assert_eq!(send_times(&log), vec![500]);
        let a = tx.handle_response(t0 + ms(700), 100, b("100"));
        assert_eq!(a.len(), 1);
        assert_eq!(tx.state(), ClientNonInviteState::Proceeding);
        // E was armed at 1.5 s (interval 1 s); after it fires in Proceeding,
        // the interval becomes T2.
        let log = run(&mut tx, t0, ms(10_000));
        assert_eq!(send_times(&log), vec![1500, 5500, 9500]);
    }

    #[test]
    fn reliable_has_no_e_but_has_f() {
        let (mut tx, t0) = start(Transport::Reliable);
        let log = run(&mut tx, t0, Duration::from_secs(60));
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].0, ms(32_000));
        assert_eq!(log[0].1[0], Action::PassUp(TuEvent::Timeout));
    }

    #[test]
    fn final_response_and_timer_k_per_transport() {
        let table = [
            (Transport::Unreliable, 200u16, Some(ms(5000))),
            (Transport::Unreliable, 404, Some(ms(5000))),
            (Transport::Reliable, 200, None),
        ];
        for (tp, status, want_k) in table {
            let (mut tx, t0) = start(tp);
            let a = tx.handle_response(t0 + ms(10), status, b("final"));
            assert_eq!(
                a[0],
                Action::PassUp(TuEvent::Response {
                    status,
                    message: b("final")
                })
            );
            assert_eq!(tx.poll_timeout().map(|t| t - t0 - ms(10)), want_k, "{tp:?}");
            match want_k {
                Some(k) => {
                    assert_eq!(tx.state(), ClientNonInviteState::Completed);
                    // Retransmissions absorbed.
                    assert!(tx
                        .handle_response(t0 + ms(20), status, b("final"))
                        .is_empty());
                    assert_eq!(tx.handle_timeout(t0 + ms(10) + k), vec![Action::Terminated]);
                }
                None => assert_eq!(a.last(), Some(&Action::Terminated)),
            }
        }
    }

    #[test]
    fn transport_error_terminates() {
        let (mut tx, t0) = start(Transport::Reliable);
        let a = tx.handle_transport_error(t0);
        assert_eq!(
            a,
            vec![Action::PassUp(TuEvent::TransportError), Action::Terminated]
        );
        assert!(tx.is_terminated());
    }
}
