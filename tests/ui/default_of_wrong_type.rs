use etcd_config::EtcdConfig;

#[derive(EtcdConfig, Debug)]
#[etcd(prefix = "/app")]
struct App {
    #[etcd(default = "eight")]
    workers: u32,
}

fn main() {}
