use std::process::ExitCode;

#[pushguard::job]
fn main() -> ExitCode {
    ExitCode::SUCCESS
}
