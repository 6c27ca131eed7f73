//! The SQLite merge store against the core's in-memory join: same entries,
//! any delivery → the same state, bit for bit.

use proptest::prelude::*;
use tributary_core::crdt::aggregate::{AggregateState, Entry, Key};
use tributary_core::ids::{Bucket, NodeId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;
use tributary_core::sync::{HubConfig, HubSync};
use tributary_hub::store::{
    MergeError, MergeOutcome, MergeStore, NodeBatch, Progress, RangeQuery, SqliteOptions,
    SqliteStore,
};

/// Node ids on both sides of 2^63: SQLite orders the stored i64 bits
/// differently from the u64 ids, the merge must not.
const NODES: [NodeId; 4] = [
    NodeId(1),
    NodeId(0x7fff_ffff_ffff_fff0),
    NodeId(0x8000_0000_0000_0000),
    NodeId(u64::MAX - 1),
];

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    // NORMAL keeps the property tests fast; durability is the same code.
    SqliteStore::open_with(&SqliteOptions {
        path: dir.path().join("hub.db"),
        synchronous_full: false,
    })
    .unwrap()
}

/// One write: (node index, sensor, resolution index, time, value).
type Op = (usize, u32, usize, u64, f64);

fn value() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(0.0),
        Just(-0.0),
        -1e3f64..1e3,
        -1e150f64..1e150,
        (-1000i32..1000).prop_map(|i| f64::from(i) / 8.0),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    (0..NODES.len(), 0u32..3, 0usize..4, 0u64..400_000, value())
}

/// Node `n`'s state after its first `upto` writes.
fn snapshot(ops: &[Op], n: usize, upto: usize) -> AggregateState {
    let mut s = AggregateState::new();
    for &(_, sensor, r, t, x) in ops.iter().filter(|o| o.0 == n).take(upto) {
        let key = Key::containing(SensorId(sensor), Resolution::ALL[r], Timestamp(t));
        s.record(NODES[n], key, Timestamp(t), x).unwrap();
    }
    s
}

/// A delivery: node `n`'s entries written after its `lo`-th write as of its
/// `hi`-th, as a delta batch would carry them (version order).
fn delta(ops: &[Op], n: usize, lo: usize, hi: usize) -> Vec<(Key, Entry)> {
    let (lo, hi) = (lo.min(hi), lo.max(hi));
    let after = snapshot(ops, n, lo).version_of(NODES[n]);
    snapshot(ops, n, hi).node_entries_since(NODES[n], after)
}

fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut x = seed | 1;
    for i in (1..v.len()).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.swap(i, (x % (i as u64 + 1)) as usize);
    }
}

fn full_range(sensor: u32, resolution: Resolution) -> RangeQuery {
    RangeQuery {
        sensor: SensorId(sensor),
        resolution,
        from: Timestamp(0),
        to: Timestamp(u64::MAX),
        limit: usize::MAX,
    }
}

/// Every merged bucket the store serves, through `merged`, in key order.
fn store_merged(store: &SqliteStore) -> Vec<(Key, Summary)> {
    let mut out = Vec::new();
    for sensor in 0..3 {
        for r in Resolution::ALL {
            for (start, s) in store.merged(&full_range(sensor, r)).unwrap() {
                let key = Key::containing(SensorId(sensor), r, start);
                out.push((key, s));
            }
        }
    }
    out
}

fn assert_same(store: &SqliteStore, core: &AggregateState) -> Result<(), TestCaseError> {
    let stored = store.all_entries().unwrap();
    let expected: Vec<_> = core.iter_entries().collect();
    prop_assert_eq!(stored, expected);
    // Summary equality is bitwise.
    let merged: Vec<_> = core.iter_merged().collect();
    prop_assert_eq!(store_merged(store), merged);
    for n in NODES {
        let v = store
            .nodes()
            .unwrap()
            .iter()
            .find(|r| r.node == n)
            .map_or(0, |r| r.version_high);
        prop_assert_eq!(v, core.version_of(n));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Shuffled, duplicated, split, stale and version-reusing deliveries
    /// from several nodes give exactly the core's join; replaying all of it
    /// changes nothing.
    #[test]
    fn sqlite_merge_equals_core_join(
        ops in proptest::collection::vec(op(), 1..80),
        deliveries in proptest::collection::vec((0..NODES.len(), 0usize..40, 0usize..40), 0..12),
        splits in proptest::collection::vec(1usize..6, 1..8),
        reuse in proptest::collection::vec((0..NODES.len(), any::<prop::sample::Index>(), value()), 0..4),
        seed in any::<u64>(),
    ) {
        let mut batches: Vec<(NodeId, Vec<(Key, Entry)>)> = deliveries
            .iter()
            .map(|&(n, lo, hi)| (NODES[n], delta(&ops, n, lo, hi)))
            .collect();
        // Every node's full history, twice: the run converges, with duplicates.
        for (n, node) in NODES.iter().enumerate() {
            batches.push((*node, delta(&ops, n, 0, usize::MAX)));
            batches.push((*node, delta(&ops, n, 0, usize::MAX)));
        }
        // A node that lost its counter: same version, another summary.
        for (n, idx, x) in &reuse {
            let entries = delta(&ops, *n, 0, usize::MAX);
            if entries.is_empty() { continue; }
            let (k, mut e) = entries[idx.index(entries.len())];
            e.summary.combine(&Summary::of(e.summary.first_ts, *x).unwrap());
            batches.push((NODES[*n], vec![(k, e)]));
        }
        // Split batches into chunks of varying size, then shuffle them.
        let mut chunks: Vec<(NodeId, Vec<(Key, Entry)>)> = Vec::new();
        for (i, (node, entries)) in batches.iter().enumerate() {
            for c in entries.chunks(splits[i % splits.len()]) {
                chunks.push((*node, c.to_vec()));
            }
        }
        shuffle(&mut chunks, seed);

        let dir = tempfile::tempdir().unwrap();
        let mut store = open(&dir);
        let mut core = AggregateState::new();
        let mut total = 0u64;
        // One batch per transaction, or groups of several (apply_group).
        let group = usize::try_from(seed % 4).unwrap() + 1;
        for g in chunks.chunks(group) {
            let mut expected = Vec::new();
            for (node, entries) in g {
                let mut changed = 0u64;
                for (k, e) in entries {
                    changed += u64::from(core.join_entry(*k, *node, *e));
                }
                // The same entries change the same state in the same order.
                expected.push(MergeOutcome { applied: changed, stale: entries.len() as u64 - changed });
                total += entries.len() as u64;
            }
            let out = if let [(node, entries)] = g {
                vec![store.apply(*node, entries).unwrap()]
            } else {
                let batches: Vec<NodeBatch<'_>> = g
                    .iter()
                    .map(|(node, entries)| NodeBatch { node: *node, entries, progress: None })
                    .collect();
                store.apply_group(&batches).unwrap()
            };
            prop_assert_eq!(out, expected);
        }
        assert_same(&store, &core)?;

        // Replaying everything, in another order, changes nothing.
        shuffle(&mut chunks, seed.rotate_left(17));
        let mut stale = 0u64;
        for (node, entries) in &chunks {
            let out = store.apply(*node, entries).unwrap();
            prop_assert_eq!(out.applied, 0);
            stale += out.stale;
        }
        prop_assert_eq!(stale, total);
        assert_same(&store, &core)?;

        // A restart keeps everything.
        drop(store);
        let store = open(&dir);
        assert_same(&store, &core)?;
        prop_assert!(store.integrity_ok().unwrap());
    }
}

fn entry(version: u64, t: u64, x: f64) -> Entry {
    Entry {
        version,
        summary: Summary::of(Timestamp(t), x).unwrap(),
    }
}

fn minute(sensor: u32, t: u64) -> Key {
    Key::containing(SensorId(sensor), Resolution::Minute, Timestamp(t))
}

#[test]
fn malformed_entries_reject_the_whole_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let n = NodeId(7);
    store.apply(n, &[(minute(1, 0), entry(1, 0, 1.0))]).unwrap();
    let before = (store.all_entries().unwrap(), store.nodes().unwrap());

    let good = (minute(1, 60_000), entry(2, 60_000, 2.0));
    let mut nan = entry(3, 0, 1.0);
    nan.summary.sum = f64::NAN;
    let mut inf = entry(3, 0, 1.0);
    inf.summary.max = f64::INFINITY;
    let mut inverted = entry(3, 0, 1.0);
    inverted.summary.min = 5.0;
    let mut empty_with_data = entry(3, 0, 1.0);
    empty_with_data.summary.count = 0;
    let empty = Entry {
        version: 3,
        summary: Summary::EMPTY,
    };
    let hostile_bucket = Key::new(SensorId(1), Resolution::Day, Bucket(u64::MAX));
    let cases: Vec<((Key, Entry), &str)> = vec![
        ((minute(1, 0), nan), "summary_not_finite"),
        ((minute(1, 0), inf), "summary_not_finite"),
        ((minute(1, 0), inverted), "summary_bounds_inverted"),
        ((minute(1, 0), empty_with_data), "empty_entry"),
        ((minute(1, 0), empty), "empty_entry"),
        ((minute(1, 0), entry(0, 0, 1.0)), "version_out_of_range"),
        (
            (minute(1, 0), entry(u64::MAX, 0, 1.0)),
            "version_out_of_range",
        ),
        (
            (minute(1, 0), entry(1 << 63, 0, 1.0)),
            "version_out_of_range",
        ),
        ((hostile_bucket, entry(3, 0, 1.0)), "bucket_out_of_range"),
        ((minute(1, 0), entry(3, 60_000, 1.0)), "time_outside_bucket"),
    ];
    for (bad, reason) in cases {
        let err = store.apply(n, &[good, good, bad, good]).unwrap_err();
        match &err {
            MergeError::Invalid { index, reason: r } => {
                assert_eq!((*index, *r), (2, reason), "{bad:?}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(err.reason(), reason);
        assert!(err.is_rejection());
        assert_eq!(
            (store.all_entries().unwrap(), store.nodes().unwrap()),
            before,
            "nothing of a rejected batch is applied"
        );
    }
    let err = store
        .apply_with(
            n,
            &[good],
            Some(Progress {
                seen_ms: 1,
                watermark: u64::MAX,
            }),
        )
        .unwrap_err();
    assert_eq!(err.reason(), "watermark_out_of_range");
    assert_eq!(
        (store.all_entries().unwrap(), store.nodes().unwrap()),
        before
    );
    // In a group, one invalid batch rejects the group, with its position.
    let bad = [(minute(1, 0), entry(0, 0, 1.0))];
    let good_batch = [good];
    let group = [
        NodeBatch {
            node: n,
            entries: &good_batch,
            progress: None,
        },
        NodeBatch {
            node: NodeId(8),
            entries: &bad,
            progress: None,
        },
    ];
    let err = store.apply_group(&group).unwrap_err();
    assert!(
        matches!(&err, MergeError::InvalidBatch { batch: 1, .. }),
        "{err:?}"
    );
    assert_eq!(err.reason(), "version_out_of_range");
    assert_eq!(
        (store.all_entries().unwrap(), store.nodes().unwrap()),
        before
    );
    // The largest storable version is accepted and wins.
    let top = (minute(1, 0), entry(i64::MAX as u64, 0, 9.0));
    assert_eq!(
        store.apply(n, &[top]).unwrap(),
        MergeOutcome {
            applied: 1,
            stale: 0
        }
    );
}

#[test]
fn progress_is_monotonic_and_restores_hub_sync() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (NodeId(0xa), NodeId(u64::MAX));
    {
        let mut store = open(&dir);
        store.touch(a, 5).unwrap();
        let p = |seen_ms, watermark| Some(Progress { seen_ms, watermark });
        store
            .apply_with(a, &[(minute(1, 0), entry(4, 0, 1.0))], p(10, 4))
            .unwrap();
        // A late, lower ack: the watermark stays; last seen is the newest report.
        store
            .apply_with(a, &[(minute(1, 0), entry(2, 0, 1.0))], p(8, 2))
            .unwrap();
        store.apply_with(b, &[], p(20, 9)).unwrap();
        store
            .apply(b, &[(minute(2, 0), entry(12, 0, 3.0))])
            .unwrap();
        let nodes = store.nodes().unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(
            (
                nodes[0].node,
                nodes[0].version_high,
                nodes[0].watermark,
                nodes[0].last_seen_ms
            ),
            (a, 4, 4, Some(8))
        );
        assert_eq!(
            (
                nodes[1].node,
                nodes[1].version_high,
                nodes[1].watermark,
                nodes[1].last_seen_ms
            ),
            (b, 12, 9, Some(20))
        );
    }
    let store = open(&dir);
    assert_eq!(store.watermarks().unwrap(), vec![(a, 4), (b, 9)]);
    let hub = HubSync::restore(HubConfig::default(), store.watermarks().unwrap());
    assert_eq!((hub.watermark(a), hub.watermark(b)), (4, 9));
    assert_eq!(store.node(NodeId(3)).unwrap(), None);
    assert_eq!(store.node(a).unwrap().map(|r| r.watermark), Some(4));
}

#[test]
fn merged_and_per_node_respect_range_limit_and_node_order() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let (hi, lo) = (NodeId(u64::MAX), NodeId(2));
    let mut core = AggregateState::new();
    for m in 0..10u64 {
        for (node, x) in [(hi, 0.1), (lo, 0.2)] {
            let (k, e) = (
                minute(4, m * 60_000),
                entry(m + 1, m * 60_000 + 5, x * m as f64),
            );
            store.apply(node, &[(k, e)]).unwrap();
            core.join_entry(k, node, e);
        }
    }
    let q = RangeQuery {
        sensor: SensorId(4),
        resolution: Resolution::Minute,
        from: Timestamp(120_000),
        to: Timestamp(600_000),
        limit: 3,
    };
    let merged = store.merged(&q).unwrap();
    let starts: Vec<u64> = merged.iter().map(|(t, _)| t.0).collect();
    assert_eq!(starts, vec![120_000, 180_000, 240_000]);
    for (t, s) in &merged {
        assert_eq!(*s, core.merged(&minute(4, t.0)));
    }
    let per = store.per_node(&q).unwrap();
    assert_eq!(per.len(), 6);
    assert_eq!(
        per.iter().map(|p| p.node).take(2).collect::<Vec<_>>(),
        vec![lo, hi],
        "ascending u64 ids, although u64::MAX is -1 in SQL"
    );
    // A range that starts inside a bucket excludes it; an empty range is empty.
    let q2 = RangeQuery {
        from: Timestamp(60_001),
        to: Timestamp(180_000),
        limit: 100,
        ..q
    };
    assert_eq!(store.merged(&q2).unwrap().len(), 1);
    let q3 = RangeQuery {
        from: Timestamp(5),
        to: Timestamp(5),
        ..q
    };
    assert!(store.merged(&q3).unwrap().is_empty());
    assert!(
        store
            .merged(&RangeQuery {
                sensor: SensorId(9),
                ..q
            })
            .unwrap()
            .is_empty()
    );
}

#[test]
fn newer_schema_is_refused_and_durable_open_works() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/dir/hub.db");
    let mut store = SqliteStore::open(&path).unwrap();
    store
        .apply(NodeId(1), &[(minute(1, 0), entry(1, 0, 1.0))])
        .unwrap();
    store.checkpoint().unwrap();
    drop(store);
    let conn = rusqlite::Connection::open(&path).unwrap();
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(
        matches!(
            err,
            MergeError::NewerSchema {
                found: 99,
                known: 2
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.reason(), "database_newer");
}

/// Anti-entropy: the store's cell hashes equal the core's for the same
/// entries (so a healthy hub never asks for a repair), and a lost row
/// changes exactly its own cell's hash.
#[test]
fn cell_hashes_match_the_core_and_see_a_lost_row() {
    use tributary_core::sync::MergeSink;
    use tributary_core::sync::digest::Cell;
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let node = NODES[2];
    let mut state = AggregateState::new();
    const DAY: u64 = 86_400_000;
    for i in 0..200u64 {
        let t = Timestamp(19_000 * DAY + i * 1_700_000);
        state
            .record_all_resolutions(node, SensorId((i % 3) as u32), t, i as f64)
            .unwrap();
    }
    store
        .apply(node, &state.node_entries_since(node, 0))
        .unwrap();
    let cells: Vec<Cell> = (19_000..19_005)
        .flat_map(|day| {
            (0..4).map(move |sensor| Cell {
                day: Bucket(day),
                sensor: SensorId(sensor),
            })
        })
        .collect();
    let core: Vec<u64> = cells
        .iter()
        .map(|c| state.cell_hash(node, *c).unwrap())
        .collect();
    assert_eq!(store.cell_hashes(node, &cells).unwrap(), core);
    assert!(
        core.iter().filter(|h| **h != 0).count() >= 9,
        "cells with data"
    );
    // Another node holds none of them.
    assert!(
        store
            .cell_hashes(NODES[0], &cells)
            .unwrap()
            .iter()
            .all(|h| *h == 0)
    );

    // The hub loses one hour row (rebuilt without it).
    let lost = state
        .iter_entries()
        .map(|(k, _, _)| k)
        .find(|k| {
            k.sensor == SensorId(1) && k.resolution == Resolution::Hour && k.bucket.0 / 24 == 19_001
        })
        .expect("an hour row of sensor 1 on day 19001");
    let dir2 = tempfile::tempdir().unwrap();
    let mut damaged = open(&dir2);
    let kept: Vec<(Key, Entry)> = state
        .node_entries_since(node, 0)
        .into_iter()
        .filter(|(k, _)| *k != lost)
        .collect();
    damaged.apply(node, &kept).unwrap();
    let after = damaged.cell_hashes(node, &cells).unwrap();
    for ((c, a), b) in cells.iter().zip(&after).zip(&core) {
        let hit = c.sensor == SensorId(1) && c.day == Bucket(19_001);
        assert_eq!(a != b, hit, "{c:?}");
    }
}
