//! A property: whatever a secret's value is, it appears in no error, no log line (every
//! `tracing` event of the crate, captured), no `Debug` output, no schema and no live config's
//! status, however it goes wrong: a value that does not parse, a ciphertext from another key,
//! a key id the ring lacks, a plain value where an encrypted one is expected.

use crate::support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use etcd_config::{EtcdConfig, Keyring, LiveOptions, Secret, Store};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use support::{wait_until, Etcd};

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/leak/app", rename_all = "kebab-case")]
struct App {
    #[etcd(default)]
    name: String,
    #[etcd(default)]
    token: Secret<String>,
    #[etcd(default)]
    pin: Secret<u32>,
    #[etcd(secret, default)]
    api_key: String,
}

/// Everything the crate logs, at every level.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn ring(id: &str, byte: u8) -> Keyring {
    Keyring::new(id, [byte; 32]).unwrap()
}

#[test]
fn no_secret_value_leaks_however_it_goes_wrong() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let etcd = runtime.block_on(Etcd::single());
    let client = runtime.block_on(etcd.client());
    let case = std::sync::atomic::AtomicU32::new(0);
    let mut runner = TestRunner::new(Config {
        cases: 24,
        ..Config::default()
    });
    // Distinctive enough not to turn up by chance in a message.
    let secrets = "Zq[A-Za-z0-9+/=_-]{6,30}";
    runner
        .run(&(secrets, secrets), |(token, api_key)| {
            let n = case.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let store = Store::new(client.clone()).namespace(&format!("/case-{n}"));
            let found = runtime.block_on(exercise(&store, &token, &api_key));
            let logged = [(Shown::Text, "logs", logs.text())];
            for (shown, what, text) in found.iter().chain(logged.iter()) {
                // A `Debug` of the struct shows what `Secret<T>` hides: `api_key` is only
                // `#[etcd(secret)]`, which keeps it out of the crate's output, not the user's.
                let secrets = match shown {
                    Shown::Text => vec![&token, &api_key],
                    Shown::UserDebug => vec![&token],
                };
                for secret in secrets {
                    prop_assert!(
                        !text.contains(secret.as_str()),
                        "{what} holds the secret {secret:?}: {text}"
                    );
                }
            }
            Ok(())
        })
        .unwrap();
    // The capture works: the rejections were logged.
    let logged = logs.text();
    assert!(logged.contains("keeping the last good value"), "{logged}");
}

/// How a text was made.
enum Shown {
    /// By the crate (errors, status, events, schema, logs): no secret at all.
    Text,
    /// By the user's `#[derive(Debug)]`: no `Secret<T>` value.
    UserDebug,
}

/// Makes every failure happen with these secrets and returns what a user would see.
async fn exercise(store: &Store, token: &str, api_key: &str) -> Vec<(Shown, &'static str, String)> {
    let mut seen = Vec::new();
    // Keys as the store's client addresses them, inside its namespace.
    let prefix = format!("{}/", App::PREFIX);
    let kv = store.client().kv();
    let value = App {
        name: "app".to_owned(),
        token: Secret::new(token.to_owned()),
        pin: Secret::new(7),
        api_key: api_key.to_owned(),
    };
    seen.push((
        Shown::UserDebug,
        "Debug of the struct",
        format!("{value:?}"),
    ));
    let schema = App::schema();
    let schema_text = format!("{schema} {:?}", schema.to_json_schema());
    seen.push((Shown::Text, "schema", schema_text));

    // Saved encrypted; a live config follows.
    let k1 = store.with_keyring(ring("k1", 1));
    k1.save(&value).await.unwrap();
    let live = k1.live_with::<App>(LiveOptions::new()).await.unwrap();
    let mut events = live.events();

    // A ring with the wrong key, no ring, and a ring that holds another id.
    for reader in [
        store.with_keyring(ring("k1", 9)),
        store.clone(),
        store.with_keyring(ring("k7", 1)),
    ] {
        let err = reader.load::<App>().await.unwrap_err();
        seen.push((Shown::Text, "load error", format!("{err} {err:?}")));
    }

    // A secret number that does not parse, typed by hand in clear; a ciphertext moved to
    // another key; a plain secret where the ring wants ciphertext.
    let moved = kv.get(format!("{prefix}token")).await.unwrap().kvs[0]
        .value_str()
        .unwrap()
        .to_owned();
    let edits = [
        ("pin", token.to_owned()),
        ("api-key", moved),
        ("token", api_key.to_owned()),
    ];
    for (key, text) in edits {
        let revision = kv
            .put(format!("{prefix}{key}"), text)
            .await
            .unwrap()
            .header
            .revision;
        wait_until(
            "the live config rejects it",
            Duration::from_secs(10),
            || live.status().last_rejected.map(|r| r.revision),
            |seen| *seen == Some(revision),
        )
        .await;
        let err = k1.load::<App>().await.unwrap_err();
        seen.push((Shown::Text, "load error", format!("{err} {err:?}")));
        seen.push((Shown::Text, "status", format!("{:?}", live.status())));
        let value = live.get();
        seen.push((
            Shown::UserDebug,
            "Debug of the live value",
            format!("{value:?}"),
        ));
        if let Err(err) = store.load::<App>().await {
            seen.push((
                Shown::Text,
                "load error without a ring",
                format!("{err} {err:?}"),
            ));
        }
    }
    // The events the live config sent.
    while let Ok(Some(event)) = tokio::time::timeout(
        Duration::from_millis(50),
        futures_util::StreamExt::next(&mut events),
    )
    .await
    {
        seen.push((Shown::Text, "event", format!("{event:?}")));
    }
    seen
}
