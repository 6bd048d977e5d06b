use etcd_config::EtcdConfig;

#[derive(EtcdConfig)]
#[etcd(prefix = "/app")]
struct Settings {
    #[etcd(defualt = 1)]
    port: u16,
}

fn main() {}
