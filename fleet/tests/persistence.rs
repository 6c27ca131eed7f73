//! save/load round trips, incremental chunks, and garbage on load.

mod sim;

use automerge::transaction::Transactable;
use proptest::prelude::*;
use sim::{Faults, Rng, sync_to_quiescence};
use tributary_core::ids::{NodeId, SensorId};
use tributary_fleet::{FleetConfig, NodeInfo, SensorInfo, Threshold};

fn populated() -> FleetConfig {
    let mut doc = FleetConfig::new(NodeId(1), 1);
    for n in 0..5u64 {
        doc.set_node(
            NodeId(n),
            &NodeInfo {
                name: format!("gw {n}"),
                location: Some("site".into()),
            },
        )
        .unwrap();
        for s in 0..4u32 {
            let id = SensorId(n as u32 * 10 + s);
            doc.set_sensor(
                id,
                &SensorInfo {
                    name: format!("s{s}"),
                    unit: "°C".into(),
                    location: None,
                },
            )
            .unwrap();
            doc.set_threshold(
                id,
                Threshold {
                    open: 0.9,
                    close: Some(0.3),
                },
            )
            .unwrap();
        }
    }
    doc
}

#[test]
fn save_then_load_gives_the_same_document() {
    let mut doc = populated();
    let bytes = doc.save();
    let mut loaded = FleetConfig::load(&bytes, NodeId(1), 2).unwrap();
    assert_eq!(loaded.snapshot(), doc.snapshot());
    assert_eq!(loaded.heads(), doc.heads());
    // Edits after a restart (new session) keep working and survive again.
    loaded.set_node_name(NodeId(3), "renamed").unwrap();
    let again = FleetConfig::load(&loaded.save(), NodeId(1), 3).unwrap();
    assert_eq!(again.node(NodeId(3)).unwrap().name, "renamed");
}

#[test]
fn a_base_plus_appended_chunks_loads_as_the_whole() {
    let mut doc = populated();
    let mut stored = doc.save();
    assert!(doc.save_incremental().is_empty(), "nothing new since save");
    doc.set_node_location(NodeId(0), Some("moved")).unwrap();
    stored.extend(doc.save_incremental());
    doc.clear_threshold(SensorId(1)).unwrap();
    doc.commit();
    stored.extend(doc.save_incremental());
    let loaded = FleetConfig::load(&stored, NodeId(1), 9).unwrap();
    assert_eq!(loaded.snapshot(), doc.snapshot());
    assert_eq!(
        loaded.node(NodeId(0)).unwrap().location.as_deref(),
        Some("moved")
    );
    assert_eq!(loaded.threshold(SensorId(1)), None);
    // Compaction: one save of the loaded document holds the same.
    let mut loaded = loaded;
    let compact = loaded.save();
    assert!(compact.len() <= stored.len());
    assert_eq!(
        FleetConfig::load(&compact, NodeId(1), 10)
            .unwrap()
            .snapshot(),
        doc.snapshot()
    );
}

#[test]
fn received_changes_are_in_the_next_incremental_save() {
    let mut hub = populated();
    let mut gw = FleetConfig::load(&hub.save(), NodeId(2), 1).unwrap();
    let mut stored = gw.save();
    hub.set_sensor_location(SensorId(2), Some("tank")).unwrap();
    let mut replicas = [hub, gw];
    let perfect = Faults {
        loss: 0,
        duplicate: 0,
        faulty_rounds: 0,
    };
    sync_to_quiescence(&mut replicas, &[(0, 1)], &mut Rng::new(1), perfect);
    let [_, mut gw] = replicas;
    stored.extend(gw.save_incremental());
    let restarted = FleetConfig::load(&stored, NodeId(2), 2).unwrap();
    assert_eq!(
        restarted.sensor(SensorId(2)).unwrap().location.as_deref(),
        Some("tank")
    );
}

#[test]
fn non_fleet_documents_are_refused_with_a_reason() {
    let reason = |bytes: &[u8]| FleetConfig::load(bytes, NodeId(1), 1).unwrap_err().reason();
    assert_eq!(reason(b"not automerge at all"), "malformed_document");
    assert_eq!(reason(&[]), "unsupported_schema");
    // A valid Automerge document without the fleet schema.
    let mut other = automerge::AutoCommit::new();
    assert_eq!(reason(&other.save()), "unsupported_schema");
    // A newer schema is refused, so an old binary never edits it.
    other.put(automerge::ROOT, "schema", 2u64).unwrap();
    assert_eq!(reason(&other.save()), "unsupported_schema");
    // The right schema number but no sections.
    other.put(automerge::ROOT, "schema", 1u64).unwrap();
    assert_eq!(reason(&other.save()), "missing_section");
}

#[test]
fn truncated_saves_are_refused_never_a_panic() {
    let bytes = populated().save();
    for cut in (0..bytes.len()).step_by(7) {
        if let Ok(doc) = FleetConfig::load(&bytes[..cut], NodeId(1), 1) {
            let _ = doc.snapshot();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_on_load(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(e) = FleetConfig::load(&bytes, NodeId(1), 1) {
            prop_assert!(["malformed_document", "unsupported_schema", "missing_section"].contains(&e.reason()));
        }
    }

    #[test]
    fn corrupted_saves_never_panic_on_load(flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4)) {
        let mut bytes = populated().save();
        for (at, x) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= x | 1;
        }
        if let Ok(doc) = FleetConfig::load(&bytes, NodeId(1), 1) {
            let _ = doc.snapshot();
        }
    }
}
