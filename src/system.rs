//! Host gauges from `sysinfo`: CPU, memory and disk usage, for the runner's
//! `/metrics` and for any run that wants to push them.
//!
//! CPU usage is a rate: it is measured between two refreshes, so the first
//! [`SystemMetrics::refresh`] after [`SystemMetrics::new`] reports the usage
//! since `new` (for a run, its whole duration). Disk usage is a level, not a
//! rate: one sample of every mount serves all the [`SystemMetrics`] of a
//! process for up to a second, so a runner ending a hundred runs in
//! a second reads its mounts once, not a hundred times.

use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use prometheus::{Gauge, GaugeVec, IntGauge, Opts, Registry};
use sysinfo::{CpuRefreshKind, Disks, MemoryRefreshKind, RefreshKind, System};

use crate::catalog::metric;

/// `system_cpu_usage_percent`, `system_memory_usage_bytes` and
/// `system_disk_usage_percent{mount}`.
///
/// ```
/// let registry = pushguard::prometheus::Registry::new();
/// let system = pushguard::SystemMetrics::new(&registry);
/// system.refresh();
/// let names: Vec<String> = registry.gather().iter().map(|f| f.name().to_owned()).collect();
/// assert!(names.contains(&"system_memory_usage_bytes".to_owned()));
/// ```
pub struct SystemMetrics {
    cpu: Gauge,
    memory: IntGauge,
    disk: GaugeVec,
    probes: Mutex<System>,
}

/// How old a disk sample may be when [`SystemMetrics::refresh`] uses it.
const DISK_SAMPLE_AGE: Duration = Duration::from_secs(1);

/// The process's last disk sample: when it was taken, and each mount's used
/// percentage.
type DiskSample = (Instant, Vec<(String, f64)>);

/// Every mount's used percentage, from a sample at most [`DISK_SAMPLE_AGE`]
/// old (taken now if the last one is older).
/// One sample per process: the mounts are the host's, not the run's.
fn disk_usage() -> Vec<(String, f64)> {
    static DISKS: OnceLock<Mutex<(Disks, Option<DiskSample>)>> = OnceLock::new();
    let mut disks = DISKS
        .get_or_init(|| Mutex::new((Disks::new(), None)))
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    let (probe, sample) = &mut *disks;
    if let Some((at, usage)) = sample
        && at.elapsed() < DISK_SAMPLE_AGE
    {
        return usage.clone();
    }
    probe.refresh(true);
    let usage: Vec<(String, f64)> = probe
        .list()
        .iter()
        .filter(|disk| disk.total_space() > 0)
        .map(|disk| {
            let total = disk.total_space();
            let used = total.saturating_sub(disk.available_space());
            (
                disk.mount_point().to_string_lossy().into_owned(),
                used as f64 * 100.0 / total as f64,
            )
        })
        .collect();
    *sample = Some((Instant::now(), usage.clone()));
    usage
}

impl std::fmt::Debug for SystemMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemMetrics").finish_non_exhaustive()
    }
}

fn opts(name: &str) -> Opts {
    let def = metric(name).unwrap_or_else(|| panic!("{name} is missing from the metric catalogue"));
    Opts::new(def.name, def.help)
}

impl SystemMetrics {
    /// Registers the three families in `registry` and takes the first CPU
    /// sample. Create one per registry.
    pub fn new(registry: &Registry) -> SystemMetrics {
        let cpu = Gauge::with_opts(opts("system_cpu_usage_percent")).expect("valid catalogue name");
        let memory =
            IntGauge::with_opts(opts("system_memory_usage_bytes")).expect("valid catalogue name");
        let disk = GaugeVec::new(opts("system_disk_usage_percent"), &["mount"])
            .expect("valid catalogue name");
        for collector in [
            Box::new(cpu.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(memory.clone()),
            Box::new(disk.clone()),
        ] {
            let _ = registry.register(collector);
        }
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_cpu_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        SystemMetrics {
            cpu,
            memory,
            disk,
            probes: Mutex::new(system),
        }
    }

    /// Samples CPU (since the previous refresh), memory and every mounted
    /// disk into the gauges (the disks from the process's sample, at most a
    /// second old). Reads `/proc` and every mount: call it off an async
    /// runtime's worker threads.
    pub fn refresh(&self) {
        {
            let mut system = self.probes.lock().unwrap_or_else(|p| p.into_inner());
            system.refresh_cpu_usage();
            system.refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
            self.cpu.set(f64::from(system.global_cpu_usage()));
            self.memory
                .set(i64::try_from(system.used_memory()).unwrap_or(i64::MAX));
        }
        let usage = disk_usage();
        self.disk.reset();
        for (mount, percent) in &usage {
            self.disk.with_label_values(&[mount.as_str()]).set(*percent);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauges_carry_plausible_values() {
        let registry = Registry::new();
        let system = SystemMetrics::new(&registry);
        system.refresh();
        let cpu = system.cpu.get();
        assert!((0.0..=100.0).contains(&cpu), "cpu {cpu}");
        assert!(system.memory.get() > 0, "memory {}", system.memory.get());
        for family in registry.gather() {
            if family.name() == "system_disk_usage_percent" {
                for m in family.get_metric() {
                    let v = m.get_gauge().get_value();
                    assert!((0.0..=100.0).contains(&v), "disk {v}");
                }
            }
        }
    }
}
