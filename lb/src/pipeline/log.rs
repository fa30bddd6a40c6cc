//! One structured log line per request from outside and per final answer we
//! relay or generate (JSON when the binary's subscriber formats JSON),
//! sampled by a configured share so a flood does not become a log flood.
//! Local error answers are always logged: they are what an operator looks
//! for.

use std::net::SocketAddr;

use sipedge_shared::sip::Message;

/// A deterministic 1-in-N sampler (no RNG on the hot path).
#[derive(Debug, Clone)]
pub struct Sampler {
    every: u64,
    seen: u64,
}

impl Sampler {
    /// Samples `share` of events (0.0 → none, 1.0 → all).
    pub fn new(share: f64) -> Self {
        let every = if share <= 0.0 || !share.is_finite() {
            0
        } else {
            (1.0 / share.min(1.0)).round().max(1.0) as u64
        };
        Sampler { every, seen: 0 }
    }

    /// True when this event is logged.
    pub fn take(&mut self) -> bool {
        if self.every == 0 {
            return false;
        }
        self.seen = self.seen.wrapping_add(1);
        self.seen.is_multiple_of(self.every)
    }
}

/// Logs a request received from `peer`.
pub fn request(msg: &Message, peer: SocketAddr) {
    tracing::info!(
        target: "sipedge_lb::sip",
        event = "request",
        method = msg.method_str(),
        ruri = msg.request_uri().unwrap_or(""),
        call_id = msg.call_id().unwrap_or(""),
        src = %peer,
    );
}

/// Logs a final response sent toward `peer`; `local` when we generated it.
pub fn response(req: &Message, status: u16, peer: SocketAddr, local: bool) {
    tracing::info!(
        target: "sipedge_lb::sip",
        event = "response",
        status,
        local,
        method = req.method_str(),
        call_id = req.call_id().unwrap_or(""),
        dst = %peer,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_shares() {
        for (share, of_100) in [(0.0, 0), (1.0, 100), (0.1, 10), (0.5, 50), (f64::NAN, 0)] {
            let mut s = Sampler::new(share);
            let n = (0..100).filter(|_| s.take()).count();
            assert_eq!(n, of_100, "share {share}");
        }
    }
}
