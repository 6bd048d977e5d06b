use etcd_config::EtcdConfig;

#[derive(EtcdConfig)]
#[etcd(prefix = "/app")]
struct Settings {
    #[etcd(skip, default)]
    cache: Vec<u8>,
}

fn main() {}
