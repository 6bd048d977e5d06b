//! Save a settings struct to etcd, load it back, and print it with its schema.
//!
//! ```sh
//! ETCD_ENDPOINTS=127.0.0.1:2379 cargo run --example quickstart
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_config::{Client, ConnectOptions, EtcdConfig, Store};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum LogLevel {
    Debug,
    Info,
    Warn,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Route {
    path: String,
    weight: u32,
}

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/services/gateway/tls", rename_all = "kebab-case")]
struct TlsSettings {
    /// PEM file with the certificate chain.
    #[etcd(default = "/etc/gateway/cert.pem")]
    cert_path: String,
    /// Serve TLS at all.
    #[etcd(default)]
    enabled: bool,
}

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(
    prefix = "/services/gateway",
    rename_all = "kebab-case",
    validate = "Gateway::check"
)]
struct Gateway {
    /// Port to listen on.
    #[etcd(default = 8080)]
    listen_port: u16,
    /// Where requests are forwarded.
    upstream: String,
    /// Origins allowed by CORS.
    #[etcd(default)]
    allowed_origins: Vec<String>,
    /// Give up on the upstream after this long.
    request_timeout: Option<Duration>,
    /// TLS settings.
    #[etcd(nested)]
    tls: TlsSettings,
    /// How much to log.
    #[etcd(rename = "log")]
    log_level: LogLevel,
    /// Routing table, one key per route.
    #[etcd(each)]
    routes: BTreeMap<String, Route>,
    /// Token for the admin API.
    #[etcd(secret)]
    api_token: String,
}

impl Gateway {
    fn check(&self) -> Result<(), String> {
        if self.listen_port == 0 {
            return Err("listen-port must not be 0".into());
        }
        Ok(())
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoints = std::env::var("ETCD_ENDPOINTS").unwrap_or_else(|_| "127.0.0.1:2379".into());
    let client = Client::connect(endpoints.split(','), ConnectOptions::default()).await?;
    let store = Store::new(client);

    let settings = Gateway {
        listen_port: 8443,
        upstream: "http://backend:8080".into(),
        allowed_origins: vec!["https://example.com".into()],
        request_timeout: Some(Duration::from_secs(90)),
        tls: TlsSettings {
            cert_path: "/etc/gateway/cert.pem".into(),
            enabled: true,
        },
        log_level: LogLevel::Info,
        routes: BTreeMap::from([(
            "api".into(),
            Route {
                path: "/api".into(),
                weight: 1,
            },
        )]),
        api_token: "change-me".into(),
    };
    let revision = store.save(&settings).await?;
    println!("saved at revision {revision}");

    let loaded = store.load_versioned::<Gateway>().await?;
    assert_eq!(loaded.value, settings);
    println!("loaded at revision {}:", loaded.revision);
    let mut shown = loaded.value.clone();
    shown.api_token = "<secret>".into();
    println!("{shown:#?}\n");
    print!("{}", Gateway::schema());
    Ok(())
}
