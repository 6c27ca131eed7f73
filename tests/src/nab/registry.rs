//! The detectors `tributary-nab` can run, by name. The core's detectors
//! join this list as they land (issue #7).

use tributary_core::detect::{Detector as _, Ensemble, EnsembleConfig};
use tributary_core::ids::Timestamp;

use super::gaussian::{STEP, WINDOW, WindowedGaussian};

/// A detector instance for one stream: `(unix ms, value) → anomaly score in
/// [0, 1]`, called once per row in file order.
pub type Detector = Box<dyn FnMut(i64, f64) -> f64 + Send>;

/// Makes a fresh detector, one per series.
pub type DetectorFactory = fn() -> Detector;

/// Every registered detector, by name.
pub fn registry() -> Vec<(&'static str, DetectorFactory)> {
    vec![
        ("null", null),
        ("window_gaussian", window_gaussian),
        ("tributary_ensemble", tributary_ensemble),
    ]
}

/// Bytes of state one stream of the named detector holds at its largest
/// (`None` for an unknown name): what a device or gateway pays per sensor.
pub fn state_bytes(name: &str) -> Option<usize> {
    match name {
        "null" => Some(0),
        // A full window plus a pending step of f64s, beside the struct.
        "window_gaussian" => Some(
            core::mem::size_of::<WindowedGaussian>()
                + (WINDOW + STEP) * core::mem::size_of::<f64>(),
        ),
        "tributary_ensemble" => Some(core::mem::size_of::<Ensemble>()),
        _ => None,
    }
}

/// Looks a detector up by name.
pub fn find(name: &str) -> Option<DetectorFactory> {
    registry()
        .into_iter()
        .find_map(|(n, f)| (n == name).then_some(f))
}

/// NAB's zero point: never detects anything.
fn null() -> Detector {
    Box::new(|_, _| 0.0)
}

/// NAB's "Windowed Gaussian" baseline, to test the pipeline.
fn window_gaussian() -> Detector {
    let mut g = WindowedGaussian::default();
    Box::new(move |_, x| g.step(x))
}

/// The core's default ensemble, exactly as gateways and devices run it.
fn tributary_ensemble() -> Detector {
    // Boxed: the state is a couple of KiB, moved into the closure once.
    let mut e = Box::new(Ensemble::new(EnsembleConfig::DEFAULT));
    // NAB's timestamps are all after 1970; a negative one would be a
    // corrupt file, and clamping keeps the detector total.
    Box::new(move |t, x| e.step(Timestamp(u64::try_from(t).unwrap_or(0)), x))
}
