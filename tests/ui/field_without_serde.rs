use etcd_config::EtcdConfig;

#[derive(Debug, Clone, PartialEq)]
struct Limit {
    rps: u32,
}

#[derive(EtcdConfig, Debug)]
#[etcd(prefix = "/app")]
struct App {
    limit: Limit,
}

fn main() {}
