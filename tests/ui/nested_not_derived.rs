use etcd_config::EtcdConfig;

#[derive(Debug)]
struct Tls {
    cert_path: String,
}

#[derive(EtcdConfig, Debug)]
#[etcd(prefix = "/app")]
struct App {
    #[etcd(nested)]
    tls: Tls,
}

fn main() {}
