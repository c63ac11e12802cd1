#[pushguard::job]
const fn nightly() {}

fn main() {}
