//! Per-node MQTT logins on the hub's embedded broker (issue #5,
//! docs/security.md): with `[broker.node_passwords]` set, a real gateway
//! with its password syncs exactly as before, while a client with a wrong
//! password, an unknown or missing username is refused at CONNECT, and a
//! node that publishes or subscribes on another node's topics is
//! disconnected before the broker sees the packet. Every refusal is
//! counted by reason and nothing of the intruders is merged.

use std::collections::BTreeMap;
use std::time::Duration;

use rumqttc::{Client, ConnectReturnCode, Event, MqttOptions, Packet, QoS};
use tributary_core::codec::v1::{self, Hello, Message};
use tributary_core::ids::NodeId;
use tributary_testkit::{free_port, poll_for};
use tributary_tests::system::{
    self, Edge, Hub, HubBroker, Sim, assert_converged, assert_converges,
};

const EDGE_PASSWORD: &str = "edge0-password-0123456789";
const OTHER: NodeId = NodeId(0xb2);
const OTHER_PASSWORD: &str = "other-password-0123456789";

/// `tributary_hub_broker_refused_total` by reason.
fn refused(hub: &Hub) -> BTreeMap<String, u64> {
    system::counters_by_label(hub.http, "tributary_hub_broker_refused_total")
}

/// What happens to a client logging in as `user`/`password`: `Ok` with
/// the client once CONNACK accepts, else the refusal.
fn login(
    port: u16,
    id: &str,
    creds: Option<(&str, &str)>,
) -> Result<(Client, rumqttc::Connection), String> {
    let mut opts = MqttOptions::new(id, "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(30));
    if let Some((u, p)) = creds {
        opts.set_credentials(u, p);
    }
    let (client, mut conn) = Client::new(opts, 16);
    match conn.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(Event::Incoming(Packet::ConnAck(a)))) if a.code == ConnectReturnCode::Success => {
            Ok((client, conn))
        }
        other => Err(format!("{other:?}")),
    }
}

/// Drives `conn` until the broker drops it; `false` if it stays up.
fn dropped(conn: &mut rumqttc::Connection) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if let Ok(Err(_)) = conn.recv_timeout(Duration::from_secs(1)) {
            return true;
        }
    }
    false
}

/// A gateway with its password (and `uplink_extra`) and a hub with the
/// passwords of that gateway and of [`OTHER`] (and `broker_extra` in its
/// `[broker]` section), both running, not yet converged. The gateway
/// starts first (it retries until the hub is up): its node id is drawn at
/// its first start, and the hub's password list needs it.
fn gateway_and_hub(
    seed: u64,
    uplink_extra: &str,
    broker_extra: &str,
) -> (tempfile::TempDir, u16, Edge, Hub) {
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    let port = free_port();
    let sim = Sim {
        sensors: 2,
        first_sensor: 500,
        rate_hz: 20.0,
        ticks: 100,
        seed,
        spike_probability: 0.0,
    };
    let edge = Edge::start(
        "edge0",
        &tmp.path().join("edge0"),
        &logs,
        port,
        sim,
        &format!("password = \"{EDGE_PASSWORD}\"\n{uplink_extra}"),
    );
    let hub = Hub::start_with(
        &tmp.path().join("hub"),
        &logs,
        HubBroker::Embedded(port),
        &format!(
            "{broker_extra}[broker.node_passwords]\n\"{}\" = \"{EDGE_PASSWORD}\"\n\"{OTHER}\" = \"{OTHER_PASSWORD}\"\n",
            edge.node
        ),
    );
    (tmp, port, edge, hub)
}

#[test]
fn only_nodes_with_their_password_get_in_and_only_to_their_own_topics() {
    let (_tmp, port, edge, hub) = gateway_and_hub(51, "", "");
    assert_converges(&hub, &edge, Duration::from_secs(60));

    // Refused at CONNECT.
    let other = OTHER.to_string();
    let wrong = login(port, "x1", Some((&other, "not-the-password-at-all")));
    assert!(wrong.is_err(), "a wrong password got in");
    assert!(login(port, "x2", Some(("00000000000000c3", OTHER_PASSWORD))).is_err());
    assert!(login(port, "x3", None).is_err());

    // In with its own login; out as soon as it touches another's topics.
    let (client, mut conn) = login(port, "x4", Some((&other, OTHER_PASSWORD))).unwrap();
    let hello = |node| {
        v1::encode(&Message::Hello(Hello {
            node,
            version_high: 9,
            digest: None,
        }))
    };
    let victim: NodeId = edge.node.parse().unwrap();
    client
        .publish(
            format!("tributary/v1/{victim}/hello"),
            QoS::AtLeastOnce,
            false,
            hello(victim),
        )
        .unwrap();
    assert!(
        dropped(&mut conn),
        "publishing on another node's topic kept the connection"
    );
    let (client, mut conn) = login(port, "x5", Some((&other, OTHER_PASSWORD))).unwrap();
    client
        .subscribe(format!("tributary/v1/{victim}/ack"), QoS::AtLeastOnce)
        .unwrap();
    assert!(
        dropped(&mut conn),
        "subscribing to another node's acks kept the connection"
    );
    // Its own topics are fine: its Hello reaches the hub.
    let (client, mut conn) = login(port, "x6", Some((&other, OTHER_PASSWORD))).unwrap();
    client
        .publish(
            format!("tributary/v1/{OTHER}/hello"),
            QoS::AtLeastOnce,
            false,
            hello(OTHER),
        )
        .unwrap();
    std::thread::spawn(move || for _ in conn.iter() {});

    let want = [
        ("bad_password", 1),
        ("unknown_node", 1),
        ("no_username", 1),
        ("foreign_topic", 1),
        ("foreign_subscription", 1),
    ];
    let counted = poll_for(Duration::from_secs(20), || {
        let r = refused(&hub);
        want.iter()
            .all(|(k, n)| r.get(*k) == Some(n))
            .then_some(())
            .filter(|_| hub.nodes().contains_key(&other))
    });
    assert!(
        counted.is_some(),
        "refusals {:?}, nodes {:?}",
        refused(&hub),
        hub.nodes().keys()
    );
    // The intruder's Hello for the gateway never reached the hub: the
    // gateway's record is its own, still converged.
    assert_eq!(
        assert_converged(&hub, &[&edge], &["1m", "1h", "1d"]),
        edge.sim.readings()
    );
}

/// The same gateway login over MQTT with TLS: the hub's embedded broker
/// serves a certificate from a throwaway CA, the gateway trusts that CA
/// (`[uplink] tls_ca`), and the hub ends with exactly what it computed.
#[test]
fn a_gateway_syncs_over_mqtt_tls_with_its_login() {
    let ca = match tributary_testkit::TestCa::generate("hub") {
        Ok(Some(ca)) => ca,
        Ok(None) => {
            eprintln!("skipped: openssl is not installed");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let (_tmp, port, edge, hub) = gateway_and_hub(
        52,
        &format!("tls_ca = \"{}\"", ca.ca.display()),
        &format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\n",
            ca.cert.display(),
            ca.key.display()
        ),
    );
    assert_converges(&hub, &edge, Duration::from_secs(60));
    // Plain MQTT to the TLS port, even with the right login, gets nowhere.
    assert!(login(port, "plain", Some((&edge.node, EDGE_PASSWORD))).is_err());
    let counted = poll_for(Duration::from_secs(10), || {
        (refused(&hub).get("tls_handshake") >= Some(&1)).then_some(())
    });
    assert!(counted.is_some(), "{:?}", refused(&hub));
}

/// TLS through an external broker: Mosquitto serves a certificate from a
/// throwaway CA, and both the hub (`[broker] tls_ca`) and the gateway
/// (`[uplink] tls_ca`) trust that CA; the hub ends with exactly what the
/// gateway computed.
#[test]
fn hub_and_gateway_sync_through_mosquitto_over_tls() {
    let ca = match tributary_testkit::TestCa::generate("mosquitto") {
        Ok(Some(ca)) => ca,
        Ok(None) => {
            eprintln!("skipped: openssl is not installed");
            return;
        }
        Err(e) => panic!("{e}"),
    };
    let broker =
        match tributary_testkit::Mosquitto::start_with(tributary_testkit::MosquittoOptions {
            extra_config: vec![
                format!("certfile {}", ca.cert.display()),
                format!("keyfile {}", ca.key.display()),
            ],
            ..Default::default()
        }) {
            Ok(Some(b)) => b,
            Ok(None) => {
                eprintln!("skipped: mosquitto is not installed");
                return;
            }
            Err(e) => panic!("{e}"),
        };
    let tmp = tempfile::tempdir().unwrap();
    let logs = tmp.path().join("logs");
    let tls_ca = format!("tls_ca = \"{}\"\n", ca.ca.display());
    let hub = Hub::start_with(
        &tmp.path().join("hub"),
        &logs,
        HubBroker::External(broker.port()),
        &tls_ca,
    );
    let sim = Sim {
        sensors: 2,
        first_sensor: 700,
        rate_hz: 20.0,
        ticks: 100,
        seed: 53,
        spike_probability: 0.0,
    };
    let edge = Edge::start(
        "edge0",
        &tmp.path().join("edge0"),
        &logs,
        broker.port(),
        sim,
        &tls_ca,
    );
    assert_converges(&hub, &edge, Duration::from_secs(60));
}
