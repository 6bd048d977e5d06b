//! The demo service's settings, shared by `hot_reload` (the service) and `admin` (the command
//! line people change them with): one type, one `validate`.

use std::time::Duration;

use etcd_config::EtcdConfig;

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
}

impl Settings {
    fn check(&self) -> Result<(), String> {
        match self.workers {
            1..=64 => Ok(()),
            n => Err(format!("workers must be between 1 and 64, not {n}")),
        }
    }
}
