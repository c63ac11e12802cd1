#[pushguard::job(nme = "nightly_etl")]
fn nightly() {}

fn main() {}
