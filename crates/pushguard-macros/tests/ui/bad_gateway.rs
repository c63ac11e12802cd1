#[pushguard::job(gateway = "pushgateway:9091")]
fn nightly() {}

fn main() {}
