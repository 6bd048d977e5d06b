//! [`RangeAnswer`] and [`TxnAnswer`] read what prost's generated messages read.

use bytes::Buf;
use proptest::prelude::*;
use prost::Message;

use super::answer::{RangeAnswer, TxnAnswer};
use super::pairs::Pair;
use crate::proto::etcdserverpb as pb;
use crate::proto::mvccpb;

fn key_value() -> impl Strategy<Value = mvccpb::KeyValue> {
    let bytes = || prop::collection::vec(any::<u8>(), 0..12);
    (
        bytes(),
        bytes(),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
        any::<i64>(),
    )
        .prop_map(
            |(key, value, create_revision, mod_revision, version, lease)| mvccpb::KeyValue {
                key,
                value,
                create_revision,
                mod_revision,
                version,
                lease,
            },
        )
}

fn range_response() -> impl Strategy<Value = pb::RangeResponse> {
    (
        prop::collection::vec(key_value(), 0..8),
        any::<bool>(),
        any::<i64>(),
        any::<(u64, u64, i64, u64)>(),
    )
        .prop_map(
            |(kvs, more, count, (cluster_id, member_id, revision, raft_term))| pb::RangeResponse {
                header: Some(pb::ResponseHeader {
                    cluster_id,
                    member_id,
                    revision,
                    raft_term,
                }),
                kvs,
                more,
                count,
            },
        )
}

/// `answer` holds what `response` holds, but the pairs' versions and leases.
fn same(answer: &RangeAnswer, response: &pb::RangeResponse) -> bool {
    let pairs: Vec<Pair<'_>> = answer.pairs.entries().collect();
    let kvs: Vec<Pair<'_>> = response
        .kvs
        .iter()
        .map(|kv| Pair {
            key: &kv.key,
            value: &kv.value,
            create_revision: kv.create_revision,
            mod_revision: kv.mod_revision,
        })
        .collect();
    pairs == kvs
        && answer.header == response.header
        && answer.more == response.more
        && answer.count == response.count
}

proptest! {
    /// Decoded from etcd's message, in one piece or split in two at any byte (the transport's
    /// buffer may hold an answer in several chunks), and encoded back.
    #[test]
    fn a_range_answer_reads_what_prost_reads(response in range_response(), split in any::<prop::sample::Index>()) {
        let bytes = response.encode_to_vec();
        let answer = RangeAnswer::decode(bytes.as_slice()).unwrap();
        prop_assert!(same(&answer, &response));
        let at = split.index(bytes.len() + 1);
        let chunked = bytes[..at].chain(&bytes[at..]);
        prop_assert_eq!(&RangeAnswer::decode(chunked).unwrap(), &answer);
        let back = pb::RangeResponse::decode(answer.encode_to_vec().as_slice()).unwrap();
        prop_assert!(same(&answer, &back));
    }

    /// A truncated answer is an error for one exactly when it is for the other: never a panic.
    #[test]
    fn a_truncated_answer_fails_as_prost_does(response in range_response(), cut in any::<prop::sample::Index>()) {
        let bytes = response.encode_to_vec();
        let bytes = &bytes[..cut.index(bytes.len() + 1)];
        let ours = RangeAnswer::decode(bytes);
        let theirs = pb::RangeResponse::decode(bytes);
        prop_assert_eq!(ours.is_ok(), theirs.is_ok());
        if let (Ok(ours), Ok(theirs)) = (ours, theirs) {
            prop_assert!(same(&ours, &theirs));
        }
    }

    /// A Txn's answers: each Range's, and `None` for any other operation.
    #[test]
    fn a_txn_answer_reads_each_range(ranges in prop::collection::vec(range_response(), 0..4), succeeded in any::<bool>()) {
        let mut responses: Vec<pb::ResponseOp> = ranges
            .iter()
            .cloned()
            .map(|range| pb::ResponseOp {
                response: Some(pb::response_op::Response::ResponseRange(range)),
            })
            .collect();
        responses.push(pb::ResponseOp {
            response: Some(pb::response_op::Response::ResponsePut(pb::PutResponse::default())),
        });
        let response = pb::TxnResponse {
            header: ranges.first().and_then(|r| r.header),
            succeeded,
            responses,
        };
        let answer = TxnAnswer::decode(response.encode_to_vec().as_slice()).unwrap();
        prop_assert_eq!(answer.header, response.header);
        prop_assert_eq!(answer.succeeded, succeeded);
        prop_assert_eq!(answer.responses.len(), ranges.len() + 1);
        for (op, range) in answer.responses.iter().zip(&ranges) {
            prop_assert!(same(op.range.as_ref().unwrap(), range));
        }
        prop_assert!(answer.responses.last().unwrap().range.is_none());
        let back = pb::TxnResponse::decode(answer.encode_to_vec().as_slice()).unwrap();
        prop_assert_eq!(back.responses.len(), ranges.len() + 1);
    }
}

/// A key sent after its value (or twice) still reads as that pair.
#[test]
fn fields_in_any_order() {
    let mut bytes = Vec::new();
    let kv_fields: &[u8] = &[0x2a, 1, b'v', 0x0a, 1, b'x', 0x0a, 1, b'k'];
    bytes.extend_from_slice(&[0x12, kv_fields.len() as u8]);
    bytes.extend_from_slice(kv_fields);
    let answer = RangeAnswer::decode(bytes.as_slice()).unwrap();
    assert_eq!(answer.pairs.get(0), (&b"k"[..], &b"v"[..]));
}

/// Namespaces and prefixes come off the front of the keys.
#[test]
fn keys_leave_their_namespace() {
    let response = pb::RangeResponse {
        kvs: ["/ns/a/1", "/ns/a/2", "/other"]
            .map(|key| mvccpb::KeyValue {
                key: key.into(),
                value: b"v".to_vec(),
                ..Default::default()
            })
            .to_vec(),
        ..Default::default()
    };
    let mut answer = RangeAnswer::decode(response.encode_to_vec().as_slice()).unwrap();
    answer.pairs.leave(b"/ns");
    let keys: Vec<&[u8]> = answer.pairs.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, [&b"/a/1"[..], b"/a/2", b"/other"]);
    answer.pairs.retain(|key| key.starts_with(b"/a/"));
    answer.pairs.cut_keys(3);
    let keys: Vec<&[u8]> = answer.pairs.iter().map(|(k, _)| k).collect();
    assert_eq!(keys, [&b"1"[..], b"2"]);
}

/// A change that names a few keys keeps their values; the copy it decodes from holds them all.
#[test]
fn values_split_off_but_the_kept_ones() {
    let mut pairs = super::pairs::Pairs::default();
    for (key, value) in [("a", "1"), ("b", "22"), ("c", "333")] {
        pairs.push(Pair {
            key: key.as_bytes(),
            value: value.as_bytes(),
            create_revision: 2,
            mod_revision: 3,
        });
    }
    let whole = pairs.clone();
    let taken = pairs.split_off_values(|key| key == b"b");
    assert_eq!(
        taken.entries().collect::<Vec<_>>(),
        whole.entries().collect::<Vec<_>>()
    );
    let left: Vec<(&[u8], &[u8])> = pairs.iter().collect();
    assert_eq!(left, [(&b"a"[..], &b""[..]), (b"b", b"22"), (b"c", b"")]);
    assert!(pairs.entries().all(|pair| pair.mod_revision == 3));
}
