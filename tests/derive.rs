//! `#[derive(EtcdConfig)]` without a server: every attribute's effect on keys and values, the
//! codec's exact round trip (property tests), and a decoder that never panics on arbitrary input.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use etcd_config::ProblemKind;
use etcd_config::{from_key_values, to_key_values};
use etcd_config::{Error, EtcdConfig};
use proptest::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/db", rename_all = "SCREAMING_SNAKE_CASE")]
struct Database {
    host_name: String,
    #[etcd(default = 5432)]
    port: u16,
    #[etcd(rename = "pool/max")]
    max_pool: u32,
}

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/upstream", rename_all = "camelCase")]
struct Upstream {
    base_url: String,
    #[etcd(default = Duration::from_secs(5))]
    connect_timeout: Duration,
}

mod hex {
    pub(crate) fn encode(value: &[u8]) -> Result<String, String> {
        Ok(value.iter().map(|b| format!("{b:02x}")).collect())
    }
    pub(crate) fn decode(text: &str) -> Result<Vec<u8>, String> {
        (0..text.len())
            .step_by(2)
            .map(|i| {
                text.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("bad hex".to_owned())
            })
            .collect()
    }
}

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/svc", rename_all = "kebab-case", deny_unknown_keys)]
struct Service {
    #[etcd(nested)]
    database: Database,
    #[etcd(each, nested)]
    upstreams: BTreeMap<String, Upstream>,
    #[etcd(each)]
    limits: HashMap<String, u64>,
    #[etcd(with = "hex")]
    salt: Vec<u8>,
    #[etcd(default = "anonymous")]
    owner: String,
}

fn pairs(service: &Service) -> BTreeMap<String, String> {
    to_key_values(service).unwrap().into_iter().collect()
}

fn sample() -> Service {
    Service {
        database: Database {
            host_name: "db1".into(),
            port: 5433,
            max_pool: 20,
        },
        upstreams: BTreeMap::from([
            (
                "auth".into(),
                Upstream {
                    base_url: "http://auth".into(),
                    connect_timeout: Duration::from_millis(1500),
                },
            ),
            (
                "files".into(),
                Upstream {
                    base_url: "http://files".into(),
                    connect_timeout: Duration::from_secs(5),
                },
            ),
        ]),
        limits: HashMap::from([("rps".into(), 100), ("burst".into(), 20)]),
        salt: vec![0xde, 0xad],
        owner: "ops".into(),
    }
}

/// Keys follow rename_all (per struct), rename (with `/`), nested and each placement.
#[test]
fn keys_follow_attributes() {
    let keys: Vec<String> = pairs(&sample()).into_keys().collect();
    assert_eq!(
        keys,
        [
            "/svc/database/HOST_NAME",
            "/svc/database/PORT",
            "/svc/database/pool/max",
            "/svc/limits/burst",
            "/svc/limits/rps",
            "/svc/owner",
            "/svc/salt",
            "/svc/upstreams/auth/baseUrl",
            "/svc/upstreams/auth/connectTimeout",
            "/svc/upstreams/files/baseUrl",
            "/svc/upstreams/files/connectTimeout",
        ]
    );
    let values = pairs(&sample());
    assert_eq!(values["/svc/salt"], "dead", "with = module");
    assert_eq!(values["/svc/upstreams/auth/connectTimeout"], "1.5s");
    let back: Service = from_key_values(values).unwrap();
    assert_eq!(back, sample());
}

/// Missing defaulted keys take their defaults (including string and expression defaults);
/// missing entries make an empty map.
#[test]
fn defaults_and_empty_maps() {
    let service: Service = from_key_values([
        ("/svc/database/HOST_NAME", "db"),
        ("/svc/database/pool/max", "4"),
        ("/svc/salt", ""),
        ("/svc/upstreams/a/baseUrl", "http://a"),
    ])
    .unwrap();
    assert_eq!(service.database.port, 5432);
    assert_eq!(service.owner, "anonymous");
    assert_eq!(
        service.upstreams["a"].connect_timeout,
        Duration::from_secs(5)
    );
    assert!(service.limits.is_empty());
}

/// deny_unknown_keys names every key no field reads; without it they are ignored.
#[test]
fn unknown_keys() {
    let err = from_key_values::<Service, _, _>([
        ("/svc/database/HOST_NAME", "db"),
        ("/svc/database/pool/max", "4"),
        ("/svc/salt", ""),
        ("/svc/typo", "1"),
        ("/svc/database/extra", "1"),
    ])
    .unwrap_err();
    let Error::Decode { problems, .. } = err else {
        panic!("expected a decode error")
    };
    let unknown: Vec<&str> = problems
        .iter()
        .filter(|p| p.kind == ProblemKind::Unknown)
        .map(|p| p.key.as_str())
        .collect();
    assert_eq!(unknown, ["/svc/database/extra", "/svc/typo"]);

    let db: Database = from_key_values([
        ("/db/HOST_NAME", "h"),
        ("/db/pool/max", "1"),
        ("/db/other", "x"),
    ])
    .unwrap();
    assert_eq!(db.host_name, "h");
}

/// Problems inside nested structs and map entries carry their full key and field path.
#[test]
fn nested_problems_name_full_paths() {
    let err = from_key_values::<Service, _, _>([
        ("/svc/database/HOST_NAME", "db"),
        ("/svc/database/pool/max", "many"),
        ("/svc/salt", "zz"),
        ("/svc/limits/rps", "-1"),
        ("/svc/upstreams/x/connectTimeout", "later"),
    ])
    .unwrap_err();
    let Error::Decode { problems, .. } = &err else {
        panic!("expected a decode error")
    };
    let found: Vec<(&str, &str)> = problems
        .iter()
        .map(|p| (p.key.as_str(), p.field.as_str()))
        .collect();
    for expected in [
        ("/svc/database/pool/max", "database.max_pool"),
        ("/svc/salt", "salt"),
        ("/svc/limits/rps", "limits.rps"),
        (
            "/svc/upstreams/x/connectTimeout",
            "upstreams.x.connect_timeout",
        ),
        ("/svc/upstreams/x/baseUrl", "upstreams.x.base_url"),
    ] {
        assert!(found.contains(&expected), "{expected:?} not in {found:?}");
    }
    assert_eq!(problems.len(), 5, "{err}");
}

mod hygiene {
    //! The derive must not depend on what these names mean where it is used.
    #![allow(dead_code, non_camel_case_types)]
    type Result = ();
    type Option = ();
    struct Ok;
    struct Some;
    struct None;
    struct String;
    struct Vec;
    struct Box;

    #[derive(etcd_config::EtcdConfig)]
    #[etcd(prefix = "/hygiene/inner")]
    struct Inner {
        x: u8,
    }

    #[derive(etcd_config::EtcdConfig)]
    #[etcd(prefix = "/hygiene", validate = "Shadowed::check")]
    struct Shadowed {
        a: u16,
        #[etcd(default)]
        b: ::std::vec::Vec<::std::string::String>,
        c: ::std::option::Option<u32>,
        #[etcd(each)]
        d: ::std::collections::BTreeMap<::std::string::String, u8>,
        #[etcd(nested)]
        e: Inner,
        #[etcd(secret, default = "x")]
        f: ::std::string::String,
        #[etcd(skip)]
        g: ::std::boxed::Box<u8>,
    }

    impl Shadowed {
        fn check(&self) -> ::std::result::Result<(), ::std::string::String> {
            ::std::result::Result::Ok(())
        }
    }

    #[test]
    fn compiles_and_works_with_shadowed_prelude() {
        let s: Shadowed =
            etcd_config::from_key_values([("/hygiene/a", "1"), ("/hygiene/e/x", "2")]).unwrap();
        assert_eq!((s.a, s.e.x, s.f.as_str()), (1, 2, "x"));
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Mode {
    Fast,
    Safe { retries: u8 },
}

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/prop")]
struct Everything {
    text: String,
    maybe: Option<String>,
    number: i64,
    float: f64,
    flag: bool,
    list: Vec<String>,
    mode: Mode,
    wait: Duration,
    #[etcd(each)]
    map: BTreeMap<String, String>,
}

fn entry_name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.-]{1,12}"
}

fn everything() -> impl Strategy<Value = Everything> {
    let text = prop_oneof![
        any::<String>(),
        Just(String::new()),
        Just("\"quoted\"".to_owned()),
        Just(" \"padded\" ".to_owned()),
        Just("null".to_owned()),
        Just("123".to_owned()),
        Just("[1,2]".to_owned()),
        Just("line\nbreak".to_owned()),
        "\"[^\"]*\"",
    ];
    (
        (
            text.clone(),
            proptest::option::of(text.clone()),
            any::<i64>(),
            -1e15f64..1e15,
            any::<bool>(),
        ),
        (
            proptest::collection::vec(text.clone(), 0..4),
            prop_oneof![
                Just(Mode::Fast),
                any::<u8>().prop_map(|retries| Mode::Safe { retries })
            ],
            (0u64..1_000_000, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
            proptest::collection::btree_map(entry_name(), text, 0..4),
        ),
    )
        .prop_map(
            |((text, maybe, number, float, flag), (list, mode, wait, map))| Everything {
                text,
                maybe,
                number,
                float,
                flag,
                list,
                mode,
                wait,
                map,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Every value survives encode then decode exactly: strings with quotes, newlines, unicode
    /// and JSON-looking text included.
    #[test]
    fn every_value_round_trips(value in everything()) {
        let stored = to_key_values(&value).unwrap();
        let back: Everything = from_key_values(stored).unwrap();
        prop_assert_eq!(back, value);
    }

    /// Arbitrary keys under the prefix and arbitrary bytes as values: decoding returns a value or
    /// an error, and never panics.
    #[test]
    fn decoder_never_panics(
        entries in proptest::collection::vec(
            (
                prop_oneof![
                    Just("text".to_owned()), Just("maybe".to_owned()), Just("number".to_owned()),
                    Just("float".to_owned()), Just("flag".to_owned()), Just("list".to_owned()),
                    Just("mode".to_owned()), Just("wait".to_owned()),
                    "map/[a-z/]{0,6}", "[a-z/]{0,8}", any::<String>(),
                ],
                proptest::collection::vec(any::<u8>(), 0..24),
            ),
            0..16,
        )
    ) {
        let pairs = entries.into_iter().map(|(key, value)| (format!("/prop/{key}"), value));
        let _ = from_key_values::<Everything, _, _>(pairs);
        let _ = from_key_values::<Service, _, _>(Vec::<(Vec<u8>, Vec<u8>)>::new());
    }
}
