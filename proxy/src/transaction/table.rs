//! The transaction table: every live transaction by its §17 key, and a
//! `BTreeMap<(Instant, seq), key>` so the I/O layer sleeps until the earliest
//! timeout of all of them (`poll_timeout`) and then calls `handle_timeout`.
//!
//! ```text
//! RFC 3261 §17.1.3 / §17.2.3: responses and requests are matched to
//! transactions by the top Via branch, sent-by and method (see key.rs).
//! ```
//!
//! The table is plain data (sans-IO, not `Sync`-shared): one table per
//! worker, so a worker's socket sees the responses to its own transactions.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use bytes::Bytes;

use super::{
    Action, ClientInvite, ClientKey, ClientNonInvite, ServerInvite, ServerKey, ServerNonInvite,
};

/// The key of any transaction in the table.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxKey {
    /// A client transaction (we sent the request).
    Client(ClientKey),
    /// A server transaction (we received the request).
    Server(ServerKey),
}

/// Any of the four state machines.
#[derive(Debug)]
pub enum Transaction {
    /// §17.1.1.
    ClientInvite(ClientInvite),
    /// §17.1.2.
    ClientNonInvite(ClientNonInvite),
    /// §17.2.1.
    ServerInvite(ServerInvite),
    /// §17.2.2.
    ServerNonInvite(ServerNonInvite),
}

impl Transaction {
    /// When the machine next needs `handle_timeout`.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Transaction::ClientInvite(t) => t.poll_timeout(),
            Transaction::ClientNonInvite(t) => t.poll_timeout(),
            Transaction::ServerInvite(t) => t.poll_timeout(),
            Transaction::ServerNonInvite(t) => t.poll_timeout(),
        }
    }

    /// Fires the machine's due timers.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Action> {
        match self {
            Transaction::ClientInvite(t) => t.handle_timeout(now),
            Transaction::ClientNonInvite(t) => t.handle_timeout(now),
            Transaction::ServerInvite(t) => t.handle_timeout(now),
            Transaction::ServerNonInvite(t) => t.handle_timeout(now),
        }
    }

    /// Reports a transport failure to the machine.
    pub fn handle_transport_error(&mut self, now: Instant) -> Vec<Action> {
        match self {
            Transaction::ClientInvite(t) => t.handle_transport_error(now),
            Transaction::ClientNonInvite(t) => t.handle_transport_error(now),
            Transaction::ServerInvite(t) => t.handle_transport_error(now),
            Transaction::ServerNonInvite(t) => t.handle_transport_error(now),
        }
    }

    /// True once the machine reached Terminated.
    pub fn is_terminated(&self) -> bool {
        match self {
            Transaction::ClientInvite(t) => t.is_terminated(),
            Transaction::ClientNonInvite(t) => t.is_terminated(),
            Transaction::ServerInvite(t) => t.is_terminated(),
            Transaction::ServerNonInvite(t) => t.is_terminated(),
        }
    }
}

/// Errors of [`TransactionTable`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TableError {
    /// A transaction with this key already exists (a retransmission should
    /// have been routed to it instead).
    #[error("transaction {0:?} already exists")]
    Duplicate(TxKey),
    /// The transaction is already terminated and would never be removed by
    /// a timer.
    #[error("transaction {0:?} is already terminated")]
    Terminated(TxKey),
}

#[derive(Debug)]
struct Entry {
    tx: Transaction,
    scheduled: Option<(Instant, u64)>,
}

/// All live transactions of one worker.
#[derive(Debug, Default)]
pub struct TransactionTable {
    entries: HashMap<TxKey, Entry>,
    timers: BTreeMap<(Instant, u64), TxKey>,
    /// Tie-breaker so two transactions may share an instant.
    seq: u64,
}

impl TransactionTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of live transactions (for the transactions gauge).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no transaction is live.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Adds a transaction just created (its constructor's actions are the
    /// caller's to perform).
    pub fn insert(&mut self, key: TxKey, tx: Transaction) -> Result<(), TableError> {
        if self.entries.contains_key(&key) {
            return Err(TableError::Duplicate(key));
        }
        if tx.is_terminated() {
            return Err(TableError::Terminated(key));
        }
        self.entries.insert(
            key.clone(),
            Entry {
                tx,
                scheduled: None,
            },
        );
        self.reschedule(&key);
        Ok(())
    }

    /// The transaction under `key`.
    pub fn get(&self, key: &TxKey) -> Option<&Transaction> {
        self.entries.get(key).map(|e| &e.tx)
    }

    /// Removes a transaction (e.g. when the TU gives up); returns it.
    pub fn remove(&mut self, key: &TxKey) -> Option<Transaction> {
        let entry = self.entries.remove(key)?;
        if let Some(slot) = entry.scheduled {
            self.timers.remove(&slot);
        }
        Some(entry.tx)
    }

    /// A response arrived. `None`: no client transaction matches, and a
    /// proxy processes it as a stateless proxy would (§16.7 step 1).
    pub fn handle_response(
        &mut self,
        now: Instant,
        key: &ClientKey,
        status: u16,
        message: Bytes,
    ) -> Option<Vec<Action>> {
        let k = TxKey::Client(key.clone());
        let actions = match &mut self.entries.get_mut(&k)?.tx {
            Transaction::ClientInvite(t) => t.handle_response(now, status, message),
            Transaction::ClientNonInvite(t) => t.handle_response(now, status, message),
            Transaction::ServerInvite(_) | Transaction::ServerNonInvite(_) => return None,
        };
        self.after(&k);
        Some(actions)
    }

    /// A request arrived. `None`: it starts a new transaction (or, for an
    /// ACK, it is the end-to-end ACK of a 2xx and goes to the TU).
    pub fn handle_request(
        &mut self,
        now: Instant,
        key: &ServerKey,
        is_ack: bool,
        message: Bytes,
    ) -> Option<Vec<Action>> {
        let k = TxKey::Server(key.clone());
        let actions = match &mut self.entries.get_mut(&k)?.tx {
            Transaction::ServerInvite(t) => t.handle_request(now, is_ack, message),
            Transaction::ServerNonInvite(t) if !is_ack => t.handle_request(now, message),
            _ => return None,
        };
        self.after(&k);
        Some(actions)
    }

    /// The TU sends a response on server transaction `key`; `None` when that
    /// transaction is gone.
    pub fn send_response(
        &mut self,
        now: Instant,
        key: &ServerKey,
        status: u16,
        message: Bytes,
    ) -> Option<Vec<Action>> {
        let k = TxKey::Server(key.clone());
        let actions = match &mut self.entries.get_mut(&k)?.tx {
            Transaction::ServerInvite(t) => t.send_response(now, status, message),
            Transaction::ServerNonInvite(t) => t.send_response(now, status, message),
            Transaction::ClientInvite(_) | Transaction::ClientNonInvite(_) => return None,
        };
        self.after(&k);
        Some(actions)
    }

    /// The transport failed for transaction `key`.
    pub fn handle_transport_error(&mut self, now: Instant, key: &TxKey) -> Option<Vec<Action>> {
        let actions = self.entries.get_mut(key)?.tx.handle_transport_error(now);
        self.after(key);
        Some(actions)
    }

    /// CANCEL hook, client side: the TU sent a CANCEL for client INVITE
    /// `key` (see [`ClientInvite::cancel_sent`]). `false` if there is no such
    /// INVITE transaction.
    pub fn cancel_sent(&mut self, now: Instant, key: &ClientKey) -> bool {
        let k = TxKey::Client(key.clone());
        match self.entries.get_mut(&k).map(|e| &mut e.tx) {
            Some(Transaction::ClientInvite(t)) => t.cancel_sent(now),
            _ => return false,
        }
        self.reschedule(&k);
        true
    }

    /// CANCEL hook (§9.2, §16.10): for a received CANCEL's key, the key of
    /// the INVITE server transaction it cancels, if that one exists and has
    /// not sent a final response yet. The TU then answers the CANCEL 200 and
    /// sends 487 on the INVITE (or, as a proxy, CANCELs its branches).
    /// `None` → answer the CANCEL 481.
    pub fn cancel_target(&self, cancel: &ServerKey) -> Option<ServerKey> {
        let target = cancel.cancel_target()?;
        match self.get(&TxKey::Server(target.clone()))? {
            Transaction::ServerInvite(t) if t.is_cancellable() => Some(target),
            _ => None,
        }
    }

    /// The earliest timeout of all transactions.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.keys().next().map(|(at, _)| *at)
    }

    /// Fires every timer due at `now`; the actions are tagged with their
    /// transaction. Terminated transactions are removed.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<(TxKey, Action)> {
        let mut out = Vec::new();
        // Take the due slots first; each machine fires all its due timers.
        let due: Vec<TxKey> = self
            .timers
            .range(..=(now, u64::MAX))
            .map(|(_, k)| k.clone())
            .collect();
        for key in due {
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            let actions = entry.tx.handle_timeout(now);
            out.extend(actions.into_iter().map(|a| (key.clone(), a)));
            self.after(&key);
        }
        out
    }

    /// Re-files `key`'s timer, or drops the transaction if it terminated.
    fn after(&mut self, key: &TxKey) {
        let terminated = self.entries.get(key).is_some_and(|e| e.tx.is_terminated());
        if terminated {
            self.remove(key);
        } else {
            self.reschedule(key);
        }
    }

    fn reschedule(&mut self, key: &TxKey) {
        let Some(entry) = self.entries.get_mut(key) else {
            return;
        };
        let want = entry.tx.poll_timeout();
        if entry.scheduled.map(|(at, _)| at) == want {
            return;
        }
        if let Some(slot) = entry.scheduled.take() {
            self.timers.remove(&slot);
        }
        if let Some(at) = want {
            self.seq += 1;
            let slot = (at, self.seq);
            entry.scheduled = Some(slot);
            self.timers.insert(slot, key.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transaction::testutil::{b, ms};
    use crate::transaction::{RequestIds, ResponseIds, Timers, Transport, TuEvent};

    fn skey(method: &str, branch: &str) -> ServerKey {
        let ids = RequestIds {
            method,
            branch,
            sent_by_host: "ua.example",
            sent_by_port: Some(5060),
        };
        ServerKey::from_request(&ids).expect("valid")
    }

    #[test]
    fn routes_responses_and_timers_and_removes_terminated() {
        let t0 = Instant::now();
        let timers = Timers::default();
        let mut table = TransactionTable::new();
        let ck = ClientKey::new("z9hG4bK1", "OPTIONS").expect("valid");
        let (tx, _) = ClientNonInvite::new(b("OPTIONS"), Transport::Unreliable, timers, t0);
        table
            .insert(TxKey::Client(ck.clone()), Transaction::ClientNonInvite(tx))
            .expect("new");
        let (tx, _) = ServerNonInvite::new(b("REGISTER"), Transport::Unreliable, timers);
        let sk = skey("REGISTER", "z9hG4bK2");
        table
            .insert(TxKey::Server(sk.clone()), Transaction::ServerNonInvite(tx))
            .expect("new");
        assert_eq!(
            table.insert(TxKey::Server(sk.clone()), {
                let (tx, _) = ServerNonInvite::new(b("R"), Transport::Unreliable, timers);
                Transaction::ServerNonInvite(tx)
            }),
            Err(TableError::Duplicate(TxKey::Server(sk.clone())))
        );
        assert_eq!(table.len(), 2);
        // Only the client transaction has a timer (E at T1).
        assert_eq!(table.poll_timeout(), Some(t0 + ms(500)));
        let fired = table.handle_timeout(t0 + ms(500));
        assert_eq!(
            fired,
            vec![(TxKey::Client(ck.clone()), Action::Send(b("OPTIONS")))]
        );
        assert_eq!(table.poll_timeout(), Some(t0 + ms(1500)));

        // A response matched by branch + CSeq method.
        let rk = ClientKey::from_response(&ResponseIds {
            branch: "z9hG4bK1",
            cseq_method: "OPTIONS",
        })
        .expect("valid");
        let a = table
            .handle_response(t0 + ms(600), &rk, 200, b("200"))
            .expect("matched");
        assert_eq!(
            a[0],
            Action::PassUp(TuEvent::Response {
                status: 200,
                message: b("200")
            })
        );
        // Now K (T4) is the client's only timer.
        assert_eq!(table.poll_timeout(), Some(t0 + ms(5600)));
        let other = ClientKey::new("z9hG4bK9", "OPTIONS").expect("valid");
        assert!(table.handle_response(t0, &other, 200, b("x")).is_none());

        // The server answers; J runs; both terminate in time.
        table
            .send_response(t0 + ms(700), &sk, 200, b("200"))
            .expect("live");
        let fired = table.handle_timeout(t0 + ms(5600));
        assert_eq!(fired, vec![(TxKey::Client(ck), Action::Terminated)]);
        assert_eq!(table.len(), 1);
        assert_eq!(table.poll_timeout(), Some(t0 + ms(700) + ms(32_000)));
        table.handle_timeout(t0 + ms(40_000));
        assert!(table.is_empty());
        assert_eq!(table.poll_timeout(), None);
    }

    #[test]
    fn ack_reaches_invite_and_cancel_hook() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new();
        let ik = skey("INVITE", "z9hG4bKinv");
        let (tx, _) = ServerInvite::new(
            b("INVITE"),
            b("100"),
            Transport::Reliable,
            Timers::default(),
            t0,
        );
        table
            .insert(TxKey::Server(ik.clone()), Transaction::ServerInvite(tx))
            .expect("new");

        // CANCEL: its own key, targets the INVITE while it is cancellable.
        let ck = skey("CANCEL", "z9hG4bKinv");
        assert!(
            table.handle_request(t0, &ck, false, b("CANCEL")).is_none(),
            "new transaction"
        );
        assert_eq!(table.cancel_target(&ck), Some(ik.clone()));
        assert_eq!(table.cancel_target(&skey("CANCEL", "z9hG4bKzzz")), None);
        table
            .send_response(t0 + ms(10), &ik, 487, b("487"))
            .expect("live");
        assert_eq!(table.cancel_target(&ck), None, "final already sent");

        // The ACK for the 487 matches the INVITE's key; reliable → I = 0.
        let ack = skey("ACK", "z9hG4bKinv");
        let a = table
            .handle_request(t0 + ms(20), &ack, true, b("ACK"))
            .expect("matched");
        assert_eq!(a, vec![Action::Terminated]);
        assert!(table.is_empty());
    }

    #[test]
    fn many_transactions_fire_in_order() {
        let t0 = Instant::now();
        let mut table = TransactionTable::new();
        for i in 0..50u64 {
            let k = ClientKey::new(&format!("z9hG4bK{i}"), "INVITE").expect("valid");
            let ack: crate::transaction::AckBuilder = Box::new(|_| Bytes::new());
            let (tx, _) = ClientInvite::new(
                b("INVITE"),
                ack,
                Transport::Reliable,
                Timers::default(),
                t0 + ms(i),
            );
            table
                .insert(TxKey::Client(k), Transaction::ClientInvite(tx))
                .expect("new");
        }
        let mut timeouts = 0;
        while let Some(at) = table.poll_timeout() {
            for (_, a) in table.handle_timeout(at) {
                timeouts += usize::from(a == Action::PassUp(TuEvent::Timeout));
            }
        }
        assert_eq!(timeouts, 50);
        assert!(table.is_empty());
    }

    mod prop {
        use super::*;
        use proptest::prelude::*;
        use std::time::Duration;

        #[derive(Debug, Clone)]
        enum Ev {
            /// A response with this status to client transaction n.
            Response(u8, u16),
            /// A retransmitted request (or ACK) to server transaction n.
            Request(u8, bool),
            /// The TU answers server transaction n.
            Answer(u8, u16),
            TransportError(u8),
            Advance(u16),
        }

        fn status() -> impl Strategy<Value = u16> {
            prop_oneof![
                Just(100u16),
                Just(180),
                Just(200),
                Just(302),
                Just(487),
                Just(503),
                0u16..800
            ]
        }

        fn ev() -> impl Strategy<Value = Ev> {
            prop_oneof![
                (0u8..8, status()).prop_map(|(n, s)| Ev::Response(n, s)),
                (0u8..8, any::<bool>()).prop_map(|(n, a)| Ev::Request(n, a)),
                (0u8..8, status()).prop_map(|(n, s)| Ev::Answer(n, s)),
                (0u8..8).prop_map(Ev::TransportError),
                (0u16..5000).prop_map(Ev::Advance),
            ]
        }

        fn ckey(n: u8) -> ClientKey {
            let method = if n & 1 == 0 { "INVITE" } else { "BYE" };
            ClientKey::new(&format!("z9hG4bKc{n}"), method).expect("valid")
        }

        fn skey_n(n: u8) -> ServerKey {
            skey(
                if n & 1 == 0 { "INVITE" } else { "OPTIONS" },
                &format!("z9hG4bKs{n}"),
            )
        }

        proptest! {
            /// Whatever arrives, every transaction terminates within 64*T1
            /// plus T4 of the last input, nothing is sent after Terminated,
            /// and the table ends empty.
            #[test]
            fn every_transaction_terminates(events in proptest::collection::vec(ev(), 0..80), reliable in any::<bool>()) {
                let tp = if reliable { Transport::Reliable } else { Transport::Unreliable };
                let timers = Timers::default();
                let t0 = Instant::now();
                let mut now = t0;
                let mut table = TransactionTable::new();
                for n in 0..8u8 {
                    let tx = if n & 1 == 0 {
                        let ack: crate::transaction::AckBuilder = Box::new(|_| Bytes::from_static(b"ACK"));
                        Transaction::ClientInvite(ClientInvite::new(b("INVITE"), ack, tp, timers, now).0)
                    } else {
                        Transaction::ClientNonInvite(ClientNonInvite::new(b("BYE"), tp, timers, now).0)
                    };
                    table.insert(TxKey::Client(ckey(n)), tx).expect("new");
                    let tx = if n & 1 == 0 {
                        Transaction::ServerInvite(ServerInvite::new(b("INVITE"), b("100"), tp, timers, now).0)
                    } else {
                        Transaction::ServerNonInvite(ServerNonInvite::new(b("OPTIONS"), tp, timers).0)
                    };
                    table.insert(TxKey::Server(skey_n(n)), tx).expect("new");
                }
                let mut tagged: Vec<(TxKey, Action)> = Vec::new();
                for e in events {
                    match e {
                        Ev::Response(n, s) => {
                            let k = ckey(n);
                            for a in table.handle_response(now, &k, s, b("resp")).unwrap_or_default() {
                                tagged.push((TxKey::Client(k.clone()), a));
                            }
                        }
                        Ev::Request(n, ack) => {
                            let k = skey_n(n);
                            for a in table.handle_request(now, &k, ack, b("req")).unwrap_or_default() {
                                tagged.push((TxKey::Server(k.clone()), a));
                            }
                        }
                        Ev::Answer(n, s) => {
                            let k = skey_n(n);
                            for a in table.send_response(now, &k, s, b("answer")).unwrap_or_default() {
                                tagged.push((TxKey::Server(k.clone()), a));
                            }
                        }
                        Ev::TransportError(n) => {
                            let k = TxKey::Client(ckey(n));
                            tagged.extend(table.handle_transport_error(now, &k).unwrap_or_default().into_iter().map(|a| (k.clone(), a)));
                        }
                        Ev::Advance(step) => {
                            now += Duration::from_millis(u64::from(step));
                            tagged.extend(table.handle_timeout(now));
                        }
                    }
                }
                // Server transactions the TU never answered, and client
                // INVITEs in Proceeding, wait for the TU by design (its
                // answer, its Timer C); play the TU now.
                for n in 0..8u8 {
                    table.cancel_sent(now, &ckey(n));
                    let k = skey_n(n);
                    tagged.extend(table.send_response(now, &k, 500, b("500")).unwrap_or_default().into_iter().map(|a| (TxKey::Server(k.clone()), a)));
                }
                let deadline = now + timers.t1x64() + timers.t4 + Duration::from_secs(1);
                let mut steps = 0;
                while let Some(at) = table.poll_timeout() {
                    prop_assert!(at <= deadline, "timer beyond bound: {:?}", at - now);
                    tagged.extend(table.handle_timeout(at));
                    steps += 1;
                    prop_assert!(steps < 10_000);
                }
                prop_assert!(table.is_empty(), "leaked: {}", table.len());
                let mut done = std::collections::HashSet::new();
                for (k, a) in &tagged {
                    prop_assert!(!done.contains(k), "{k:?} acted after Terminated: {a:?}");
                    if *a == Action::Terminated {
                        done.insert(k.clone());
                    }
                }
                prop_assert_eq!(done.len(), 16);
            }
        }
    }
}
