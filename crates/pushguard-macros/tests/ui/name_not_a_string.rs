#[pushguard::job(name = nightly_etl)]
fn nightly() {}

fn main() {}
