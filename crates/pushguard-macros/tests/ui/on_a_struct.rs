#[pushguard::job]
struct Nightly {
    rows: u64,
}

fn main() {}
