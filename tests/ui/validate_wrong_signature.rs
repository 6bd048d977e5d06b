use etcd_config::EtcdConfig;

#[derive(EtcdConfig, Debug)]
#[etcd(prefix = "/app", validate = "App::check")]
struct App {
    port: u16,
}

impl App {
    fn check(&self) -> bool {
        self.port > 0
    }
}

fn main() {}
