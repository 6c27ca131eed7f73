//! The replica a daemon runs: persistence across restarts, rollback of a
//! failed batch, compaction, and recovery from a lost sync message.

use tributary_core::ids::{NodeId, SensorId};
use tributary_fleet::{Changed, FleetError, NodeInfo, Replica, ReplicaError, Threshold};

const HUB: NodeId = NodeId(0x0100);
const GW: NodeId = NodeId(0x0200);

fn threshold(open: f64) -> Threshold {
    Threshold {
        open,
        close: Some(open / 2.0),
    }
}

#[test]
fn edits_survive_a_restart_and_the_file_is_compacted_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.sqlite3");
    {
        let mut r = Replica::open(&path, GW, 1).unwrap();
        for i in 0..10u32 {
            r.edit(|d| d.set_threshold(SensorId(i), threshold(0.9)))
                .unwrap();
        }
        // The base plus one chunk per edit.
        assert_eq!(r.stored_chunks().unwrap(), 11);
    }
    let r = Replica::open(&path, GW, 2).unwrap();
    assert_eq!(r.stored_chunks().unwrap(), 1);
    assert_eq!(r.doc().thresholds().len(), 10);
    assert_eq!(r.doc().threshold(SensorId(3)), Some(threshold(0.9)));
}

#[test]
fn a_failed_batch_keeps_none_of_its_edits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.sqlite3");
    let mut r = Replica::open(&path, GW, 1).unwrap();
    let err = r
        .edit(|d| {
            d.set_node_name(GW, "pump house")?;
            d.set_threshold(SensorId(1), threshold(1.5))
        })
        .unwrap_err();
    assert_eq!(err.reason(), "threshold_out_of_range");
    assert_eq!(r.doc().node(GW), None);
    drop(r);
    let r = Replica::open(&path, GW, 2).unwrap();
    assert!(r.doc().nodes().is_empty());
    assert!(r.doc().thresholds().is_empty());
}

#[test]
fn many_edits_are_compacted_and_reload_equal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.sqlite3");
    let mut r = Replica::open(&path, GW, 1).unwrap();
    for i in 0..1200u32 {
        r.edit(|d| d.set_threshold(SensorId(i % 50), threshold(0.5 + f64::from(i % 40) / 100.0)))
            .unwrap();
    }
    // Compacted along the way: never more than the chunk cap (+ the base).
    assert!(r.stored_chunks().unwrap() <= 513);
    let before = r.doc().snapshot();
    drop(r);
    let r = Replica::open(&path, GW, 2).unwrap();
    assert_eq!(r.doc().snapshot(), before);
}

#[test]
fn a_file_that_is_not_a_fleet_document_is_refused_not_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fleet.sqlite3");
    drop(Replica::open(&path, GW, 1).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE fleet_chunk SET bytes = x'00010203'", [])
        .unwrap();
    drop(conn);
    let err = Replica::open(&path, GW, 2).unwrap_err();
    assert!(
        matches!(err, ReplicaError::Fleet(FleetError::MalformedDocument(_))),
        "{err:?}"
    );
    // Still there for an operator to inspect.
    let conn = rusqlite::Connection::open(&path).unwrap();
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM fleet_chunk", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}

/// Delivers messages between two replicas until neither has anything to
/// send, dropping the `drop_nth` message (0-based) if given; returns how
/// many were delivered.
fn exchange(hub: &mut Replica, gw: &mut Replica, now: u64, drop_nth: Option<usize>) -> usize {
    let mut sent = 0;
    let mut delivered = 0;
    loop {
        let mut progress = false;
        if let Some(m) = gw.generate(HUB, now) {
            progress = true;
            if drop_nth != Some(sent) {
                let _ = hub.receive(GW, &m, now).unwrap();
                delivered += 1;
            }
            sent += 1;
        }
        if let Some(m) = hub.generate(GW, now) {
            progress = true;
            if drop_nth != Some(sent) {
                let _ = gw.receive(HUB, &m, now).unwrap();
                delivered += 1;
            }
            sent += 1;
        }
        if !progress {
            return delivered;
        }
    }
}

#[test]
fn a_lost_message_stalls_the_peer_until_it_is_reset() {
    let mut stalls = 0;
    for drop_nth in 0..8 {
        let dir = tempfile::tempdir().unwrap();
        let mut hub = Replica::open(&dir.path().join("hub.sqlite3"), HUB, 1).unwrap();
        let mut gw = Replica::open(&dir.path().join("gw.sqlite3"), GW, 1).unwrap();
        hub.edit(|d| {
            d.set_node(
                GW,
                &NodeInfo {
                    name: "north".into(),
                    location: None,
                },
            )
        })
        .unwrap();
        gw.edit(|d| d.set_threshold(SensorId(7), threshold(0.95)))
            .unwrap();
        exchange(&mut hub, &mut gw, 1_000, Some(drop_nth));
        if hub.doc().snapshot() != gw.doc().snapshot() {
            // Both wait for an answer that will never come; the side that
            // sent the lost message notices after the timeout.
            stalls += 1;
            let mut stalled = gw.stalled(31_000, 30_000, u64::MAX);
            stalled.extend(hub.stalled(31_000, 30_000, u64::MAX));
            assert!(!stalled.is_empty(), "drop {drop_nth}: nobody noticed");
            assert!(gw.stalled(30_999, 30_000, u64::MAX).is_empty());
            gw.reset_peer(HUB);
            hub.reset_peer(GW);
            assert!(gw.stalled(31_000, 30_000, u64::MAX).is_empty());
            exchange(&mut hub, &mut gw, 31_000, None);
        }
        assert_eq!(hub.doc().snapshot(), gw.doc().snapshot(), "drop {drop_nth}");
        assert_eq!(gw.doc().node(GW).map(|n| n.name), Some("north".into()));
        assert_eq!(hub.doc().threshold(SensorId(7)), Some(threshold(0.95)));
        // Both persisted what they received.
        let snap = hub.doc().snapshot();
        drop(hub);
        let hub = Replica::open(&dir.path().join("hub.sqlite3"), HUB, 2).unwrap();
        assert_eq!(hub.doc().snapshot(), snap);
    }
    assert!(
        stalls > 0,
        "no dropped message stalled the sync: the test tests nothing"
    );
}

#[test]
fn a_malformed_message_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = Replica::open(&dir.path().join("hub.sqlite3"), HUB, 1).unwrap();
    let before = hub.doc().snapshot();
    let err = hub.receive(GW, b"\x42not automerge", 0).unwrap_err();
    assert_eq!(err.reason(), "malformed_sync");
    assert_eq!(hub.doc().snapshot(), before);
    assert_eq!(hub.stored_chunks().unwrap(), 1);
    // An empty sync message from a fresh peer is well-formed and harmless.
    let dir2 = tempfile::tempdir().unwrap();
    let mut gw = Replica::open(&dir2.path().join("gw.sqlite3"), GW, 1).unwrap();
    let first = gw.generate(HUB, 0).unwrap();
    assert_eq!(hub.receive(GW, &first, 0).unwrap(), Changed::Unchanged);
}
