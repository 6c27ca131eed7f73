//! `tributary-nab` end to end on a tiny synthetic corpus in a temp dir: the
//! results layout, the JSON lines and the error exits.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use tributary_tests::nab::data::format_timestamp;

const ROWS: usize = 1200;
const SPIKE: usize = 900;

/// A corpus of two files: one with a spike inside its only window, one
/// without windows. The profiles are the real ones.
fn corpus(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nab-cli-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    for sub in ["data/cat", "labels", "config"] {
        fs::create_dir_all(dir.join(sub)).unwrap();
    }
    let ts = |i: usize| format_timestamp(1_400_000_000_000 + 300_000 * i as i64).unwrap();
    for (file, spike) in [("spike.csv", true), ("flat.csv", false)] {
        let mut text = String::from("timestamp,value\n");
        for i in 0..ROWS {
            let value = if spike && i == SPIKE {
                100.0
            } else {
                (i % 7) as f64
            };
            text.push_str(&format!("{},{value}\n", ts(i)));
        }
        fs::write(dir.join("data/cat").join(file), text).unwrap();
    }
    let labels = format!(
        r#"{{"cat/flat.csv": [], "cat/spike.csv": [["{}.000000", "{}.000000"]]}}"#,
        ts(SPIKE),
        ts(SPIKE + 59)
    );
    fs::write(dir.join("labels/combined_windows.json"), labels).unwrap();
    fs::copy(
        tributary_tests::nab::nab_dir().join("config/profiles.json"),
        dir.join("config/profiles.json"),
    )
    .unwrap();
    dir
}

fn nab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tributary-nab"))
        .args(args)
        .env_remove("NAB_DIR")
        .output()
        .unwrap()
}

fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn all_writes_nab_layout_and_prints_json_lines() {
    let dir = corpus("all");
    let out_dir = dir.join("results");
    let (d, o) = (dir.to_str().unwrap(), out_dir.to_str().unwrap());
    let out = nab(&[
        "--nab",
        d,
        "all",
        "--detector",
        "window_gaussian",
        "--out",
        o,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.lines().filter(|l| l.contains("cat/")).count(),
        2,
        "a progress line per file: {stderr}"
    );

    let results =
        fs::read_to_string(out_dir.join("window_gaussian/cat/window_gaussian_spike.csv")).unwrap();
    let mut lines = results.lines();
    assert_eq!(lines.next(), Some("timestamp,value,anomaly_score,label"));
    assert_eq!(lines.count(), ROWS);

    let json = json_lines(&out);
    let names: Vec<&str> = json.iter().filter_map(|j| j["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "nab.window_gaussian.standard",
            "nab.window_gaussian.reward_low_FP_rate",
            "nab.window_gaussian.reward_low_FN_rate",
            "nab.window_gaussian.throughput",
            "nab.window_gaussian.state_bytes"
        ]
    );
    for j in &json {
        let mut keys: Vec<&str> = j.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "baseline",
                "baseline_value",
                "name",
                "ratio",
                "unit",
                "value"
            ]
        );
    }
    // The spike opens the window, so the Gaussian catches it on its first row.
    assert_eq!(json[0]["value"].as_f64(), Some(100.0));
    assert_eq!(json[3]["unit"], "points/s");
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_then_score_the_null_detector_gives_zero() {
    let dir = corpus("null");
    let out_dir = dir.join("results");
    let (d, o) = (dir.to_str().unwrap(), out_dir.to_str().unwrap());
    assert!(
        nab(&["--nab", d, "run", "--detector", "null", "--out", o])
            .status
            .success()
    );
    let out = nab(&["--nab", d, "score", "--results", o, "--detector", "null"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let values: Vec<f64> = json_lines(&out)
        .iter()
        .filter_map(|j| j["value"].as_f64())
        .collect();
    assert_eq!(values, [0.0, 0.0, 0.0]);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unknown_detectors_and_missing_results_fail_with_a_message() {
    let dir = corpus("errors");
    let d = dir.to_str().unwrap();
    let out = nab(&["--nab", d, "run", "--detector", "nope", "--out", d]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("registered: null, window_gaussian"));
    let out = nab(&["--nab", d, "score", "--results", d, "--detector", "null"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("null_flat.csv"));
    fs::remove_dir_all(&dir).unwrap();
}
