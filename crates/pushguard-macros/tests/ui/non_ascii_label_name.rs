#[pushguard::job(labels(équipe = "media"))]
fn nightly() {}

fn main() {}
