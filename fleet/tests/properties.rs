//! Random offline edit scripts on three replicas, then sync: all replicas
//! end equal, and every field ends with the final value of one replica that
//! wrote it (exactly that value when only one replica wrote it).

mod sim;

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sim::{Faults, Rng, sync_to_quiescence};
use tributary_core::hlc::Hlc;
use tributary_core::ids::{NodeId, SensorId};
use tributary_fleet::{Ack, AlertKey, FleetConfig, FleetSnapshot, SensorInfo, Threshold};

#[derive(Clone, Debug)]
enum Edit {
    NodeName(u64, String),
    NodeLocation(u64, Option<String>),
    RemoveNode(u64),
    Sensor(u32, String, String, Option<String>),
    SensorLocation(u32, Option<String>),
    RemoveSensor(u32),
    Threshold(u32, f64, Option<f64>),
    ClearThreshold(u32),
    Ack(u64, u64, u64, String),
}

/// One document field as the model sees it: section, id, field.
type Field = (&'static str, String, &'static str);

fn text() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["a", "b", "c", "pump", "°C", "north wing"]).prop_map(String::from)
}

fn edit() -> impl Strategy<Value = Edit> {
    let node = 0u64..3;
    let sensor = 0u32..3;
    prop_oneof![
        (node.clone(), text()).prop_map(|(n, s)| Edit::NodeName(n, s)),
        (node.clone(), prop::option::of(text())).prop_map(|(n, s)| Edit::NodeLocation(n, s)),
        node.clone().prop_map(Edit::RemoveNode),
        (sensor.clone(), text(), text(), prop::option::of(text()))
            .prop_map(|(i, n, u, l)| Edit::Sensor(i, n, u, l)),
        (sensor.clone(), prop::option::of(text())).prop_map(|(i, l)| Edit::SensorLocation(i, l)),
        sensor.clone().prop_map(Edit::RemoveSensor),
        (sensor.clone(), 1u32..=100, prop::option::of(0u32..100)).prop_map(|(i, o, c)| {
            let open = f64::from(o) / 100.0;
            Edit::Threshold(
                i,
                open,
                c.map(|c| f64::from(c) / 100.0).filter(|c| *c < open),
            )
        }),
        sensor.prop_map(Edit::ClearThreshold),
        (node, 0u64..3, any::<u64>(), text()).prop_map(|(n, h, ms, who)| Edit::Ack(n, h, ms, who)),
    ]
}

/// Applies an edit and records the final value of each field it writes.
fn apply(doc: &mut FleetConfig, e: &Edit, finals: &mut BTreeMap<Field, Option<String>>) {
    let mut set = |f: Field, v: Option<String>| {
        finals.insert(f, v);
    };
    match e {
        Edit::NodeName(n, s) => {
            doc.set_node_name(NodeId(*n), s).unwrap();
            set(("node", n.to_string(), "name"), Some(s.clone()));
        }
        Edit::NodeLocation(n, s) => {
            doc.set_node_location(NodeId(*n), s.as_deref()).unwrap();
            set(("node", n.to_string(), "location"), s.clone());
        }
        Edit::RemoveNode(n) => {
            doc.remove_node(NodeId(*n)).unwrap();
            set(("node", n.to_string(), "name"), None);
            set(("node", n.to_string(), "location"), None);
        }
        Edit::Sensor(i, name, unit, location) => {
            let info = SensorInfo {
                name: name.clone(),
                unit: unit.clone(),
                location: location.clone(),
            };
            doc.set_sensor(SensorId(*i), &info).unwrap();
            set(("sensor", i.to_string(), "name"), Some(name.clone()));
            set(("sensor", i.to_string(), "unit"), Some(unit.clone()));
            set(("sensor", i.to_string(), "location"), location.clone());
        }
        Edit::SensorLocation(i, s) => {
            doc.set_sensor_location(SensorId(*i), s.as_deref()).unwrap();
            set(("sensor", i.to_string(), "location"), s.clone());
        }
        Edit::RemoveSensor(i) => {
            doc.remove_sensor(SensorId(*i)).unwrap();
            for f in ["name", "unit", "location"] {
                set(("sensor", i.to_string(), f), None);
            }
        }
        Edit::Threshold(i, open, close) => {
            doc.set_threshold(
                SensorId(*i),
                Threshold {
                    open: *open,
                    close: *close,
                },
            )
            .unwrap();
            set(
                ("threshold", i.to_string(), ""),
                Some(format!("{open}/{close:?}")),
            );
        }
        Edit::ClearThreshold(i) => {
            doc.clear_threshold(SensorId(*i)).unwrap();
            set(("threshold", i.to_string(), ""), None);
        }
        Edit::Ack(n, h, ms, who) => {
            let key = AlertKey {
                node: NodeId(*n),
                hlc: Hlc::from_u64(*h),
            };
            doc.ack_alert(
                key,
                &Ack {
                    acked_ms: *ms,
                    who: who.clone(),
                },
            )
            .unwrap();
            set(("ack", format!("{n}/{h}"), ""), Some(format!("{ms}/{who}")));
        }
    }
}

/// What the merged snapshot shows for a field; `None` when the field is
/// not observable through the typed getters (a location of a node with no
/// name; any field of a sensor missing its name or unit).
fn observe(s: &FleetSnapshot, (section, id, field): &Field) -> Option<Option<String>> {
    match *section {
        "node" => {
            let node = s.nodes.get(&NodeId(id.parse().ok()?));
            match *field {
                "name" => Some(node.map(|n| n.name.clone())),
                _ => node.map(|n| n.location.clone()),
            }
        }
        "sensor" => {
            let sensor = s.sensors.get(&SensorId(id.parse().ok()?))?;
            Some(match *field {
                "name" => Some(sensor.name.clone()),
                "unit" => Some(sensor.unit.clone()),
                _ => sensor.location.clone(),
            })
        }
        "threshold" => Some(
            s.thresholds
                .get(&SensorId(id.parse().ok()?))
                .map(|t| format!("{}/{:?}", t.open, t.close)),
        ),
        _ => {
            let (n, h) = id.split_once('/')?;
            let key = AlertKey {
                node: NodeId(n.parse().ok()?),
                hlc: Hlc::from_u64(h.parse().ok()?),
            };
            Some(
                s.acks
                    .get(&key)
                    .map(|a| format!("{}/{}", a.acked_ms, a.who)),
            )
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn concurrent_scripts_converge_without_losing_distinct_edits(
        scripts in prop::collection::vec(prop::collection::vec(edit(), 0..12), 3),
        net_seed in any::<u64>(),
    ) {
        let mut replicas: Vec<FleetConfig> =
            (0..3).map(|i| FleetConfig::new(NodeId(100 + i), i)).collect();
        let mut finals: Vec<BTreeMap<Field, Option<String>>> = vec![BTreeMap::new(); 3];
        for (i, script) in scripts.iter().enumerate() {
            for e in script {
                apply(&mut replicas[i], e, &mut finals[i]);
            }
        }
        let faults = Faults { loss: 20, duplicate: 10, faulty_rounds: 40 };
        sync_to_quiescence(&mut replicas, &[(0, 1), (0, 2)], &mut Rng::new(net_seed), faults);

        let merged = replicas[0].snapshot();
        for r in &replicas[1..] {
            prop_assert_eq!(&r.snapshot(), &merged);
        }
        let fields: BTreeSet<&Field> = finals.iter().flat_map(|f| f.keys()).collect();
        for field in fields {
            let candidates: BTreeSet<&Option<String>> =
                finals.iter().filter_map(|f| f.get(field)).collect();
            if let Some(seen) = observe(&merged, field) {
                prop_assert!(candidates.contains(&seen),
                    "{:?} = {:?}, not one of {:?}", field, seen, candidates);
            }
        }
        // Nothing appears that no replica wrote.
        for id in merged.nodes.keys() {
            prop_assert!(finals.iter().any(|f| f.contains_key(&("node", id.0.to_string(), "name"))));
        }
        for id in merged.sensors.keys().chain(merged.thresholds.keys()) {
            let wrote = |f: &BTreeMap<Field, Option<String>>| {
                f.keys().any(|(_, i, _)| *i == id.0.to_string())
            };
            prop_assert!(finals.iter().any(wrote));
        }
    }
}
