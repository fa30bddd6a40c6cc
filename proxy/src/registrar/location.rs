//! The in-memory location service: bindings per address of record in 64
//! shards of `Mutex<HashMap>` (sync locks, never held across `.await`).
//!
//! ```text
//! RFC 3261 §10.3 step 7: For each address, the registrar then searches the
//! list of current bindings [...]. If the binding does not exist, it is
//! tentatively added. If the binding does exist, the registrar checks the
//! Call-ID value. If the Call-ID value in the existing binding differs from
//! the Call-ID value in the request, the binding MUST be removed if the
//! expiration time is zero and updated otherwise. If they are the same, the
//! registrar compares the CSeq value. If the value is higher than that of
//! the existing binding, it MUST update or remove the binding as above. If
//! not, the update MUST be aborted and the request fails.
//! [...] The binding updates MUST be committed [...] if and only if all
//! binding updates and additions succeed. If any one of them fails [...] the
//! request MUST fail with a 500 (Server Error) response and all tentative
//! binding updates MUST be removed.
//! RFC 3261 §10.3 step 6: [for "*" with Expires 0] the registrar checks
//! whether the Call-ID agrees with the value stored for each binding. If
//! not, it MUST remove the binding. If it does agree, it MUST remove the
//! binding only if the CSeq in the request is higher than the value stored
//! for that binding. Otherwise, the update MUST be aborted.
//! ```

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::binding::{binding_id, Binding, Q};

/// Number of shards; a power of two.
pub const SHARDS: usize = 64;

/// Why a location update was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegisterError {
    /// Same Call-ID with a CSeq not higher than the stored one: a reordered or
    /// replayed REGISTER (§10.3 step 6/7). Nothing was changed; answer 500.
    #[error("out-of-order REGISTER for {contact}: CSeq {got} <= stored {stored}")]
    OutOfOrder {
        /// The contact (or `*`) whose binding refused the update.
        contact: String,
        /// CSeq in the request.
        got: u32,
        /// CSeq stored with the binding.
        stored: u32,
    },
    /// The AOR would exceed its configured number of bindings; nothing was
    /// changed.
    #[error("too many bindings for {aor} (max {max})")]
    TooManyBindings {
        /// The address of record.
        aor: String,
        /// The configured maximum.
        max: usize,
    },
}

/// One contact to add, refresh or remove.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactUpdate {
    /// The contact URI as received.
    pub uri: String,
    /// Granted lifetime; zero removes the binding.
    pub expires: Duration,
    /// q-value.
    pub q: Option<Q>,
    /// `+sip.instance`.
    pub instance: Option<String>,
    /// `reg-id`.
    pub reg_id: Option<u32>,
}

/// What a REGISTER changes.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// `Contact: *` with `Expires: 0`: remove every binding.
    RemoveAll,
    /// Add, refresh or remove these contacts.
    Contacts(Vec<ContactUpdate>),
}

/// A REGISTER's worth of updates for one AOR, after validation and expiry
/// granting.
#[derive(Debug, Clone, PartialEq)]
pub struct Updates {
    /// Call-ID of the REGISTER.
    pub call_id: String,
    /// CSeq number of the REGISTER.
    pub cseq: u32,
    /// Path URIs of the REGISTER (RFC 3327), stored with every binding.
    pub path: Vec<String>,
    /// Source address of the REGISTER.
    pub received: Option<SocketAddr>,
    /// User-Agent of the REGISTER.
    pub user_agent: Option<String>,
    /// The change itself.
    pub change: Change,
}

/// The sharded location store.
#[derive(Debug)]
pub struct Location {
    shards: Vec<Mutex<HashMap<String, Vec<Binding>>>>,
    max_per_aor: usize,
}

impl Default for Location {
    fn default() -> Self {
        Self::new(usize::MAX)
    }
}

impl Location {
    /// An empty store allowing at most `max_per_aor` bindings per AOR.
    pub fn new(max_per_aor: usize) -> Self {
        Location {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            max_per_aor,
        }
    }

    fn shard(&self, aor: &str) -> MutexGuard<'_, HashMap<String, Vec<Binding>>> {
        // SipHash with fixed keys: any stable spread will do, it is never exposed.
        let mut h = DefaultHasher::new();
        aor.hash(&mut h);
        let i = (h.finish() as usize) & (SHARDS - 1);
        lock(&self.shards[i])
    }

    /// Applies a REGISTER's updates to `aor` atomically (§10.3 steps 6–8) and
    /// returns the AOR's live bindings afterwards (what the 200 OK lists),
    /// ordered like [`Location::lookup`].
    pub fn apply(
        &self,
        aor: &str,
        updates: &Updates,
        now: Instant,
    ) -> Result<Vec<Binding>, RegisterError> {
        let mut shard = self.shard(aor);
        // Work on a copy so a refused update leaves nothing behind.
        let mut list: Vec<Binding> = shard
            .get(aor)
            .map(|v| v.iter().filter(|b| !b.is_expired(now)).cloned().collect())
            .unwrap_or_default();
        match &updates.change {
            Change::RemoveAll => {
                for b in &list {
                    check_order(b, updates, "*")?;
                }
                list.clear();
            }
            Change::Contacts(contacts) => {
                for c in contacts {
                    let id = binding_id(&c.uri, c.instance.as_deref(), c.reg_id);
                    let pos = list.iter().position(|b| b.id().same(&id));
                    if let Some(i) = pos {
                        check_order(&list[i], updates, &c.uri)?;
                    }
                    let fresh = (!c.expires.is_zero()).then(|| Binding {
                        aor: aor.to_owned(),
                        contact: c.uri.clone(),
                        q: c.q,
                        expires_at: now + c.expires,
                        registered_at: now,
                        call_id: updates.call_id.clone(),
                        cseq: updates.cseq,
                        path: updates.path.clone(),
                        received: updates.received,
                        instance: c.instance.clone(),
                        reg_id: c.reg_id,
                        user_agent: updates.user_agent.clone(),
                    });
                    match (pos, fresh) {
                        (Some(i), Some(b)) => list[i] = b,
                        (Some(i), None) => {
                            list.remove(i);
                        }
                        (None, Some(b)) => list.push(b),
                        // Removing a binding that does not exist is a no-op.
                        (None, None) => {}
                    }
                }
                if list.len() > self.max_per_aor {
                    return Err(RegisterError::TooManyBindings {
                        aor: aor.to_owned(),
                        max: self.max_per_aor,
                    });
                }
            }
        }
        let mut out = list.clone();
        if list.is_empty() {
            shard.remove(aor);
        } else {
            shard.insert(aor.to_owned(), list);
        }
        drop(shard);
        sort_by_q(&mut out);
        Ok(out)
    }

    /// The live bindings of `aor`, highest q first (no q counts as 1; equal
    /// q keeps registration order).
    pub fn lookup(&self, aor: &str, now: Instant) -> Vec<Binding> {
        let mut out: Vec<Binding> = self
            .shard(aor)
            .get(aor)
            .map(|v| v.iter().filter(|b| !b.is_expired(now)).cloned().collect())
            .unwrap_or_default();
        sort_by_q(&mut out);
        out
    }

    /// Drops every binding expired at `now`; returns how many. Meant for a
    /// periodic timer; `lookup` already hides expired bindings.
    pub fn purge_expired(&self, now: Instant) -> usize {
        let mut removed = 0;
        for shard in &self.shards {
            let mut map = lock(shard);
            map.retain(|_, list| {
                let before = list.len();
                list.retain(|b| !b.is_expired(now));
                removed += before - list.len();
                !list.is_empty()
            });
        }
        removed
    }

    /// Stored bindings, expired-but-not-purged included (the gauge of active
    /// registrations is exact right after `purge_expired`).
    pub fn count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| lock(s).values().map(Vec::len).sum::<usize>())
            .sum()
    }

    /// Number of AORs with at least one stored binding.
    pub fn aor_count(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Every live binding (locks one shard at a time, so it is not an atomic
    /// picture of the whole store). Replicas of peers' bindings are not here:
    /// they live in `churn::replicas`, apart from §10.3's order checks.
    pub fn snapshot(&self, now: Instant) -> Vec<Binding> {
        let mut out = Vec::new();
        for shard in &self.shards {
            let map = lock(shard);
            out.extend(
                map.values()
                    .flatten()
                    .filter(|b| !b.is_expired(now))
                    .cloned(),
            );
        }
        out
    }
}

/// §10.3 step 7: a same-Call-ID update must carry a higher CSeq.
fn check_order(existing: &Binding, updates: &Updates, contact: &str) -> Result<(), RegisterError> {
    if existing.call_id == updates.call_id && updates.cseq <= existing.cseq {
        return Err(RegisterError::OutOfOrder {
            contact: contact.to_owned(),
            got: updates.cseq,
            stored: existing.cseq,
        });
    }
    Ok(())
}

fn sort_by_q(list: &mut [Binding]) {
    // Stable: equal q keeps registration order.
    list.sort_by_key(|b| std::cmp::Reverse(b.effective_q()));
}

/// A poisoned shard still holds consistent data (every mutation above is
/// build-then-swap), so we keep serving it rather than panic.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn contact(uri: &str, expires: u64) -> ContactUpdate {
        ContactUpdate {
            uri: uri.into(),
            expires: secs(expires),
            q: None,
            instance: None,
            reg_id: None,
        }
    }

    fn upd(call_id: &str, cseq: u32, change: Change) -> Updates {
        Updates {
            call_id: call_id.into(),
            cseq,
            path: vec!["<sip:tok@10.0.1.1;lr;ob>".into()],
            received: Some("192.0.2.1:5060".parse().expect("addr")),
            user_agent: Some("test".into()),
            change,
        }
    }

    fn contacts(list: &[Binding]) -> Vec<&str> {
        list.iter().map(|b| b.contact.as_str()).collect()
    }

    #[test]
    fn add_refresh_remove_table() {
        // Each step: (call-id, cseq, change, Ok(contacts after) or Err)
        type Step = (&'static str, u32, Change, Result<Vec<&'static str>, ()>);
        let steps: Vec<Step> = vec![
            (
                "c1",
                1,
                Change::Contacts(vec![contact("sip:a@1", 3600)]),
                Ok(vec!["sip:a@1"]),
            ),
            // Several contacts in one REGISTER; a refresh of a@1 (matched case-insensitively on host).
            (
                "c1",
                2,
                Change::Contacts(vec![contact("sip:a@1", 600), contact("sip:a@2", 600)]),
                Ok(vec!["sip:a@1", "sip:a@2"]),
            ),
            // Same Call-ID, same CSeq on an existing binding → refused, and
            // the new a@3 in the same request is rolled back.
            (
                "c1",
                2,
                Change::Contacts(vec![contact("sip:a@3", 600), contact("sip:a@2", 60)]),
                Err(()),
            ),
            // Same Call-ID, lower CSeq → refused.
            (
                "c1",
                1,
                Change::Contacts(vec![contact("sip:a@1", 0)]),
                Err(()),
            ),
            // A different Call-ID may refresh or remove regardless of CSeq.
            (
                "c2",
                1,
                Change::Contacts(vec![contact("SIP:a@1", 0)]),
                Ok(vec!["sip:a@2"]),
            ),
            // Removing an unknown contact is a no-op.
            (
                "c2",
                2,
                Change::Contacts(vec![contact("sip:zz@9", 0)]),
                Ok(vec!["sip:a@2"]),
            ),
            // `*` with the same Call-ID but an old CSeq → refused.
            ("c1", 2, Change::RemoveAll, Err(())),
            ("c1", 3, Change::RemoveAll, Ok(vec![])),
        ];
        let loc = Location::default();
        let now = Instant::now();
        for (i, (cid, cseq, change, want)) in steps.into_iter().enumerate() {
            let got = loc.apply("alice@example.com", &upd(cid, cseq, change), now);
            match (got, want) {
                (Ok(list), Ok(want)) => assert_eq!(contacts(&list), want, "step {i}"),
                (Err(RegisterError::OutOfOrder { .. }), Err(())) => {}
                (got, want) => panic!("step {i}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(loc.count(), 0);
        assert_eq!(loc.aor_count(), 0);
    }

    #[test]
    fn refused_update_is_atomic() {
        let loc = Location::default();
        let now = Instant::now();
        loc.apply(
            "a",
            &upd("x", 5, Change::Contacts(vec![contact("sip:a@1", 60)])),
            now,
        )
        .expect("ok");
        // Adds b@2 then hits the out-of-order a@1: b@2 must not be stored.
        let bad = upd(
            "x",
            5,
            Change::Contacts(vec![contact("sip:b@2", 60), contact("sip:a@1", 60)]),
        );
        assert!(loc.apply("a", &bad, now).is_err());
        assert_eq!(contacts(&loc.lookup("a", now)), vec!["sip:a@1"]);
    }

    #[test]
    fn instance_and_reg_id_replace_the_flow() {
        let loc = Location::default();
        let now = Instant::now();
        let flow = |uri: &str, reg_id| ContactUpdate {
            instance: Some("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>".into()),
            reg_id: Some(reg_id),
            ..contact(uri, 3600)
        };
        loc.apply(
            "a",
            &upd(
                "c1",
                1,
                Change::Contacts(vec![
                    flow("sip:a@10.0.0.1:5060", 1),
                    flow("sip:a@10.0.0.1:5060", 2),
                ]),
            ),
            now,
        )
        .expect("ok");
        assert_eq!(loc.lookup("a", now).len(), 2, "two reg-ids, two flows");
        // After a reboot: new Call-ID, new contact address, same instance + reg-id 1.
        let list = loc
            .apply(
                "a",
                &upd(
                    "c2",
                    1,
                    Change::Contacts(vec![flow("sip:a@10.0.0.9:5062", 1)]),
                ),
                now,
            )
            .expect("ok");
        let mut got: Vec<(&str, Option<u32>)> = list
            .iter()
            .map(|b| (b.contact.as_str(), b.reg_id))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("sip:a@10.0.0.1:5060", Some(2)),
                ("sip:a@10.0.0.9:5062", Some(1))
            ]
        );
        // Path, source and user agent are stored.
        assert_eq!(list[0].path, vec!["<sip:tok@10.0.1.1;lr;ob>".to_string()]);
        assert!(list[0].received.is_some());
    }

    #[test]
    fn lookup_orders_by_q_and_hides_expired() {
        let loc = Location::default();
        let now = Instant::now();
        let with_q = |uri: &str, q: Option<u16>, e| ContactUpdate {
            q: q.and_then(Q::from_per_mille),
            ..contact(uri, e)
        };
        let change = Change::Contacts(vec![
            with_q("sip:low@h", Some(100), 3600),
            with_q("sip:none@h", None, 3600),
            with_q("sip:mid@h", Some(500), 10),
            with_q("sip:top@h", Some(1000), 3600),
        ]);
        loc.apply("a", &upd("c", 1, change), now).expect("ok");
        assert_eq!(
            contacts(&loc.lookup("a", now)),
            vec!["sip:none@h", "sip:top@h", "sip:mid@h", "sip:low@h"]
        );
        // Simulated time: mid@h lapses after 10 s.
        let later = now + secs(10);
        assert_eq!(
            contacts(&loc.lookup("a", later)),
            vec!["sip:none@h", "sip:top@h", "sip:low@h"]
        );
        assert_eq!(loc.count(), 4, "not purged yet");
        assert_eq!(loc.purge_expired(later), 1);
        assert_eq!(loc.count(), 3);
        assert_eq!(loc.purge_expired(now + secs(3600)), 3);
        assert_eq!(loc.aor_count(), 0);
        assert!(loc.lookup("b", now).is_empty());
    }

    #[test]
    fn max_bindings_per_aor() {
        let loc = Location::new(2);
        let now = Instant::now();
        let three = Change::Contacts(vec![
            contact("sip:1@h", 60),
            contact("sip:2@h", 60),
            contact("sip:3@h", 60),
        ]);
        assert!(matches!(
            loc.apply("a", &upd("c", 1, three), now),
            Err(RegisterError::TooManyBindings { max: 2, .. })
        ));
        assert_eq!(loc.count(), 0);
    }

    #[test]
    fn snapshot_lists_live_bindings() {
        let a = Location::default();
        let now = Instant::now();
        a.apply(
            "x",
            &upd("c", 1, Change::Contacts(vec![contact("sip:x@1", 60)])),
            now,
        )
        .expect("ok");
        a.apply(
            "y",
            &upd("c", 1, Change::Contacts(vec![contact("sip:y@1", 60)])),
            now,
        )
        .expect("ok");
        let mut snap: Vec<String> = a.snapshot(now).into_iter().map(|b| b.contact).collect();
        snap.sort();
        assert_eq!(snap, ["sip:x@1", "sip:y@1"]);
        assert!(a.snapshot(now + secs(60)).is_empty());
    }

    #[derive(Debug, Clone)]
    enum Op {
        Apply {
            aor: u8,
            contact: u8,
            expires: u8,
            call: u8,
            cseq: u8,
        },
        Purge,
        Advance(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u8..3, 0u8..4, 0u8..20, 0u8..2, 0u8..5).prop_map(
                |(aor, contact, expires, call, cseq)| Op::Apply {
                    aor,
                    contact,
                    expires,
                    call,
                    cseq
                }
            ),
            Just(Op::Purge),
            (0u8..15).prop_map(Op::Advance),
        ]
    }

    proptest! {
        #[test]
        fn expired_bindings_are_never_visible(ops in proptest::collection::vec(op(), 1..60)) {
            let loc = Location::default();
            let start = Instant::now();
            let mut now = start;
            for op in ops {
                match op {
                    Op::Apply { aor, contact: c, expires, call, cseq } => {
                        let u = upd(&format!("call{call}"), u32::from(cseq),
                            Change::Contacts(vec![contact(&format!("sip:{c}@h"), u64::from(expires))]));
                        let _ = loc.apply(&format!("aor{aor}"), &u, now);
                    }
                    Op::Purge => { loc.purge_expired(now); }
                    Op::Advance(s) => now += secs(u64::from(s)),
                }
                for aor in 0..3 {
                    for b in loc.lookup(&format!("aor{aor}"), now) {
                        prop_assert!(b.expires_at > now, "expired binding visible: {b:?}");
                    }
                }
                for b in loc.snapshot(now) {
                    prop_assert!(b.expires_at > now);
                }
            }
            loc.purge_expired(now + secs(256));
            prop_assert_eq!(loc.count(), 0);
        }
    }
}
