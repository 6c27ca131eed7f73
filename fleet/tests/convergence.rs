//! Replicas edit concurrently while offline, then sync through a lossy,
//! reordering, duplicating network: they end equal and no edit of a
//! distinct field is lost.

mod sim;

use sim::{Faults, Rng, seed, sync_to_quiescence};
use tributary_core::hlc::Hlc;
use tributary_core::ids::{NodeId, SensorId};
use tributary_fleet::{Ack, AlertKey, FleetConfig, NodeInfo, SensorInfo, Threshold};

const LOSSY: Faults = Faults {
    loss: 25,
    duplicate: 10,
    faulty_rounds: 60,
};

fn sensor(name: &str, unit: &str) -> SensorInfo {
    SensorInfo {
        name: name.into(),
        unit: unit.into(),
        location: None,
    }
}

#[test]
fn two_replicas_keep_every_edit_of_distinct_fields() {
    let seed = seed(0x5eed_0001);
    let mut rng = Rng::new(seed);
    let hub_id = NodeId(0x1);
    let gw_id = NodeId(0xa1);
    let mut hub = FleetConfig::new(hub_id, 1);
    let mut gw = FleetConfig::new(gw_id, 2);

    // Offline on both sides, touching the same node and sensor.
    hub.set_node_name(gw_id, "pump house").unwrap();
    hub.set_sensor(SensorId(1), &sensor("inlet", "°C")).unwrap();
    hub.set_threshold(
        SensorId(2),
        Threshold {
            open: 0.95,
            close: None,
        },
    )
    .unwrap();
    hub.commit();
    gw.set_node_location(gw_id, Some("basement")).unwrap();
    gw.set_sensor_location(SensorId(1), Some("pipe 3")).unwrap();
    gw.set_threshold(
        SensorId(1),
        Threshold {
            open: 0.7,
            close: Some(0.4),
        },
    )
    .unwrap();
    let alert = AlertKey {
        node: gw_id,
        hlc: Hlc::from_u64(42 << 16),
    };
    gw.ack_alert(
        alert,
        &Ack {
            acked_ms: 1_700_000_000_000,
            who: "field tech".into(),
        },
    )
    .unwrap();

    let mut replicas = [hub, gw];
    sync_to_quiescence(&mut replicas, &[(0, 1)], &mut rng, LOSSY);
    let [hub, gw] = &mut replicas;

    assert_eq!(hub.snapshot(), gw.snapshot(), "seed {seed}");
    assert_eq!(hub.heads(), gw.heads(), "seed {seed}");
    assert_eq!(
        gw.node(gw_id),
        Some(NodeInfo {
            name: "pump house".into(),
            location: Some("basement".into())
        })
    );
    assert_eq!(
        gw.sensor(SensorId(1)),
        Some(SensorInfo {
            name: "inlet".into(),
            unit: "°C".into(),
            location: Some("pipe 3".into())
        })
    );
    assert_eq!(
        hub.threshold(SensorId(1)),
        Some(Threshold {
            open: 0.7,
            close: Some(0.4)
        })
    );
    assert_eq!(
        gw.threshold(SensorId(2)),
        Some(Threshold {
            open: 0.95,
            close: None
        })
    );
    assert_eq!(hub.ack(alert).map(|a| a.who), Some("field tech".into()));
}

#[test]
fn three_replicas_converge_on_conflicts_and_keep_the_rest() {
    let seed = seed(0x5eed_0003);
    let mut rng = Rng::new(seed);
    let mut hub = FleetConfig::new(NodeId(1), 1);
    let mut gw_a = FleetConfig::new(NodeId(2), 1);
    let mut gw_b = FleetConfig::new(NodeId(3), 1);

    // All three rename sensor 7 and set its threshold: a conflict per field.
    for (r, name, open) in [
        (&mut hub, "hub name", 0.9),
        (&mut gw_a, "a name", 0.8),
        (&mut gw_b, "b name", 0.7),
    ] {
        r.set_sensor(SensorId(7), &sensor(name, "bar")).unwrap();
        r.set_threshold(
            SensorId(7),
            Threshold {
                open,
                close: Some(open / 2.0),
            },
        )
        .unwrap();
    }
    // Distinct edits that must all survive.
    hub.set_node(
        NodeId(2),
        &NodeInfo {
            name: "gateway a".into(),
            location: None,
        },
    )
    .unwrap();
    gw_a.set_node_location(NodeId(2), Some("roof")).unwrap();
    gw_b.set_node(
        NodeId(3),
        &NodeInfo {
            name: "gateway b".into(),
            location: Some("yard".into()),
        },
    )
    .unwrap();
    gw_b.set_sensor(SensorId(8), &sensor("flow", "m³/h"))
        .unwrap();

    let mut replicas = [hub, gw_a, gw_b];
    // Star: gateways talk to the hub only, as over MQTT.
    sync_to_quiescence(&mut replicas, &[(0, 1), (0, 2)], &mut rng, LOSSY);

    let snapshot = replicas[0].snapshot();
    for r in &mut replicas[1..] {
        assert_eq!(r.snapshot(), snapshot, "seed {seed}");
    }
    let s7 = &snapshot.sensors[&SensorId(7)];
    assert!(["hub name", "a name", "b name"].contains(&s7.name.as_str()));
    let t7 = snapshot.thresholds[&SensorId(7)];
    // A threshold is written whole: open and close come from one writer.
    assert_eq!(t7.close, Some(t7.open / 2.0));
    assert_eq!(
        snapshot.nodes[&NodeId(2)],
        NodeInfo {
            name: "gateway a".into(),
            location: Some("roof".into())
        }
    );
    assert_eq!(snapshot.nodes[&NodeId(3)].location.as_deref(), Some("yard"));
    assert_eq!(snapshot.sensors[&SensorId(8)].unit, "m³/h");
}

#[test]
fn a_removal_concurrent_with_an_edit_keeps_the_edited_field() {
    let mut rng = Rng::new(seed(0x5eed_0004));
    let mut hub = FleetConfig::new(NodeId(1), 1);
    hub.set_node(
        NodeId(5),
        &NodeInfo {
            name: "old".into(),
            location: Some("x".into()),
        },
    )
    .unwrap();
    let mut gw = FleetConfig::load(&hub.save(), NodeId(5), 1).unwrap();
    assert!(hub.remove_node(NodeId(5)).unwrap());
    gw.set_node_name(NodeId(5), "renamed").unwrap();
    let mut replicas = [hub, gw];
    sync_to_quiescence(&mut replicas, &[(0, 1)], &mut rng, LOSSY);
    // The rename was not seen by the removal, so it survives; the location,
    // which nobody re-set, stays removed.
    for r in &replicas {
        assert_eq!(
            r.node(NodeId(5)),
            Some(NodeInfo {
                name: "renamed".into(),
                location: None
            })
        );
    }
}

/// Automerge does not re-send a change it already sent in a session; when
/// that message is lost, the peer asks for the change and `receive` makes
/// the next `generate` send it again, without a reconnect. (Found by the
/// property test as a livelock: both sides exchanging heads forever.)
#[test]
fn a_lost_change_is_sent_again_when_the_peer_asks_for_it() {
    for lost in 0..4 {
        let mut hub = FleetConfig::new(NodeId(1), 1);
        let mut gw = FleetConfig::new(NodeId(2), 1);
        hub.set_node_name(NodeId(1), "hub").unwrap();
        gw.set_sensor(SensorId(4), &sensor("door", "bool")).unwrap();
        let (mut to_gw, mut to_hub) = (tributary_fleet::Peer::new(), tributary_fleet::Peer::new());
        let mut sent_by_gw = 0;
        let mut steps = 0;
        loop {
            steps += 1;
            assert!(
                steps < 50,
                "no convergence when gateway message {lost} is lost"
            );
            let a = hub.generate(&mut to_gw);
            let b = gw.generate(&mut to_hub);
            if a.is_none() && b.is_none() {
                break;
            }
            if let Some(m) = a {
                let _ = gw.receive(&mut to_hub, &m).unwrap();
            }
            if let Some(m) = b {
                sent_by_gw += 1;
                if sent_by_gw - 1 != lost {
                    let _ = hub.receive(&mut to_gw, &m).unwrap();
                }
            }
        }
        assert_eq!(hub.heads(), gw.heads(), "message {lost} lost");
        assert_eq!(hub.sensor(SensorId(4)).map(|s| s.name), Some("door".into()));
    }
}
