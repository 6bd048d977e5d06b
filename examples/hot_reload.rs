//! A small service that hot-reloads its settings from etcd.
//!
//! It loads `/services/demo`, then prints its settings whenever they change, and the live
//! config's events and status. A value that does not parse, or that the settings' `validate`
//! refuses, is reported and ignored: the service keeps running on the last good settings. It
//! reports itself to the fleet as `$DEMO_INSTANCE` (default `demo-1`: `etcdctl get
//! /services/demo.fleet/demo-1`), of build `$DEMO_BUILD` (default `v1`), and so takes part in
//! rollouts. Stop it with Ctrl-C (or SIGTERM).
//!
//! ```sh
//! ETCD_ENDPOINTS=127.0.0.1:2379 ETCD_CONFIG_KEYS=keys cargo run --example hot_reload
//! etcdctl put /services/demo/greeting hello        # in another terminal
//! ```
//! `bash scripts/demo` runs the whole show against a throwaway etcd.

use etcd_config::{Client, ConnectOptions, LiveEvent, LiveOptions};
use futures_util::StreamExt;

#[path = "shared/settings.rs"]
mod settings;

use settings::Settings;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Shows the library's warnings, such as a rejected update.
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_target(false)
        .without_time()
        .with_ansi(false)
        .init();

    let endpoints = std::env::var("ETCD_ENDPOINTS").unwrap_or_else(|_| "127.0.0.1:2379".into());
    let client = Client::connect(endpoints.split(','), ConnectOptions::default()).await?;
    // Its name in the fleet (and its identity in rollouts), and its build.
    let instance = std::env::var("DEMO_INSTANCE").unwrap_or_else(|_| "demo-1".into());
    let build = std::env::var("DEMO_BUILD").unwrap_or_else(|_| "v1".into());
    let options = LiveOptions::new().report_as(instance).build(build);
    let mut live = settings::store(client)?
        .live_with::<Settings>(options)
        .await?;
    // What operators and health checks see: every applied or rejected revision, as it happens.
    let mut events = live.events();
    println!(
        "[service] started with {:?} (revision {})",
        live.get(),
        live.revision()
    );

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        tokio::select! {
            changed = live.changed() => {
                changed?;
                let now = live.snapshot();
                println!("[service] reloaded at revision {}: {:?}", now.revision, now.value);
            }
            Some(event) = events.next() => match event {
                LiveEvent::Applied { revision, changed } => {
                    println!("[events] applied revision {revision}, changed {changed:?}");
                }
                LiveEvent::Rejected { revision, reason } => {
                    println!("[events] rejected revision {revision}: {reason}");
                    let status = live.status();
                    println!(
                        "[status] serving revision {}, {:?}, confirmed current {:?} ago",
                        status.revision,
                        status.state,
                        status.confirmed_current_at.map(|at| at.elapsed()),
                    );
                }
                other => println!("[events] {other:?}"),
            },
            _ = tokio::signal::ctrl_c() => break,
            _ = terminate.recv() => break,
        }
    }
    println!("[service] shutting down cleanly");
    Ok(())
}
