//! Secret fields encrypted at rest, against a real etcd: `etcdctl get` shows ciphertext, a
//! ciphertext moved to another key does not decrypt, a missing or wrong key id is a decode
//! problem without the value while a live config keeps its last good value, rotation
//! re-encrypts in one revision and old keys read until removed, plain values migrate.

#[path = "../support/mod.rs"]
mod support;

mod leaks;

use std::time::Duration;

use etcd_config::{
    ChangeNote, Error, EtcdConfig, Keyring, LiveOptions, ProblemKind, Secret, Store,
};
use support::{wait_until, Etcd};

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/vault/app", rename_all = "kebab-case")]
struct App {
    #[etcd(default)]
    user: String,
    password: Secret<String>,
    #[etcd(secret, default)]
    api_key: String,
}

fn app(password: &str, api_key: &str) -> App {
    App {
        user: "svc".to_owned(),
        password: Secret::new(password.to_owned()),
        api_key: api_key.to_owned(),
    }
}

fn ring(ids: &[&str]) -> Keyring {
    let mut ring: Option<Keyring> = None;
    for (i, id) in ids.iter().enumerate() {
        let key = [u8::try_from(i + 1).unwrap(); 32];
        ring = Some(match ring {
            None => Keyring::new(id, key).unwrap(),
            Some(ring) => ring.with_key(id, key).unwrap(),
        });
    }
    ring.unwrap()
}

fn etcdctl_value(etcd: &Etcd, key: &str) -> String {
    let out = etcd.etcdctl(&["get", key, "--print-value-only"]);
    String::from_utf8(out.stdout).unwrap().trim_end().to_owned()
}

/// The decode problems of an error, as (key, key id), sorted.
fn secret_problems(err: &Error) -> Vec<(String, Option<String>)> {
    let mut found: Vec<_> = match err {
        Error::Decode { problems, .. } => problems
            .iter()
            .filter_map(|p| match &p.kind {
                ProblemKind::Secret { key_id, .. } => Some((p.key.clone(), key_id.clone())),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    found.sort();
    found
}

#[tokio::test]
async fn etcd_holds_ciphertext_and_the_store_reads_it_back() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await).with_keyring(ring(&["k1"]));
    store.save(&app("hunter2", "AKIA-1")).await.unwrap();
    for key in ["/vault/app/password", "/vault/app/api-key"] {
        let stored = etcdctl_value(&etcd, key);
        assert!(stored.starts_with("enc:v1:k1:"), "{key}: {stored}");
        assert!(
            !stored.contains("hunter2") && !stored.contains("AKIA"),
            "{stored}"
        );
    }
    assert_eq!(etcdctl_value(&etcd, "/vault/app/user"), "svc");
    assert_eq!(store.load::<App>().await.unwrap(), app("hunter2", "AKIA-1"));

    // Without the key ring, the ciphertext is a problem naming the key id, not a password.
    let bare = Store::new(etcd.client().await);
    let err = bare.load::<App>().await.unwrap_err();
    assert_eq!(
        secret_problems(&err),
        [
            ("/vault/app/api-key".to_owned(), Some("k1".to_owned())),
            ("/vault/app/password".to_owned(), Some("k1".to_owned())),
        ]
    );
    assert!(err.to_string().contains("no key ring"), "{err}");
}

#[tokio::test]
async fn a_ciphertext_moved_to_another_key_does_not_decrypt() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await).with_keyring(ring(&["k1"]));
    store.save(&app("hunter2", "AKIA-1")).await.unwrap();
    let password = etcdctl_value(&etcd, "/vault/app/password");
    let out = etcd.etcdctl(&["put", "/vault/app/api-key", &password]);
    assert!(out.status.success());
    let err = store.load::<App>().await.unwrap_err();
    assert_eq!(
        secret_problems(&err),
        [("/vault/app/api-key".to_owned(), Some("k1".to_owned()))]
    );
    let text = format!("{err} {err:?}");
    assert!(text.contains("does not decrypt"), "{text}");
    assert!(
        !text.contains("hunter2") && !text.contains(&password),
        "{text}"
    );

    // Into another namespace: the associated data is the full key, so it fails there too.
    let other = store.namespace("/copy");
    let out = etcd.etcdctl(&["put", "/copy/vault/app/password", &password]);
    assert!(out.status.success());
    let err = other.load::<App>().await.unwrap_err();
    assert_eq!(
        secret_problems(&err),
        [("/copy/vault/app/password".to_owned(), Some("k1".to_owned()))]
    );
}

#[tokio::test]
async fn a_live_config_keeps_its_last_good_value_when_a_secret_does_not_decrypt() {
    let etcd = Etcd::single().await;
    let store = Store::new(etcd.client().await).with_keyring(ring(&["k1"]));
    store.save(&app("hunter2", "AKIA-1")).await.unwrap();
    let live = store.live_with::<App>(LiveOptions::new()).await.unwrap();
    // Someone saves with a key this service does not have.
    let stranger = Store::new(etcd.client().await).with_keyring(ring(&["k1", "k9"]));
    let revision = stranger.save(&app("s3cond", "AKIA-2")).await.unwrap();
    wait_until(
        "the revision rejected",
        Duration::from_secs(10),
        || live.status().last_rejected,
        |rejected| rejected.as_ref().is_some_and(|r| r.revision == revision),
    )
    .await;
    let rejected = live.status().last_rejected.unwrap();
    assert!(
        rejected.reason.contains("`k9`") && !rejected.reason.contains("s3cond"),
        "{}",
        rejected.reason
    );
    assert_eq!(*live.get(), app("hunter2", "AKIA-1"));
}

#[tokio::test]
async fn rotation_re_encrypts_in_one_revision_and_old_keys_read_until_removed() {
    let etcd = Etcd::single().await;
    let old = Store::new(etcd.client().await).with_keyring(ring(&["k1"]));
    old.save(&app("hunter2", "AKIA-1")).await.unwrap();
    let both = Store::new(etcd.client().await).with_keyring(ring(&["k1", "k2"]));
    // k2 writes, k1 still reads.
    assert_eq!(both.load::<App>().await.unwrap(), app("hunter2", "AKIA-1"));
    let revision = both
        .rotate_secrets::<App>(&ChangeNote::by("ops").reason("yearly"))
        .await
        .unwrap();
    let check = etcd.client().await.kv();
    for key in ["/vault/app/password", "/vault/app/api-key"] {
        let kv = check.get(key).await.unwrap();
        assert_eq!(kv.kvs[0].mod_revision, revision, "{key}");
        assert!(kv.kvs[0].value_str().unwrap().starts_with("enc:v1:k2:"));
    }
    let history = both.history::<App>().await.unwrap();
    let note = history.last().unwrap().note.clone().unwrap();
    assert!(note.reason.contains("`k2`"), "{note:?}");
    assert_eq!(both.load::<App>().await.unwrap(), app("hunter2", "AKIA-1"));
    // A ring without k2 no longer reads; one with k2 alone does.
    let err = old.load::<App>().await.unwrap_err();
    assert!(secret_problems(&err)
        .iter()
        .all(|(_, id)| id.as_deref() == Some("k2")));
    let new_only =
        Store::new(etcd.client().await).with_keyring(Keyring::new("k2", [2; 32]).unwrap());
    assert_eq!(
        new_only.load::<App>().await.unwrap(),
        app("hunter2", "AKIA-1")
    );
}

#[tokio::test]
async fn plain_values_migrate_when_allowed() {
    let etcd = Etcd::single().await;
    let plain = Store::new(etcd.client().await);
    plain.save(&app("hunter2", "AKIA-1")).await.unwrap();
    assert_eq!(etcdctl_value(&etcd, "/vault/app/password"), "hunter2");

    let strict = Store::new(etcd.client().await).with_keyring(ring(&["k1"]));
    let err = strict.load::<App>().await.unwrap_err();
    assert_eq!(secret_problems(&err).len(), 2, "{err}");
    assert!(err.to_string().contains("stored in clear"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");

    let migrating = Store::new(etcd.client().await).with_keyring(ring(&["k1"]).accept_plain());
    assert_eq!(
        migrating.load::<App>().await.unwrap(),
        app("hunter2", "AKIA-1")
    );
    migrating
        .rotate_secrets::<App>(&ChangeNote::by("ops"))
        .await
        .unwrap();
    assert!(etcdctl_value(&etcd, "/vault/app/password").starts_with("enc:v1:k1:"));
    assert_eq!(
        strict.load::<App>().await.unwrap(),
        app("hunter2", "AKIA-1")
    );
}

#[test]
fn key_files_and_their_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys");
    let hex = "00".repeat(31) + "ff";
    std::fs::write(
        &file,
        format!(
            "# keys\n2026-01 {hex}\n\n2026-06 {}\n",
            "AQ".repeat(21) + "A="
        ),
    )
    .unwrap();
    let ring = Keyring::from_file(&file).unwrap();
    assert_eq!(ring.ids().collect::<Vec<_>>(), ["2026-01", "2026-06"]);
    assert_eq!(ring.writing_id(), "2026-06");
    assert!(!format!("{ring:?}").contains(&hex));

    std::fs::write(&file, format!("k1 {hex}\nk2 tooshort\n")).unwrap();
    let err = Keyring::from_file(&file).unwrap_err().to_string();
    assert!(
        err.contains("line 2") && !err.contains("tooshort") && !err.contains(&hex),
        "{err}"
    );
    std::fs::write(&file, format!("k1 {hex}\nk1 {hex}\n")).unwrap();
    assert!(Keyring::from_file(&file)
        .unwrap_err()
        .to_string()
        .contains("twice"));
    std::fs::write(&file, "# nothing\n").unwrap();
    assert!(Keyring::from_file(&file)
        .unwrap_err()
        .to_string()
        .contains("no key"));
    assert!(Keyring::new("bad id", [0; 32]).is_err());
}

#[test]
fn secret_debug_and_display_never_show_the_value() {
    let value = app("hunter2", "AKIA-1");
    let shown = format!("{value:?} {} {:?}", value.password, value.password);
    assert!(!shown.contains("hunter2"), "{shown}");
    assert_eq!(value.password.expose(), "hunter2");
    let schema = App::schema();
    assert!(schema
        .fields
        .iter()
        .filter(|f| f.key.ends_with("password"))
        .all(|f| f.secret));
}
