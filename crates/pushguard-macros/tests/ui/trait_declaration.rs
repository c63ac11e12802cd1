trait Job {
    #[pushguard::job]
    fn run(&self);
}

fn main() {}
