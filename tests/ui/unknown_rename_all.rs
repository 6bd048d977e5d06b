use etcd_config::EtcdConfig;

#[derive(EtcdConfig)]
#[etcd(prefix = "/app", rename_all = "kebab")]
struct Settings {
    max_conns: u32,
}

fn main() {}
