//! The README's quick start: `cargo run --example quickstart` against an etcd on
//! 127.0.0.1:2379 (or `ETCD_ENDPOINTS`); `FOLLOW=1` keeps it running to watch changes.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_config::{Client, ConnectOptions, EtcdConfig, LiveOptions, Store};
use serde::{Deserialize, Serialize};

/// One route: any serde type is a field, stored as compact JSON.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Route {
    path: String,
    weight: u32,
}

/// Nested in `Gateway`: no prefix of its own, its keys are under `/services/gateway/tls/`.
#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(rename_all = "kebab-case")]
struct Tls {
    #[etcd(default)]
    enabled: bool,
    #[etcd(default = "/etc/gateway/cert.pem")]
    cert_path: String,
}

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(
    prefix = "/services/gateway",
    rename_all = "kebab-case",
    validate = "Gateway::check"
)]
struct Gateway {
    /// Port to listen on. (Doc comments are the schema's docs.)
    #[etcd(default = 8080)]
    listen_port: u16, //                      /services/gateway/listen-port = 8080
    upstream: String, //                      required: a missing key is an error naming it
    request_timeout: Option<Duration>, //     absent = None; stored as 1m30s
    #[etcd(nested)]
    tls: Tls, //                              /services/gateway/tls/enabled, .../cert-path
    #[etcd(each)]
    routes: BTreeMap<String, Route>, //       one key per route: /services/gateway/routes/api
    #[etcd(secret)]
    api_token: String, //                     never in errors, logs, diffs or the schema
}

impl Gateway {
    /// `validate` names a `fn(&Self) -> Result<(), String>`: a value it refuses is never
    /// saved, and a live config keeps its last good value instead of taking it.
    fn check(&self) -> Result<(), String> {
        match self.listen_port {
            0 => Err("listen-port must not be 0".into()),
            _ => Ok(()),
        }
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoints = std::env::var("ETCD_ENDPOINTS").unwrap_or_else(|_| "127.0.0.1:2379".into());
    let client = Client::connect(endpoints.split(','), ConnectOptions::default()).await?;
    let store = Store::new(client);

    let gateway = Gateway {
        listen_port: 8443,
        upstream: "http://backend:8080".into(),
        request_timeout: Some(Duration::from_secs(90)),
        tls: Tls {
            enabled: true,
            cert_path: "/etc/gateway/cert.pem".into(),
        },
        routes: BTreeMap::from([(
            "api".into(),
            Route {
                path: "/api".into(),
                weight: 1,
            },
        )]),
        api_token: "change-me".into(),
    };
    let revision = store.save(&gateway).await?; // one txn: the whole struct or nothing
    let loaded = store.load_versioned::<Gateway>().await?; // one range read, one revision
    assert_eq!(loaded.value, gateway);
    println!("saved at revision {revision}\n{}", Gateway::schema());

    // Hot reload: a watch keeps the value current; readers never wait.
    let mut live = store
        .live_with::<Gateway>(LiveOptions::new().report_as("gw-1"))
        .await?;
    println!(
        "port {}, ready: {}",
        live.get().listen_port,
        !live.status().is_behind()
    );
    if std::env::var_os("FOLLOW").is_some() {
        while live.changed().await.is_ok() {
            println!("reloaded: port {}", live.get().listen_port);
        }
    }
    Ok(())
}
