//! Real processes for the end-to-end tests: `tributary-hub` and
//! `tributary-edge` binaries started with their own data directories and
//! configuration files, logs captured (printed when a test fails), and the
//! comparisons that define "converged exactly".
//!
//! The binaries are the workspace's builds beside the running executable
//! (`target/debug/` for the tests, whose executables sit one level deeper
//! in `deps/`; `target/release/` for `tributary-bench`); `scripts/test.sh`
//! builds them first (`cargo build --workspace --bins`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use tributary_testkit::http::get;
use tributary_testkit::{ChildGuard, free_port, poll_for};

/// The resolutions both APIs know.
pub const RESOLUTIONS: [&str; 4] = ["1s", "1m", "1h", "1d"];

/// A workspace binary built next to this test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    // A binary's sibling (target/<profile>/<name>), or for a test in
    // target/<profile>/deps/, its parent's child.
    let dir = exe.parent().expect("executable directory");
    let candidates = [Some(dir.join(name)), dir.parent().map(|d| d.join(name))];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{name} is missing beside {}: run `cargo build --workspace --bins` first \
                 (scripts/test.sh does)",
                exe.display()
            )
        })
}

/// Where a hub gets its broker.
#[derive(Clone, Copy, Debug)]
pub enum HubBroker {
    /// An external broker on this loopback port.
    External(u16),
    /// The embedded broker, listening on this loopback port.
    Embedded(u16),
}

/// A running `tributary-hub`.
#[derive(Debug)]
pub struct Hub {
    /// The process.
    pub guard: ChildGuard,
    /// Its HTTP API.
    pub http: SocketAddr,
    /// Its directory (config, `data/`).
    pub dir: PathBuf,
    /// Its broker.
    pub broker: HubBroker,
    logs: PathBuf,
}

impl Hub {
    /// Starts a hub with its data in `dir` and waits until `/readyz` says
    /// ready (store open, MQTT subscribed).
    pub fn start(dir: &Path, logs: &Path, broker: HubBroker) -> Hub {
        Self::start_with(dir, logs, broker, "")
    }

    /// [`start`](Self::start) with `extra` appended to its configuration
    /// right after the `[broker]` section (e.g. `[broker.node_passwords]`).
    pub fn start_with(dir: &Path, logs: &Path, broker: HubBroker, extra: &str) -> Hub {
        let broker_cfg = match broker {
            HubBroker::External(port) => format!(
                "[broker]\nmode = \"external\"\nhost = \"127.0.0.1\"\nport = {port}\nkeep_alive = \"2s\"\n"
            ),
            HubBroker::Embedded(port) => {
                format!("[broker]\nmode = \"embedded\"\nlisten = \"127.0.0.1:{port}\"\n")
            }
        };
        Self::configure_and_launch("hub", dir, logs, broker, &(broker_cfg + extra))
    }

    /// One of several hub replicas: an external broker at `broker_port`,
    /// the PostgreSQL store at `postgres_url`, the MQTT shared-subscription
    /// group `group`, and its own client id and log (`name`).
    pub fn start_replica(
        name: &str,
        dir: &Path,
        logs: &Path,
        broker_port: u16,
        postgres_url: &str,
        group: &str,
    ) -> Hub {
        let cfg = format!(
            "[broker]\nmode = \"external\"\nhost = \"127.0.0.1\"\nport = {broker_port}\n\
             keep_alive = \"2s\"\nclient_id = \"{name}\"\nshared_group = \"{group}\"\n\
             [store]\nbackend = \"postgres\"\nurl = \"{postgres_url}\"\n"
        );
        Self::configure_and_launch(name, dir, logs, HubBroker::External(broker_port), &cfg)
    }

    fn configure_and_launch(
        name: &str,
        dir: &Path,
        logs: &Path,
        broker: HubBroker,
        sections: &str,
    ) -> Hub {
        std::fs::create_dir_all(dir).unwrap();
        let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        std::fs::write(
            dir.join("hub.toml"),
            format!(
                "[hub]\ndata_dir = \"{}\"\n[http]\nlisten = \"{http}\"\n{sections}\
                 [log]\nfilter = \"info,rumqttd=warn\"\n",
                dir.join("data").display()
            ),
        )
        .unwrap();
        Self::launch(name, dir, logs, broker, http)
    }

    /// Runs the hub configured in `dir/hub.toml` and waits for `/readyz`.
    fn launch(name: &str, dir: &Path, logs: &Path, broker: HubBroker, http: SocketAddr) -> Hub {
        let guard = ChildGuard::spawn_logged(
            name,
            Command::new(bin("tributary-hub"))
                .args(["run", "--config"])
                .arg(dir.join("hub.toml")),
            logs,
        )
        .expect("spawn tributary-hub");
        let hub = Hub {
            guard,
            http,
            dir: dir.to_path_buf(),
            broker,
            logs: logs.to_path_buf(),
        };
        let ready = poll_for(Duration::from_secs(30), || {
            get(http, "/readyz").ok().filter(|r| r.status == 200)
        });
        assert!(
            ready.is_some(),
            "hub not ready on {http}:\n{}",
            hub.guard.log_tail(30)
        );
        hub
    }

    /// SIGKILL, then start again on the same data, ports and config.
    pub fn kill9_and_restart(&mut self) {
        self.guard.kill9().expect("kill -9 the hub");
        let name = self.guard.name().to_owned();
        let again = Hub::launch(&name, &self.dir, &self.logs, self.broker, self.http);
        *self = again;
    }

    /// SIGTERM and wait for the orderly exit (the store is checkpointed
    /// and closed: its files can be copied as a backup).
    pub fn stop(&mut self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.guard.pid() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .expect("SIGTERM the hub");
        let status = self.guard.wait_exit(Duration::from_secs(30));
        assert!(
            status.is_some_and(|s| s.success()),
            "hub did not stop cleanly ({status:?}):\n{}",
            self.guard.log_tail(20)
        );
    }

    /// Starts the (stopped) hub again on the same data, ports and config.
    pub fn restart(&mut self) {
        let name = self.guard.name().to_owned();
        let again = Hub::launch(&name, &self.dir, &self.logs, self.broker, self.http);
        *self = again;
    }

    /// The hub's data directory (the SQLite files).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// `GET path` as JSON (status 200 asserted).
    pub fn json(&self, path: &str) -> Value {
        json(self.http, path)
    }

    /// Every node the hub knows, by id.
    pub fn nodes(&self) -> BTreeMap<String, Value> {
        self.json("/api/v1/nodes")["items"]
            .as_array()
            .expect("nodes items")
            .iter()
            .map(|n| (n["id"].as_str().unwrap().to_owned(), n.clone()))
            .collect()
    }
}

/// `GET path` as JSON, asserting 200.
pub fn json(addr: SocketAddr, path: &str) -> Value {
    let r = get(addr, path).unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"));
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    r.json()
}

/// What an edge's simulator produces.
#[derive(Clone, Copy, Debug)]
pub struct Sim {
    /// Sensors.
    pub sensors: u32,
    /// The first sensor id; the others follow.
    pub first_sensor: u32,
    /// Readings per second per sensor.
    pub rate_hz: f64,
    /// Ticks before the simulator stops (0: never).
    pub ticks: u64,
    /// Seed of the values.
    pub seed: u64,
    /// Chance of a spike per reading.
    pub spike_probability: f64,
}

impl Sim {
    /// Readings the simulator produces in total.
    pub fn readings(&self) -> u64 {
        self.ticks * u64::from(self.sensors)
    }
}

/// A running `tributary-edge` with the simulator and an uplink.
#[derive(Debug)]
pub struct Edge {
    /// Its name in logs.
    pub name: String,
    /// The process.
    pub guard: ChildGuard,
    /// Its HTTP API.
    pub http: SocketAddr,
    /// Its directory (config, `data/`).
    pub dir: PathBuf,
    /// Its simulator (0 sensors: none).
    pub sim: Sim,
    /// Its node id (16 hex digits).
    pub node: String,
    logs: PathBuf,
}

/// Spawns the edge configured in `dir/edge.toml` and waits for its API;
/// returns the guard and the node id.
fn launch(name: &str, dir: &Path, logs: &Path, http: SocketAddr) -> (ChildGuard, String) {
    let guard = ChildGuard::spawn_logged(
        name,
        Command::new(bin("tributary-edge"))
            .args(["run", "--config"])
            .arg(dir.join("edge.toml")),
        logs,
    )
    .expect("spawn tributary-edge");
    let status = poll_for(Duration::from_secs(30), || {
        get(http, "/api/v1/status")
            .ok()
            .filter(|r| r.status == 200)
            .map(|r| r.json())
    });
    let Some(status) = status else {
        panic!("edge {name} did not start:\n{}", guard.log_tail(30));
    };
    let node = status["node_id"].as_str().unwrap().to_owned();
    (guard, node)
}

impl Edge {
    /// Starts an edge whose uplink goes to `127.0.0.1:mqtt_port`, with
    /// fast reconnects and retransmissions (a test cannot wait minutes) and
    /// `extra` appended to its `[uplink]` section.
    pub fn start(
        name: &str,
        dir: &Path,
        logs: &Path,
        mqtt_port: u16,
        sim: Sim,
        extra: &str,
    ) -> Edge {
        Self::start_with(name, dir, logs, mqtt_port, Some(sim), extra)
    }

    /// [`start`](Self::start), with the simulator optional (`None`: the
    /// gateway only takes readings over HTTP).
    pub fn start_with(
        name: &str,
        dir: &Path,
        logs: &Path,
        mqtt_port: u16,
        sim: Option<Sim>,
        extra: &str,
    ) -> Edge {
        let http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        std::fs::create_dir_all(dir).unwrap();
        let simulator = sim.map_or(String::new(), |sim| {
            format!(
                "[sources.simulator]\nsensors = {sensors}\nfirst_sensor = {first}\n\
                 rate_hz = {rate:?}\nticks = {ticks}\nseed = {seed}\nspike_probability = {spike:?}\n",
                sensors = sim.sensors,
                first = sim.first_sensor,
                rate = sim.rate_hz,
                ticks = sim.ticks,
                seed = sim.seed,
                spike = sim.spike_probability,
            )
        });
        std::fs::write(
            dir.join("edge.toml"),
            format!(
                "[node]\ndata_dir = \"{data}\"\n[http]\nlisten = \"{http}\"\n\
                 [store]\nsynchronous = \"normal\"\n\
                 [log]\nfilter = \"info\"\n{simulator}\
                 [uplink]\nport = {mqtt_port}\nkeep_alive = \"1s\"\ntick = \"50ms\"\n\
                 retransmit_after = \"1s\"\nbackoff_initial = \"100ms\"\nbackoff_max = \"1s\"\n\
                 breaker_open = \"1s\"\n\
                 heartbeat = \"2s\"\n{extra}\n",
                data = dir.join("data").display(),
            ),
        )
        .unwrap();
        let (guard, node) = launch(name, dir, logs, http);
        Edge {
            name: name.to_owned(),
            guard,
            http,
            dir: dir.to_path_buf(),
            sim: sim.unwrap_or(Sim {
                sensors: 0,
                first_sensor: 0,
                rate_hz: 1.0,
                ticks: 0,
                seed: 0,
                spike_probability: 0.0,
            }),
            node,
            logs: logs.to_path_buf(),
        }
    }

    /// SIGKILL, then start again on the same data and config. (The
    /// simulator starts its ticks over: the test's expectations use the
    /// edge's own aggregates, not a fixed count, after a restart.)
    pub fn kill9_and_restart(&mut self) {
        self.guard.kill9().expect("kill -9 the edge");
        let (guard, node) = launch(&self.name, &self.dir, &self.logs, self.http);
        assert_eq!(node, self.node, "the node id survives a restart");
        self.guard = guard;
    }

    /// `GET /api/v1/status`.
    pub fn status(&self) -> Value {
        json(self.http, "/api/v1/status")
    }

    /// Readings the simulator handed to ingest and the store accepted.
    pub fn ingested(&self) -> u64 {
        let text = get(self.http, "/metrics").unwrap().text();
        text.lines()
            .filter(|l| l.starts_with("tributary_readings_ingested_total{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    /// The simulator is done and the hub acknowledged everything.
    pub fn synced(&self, expected_readings: Option<u64>) -> bool {
        if expected_readings.is_some_and(|n| self.ingested() < n) {
            return false;
        }
        let s = self.status();
        let (acked, high) = (s["uplink"]["acked"].as_u64(), s["version_high"].as_u64());
        acked.is_some() && acked == high && s["uplink"]["state"] == "online"
    }
}

/// Every bucket of `sensor` at `res` from an API (edge or hub), following
/// `next_from` pages; `extra` adds query parameters (`&node=…`).
pub fn buckets(addr: SocketAddr, sensor: u32, res: &str, extra: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut from: Option<u64> = None;
    loop {
        let mut path =
            format!("/api/v1/aggregates?sensor={sensor}&resolution={res}&limit=10000{extra}");
        if let Some(f) = from {
            path.push_str(&format!("&from={f}"));
        }
        let page = json(addr, &path);
        out.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_from"].as_u64() {
            Some(f) => from = Some(f),
            None => return out,
        }
    }
}

/// The fields that must be bit-identical between an edge's bucket and the
/// hub's copy of it (JSON numbers from serde_json round-trip f64 exactly).
fn exact(b: &Value) -> Value {
    let start = b.get("bucket_start").or_else(|| b.get("start")).cloned();
    serde_json::json!({
        "start": start,
        "count": b["count"], "sum": b["sum"], "min": b["min"], "max": b["max"],
        "first_ts": b["first_ts"], "last_ts": b["last_ts"], "version": b["version"],
    })
}

/// Asserts the hub holds exactly each edge's aggregates (per node, every
/// sensor and resolution, bit for bit), and that the merged view counts
/// every reading once: per bucket, the merged count is the sum of the
/// edges' counts, min and max are the extremes. Returns the total number
/// of readings represented at the 1 d resolution. `resolutions`: those
/// the gateways sync (`uplink.finest_resolution` and coarser); finer ones
/// must be absent at the hub.
pub fn assert_converged(hub: &Hub, edges: &[&Edge], resolutions: &[&str]) -> u64 {
    let mut sensors: BTreeMap<u32, ()> = BTreeMap::new();
    for e in edges {
        for s in e.sim.first_sensor..e.sim.first_sensor + e.sim.sensors {
            sensors.insert(s, ());
        }
    }
    let mut total = 0;
    for &sensor in sensors.keys() {
        for res in RESOLUTIONS.iter().filter(|r| !resolutions.contains(r)) {
            assert!(
                buckets(hub.http, sensor, res, "").is_empty(),
                "sensor {sensor}: {res} buckets reached the hub, but they are not synced"
            );
        }
        for &res in resolutions {
            // bucket start → (count, min, max) summed over edges.
            let mut want: BTreeMap<u64, (u64, f64, f64)> = BTreeMap::new();
            for e in edges {
                let mine = buckets(e.http, sensor, res, "");
                let at_hub = buckets(hub.http, sensor, res, &format!("&node={}", e.node));
                let mine_exact: Vec<Value> = mine.iter().map(exact).collect();
                let hub_exact: Vec<Value> = at_hub.iter().map(exact).collect();
                assert_eq!(
                    mine_exact.len(),
                    hub_exact.len(),
                    "edge {} sensor {sensor} {res}: bucket counts differ",
                    e.name
                );
                for (a, b) in mine_exact.iter().zip(&hub_exact) {
                    assert_eq!(
                        a, b,
                        "edge {} sensor {sensor} {res}: bucket differs",
                        e.name
                    );
                }
                for b in &mine {
                    let start = b["bucket_start"].as_u64().unwrap();
                    let w = want
                        .entry(start)
                        .or_insert((0, f64::INFINITY, f64::NEG_INFINITY));
                    w.0 += b["count"].as_u64().unwrap();
                    w.1 = w.1.min(b["min"].as_f64().unwrap());
                    w.2 = w.2.max(b["max"].as_f64().unwrap());
                }
            }
            let merged = buckets(hub.http, sensor, res, "");
            assert_eq!(
                merged.len(),
                want.len(),
                "sensor {sensor} {res}: merged bucket count"
            );
            for m in &merged {
                let start = m["start"].as_u64().unwrap();
                let (count, min, max) = want[&start];
                assert_eq!(
                    m["count"].as_u64(),
                    Some(count),
                    "sensor {sensor} {res} @{start}: merged count"
                );
                assert_eq!(
                    m["min"].as_f64(),
                    Some(min),
                    "sensor {sensor} {res} @{start}: merged min"
                );
                assert_eq!(
                    m["max"].as_f64(),
                    Some(max),
                    "sensor {sensor} {res} @{start}: merged max"
                );
                if res == "1d" {
                    total += count;
                }
            }
        }
    }
    total
}

/// One gateway whose simulator ran to the end: waits until the hub has
/// everything it computed ([`wait_converged`]), then asserts the hub's
/// 1 min, 1 h and 1 d buckets equal the gateway's bit for bit and count
/// exactly the readings the simulator produced.
pub fn assert_converges(hub: &Hub, edge: &Edge, within: Duration) {
    let readings = edge.sim.readings();
    wait_converged(hub, &[edge], &[Some(readings)], within);
    assert_eq!(
        assert_converged(hub, &[edge], &["1m", "1h", "1d"]),
        readings
    );
}

/// A Prometheus counter family at `addr`'s `/metrics`, by the value of its
/// one label (e.g. `reason`); absent families give an empty map.
pub fn counters_by_label(addr: SocketAddr, family: &str) -> BTreeMap<String, u64> {
    let text = get(addr, "/metrics").unwrap().text();
    let prefix = format!("{family}{{");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|l| {
            let (_, rest) = l.split_once("=\"")?;
            let (label, rest) = rest.split_once('"')?;
            let n = rest.rsplit(' ').next()?.parse::<f64>().ok()?;
            Some((label.to_owned(), n as u64))
        })
        .collect()
}

/// A counter (or the sum of a family) at `addr`'s `/metrics`; 0 if absent.
pub fn counter(addr: SocketAddr, name: &str) -> u64 {
    let text = get(addr, "/metrics").unwrap().text();
    text.lines()
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|r| r.starts_with(' ') || r.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// Waits until every edge is synced with the hub (the hub's watermark for
/// each node is its version_high), printing progress on failure.
pub fn wait_converged(hub: &Hub, edges: &[&Edge], expected: &[Option<u64>], within: Duration) {
    let ok = poll_for(within, || {
        let all = edges.iter().zip(expected).all(|(e, n)| e.synced(*n));
        if !all {
            return None;
        }
        let nodes = hub.nodes();
        edges
            .iter()
            .all(|e| {
                let high = e.status()["version_high"].as_u64();
                nodes
                    .get(&e.node)
                    .is_some_and(|n| n["watermark"].as_u64() == high)
            })
            .then_some(())
    });
    if ok.is_none() {
        for e in edges {
            eprintln!("edge {} status: {}", e.name, e.status());
            eprintln!("edge {} log:\n{}", e.name, e.guard.log_tail(20));
        }
        eprintln!("hub nodes: {:?}", hub.nodes());
        eprintln!("hub log:\n{}", hub.guard.log_tail(30));
        panic!("not converged within {within:?}");
    }
}

/// A fresh Mosquitto for one test, or `None` after a "skipped" line when it
/// is not installed (`Mosquitto::start` itself fails under CI, where
/// scripts/setup.sh installs it).
pub fn mosquitto() -> Option<tributary_testkit::Mosquitto> {
    match tributary_testkit::Mosquitto::start() {
        Ok(Some(m)) => Some(m),
        Ok(None) => {
            eprintln!("skipped: mosquitto is not installed");
            None
        }
        Err(e) => panic!("{e}"),
    }
}
