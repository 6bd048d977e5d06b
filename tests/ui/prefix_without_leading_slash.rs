use etcd_config::EtcdConfig;

#[derive(EtcdConfig)]
#[etcd(prefix = "services/gateway")]
struct Settings {
    port: u16,
}

fn main() {}
