//! A job inside a tokio application, pushing with the async API.
//!
//! `PUSHGATEWAY_URL=http://127.0.0.1:9091 cargo run --example tokio_guard`

use pushguard::{JobRun, Outcome};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let guard = JobRun::new("example_async_job").start()?;
    let fetched = guard.int_counter("example_items_fetched_total", "Items fetched.")?;

    for _ in 0..3 {
        tokio::task::yield_now().await;
        fetched.inc();
    }

    match guard.finish_async(Outcome::Success).await {
        Ok(report) => println!("pushed to {} ({} attempt(s))", report.url, report.attempts),
        Err(error) => eprintln!("warning: metrics not pushed: {error}"),
    }
    Ok(())
}
