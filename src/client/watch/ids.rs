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

/// Hashes an integer id by multiplying it by an odd constant and folding the high half of
/// the product into the low one. Both steps are bijections, so two ids never collide in
/// full. The table picks a bucket by the low bits, which then depend on every bit of the id:
/// ids that differ only high up (a proxy's or a server's choice) still spread.
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
        self.0 ^ (self.0 >> 32)
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

    /// Ids that share their low bits (multiples of 2^20) land in different buckets of a
    /// 1,024-bucket table: the bucket bits depend on the high bits too.
    #[test]
    fn ids_apart_only_in_high_bits_spread() {
        let bucket = |id: i64| Ids.hash_one(id) & 1023;
        let buckets: std::collections::HashSet<u64> = (0..256).map(|i| bucket(i << 20)).collect();
        assert!(buckets.len() > 200, "{} buckets of 256 ids", buckets.len());
    }
}
