//! The compact spec against the requests it stands for, and its encoding against prost's.

use proptest::prelude::*;
use prost::Message;

use super::*;

fn byte() -> impl Strategy<Value = u8> {
    prop_oneof![Just(0u8), Just(b'a'), Just(0xfe), Just(0xff)]
}

proptest! {
    /// A range entered into a namespace as the spec is built is what entering the request
    /// into it gave (`Enter`), and a config's prefix is the prefix range.
    #[test]
    fn specs_are_built_as_requests_were_entered(
        namespace in prop::collection::vec(byte(), 0..4),
        key in prop::collection::vec(byte(), 0..4),
        end in prop::collection::vec(byte(), 0..4),
        tail in prop::collection::vec(byte(), 0..2),
        prefix in any::<bool>(),
    ) {
        use crate::client::namespace::Enter;
        use crate::KeyRange;
        let range = match prefix {
            true => KeyRange::prefix(key.clone()),
            false => KeyRange::range(key.clone(), end),
        };
        let (key_in, end_in) = range.clone().into_parts();
        let mut request = pb::WatchCreateRequest {
            key: key_in,
            range_end: end_in,
            ..Default::default()
        };
        if !namespace.is_empty() {
            request.enter(&namespace);
        }
        let entered = Spec::entered(&namespace, range.start(), range.range_end());
        prop_assert_eq!(
            entered.create_message(3, 4),
            Spec::of(&request).create_message(3, 4)
        );
        let joined = KeyRange::prefix([&key[..], &tail[..]].concat());
        let by_parts = Spec::prefix(&namespace, [&key, &tail]);
        prop_assert_eq!(
            by_parts.create_message(3, 4),
            Spec::entered(&namespace, joined.start(), joined.range_end()).create_message(3, 4)
        );
    }

    /// The create encoded from the spec is, byte for byte, the request prost encodes.
    #[test]
    fn the_create_is_encoded_as_prost_would(
        key in prop::collection::vec(byte(), 0..5),
        end in prop::collection::vec(byte(), 0..5),
        prefix in any::<bool>(),
        flags in any::<[bool; 5]>(),
        start_revision in prop_oneof![Just(0i64), any::<i64>()],
        watch_id in prop_oneof![Just(0i64), Just(-1i64), any::<i64>()],
    ) {
        let range_end = match prefix {
            true => prefix_end(&key).unwrap_or(end),
            false => end,
        };
        let [prev_kv, progress_notify, fragment, no_put, no_delete] = flags;
        let filters = [(no_put, FilterType::Noput), (no_delete, FilterType::Nodelete)]
            .into_iter()
            .filter(|(set, _)| *set)
            .map(|(_, filter)| filter as i32)
            .collect();
        let spec = Spec::of(&pb::WatchCreateRequest {
            key,
            range_end,
            prev_kv,
            progress_notify,
            fragment,
            filters,
            ..Default::default()
        });
        let expected = pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                spec.request(start_revision, watch_id),
            )),
        };
        let message = spec.create_message(start_revision, watch_id);
        prop_assert_eq!(&message.bytes()[..], &expected.encode_to_vec()[..]);
    }
}

/// Every option survives the round trip through the compact form.
#[test]
fn the_request_comes_back_whole() {
    let request = pb::WatchCreateRequest {
        key: b"/a/".to_vec(),
        range_end: b"/a0".to_vec(),
        prev_kv: true,
        fragment: true,
        filters: vec![FilterType::Nodelete as i32],
        ..Default::default()
    };
    let spec = Spec::of(&request);
    let again = spec.request(7, 9);
    assert_eq!(again.key, request.key);
    assert_eq!(again.range_end, request.range_end);
    assert!(again.prev_kv && again.fragment && !again.progress_notify);
    assert_eq!(again.filters, request.filters);
    assert_eq!((again.start_revision, again.watch_id), (7, 9));
    let plain = Spec::of(&pb::WatchCreateRequest {
        key: b"k".to_vec(),
        progress_notify: true,
        filters: vec![FilterType::Noput as i32],
        ..Default::default()
    });
    let plain = plain.request(0, 1);
    assert!(plain.range_end.is_empty() && plain.progress_notify);
    assert_eq!(plain.filters, vec![FilterType::Noput as i32]);
    for (key, end) in [
        (&b"/cfg/"[..], &b"/cfg0"[..]),
        (b"/a\xfe", b"/a\xff"),
        (b"/a\xff", b"/b"),
        (b"k", b"\0"),
        (b"", b"\0"),
        (b"a", b"c"),
    ] {
        let request = pb::WatchCreateRequest {
            key: key.to_vec(),
            range_end: end.to_vec(),
            ..Default::default()
        };
        let again = Spec::of(&request).request(0, 0);
        assert_eq!((again.key, again.range_end), (key.to_vec(), end.to_vec()));
    }
}
