//! The detectors `tributary-nab` can run, by name. The core's detectors
//! join this list as they land (issue #7).

use super::gaussian::WindowedGaussian;

/// A detector instance for one stream: `(unix ms, value) → anomaly score in
/// [0, 1]`, called once per row in file order.
pub type Detector = Box<dyn FnMut(i64, f64) -> f64 + Send>;

/// Makes a fresh detector, one per series.
pub type DetectorFactory = fn() -> Detector;

/// Every registered detector, by name.
pub fn registry() -> Vec<(&'static str, DetectorFactory)> {
    vec![("null", null), ("window_gaussian", window_gaussian)]
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
