//! Maps keyed by watch ids, with a hash fit for them.
//!
//! The watch task looks a watch up by its local id or etcd's watch id on every create, answer
//! and event. Both are integers this client hands out in sequence (etcd gives a watch the id
//! its create asks for; a proxy counts its own up from 0), so the standard library's SipHash,
//! built to resist keys chosen by an attacker, costs more than the rest of the lookup for
//! nothing. One multiplication by an odd constant spreads them over the table instead.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};

/// A map from watch ids to `V`.
pub(super) type IdMap<K, V> = HashMap<K, V, Ids>;

/// Builds [`IdHasher`]s.
#[derive(Debug, Default, Clone, Copy)]
pub(super) struct Ids;

impl BuildHasher for Ids {
    type Hasher = IdHasher;

    fn build_hasher(&self) -> IdHasher {
        IdHasher(0)
    }
}

/// Hashes an integer id by multiplying it by an odd constant (a bijection: two ids never
/// collide in full; the table's low bits follow the id's, and its tag bits are well mixed).
#[derive(Debug)]
pub(super) struct IdHasher(u64);

/// 2^64 divided by the golden ratio, made odd.
const SPREAD: u64 = 0x9E37_79B9_7F4A_7C15;

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*byte)).wrapping_mul(SPREAD);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = (self.0 ^ id).wrapping_mul(SPREAD);
    }

    fn write_i64(&mut self, id: i64) {
        self.write_u64(id as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequential_and_negative_ids_are_found() {
        let mut map: IdMap<i64, i64> = IdMap::default();
        for id in (-100..10_000).chain([i64::MIN, i64::MAX, 1 << 40]) {
            map.insert(id, id.wrapping_mul(2));
        }
        for id in (-100..10_000).chain([i64::MIN, i64::MAX, 1 << 40]) {
            assert_eq!(map.get(&id), Some(&id.wrapping_mul(2)));
        }
        assert_eq!(map.len(), 10_103);
    }
}
