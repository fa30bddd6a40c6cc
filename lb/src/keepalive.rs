//! Server-side keepalive state of one stream flow (RFC 5626 §4.4.1), sans-IO:
//! when to send a double-CRLF ping, and when a flow that used to answer has
//! stopped answering and must be closed.
//!
//! ```text
//! RFC 5626 §4.4.1: ... the "ping" is CRLFCRLF and the "pong" is a single CRLF.
//! ```
//! Older clients never pong; a flow that has never answered is kept alive by
//! our pings alone and is never closed for missing pongs.

use std::time::{Duration, Instant};

/// What the connection task must do after [`Keepalive::poll`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepaliveAction {
    /// Nothing yet; wake up again at the given time.
    Wait(Instant),
    /// Send `\r\n\r\n` now.
    Ping,
    /// The flow answered pings before and has now missed too many: close it.
    Close,
}

/// Keepalive bookkeeping for one flow.
#[derive(Debug, Clone)]
pub struct Keepalive {
    interval: Duration,
    max_missed: u32,
    last_activity: Instant,
    outstanding: u32,
    ever_ponged: bool,
    last_ping: Option<Instant>,
}

impl Keepalive {
    /// A new flow that was active at `now`.
    pub fn new(interval: Duration, max_missed: u32, now: Instant) -> Self {
        Keepalive {
            interval,
            max_missed: max_missed.max(1),
            last_activity: now,
            outstanding: 0,
            ever_ponged: false,
            last_ping: None,
        }
    }

    /// Any bytes (a message or a ping) arrived from the peer.
    pub fn on_activity(&mut self, now: Instant) {
        self.last_activity = now;
    }

    /// A single-CRLF pong arrived.
    pub fn on_pong(&mut self, now: Instant) {
        self.ever_ponged = true;
        self.outstanding = 0;
        self.last_activity = now;
    }

    /// True once the peer has answered at least one ping.
    pub fn answers_pings(&self) -> bool {
        self.ever_ponged
    }

    /// Decides what to do at `now`. After `Ping`, the caller sends it and
    /// calls `poll` again for the next deadline.
    pub fn poll(&mut self, now: Instant) -> KeepaliveAction {
        let since = self
            .last_ping
            .map_or(self.last_activity, |p| p.max(self.last_activity));
        let due = since + self.interval;
        if now < due {
            return KeepaliveAction::Wait(due);
        }
        if self.ever_ponged && self.outstanding >= self.max_missed {
            return KeepaliveAction::Close;
        }
        // Activity since our last ping counts as a sign of life, not a pong:
        // only pongs clear the outstanding count of a ponging flow.
        if self.last_ping.is_some_and(|p| self.last_activity > p) && !self.ever_ponged {
            self.outstanding = 0;
        }
        self.outstanding = self.outstanding.saturating_add(1);
        self.last_ping = Some(now);
        KeepaliveAction::Ping
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn idle_flow_gets_pinged_every_interval() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(30 * S, 2, t0);
        assert_eq!(k.poll(t0), KeepaliveAction::Wait(t0 + 30 * S));
        assert_eq!(k.poll(t0 + 30 * S), KeepaliveAction::Ping);
        assert_eq!(k.poll(t0 + 31 * S), KeepaliveAction::Wait(t0 + 60 * S));
        assert_eq!(k.poll(t0 + 60 * S), KeepaliveAction::Ping);
    }

    #[test]
    fn never_ponging_flow_is_kept_alive() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(S, 2, t0);
        for i in 1..100 {
            assert_eq!(k.poll(t0 + i * S), KeepaliveAction::Ping, "tick {i}");
        }
    }

    #[test]
    fn flow_that_ponged_then_misses_two_is_closed() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(S, 2, t0);
        assert_eq!(k.poll(t0 + S), KeepaliveAction::Ping);
        k.on_pong(t0 + S + Duration::from_millis(10));
        assert!(k.answers_pings());
        let t1 = t0 + S + Duration::from_millis(10);
        assert_eq!(k.poll(t1 + S), KeepaliveAction::Ping); // missed 1
        assert_eq!(k.poll(t1 + 2 * S), KeepaliveAction::Ping); // missed 2
        assert_eq!(k.poll(t1 + 3 * S), KeepaliveAction::Close);
    }

    #[test]
    fn activity_postpones_the_ping() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(10 * S, 2, t0);
        k.on_activity(t0 + 5 * S);
        assert_eq!(k.poll(t0 + 10 * S), KeepaliveAction::Wait(t0 + 15 * S));
    }
}
