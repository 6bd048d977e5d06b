use etcd_config::EtcdConfig;

#[derive(EtcdConfig)]
#[etcd(prefix = "/app")]
struct Settings {
    #[etcd(default)]
    timeout: Option<u32>,
}

fn main() {}
