use etcd_config::EtcdConfig;

#[derive(EtcdConfig)]
#[etcd(prefix = "/app")]
struct Settings {
    #[etcd(each)]
    hosts: Vec<String>,
}

fn main() {}
