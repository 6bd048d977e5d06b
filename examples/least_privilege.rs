//! Least privilege for one config: an editor role that may change it, a service role that may
//! only read it, and what each can do.
//!
//! Needs an etcd where this example may create users and enable auth, e.g. a throwaway one:
//!
//! ```sh
//! etcd --data-dir /tmp/lp &
//! ETCD_ENDPOINTS=127.0.0.1:2379 cargo run --example least_privilege
//! ```
//!
//! It creates `root` (password from `ROOT_PASSWORD`, default `root-password`) if auth is off,
//! and turns auth off again at the end.

use std::time::Duration;

use etcd_config::{Access, Client, ConnectOptions, EtcdConfig, ServerErrorKind, Store};
use futures_util::StreamExt;

#[derive(EtcdConfig, Debug, Clone, PartialEq)]
#[etcd(prefix = "/services/gateway", rename_all = "kebab-case")]
struct Gateway {
    upstream: String,
    #[etcd(default = 8080)]
    listen_port: u16,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let endpoints: Vec<String> = std::env::var("ETCD_ENDPOINTS")
        .unwrap_or_else(|_| "127.0.0.1:2379".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    let root_password = std::env::var("ROOT_PASSWORD").unwrap_or_else(|_| "root-password".into());

    // 1. As root: enable auth, make one role per job, each granted exactly the config's prefix.
    let anonymous = Client::connect(&endpoints, ConnectOptions::default()).await?;
    let auth = anonymous.auth();
    if auth.user_add("root", &root_password).await.is_ok() {
        let _ = auth.role_add("root").await; // etcd 3.5 needs the role made; 3.4 makes it
        auth.user_grant_role("root", "root").await?;
    }
    match auth.auth_enable().await {
        Ok(_) => {}
        Err(e) if e.server_kind() == Some(ServerErrorKind::PermissionDenied) => {} // already on
        Err(e) => return Err(e.into()),
    }
    let root = Client::connect(
        &endpoints,
        ConnectOptions::default().with_user("root", &root_password),
    )
    .await?;
    let admin = Store::new(root.clone());
    println!("the config's keys: {}", Gateway::schema().range());
    for (name, access) in [
        ("gateway-editor", Access::ReadWrite),
        ("gateway-service", Access::Read),
    ] {
        let _ = root.auth().role_add(name).await;
        admin.grant::<Gateway>(name, access).await?;
        let _ = root.auth().user_add(name, "pw").await;
        root.auth().user_grant_role(name, name).await?;
        println!("role {name}: {:?}", root.auth().role_get(name).await?);
    }

    // 2. The editor writes the config; the service reads and watches it.
    let login = |user: &'static str| {
        let endpoints = endpoints.clone();
        async move { Client::connect(&endpoints, ConnectOptions::default().with_user(user, "pw")).await }
    };
    let editor = Store::new(login("gateway-editor").await?);
    let service = Store::new(login("gateway-service").await?);
    editor
        .save(&Gateway {
            upstream: "http://backend:80".into(),
            listen_port: 8080,
        })
        .await?;
    println!("service loads: {:?}", service.load::<Gateway>().await?);
    let mut updates = service.watch::<Gateway>().await?;

    editor
        .save(&Gateway {
            upstream: "http://backend:80".into(),
            listen_port: 9090,
        })
        .await?;
    if let Ok(Some(update)) = tokio::time::timeout(Duration::from_secs(5), updates.next()).await {
        let update = update?;
        println!(
            "service sees revision {}: {:?} changed",
            update.revision, update.changed
        );
    }

    // 3. The service may not write.
    match service
        .save(&Gateway {
            upstream: "http://evil".into(),
            listen_port: 1,
        })
        .await
    {
        Err(e) => println!("service save refused: {e}"),
        Ok(_) => println!("unexpected: the service could write"),
    }
    drop(updates);

    // 4. Tidy up: auth off again, so the etcd is as it was.
    root.auth().auth_disable().await?;
    println!("auth disabled again");
    Ok(())
}
