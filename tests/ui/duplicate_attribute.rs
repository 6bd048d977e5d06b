use etcd_config::EtcdConfig;

#[derive(EtcdConfig)]
#[etcd(prefix = "/app")]
struct Settings {
    #[etcd(rename = "a", rename = "b")]
    port: u16,
}

fn main() {}
