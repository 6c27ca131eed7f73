//! What every core benchmark shares: reading criterion's estimates back and
//! printing the one-JSON-line-per-result format of docs/benchmarks.md.

use std::path::{Path, PathBuf};

/// One result, printed as a JSON line.
pub struct Line {
    /// Stable result name, e.g. `core.join.update`.
    pub name: String,
    /// Unit of `value` and `baseline_value`.
    pub unit: &'static str,
    /// The measurement.
    pub value: f64,
    /// Name of the reference workload measured in the same run.
    pub baseline: &'static str,
    /// Its measurement.
    pub baseline_value: f64,
}

/// Prints each line as `{"name","unit","value","baseline","baseline_value","ratio"}`.
pub fn print_lines(lines: &[Line]) {
    for l in lines {
        println!(
            "{{\"name\":\"{}\",\"unit\":\"{}\",\"value\":{:.3},\"baseline\":\"{}\",\"baseline_value\":{:.3},\"ratio\":{:.3}}}",
            l.name,
            l.unit,
            l.value,
            l.baseline,
            l.baseline_value,
            l.value / l.baseline_value
        );
    }
}

/// Where criterion writes its estimates, so they can be read back.
pub fn criterion_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("criterion")
}

/// The mean time per iteration criterion estimated, in ns.
pub fn mean_ns(dir: &Path, group: &str, id: &str) -> Option<f64> {
    let text = std::fs::read_to_string(dir.join(group).join(id).join("new/estimates.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    v.get("mean")?.get("point_estimate")?.as_f64()
}
