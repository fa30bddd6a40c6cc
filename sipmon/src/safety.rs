//! Safety gate between health and push, sans-IO: never report a set with no
//! proxy up, and hold the last pushed set when too many proxies fall at once.
//!
//! Mass failure is measured against the **last pushed** set: the share of
//! proxies that were up there and are down now. While holding, that
//! comparison repeats every round, so the hold is released only when probes
//! recover far enough (share ≤ `max_down_share`) — there is no operator
//! release: a genuine loss of most proxies cannot be told apart from a
//! partitioned monitor here, and the LBs still fail over per request on
//! 408/503. An operator who knows better raises `safety.max_down_share`
//! (1.0 disables the share rule) and restarts sipmon.

use std::collections::HashMap;

/// One proxy as reported to the LBs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReportEntry {
    /// Proxy id.
    pub id: String,
    /// `ip:port`.
    pub addr: String,
    /// Whether this monitor sees it alive.
    pub up: bool,
}

/// Why the gate held the last set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldReason {
    /// The candidate had no proxy up.
    AllDown,
    /// More than `max_down_share` went down since the last push.
    MassFailure {
        /// Proxies up in the last pushed set and down now.
        newly_down: usize,
        /// Proxies in the candidate.
        total: usize,
    },
}

/// What the gate decided for one round.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The set the LBs should hold now (`None`: nothing pushable yet).
    pub report: Option<Vec<ReportEntry>>,
    /// True when `report` differs from what was decided last round, i.e.
    /// push now rather than at the next heartbeat.
    pub changed: bool,
    /// Set while the last pushed set is being held.
    pub hold: Option<HoldReason>,
}

/// The gate's memory.
#[derive(Debug, Clone)]
pub struct Safety {
    max_down_share: f64,
    last: Option<Vec<ReportEntry>>,
}

impl Safety {
    /// A gate that has pushed nothing yet.
    pub fn new(max_down_share: f64) -> Self {
        Safety {
            max_down_share,
            last: None,
        }
    }

    /// The last set let through.
    pub fn last(&self) -> Option<&[ReportEntry]> {
        self.last.as_deref()
    }

    /// Judges this round's candidate (every known proxy with its state).
    pub fn evaluate(&mut self, candidate: Vec<ReportEntry>) -> Decision {
        let hold = |this: &Self, reason| Decision {
            report: this.last.clone(),
            changed: false,
            hold: Some(reason),
        };
        if !candidate.iter().any(|e| e.up) {
            return hold(self, HoldReason::AllDown);
        }
        if let Some(last) = &self.last {
            let was_up: HashMap<&str, bool> = last.iter().map(|e| (e.id.as_str(), e.up)).collect();
            let newly_down = candidate
                .iter()
                .filter(|e| !e.up && was_up.get(e.id.as_str()).copied().unwrap_or(false))
                .count();
            let total = candidate.len();
            if newly_down as f64 > self.max_down_share * total as f64 {
                return hold(self, HoldReason::MassFailure { newly_down, total });
            }
        }
        let changed = self.last.as_ref() != Some(&candidate);
        self.last = Some(candidate.clone());
        Decision {
            report: Some(candidate),
            changed,
            hold: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `"+p1 -p2"` → p1 up, p2 down.
    fn set(s: &str) -> Vec<ReportEntry> {
        s.split_whitespace()
            .map(|t| ReportEntry {
                id: t[1..].to_string(),
                addr: "127.0.0.1:5060".into(),
                up: t.starts_with('+'),
            })
            .collect()
    }

    #[test]
    fn rounds() {
        // (max share, sequence of (candidate, expected report, changed, held))
        type Round = (&'static str, Option<&'static str>, bool, bool);
        let cases: &[(f64, &[Round])] = &[
            // Start-up: first non-empty set is pushed.
            (0.5, &[("+a +b +c", Some("+a +b +c"), true, false)]),
            // Never an empty set, even at start-up.
            (0.5, &[("-a -b", None, false, true)]),
            (
                0.5,
                &[
                    ("+a +b +c", Some("+a +b +c"), true, false),
                    ("+a +b +c", Some("+a +b +c"), false, false),
                    // One of three down: 1/3 ≤ 0.5, pushed.
                    ("-a +b +c", Some("-a +b +c"), true, false),
                    // Then another: 1/3 relative to the last push, pushed.
                    ("-a -b +c", Some("-a -b +c"), true, false),
                    // All down: held.
                    ("-a -b -c", Some("-a -b +c"), false, true),
                    ("+a -b +c", Some("+a -b +c"), true, false),
                ],
            ),
            (
                0.5,
                &[
                    ("+a +b +c +d", Some("+a +b +c +d"), true, false),
                    // Three of four at once: held, and stays held.
                    ("-a -b -c +d", Some("+a +b +c +d"), false, true),
                    ("-a -b -c +d", Some("+a +b +c +d"), false, true),
                    // Probes recover to 2/4 down ≤ 0.5: released.
                    ("+a -b -c +d", Some("+a -b -c +d"), true, false),
                ],
            ),
            // Exactly the share is allowed ("more than" holds).
            (
                0.5,
                &[
                    ("+a +b", Some("+a +b"), true, false),
                    ("-a +b", Some("-a +b"), true, false),
                ],
            ),
            // Share 1.0 only guards against the empty set.
            (
                1.0,
                &[
                    ("+a +b +c", Some("+a +b +c"), true, false),
                    ("-a -b +c", Some("-a -b +c"), true, false),
                ],
            ),
            // A proxy added later (SRV) is up and changes the set.
            (
                0.5,
                &[
                    ("+a", Some("+a"), true, false),
                    ("+a +b", Some("+a +b"), true, false),
                ],
            ),
        ];
        for (share, rounds) in cases {
            let mut s = Safety::new(*share);
            for (i, (cand, want, changed, held)) in rounds.iter().enumerate() {
                let d = s.evaluate(set(cand));
                assert_eq!(d.report, want.map(set), "share {share} round {i}: {cand}");
                assert_eq!(d.changed, *changed, "share {share} round {i}: {cand}");
                assert_eq!(d.hold.is_some(), *held, "share {share} round {i}: {cand}");
                if let Some(r) = &d.report {
                    assert!(r.iter().any(|e| e.up), "never an empty set");
                }
            }
        }
    }

    #[test]
    fn hold_reason_counts() {
        let mut s = Safety::new(0.5);
        s.evaluate(set("+a +b +c"));
        let d = s.evaluate(set("-a -b +c"));
        assert_eq!(
            d.hold,
            Some(HoldReason::MassFailure {
                newly_down: 2,
                total: 3
            })
        );
        assert_eq!(s.evaluate(set("-a -b -c")).hold, Some(HoldReason::AllDown));
    }
}
