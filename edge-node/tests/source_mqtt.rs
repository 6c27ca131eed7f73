//! The local MQTT source against a real Mosquitto on a free port: JSON and
//! CBOR bodies arrive as submissions, malformed bodies are counted and still
//! acknowledged, and the source reconnects after the broker restarts.
//!
//! The broker runs with `max_inflight_messages 1`: it delivers the next QoS 1
//! message only after the previous one was acknowledged, so a message that
//! arrives after a malformed one proves the malformed one was PUBACKed.
//!
//! Without `mosquitto` (and `mosquitto_pub`) the test prints a skip message,
//! or fails when `CI` is set.

mod common;

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{DEADLINE, Recorded, counter, eventually};
use tokio::sync::watch;
use tributary_core::ids::{SensorId, Timestamp};
use tributary_edge::metrics::Metrics;
use tributary_edge::reading::{Item, Origin, Sample};
use tributary_edge::sources::mqtt::{self, LocalMqttOptions};
use tributary_testkit::{Mosquitto, MosquittoOptions, find_tool};

const TOPIC: &str = "sensors/t1/readings";

/// Publishes one QoS 1 message with mosquitto_pub (off the actix thread).
async fn publish(pub_bin: &Path, port: u16, payload: Vec<u8>) -> bool {
    let pub_bin = pub_bin.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let mut child = Command::new(pub_bin)
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &port.to_string(),
                "-t",
                TOPIC,
                "-q",
                "1",
                "-s",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&payload).unwrap();
        child.wait().map(|s| s.success()).unwrap_or(false)
    })
    .await
    .unwrap()
}

fn json_batch(source: &str, seq: u64, sensor: u32, value: f64, ts: u64) -> Vec<u8> {
    format!(
        r#"{{"source":"{source}","seq":{seq},"readings":[{{"sensor":{sensor},"value":{value},"ts":{ts}}}]}}"#
    )
    .into_bytes()
}

fn has_origin(rec: &Recorded, source: &str) -> bool {
    rec.submissions()
        .iter()
        .any(|s| s.origin.as_ref().is_some_and(|o| o.source == source))
}

/// Publishes numbered probes until one arrives: the source is connected
/// and subscribed.
async fn probe_until_seen(pub_bin: &Path, port: u16, rec: &Recorded, source: &str, ts: u64) {
    let deadline = Instant::now() + DEADLINE;
    let mut seq = 0;
    while !has_origin(rec, source) {
        assert!(Instant::now() < deadline, "probe {source} never arrived");
        seq += 1;
        publish(pub_bin, port, json_batch(source, seq, 1, 1.0, ts)).await;
        eventually(Duration::from_millis(300), || has_origin(rec, source)).await;
    }
}

#[actix::test]
async fn mqtt_source_against_mosquitto() {
    let Some(pub_bin) = find_tool("mosquitto_pub").unwrap_or_else(|e| panic!("{e}")) else {
        eprintln!("SKIPPED: mosquitto_pub not installed");
        return;
    };
    // One message in flight at a time (see the module comment).
    let options = MosquittoOptions {
        max_inflight_messages: 1,
        ..MosquittoOptions::default()
    };
    let Some(mut broker) = Mosquitto::start_with(options).unwrap_or_else(|e| panic!("{e}")) else {
        eprintln!("SKIPPED: mosquitto not installed");
        return;
    };
    let port = broker.port();

    let (ingest, rec) = common::start();
    let metrics = Metrics::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let opts = LocalMqttOptions {
        port,
        client_id: format!("edge-test-{}", std::process::id()),
        topics: vec!["sensors/+/readings".into()],
        keep_alive: Duration::from_secs(5),
        reconnect_min: Duration::from_millis(50),
        reconnect_max: Duration::from_millis(500),
        ..LocalMqttOptions::default()
    };
    let source = actix::spawn(mqtt::run(opts, ingest, metrics.clone(), stop_rx));

    let ts = tributary_edge::sources::wall_now().as_millis() - 1000;
    probe_until_seen(&pub_bin, port, &rec, "probe-1", ts).await;

    // JSON with an origin.
    assert!(publish(&pub_bin, port, json_batch("dev-a", 1, 3, 2.5, ts)).await);
    assert!(eventually(DEADLINE, || has_origin(&rec, "dev-a")).await);
    let sub = rec
        .submissions()
        .into_iter()
        .find(|s| s.origin.as_ref().is_some_and(|o| o.source == "dev-a"))
        .unwrap();
    assert_eq!(
        sub.origin,
        Some(Origin {
            source: "dev-a".into(),
            seq: 1
        })
    );
    assert_eq!(
        sub.items,
        [Item::Reading(Sample {
            sensor: SensorId(3),
            ts: Timestamp(ts),
            value: 2.5
        })]
    );

    // CBOR: {0: source, 1: seq, 2: [{0: sensor, 1: value, 2: ts}]}.
    let mut cbor = Vec::new();
    let mut e = minicbor::Encoder::new(&mut cbor);
    e.map(3).unwrap();
    e.u8(0).unwrap().str("dev-b").unwrap();
    e.u8(1).unwrap().u64(7).unwrap();
    e.u8(2).unwrap().array(1).unwrap();
    e.map(3).unwrap();
    e.u8(0).unwrap().u32(4).unwrap();
    e.u8(1).unwrap().f64(-1.25).unwrap();
    e.u8(2).unwrap().u64(ts).unwrap();
    assert!(publish(&pub_bin, port, cbor).await);
    assert!(eventually(DEADLINE, || has_origin(&rec, "dev-b")).await);
    let sub = rec
        .submissions()
        .into_iter()
        .find(|s| s.origin.as_ref().is_some_and(|o| o.source == "dev-b"))
        .unwrap();
    assert_eq!(sub.origin.unwrap().seq, 7);
    assert_eq!(
        sub.items,
        [Item::Reading(Sample {
            sensor: SensorId(4),
            ts: Timestamp(ts),
            value: -1.25
        })]
    );

    // Malformed JSON and CBOR: counted, and acknowledged (with one message
    // in flight at a time, the next one arrives only after their PUBACKs).
    assert!(publish(&pub_bin, port, b"{\"sensor\": oops".to_vec()).await);
    assert!(publish(&pub_bin, port, vec![0xff, 0x00, 0x13]).await);
    assert!(publish(&pub_bin, port, json_batch("after-bad", 1, 5, 1.0, ts)).await);
    assert!(eventually(DEADLINE, || has_origin(&rec, "after-bad")).await);
    let rejected = |reason: &str| {
        counter(
            &metrics,
            &format!("tributary_readings_rejected_total{{source=\"mqtt\",reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(rejected("bad_json"), 1, "{}", metrics.encode());
    assert_eq!(rejected("bad_cbor"), 1, "{}", metrics.encode());

    // A body without an origin is submitted every time it arrives.
    let bare = format!(r#"{{"sensor":42,"value":3.0,"ts":{ts}}}"#).into_bytes();
    assert!(publish(&pub_bin, port, bare.clone()).await);
    assert!(publish(&pub_bin, port, bare).await);
    let bare_count = || {
        rec.submissions()
            .iter()
            .filter(|s| {
                s.origin.is_none() && s.items.first().is_some_and(|i| i.sensor() == SensorId(42))
            })
            .count()
    };
    assert!(
        eventually(DEADLINE, || bare_count() == 2).await,
        "{}",
        bare_count()
    );

    // The broker dies and comes back on the same port: the source
    // reconnects, subscribes again, and later messages arrive.
    broker.kill9();
    broker.restart().unwrap_or_else(|e| panic!("{e}"));
    probe_until_seen(&pub_bin, port, &rec, "probe-2", ts).await;
    assert!(publish(&pub_bin, port, json_batch("dev-c", 1, 6, 9.0, ts)).await);
    assert!(eventually(DEADLINE, || has_origin(&rec, "dev-c")).await);

    stop_tx.send(true).unwrap();
    let result = tokio::time::timeout(DEADLINE, source).await;
    assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
    drop(broker);
}
