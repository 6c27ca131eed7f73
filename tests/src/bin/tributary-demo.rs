//! `tributary-demo`: the README's first command (via `scripts/demo.sh`).
//!
//! Starts, as real processes with their data in one folder:
//! - a `tributary-hub` with its embedded MQTT broker and SQLite store;
//! - three `tributary-edge` gateways, each with simulated sensors (daily
//!   cycle, noise, spikes, stuck periods, drift) and the anomaly detectors;
//! - a fault-injecting TCP proxy in front of the broker for the third
//!   gateway, which cuts its uplink for `--outage-for` every
//!   `--outage-every`, so the dashboard shows it go offline, fall behind and
//!   catch up exactly;
//! - when `qemu-system-arm` and the firmware of the QEMU board are there
//!   (scripts/demo.sh builds it), a device: the real no_std firmware on an
//!   emulated Cortex-M4 (`firmware/boards/mps2-an386`), whose UART QEMU
//!   exposes as a PTY that the first gateway reads as its serial source
//!   (sensors 386001 and 386002).
//!
//! It prints the dashboard URL, then one progress line per gateway every
//! `--report-every`. Ctrl-C (SIGINT) or SIGTERM stops everything cleanly:
//! every process drains and exits; the data stays in `--data-dir`, and the
//! next run continues from it.

use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use tributary_testkit::{FaultProxy, Mode, free_port};

#[derive(Parser)]
#[command(
    version,
    about = "Tributary demo: a hub and three gateways with simulated sensors"
)]
struct Cli {
    /// Where every process keeps its data and logs.
    #[arg(long, default_value = "tributary-demo-data")]
    data_dir: PathBuf,
    /// The hub's HTTP address (dashboard and API); a free port is used if
    /// this one is taken.
    #[arg(long, default_value = "127.0.0.1:8090")]
    hub_http: SocketAddr,
    /// Simulated sensors per gateway.
    #[arg(long, default_value_t = 6)]
    sensors: u32,
    /// Readings per second per sensor.
    #[arg(long, default_value_t = 1.0)]
    rate_hz: f64,
    /// How often the third gateway loses its uplink.
    #[arg(long, default_value = "3m", value_parser = humantime::parse_duration)]
    outage_every: Duration,
    /// How long each outage lasts.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    outage_for: Duration,
    /// How often a progress line is printed.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    report_every: Duration,
    /// The QEMU board's firmware ELF; by default the release build's place
    /// in this build's target directory, then in `firmware/target`.
    #[arg(long)]
    firmware: Option<PathBuf>,
    /// Run without the QEMU device even if it could run.
    #[arg(long)]
    no_device: bool,
}

/// Where a release build of the QEMU board leaves its ELF, below a target
/// directory.
const FIRMWARE_ELF: &str = "thumbv7em-none-eabihf/release/tributary-fw-mps2";

/// The firmware to run, or why there is none (printed, not fatal: the demo
/// runs without the device).
fn firmware(cli: &Cli) -> Result<PathBuf, String> {
    if cli.no_device {
        return Err("--no-device".into());
    }
    let qemu = Command::new("qemu-system-arm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !qemu {
        return Err("qemu-system-arm is not installed".into());
    }
    if let Some(elf) = &cli.firmware {
        return if elf.is_file() {
            Ok(elf.clone())
        } else {
            Err(format!("no firmware at {}", elf.display()))
        };
    }
    // This binary is `<target>/debug/tributary-demo`.
    let target = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent()?.parent().map(Path::to_path_buf));
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../firmware/target");
    target
        .into_iter()
        .chain([repo])
        .map(|d| d.join(FIRMWARE_ELF))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "no firmware build (scripts/demo.sh builds it: \
             cd firmware && cargo build --release -p tributary-fw-mps2)"
                .into()
        })
}

/// Starts QEMU with the firmware: its first UART as a PTY (returned), its
/// second (the device's console) into `logs/device-console.log`.
fn start_device(elf: &Path, logs: &Path, stop: &AtomicBool) -> Result<(Proc, PathBuf)> {
    let log = logs.join("device.log");
    // The log is appended to across runs: only this start's lines count.
    let from = std::fs::metadata(&log).map_or(0, |m| m.len() as usize);
    let mut p = Proc::spawn(
        "device",
        Command::new("qemu-system-arm")
            .args(["-cpu", "cortex-m4", "-machine", "mps2-an386"])
            .args(["-nographic", "-display", "none", "-monitor", "none"])
            .args(["-semihosting-config", "enable=on,target=native"])
            .args(["-serial", "pty", "-serial"])
            .arg(format!(
                "file:{}",
                logs.join("device-console.log").display()
            ))
            .arg("-kernel")
            .arg(elf)
            .stdin(Stdio::null()),
        logs,
    )?;
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        // "char device redirected to /dev/pts/N (label serial0)"
        let text = std::fs::read(&log).unwrap_or_default();
        let text = String::from_utf8_lossy(text.get(from..).unwrap_or_default());
        if let Some(pty) = text
            .lines()
            .find_map(|l| l.split("redirected to ").nth(1)?.split_whitespace().next())
        {
            return Ok((p, PathBuf::from(pty)));
        }
        if !p.alive() {
            bail!("QEMU exited during start-up:\n{}", tail_log(logs, "device"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    p.stop(Duration::from_secs(5));
    bail!("QEMU did not report its PTY")
}

/// A child process that gets SIGTERM (an orderly drain) when the demo stops.
struct Proc {
    name: String,
    child: Child,
}

impl Proc {
    fn spawn(name: &str, cmd: &mut Command, logs: &Path) -> Result<Proc> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(logs.join(format!("{name}.log")))
            .with_context(|| format!("cannot open the log of {name}"))?;
        let child = cmd
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            // Its own process group: the terminal's Ctrl-C reaches only the
            // demo, which then stops the children in order.
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        Ok(Proc {
            name: name.to_owned(),
            child,
        })
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then up to `grace` for the drain, then SIGKILL.
    fn stop(&mut self, grace: Duration) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!(
            "demo: {} did not stop within {grace:?}; killing it",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.alive() {
            self.stop(Duration::from_secs(10));
        }
    }
}

fn sibling(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let path = exe
        .parent()
        .map(|d| d.join(name))
        .context("no directory beside the demo binary")?;
    if !path.exists() {
        bail!(
            "{} is missing: build it first (`cargo build --bins`, as scripts/demo.sh does)",
            path.display()
        );
    }
    Ok(path)
}

fn port_free(addr: SocketAddr) -> bool {
    TcpListener::bind(addr).is_ok()
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    if !(cli.rate_hz > 0.0 && cli.rate_hz <= 100.0) || cli.sensors == 0 || cli.sensors > 1000 {
        bail!("--rate-hz must be in (0, 100] and --sensors in 1..=1000");
    }
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone())?;
    let dir = std::path::absolute(&cli.data_dir)?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("cannot create {}", logs.display()))?;

    let hub_http = if port_free(cli.hub_http) {
        cli.hub_http
    } else {
        let a = SocketAddr::new(cli.hub_http.ip(), free_port());
        eprintln!("demo: {} is taken; the hub uses {a}", cli.hub_http);
        a
    };
    let mqtt: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut hub = Proc::spawn(
        "hub",
        Command::new(sibling("tributary-hub")?)
            .args(["run", "--data-dir"])
            .arg(dir.join("hub"))
            .args(["--http-listen", &hub_http.to_string()])
            .args(["--mqtt-listen", &mqtt.to_string()]),
        &logs,
    )?;
    wait_http(hub_http, "/readyz", &mut hub, &logs, &stop)?;

    // The device first: the first gateway's serial source needs its PTY.
    let mut device = match firmware(&cli) {
        Ok(elf) => match start_device(&elf, &logs, &stop) {
            Ok(d) => Some(d),
            Err(e) => {
                eprintln!("demo: running without the QEMU device: {e:#}");
                None
            }
        },
        Err(why) => {
            eprintln!("demo: running without the QEMU device: {why}");
            None
        }
    };

    // The third gateway reaches the broker through the proxy.
    let proxy = FaultProxy::start(mqtt).context("cannot start the uplink proxy")?;
    let mut edges = Vec::new();
    for i in 0..3u32 {
        let name = format!("edge{}", i + 1);
        let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let port = if i == 2 { proxy.port() } else { mqtt.port() };
        let cfg = dir.join(format!("{name}.toml"));
        let serial = match (&device, i) {
            (Some((_, pty)), 0) => format!(
                "[sources.serial]\npath = \"{}\"\nreopen_min = \"100ms\"\nreopen_max = \"1s\"\n",
                pty.display()
            ),
            _ => String::new(),
        };
        std::fs::write(
            &cfg,
            format!(
                "# Written by tributary-demo.\n[node]\ndata_dir = \"{data}\"\n\
                 [http]\nlisten = \"{http}\"\n\
                 [sources.simulator]\nsensors = {sensors}\nfirst_sensor = {first}\n\
                 rate_hz = {rate:?}\nseed = {seed}\nspike_probability = 0.003\n\
                 [uplink]\nport = {port}\nkeep_alive = \"5s\"\nbackoff_initial = \"500ms\"\n\
                 backoff_max = \"10s\"\nheartbeat = \"10s\"\n{serial}",
                data = dir.join(&name).display(),
                sensors = cli.sensors,
                // Gateways 1 and 2 watch the same sensors (the hub adds
                // them up); gateway 3 has its own.
                first = if i == 2 { 2000 } else { 1000 },
                rate = cli.rate_hz,
                seed = i + 1,
            ),
        )?;
        let mut p = Proc::spawn(
            &name,
            Command::new(sibling("tributary-edge")?)
                .args(["run", "--config"])
                .arg(&cfg),
            &logs,
        )?;
        wait_http(http, "/healthz", &mut p, &logs, &stop)?;
        edges.push((p, http));
    }

    name_the_fleet(hub_http, &edges, device.is_some());
    println!("Tributary demo running; data and logs in {}", dir.display());
    println!("  dashboard   http://{hub_http}/");
    println!("  hub API     http://{hub_http}/api/v1/nodes");
    for (i, (_, http)) in edges.iter().enumerate() {
        println!("  gateway {}   http://{http}/api/v1/status", i + 1);
    }
    if device.is_some() {
        println!(
            "  device      QEMU mps2-an386 running the firmware, on gateway 1's serial port \
             (sensors 386001, 386002)"
        );
    }
    println!(
        "  gateway 3 loses its uplink for {:?} every {:?}. Ctrl-C stops everything.",
        cli.outage_for, cli.outage_every
    );

    let started = Instant::now();
    let mut next_report = started;
    let mut outage_until: Option<Instant> = None;
    let mut next_outage = started + cli.outage_every;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        if now >= next_outage && outage_until.is_none() {
            proxy.set_mode(Mode::Partition);
            outage_until = Some(now + cli.outage_for);
            next_outage = now + cli.outage_every;
            println!("demo: gateway 3 uplink cut for {:?}", cli.outage_for);
        }
        if outage_until.is_some_and(|t| now >= t) {
            proxy.set_mode(Mode::Pass);
            outage_until = None;
            println!("demo: gateway 3 uplink restored; watch it catch up");
        }
        if now >= next_report {
            next_report = now + cli.report_every;
            for (i, (_, http)) in edges.iter().enumerate() {
                println!("  gateway {}: {}", i + 1, progress(*http));
            }
        }
        if device.as_mut().is_some_and(|(p, _)| !p.alive()) {
            // Not fatal: the gateways go on without it.
            eprintln!(
                "demo: the QEMU device exited; see {}",
                logs.join("device.log").display()
            );
            device = None;
        }
        if !hub.alive() || edges.iter_mut().any(|(p, _)| !p.alive()) {
            eprintln!("demo: a process exited; see {}", logs.display());
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    println!("demo: stopping (each process drains and exits)");
    if let Some((p, _)) = device.as_mut() {
        p.stop(Duration::from_secs(5));
    }
    for (p, _) in edges.iter_mut().rev() {
        p.stop(Duration::from_secs(15));
    }
    hub.stop(Duration::from_secs(15));
    println!("demo: stopped; data kept in {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

/// Names the gateways (and the device's sensors) in the fleet
/// configuration at the hub, so the dashboard shows names; the gateways
/// get the document over MQTT. Best effort: a failure is printed, the demo
/// goes on.
fn name_the_fleet(hub: SocketAddr, edges: &[(Proc, SocketAddr)], device: bool) {
    let mut edits = Vec::new();
    for (i, (_, http)) in edges.iter().enumerate() {
        let status = tributary_testkit::http::get(*http, "/api/v1/status");
        let Some(node) = status
            .ok()
            .and_then(|r| serde_json::from_slice::<serde_json::Value>(&r.body).ok())
            .and_then(|s| s["node_id"].as_str().map(str::to_owned))
        else {
            continue;
        };
        let what = match i {
            0 if device => "simulated sensors + QEMU device",
            2 => "simulated sensors, flaky uplink",
            _ => "simulated sensors",
        };
        edits.push((
            format!("/api/v1/config/nodes/{node}"),
            serde_json::json!({"name": format!("gateway {}", i + 1), "location": what}),
        ));
    }
    if device {
        for (id, name, unit) in [(386_001, "temperature", "°C"), (386_002, "humidity", "%RH")] {
            edits.push((
                format!("/api/v1/config/sensors/{id}"),
                serde_json::json!({"name": name, "unit": unit, "location": "QEMU mps2-an386"}),
            ));
        }
    }
    for (path, body) in edits {
        let r = tributary_testkit::http::request(
            hub,
            "PUT",
            &path,
            Some("application/json"),
            body.to_string().as_bytes(),
        );
        if !matches!(&r, Ok(r) if r.status == 200) {
            eprintln!("demo: could not set {path} in the fleet configuration");
        }
    }
}

/// A gateway's one-line progress: readings, versions, what the hub has
/// acknowledged, the uplink state.
fn progress(http: SocketAddr) -> String {
    match tributary_testkit::http::get(http, "/api/v1/status") {
        Ok(r) if r.status == 200 => {
            let s: serde_json::Value = match serde_json::from_slice(&r.body) {
                Ok(v) => v,
                Err(e) => return format!("bad status JSON: {e}"),
            };
            let up = &s["uplink"];
            format!(
                "{} readings stored, version {} acked {} ({} behind), uplink {}{}",
                s["raw_readings"],
                s["version_high"],
                up["acked"],
                s["version_high"]
                    .as_u64()
                    .unwrap_or(0)
                    .saturating_sub(up["acked"].as_u64().unwrap_or(0)),
                up["state"].as_str().unwrap_or("?"),
                match up["offline_ms"].as_u64() {
                    Some(ms) if ms > 0 => format!(" for {} s", ms / 1000),
                    _ => String::new(),
                }
            )
        }
        Ok(r) => format!("status {}", r.status),
        Err(e) => format!("unreachable: {e}"),
    }
}

/// Polls `path` until it answers 200, the process dies, or Ctrl-C.
fn wait_http(
    addr: SocketAddr,
    path: &str,
    p: &mut Proc,
    logs: &Path,
    stop: &AtomicBool,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline && !stop.load(Ordering::Relaxed) {
        if matches!(tributary_testkit::http::get(addr, path), Ok(r) if r.status == 200) {
            return Ok(());
        }
        if !p.alive() {
            let tail = tail_log(logs, &p.name);
            bail!("{} exited during start-up:\n{tail}", p.name);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{} did not answer {path} on {addr}", p.name)
}

/// The last lines of a process's log.
fn tail_log(logs: &Path, name: &str) -> String {
    let text = std::fs::read_to_string(logs.join(format!("{name}.log"))).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Sets `stop` on SIGINT or SIGTERM. A small tokio runtime on its own
/// thread does the signal handling (safe code only; the main loop stays
/// plain threads and sleeps).
fn watch_signals(stop: Arc<AtomicBool>) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("signal runtime")?;
    std::thread::spawn(move || {
        rt.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            stop.store(true, Ordering::Relaxed);
        });
    });
    Ok(())
}
