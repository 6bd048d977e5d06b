use etcd_config::EtcdConfig;

#[derive(EtcdConfig)]
#[etcd(prefix = "/app", rename_all = "kebab-case")]
struct Settings {
    max_conns: u32,
    #[etcd(rename = "max-conns")]
    connections: u32,
}

fn main() {}
