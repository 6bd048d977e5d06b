use etcd_config::EtcdConfig;

#[derive(EtcdConfig)]
#[etcd(prefix = "/app/inner")]
struct Inner {
    x: u8,
}

mod codec {}

#[derive(EtcdConfig)]
#[etcd(prefix = "/app")]
struct Settings {
    #[etcd(nested, with = "codec")]
    inner: Inner,
}

fn main() {}
