//! A real `tributary-hub` (embedded broker) fed hostile MQTT messages by a
//! raw client: garbage bytes, a message naming another node than its topic,
//! a message on the wrong topic, a topic outside the scheme, an oversized
//! version, an alert from a clock a year ahead. Each is refused with its reason counted in
//! `tributary_hub_sync_rejected_total`, nothing of it is merged, and the hub
//! keeps serving: a well-formed `Hello` afterwards still gets its `Resume`.

use std::collections::BTreeMap;
use std::time::Duration;

use rumqttc::{Client, Event, MqttOptions, Packet, QoS};
use tributary_core::codec::v1::{self, Alert, Delta, DetectorKind, Hello, Message};
use tributary_core::crdt::aggregate::{Entry, Key};
use tributary_core::hlc::Hlc;
use tributary_core::ids::{Bucket, NodeId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;
use tributary_testkit::{free_port, http::get, poll_for};
use tributary_tests::system::{Hub, HubBroker};

const VICTIM: NodeId = NodeId(0xaa);
const ATTACKER: NodeId = NodeId(0xbb);

fn delta(node: NodeId, version: u64) -> Message {
    let t = Timestamp(1_763_856_000_000);
    let key = Key::new(
        SensorId(5),
        Resolution::Minute,
        Bucket::containing(t, Resolution::Minute),
    );
    let entry = Entry {
        version,
        summary: Summary::of(t, 1.0).unwrap(),
    };
    Message::Delta(Delta::from_entries(
        node,
        version - 1,
        version,
        [(key, entry)],
    ))
}

fn future_alert() -> Message {
    let year_ahead = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
        + 365 * 86_400_000;
    let t = Timestamp(year_ahead);
    Message::Alert(Alert {
        node: VICTIM,
        sensor: SensorId(5),
        hlc: Hlc::new(year_ahead, 0).unwrap(),
        at: t,
        value: 99.0,
        score: 0.99,
        detector: DetectorKind::Ensemble,
        window: Summary::of(t, 99.0).unwrap(),
    })
}

/// `tributary_hub_sync_rejected_total` by reason.
fn rejected(hub: &Hub) -> BTreeMap<String, u64> {
    tributary_tests::system::counters_by_label(hub.http, "tributary_hub_sync_rejected_total")
}

#[test]
fn hostile_messages_are_refused_counted_and_the_hub_keeps_serving() {
    let tmp = tempfile::tempdir().unwrap();
    let port = free_port();
    let hub = Hub::start(
        &tmp.path().join("hub"),
        &tmp.path().join("logs"),
        HubBroker::Embedded(port),
    );

    let mut opts = MqttOptions::new("attacker", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    let (client, mut conn) = Client::new(opts, 64);
    client
        .subscribe(format!("tributary/v1/{VICTIM}/ack"), QoS::AtLeastOnce)
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for ev in conn.iter() {
            if let Ok(Event::Incoming(Packet::Publish(p))) = ev
                && tx.send(p.payload.to_vec()).is_err()
            {
                return;
            }
        }
    });
    let on = |kind: &str| format!("tributary/v1/{VICTIM}/{kind}");
    let sends: [(String, Vec<u8>); 6] = [
        // Not CBOR of any message.
        (on("delta"), b"\x01\xff\xfe garbage".to_vec()),
        // Another node's entries on the victim's topic.
        (on("delta"), v1::encode(&delta(ATTACKER, 5))),
        // A Hello where deltas go.
        (
            on("delta"),
            v1::encode(&Message::Hello(Hello {
                node: VICTIM,
                version_high: 3,
                digest: None,
            })),
        ),
        // A version no SQL integer holds (and no real node reaches).
        (on("delta"), v1::encode(&delta(VICTIM, u64::MAX))),
        // A node id that is not 16 hex digits.
        (
            "tributary/v1/not-a-node/delta".into(),
            v1::encode(&delta(VICTIM, 5)),
        ),
        // An alert from a clock a year ahead.
        (on("alert"), v1::encode(&future_alert())),
    ];
    for (topic, payload) in sends {
        client
            .publish(topic, QoS::AtLeastOnce, false, payload)
            .unwrap();
    }
    let want = [
        "wrong_node",
        "wrong_topic",
        "version_out_of_range",
        "bad_topic",
        "future_hlc",
    ];
    let counted = poll_for(Duration::from_secs(30), || {
        let r = rejected(&hub);
        (want.iter().all(|w| r.get(*w).copied().unwrap_or(0) >= 1) && r.values().sum::<u64>() >= 6)
            .then_some(r)
    });
    let counted =
        counted.unwrap_or_else(|| panic!("not all refused and counted: {:?}", rejected(&hub)));
    eprintln!("refused: {counted:?}");

    // Nothing merged: no node has data, sensor 5 has no buckets.
    let agg = tributary_tests::system::json(hub.http, "/api/v1/aggregates?sensor=5&resolution=1m");
    assert_eq!(agg["items"].as_array().map(Vec::len), Some(0), "{agg}");
    assert!(
        hub.nodes()
            .values()
            .all(|n| n["version_high"].as_u64() == Some(0)),
        "{:?}",
        hub.nodes()
    );
    // Still serving: a proper Hello gets its Resume.
    client
        .publish(
            on("hello"),
            QoS::AtLeastOnce,
            false,
            v1::encode(&Message::Hello(Hello {
                node: VICTIM,
                version_high: 0,
                digest: None,
            })),
        )
        .unwrap();
    let resume = rx
        .recv_timeout(Duration::from_secs(30))
        .expect("no answer to a Hello");
    assert!(
        matches!(v1::decode(&resume), Ok(Message::Resume(r)) if r.node == VICTIM && r.watermark == 0),
        "{resume:?}"
    );
    assert_eq!(get(hub.http, "/healthz").unwrap().status, 200);
}
