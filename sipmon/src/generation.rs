//! Report generations: Unix time in milliseconds, strictly increasing within
//! the process and (clock permitting) across restarts; sans-IO.
//!
//! The LB refuses a generation not above the last it holds from our monitor
//! id (409). Wall-clock milliseconds survive a restart; `last + 1` covers
//! two pushes in one millisecond or a clock that stepped back.

use std::time::{SystemTime, UNIX_EPOCH};

/// Hands out generations.
#[derive(Debug, Clone, Default)]
pub struct GenerationClock {
    last: u64,
}

impl GenerationClock {
    /// A clock that has handed out nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// The next generation at wall-clock time `now_ms`.
    pub fn next(&mut self, now_ms: u64) -> u64 {
        self.last = now_ms.max(self.last.saturating_add(1));
        self.last
    }

    /// An LB told us it already holds `seen` from our id (409): the next
    /// generation must exceed it.
    pub fn observe(&mut self, seen: u64) {
        self.last = self.last.max(seen);
    }

    /// The last generation handed out (0 before the first).
    pub fn last(&self) -> u64 {
        self.last
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before 1970).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing() {
        // (observe before, clock reading, expected generation)
        let steps: &[(Option<u64>, u64, u64)] = &[
            (None, 1_000, 1_000),
            (None, 1_005, 1_005),
            // Same millisecond: bumped.
            (None, 1_005, 1_006),
            // Clock stepped back: still increasing.
            (None, 900, 1_007),
            // An LB holds 5_000 from a previous process with our id.
            (Some(5_000), 1_010, 5_001),
            // Observing something older changes nothing.
            (Some(10), 6_000, 6_000),
        ];
        let mut c = GenerationClock::new();
        for (i, (seen, now, want)) in steps.iter().enumerate() {
            if let Some(s) = seen {
                c.observe(*s);
            }
            assert_eq!(c.next(*now), *want, "step {i}");
            assert_eq!(c.last(), *want);
        }
    }

    #[test]
    fn restart_uses_wall_clock() {
        let a = GenerationClock::new().next(unix_ms());
        // A "restarted" clock starts from the wall clock, which is well past 2020.
        assert!(a > 1_577_836_800_000, "{a}");
        let b = GenerationClock::new().next(unix_ms());
        assert!(b >= a);
    }
}
