#[pushguard::job(labels(job = "etl"))]
fn nightly() {}

fn main() {}
