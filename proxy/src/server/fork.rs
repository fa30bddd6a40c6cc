//! Response aggregation of a forked request, sans-IO: which response goes
//! upstream now, which is held, and when the best final one is sent.
//!
//! ```text
//! RFC 3261 §16.7 step 5/6: provisional responses other than 100 and every
//! 2xx to an INVITE are forwarded immediately. [...] The proxy MUST NOT
//! forward a final non-2xx response until every client transaction is
//! complete; it then chooses the best one: a 6xx if one was received,
//! otherwise the lowest response class [...] If a 503 (Service Unavailable)
//! response is chosen, the proxy MUST generate a 500 (Server Internal Error)
//! response and forward that upstream instead.
//! RFC 3261 §16.7 step 10 / §16.10: on a 2xx or 6xx, the proxy SHOULD
//! cancel all pending client transactions.
//! ```

/// Where one branch is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BranchState {
    /// Sent, no response.
    Calling,
    /// A provisional arrived (so it may be CANCELled).
    Proceeding,
    /// A final response (or timeout as 408) arrived.
    Done(u16),
}

/// What to do with a response from a branch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Send this response upstream now (provisional or 2xx).
    Relay,
    /// Keep it as a candidate; other branches are still pending.
    Hold,
    /// Every branch is done: send branch `branch`'s final response (`status`,
    /// already mapped 503 → 500) upstream.
    SendBest {
        /// The branch holding the best response.
        branch: usize,
        /// The status to send.
        status: u16,
    },
    /// Nothing goes upstream (100 Trying, or a final already went).
    Drop,
}

/// The aggregation state of one forked request.
#[derive(Debug, Clone, Default)]
pub struct Fork {
    branches: Vec<BranchState>,
    best: Option<(usize, u16)>,
    final_sent: bool,
    cancelled: bool,
}

/// Lower is better (RFC 3261 §16.7 step 6); 2xx are never held.
fn rank(status: u16) -> (u8, u8) {
    let class = match status / 100 {
        6 => 0,
        3 => 1,
        4 => 2,
        _ => 3,
    };
    // Among 4xx, responses the UAC can act on (credentials, extensions).
    let tie = u8::from(!matches!(status, 401 | 407 | 415 | 420 | 484));
    (class, tie)
}

impl Fork {
    /// A fork with `n` branches, all Calling.
    pub fn new(n: usize) -> Self {
        Fork {
            branches: vec![BranchState::Calling; n],
            ..Fork::default()
        }
    }

    /// Adds a branch (serial failover to the next gateway); its index.
    pub fn add_branch(&mut self) -> usize {
        self.branches.push(BranchState::Calling);
        self.branches.len() - 1
    }

    /// The state of branch `i`.
    pub fn state(&self, i: usize) -> Option<BranchState> {
        self.branches.get(i).copied()
    }

    /// Branches without a final response.
    pub fn pending(&self) -> impl Iterator<Item = (usize, BranchState)> + '_ {
        self.branches
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, s)| !matches!(s, BranchState::Done(_)))
    }

    /// True once a final response went upstream.
    pub fn final_sent(&self) -> bool {
        self.final_sent
    }

    /// The caller sent a final response itself (e.g. 487 after CANCEL).
    pub fn mark_final_sent(&mut self) {
        self.final_sent = true;
    }

    /// True when the pending branches should be (or were) CANCELled.
    pub fn cancelled(&self) -> bool {
        self.cancelled
    }

    /// Marks the fork cancelled (a CANCEL from upstream, a 2xx or a 6xx).
    pub fn mark_cancelled(&mut self) {
        self.cancelled = true;
    }

    /// A response (`status`; timeouts as 408) arrived on branch `i`. The
    /// second value says whether the pending branches must now be CANCELled
    /// (first 2xx or 6xx).
    pub fn on_response(&mut self, i: usize, status: u16) -> (Verdict, bool) {
        let Some(state) = self.branches.get_mut(i) else {
            return (Verdict::Drop, false);
        };
        if let BranchState::Done(prev) = *state {
            // Retransmitted or additional 2xx: every 2xx is relayed (§16.7 step 5).
            let relay = (200..300).contains(&status) && (200..300).contains(&prev);
            return (if relay { Verdict::Relay } else { Verdict::Drop }, false);
        }
        match status {
            100 => (Verdict::Drop, false),
            101..=199 => {
                *state = BranchState::Proceeding;
                let v = if self.final_sent {
                    Verdict::Drop
                } else {
                    Verdict::Relay
                };
                (v, false)
            }
            200..=299 => {
                *state = BranchState::Done(status);
                self.final_sent = true;
                let cancel = !self.cancelled;
                self.cancelled = true;
                (Verdict::Relay, cancel)
            }
            _ => {
                *state = BranchState::Done(status);
                let better = match self.best {
                    None => true,
                    Some((_, b)) => rank(status) < rank(b),
                };
                if better {
                    self.best = Some((i, status));
                }
                let cancel = status >= 600 && !self.cancelled;
                if cancel {
                    self.cancelled = true;
                }
                if self.final_sent {
                    return (Verdict::Drop, cancel);
                }
                if self.pending().next().is_some() {
                    return (Verdict::Hold, cancel);
                }
                self.final_sent = true;
                let (branch, status) = self.best.unwrap_or((i, status));
                let status = if status == 503 { 500 } else { status };
                (Verdict::SendBest { branch, status }, cancel)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Verdict::*;

    /// (branches, events (branch, status), expected verdicts, cancels).
    type Case = (
        usize,
        &'static [(usize, u16)],
        &'static [Verdict],
        &'static [bool],
    );

    #[test]
    fn aggregation_table() {
        let table: &[Case] = &[
            // One branch, ringing then answered.
            (
                1,
                &[(0, 100), (0, 180), (0, 200)],
                &[Drop, Relay, Relay],
                &[false, false, true],
            ),
            // Two branches: the first 486, the second 200: 2xx wins, nothing held goes up.
            (
                2,
                &[(0, 486), (1, 180), (1, 200)],
                &[Hold, Relay, Relay],
                &[false, false, true],
            ),
            // Two branches fail: the lowest class goes up (404 beats 503).
            (
                2,
                &[(0, 503), (1, 404)],
                &[
                    Hold,
                    SendBest {
                        branch: 1,
                        status: 404,
                    },
                ],
                &[false, false],
            ),
            // 503 alone becomes 500 (§16.7 step 6).
            (
                1,
                &[(0, 503)],
                &[SendBest {
                    branch: 0,
                    status: 500,
                }],
                &[false],
            ),
            // 6xx beats everything and cancels the rest.
            (
                2,
                &[(0, 603), (1, 487)],
                &[
                    Hold,
                    SendBest {
                        branch: 0,
                        status: 603,
                    },
                ],
                &[true, false],
            ),
            // 401 preferred over another 4xx.
            (
                2,
                &[(0, 404), (1, 401)],
                &[
                    Hold,
                    SendBest {
                        branch: 1,
                        status: 401,
                    },
                ],
                &[false, false],
            ),
            // A 2xx after a final went up is still relayed; a late 4xx is dropped.
            (
                2,
                &[(0, 200), (1, 200), (1, 200)],
                &[Relay, Relay, Relay],
                &[true, false, false],
            ),
            (2, &[(0, 200), (1, 487)], &[Relay, Drop], &[true, false]),
            // Timeouts count as 408.
            (
                2,
                &[(0, 408), (1, 480)],
                &[
                    Hold,
                    SendBest {
                        branch: 0,
                        status: 408,
                    },
                ],
                &[false, false],
            ),
        ];
        for (n, events, want, cancels) in table {
            let mut f = Fork::new(*n);
            for (k, (b, s)) in events.iter().enumerate() {
                let (v, c) = f.on_response(*b, *s);
                assert_eq!(v, want[k], "case {events:?} event {k}");
                assert_eq!(c, cancels[k], "case {events:?} event {k} cancel");
            }
        }
    }

    #[test]
    fn serial_failover_adds_a_branch() {
        let mut f = Fork::new(1);
        // The caller adds the next gateway before reporting the 503.
        let next = f.add_branch();
        assert_eq!(f.on_response(0, 503).0, Hold);
        assert_eq!(f.state(next), Some(BranchState::Calling));
        assert_eq!(f.on_response(next, 183).0, Relay);
        assert_eq!(f.pending().count(), 1);
        assert_eq!(f.on_response(next, 200), (Relay, true));
        assert!(f.final_sent());
    }
}
