//! End to end with the real firmware: the QEMU board (`firmware/boards/
//! mps2-an386`, a simulated SHT3x behind the real driver) talks over its
//! UART, exposed by QEMU as a PTY, to the real `tributary-edge` binary's
//! serial source; its readings must appear in the gateway's aggregates.
//!
//! The device prints its counters on a second UART (a file here), one
//! `stats …` line a second. They make the checks exact without timing:
//! with `A` the samples the device saw acknowledged before a query and `W`
//! the samples it had taken after it, the gateway's day totals `D` (both
//! sensors) must satisfy `A ≤ D ≤ W`: below means an acknowledged sample
//! was lost, above means one was counted twice.
//!
//! Needs `qemu-system-arm` and the release ELF that scripts/test.sh builds
//! first (`firmware/target/thumbv7em-none-eabihf/release/tributary-fw-mps2`,
//! under `$CARGO_TARGET_DIR` if set, or `TRIBUTARY_FIRMWARE_ELF`). Without
//! them the tests print a skip line, unless `CI` or `TRIBUTARY_FIRMWARE_ELF`
//! is set: then they fail.

mod http_client;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use http_client::{free_port, get, wait_for};

/// The board's sensor ids (firmware/boards/mps2-an386/src/main.rs).
const TEMPERATURE: u32 = 386_001;
const HUMIDITY: u32 = 386_002;
/// What the simulated sensor produces (firmware/src/sim.rs), with slack
/// for the f32 conversion.
const TEMPERATURE_RANGE: (f64, f64) = (19.99, 25.01);
const HUMIDITY_RANGE: (f64, f64) = (39.99, 60.01);
/// The board samples every 100 ms: about 10 samples a second (11 with a
/// late sample of the previous period, one or two more when a time sync
/// steps the clock back into a closed second). A double count gives 20.
const MAX_PER_SECOND: u64 = 14;
/// The board's in-flight limit (`Config::new`).
const IN_FLIGHT: u64 = 8;

/// The QEMU process; killed on drop.
struct Qemu {
    child: Child,
    pty: PathBuf,
    console: PathBuf,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The gateway process; killed on drop.
struct Gateway {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The firmware ELF, or `None` after a skip line (a panic under CI):
/// `TRIBUTARY_FIRMWARE_ELF`, else where a release build of `firmware/`
/// leaves it (with or without a `CARGO_TARGET_DIR`).
fn firmware() -> Option<PathBuf> {
    const ELF: &str = "thumbv7em-none-eabihf/release/tributary-fw-mps2";
    let elf = match std::env::var_os("TRIBUTARY_FIRMWARE_ELF") {
        Some(path) => PathBuf::from(path),
        None => {
            let own = Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/target");
            let shared = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from);
            shared
                .into_iter()
                .chain([own])
                .map(|dir| dir.join(ELF))
                .find(|p| p.is_file())
                .unwrap_or_else(|| PathBuf::from("firmware/target").join(ELF))
        }
    };
    let qemu = Command::new("qemu-system-arm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let missing = if !qemu {
        Some("qemu-system-arm is not installed".to_string())
    } else if !elf.is_file() {
        Some(format!(
            "no firmware ELF at {} (scripts/test.sh builds it)",
            elf.display()
        ))
    } else {
        None
    };
    match missing {
        None => Some(elf),
        // An ELF asked for by name (scripts/test.sh) must run too.
        Some(why)
            if std::env::var_os("CI").is_some()
                || std::env::var_os("TRIBUTARY_FIRMWARE_ELF").is_some() =>
        {
            panic!("{why}")
        }
        Some(why) => {
            eprintln!("skipping the QEMU firmware test: {why}");
            None
        }
    }
}

fn start_qemu(elf: &Path, dir: &Path) -> Qemu {
    let console = dir.join("console.log");
    let mut child = Command::new("qemu-system-arm")
        .args(["-cpu", "cortex-m4", "-machine", "mps2-an386"])
        .args(["-nographic", "-display", "none", "-monitor", "none"])
        .args(["-semihosting-config", "enable=on,target=native"])
        .args(["-serial", "pty", "-serial"])
        .arg(format!("file:{}", console.display()))
        .arg("-kernel")
        .arg(elf)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start qemu-system-arm");
    // QEMU says "char device redirected to /dev/pts/N (label serial0)" on
    // stdout or stderr depending on the version: watch both, and keep
    // draining them so QEMU never blocks on a full pipe.
    let (tx, rx) = mpsc::channel::<String>();
    let out: Vec<Box<dyn std::io::Read + Send>> = vec![
        Box::new(child.stdout.take().expect("qemu stdout")),
        Box::new(child.stderr.take().expect("qemu stderr")),
    ];
    for stream in out {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                eprintln!("qemu: {line}");
                let _ = tx.send(line);
            }
        });
    }
    let pty = wait_for(Duration::from_secs(30), || {
        let line = rx.recv_timeout(Duration::from_millis(100)).ok()?;
        let rest = line.split("redirected to ").nth(1)?;
        Some(PathBuf::from(rest.split_whitespace().next()?))
    })
    .expect("QEMU did not report its PTY");
    Qemu {
        child,
        pty,
        console,
    }
}

fn start_gateway(dir: &Path, pty: &Path) -> Gateway {
    let config = dir.join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "[sources.serial]\npath = \"{}\"\nreopen_min = \"100ms\"\nreopen_max = \"1s\"\n",
            pty.display()
        ),
    )
    .expect("write the gateway config");
    let port = free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_tributary-edge"))
        .args(["run", "--config"])
        .arg(&config)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--http-listen", &addr.to_string()])
        .env("TRIBUTARY_LOG__FILTER", "warn")
        .env("TRIBUTARY_DETECT__ENABLED", "false")
        // The gateway reads every TRIBUTARY_* variable as configuration.
        .env_remove("TRIBUTARY_FIRMWARE_ELF")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tributary-edge");
    let ready = wait_for(Duration::from_secs(30), || {
        get(addr, "/readyz").ok().filter(|r| r.status == 200)
    });
    assert!(ready.is_some(), "gateway did not become ready on {addr}");
    Gateway { child, addr }
}

/// The device's counters, from its latest console line, and how many
/// lines there were.
fn stats(qemu: &Qemu) -> Option<(usize, HashMap<String, u64>)> {
    let text = std::fs::read_to_string(&qemu.console).ok()?;
    // Only whole lines: QEMU may be writing the last one.
    let whole = &text[..text.rfind('\n')?];
    let lines: Vec<&str> = whole.lines().filter(|l| l.starts_with("stats ")).collect();
    let last = lines.last()?;
    let map = last
        .split_whitespace()
        .skip(1)
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect();
    Some((lines.len(), map))
}

/// Waits (with a deadline) for a console line satisfying `ok`.
fn wait_stats(
    qemu: &Qemu,
    what: &str,
    secs: u64,
    ok: impl Fn(&HashMap<String, u64>) -> bool,
) -> HashMap<String, u64> {
    wait_for(Duration::from_secs(secs), || {
        stats(qemu).map(|(_, s)| s).filter(|s| ok(s))
    })
    .unwrap_or_else(|| panic!("device never reported {what}; last: {:?}", stats(qemu)))
}

fn stat(s: &HashMap<String, u64>, key: &str) -> u64 {
    *s.get(key).unwrap_or_else(|| panic!("no {key} in {s:?}"))
}

/// Buckets of one sensor at `resolution`: (count, min, max) each.
fn buckets(addr: SocketAddr, sensor: u32, resolution: &str) -> Vec<(u64, f64, f64)> {
    let r = get(
        addr,
        &format!("/api/v1/aggregates?sensor={sensor}&resolution={resolution}&limit=10000"),
    )
    .expect("GET aggregates");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["count"].as_u64().unwrap(),
                i["min"].as_f64().unwrap_or(f64::NAN),
                i["max"].as_f64().unwrap_or(f64::NAN),
            )
        })
        .collect()
}

fn day_count(addr: SocketAddr) -> u64 {
    [TEMPERATURE, HUMIDITY]
        .iter()
        .flat_map(|&s| buckets(addr, s, "1d"))
        .map(|b| b.0)
        .sum()
}

/// `A ≤ D ≤ W` (see the module docs), then returns `D`.
fn check_exactly_once(qemu: &Qemu, gw: &Gateway) -> u64 {
    let (lines_before, before) = stats(qemu).expect("device stats");
    let acked = stat(&before, "acked_samples");
    let stored = day_count(gw.addr);
    let after = wait_for(Duration::from_secs(30), || {
        stats(qemu)
            .filter(|(n, _)| *n > lines_before)
            .map(|(_, s)| s)
    })
    .expect("a newer stats line");
    let taken = stat(&after, "samples");
    eprintln!("device acknowledged {acked} ≤ gateway {stored} ≤ device took {taken}");
    assert!(
        acked <= stored,
        "acknowledged samples lost: device saw {acked} acknowledged, gateway has {stored}"
    );
    assert!(
        stored <= taken,
        "samples counted twice: gateway has {stored}, device took only {taken}"
    );
    stored
}

fn check_values(addr: SocketAddr) {
    for (sensor, (lo, hi)) in [(TEMPERATURE, TEMPERATURE_RANGE), (HUMIDITY, HUMIDITY_RANGE)] {
        for (count, min, max) in buckets(addr, sensor, "1m") {
            assert!(count > 0);
            assert!(lo <= min && max <= hi, "sensor {sensor}: {min}..{max}");
        }
    }
}

#[test]
fn device_readings_reach_the_gateway_aggregates() {
    let Some(elf) = firmware() else { return };
    let dir = tempfile::tempdir().unwrap();
    let qemu = start_qemu(&elf, dir.path());
    let gw = start_gateway(dir.path(), &qemu.pty);

    // A few seconds of one-second windows arrive.
    let seconds = wait_for(Duration::from_secs(60), || {
        let b = buckets(gw.addr, TEMPERATURE, "1s");
        (b.len() >= 3).then_some(b)
    })
    .expect("the device's windows never reached the aggregates");
    for (count, min, max) in &seconds {
        assert!(
            (1..=MAX_PER_SECOND).contains(count),
            "{count} samples in one second"
        );
        assert!(TEMPERATURE_RANGE.0 <= *min && *max <= TEMPERATURE_RANGE.1);
    }
    // Both sensors, every resolution up to the day.
    let minutes = buckets(gw.addr, HUMIDITY, "1m");
    assert!(!minutes.is_empty(), "humidity reaches the minute buckets");
    check_values(gw.addr);
    let s = wait_stats(&qemu, "acknowledged samples", 30, |s| {
        stat(s, "acked_samples") > 0
    });
    assert_eq!(stat(&s, "dropped_samples"), 0);
    assert_eq!(stat(&s, "sensor_errors"), 0);
    let stored = check_exactly_once(&qemu, &gw);
    assert!(stored > 0);
}

#[test]
fn windows_buffered_while_the_gateway_is_down_arrive_once() {
    let Some(elf) = firmware() else { return };
    let dir = tempfile::tempdir().unwrap();
    let qemu = start_qemu(&elf, dir.path());
    let mut gw = start_gateway(dir.path(), &qemu.pty);
    wait_stats(&qemu, "acknowledged samples", 60, |s| {
        stat(s, "acked_samples") > 0
    });
    check_exactly_once(&qemu, &gw);

    // The gateway dies (SIGKILL: std's kill) while the device samples on.
    gw.child.kill().expect("SIGKILL the gateway");
    let _ = gw.child.wait();
    let at_kill = wait_stats(&qemu, "a sample after the kill", 30, |_| true);
    // Long enough that the device's ring (32 windows) fills and merges.
    let down = wait_stats(&qemu, "merged windows during the outage", 120, |s| {
        stat(s, "merges") > 0 && stat(s, "in_flight") == IN_FLIGHT
    });
    eprintln!("device during the outage: {down:?}");
    assert!(stat(&down, "samples") > stat(&at_kill, "samples"));
    assert!(stat(&down, "buffered") > IN_FLIGHT);
    drop(gw);

    // Back on the same data directory and PTY.
    let gw = start_gateway(dir.path(), &qemu.pty);
    let taken_before_restart = stat(&down, "samples");
    // Everything sampled before the restart gets acknowledged.
    let up = wait_stats(&qemu, "the outage's samples acknowledged", 120, |s| {
        stat(s, "acked_samples") >= taken_before_restart
    });
    eprintln!("device after the restart: {up:?}");
    assert_eq!(stat(&up, "dropped_samples"), 0, "{up:?}");
    // The board links with 16 KiB of RAM (statics + stack); its stack
    // high-water mark after an outage, merges and resends stays clear of
    // the statics (3.5 KiB).
    assert!(stat(&up, "stack") <= 12 * 1024, "{up:?}");
    assert!(stat(&up, "resent") > 0, "the in-flight windows were resent");
    let stored = check_exactly_once(&qemu, &gw);
    assert!(stored >= taken_before_restart);
    check_values(gw.addr);
    // Merged windows are coarser: they only count from the minute up, so
    // the seconds hold fewer samples than the day.
    let per_second: u64 = [TEMPERATURE, HUMIDITY]
        .iter()
        .flat_map(|&s| buckets(gw.addr, s, "1s"))
        .map(|b| b.0)
        .sum();
    assert!(
        per_second < stored,
        "{per_second} in seconds, {stored} in days"
    );
}
