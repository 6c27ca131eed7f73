//! Sync messages that are garbage, truncated or corrupted are refused with
//! reason `malformed_sync` (or happen to be harmless), never a panic.

use proptest::prelude::*;
use tributary_core::ids::{NodeId, SensorId};
use tributary_fleet::{FleetConfig, Peer, SensorInfo};

/// A real first sync message carrying changes: from a hub with a sensor to
/// a peer that has answered once (so the hub sends its changes).
fn real_messages() -> Vec<Vec<u8>> {
    let mut hub = FleetConfig::new(NodeId(1), 1);
    hub.set_sensor(
        SensorId(1),
        &SensorInfo {
            name: "x".into(),
            unit: "V".into(),
            location: Some("y".into()),
        },
    )
    .unwrap();
    let mut gw = FleetConfig::new(NodeId(2), 1);
    let (mut to_gw, mut to_hub) = (Peer::new(), Peer::new());
    let mut seen = Vec::new();
    for _ in 0..10 {
        let a = hub.generate(&mut to_gw);
        let b = gw.generate(&mut to_hub);
        if a.is_none() && b.is_none() {
            break;
        }
        if let Some(m) = a {
            let _ = gw.receive(&mut to_hub, &m).unwrap();
            seen.push(m);
        }
        if let Some(m) = b {
            let _ = hub.receive(&mut to_gw, &m).unwrap();
            seen.push(m);
        }
    }
    assert!(gw.sensor(SensorId(1)).is_some());
    seen
}

fn receive_fresh(bytes: &[u8]) -> Result<(), &'static str> {
    let mut doc = FleetConfig::new(NodeId(9), 1);
    let mut peer = Peer::new();
    let result = doc
        .receive(&mut peer, bytes)
        .map(|_| ())
        .map_err(|e| e.reason());
    // Whatever happened, the document is still usable.
    let _ = doc.snapshot();
    let _ = doc.generate(&mut peer);
    result
}

#[test]
fn garbage_is_malformed_sync() {
    assert_eq!(receive_fresh(b""), Err("malformed_sync"));
    assert_eq!(receive_fresh(b"hello"), Err("malformed_sync"));
    assert_eq!(receive_fresh(&[0x42; 64]), Err("malformed_sync"));
}

#[test]
fn every_truncation_of_real_messages_is_refused_or_harmless() {
    for m in real_messages() {
        for cut in 0..m.len() {
            if let Err(reason) = receive_fresh(&m[..cut]) {
                assert_eq!(reason, "malformed_sync");
            }
        }
    }
}

#[test]
fn garbage_peer_state_is_refused() {
    assert_eq!(
        Peer::decode(b"\xff\x00garbage").unwrap_err().reason(),
        "malformed_peer_state"
    );
    let peer = Peer::new();
    assert!(Peer::decode(&peer.encode()).is_ok());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_are_refused_or_harmless(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        if let Err(reason) = receive_fresh(&bytes) {
            prop_assert_eq!(reason, "malformed_sync");
        }
    }

    #[test]
    fn corrupted_real_messages_are_refused_or_harmless(
        which in any::<prop::sample::Index>(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..4),
    ) {
        let messages = real_messages();
        let mut m = which.get(&messages).clone();
        for (at, x) in flips {
            let i = at.index(m.len());
            m[i] ^= x | 1;
        }
        if let Err(reason) = receive_fresh(&m) {
            prop_assert_eq!(reason, "malformed_sync");
        }
    }
}
