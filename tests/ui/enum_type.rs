use etcd_config::EtcdConfig;

#[derive(EtcdConfig)]
#[etcd(prefix = "/app")]
enum Settings {
    A,
    B,
}

fn main() {}
