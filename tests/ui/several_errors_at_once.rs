use etcd_config::EtcdConfig;

#[derive(EtcdConfig)]
#[etcd(prefix = "app/")]
struct Settings {
    #[etcd(colour)]
    a: u8,
    #[etcd(each)]
    b: u8,
    #[etcd(skip, secret)]
    c: u8,
}

fn main() {}
