//! The LB's transaction state, kept only to fail over (sans-IO: every call
//! takes `now`). A forwarded request waits for its proxy; a 408 (received or
//! from our own timer) or a 503 moves it to the next proxy in hash order, and
//! any other final answer is relayed as is.
//!
//! ```text
//! RFC 3261 §16.7 step 6 / §16.8: ... a 408 from the proxy's own timer is
//!   treated like a received 408 ...
//! ```
//! Each worker owns its table (responses come back to the worker's own
//! internal socket), so no lock is needed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::branch::Branch;
use crate::flow::FlowId;
use crate::shard_map::ShardMap;

/// Transaction key: our branch without the attempt.
pub type TxnKey = (u64, u64);

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Sent to a proxy, nothing back yet: the failover timer runs.
    Waiting,
    /// An INVITE got a provisional: no more failover on our timer.
    Proceeding,
    /// A final response was relayed; kept for the ACK and retransmissions.
    Completed,
}

/// One forwarded request.
#[derive(Debug)]
pub struct Txn<R> {
    /// The flow the request came in on (responses go back there).
    pub source: FlowId,
    /// The request as received, to rebuild it for the next proxy. Dropped
    /// at the final response unless a hop-by-hop ACK may still need it (an
    /// INVITE answered >= 300), so a lingering transaction stays small; boxed,
    /// so the table's slots stay small too.
    pub request: Option<Box<R>>,
    /// INVITE (ACK/CANCEL handling, provisional rule).
    pub is_invite: bool,
    /// Branch of the current attempt.
    pub branch: Branch,
    /// Index in the ranking of the proxy now tried.
    pub rank: usize,
    /// The proxy now tried.
    pub proxy: std::net::SocketAddr,
    /// Phase.
    pub phase: Phase,
    /// The response resent when the request is retransmitted: the last
    /// provisional, or a final we generated ourselves. A final relayed from a
    /// proxy is not kept (see [`TxnTable::on_final`]).
    pub last_response: Option<Bytes>,
    /// Final status relayed, if any.
    pub final_status: Option<u16>,
    /// When the request first arrived.
    pub started: Instant,
    deadline: Instant,
}

/// Timer values.
#[derive(Debug, Clone, Copy)]
pub struct Timers {
    /// Failover timer for non-INVITE requests.
    pub non_invite: Duration,
    /// Failover timer for an INVITE with no provisional yet.
    pub invite: Duration,
    /// How long an INVITE may stay in Proceeding (RFC 3261 Timer C > 3 min).
    pub proceeding: Duration,
    /// How long a completed transaction is kept (routes retransmissions
    /// and absorbs the ACK for a non-2xx; 64*T1 for UDP).
    pub linger: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            non_invite: Duration::from_secs(2),
            invite: Duration::from_secs(2),
            proceeding: Duration::from_secs(181),
            linger: Duration::from_secs(32),
        }
    }
}

/// The timer kinds, one queue each (see [`TxnTable`]).
#[derive(Debug, Clone, Copy)]
enum Kind {
    NonInvite = 0,
    Invite = 1,
    Proceeding = 2,
    Linger = 3,
}

impl Timers {
    fn of(&self, kind: Kind) -> Duration {
        match kind {
            Kind::NonInvite => self.non_invite,
            Kind::Invite => self.invite,
            Kind::Proceeding => self.proceeding,
            Kind::Linger => self.linger,
        }
    }
}

fn failover_kind(is_invite: bool) -> Kind {
    if is_invite {
        Kind::Invite
    } else {
        Kind::NonInvite
    }
}

/// What a timeout means for a transaction.
#[derive(Debug, PartialEq, Eq)]
pub enum Expiry {
    /// The proxy did not answer in time: treat as 408 and fail over.
    FailoverTimeout(TxnKey),
    /// The transaction is over; it was removed.
    Removed(TxnKey),
}

/// Default for [`TxnTable::new`]'s capacity, per worker: 32 s (the default
/// linger) of 32 000 new transactions a second, 16 000 calls/s. A
/// transaction costs about 400 bytes here (its slot in the map and two timer
/// entries), so a full table is about 400 MB.
pub const DEFAULT_CAPACITY: usize = 1 << 20;

/// All transactions of one worker, at most `capacity` of them (a flood of
/// distinct requests cannot grow it without bound).
#[derive(Debug)]
pub struct TxnTable<R> {
    map: ShardMap<TxnKey, Txn<R>>,
    capacity: usize,
    /// One FIFO per timer kind. Every deadline is `now + a fixed duration`,
    /// so each queue is in deadline order and push/pop are O(1) (a binary
    /// heap of a few hundred thousand lingering transactions was not).
    /// Entries superseded by a later deadline are dropped when they surface.
    timers: [VecDeque<(Instant, TxnKey)>; 4],
    /// Timer values.
    pub timers_cfg: Timers,
}

impl<R> TxnTable<R> {
    /// An empty table for at most `capacity` transactions.
    pub fn new(timers_cfg: Timers, capacity: usize) -> Self {
        TxnTable {
            map: ShardMap::default(),
            capacity,
            timers: Default::default(),
            timers_cfg,
        }
    }

    /// No room for another transaction: a new request is refused (503).
    pub fn is_full(&self) -> bool {
        self.map.len() >= self.capacity
    }

    /// Number of live transactions.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Starts a transaction for a request just sent to `proxy`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        &mut self,
        branch: Branch,
        source: FlowId,
        request: R,
        is_invite: bool,
        rank: usize,
        proxy: std::net::SocketAddr,
        now: Instant,
    ) {
        let kind = failover_kind(is_invite);
        let deadline = now + self.timers_cfg.of(kind);
        self.map.insert(
            branch.key(),
            Txn {
                source,
                request: Some(Box::new(request)),
                is_invite,
                branch,
                rank,
                proxy,
                phase: Phase::Waiting,
                last_response: None,
                final_status: None,
                started: now,
                deadline,
            },
        );
        self.timers[kind as usize].push_back((deadline, branch.key()));
    }

    /// The transaction, if any.
    pub fn get(&self, key: &TxnKey) -> Option<&Txn<R>> {
        self.map.get(key)
    }

    /// The transaction, mutable.
    pub fn get_mut(&mut self, key: &TxnKey) -> Option<&mut Txn<R>> {
        self.map.get_mut(key)
    }

    /// Removes a transaction.
    pub fn remove(&mut self, key: &TxnKey) -> Option<Txn<R>> {
        self.map.remove(key)
    }

    fn arm(&mut self, key: TxnKey, kind: Kind, now: Instant) {
        let deadline = now + self.timers_cfg.of(kind);
        if let Some(t) = self.map.get_mut(&key) {
            t.deadline = deadline;
            self.timers[kind as usize].push_back((deadline, key));
        }
    }

    /// The request moved to the proxy at `rank` (failover), new timer.
    pub fn retry(&mut self, key: TxnKey, rank: usize, proxy: std::net::SocketAddr, now: Instant) {
        let timer = match self.map.get_mut(&key) {
            Some(t) => {
                t.rank = rank;
                t.proxy = proxy;
                t.branch = t.branch.with_attempt(t.branch.attempt.saturating_add(1));
                t.phase = Phase::Waiting;
                t.is_invite
            }
            None => return,
        };
        self.arm(key, failover_kind(timer), now);
    }

    /// A provisional response arrived: an INVITE stops failing over on our
    /// timer (the callee may ring for minutes).
    pub fn on_provisional(&mut self, key: TxnKey, response: Option<Bytes>, now: Instant) {
        let (invite, was_waiting) = match self.map.get_mut(&key) {
            // A provisional after the final (reordered) changes nothing.
            Some(t) if t.phase == Phase::Completed => return,
            Some(t) => {
                if let Some(r) = response {
                    t.last_response = Some(r);
                }
                let was = t.phase == Phase::Waiting;
                if t.phase == Phase::Waiting {
                    t.phase = Phase::Proceeding;
                }
                (t.is_invite, was)
            }
            None => return,
        };
        if invite && was_waiting {
            self.arm(key, Kind::Proceeding, now);
        }
    }

    /// A final response was relayed or generated for the client. Only one we
    /// generated is `kept` to resend: a retransmitted request whose final came
    /// from a proxy is relayed to that proxy, whose server transaction answers
    /// it again (RFC 3261 §17.2.2; §17.2.1 and RFC 6026 for INVITE). A stored
    /// copy of every relayed final made each lingering transaction ~1 KB
    /// instead of ~200 bytes, and the growth of fresh memory that cost showed
    /// as millisecond page-fault stalls at p99.
    pub fn on_final(&mut self, key: TxnKey, status: u16, kept: Option<Bytes>, now: Instant) {
        if let Some(t) = self.map.get_mut(&key) {
            t.phase = Phase::Completed;
            t.final_status = Some(status);
            t.last_response = kept;
            if !(t.is_invite && status >= 300) {
                t.request = None;
            }
        }
        self.arm(key, Kind::Linger, now);
    }

    /// The queue whose live head is earliest, with that deadline; stale
    /// heads (removed or re-armed transactions) are dropped on the way.
    fn earliest(&mut self) -> Option<(usize, Instant)> {
        let mut best: Option<(usize, Instant)> = None;
        for (i, q) in self.timers.iter_mut().enumerate() {
            while let Some(&(when, key)) = q.front() {
                match self.map.get(&key) {
                    Some(t) if t.deadline == when => {
                        if best.is_none_or(|(_, b)| when < b) {
                            best = Some((i, when));
                        }
                        break;
                    }
                    _ => {
                        q.pop_front();
                    }
                }
            }
        }
        best
    }

    /// The earliest time `poll_expired` has work.
    pub fn next_deadline(&mut self) -> Option<Instant> {
        self.earliest().map(|(_, when)| when)
    }

    /// The next expired timer at `now`, if any. Waiting transactions are
    /// reported for failover (and left in place); others are removed.
    pub fn poll_expired(&mut self, now: Instant) -> Option<Expiry> {
        let (i, _) = self.earliest().filter(|&(_, when)| when <= now)?;
        let (_, key) = self.timers[i].pop_front()?;
        let phase = self.map.get(&key).map(|t| t.phase)?;
        if phase == Phase::Waiting {
            return Some(Expiry::FailoverTimeout(key));
        }
        self.map.remove(&key);
        Some(Expiry::Removed(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::branch::BranchInput;
    use crate::flow::FlowTransport;

    fn flow() -> FlowId {
        FlowId {
            transport: FlowTransport::Udp,
            conn: 0,
            peer: "127.0.0.1:5090".parse().expect("literal"),
            listener: 0,
        }
    }

    fn branch(cseq: u32) -> Branch {
        Branch::compute(
            &BranchInput {
                call_id: "c",
                cseq,
                ..Default::default()
            },
            0,
        )
    }

    const P1: &str = "127.0.0.1:5071";
    const P2: &str = "127.0.0.1:5072";

    #[test]
    fn waiting_request_times_out_into_failover_then_retry_rearms() {
        let t0 = Instant::now();
        let mut t: TxnTable<()> = TxnTable::new(Timers::default(), 16);
        let b = branch(1);
        t.start(b, flow(), (), false, 0, P1.parse().expect("lit"), t0);
        assert_eq!(t.next_deadline(), Some(t0 + Duration::from_secs(2)));
        assert_eq!(t.poll_expired(t0 + Duration::from_millis(1999)), None);
        let exp = t.poll_expired(t0 + Duration::from_secs(2));
        assert_eq!(exp, Some(Expiry::FailoverTimeout(b.key())));
        let t1 = t0 + Duration::from_secs(2);
        t.retry(b.key(), 1, P2.parse().expect("lit"), t1);
        let txn = t.get(&b.key()).expect("still there");
        assert_eq!((txn.rank, txn.branch.attempt), (1, 1));
        assert_eq!(t.next_deadline(), Some(t1 + Duration::from_secs(2)));
    }

    #[test]
    fn invite_with_provisional_does_not_fail_over_on_timer() {
        let t0 = Instant::now();
        let mut t: TxnTable<()> = TxnTable::new(Timers::default(), 16);
        let b = branch(2);
        t.start(b, flow(), (), true, 0, P1.parse().expect("lit"), t0);
        t.on_provisional(b.key(), None, t0 + Duration::from_millis(100));
        assert_eq!(t.poll_expired(t0 + Duration::from_secs(60)), None);
        let end = t0 + Duration::from_secs(200);
        assert_eq!(t.poll_expired(end), Some(Expiry::Removed(b.key())));
        assert!(t.is_empty());
    }

    #[test]
    fn completed_transaction_lingers_then_goes() {
        let t0 = Instant::now();
        let mut t: TxnTable<()> = TxnTable::new(Timers::default(), 16);
        let b = branch(3);
        t.start(b, flow(), (), false, 0, P1.parse().expect("lit"), t0);
        t.on_final(b.key(), 200, None, t0);
        assert_eq!(t.poll_expired(t0 + Duration::from_secs(5)), None);
        let txn = t.get(&b.key()).expect("lingers");
        assert_eq!((txn.phase, txn.final_status), (Phase::Completed, Some(200)));
        assert!(txn.last_response.is_none(), "a relayed final is not kept");
        let gone = t.poll_expired(t0 + Duration::from_secs(33));
        assert_eq!(gone, Some(Expiry::Removed(b.key())));
        assert_eq!(t.next_deadline(), None);
    }

    #[test]
    fn a_full_table_says_so_until_one_goes() {
        let t0 = Instant::now();
        let mut t: TxnTable<()> = TxnTable::new(Timers::default(), 2);
        let p1 = P1.parse().expect("lit");
        t.start(branch(10), flow(), (), false, 0, p1, t0);
        assert!(!t.is_full());
        t.start(branch(11), flow(), (), false, 0, p1, t0);
        assert!(t.is_full());
        t.remove(&branch(10).key());
        assert!(!t.is_full());
    }
}
