use etcd_config::EtcdConfig;

#[derive(EtcdConfig)]
#[etcd(prefix = "/app")]
struct Settings<T> {
    value: T,
}

// The stub impl keeps uses of the type free of follow-on errors.
fn prefix_of<T: EtcdConfig>() -> &'static str {
    T::PREFIX
}

fn main() {
    let _ = prefix_of::<Settings<u16>>();
}
