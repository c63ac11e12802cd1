#[pushguard::job(method = "patch")]
fn nightly() {}

fn main() {}
