//! Bindings this proxy holds for others: per AOR, the last binding set each
//! origin proxy sent (or a peer lookup returned), apart from the registrar's
//! own location store, and the rule that merges the two for routing.
//!
//! A replica set replaces the previous set of the same origin whole (the
//! origin sends its complete state after every change, in order), so removals
//! replicate too. Replicas lapse with the bindings' own expiry.
//!
//! Which of two bindings with the same identity (RFC 5626 instance/reg-id,
//! else the contact URI) wins, [`is_newer`]:
//!
//! ```text
//! same Call-ID       the higher CSeq (RFC 3261 §10.3 step 7's order); equal: keep
//! different Call-ID  the later registration time (the age the origin reported,
//!                    counted back from receipt); equal: keep
//! "keep" means the binding already chosen: the local one over a replica, so a
//! replica never overwrites a newer (or equally new) local binding.
//! ```

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, MutexGuard};
use std::time::Instant;

use crate::registrar::Binding;

const SHARDS: usize = 16;

/// Whether `candidate` should replace `existing` (same binding identity).
pub fn is_newer(candidate: &Binding, existing: &Binding) -> bool {
    if candidate.call_id == existing.call_id {
        candidate.cseq > existing.cseq
    } else {
        candidate.registered_at > existing.registered_at
    }
}

/// The bindings to route to: `local` first, then each replica that is not
/// shadowed by an equally new binding of the same identity; highest q first
/// (equal q keeps this order).
pub fn merge(local: Vec<Binding>, replicas: impl IntoIterator<Item = Binding>) -> Vec<Binding> {
    let mut out = local;
    for r in replicas {
        match out.iter().position(|b| b.id().same(&r.id())) {
            Some(i) if is_newer(&r, &out[i]) => out[i] = r,
            Some(_) => {}
            None => out.push(r),
        }
    }
    out.sort_by_key(|b| std::cmp::Reverse(b.effective_q()));
    out
}

/// One origin's set for an AOR.
#[derive(Debug, Clone)]
struct Held {
    origin: String,
    bindings: Vec<Binding>,
}

/// The replica store (sharded, sync locks never held across `.await`).
#[derive(Debug)]
pub struct Replicas {
    shards: Vec<Mutex<HashMap<String, Vec<Held>>>>,
}

impl Default for Replicas {
    fn default() -> Self {
        Replicas {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }
}

impl Replicas {
    fn shard(&self, aor: &str) -> MutexGuard<'_, HashMap<String, Vec<Held>>> {
        let mut h = DefaultHasher::new();
        aor.hash(&mut h);
        let m = &self.shards[(h.finish() as usize) % SHARDS];
        // Every mutation below is build-then-swap: a poisoned shard is consistent.
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces `origin`'s set for `aor` with `bindings` (lapsed ones are
    /// dropped; an empty set removes it). Returns how many are held for it.
    pub fn put(&self, aor: &str, origin: &str, bindings: Vec<Binding>, now: Instant) -> usize {
        let live: Vec<Binding> = bindings
            .into_iter()
            .filter(|b| !b.is_expired(now))
            .collect();
        let n = live.len();
        let mut shard = self.shard(aor);
        let sets = shard.entry(aor.to_owned()).or_default();
        sets.retain(|h| h.origin != origin);
        if !live.is_empty() {
            sets.push(Held {
                origin: origin.to_owned(),
                bindings: live,
            });
        }
        if sets.is_empty() {
            shard.remove(aor);
        }
        n
    }

    /// The live replicas of `aor` with their origin, oldest origin first.
    pub fn get(&self, aor: &str, now: Instant) -> Vec<(String, Binding)> {
        let shard = self.shard(aor);
        let Some(sets) = shard.get(aor) else {
            return vec![];
        };
        sets.iter()
            .flat_map(|h| {
                h.bindings
                    .iter()
                    .filter(|b| !b.is_expired(now))
                    .map(|b| (h.origin.clone(), b.clone()))
            })
            .collect()
    }

    /// Drops every lapsed replica; returns how many.
    pub fn purge_expired(&self, now: Instant) -> usize {
        let mut removed = 0;
        for s in &self.shards {
            let mut map = s.lock().unwrap_or_else(|e| e.into_inner());
            map.retain(|_, sets| {
                sets.retain_mut(|h| {
                    let before = h.bindings.len();
                    h.bindings.retain(|b| !b.is_expired(now));
                    removed += before - h.bindings.len();
                    !h.bindings.is_empty()
                });
                !sets.is_empty()
            });
        }
        removed
    }

    /// Replica bindings held (lapsed-but-not-purged included).
    pub fn count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let map = s.lock().unwrap_or_else(|e| e.into_inner());
                map.values()
                    .flatten()
                    .map(|h| h.bindings.len())
                    .sum::<usize>()
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registrar::Q;
    use std::time::Duration;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    /// A binding of bob: (contact, call_id, cseq, registered `ago` s before
    /// `now`, expires in `ttl` s).
    fn b(now: Instant, contact: &str, call_id: &str, cseq: u32, ago: u64, ttl: u64) -> Binding {
        Binding {
            aor: "bob@d".into(),
            contact: contact.into(),
            q: None,
            expires_at: now + secs(ttl),
            registered_at: now.checked_sub(secs(ago)).unwrap_or(now),
            call_id: call_id.into(),
            cseq,
            path: vec![format!("sip:{call_id}-{cseq}@lb;lr")],
            received: None,
            instance: None,
            reg_id: None,
            user_agent: None,
        }
    }

    #[test]
    fn merge_table() {
        let now = Instant::now() + secs(1000);
        // (local, replicas, want (contact, call_id, cseq) in order)
        type Row = (
            Vec<Binding>,
            Vec<Binding>,
            Vec<(&'static str, &'static str, u32)>,
        );
        let table: Vec<Row> = vec![
            // Only a replica: it is used.
            (
                vec![],
                vec![b(now, "sip:a", "c", 2, 10, 60)],
                vec![("sip:a", "c", 2)],
            ),
            // Same Call-ID: the higher CSeq wins either way round.
            (
                vec![b(now, "sip:a", "c", 3, 10, 60)],
                vec![b(now, "sip:a", "c", 2, 5, 60)],
                vec![("sip:a", "c", 3)],
            ),
            (
                vec![b(now, "sip:a", "c", 2, 10, 60)],
                vec![b(now, "sip:a", "c", 3, 20, 60)],
                vec![("sip:a", "c", 3)],
            ),
            // Equal CSeq: the local one stays.
            (
                vec![b(now, "sip:a", "c", 2, 10, 60)],
                vec![b(now, "sip:a", "c", 2, 1, 90)],
                vec![("sip:a", "c", 2)],
            ),
            // Different Call-ID: the later registration wins.
            (
                vec![b(now, "sip:a", "old", 9, 100, 60)],
                vec![b(now, "sip:a", "new", 1, 5, 60)],
                vec![("sip:a", "new", 1)],
            ),
            (
                vec![b(now, "sip:a", "new", 1, 5, 60)],
                vec![b(now, "sip:a", "old", 9, 100, 60)],
                vec![("sip:a", "new", 1)],
            ),
            // Different contacts: both.
            (
                vec![b(now, "sip:a", "c", 1, 5, 60)],
                vec![b(now, "sip:b", "d", 1, 5, 60)],
                vec![("sip:a", "c", 1), ("sip:b", "d", 1)],
            ),
        ];
        for (i, (local, replicas, want)) in table.into_iter().enumerate() {
            let got: Vec<(String, String, u32)> = merge(local, replicas)
                .into_iter()
                .map(|b| (b.contact, b.call_id, b.cseq))
                .collect();
            let want: Vec<(String, String, u32)> = want
                .into_iter()
                .map(|(c, i, s)| (c.into(), i.into(), s))
                .collect();
            assert_eq!(got, want, "row {i}");
        }
    }

    #[test]
    fn merge_orders_by_q() {
        let now = Instant::now();
        let mut low = b(now, "sip:low", "c", 1, 0, 60);
        low.q = Q::from_per_mille(100);
        let high = b(now, "sip:high", "d", 1, 0, 60);
        let got: Vec<String> = merge(vec![low], vec![high])
            .into_iter()
            .map(|b| b.contact)
            .collect();
        assert_eq!(got, ["sip:high", "sip:low"]);
    }

    #[test]
    fn sets_replace_per_origin_and_lapse() {
        let now = Instant::now();
        let r = Replicas::default();
        let contacts = |r: &Replicas, t: Instant| -> Vec<(String, String)> {
            r.get("bob@d", t)
                .into_iter()
                .map(|(o, b)| (o, b.contact))
                .collect()
        };
        // (origin, set, at +s, want (origin, contact) after)
        type Row = (
            &'static str,
            Vec<(&'static str, u64)>,
            u64,
            Vec<(&'static str, &'static str)>,
        );
        let table: Vec<Row> = vec![
            (
                "p2",
                vec![("sip:a", 60), ("sip:b", 30)],
                0,
                vec![("p2", "sip:a"), ("p2", "sip:b")],
            ),
            // A second origin adds its own set.
            (
                "p3",
                vec![("sip:c", 60)],
                0,
                vec![("p2", "sip:a"), ("p2", "sip:b"), ("p3", "sip:c")],
            ),
            // p2's new set replaces its old one whole (sip:b was removed there).
            (
                "p2",
                vec![("sip:a", 60)],
                0,
                vec![("p3", "sip:c"), ("p2", "sip:a")],
            ),
            // An empty set removes p3's.
            ("p3", vec![], 0, vec![("p2", "sip:a")]),
            // Lapsed entries are not stored.
            ("p3", vec![("sip:d", 0)], 0, vec![("p2", "sip:a")]),
        ];
        for (i, (origin, set, at, want)) in table.into_iter().enumerate() {
            let t = now + secs(at);
            let bindings = set
                .into_iter()
                .map(|(c, ttl)| b(t, c, "c", 1, 0, ttl))
                .collect();
            r.put("bob@d", origin, bindings, t);
            let want: Vec<(String, String)> = want
                .into_iter()
                .map(|(o, c)| (o.into(), c.into()))
                .collect();
            assert_eq!(contacts(&r, t), want, "row {i}");
        }
        assert_eq!(r.count(), 1);
        assert!(
            contacts(&r, now + secs(61)).is_empty(),
            "hidden once lapsed"
        );
        assert_eq!(r.purge_expired(now + secs(61)), 1);
        assert_eq!(r.count(), 0);
        assert!(r.get("nobody@d", now).is_empty());
    }
}
