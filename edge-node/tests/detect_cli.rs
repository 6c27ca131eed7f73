//! `tributary-edge detect` as a user runs it: files in and out, exit codes,
//! messages on stderr.

use std::path::PathBuf;
use std::process::Command;

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tributary-edge-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn edge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_tributary-edge"))
}

#[test]
fn scores_a_file_into_a_file() {
    let dir = temp_dir("file");
    let input = dir.join("in.csv");
    let mut text = String::from("time;pressure;note\n");
    for i in 0..300 {
        text.push_str(&format!(
            "2024-05-01 12:{:02}:{:02};{};x\n",
            i / 60,
            i % 60,
            1000 + i % 5
        ));
    }
    std::fs::write(&input, text).unwrap();
    let output = dir.join("out.csv");
    let run = edge()
        .args(["detect", "-d", ";", "-t", "time", "-c", "pressure", "-o"])
        .arg(&output)
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("detect: 300 rows"), "{stderr}");
    let out = std::fs::read_to_string(&output).unwrap();
    assert_eq!(out.lines().count(), 301);
    assert_eq!(
        out.lines().next(),
        Some("time;pressure;pressure_score;pressure_alert")
    );
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bad_arguments_fail_with_a_reason() {
    let dir = temp_dir("bad");
    let input = dir.join("in.csv");
    std::fs::write(&input, "timestamp,temp\n1700000000,20\n").unwrap();
    let run = edge()
        .args(["detect", "-c", "humidity"])
        .arg(&input)
        .output()
        .unwrap();
    assert!(!run.status.success());
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("no column \"humidity\""), "{stderr}");
    let run = edge()
        .args(["detect", "/nonexistent/file.csv"])
        .output()
        .unwrap();
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("cannot open /nonexistent/file.csv"));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn print_config_prints_the_commented_default_and_run_refuses_bad_config() {
    let run = edge().arg("print-config").output().unwrap();
    assert!(run.status.success());
    let text = String::from_utf8(run.stdout).unwrap();
    assert!(
        text.contains("[store]") && text.contains("disk_budget_bytes"),
        "{text}"
    );
    // A bad value is reported with its key, and the daemon does not start.
    let run = edge()
        .arg("run")
        .env("TRIBUTARY_HTTP__LISTEN", "not-an-address")
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&run.stderr).contains("http.listen"));
}

#[test]
fn a_database_from_a_newer_binary_is_refused_with_status_2() {
    let dir = tempfile::tempdir().unwrap();
    let db = rusqlite::Connection::open(dir.path().join("edge.sqlite3")).unwrap();
    db.pragma_update(None, "user_version", 99).unwrap();
    drop(db);
    let run = edge()
        .args(["run", "--http-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    // 2, not 1: systemd's RestartPreventExitStatus=2 stops a restart loop.
    assert_eq!(run.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("newer than this binary"), "{stderr}");
    // No colour codes when stderr is not a terminal.
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
}
