#[pushguard::job(labels(team = "media", __name__ = "etl"))]
fn nightly() {}

fn main() {}
