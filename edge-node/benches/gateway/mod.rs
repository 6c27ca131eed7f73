//! The whole gateway under load, for the ingest benchmark: HTTP ingest
//! through a gateway started in-process, and the resident memory of the
//! real binary with its simulator at 1,000 sensors × 10 Hz.

use std::net::{SocketAddr, TcpListener};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use tributary_edge::config::{Config, Overrides};
use tributary_edge::reading::Sample;

#[path = "../../tests/http_client/mod.rs"]
mod http_client;

/// Readings per second through `POST /api/v1/readings` (JSON, `batch`
/// readings per request, `clients` concurrent clients, each request with
/// its own idempotency key), durability on.
pub fn http_ingest(
    dir: &std::path::Path,
    data: &[Sample],
    batch: usize,
    clients: usize,
) -> Result<f64, Box<dyn std::error::Error>> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let env = [
        ("TRIBUTARY_LOG__FILTER", "warn"),
        ("TRIBUTARY_DETECT__ENABLED", "false"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let config = Config::load(
        None,
        env,
        &Overrides {
            data_dir: Some(dir.join("http")),
            http_listen: Some(addr.to_string()),
            log_format: None,
        },
    )?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let gateway = std::thread::spawn(move || {
        actix::System::new().block_on(async move {
            match tributary_edge::daemon::start(&config, listener).await {
                Ok(running) => {
                    let _ = stopped.await;
                    running.shutdown().await;
                }
                Err(e) => eprintln!("gateway did not start: {e}"),
            }
        });
    });
    http_client::wait_for(Duration::from_secs(20), || {
        http_client::get(addr, "/readyz")
            .ok()
            .filter(|r| r.status == 200)
    })
    .ok_or("gateway not ready")?;

    // Bodies are built before the clock starts, as the baseline's rows are.
    let bodies: Vec<Vec<u8>> = data
        .chunks(batch)
        .enumerate()
        .map(|(seq, chunk)| {
            let readings: Vec<_> = chunk
                .iter()
                .map(|s| json!({"sensor": s.sensor.0, "value": s.value, "ts": s.ts.as_millis()}))
                .collect();
            json!({"source": "bench", "seq": seq, "readings": readings})
                .to_string()
                .into_bytes()
        })
        .collect();
    let t0 = Instant::now();
    std::thread::scope(|scope| -> Result<(), String> {
        let workers: Vec<_> = (0..clients)
            .map(|c| {
                let bodies = &bodies;
                scope.spawn(move || post_all(addr, bodies.iter().skip(c).step_by(clients)))
            })
            .collect();
        for w in workers {
            w.join().map_err(|_| "client panicked".to_string())??;
        }
        Ok(())
    })?;
    let rate = data.len() as f64 / t0.elapsed().as_secs_f64();
    let _ = stop.send(());
    let _ = gateway.join();
    Ok(rate)
}

fn post_all<'a>(addr: SocketAddr, bodies: impl Iterator<Item = &'a Vec<u8>>) -> Result<(), String> {
    for body in bodies {
        loop {
            let r = http_client::request(
                addr,
                "POST",
                "/api/v1/readings",
                Some("application/json"),
                body,
            )
            .map_err(|e| e.to_string())?;
            match r.status {
                200 => break,
                503 => std::thread::sleep(Duration::from_millis(5)),
                s => return Err(format!("HTTP {s}: {}", r.text())),
            }
        }
    }
    Ok(())
}

/// What the memory run saw.
pub struct MemoryRun {
    /// Peak resident set of the gateway process, MiB.
    pub peak_mib: f64,
    /// Peak resident set of the same binary idle (no sources), MiB.
    pub idle_mib: f64,
    /// Readings stored per second over the run (offered: sensors × rate).
    pub ingested_per_s: f64,
}

/// Runs the real binary with its simulator at `sensors` × `rate_hz` for
/// `seconds`, and the same binary idle for comparison.
pub fn memory(
    dir: &std::path::Path,
    sensors: u32,
    rate_hz: f64,
    seconds: u64,
) -> Result<MemoryRun, Box<dyn std::error::Error>> {
    let idle = run_binary(dir, "idle", None, 2)?;
    let loaded = run_binary(dir, "loaded", Some((sensors, rate_hz)), seconds)?;
    Ok(MemoryRun {
        peak_mib: loaded.0,
        idle_mib: idle.0,
        ingested_per_s: loaded.1 as f64 / seconds as f64,
    })
}

/// (peak RSS in MiB, readings ingested) of one run.
fn run_binary(
    dir: &std::path::Path,
    name: &str,
    simulator: Option<(u32, f64)>,
    seconds: u64,
) -> Result<(f64, u64), Box<dyn std::error::Error>> {
    let port = http_client::free_port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    let config = dir.join(format!("{name}.toml"));
    let mut text = format!(
        "[node]\ndata_dir = \"{}\"\n[http]\nlisten = \"{addr}\"\n[log]\nfilter = \"warn\"\n",
        dir.join(name).display()
    );
    if let Some((sensors, rate_hz)) = simulator {
        text.push_str(&format!(
            "[sources.simulator]\nsensors = {sensors}\nrate_hz = {rate_hz}\n"
        ));
    }
    std::fs::write(&config, text)?;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tributary-edge"))
        .arg("run")
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .spawn()?;
    let ready = http_client::wait_for(Duration::from_secs(20), || {
        http_client::get(addr, "/readyz")
            .ok()
            .filter(|r| r.status == 200)
    });
    if ready.is_none() {
        let _ = child.kill();
        return Err("gateway not ready".into());
    }
    std::thread::sleep(Duration::from_secs(seconds));
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))?;
    let peak_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or("no VmHWM in /proc/<pid>/status")?;
    let metrics = http_client::get(addr, "/metrics")?.text();
    let ingested = metrics
        .lines()
        .filter(|l| l.starts_with("tributary_readings_ingested_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    nix_term(child.id());
    let _ = child.wait();
    Ok((peak_kib / 1024.0, ingested))
}

fn nix_term(pid: u32) {
    // SIGTERM: the orderly stop; the run's numbers are already read.
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
}
