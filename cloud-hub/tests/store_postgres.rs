//! The PostgreSQL merge store against a real server: the same deliveries
//! give the core's join and the SQLite backend's answers, bit for bit;
//! progress, validation, alerts, migrations, concurrent writers (two hub
//! replicas) and a server crash.
//!
//! Each test starts its own throwaway cluster (`tributary_testkit::Postgres`,
//! skipped locally when PostgreSQL is not installed, a failure under CI);
//! property cases each get a fresh database on it.

use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use tributary_core::codec::v1::{Alert, DetectorKind};
use tributary_core::crdt::aggregate::{AggregateState, Entry, Key};
use tributary_core::hlc::Hlc;
use tributary_core::ids::{Bucket, NodeId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;
use tributary_core::sync::{HubConfig, HubSync};
use tributary_hub::store::{
    AlertCursor, AlertOutcome, AlertQuery, MergeError, MergeOutcome, MergeStore, NodeBatch,
    PgStore, Progress, RangeQuery, SqliteOptions, SqliteStore, StoredAlert,
};
use tributary_testkit::Postgres;

/// Starts a server, or `None` (test skipped) when PostgreSQL is missing
/// outside CI.
fn server() -> Option<Postgres> {
    match Postgres::start() {
        Ok(Some(pg)) => Some(pg),
        Ok(None) => {
            eprintln!("skipped: PostgreSQL (initdb, pg_ctl) not installed");
            None
        }
        Err(e) => panic!("{e}"),
    }
}

/// A fresh, empty database on `pg`, and a store connected to it.
fn fresh(pg: &Postgres) -> (String, PgStore) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let url = pg
        .create_database(&format!("case{}", NEXT.fetch_add(1, Ordering::Relaxed)))
        .unwrap();
    let store = PgStore::connect(&url).unwrap();
    (url, store)
}

fn sqlite(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open_with(&SqliteOptions {
        path: dir.path().join("hub.db"),
        synchronous_full: false,
    })
    .unwrap()
}

/// Node ids on both sides of 2^63: SQL orders the stored i64 bits
/// differently from the u64 ids, the merge must not.
const NODES: [NodeId; 4] = [
    NodeId(1),
    NodeId(0x7fff_ffff_ffff_fff0),
    NodeId(0x8000_0000_0000_0000),
    NodeId(u64::MAX - 1),
];

/// One write: (node index, sensor, resolution index, time, value).
type Op = (usize, u32, usize, u64, f64);
type Batch = (NodeId, Vec<(Key, Entry)>);

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

/// Node `n`'s entries written after its `lo`-th write as of its `hi`-th.
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

/// Deliveries as a flaky network makes them: partial, duplicated, stale
/// and version-reusing batches, split into chunks, shuffled.
fn chunks(
    ops: &[Op],
    deliveries: &[(usize, usize, usize)],
    splits: &[usize],
    reuse: &[(usize, prop::sample::Index, f64)],
    seed: u64,
) -> Vec<Batch> {
    let mut batches: Vec<Batch> = deliveries
        .iter()
        .map(|&(n, lo, hi)| (NODES[n], delta(ops, n, lo, hi)))
        .collect();
    for (n, node) in NODES.iter().enumerate() {
        batches.push((*node, delta(ops, n, 0, usize::MAX)));
        batches.push((*node, delta(ops, n, 0, usize::MAX)));
    }
    // A node that lost its counter: same version, another summary.
    for (n, idx, x) in reuse {
        let entries = delta(ops, *n, 0, usize::MAX);
        if entries.is_empty() {
            continue;
        }
        let (k, mut e) = entries[idx.index(entries.len())];
        e.summary
            .combine(&Summary::of(e.summary.first_ts, *x).unwrap());
        batches.push((NODES[*n], vec![(k, e)]));
    }
    let mut out = Vec::new();
    for (i, (node, entries)) in batches.iter().enumerate() {
        for c in entries.chunks(splits[i % splits.len()]) {
            out.push((*node, c.to_vec()));
        }
    }
    shuffle(&mut out, seed);
    out
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

/// Everything a store answers about the aggregates, in a comparable form.
#[derive(Debug, PartialEq)]
struct View {
    merged: Vec<(Key, Summary)>,
    per_node: Vec<(u32, Resolution, u64, NodeId, Entry)>,
    node_series: Vec<(NodeId, u32, Resolution, u64, Entry)>,
    nodes: Vec<(NodeId, u64, u64, Option<u64>)>,
    sensors: Vec<(SensorId, Vec<NodeId>, Timestamp)>,
}

fn view(store: &impl MergeStore) -> View {
    let mut v = View {
        merged: Vec::new(),
        per_node: Vec::new(),
        node_series: Vec::new(),
        nodes: Vec::new(),
        sensors: Vec::new(),
    };
    for sensor in 0..3 {
        for r in Resolution::ALL {
            let q = full_range(sensor, r);
            for (start, s) in store.merged(&q).unwrap() {
                v.merged
                    .push((Key::containing(SensorId(sensor), r, start), s));
            }
            for b in store.per_node(&q).unwrap() {
                v.per_node
                    .push((sensor, r, b.bucket_start.0, b.node, b.entry));
            }
            for n in NODES {
                for b in store.node_series(n, &q).unwrap() {
                    v.node_series
                        .push((n, sensor, r, b.bucket_start.0, b.entry));
                }
            }
        }
    }
    v.nodes = store
        .nodes()
        .unwrap()
        .into_iter()
        .map(|n| (n.node, n.version_high, n.watermark, n.last_seen_ms))
        .collect();
    v.sensors = store
        .sensors()
        .unwrap()
        .into_iter()
        .map(|s| (s.sensor, s.nodes, s.newest))
        .collect();
    v
}

fn check_core(pg: &PgStore, core: &AggregateState) -> Result<(), TestCaseError> {
    let expected: Vec<_> = core.iter_entries().collect();
    prop_assert_eq!(pg.all_entries().unwrap(), expected);
    let merged: Vec<_> = core.iter_merged().collect();
    // Summary equality is bitwise (-0.0 != 0.0 there).
    prop_assert_eq!(view(pg).merged, merged);
    for n in NODES {
        let v = pg.node(n).unwrap().map_or(0, |r| r.version_high);
        prop_assert_eq!(v, core.version_of(n));
    }
    Ok(())
}

/// Applies `chunks` in groups of `group` (1: `apply`, else `apply_group`).
fn apply_all(
    store: &mut impl MergeStore,
    chunks: &[Batch],
    group: usize,
) -> Vec<Vec<MergeOutcome>> {
    chunks
        .chunks(group)
        .map(|g| match g {
            [(node, entries)] => vec![store.apply(*node, entries).unwrap()],
            _ => {
                let batches: Vec<NodeBatch<'_>> = g
                    .iter()
                    .map(|(node, entries)| NodeBatch {
                        node: *node,
                        entries,
                        progress: None,
                    })
                    .collect();
                store.apply_group(&batches).unwrap()
            }
        })
        .collect()
}

/// Any order, duplication and batching of the same entries: the core's
/// join and the SQLite backend's answers, bit for bit, with the same
/// per-batch outcomes; a replay changes nothing; a new connection sees it.
#[test]
fn postgres_merge_equals_core_join_and_sqlite() {
    let Some(pg) = server() else { return };
    let strategy = (
        proptest::collection::vec(op(), 1..80),
        proptest::collection::vec((0..NODES.len(), 0usize..40, 0usize..40), 0..12),
        proptest::collection::vec(1usize..6, 1..8),
        proptest::collection::vec(
            (0..NODES.len(), any::<prop::sample::Index>(), value()),
            0..4,
        ),
        any::<u64>(),
    );
    // Modest: each case is a database and a few hundred statements.
    let mut runner = TestRunner::new(ProptestConfig::with_cases(32));
    let result = runner.run(&strategy, |(ops, deliveries, splits, reuse, seed)| {
        let mut chunks = chunks(&ops, &deliveries, &splits, &reuse, seed);
        let (url, mut store) = fresh(&pg);
        let dir = tempfile::tempdir().unwrap();
        let mut lite = sqlite(&dir);
        let mut core = AggregateState::new();
        let group = usize::try_from(seed % 4).unwrap() + 1;
        let mut expected = Vec::new();
        for g in chunks.chunks(group) {
            let mut outs = Vec::new();
            for (node, entries) in g {
                let changed: u64 = entries
                    .iter()
                    .map(|(k, e)| u64::from(core.join_entry(*k, *node, *e)))
                    .sum();
                outs.push(MergeOutcome {
                    applied: changed,
                    stale: entries.len() as u64 - changed,
                });
            }
            expected.push(outs);
        }
        prop_assert_eq!(&apply_all(&mut store, &chunks, group), &expected);
        prop_assert_eq!(&apply_all(&mut lite, &chunks, group), &expected);
        check_core(&store, &core)?;
        let answers = view(&store);
        prop_assert_eq!(&answers, &view(&lite));
        prop_assert_eq!(store.all_entries().unwrap(), lite.all_entries().unwrap());

        // Replaying everything, in another order, changes nothing.
        shuffle(&mut chunks, seed.rotate_left(17));
        for outs in apply_all(&mut store, &chunks, 3) {
            prop_assert!(outs.iter().all(|o| o.applied == 0), "{outs:?}");
        }
        check_core(&store, &core)?;

        // Another connection (a restarted hub) sees the same.
        drop(store);
        let store = PgStore::connect(&url).unwrap();
        check_core(&store, &core)?;
        prop_assert_eq!(view(&store), answers);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
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
fn progress_is_monotonic_and_restores_hub_sync() {
    let Some(pg) = server() else { return };
    let (url, mut store) = fresh(&pg);
    let (a, b) = (NodeId(0xa), NodeId(u64::MAX));
    let p = |seen_ms, watermark| Some(Progress { seen_ms, watermark });
    store.touch(a, 5).unwrap();
    assert_eq!(
        store.node(a).unwrap().map(|r| r.last_seen_ms),
        Some(Some(5))
    );
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
    // In a group: the highest watermark and the last report of each node.
    let e = [(minute(3, 0), entry(13, 0, 1.0))];
    store
        .apply_group(&[
            NodeBatch {
                node: b,
                entries: &e,
                progress: p(30, 13),
            },
            NodeBatch {
                node: b,
                entries: &[],
                progress: p(25, 11),
            },
        ])
        .unwrap();
    drop(store);
    let store = PgStore::connect(&url).unwrap();
    let nodes: Vec<_> = store
        .nodes()
        .unwrap()
        .into_iter()
        .map(|n| (n.node, n.version_high, n.watermark, n.last_seen_ms))
        .collect();
    assert_eq!(nodes, vec![(a, 4, 4, Some(8)), (b, 13, 13, Some(25))]);
    let hub = HubSync::restore(HubConfig::default(), store.watermarks().unwrap());
    assert_eq!((hub.watermark(a), hub.watermark(b)), (4, 13));
    assert_eq!(store.node(NodeId(3)).unwrap(), None);
}

#[test]
fn rejected_batches_write_nothing() {
    let Some(pg) = server() else { return };
    let (_, mut store) = fresh(&pg);
    let n = NodeId(7);
    store.apply(n, &[(minute(1, 0), entry(1, 0, 1.0))]).unwrap();
    let state = |s: &PgStore| {
        (
            s.all_entries().unwrap(),
            s.nodes().unwrap(),
            s.sensors().unwrap(),
        )
    };
    let before = state(&store);
    let good = (minute(1, 60_000), entry(2, 60_000, 2.0));
    let mut nan = entry(3, 0, 1.0);
    nan.summary.sum = f64::NAN;
    let hostile_bucket = Key::new(SensorId(1), Resolution::Day, Bucket(u64::MAX));
    for (bad, reason) in [
        ((minute(1, 0), nan), "summary_not_finite"),
        (
            (minute(1, 0), entry(1 << 63, 0, 1.0)),
            "version_out_of_range",
        ),
        ((hostile_bucket, entry(3, 0, 1.0)), "bucket_out_of_range"),
        ((minute(1, 0), entry(3, 60_000, 1.0)), "time_outside_bucket"),
    ] {
        let err = store.apply(n, &[good, bad]).unwrap_err();
        assert!(
            matches!(err, MergeError::Invalid { index: 1, reason: r } if r == reason),
            "{err:?}"
        );
        assert_eq!(state(&store), before, "{reason}: nothing applied");
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
    let bad = [(minute(1, 0), entry(0, 0, 1.0))];
    let err = store
        .apply_group(&[
            NodeBatch {
                node: n,
                entries: &[good],
                progress: None,
            },
            NodeBatch {
                node: NodeId(8),
                entries: &bad,
                progress: None,
            },
        ])
        .unwrap_err();
    assert!(
        matches!(&err, MergeError::InvalidBatch { batch: 1, .. }),
        "{err:?}"
    );
    assert_eq!(state(&store), before);
    // The largest storable version is accepted and wins.
    let top = (minute(1, 0), entry(i64::MAX as u64, 0, 9.0));
    assert_eq!(store.apply(n, &[top]).unwrap().applied, 1);
}

/// The same (key, node) several times in one batch and across a group's
/// batches (one SQL statement cannot update a row twice): applied entry by
/// entry in delivery order, with the core's and SQLite's outcomes; the
/// equal-version tie-break compares the summary bits unsigned (-0.0 > 0.0).
#[test]
fn repeated_keys_apply_in_delivery_order() {
    let Some(pg) = server() else { return };
    let (_, mut store) = fresh(&pg);
    let dir = tempfile::tempdir().unwrap();
    let mut lite = sqlite(&dir);
    let (k, n) = (minute(1, 0), NodeId(u64::MAX - 2));
    let first = vec![
        (k, entry(1, 0, 1.0)),
        (k, entry(3, 0, 3.0)),
        (k, entry(2, 0, 2.0)),
        (minute(2, 0), entry(1, 0, 1.0)),
        (k, entry(3, 0, 3.0)),
    ];
    let second = vec![(k, entry(4, 0, 0.0)), (k, entry(4, 0, -0.0))];
    let third = vec![(k, entry(4, 0, 0.0)), (minute(2, 0), entry(1, 0, 1.0))];
    let mut core = AggregateState::new();
    let expected: Vec<MergeOutcome> = [&first, &second, &third]
        .iter()
        .map(|b| {
            let applied: u64 = b
                .iter()
                .map(|(k, e)| u64::from(core.join_entry(*k, n, *e)))
                .sum();
            MergeOutcome {
                applied,
                stale: b.len() as u64 - applied,
            }
        })
        .collect();
    assert_eq!(
        expected,
        vec![
            MergeOutcome {
                applied: 3,
                stale: 2
            },
            MergeOutcome {
                applied: 2,
                stale: 0
            },
            MergeOutcome {
                applied: 0,
                stale: 2
            },
        ]
    );
    let batches = [
        NodeBatch {
            node: n,
            entries: &first,
            progress: None,
        },
        NodeBatch {
            node: n,
            entries: &second,
            progress: None,
        },
        NodeBatch {
            node: n,
            entries: &third,
            progress: None,
        },
    ];
    assert_eq!(store.apply_group(&batches).unwrap(), expected);
    assert_eq!(lite.apply_group(&batches).unwrap(), expected);
    let want: Vec<_> = core.iter_entries().collect();
    assert_eq!(store.all_entries().unwrap(), want);
    // Equal sums (0.0 + -0.0 is 0.0): the min bits decide, -0.0 wins.
    assert_eq!(want[0].2.summary.min.to_bits(), (-0.0f64).to_bits());
    // One batch at a time gives the same.
    let (_, mut one) = fresh(&pg);
    let outs: Vec<_> = [&first, &second, &third]
        .iter()
        .map(|b| one.apply(n, b).unwrap())
        .collect();
    assert_eq!(outs, expected);
    assert_eq!(view(&one), view(&lite));
}

fn alert(node: NodeId, sensor: u32, hlc: u64, at: u64) -> Alert {
    Alert {
        node,
        sensor: SensorId(sensor),
        hlc: Hlc::from_u64(hlc),
        at: Timestamp(at),
        value: at as f64 / 7.0,
        score: 0.875,
        detector: DetectorKind::PageHinkley,
        window: Summary::of(Timestamp(at), -0.0).unwrap(),
    }
}

fn all_alerts(store: &impl MergeStore) -> Vec<StoredAlert> {
    store.alerts(&AlertQuery::default()).unwrap()
}

/// Every page of `q` (limit `limit`) through the text cursor, concatenated.
fn pages(store: &impl MergeStore, q: AlertQuery) -> Vec<StoredAlert> {
    let mut seen = Vec::new();
    let mut after: Option<AlertCursor> = None;
    loop {
        let page = store.alerts(&AlertQuery { after, ..q }).unwrap();
        assert!(page.len() <= q.limit);
        let Some(last) = page.last() else {
            return seen;
        };
        after = Some(AlertCursor::from(last).to_string().parse().unwrap());
        seen.extend(page);
    }
}

/// Alerts are idempotent on (node, HLC), bit-exact, filtered and paged
/// exactly like the SQLite backend's; acks keep the first time.
#[test]
fn alerts_are_idempotent_and_page_like_sqlite() {
    let Some(pg) = server() else { return };
    let (_, mut store) = fresh(&pg);
    let dir = tempfile::tempdir().unwrap();
    let mut lite = sqlite(&dir);
    let (a, b, c) = (NodeId(3), NodeId(u64::MAX - 5), NodeId(1 << 63));
    for (node, base) in [(a, 0u64), (b, 1 << 63), (c, 7)] {
        let alerts: Vec<Alert> = (0..40u64)
            .map(|i| alert(node, (i % 3) as u32, base + i * 3, (i % 7) * 1_000))
            .collect();
        for s in [&mut store as &mut dyn MergeStore, &mut lite] {
            let out = s.insert_alerts(node, &alerts, 1).unwrap();
            assert_eq!(
                out,
                AlertOutcome {
                    new: 40,
                    duplicate: 0
                }
            );
        }
    }
    // A re-send with a changed body, a new alert twice in one call.
    let mut changed = alert(a, 0, 0, 0);
    changed.value = 99.0;
    let again = [
        changed,
        alert(a, 1, 1_000, 9_000),
        alert(a, 1, 1_000, 9_000),
    ];
    for s in [&mut store as &mut dyn MergeStore, &mut lite] {
        let out = s.insert_alerts(a, &again, 6).unwrap();
        assert_eq!(
            out,
            AlertOutcome {
                new: 1,
                duplicate: 2
            }
        );
        assert_eq!(s.insert_alerts(a, &[], 8).unwrap(), AlertOutcome::default());
    }
    let everything = all_alerts(&store);
    assert_eq!(everything.len(), 121);
    assert_eq!(everything, all_alerts(&lite));
    let first = everything
        .iter()
        .find(|s| s.alert.node == a && s.alert.hlc == Hlc::from_u64(0))
        .unwrap();
    assert_eq!(
        (first.alert.value, first.received_ms),
        (0.0, 1),
        "first kept"
    );
    assert_eq!(first.alert.window.min.to_bits(), (-0.0f64).to_bits());

    // A bad alert rejects the call.
    let mut bad = alert(a, 1, 5_000, 1);
    bad.score = 1.5;
    let err = store
        .insert_alerts(a, &[alert(a, 1, 5_001, 1), bad], 9)
        .unwrap_err();
    assert_eq!(err.reason(), "score_out_of_range");
    assert_eq!(all_alerts(&store), everything, "nothing written");

    for q in [
        AlertQuery {
            limit: 1,
            ..AlertQuery::default()
        },
        AlertQuery {
            limit: 7,
            ..AlertQuery::default()
        },
        AlertQuery {
            limit: 13,
            sensor: Some(SensorId(2)),
            ..AlertQuery::default()
        },
        AlertQuery {
            limit: 5,
            node: Some(b),
            ..AlertQuery::default()
        },
        AlertQuery {
            limit: 4,
            from: Some(Timestamp(1_000)),
            to: Some(Timestamp(3_000)),
            ..AlertQuery::default()
        },
    ] {
        let got = pages(&store, q);
        assert!(!got.is_empty());
        assert_eq!(got, pages(&lite, q), "{q:?}");
        let want = store
            .alerts(&AlertQuery {
                limit: usize::MAX,
                ..q
            })
            .unwrap();
        assert_eq!(got, want, "pages cover every alert once, in order");
    }

    for s in [&mut store as &mut dyn MergeStore, &mut lite] {
        assert_eq!(s.open_alert_count().unwrap(), 121);
        assert!(s.ack_alert(a, Hlc::from_u64(3), 500).unwrap());
        assert!(s.ack_alert(a, Hlc::from_u64(3), 900).unwrap());
        assert!(
            !s.ack_alert(a, Hlc::from_u64(4), 900).unwrap(),
            "no such alert"
        );
        assert_eq!(s.open_alert_count().unwrap(), 120);
    }
    let acked = store
        .alerts(&AlertQuery {
            acknowledged: Some(true),
            ..AlertQuery::default()
        })
        .unwrap();
    assert_eq!(acked.len(), 1);
    assert_eq!(acked[0].acked_ms, Some(500), "the first ack time is kept");
    assert_eq!(all_alerts(&store), all_alerts(&lite));
}

/// Two connections (two hub replicas) apply interleaved, overlapping
/// batches concurrently, in groups; the database ends exactly as one store
/// applying everything in order.
#[test]
fn concurrent_writers_converge_to_the_single_store_result() {
    let Some(pg) = server() else { return };
    // Deterministic workload: every node's history, delivered in pieces to
    // both replicas (a node that fails over re-sends to the other).
    let mut ops: Vec<Op> = Vec::new();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..600u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let v = f64::from((x % 20_000) as u32) / 16.0 - 600.0;
        ops.push((
            (x % 4) as usize,
            (x >> 8) as u32 % 5,
            (x >> 16) as usize % 4,
            i * 977,
            v,
        ));
    }
    let deliveries: Vec<(usize, usize, usize)> = (0..40)
        .map(|i| (i % 4, (i * 7) % 150, (i * 13) % 150))
        .collect();
    let all = chunks(&ops, &deliveries, &[1, 3, 8, 20], &[], 7);

    let mut core = AggregateState::new();
    for (node, entries) in &all {
        for (k, e) in entries {
            core.join_entry(*k, *node, *e);
        }
    }
    let (_, mut single) = fresh(&pg);
    apply_all(&mut single, &all, 1);

    let (url, _) = fresh(&pg);
    let total: u64 = all.iter().map(|(_, e)| e.len() as u64).sum();
    let mut handles = Vec::new();
    for replica in 0..2usize {
        // Interleaved: each replica takes every other chunk, plus a third of
        // the other's again, so both write the same rows at once.
        let mine: Vec<Batch> = all
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == replica || i % 3 == 0)
            .map(|(_, b)| b.clone())
            .collect();
        let url = url.clone();
        handles.push(std::thread::spawn(move || {
            let mut store = PgStore::connect(&url).unwrap();
            let group = replica + 1;
            let outs = apply_all(&mut store, &mine, group);
            let n: u64 = outs.iter().flatten().map(|o| o.applied + o.stale).sum();
            let sent: u64 = mine.iter().map(|(_, e)| e.len() as u64).sum();
            assert_eq!(n, sent, "every entry accounted for");
            n
        }));
    }
    let written: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    assert!(written >= total);
    let store = PgStore::connect(&url).unwrap();
    let expected: Vec<_> = core.iter_entries().collect();
    assert_eq!(store.all_entries().unwrap(), expected);
    assert_eq!(single.all_entries().unwrap(), expected);
    assert_eq!(view(&store), view(&single));
}

#[test]
fn migrations_run_once_and_a_newer_schema_is_refused() {
    let Some(pg) = server() else { return };
    let url = pg.create_database("migrations").unwrap();
    // Two replicas starting together on an empty database: the advisory
    // lock makes one migrate and the other find it done.
    let both: Vec<_> = (0..2)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PgStore::connect(&url).map(|_| ()))
        })
        .collect();
    for h in both {
        h.join().unwrap().unwrap();
    }
    let mut store = PgStore::connect(&url).unwrap();
    store.probe().unwrap();
    store
        .apply(NodeId(1), &[(minute(1, 0), entry(1, 0, 1.0))])
        .unwrap();
    drop(store);
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let versions: Vec<i64> = client
        .query("SELECT version FROM tributary_schema ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, vec![1]);
    client
        .execute("INSERT INTO tributary_schema (version) VALUES (99)", &[])
        .unwrap();
    let err = PgStore::connect(&url).unwrap_err();
    assert!(
        matches!(
            err,
            MergeError::NewerSchema {
                found: 99,
                known: 1
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.reason(), "database_newer");
    let err = PgStore::connect("postgres://postgres@127.0.0.1:1/x").unwrap_err();
    assert_eq!(err.reason(), "postgres");
    assert!(!err.is_rejection());
}

/// A server crash fails the calls in flight (retry later, not a rejection);
/// after the restart the same store reconnects by itself and everything
/// committed before the crash is there.
#[test]
fn a_server_crash_fails_calls_then_the_store_reconnects() {
    let Some(mut pg) = server() else { return };
    let (_, mut store) = fresh(&pg);
    let n = NodeId(u64::MAX);
    let first = [(minute(1, 0), entry(1, 0, 1.5))];
    store.apply(n, &first).unwrap();
    pg.kill9().unwrap();
    let err = store
        .apply(n, &[(minute(1, 60_000), entry(2, 60_000, 2.5))])
        .unwrap_err();
    assert_eq!(err.reason(), "postgres");
    assert!(!err.is_rejection());
    assert!(
        store.nodes().is_err(),
        "still down: reconnect fails cleanly"
    );
    pg.restart().unwrap();
    assert_eq!(
        store.all_entries().unwrap(),
        vec![(first[0].0, n, first[0].1)]
    );
    // The node re-sends what failed: applied now.
    let out = store
        .apply(n, &[(minute(1, 60_000), entry(2, 60_000, 2.5))])
        .unwrap();
    assert_eq!(out.applied, 1);
}

/// A reader connection (the API's threads) sees the writer's commits,
/// refuses writes, and needs a migrated database of this binary's version.
#[test]
fn readers_see_commits_refuse_writes_and_need_a_migrated_database() {
    let Some(pg) = server() else { return };
    let empty = pg.create_database("not_migrated").unwrap();
    let err = PgStore::connect_reader(&empty).unwrap_err();
    assert_eq!(err.reason(), "corrupt", "{err:?}");
    let (url, mut writer) = fresh(&pg);
    let mut reader = PgStore::connect_reader(&url).unwrap();
    assert!(reader.sensors().unwrap().is_empty());
    let n = NodeId(9);
    writer
        .apply(n, &[(minute(1, 0), entry(1, 0, 1.0))])
        .unwrap();
    writer.insert_alerts(n, &[alert(n, 1, 1, 1)], 1).unwrap();
    assert_eq!(reader.sensors().unwrap().len(), 1);
    assert_eq!(all_alerts(&reader).len(), 1);
    reader.probe().unwrap();
    let err = reader
        .apply(n, &[(minute(1, 60_000), entry(2, 60_000, 1.0))])
        .unwrap_err();
    assert_eq!(err.reason(), "postgres", "{err:?}");
    assert!(reader.insert_alerts(n, &[alert(n, 1, 2, 2)], 1).is_err());
    assert!(reader.touch(n, 5).is_err());
    assert_eq!(writer.entry_count().unwrap(), 1);
}
