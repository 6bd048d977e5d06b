use etcd_config::EtcdConfig;

#[derive(EtcdConfig)]
struct Settings {
    port: u16,
}

fn main() {}
