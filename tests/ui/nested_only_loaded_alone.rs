use etcd_config::{EtcdConfig, Store};

// No prefix: this struct can only be nested.
#[derive(EtcdConfig, Debug)]
struct Tls {
    cert_path: String,
}

#[derive(EtcdConfig, Debug)]
#[etcd(prefix = "/app")]
struct App {
    #[etcd(nested)]
    tls: Tls,
}

async fn load(store: Store) {
    let _fine: App = store.load().await.unwrap();
    let _alone: Tls = store.load().await.unwrap();
}

fn main() {
    let _ = load;
}
