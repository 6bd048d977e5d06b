use etcd_config::EtcdConfig;

#[derive(EtcdConfig)]
#[etcd(prefix = "/app", rename = "x")]
struct Settings {
    port: u16,
}

fn main() {}
