//! A batch job wrapped in a guard, blocking API.
//!
//! Start a gateway (`prometheus-pushgateway`), then:
//! `PUSHGATEWAY_URL=http://127.0.0.1:9091 cargo run --example blocking_guard`

use pushguard::{JobRun, Outcome};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let guard = JobRun::new("example_etl").label("env", "dev").start()?;
    let rows = guard.int_counter("etl_rows_total", "Rows loaded by the run.")?;
    let step = guard.histogram(
        "etl_batch_seconds",
        "Time per batch.",
        vec![0.001, 0.01, 0.1],
    )?;

    let mut outcome = Outcome::Success;
    for batch in 0..10u64 {
        let timer = step.start_timer();
        if load(batch).is_err() {
            outcome = Outcome::Failure;
            break;
        }
        rows.inc_by(100);
        timer.observe_duration();
    }

    match guard.finish(outcome) {
        Ok(report) => println!("pushed to {} in {:?}", report.url, report.elapsed),
        // Monitoring being down never fails the job itself.
        Err(error) => eprintln!("warning: metrics not pushed: {error}"),
    }
    Ok(())
}

fn load(batch: u64) -> Result<(), String> {
    std::hint::black_box(batch);
    Ok(())
}
