//! UDP flows, counted: a UDP "flow" (RFC 5626 §3.3: the 5-tuple a client
//! sends from) is open while its peer has sent us anything, a request, a
//! response, a CRLF or a STUN keepalive, within the last idle window. Each
//! worker tracks the peers its sockets hear, sans-IO; the totals feed
//! `GET /v1/flows` and the `sipedge_lb_flows{transport="udp"}` gauge.
//!
//! ```text
//! RFC 5626 §3.3: ... for UDP, the flow is the 5-tuple ... the UA sends
//!   keepalives on that flow (STUN) to keep NAT bindings alive.
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// Peers tracked per worker at most: a flood of spoofed sources stops being
/// counted there instead of growing the map without bound.
pub const MAX_PEERS: usize = 262_144;

/// How often expired peers are swept out.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The UDP peers one worker has heard from recently.
#[derive(Debug)]
pub struct UdpPeers {
    seen: HashMap<SocketAddr, Instant>,
    idle: Duration,
    next_sweep: Option<Instant>,
}

impl UdpPeers {
    /// Peers count as open for `idle` after their last datagram.
    pub fn new(idle: Duration) -> Self {
        UdpPeers {
            seen: HashMap::new(),
            idle,
            next_sweep: None,
        }
    }

    /// Records a datagram from `peer`; true when it opens a new flow.
    pub fn touch(&mut self, peer: SocketAddr, now: Instant) -> bool {
        if let Some(t) = self.seen.get_mut(&peer) {
            *t = now;
            return false;
        }
        if self.seen.len() >= MAX_PEERS {
            return false;
        }
        self.seen.insert(peer, now);
        true
    }

    /// Drops peers idle longer than the window (at most once a second);
    /// returns how many flows closed.
    pub fn sweep(&mut self, now: Instant) -> usize {
        match self.next_sweep {
            Some(t) if now < t => return 0,
            _ => self.next_sweep = Some(now + SWEEP_EVERY),
        }
        let before = self.seen.len();
        let idle = self.idle;
        self.seen
            .retain(|_, last| now.saturating_duration_since(*last) < idle);
        before - self.seen.len()
    }

    /// Open UDP flows.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when no UDP flow is open.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn a_peer_is_one_flow_until_it_goes_quiet() {
        let t0 = Instant::now();
        let mut p = UdpPeers::new(Duration::from_secs(60));
        assert!(p.touch(addr(5060), t0));
        assert!(!p.touch(addr(5060), t0 + Duration::from_secs(30)));
        assert!(
            p.touch(addr(5062), t0),
            "another source port is another flow"
        );
        assert_eq!(p.len(), 2);
        // 70 s after the start: 5062 (last seen at 0) is gone, 5060 (30) is not.
        assert_eq!(p.sweep(t0 + Duration::from_secs(70)), 1);
        assert_eq!(p.len(), 1);
        assert_eq!(p.sweep(t0 + Duration::from_secs(95)), 1);
        assert!(p.is_empty());
    }

    #[test]
    fn sweeps_at_most_once_a_second() {
        let t0 = Instant::now();
        let mut p = UdpPeers::new(Duration::from_millis(10));
        p.touch(addr(1), t0);
        assert_eq!(p.sweep(t0 + Duration::from_millis(20)), 1);
        p.touch(addr(2), t0 + Duration::from_millis(20));
        assert_eq!(p.sweep(t0 + Duration::from_millis(500)), 0, "too soon");
        assert_eq!(p.sweep(t0 + Duration::from_millis(1100)), 1);
    }

    #[test]
    fn the_map_is_bounded() {
        let t0 = Instant::now();
        let mut p = UdpPeers::new(Duration::from_secs(60));
        for i in 0..MAX_PEERS + 10 {
            let ip = u32::try_from(i).map_or([0; 4], u32::to_be_bytes);
            p.touch(SocketAddr::from((ip, 5060)), t0);
        }
        assert_eq!(p.len(), MAX_PEERS);
    }
}
