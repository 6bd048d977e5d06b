//! The value codec's promise, checked over generated values without a server: whatever
//! `to_key_values` (what `save` sends) accepts loads back equal, and the only values it refuses
//! are those no text form can bring back (non-finite floats, which JSON writes as `null`).

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_config::{codec, from_key_values, to_key_values};
use etcd_config::{Error, EtcdConfig};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Variants that accept overlapping JSON: a string variant holding `5` or `true` must not come
/// back as the number or flag variant.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(untagged)]
enum Loose {
    Number(i64),
    Flag(bool),
    Text(String),
    List(Vec<String>),
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(tag = "kind", rename_all = "lowercase")]
enum Tagged {
    Plain { x: String },
    Float { y: f64 },
}

#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "kebab-case")]
enum Level {
    Debug,
    Info,
    Custom(String),
}

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/codec")]
struct Anything {
    json: Value,
    loose: Loose,
    tagged: Tagged,
    level: Level,
    nested_option: Option<Option<String>>,
    float: f64,
    floats: Vec<f64>,
    wait: Duration,
    maybe_wait: Option<Duration>,
    text: String,
    #[etcd(each)]
    values: BTreeMap<String, Value>,
}

/// Strings that look like other JSON, and anything at all.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        Just(String::new()),
        Just("123".to_owned()),
        Just("-0.5e3".to_owned()),
        Just("true".to_owned()),
        Just("null".to_owned()),
        Just("[1]".to_owned()),
        Just("{\"a\":1}".to_owned()),
        Just("\"quoted\"".to_owned()),
        Just(" \"padded\" ".to_owned()),
        Just("1m30s".to_owned()),
        Just("line\nbreak\t\u{0}".to_owned()),
        "\"[^\"]*\"",
        "[0-9 .e+-]{1,8}",
    ]
}

/// Every float, non-finite ones and signed zeros included.
fn float() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>(),
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(-0.0),
        Just(f64::MIN_POSITIVE),
        Just(f64::MAX),
    ]
}

/// JSON trees of any shape (JSON numbers are always finite).
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map(text(), inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Durations across the whole range a `Duration` holds.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (0u64..10_000_000, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        (0u64..1_000_000_000).prop_map(Duration::from_nanos),
        Just(Duration::MAX),
        Just(Duration::ZERO),
    ]
}

fn anything() -> impl Strategy<Value = Anything> {
    let loose = prop_oneof![
        any::<i64>().prop_map(Loose::Number),
        any::<bool>().prop_map(Loose::Flag),
        text().prop_map(Loose::Text),
        proptest::collection::vec(text(), 0..3).prop_map(Loose::List),
    ];
    let tagged = prop_oneof![
        text().prop_map(|x| Tagged::Plain { x }),
        float().prop_map(|y| Tagged::Float { y }),
    ];
    let level = prop_oneof![
        Just(Level::Debug),
        Just(Level::Info),
        text().prop_map(Level::Custom),
    ];
    (
        (json(), loose, tagged, level),
        (
            proptest::option::of(proptest::option::of(text())),
            float(),
            proptest::collection::vec(float(), 0..3),
        ),
        (
            duration(),
            proptest::option::of(duration()),
            text(),
            proptest::collection::btree_map("[a-zA-Z0-9_.-]{1,8}", json(), 0..3),
        ),
    )
        .prop_map(
            |(
                (json, loose, tagged, level),
                (nested_option, float, floats),
                (wait, maybe_wait, text, values),
            )| Anything {
                json,
                loose,
                tagged,
                level,
                nested_option,
                float,
                floats,
                wait,
                maybe_wait,
                text,
                values,
            },
        )
}

fn has_non_finite(value: &Anything) -> bool {
    let tagged = matches!(value.tagged, Tagged::Float { y } if !y.is_finite());
    tagged || !value.float.is_finite() || value.floats.iter().any(|f| !f.is_finite())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    /// Saved values load back equal; a refusal names the field and happens only for a value
    /// with a non-finite float.
    #[test]
    fn saved_values_load_back_equal(value in anything()) {
        match to_key_values(&value) {
            Ok(stored) => {
                prop_assert!(!has_non_finite(&value), "a non-finite float was accepted");
                let back: Anything = from_key_values(stored.clone())
                    .map_err(|e| TestCaseError::fail(format!("{e}\nstored: {stored:?}")))?;
                prop_assert_eq!(back, value, "stored: {:?}", stored);
            }
            Err(Error::Encode { field, reason, .. }) => {
                prop_assert!(has_non_finite(&value), "refused {field}: {reason}");
                prop_assert!(["float", "floats", "tagged"].contains(&field.as_str()), "{field}");
            }
            Err(other) => prop_assert!(false, "unexpected error {other}"),
        }
    }

    /// Go-format durations round-trip over the whole range, sub-nanosecond digits aside.
    #[test]
    fn durations_round_trip(d in duration()) {
        let text = codec::format_duration(&d);
        prop_assert_eq!(codec::parse_duration(&text).unwrap(), d, "{}", text);
    }

    /// Arbitrary key bytes (not UTF-8 included) and values under the prefix: a load returns a
    /// value or an error naming keys, and never panics.
    #[test]
    fn arbitrary_keys_never_panic(
        entries in proptest::collection::vec(
            (
                prop_oneof![
                    proptest::collection::vec(any::<u8>(), 0..12),
                    "(json|loose|values/[a-z]{0,3})".prop_map(String::into_bytes),
                    "values/[a-z]{0,2}".prop_map(|s| {
                        let mut bytes = s.into_bytes();
                        bytes.push(0xff);
                        bytes
                    }),
                ],
                proptest::collection::vec(any::<u8>(), 0..12),
            ),
            0..12,
        )
    ) {
        let pairs = entries.into_iter().map(|(key, value)| {
            let mut full = b"/codec/".to_vec();
            full.extend(key);
            (full, value)
        });
        let _ = from_key_values::<Anything, _, _>(pairs);
    }
}

/// The cases the issue named, spelled out: each is stored so that it loads back as itself.
#[test]
fn json_looking_strings_are_quoted_only_where_needed() {
    assert_eq!(codec::encode(&"8080".to_owned()).unwrap(), "8080");
    assert_eq!(
        codec::encode(&Value::String("123".into())).unwrap(),
        "\"123\""
    );
    assert_eq!(
        codec::encode(&Value::String("null".into())).unwrap(),
        "\"null\""
    );
    assert_eq!(codec::encode(&Value::String("x".into())).unwrap(), "x");
    assert_eq!(codec::encode(&Loose::Text("5".into())).unwrap(), "\"5\"");
    assert_eq!(codec::encode(&Loose::Text("five".into())).unwrap(), "five");
    assert_eq!(codec::encode(&Level::Info).unwrap(), "info");
    let refused = codec::encode(&f64::INFINITY).unwrap_err();
    assert!(refused.contains("null"), "{refused}");
    let long = Duration::new(200 * 86_400, 1);
    assert_eq!(
        codec::parse_duration(&codec::format_duration(&long)).unwrap(),
        long
    );
}
