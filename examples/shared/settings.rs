//! The demo service's settings, shared by `hot_reload` (the service) and `admin` (the command
//! line people change them with): one type, one `validate`.

use std::time::Duration;

use etcd_config::{Client, EtcdConfig, Keyring, Secret, Store};

/// The demo service's settings, under `/services/demo`.
#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(
    prefix = "/services/demo",
    rename_all = "kebab-case",
    validate = "Settings::check"
)]
pub(crate) struct Settings {
    /// What to greet with.
    pub(crate) greeting: String,
    /// How many workers to run.
    #[etcd(default = 2)]
    pub(crate) workers: u32,
    /// How often to greet.
    #[etcd(default = Duration::from_secs(1))]
    pub(crate) interval: Duration,
    /// The token for the upstream API: secret (never printed), encrypted in etcd when
    /// `ETCD_CONFIG_KEYS` names a key file.
    #[etcd(default)]
    pub(crate) api_token: Secret<String>,
}

/// The store both programs use: with the key ring of the file `ETCD_CONFIG_KEYS` names, if
/// set, so secret fields are encrypted in etcd.
pub(crate) fn store(client: Client) -> etcd_config::Result<Store> {
    let store = Store::new(client);
    match std::env::var_os("ETCD_CONFIG_KEYS") {
        Some(path) => Ok(store.with_keyring(Keyring::from_file(path)?)),
        None => Ok(store),
    }
}

impl Settings {
    fn check(&self) -> Result<(), String> {
        // The demo plays two builds of the service with one binary: `DEMO_BUILD=v2` is a
        // stricter build that allows at most 16 workers (a rollout's preflight asks it too).
        let max = match std::env::var("DEMO_BUILD").as_deref() {
            Ok("v2") => 16,
            _ => 64,
        };
        match self.workers {
            n if (1..=max).contains(&n) => Ok(()),
            n => Err(format!("workers must be between 1 and {max}, not {n}")),
        }
    }
}
