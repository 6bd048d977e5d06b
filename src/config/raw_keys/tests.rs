//! Sets of keys: built from pairs and from an answer, packed and not, edited.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::{Entries, RawKeys, SMALL};
use crate::EtcdConfig;

#[derive(EtcdConfig, Debug)]
#[etcd(prefix = "/p")]
struct P {
    #[etcd(default)]
    a: String,
}

proptest! {
    /// Whatever the order of the pairs (a range answer's sorted order, or not), the keys
    /// are what a map of the last value per key under the prefix holds.
    #[test]
    fn from_kvs_is_the_last_value_per_key(
        pairs in proptest::collection::vec(("[a-c/]{0,3}", "[xy]{0,2}", any::<bool>()), 0..40),
        sorted in any::<bool>(),
    ) {
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = pairs
            .into_iter()
            .map(|(key, value, inside)| {
                let prefix = if inside { "/p/" } else { "/q/" };
                (format!("{prefix}{key}").into_bytes(), value.into_bytes())
            })
            .collect();
        if sorted {
            pairs.sort();
            pairs.dedup_by(|a, b| a.0 == b.0);
        }
        let mut expected = BTreeMap::new();
        for (key, value) in &pairs {
            if let Some(relative) = key.strip_prefix(b"/p/") {
                expected.insert(String::from_utf8(relative.to_vec()).unwrap(), value.clone());
            }
        }
        let keys = RawKeys::from_kvs::<P>(pairs);
        let got: BTreeMap<String, Vec<u8>> = pairs_of(&keys).into_iter().collect();
        prop_assert_eq!(&got, &expected);
        let keys: Vec<&str> = keys.keys().collect();
        prop_assert!(keys.windows(2).all(|w| w[0] < w[1]));
    }

    /// Keys read from etcd's encoded answer are the keys of its pairs: sorted or not (not
    /// from etcd), repeated, outside the prefix, not UTF-8 (kept apart), and after edits.
    #[test]
    fn keys_from_an_answer_are_keys_from_its_pairs(
        pairs in proptest::collection::vec(
            (proptest::collection::vec(prop::sample::select(&b"ab/\xc3\xa9\xff"[..]), 0..4), "[xy]{0,2}", any::<bool>()),
            0..30,
        ),
        sorted in any::<bool>(),
        edits in proptest::collection::vec(("[ab]{1,2}", proptest::option::of("[xyz]{0,3}")), 0..40),
    ) {
        use prost::Message;
        let mut pairs: Vec<(Vec<u8>, Vec<u8>)> = pairs
            .into_iter()
            .map(|(key, value, inside)| {
                let mut full = if inside { b"/p/".to_vec() } else { b"/q/".to_vec() };
                full.extend(key);
                (full, value.into_bytes())
            })
            .collect();
        if sorted {
            pairs.sort();
            pairs.dedup_by(|a, b| a.0 == b.0);
        }
        let response = crate::proto::etcdserverpb::RangeResponse {
            kvs: pairs
                .iter()
                .map(|(key, value)| crate::proto::mvccpb::KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let answer = crate::client::kv::answer::RangeAnswer::decode(response.encode_to_vec().as_slice()).unwrap();
        let mut read = RawKeys::from_answer::<P>(answer.pairs);
        let mut expected = RawKeys::from_kvs::<P>(pairs);
        prop_assert_eq!(&read, &expected);
        for (key, value) in edits {
            match value {
                Some(value) => {
                    read.put(key.as_bytes(), value.clone().into_bytes());
                    expected.put(key.as_bytes(), value.into_bytes());
                }
                None => {
                    read.delete(key.as_bytes());
                    expected.delete(key.as_bytes());
                }
            }
            prop_assert_eq!(&read, &expected);
        }
    }

    /// Packed or not, the same edits leave the same keys and values, found at the same
    /// places; a packed set stays packed while small, and grows loose past that.
    #[test]
    fn packed_keys_behave_as_loose_ones(
        start in proptest::collection::btree_map("[a-e]{1,3}", "[xyz]{0,4}", 0..20),
        edits in proptest::collection::vec(("[a-e]{1,3}", proptest::option::of("[xyz]{0,4}")), 0..30),
    ) {
        let kvs = start
            .into_iter()
            .map(|(k, v)| (format!("/p/{k}").into_bytes(), v.into_bytes()));
        let mut loose = RawKeys::from_kvs::<P>(kvs);
        let mut packed = loose.clone();
        packed.pack();
        prop_assert_eq!(&packed, &loose);
        let mut is_packed = matches!(packed.entries, Entries::Packed(_));
        prop_assert_eq!(is_packed, loose.len() <= SMALL);
        for (key, value) in edits {
            match value {
                Some(value) => {
                    loose.put(key.as_bytes(), value.clone().into_bytes());
                    packed.put(key.as_bytes(), value.into_bytes());
                }
                None => {
                    loose.delete(key.as_bytes());
                    packed.delete(key.as_bytes());
                }
            }
            prop_assert_eq!(pairs_of(&packed), pairs_of(&loose));
            // Packed only while small; a packed set that stays small stays packed.
            let was_packed = is_packed;
            is_packed = matches!(packed.entries, Entries::Packed(_));
            let small = loose.len() <= SMALL;
            prop_assert!(!is_packed || small);
            prop_assert!(!(was_packed && small) || is_packed);
            for probe in ["a", "b", "cc", "eee", "zz"] {
                prop_assert_eq!(packed.position(probe), loose.position(probe));
            }
            prop_assert_eq!(packed.diff(&loose).count(), 0);
        }
    }
}

proptest! {
    /// Comparing with two parts is comparing with the two joined.
    #[test]
    fn cmp_joined_is_cmp_with_the_parts_joined(
        key in "[ab]{0,4}", prefix in "[ab]{0,3}", rest in "[ab]{0,3}",
    ) {
        let joined = format!("{prefix}{rest}");
        prop_assert_eq!(
            super::cmp_joined(key.as_bytes(), prefix.as_bytes(), rest.as_bytes()),
            key.as_bytes().cmp(joined.as_bytes())
        );
    }
}

/// The keys and values, in order, as owned pairs.
fn pairs_of(keys: &RawKeys) -> Vec<(String, Vec<u8>)> {
    (0..keys.len())
        .map(|i| {
            let (key, value) = keys.get(i);
            (key.to_owned(), value.to_vec())
        })
        .collect()
}

/// Thousands of live configs each hold a set of keys: 32 bytes, whatever its form.
#[test]
fn a_set_of_keys_is_four_words() {
    assert_eq!(std::mem::size_of::<RawKeys>(), 32);
    assert_eq!(RawKeys::default().len(), 0);
}

#[test]
fn keys_that_are_not_utf8_are_kept_apart() {
    let keys = RawKeys::from_kvs::<P>([
        (b"/p/a".to_vec(), b"1".to_vec()),
        (b"/p/\xff".to_vec(), b"2".to_vec()),
        (b"/p/b".to_vec(), b"3".to_vec()),
    ]);
    assert_eq!(keys.keys().collect::<Vec<_>>(), ["a", "b"]);
    assert_eq!(&*keys.not_utf8, [b"\xff".to_vec()]);
}
