//! `tributary-bench`: system benchmarks with real processes, each figure
//! printed as one JSON line `{"name","unit","value","baseline",
//! "baseline_value","ratio", …}` with its baseline measured in the same run
//! on the same data (issues #6, #9).
//!
//! ```text
//! cargo build --release --bins -p tributary-hub -p tributary-edge -p tributary-tests
//! target/release/tributary-bench all             # everything, writes docs/benchmarks.md
//! target/release/tributary-bench all --quick     # small sizes, no docs (a smoke test)
//! target/release/tributary-bench sync            # 1 h backlog, 20 s of live latency
//! target/release/tributary-bench sync --hours 24 # the issue's 24 h backlog
//! ```
//!
//! `all` runs, on this machine, in one go: the component benchmarks as
//! `cargo bench` subprocesses (edge ingest vs raw SQLite and the edge's
//! memory, sync bytes vs naive JSON and CBOR, hub merge vs a plain insert,
//! the detectors, the fleet document), `sync` below, the NAB score, and the
//! firmware's flash and RAM; then prints a table of every figure and (full
//! mode) replaces the generated section at the top of docs/benchmarks.md.
//! A part that fails is reported and the others still run; the exit status
//! says whether all succeeded.
//!
//! `sync` measures, with a real hub (embedded broker) and real gateways:
//!
//! - **Catch-up**: a gateway ingests `--hours` of `--sensors` × 1 Hz
//!   readings (backdated, over HTTP) with no hub, then the hub starts; the
//!   time from the hub being ready to the hub's watermark reaching the
//!   gateway's last version, with the uplink's default resolutions (1 min
//!   and coarser) and with 1 s buckets too. Baseline: a naive gateway
//!   publishing every reading as its own JSON message (QoS 1) through the
//!   same broker, timed until a subscriber has them all.
//! - **Live latency** at `--rate` readings/s: batches of 100 readings of a
//!   fresh sensor POSTed to the gateway every 100 ms; the time from the
//!   POST until the hub's API shows all 100, p50 and p99. Baseline: the
//!   same 100 readings as one JSON MQTT message, publish to a subscriber's
//!   receipt, through the same broker.
//!
//! - **Publish path**: while the second gateway catches up, a subscriber
//!   on its `delta` topic counts the messages and bytes that reach the
//!   broker, first to last. Baseline: raw rumqttc publishing as many
//!   messages of the same mean size in a tight loop (QoS 1), to a
//!   subscriber on the same broker.
//!
//! Numbers, not tests: nothing asserts on speed; the run fails only if the
//! hub does not end with every reading.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use tributary_core::codec::v1::{self, Message};
use tributary_testkit::http::{get, request};
use tributary_testkit::{FaultProxy, Mode, free_port};
use tributary_tests::bench;
use tributary_tests::system::{Edge, Hub, HubBroker};

#[derive(Parser)]
#[command(about = "Tributary system benchmarks (one JSON line per figure)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Catch-up after an offline period, and live end-to-end latency.
    Sync {
        /// Hours of backlog.
        #[arg(long, default_value_t = 1)]
        hours: u64,
        /// Sensors of the backlog (1 Hz each).
        #[arg(long, default_value_t = 100)]
        sensors: u32,
        /// Seconds of the live latency run.
        #[arg(long, default_value_t = 20)]
        latency_seconds: u64,
        /// Readings per second in the live run (batches of 100 every
        /// 100 ms at the default 1000).
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// Where the processes keep their data (a temp dir if absent).
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
    /// Every benchmark, a table, and the generated part of docs/benchmarks.md.
    All {
        /// Small sizes on the debug build (a smoke test, about a minute
        /// after the build; numbers are not meaningful and no docs are
        /// written unless --write-docs).
        #[arg(long)]
        quick: bool,
        /// Where the generated section goes (default: docs/benchmarks.md in
        /// full mode, nowhere with --quick).
        #[arg(long)]
        write_docs: Option<PathBuf>,
        /// Only these parts (comma-separated): ingest, sync_bytes, merge,
        /// detect, fleet, sync, hub_rss, nab, firmware.
        #[arg(long, value_delimiter = ',')]
        only: Vec<String>,
    },
}

/// Every figure emitted in this run, for the table and the docs.
static FIGURES: std::sync::Mutex<Vec<Value>> = std::sync::Mutex::new(Vec::new());

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn emit(v: Value) {
    println!("{v}");
    if let Ok(mut f) = FIGURES.lock() {
        f.push(v);
    }
}

fn ratio(value: f64, baseline: f64) -> f64 {
    if baseline > 0.0 {
        (value / baseline * 1e4).round() / 1e4
    } else {
        f64::NAN
    }
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Cmd::Sync {
            hours,
            sensors,
            latency_seconds,
            rate,
            dir,
        } => {
            let tmp = tempfile::tempdir()?;
            let dir = dir.unwrap_or_else(|| tmp.path().to_path_buf());
            sync(&dir, hours, sensors, latency_seconds, rate)
        }
        Cmd::All {
            quick,
            write_docs,
            only,
        } => all(quick, write_docs, &only),
    }
}

/// `all`; see the module docs.
fn all(quick: bool, write_docs: Option<PathBuf>, only: &[String]) -> Result<()> {
    let wanted = |part: &str| only.is_empty() || only.iter().any(|o| o == part);
    let profile = if quick { "dev" } else { "release" };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let started = Instant::now();
    let mut failed = Vec::new();
    let mut part = |name: &str, f: &mut dyn FnMut() -> Result<Vec<Value>>| {
        if !wanted(name) {
            return;
        }
        eprintln!(
            "bench: == {name} ({:.0} s so far)",
            started.elapsed().as_secs_f64()
        );
        match f() {
            Ok(figures) => figures.into_iter().for_each(emit),
            Err(e) => {
                eprintln!("bench: {name} FAILED: {e:#}");
                failed.push(name.to_owned());
            }
        }
    };
    let q = |quick_value: &str, full: &str| if quick { quick_value } else { full }.to_owned();
    part("ingest", &mut || {
        bench::cargo_bench(
            "tributary-edge",
            "ingest",
            profile,
            &[
                ("BENCH_READINGS", q("20000", "200000")),
                ("BENCH_RSS_SECONDS", q("3", "20")),
            ],
        )
    });
    part("sync_bytes", &mut || {
        bench::cargo_bench(
            "tributary-edge",
            "sync_bytes",
            profile,
            &[("BENCH_HOURS", q("1", "24"))],
        )
    });
    // The merge and detector benches have fixed sizes (criterion for the
    // detectors): minutes on a debug build, so --quick leaves them out.
    part("merge", &mut || {
        if quick {
            eprintln!("bench: merge skipped in --quick");
            return Ok(Vec::new());
        }
        bench::cargo_bench("tributary-hub", "merge", profile, &[])
    });
    part("detect", &mut || {
        if quick {
            eprintln!("bench: detect skipped in --quick");
            return Ok(Vec::new());
        }
        bench::cargo_bench("tributary-core", "detect", profile, &[])
    });
    part("fleet", &mut || {
        bench::cargo_bench(
            "tributary-fleet",
            "fleet",
            profile,
            &[("BENCH_NODES", q("50", "1000"))],
        )
    });
    part("sync", &mut || {
        let tmp = tempfile::tempdir()?;
        let (hours, sensors, seconds) = if quick { (1, 5, 3) } else { (24, 100, 20) };
        // `sync` emits its figures itself.
        sync(tmp.path(), hours, sensors, seconds, 1000).map(|()| Vec::new())
    });
    part("hub_rss", &mut || {
        let (nodes, rounds) = if quick { (10, 5) } else { (100, 60) };
        hub_rss(nodes, 10, rounds)
    });
    part("nab", &mut || {
        if quick {
            eprintln!("bench: nab skipped in --quick (58 series, about a minute in release)");
            return Ok(Vec::new());
        }
        nab_score(&workspace)
    });
    part("firmware", &mut || {
        let mut dirs: Vec<PathBuf> = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .into_iter()
            .collect();
        // This binary is `<target>/<profile>/tributary-bench`.
        if let Some(t) = std::env::current_exe()?.parent().and_then(Path::parent) {
            dirs.push(t.to_path_buf());
        }
        dirs.push(workspace.join("firmware/target"));
        Ok(bench::firmware_sizes(&dirs))
    });

    let figures = FIGURES.lock().map(|f| f.clone()).unwrap_or_default();
    let table = bench::table(&figures);
    println!("\n{table}");
    eprintln!(
        "bench: {} figures in {:.0} s{}",
        figures.len(),
        started.elapsed().as_secs_f64(),
        if failed.is_empty() {
            String::new()
        } else {
            format!("; FAILED: {}", failed.join(", "))
        }
    );
    let docs = write_docs.or_else(|| (!quick).then(|| workspace.join("docs/benchmarks.md")));
    if let Some(path) = docs {
        let doc = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let section = format!(
            "## Summary: `tributary-bench all`\n\n\
             Generated by `cargo run -p tributary-tests --release --bin tributary-bench -- all`{}; \
             do not edit by hand. Measured {} on {}. Every baseline ran in the same run on the \
             same data; the sections below explain each figure.\n\n{table}",
            if quick {
                " --quick (small sizes, debug build: not comparable)"
            } else {
                ""
            },
            jiff_now(),
            bench::machine(),
        );
        std::fs::write(&path, bench::splice_docs(&doc, &section))
            .with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("bench: wrote {}", path.display());
    }
    if !failed.is_empty() {
        bail!("{} part(s) failed: {}", failed.len(), failed.join(", "));
    }
    Ok(())
}

/// Peak resident memory (`VmHWM`, KiB) of process `pid`.
fn vm_hwm_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmHWM in /proc/PID/status")
}

/// A real hub (embedded broker, SQLite) fed by `nodes` simulated gateways
/// over MQTT: each has `sensors` sensors at 1 Hz and sends, per round, a
/// `Hello` the first time and then the delta of one second of readings at
/// every resolution. Peak RSS after `rounds` rounds, against the same hub
/// idle. Checks that the hub heard from every node.
fn hub_rss(nodes: u64, sensors: u32, rounds: u64) -> Result<Vec<Value>> {
    use tributary_core::codec::v1::{Delta, Hello};
    use tributary_core::crdt::aggregate::AggregateState;
    use tributary_core::ids::{NodeId, SensorId, Timestamp};
    let tmp = tempfile::tempdir()?;
    let port = free_port();
    let hub = Hub::start(
        &tmp.path().join("hub"),
        &tmp.path().join("logs"),
        HubBroker::Embedded(port),
    );
    let idle = vm_hwm_kib(hub.guard.pid())?;
    let mut opts = MqttOptions::new("bench-fleet", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut conn) = Client::new(opts, 4096);
    std::thread::spawn(move || for _ in conn.iter() {});
    let ids: Vec<NodeId> = (1..=nodes)
        .map(|i| NodeId(0xb000_0000_0000_0000 | i))
        .collect();
    let mut states: Vec<AggregateState> = ids.iter().map(|_| AggregateState::new()).collect();
    let mut shipped = vec![0u64; ids.len()];
    let t0 = now_ms() - rounds * 1000;
    for node in &ids {
        let hello = Message::Hello(Hello {
            node: *node,
            version_high: 0,
            digest: None,
        });
        client.publish(
            format!("tributary/v1/{node}/hello"),
            QoS::AtLeastOnce,
            false,
            v1::encode(&hello),
        )?;
    }
    eprintln!("bench: hub_rss: {nodes} nodes × {sensors} sensors, {rounds} rounds");
    for round in 0..rounds {
        let started = Instant::now();
        for (i, node) in ids.iter().enumerate() {
            let state = &mut states[i];
            for s in 0..sensors {
                let x = 20.0 + f64::from(s) + (round % 60) as f64 * 0.01;
                state
                    .record_all_resolutions(
                        *node,
                        SensorId(100_000 + s),
                        Timestamp(t0 + round * 1000),
                        x,
                    )
                    .map_err(|e| anyhow::anyhow!("record: {e:?}"))?;
            }
            let to = state.version_of(*node);
            let delta = Delta::from_entries(
                *node,
                shipped[i],
                to,
                state.node_entries_since(*node, shipped[i]),
            );
            shipped[i] = to;
            client.publish(
                format!("tributary/v1/{node}/delta"),
                QoS::AtLeastOnce,
                false,
                v1::encode(&Message::Delta(delta)),
            )?;
        }
        // One round a second, as live gateways at 1 Hz would.
        std::thread::sleep(Duration::from_secs(1).saturating_sub(started.elapsed()));
    }
    // Every node reached the hub.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let heard = hub
            .nodes()
            .values()
            .filter(|n| n["watermark"].as_u64() > Some(0))
            .count();
        if heard as u64 >= nodes {
            break;
        }
        if Instant::now() > deadline {
            bail!("the hub merged data of {heard} of {nodes} nodes");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let peak = vm_hwm_kib(hub.guard.pid())?;
    Ok(vec![
        json!({"name": format!("hub_rss_{nodes}_nodes"), "unit": "MiB",
        "value": (peak as f64 / 1024.0 * 10.0).round() / 10.0,
        "baseline": "hub_idle", "baseline_value": (idle as f64 / 1024.0 * 10.0).round() / 10.0,
        "ratio": ratio(peak as f64, idle as f64), "sensors_per_node": sensors, "rounds": rounds}),
    ])
}

/// Today's date (UTC), for the docs.
fn jiff_now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%d").to_string()
}

/// The NAB standard score of the ensemble, from the `tributary-nab`
/// binary beside this one.
fn nab_score(workspace: &Path) -> Result<Vec<Value>> {
    let exe = std::env::current_exe()?;
    let nab = exe
        .parent()
        .map(|d| d.join("tributary-nab"))
        .context("no directory beside the bench binary")?;
    let out = std::process::Command::new(&nab)
        .args(["all", "--detector", "tributary_ensemble"])
        .current_dir(workspace)
        .stderr(std::process::Stdio::inherit())
        .output()
        .with_context(|| format!("cannot run {}", nab.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    for l in stdout.lines() {
        eprintln!("  {l}");
    }
    if !out.status.success() {
        bail!("tributary-nab: {}", out.status);
    }
    Ok(bench::figures_in(&stdout))
}

/// POSTs `hours` × `sensors` × 1 Hz backdated readings, 1000 per request,
/// each request idempotent (source + seq). Returns the readings stored.
fn backfill(edge: SocketAddr, hours: u64, sensors: u32) -> Result<u64> {
    let start = now_ms() - hours * 3_600_000;
    let seconds = hours * 3_600;
    let per_req = (1000 / u64::from(sensors)).max(1);
    let mut seq = 0u64;
    let mut stored = 0u64;
    let mut t = 0u64;
    let t0 = Instant::now();
    let mut next_progress = Instant::now() + Duration::from_secs(5);
    while t < seconds {
        let mut readings = Vec::new();
        for s in t..(t + per_req).min(seconds) {
            for sensor in 0..sensors {
                let phase = f64::from(sensor) * 0.1;
                let v = 20.0 + 5.0 * ((s as f64) / 86_400.0 * std::f64::consts::TAU + phase).sin();
                readings.push(json!({
                    "sensor": 1000 + sensor,
                    "ts": start + s * 1000,
                    "value": (v * 100.0).round() / 100.0,
                }));
            }
        }
        t += per_req;
        seq += 1;
        let body = json!({"source": "bench", "seq": seq, "readings": readings}).to_string();
        loop {
            let r = request(
                edge,
                "POST",
                "/api/v1/readings",
                Some("application/json"),
                body.as_bytes(),
            )?;
            match r.status {
                200 | 202 => {
                    stored += r.json()["accepted"].as_u64().unwrap_or(0);
                    break;
                }
                503 => std::thread::sleep(Duration::from_millis(20)),
                s => bail!("POST readings: {s} {}", r.text()),
            }
        }
        if Instant::now() >= next_progress {
            eprintln!(
                "bench: backfill {:.0}% ({stored} readings, {:.0}/s)",
                t as f64 / seconds as f64 * 100.0,
                stored as f64 / t0.elapsed().as_secs_f64()
            );
            next_progress += Duration::from_secs(5);
        }
    }
    Ok(stored)
}

/// Waits until the hub's watermark for `edge` reaches its version_high.
fn wait_caught_up(hub: &Hub, edge: &Edge, within: Duration) -> Result<f64> {
    let high = edge.status()["version_high"]
        .as_u64()
        .context("version_high")?;
    let t0 = Instant::now();
    while t0.elapsed() < within {
        if hub
            .nodes()
            .get(&edge.node)
            .is_some_and(|n| n["watermark"].as_u64() >= Some(high))
        {
            return Ok(t0.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("{} not caught up within {within:?}", edge.name)
}

/// The naive gateway: every reading its own JSON message, QoS 1, through
/// the broker at `port`; seconds until a subscriber received them all.
fn naive_publish(port: u16, hours: u64, sensors: u32) -> Result<(f64, u64)> {
    let n = hours * 3_600 * u64::from(sensors);
    let topic = "bench/naive";
    let mut sub_opts = MqttOptions::new("bench-naive-sub", "127.0.0.1", port);
    sub_opts.set_keep_alive(Duration::from_secs(30));
    let (sub, mut sub_conn) = Client::new(sub_opts, 64);
    sub.subscribe(topic, QoS::AtLeastOnce)?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut got = 0u64;
        for ev in sub_conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(_))) => {
                    got += 1;
                    if got == n {
                        let _ = done_tx.send(Instant::now());
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .context("naive subscriber did not subscribe")?;
    let mut pub_opts = MqttOptions::new("bench-naive-pub", "127.0.0.1", port);
    pub_opts.set_keep_alive(Duration::from_secs(30));
    let (publisher, mut pub_conn) = Client::new(pub_opts, 1024);
    std::thread::spawn(move || for _ in pub_conn.iter() {});
    let start = now_ms() - hours * 3_600_000;
    let mut bytes = 0u64;
    let t0 = Instant::now();
    for i in 0..n {
        let sensor = 1000 + (i % u64::from(sensors));
        let s = i / u64::from(sensors);
        let body = format!(
            "{{\"node\":\"0123456789abcdef\",\"sensor\":{sensor},\"ts\":{},\"value\":{:.2}}}",
            start + s * 1000,
            20.0 + (i % 500) as f64 / 100.0
        );
        bytes += body.len() as u64;
        publisher.publish(topic, QoS::AtLeastOnce, false, body)?;
    }
    let done = done_rx
        .recv_timeout(Duration::from_secs(3_600))
        .context("naive subscriber never got every message")?;
    Ok(((done - t0).as_secs_f64(), bytes))
}

/// Subscribes to `topic` on the broker at `port`; every message arriving
/// is sent on as (payload bytes, arrival time).
fn sniff(port: u16, topic: &str) -> Result<mpsc::Receiver<(usize, Instant)>> {
    let mut opts = MqttOptions::new(format!("bench-sniff-{}", now_ms()), "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(1 << 20, 1 << 20);
    let (client, mut conn) = Client::new(opts, 64);
    client.subscribe(topic, QoS::AtMostOnce)?;
    let (ready_tx, ready_rx) = mpsc::channel();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        // Keeps the client alive as long as the connection runs.
        let _client = client;
        for ev in conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = ready_tx.send(());
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    if tx.send((p.payload.len(), Instant::now())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(10))
        .context("the sniffer did not subscribe")?;
    Ok(rx)
}

/// Raw rumqttc: `n` messages of `size` bytes published QoS 1 in a tight
/// loop through the broker at `port`; messages/s at a subscriber, first to
/// last arrival.
fn raw_publish_rate(port: u16, n: usize, size: usize) -> Result<f64> {
    let topic = "bench/raw-publish";
    let seen = sniff(port, topic)?;
    let mut opts = MqttOptions::new("bench-raw-pub", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(1 << 20, 1 << 20);
    let (publisher, mut conn) = Client::new(opts, 1024);
    std::thread::spawn(move || for _ in conn.iter() {});
    let payload = vec![0x5a_u8; size];
    for _ in 0..n {
        publisher.publish(topic, QoS::AtLeastOnce, false, payload.clone())?;
    }
    let mut times = Vec::with_capacity(n);
    while times.len() < n {
        let (_, t) = seen
            .recv_timeout(Duration::from_secs(60))
            .context("the raw publisher's messages stopped arriving")?;
        times.push(t);
    }
    let span = (times[n - 1] - times[0]).as_secs_f64().max(1e-9);
    Ok((n.saturating_sub(1)) as f64 / span)
}

/// Publish-to-receipt latency of one 100-reading JSON message through the
/// broker, `samples` times every 100 ms; sorted milliseconds.
fn raw_latency(port: u16, samples: usize) -> Result<Vec<f64>> {
    let topic = "bench/latency";
    let mut sub_opts = MqttOptions::new("bench-lat-sub", "127.0.0.1", port);
    sub_opts.set_keep_alive(Duration::from_secs(30));
    let (sub, mut sub_conn) = Client::new(sub_opts, 64);
    sub.subscribe(topic, QoS::AtLeastOnce)?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for ev in sub_conn.iter() {
            match ev {
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    let _ = tx.send(None);
                }
                Ok(Event::Incoming(Packet::Publish(_)))
                    if tx.send(Some(Instant::now())).is_err() =>
                {
                    return;
                }
                _ => {}
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))?;
    let mut pub_opts = MqttOptions::new("bench-lat-pub", "127.0.0.1", port);
    pub_opts.set_keep_alive(Duration::from_secs(30));
    let (publisher, mut pub_conn) = Client::new(pub_opts, 64);
    std::thread::spawn(move || for _ in pub_conn.iter() {});
    let body: String = {
        let r: Vec<Value> = (0..100)
            .map(|i| json!({"sensor": 7, "ts": now_ms(), "value": 20.0 + f64::from(i) / 100.0}))
            .collect();
        json!({"readings": r}).to_string()
    };
    let mut out = Vec::new();
    for _ in 0..samples {
        let t0 = Instant::now();
        publisher.publish(topic, QoS::AtLeastOnce, false, body.clone())?;
        let Some(t1) = rx.recv_timeout(Duration::from_secs(10))? else {
            continue;
        };
        out.push((t1 - t0).as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(100).saturating_sub(t0.elapsed()));
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    (sorted[i] * 100.0).round() / 100.0
}

/// The live run: batches of 100 readings of a fresh sensor every
/// `100 ms × 1000 / rate`; per batch, POST to visible at the hub, in ms.
fn live_latency(hub: &Hub, edge: &Edge, seconds: u64, rate: u64) -> Result<Vec<f64>> {
    let period = Duration::from_secs_f64(100.0 / rate.max(1) as f64);
    let batches = (Duration::from_secs(seconds).as_secs_f64() / period.as_secs_f64()) as u32;
    let (tx, rx) = mpsc::channel::<(u32, Instant)>();
    let edge_http = edge.http;
    let poster = std::thread::spawn(move || -> Result<()> {
        for b in 0..batches {
            let t0 = Instant::now();
            let ts = now_ms();
            let readings: Vec<Value> = (0..100)
                .map(|i| json!({"sensor": 50_000 + b, "ts": ts, "value": f64::from(i)}))
                .collect();
            let body = json!({"source": "latency", "seq": b + 1, "readings": readings}).to_string();
            let r = request(
                edge_http,
                "POST",
                "/api/v1/readings",
                Some("application/json"),
                body.as_bytes(),
            )?;
            if r.status != 200 && r.status != 202 {
                bail!("POST: {} {}", r.status, r.text());
            }
            tx.send((50_000 + b, t0))?;
            std::thread::sleep(period.saturating_sub(t0.elapsed()));
        }
        Ok(())
    });
    let mut pending: Vec<(u32, Instant)> = Vec::new();
    let mut lat = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(seconds + 60);
    let mut posting = true;
    while (posting || !pending.is_empty()) && Instant::now() < deadline {
        loop {
            match rx.try_recv() {
                Ok(p) => pending.push(p),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    posting = false;
                    break;
                }
            }
        }
        let mut still = Vec::new();
        for (sensor, t0) in pending.drain(..) {
            let path = format!("/api/v1/aggregates?sensor={sensor}&resolution=1m&limit=10");
            let seen = get(hub.http, &path)
                .ok()
                .filter(|r| r.status == 200)
                .map(|r| {
                    r.json()["items"].as_array().map_or(0, |i| {
                        i.iter()
                            .map(|b| b["count"].as_u64().unwrap_or(0))
                            .sum::<u64>()
                    })
                })
                .unwrap_or(0);
            if seen >= 100 {
                lat.push(t0.elapsed().as_secs_f64() * 1000.0);
            } else {
                still.push((sensor, t0));
            }
        }
        pending = still;
        std::thread::sleep(Duration::from_millis(5));
    }
    poster
        .join()
        .map_err(|_| anyhow::anyhow!("poster panicked"))??;
    if !pending.is_empty() {
        bail!("{} batches never reached the hub", pending.len());
    }
    lat.sort_by(f64::total_cmp);
    Ok(lat)
}

fn sync(dir: &Path, hours: u64, sensors: u32, latency_seconds: u64, rate: u64) -> Result<()> {
    let logs = dir.join("logs");
    let mqtt = free_port();
    eprintln!("bench: data and logs in {}", dir.display());
    // Gateway B reaches the broker through a proxy held in Partition, so
    // the two catch-ups are timed one after the other.
    let proxy = FaultProxy::start(([127, 0, 0, 1], mqtt).into())?;
    proxy.set_mode(Mode::Partition);
    let a = Edge::start_with("edge-1m", &dir.join("edge-1m"), &logs, mqtt, None, "");
    let b = Edge::start_with(
        "edge-1s",
        &dir.join("edge-1s"),
        &logs,
        proxy.port(),
        None,
        "finest_resolution = \"1s\"",
    );
    let t = Instant::now();
    let na = backfill(a.http, hours, sensors)?;
    let ingest_s = t.elapsed().as_secs_f64();
    let nb = backfill(b.http, hours, sensors)?;
    let readings = hours * 3_600 * u64::from(sensors);
    if na != readings || nb != readings {
        bail!("stored {na} and {nb} of {readings} readings");
    }
    emit(json!({"name": "edge_http_backfill", "unit": "readings/s",
        "value": (readings as f64 / ingest_s).round(), "readings": readings}));

    let hub = Hub::start(&dir.join("hub"), &logs, HubBroker::Embedded(mqtt));
    let catch_a = wait_caught_up(&hub, &a, Duration::from_secs(3_600))?;
    // The publish path: what gateway B's catch-up puts through the broker.
    let sniffed = sniff(mqtt, &format!("tributary/v1/{}/delta", b.node))?;
    proxy.set_mode(Mode::Pass);
    let catch_b = wait_caught_up(&hub, &b, Duration::from_secs(3_600))?;
    // Give the sniffer the last message too (the hub acks only after it
    // arrived, so it is at most one hop behind).
    std::thread::sleep(Duration::from_millis(200));
    let seen: Vec<(usize, Instant)> = sniffed.try_iter().collect();
    if let (Some(first), Some(last)) = (seen.first(), seen.last())
        && seen.len() > 1
    {
        let n = seen.len();
        let bytes: usize = seen.iter().map(|(len, _)| len).sum();
        let rate = (n - 1) as f64 / (last.1 - first.1).as_secs_f64().max(1e-9);
        let size = bytes / n;
        let raw = raw_publish_rate(mqtt, n, size)?;
        emit(
            json!({"name": "edge_publish_path", "unit": "messages/s", "value": rate.round(),
            "baseline": "raw_rumqttc_tight_loop", "baseline_value": raw.round(),
            "ratio": ratio(rate, raw), "messages": n, "mean_bytes": size,
            "bytes_per_s": (rate * size as f64).round()}),
        );
    } else {
        eprintln!(
            "bench: the publish path saw {} delta messages: no rate",
            seen.len()
        );
    }
    let (naive_s, naive_bytes) = naive_publish(mqtt, hours, sensors)?;
    let name = format!("sync_catchup_{hours}h_{sensors}x1hz");
    emit(
        json!({"name": name, "unit": "s", "value": (catch_a * 1000.0).round() / 1000.0,
        "baseline": "naive_json_per_reading_mqtt", "baseline_value": (naive_s * 1000.0).round() / 1000.0,
        "ratio": ratio(catch_a, naive_s), "finest_resolution": "1m", "readings": readings,
        "naive_payload_bytes": naive_bytes}),
    );
    emit(
        json!({"name": format!("{name}_with_1s"), "unit": "s", "value": (catch_b * 1000.0).round() / 1000.0,
        "baseline": "naive_json_per_reading_mqtt", "baseline_value": (naive_s * 1000.0).round() / 1000.0,
        "ratio": ratio(catch_b, naive_s), "finest_resolution": "1s", "readings": readings}),
    );
    emit(
        json!({"name": format!("sync_catchup_throughput_{hours}h"), "unit": "readings/s",
        "value": (readings as f64 / catch_a).round(),
        "baseline": "naive_json_per_reading_mqtt", "baseline_value": (readings as f64 / naive_s).round(),
        "ratio": ratio(naive_s, catch_a), "with_1s": (readings as f64 / catch_b).round()}),
    );

    // Every reading is at the hub once (1 d buckets of both gateways).
    for e in [&a, &b] {
        let mut total = 0u64;
        for s in 0..sensors {
            let path = format!(
                "/api/v1/aggregates?sensor={}&resolution=1d&node={}",
                1000 + s,
                e.node
            );
            total += hub.json(&path)["items"].as_array().map_or(0, |i| {
                i.iter()
                    .map(|b| b["count"].as_u64().unwrap_or(0))
                    .sum::<u64>()
            });
        }
        if total != readings {
            bail!("hub holds {total} of {readings} readings of {}", e.name);
        }
    }

    let live = live_latency(&hub, &a, latency_seconds, rate)?;
    let raw = raw_latency(mqtt, live.len().max(10))?;
    for (p, label) in [(0.5, "p50"), (0.99, "p99")] {
        let (v, bl) = (percentile(&live, p), percentile(&raw, p));
        emit(
            json!({"name": format!("sync_live_latency_{label}"), "unit": "ms", "value": v,
            "baseline": "raw_mqtt_publish_to_subscriber", "baseline_value": bl,
            "ratio": ratio(v, bl), "rate_readings_per_s": rate, "samples": live.len(),
            "uplink_tick_ms": 50}),
        );
    }
    Ok(())
}
