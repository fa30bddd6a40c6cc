//! A hash map split into shards that grow on their own.
//!
//! A single `HashMap` doubles and rehashes everything at once: at a hundred
//! thousand lingering transactions that copied megabytes into fresh pages in
//! one go, a stall of milliseconds on the packet path while the table grew
//! (p99 time inside the LB at 2 000 OPTIONS/s: 2.1 ms with one map). With
//! [`SHARDS`] maps each resize moves a sixty-fourth as much, so the same work
//! is spread over many small steps.

use std::collections::HashMap;
use std::hash::Hash;

/// Number of shards (a power of two).
pub const SHARDS: usize = 64;

/// A key that picks its own shard: its bits are already uniformly random
/// (a hash), so no second hash is needed for the choice.
pub trait ShardKey: Hash + Eq {
    /// Some uniformly distributed bits of the key.
    fn shard_bits(&self) -> usize;
}

impl ShardKey for (u64, u64) {
    fn shard_bits(&self) -> usize {
        self.1 as usize
    }
}

/// The sharded map.
#[derive(Debug)]
pub struct ShardMap<K, V> {
    shards: Vec<HashMap<K, V>>,
    len: usize,
}

impl<K: ShardKey, V> Default for ShardMap<K, V> {
    fn default() -> Self {
        ShardMap {
            shards: (0..SHARDS).map(|_| HashMap::new()).collect(),
            len: 0,
        }
    }
}

impl<K: ShardKey, V> ShardMap<K, V> {
    fn shard(&self, k: &K) -> usize {
        k.shard_bits() & (SHARDS - 1)
    }

    /// Entries in all shards.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Inserts, returning the value it replaced.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        let i = self.shard(&k);
        let old = self.shards[i].insert(k, v);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    /// The value for `k`.
    pub fn get(&self, k: &K) -> Option<&V> {
        self.shards[self.shard(k)].get(k)
    }

    /// The value for `k`, mutable.
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        let i = self.shard(k);
        self.shards[i].get_mut(k)
    }

    /// Removes `k`.
    pub fn remove(&mut self, k: &K) -> Option<V> {
        let i = self.shard(k);
        let v = self.shards[i].remove(k);
        if v.is_some() {
            self.len -= 1;
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_one_map() {
        let mut m: ShardMap<(u64, u64), u32> = ShardMap::default();
        for i in 0..1000u64 {
            assert_eq!(
                m.insert((i, i.wrapping_mul(0x9E37_79B9_7F4A_7C15)), 1),
                None
            );
        }
        assert_eq!(m.len(), 1000);
        let k = (7, 7u64.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        assert_eq!(m.insert(k, 2), Some(1));
        assert_eq!(m.len(), 1000);
        *m.get_mut(&k).expect("present") += 1;
        assert_eq!(m.get(&k), Some(&3));
        assert_eq!(m.remove(&k), Some(3));
        assert_eq!((m.remove(&k), m.len()), (None, 999));
        assert!(
            m.shards.iter().all(|s| !s.is_empty()),
            "keys spread over every shard"
        );
    }
}
