//! The admin command line embedded in a service's own binary (cargo feature `cli`): the
//! service's own type and `validate` check every change people make.
//!
//! ```sh
//! ETCD_ENDPOINTS=127.0.0.1:2379 cargo run --features cli --example admin -- show
//! cargo run --features cli --example admin -- set greeting=hi workers=8 --author alice --reason launch
//! cargo run --features cli --example admin -- set workers=1000 --dry-run   # refused: validate
//! cargo run --features cli --example admin -- history
//! echo "$TOKEN" | ETCD_CONFIG_KEYS=keys cargo run --features cli --example admin -- set api_token=-
//! ETCD_CONFIG_KEYS=keys cargo run --features cli --example admin -- rotate   # after adding a key
//! ```

use clap::Parser;
use etcd_config::{Client, ConnectOptions};

#[path = "shared/settings.rs"]
mod settings;

use settings::Settings;

/// Change the demo service's settings safely.
#[derive(Parser)]
struct Admin {
    #[command(subcommand)]
    command: etcd_config::cli::Command,
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let admin = Admin::parse();
    let json = admin.command.json();
    let endpoints = std::env::var("ETCD_ENDPOINTS").unwrap_or_else(|_| "127.0.0.1:2379".into());
    let result = async {
        let client = Client::connect(endpoints.split(','), ConnectOptions::default()).await?;
        let store = settings::store(client)?;
        etcd_config::cli::run::<Settings>(&store, admin.command, &mut std::io::stdout()).await
    };
    if let Err(err) = result.await {
        etcd_config::cli::print_error(&err, json, &mut std::io::stderr());
        std::process::exit(etcd_config::cli::exit_code(&err));
    }
}
