//! The release-delivery built-ins against real servers (radicale, an SMTP
//! server) and local stand-ins for AniList, feeds, Slack and Discord. One
//! binary; one module per area.

use pushguard_testkit::{prom, receivers, sources};

/// The workspace's harness, plus a release store to stand on.
mod harness {
    pub use pushguard_testkit::harness::*;

    /// A release store in a temp dir with its own metric registry: the ground
    /// the built-in jobs' tests stand on.
    pub struct StoreBench {
        pub dir: tempfile::TempDir,
        pub registry: pushguard::prometheus::Registry,
        pub store: pushguard_releases::Store,
    }

    impl StoreBench {
        pub fn new() -> StoreBench {
            let dir = tempfile::tempdir().expect("temp dir");
            let registry = pushguard::prometheus::Registry::new();
            let store = pushguard_releases::Store::open(
                &dir.path().join("releases.db"),
                pushguard_releases::DbMetrics::new(&registry),
            )
            .expect("open the store");
            StoreBench {
                dir,
                registry,
                store,
            }
        }

        /// The sample of `family` with exactly these labels, as the registry
        /// reports it: a counter's or gauge's value, a histogram's sample count.
        pub fn sample(&self, family: &str, labels: &[(&str, &str)]) -> Option<f64> {
            use pushguard::prometheus::proto::MetricType;
            let families = self.registry.gather();
            let f = families.iter().find(|f| f.name() == family)?;
            let m = f.get_metric().iter().find(|m| {
                m.get_label().len() == labels.len()
                    && labels.iter().all(|(k, v)| {
                        m.get_label()
                            .iter()
                            .any(|l| l.name() == *k && l.value() == *v)
                    })
            })?;
            Some(match f.get_field_type() {
                MetricType::COUNTER => m.get_counter().get_value(),
                MetricType::GAUGE => m.get_gauge().get_value(),
                _ => m.get_histogram().get_sample_count() as f64,
            })
        }
    }
}

mod calendar;
mod example;
mod fetch;
mod notify;
