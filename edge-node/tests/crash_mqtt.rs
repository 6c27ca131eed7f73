//! Exactly once through the local MQTT source across a `kill -9`: a real
//! Mosquitto, the real gateway binary subscribed with a persistent session
//! (QoS 1, PUBACK only after commit). The gateway is SIGKILLed mid-stream
//! while the publisher keeps going, then restarted: the broker redelivers
//! what was never acknowledged (and queues what arrived meanwhile), the
//! store drops what had committed without its PUBACK, and the totals come
//! out exact.
//!
//! Needs `mosquitto` and `mosquitto_pub` (scripts/setup.sh installs them);
//! without them the test prints a skip line, or fails when `CI` is set.

mod http_client;

use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use http_client::{free_port, get, wait_for};
use serde_json::json;
use tributary_testkit::{ChildGuard, Mosquitto, find_tool};

const MESSAGES: u64 = 400;
const READINGS_PER_MESSAGE: u64 = 5;
const BASE_MS: u64 = 1_577_836_800_000; // 2020-01-01
const SENSOR: u32 = 77;

/// Starts the gateway binary (output appended to `<dir>/gateway.log`, printed
/// if the test fails) and waits until it is ready.
fn start_gateway(dir: &Path, broker_port: u16) -> (ChildGuard, SocketAddr) {
    let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let config = dir.join("edge.toml");
    std::fs::write(
        &config,
        format!(
            "[node]\ndata_dir = \"{}\"\n[http]\nlisten = \"{addr}\"\n[log]\nfilter = \"warn\"\n\
             [detect]\nenabled = false\n\
             [sources.mqtt]\nport = {broker_port}\nclient_id = \"crash-test-gateway\"\n\
             topics = [\"sensors/+/readings\"]\nreconnect_max = \"1s\"\n",
            dir.join("data").display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tributary-edge"));
    cmd.args(["run", "--config"]).arg(&config);
    let gw = ChildGuard::spawn_logged("gateway", &mut cmd, dir).unwrap();
    let ready = wait_for(Duration::from_secs(30), || {
        get(addr, "/readyz").ok().filter(|r| r.status == 200)
    });
    assert!(ready.is_some(), "gateway not ready:\n{}", gw.log_tail(30));
    (gw, addr)
}

fn mqtt_ingested(addr: SocketAddr) -> u64 {
    get(addr, "/metrics")
        .ok()
        .map(|r| r.text())
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("tributary_readings_ingested_total{source=\"mqtt\"}"))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn day_totals(addr: SocketAddr) -> (u64, f64) {
    let r = get(
        addr,
        &format!("/api/v1/aggregates?sensor={SENSOR}&resolution=1d"),
    )
    .unwrap();
    let v = r.json();
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .fold((0, 0.0), |(c, s), i| {
            (
                c + i["count"].as_u64().unwrap(),
                s + i["sum"].as_f64().unwrap(),
            )
        })
}

fn message(seq: u64) -> String {
    let readings: Vec<_> = (0..READINGS_PER_MESSAGE)
        .map(|j| json!({"sensor": SENSOR, "value": seq as f64, "ts": BASE_MS + seq * 1000 + j}))
        .collect();
    json!({"source": "crash-mqtt", "seq": seq, "readings": readings}).to_string()
}

/// Publishes `seqs` as QoS 1 messages, one per line, through one
/// `mosquitto_pub -l` process; returns when all were handed to the broker.
fn publish(pub_bin: &Path, port: u16, seqs: std::ops::Range<u64>, pause: Duration) {
    let mut child = Command::new(pub_bin)
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "sensors/dev/readings",
            "-q",
            "1",
            "-l",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for seq in seqs {
        writeln!(stdin, "{}", message(seq)).unwrap();
        std::thread::sleep(pause);
    }
    drop(stdin);
    assert!(child.wait().unwrap().success(), "mosquitto_pub failed");
}

#[test]
fn kill_9_with_mqtt_in_flight_counts_every_message_exactly_once() {
    let Some(pub_bin) = find_tool("mosquitto_pub").unwrap_or_else(|e| panic!("{e}")) else {
        eprintln!("skipped: mosquitto_pub not installed");
        return;
    };
    // The broker keeps the gateway's session (queued QoS 1 messages) in
    // memory for as long as it runs, which is the whole test; the testkit
    // default queue (100 000 messages) holds every message of this test.
    let Some(broker) = Mosquitto::start().unwrap_or_else(|e| panic!("{e}")) else {
        eprintln!("skipped: mosquitto not installed");
        return;
    };
    let port = broker.port();
    let dir = tempfile::tempdir().unwrap();

    let (mut gw, addr) = start_gateway(dir.path(), port);
    // The subscription exists once the first message is counted: until
    // then the broker would drop messages for lack of a subscriber.
    let subscribed = wait_for(Duration::from_secs(20), || {
        publish(&pub_bin, port, 0..1, Duration::ZERO);
        (mqtt_ingested(addr) > 0).then_some(())
    });
    assert!(subscribed.is_some(), "the gateway never received a message");

    let publisher = {
        let pub_bin = pub_bin.clone();
        std::thread::spawn(move || publish(&pub_bin, port, 1..MESSAGES, Duration::from_millis(2)))
    };
    // Kill mid-stream, while messages are in flight.
    let mid = (MESSAGES / 4) * READINGS_PER_MESSAGE;
    assert!(
        wait_for(Duration::from_secs(60), || (mqtt_ingested(addr) >= mid)
            .then_some(()))
        .is_some(),
        "no progress before the kill"
    );
    gw.kill9().unwrap();
    publisher.join().unwrap();

    // Restart: the broker hands over the queue and the unacknowledged.
    let (_gw, addr) = start_gateway(dir.path(), port);
    let want_count = MESSAGES * READINGS_PER_MESSAGE;
    let want_sum: f64 = (0..MESSAGES)
        .map(|s| (s * READINGS_PER_MESSAGE) as f64)
        .sum();
    let done = wait_for(Duration::from_secs(60), || {
        let (count, _) = day_totals(addr);
        (count >= want_count).then_some(())
    });
    assert!(
        done.is_some(),
        "only {:?} of {want_count} readings arrived",
        day_totals(addr)
    );
    // Let any stray redelivery land, then check nothing was counted twice.
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(day_totals(addr), (want_count, want_sum));
}
