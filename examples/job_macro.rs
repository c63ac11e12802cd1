//! A batch job instrumented with one attribute: `#[pushguard::job]`.
//!
//! Start a gateway (`prometheus-pushgateway`), then:
//! `PUSHGATEWAY_URL=http://127.0.0.1:9091 cargo run --example job_macro`
//!
//! `main` is one run (job `job_macro`, the binary's name); `load_batch`, a
//! job of its own called from it, is a second run whose span is a child of
//! main's. An `Err` from either is a failed run and still the function's
//! return value; a panic is pushed as a failure and then goes on.

use std::time::Duration;

#[derive(Debug)]
struct LoadError(u64);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "batch {} could not be loaded", self.0)
    }
}

impl std::error::Error for LoadError {}

#[pushguard::job(labels(env = "dev"), expected_interval = "1h")]
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let run = pushguard::current();
    let rows = run.int_counter("example_rows_total", "Rows loaded by the run.")?;
    for batch in 0..3 {
        tokio::time::sleep(Duration::from_millis(10)).await; // the work
        rows.inc_by(load_batch(batch)?);
    }
    Ok(())
}

#[pushguard::job(name = "example_load_batch", labels(env = "dev"))]
fn load_batch(batch: u64) -> Result<u64, LoadError> {
    let size = 100 + batch;
    pushguard::current()
        .gauge("example_batch_rows", "Rows in the last batch.")
        .map_err(|_| LoadError(batch))?
        .set(size as f64);
    Ok(size)
}
