//! Detector benchmarks: throughput of each streaming detector and of the
//! ensemble (points per second on one core), and state bytes per stream.
//!
//! Criterion measures; after it finishes, one JSON line per result goes to
//! stdout, `{"name","unit","value","baseline","baseline_value","ratio"}`, as
//! in `benches/core.rs`. The throughput baseline is a bare EWMA mean update
//! over the same samples (the least any streaming detector does per point);
//! the state-size baseline is one `f64` sample.
//!
//! Run: `cargo bench -p tributary-core --bench detect` (add `-- --quick` for
//! a fast, rougher pass).

use std::hint::black_box;

mod support;

use criterion::{Criterion, Throughput};
use support::{Line, criterion_dir, mean_ns, print_lines};
use tributary_core::detect::{
    Cusum, Detector, Ensemble, EwmaZScore, Flatline, MadZScore, PageHinkley, RangeLimits,
    RateOfChange, Seasonal,
};
use tributary_core::ids::Timestamp;

const POINTS: usize = 20_000;
const STEP_MS: u64 = 300_000;
const START_MS: u64 = 1_767_225_600_000;

/// A daily cycle sampled every 5 minutes, with deterministic noise, a few
/// spikes and one level shift: every detector has work to do.
fn series() -> Vec<(Timestamp, f64)> {
    let mut s = 0x9e37_79b9_7f4a_7c15_u64;
    (0..POINTS)
        .map(|i| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            let noise = (s >> 11) as f64 / (1u64 << 53) as f64 - 0.5;
            let day = (i % 288) as f64 / 288.0 * std::f64::consts::TAU;
            let mut x = 50.0 + 10.0 * day.sin() + noise;
            if i % 2_500 == 1_234 {
                x += 30.0;
            }
            if i > 15_000 {
                x += 8.0;
            }
            (Timestamp(START_MS + i as u64 * STEP_MS), x)
        })
        .collect()
}

fn run<D: Detector>(mut d: D, data: &[(Timestamp, f64)]) -> f64 {
    let mut acc = 0.0;
    for &(t, x) in data {
        acc += d.step(t, x);
    }
    acc
}

fn main() {
    let out_dir = criterion_dir();
    let mut c = Criterion::default()
        .output_directory(&out_dir)
        .configure_from_args();
    let data = series();

    let mut g = c.benchmark_group("detect");
    g.throughput(Throughput::Elements(POINTS as u64));
    g.bench_function("baseline_ewma_mean", |b| {
        b.iter(|| {
            let mut m = 0.0;
            for &(_, x) in black_box(&data) {
                m += 0.01 * (x - m);
            }
            black_box(m)
        })
    });
    macro_rules! bench {
        ($id:literal, $d:expr) => {
            g.bench_function($id, |b| b.iter(|| black_box(run($d, black_box(&data)))));
        };
    }
    bench!("zscore", EwmaZScore::default());
    bench!("mad32", MadZScore::<32>::new());
    bench!("cusum", Cusum::default());
    bench!("page_hinkley", PageHinkley::default());
    bench!("flatline", Flatline::default());
    bench!("rate", RateOfChange::default());
    bench!("range", RangeLimits::new(0.0, 100.0));
    bench!("seasonal", Seasonal::default());
    bench!("ensemble", Ensemble::default());
    g.finish();
    c.final_summary();

    let per_sec =
        |id: &str| mean_ns(&out_dir, "detect", id).map_or(f64::NAN, |t| POINTS as f64 / (t * 1e-9));
    let baseline = per_sec("baseline_ewma_mean");
    let mut lines = Vec::new();
    let sizes = [
        ("zscore", EwmaZScore::STATE_BYTES),
        ("mad32", MadZScore::<32>::STATE_BYTES),
        ("cusum", Cusum::STATE_BYTES),
        ("page_hinkley", PageHinkley::STATE_BYTES),
        ("flatline", Flatline::STATE_BYTES),
        ("rate", RateOfChange::STATE_BYTES),
        ("range", RangeLimits::STATE_BYTES),
        ("seasonal", Seasonal::STATE_BYTES),
        ("ensemble", Ensemble::STATE_BYTES),
    ];
    for (id, bytes) in sizes {
        lines.push(Line {
            name: format!("detect.{id}.throughput"),
            unit: "points/s",
            value: per_sec(id),
            baseline: "ewma_mean_update",
            baseline_value: baseline,
        });
        lines.push(Line {
            name: format!("detect.{id}.state_bytes"),
            unit: "bytes",
            value: bytes as f64,
            baseline: "one_f64_sample",
            baseline_value: 8.0,
        });
    }
    print_lines(&lines);
}
