//! What the engine's benchmarks share: settings from the environment and
//! the generated sample they run on.
#![allow(dead_code)]

use std::path::Path;
use std::time::Instant;

/// A setting from the environment, or `default` when unset or unparsable.
pub fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// Generates the sample of `persons` into `dir` unless every table is there.
pub fn ensure_sample(dir: &Path, persons: u64) {
    if veil_datasets::TABLES
        .iter()
        .all(|t| dir.join(format!("{t}.parquet")).exists())
    {
        return;
    }
    let started = Instant::now();
    veil_datasets::generate(
        dir,
        &veil_datasets::Options {
            persons,
            seed: veil_datasets::DEFAULT_SEED,
        },
        &|_| {},
    )
    .unwrap();
    eprintln!(
        "generated {persons} persons in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

/// Resets the kernel's peak-RSS mark of this process (Linux; elsewhere the
/// peak is the process's whole life).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}
