#[pushguard::job(expected_interval = "every night")]
fn nightly() {}

fn main() {}
