//! Alerts and the sensor directory in the SQLite merge store: idempotent
//! inserts, all-or-nothing rejection, filters, cursor paging, acks, and the
//! sensor list the merge maintains.

use tributary_core::codec::v1::{Alert, DetectorKind};
use tributary_core::crdt::aggregate::{Entry, Key};
use tributary_core::hlc::Hlc;
use tributary_core::ids::{NodeId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;
use tributary_hub::store::{
    AlertCursor, AlertOutcome, AlertQuery, MergeError, MergeStore, SensorRecord, SqliteOptions,
    SqliteStore, StoredAlert,
};

fn open(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open_with(&SqliteOptions {
        path: dir.path().join("hub.db"),
        synchronous_full: false,
    })
    .unwrap()
}

fn alert(node: NodeId, sensor: u32, hlc: u64, at: u64) -> Alert {
    Alert {
        node,
        sensor: SensorId(sensor),
        hlc: Hlc::from_u64(hlc),
        at: Timestamp(at),
        value: at as f64 / 7.0,
        score: 0.875,
        detector: DetectorKind::Cusum,
        window: Summary::of(Timestamp(at), -0.0).unwrap(),
    }
}

fn all(store: &SqliteStore) -> Vec<StoredAlert> {
    store.alerts(&AlertQuery::default()).unwrap()
}

const A: NodeId = NodeId(3);
/// Above 2^63: stored as a negative i64.
const B: NodeId = NodeId(u64::MAX - 5);

#[test]
fn alerts_are_idempotent_on_node_and_hlc() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let first = [alert(A, 1, 10, 1_000), alert(A, 2, 11, 2_000)];
    assert_eq!(
        store.insert_alerts(A, &first, 5).unwrap(),
        AlertOutcome {
            new: 2,
            duplicate: 0
        }
    );
    // A re-send with a changed body (same key) and one new alert: the
    // stored alert keeps its first version and received time.
    let mut changed = first[0].clone();
    changed.value = 99.0;
    let again = [changed, alert(A, 1, 12, 3_000), alert(A, 1, 12, 3_000)];
    assert_eq!(
        store.insert_alerts(A, &again, 6).unwrap(),
        AlertOutcome {
            new: 1,
            duplicate: 2
        }
    );
    let got = all(&store);
    assert_eq!(got.len(), 3);
    assert_eq!(got[0].alert, alert(A, 1, 12, 3_000));
    assert_eq!((got[0].received_ms, got[0].acked_ms), (6, None));
    assert_eq!(got[2].alert, first[0], "bit-exact, -0.0 window kept");
    assert_eq!(got[2].alert.window.min.to_bits(), (-0.0f64).to_bits());
    assert_eq!(got[2].received_ms, 5);
    // The same HLC from another node is another alert.
    let out = store
        .insert_alerts(B, &[alert(B, 1, 10, 1_000)], 7)
        .unwrap();
    assert_eq!(out.new, 1);
    assert_eq!(
        store.insert_alerts(A, &[], 8).unwrap(),
        AlertOutcome::default()
    );
    assert_eq!(all(&store).len(), 4);
}

#[test]
fn one_bad_alert_rejects_the_call_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    store.insert_alerts(A, &[alert(A, 1, 1, 1)], 1).unwrap();
    let before = all(&store);
    let good = alert(A, 1, 2, 2);
    let mut score = alert(A, 1, 3, 3);
    score.score = 1.5;
    let mut nan = alert(A, 1, 3, 3);
    nan.value = f64::NAN;
    let mut window = alert(A, 1, 3, 3);
    window.window.max = f64::INFINITY;
    let mut future = alert(A, 1, 3, 3);
    future.at = Timestamp(u64::MAX);
    for (bad, reason) in [
        (alert(B, 1, 3, 3), "wrong_node"),
        (score, "score_out_of_range"),
        (nan, "value_not_finite"),
        (window, "summary_not_finite"),
        (future, "time_out_of_range"),
    ] {
        let err = store.insert_alerts(A, &[good.clone(), bad], 9).unwrap_err();
        assert!(
            matches!(err, MergeError::Invalid { index: 1, reason: r } if r == reason),
            "{err:?}"
        );
        assert!(err.is_rejection());
        assert_eq!(err.reason(), reason);
        assert_eq!(all(&store), before, "{reason}: nothing written");
    }
}

#[test]
fn filters_select_by_node_sensor_time_and_ack() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    let a: Vec<Alert> = (0..6)
        .map(|i| alert(A, i % 2, 100 + i as u64, i as u64 * 10))
        .collect();
    let b: Vec<Alert> = (0..4)
        .map(|i| alert(B, 1, 200 + i as u64, i as u64 * 10 + 5))
        .collect();
    store.insert_alerts(A, &a, 1).unwrap();
    store.insert_alerts(B, &b, 1).unwrap();
    let q = |store: &SqliteStore, f: &dyn Fn(&mut AlertQuery)| {
        let mut q = AlertQuery::default();
        f(&mut q);
        store.alerts(&q).unwrap()
    };
    assert_eq!(q(&store, &|q| q.node = Some(B)).len(), 4);
    assert!(
        q(&store, &|q| q.node = Some(B))
            .iter()
            .all(|s| s.alert.node == B)
    );
    assert_eq!(q(&store, &|q| q.sensor = Some(SensorId(0))).len(), 3);
    let window = q(&store, &|q| {
        q.from = Some(Timestamp(10));
        q.to = Some(Timestamp(30));
    });
    let ats: Vec<u64> = window.iter().map(|s| s.alert.at.0).collect();
    assert_eq!(ats, vec![25, 20, 15, 10], "newest first, [from, to)");
    assert_eq!(q(&store, &|q| q.limit = 2).len(), 2);
    assert!(q(&store, &|q| q.limit = 0).is_empty());

    assert_eq!(store.open_alert_count().unwrap(), 10);
    assert!(store.ack_alert(A, Hlc::from_u64(101), 500).unwrap());
    assert!(store.ack_alert(A, Hlc::from_u64(101), 900).unwrap());
    assert!(
        !store.ack_alert(B, Hlc::from_u64(101), 900).unwrap(),
        "no such alert"
    );
    let acked = q(&store, &|q| q.acknowledged = Some(true));
    assert_eq!(acked.len(), 1);
    assert_eq!(acked[0].acked_ms, Some(500), "the first ack time is kept");
    assert_eq!(q(&store, &|q| q.acknowledged = Some(false)).len(), 9);
    assert_eq!(store.open_alert_count().unwrap(), 9);
}

#[test]
fn cursor_pages_cover_every_alert_exactly_once_newest_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    // Many ties on `at` across nodes and HLCs on both sides of 2^63.
    for (node, base) in [(A, 0u64), (B, 1 << 63), (NodeId(1 << 63), 7)] {
        let alerts: Vec<Alert> = (0..40u64)
            .map(|i| alert(node, (i % 3) as u32, base + i * 3, (i % 7) * 1_000))
            .collect();
        store.insert_alerts(node, &alerts, 1).unwrap();
    }
    let everything = all(&store);
    assert_eq!(everything.len(), 120);
    assert!(
        everything
            .windows(2)
            .all(|w| w[0].alert.at >= w[1].alert.at)
    );
    for (limit, sensor) in [(1, None), (7, None), (13, Some(SensorId(2))), (200, None)] {
        let mut seen: Vec<StoredAlert> = Vec::new();
        let mut after: Option<AlertCursor> = None;
        loop {
            let page = store
                .alerts(&AlertQuery {
                    sensor,
                    after,
                    limit,
                    ..AlertQuery::default()
                })
                .unwrap();
            assert!(page.len() <= limit);
            let Some(last) = page.last() else { break };
            // The cursor survives its text form, as the API carries it.
            after = Some(AlertCursor::from(last).to_string().parse().unwrap());
            seen.extend(page);
        }
        let want: Vec<StoredAlert> = everything
            .iter()
            .filter(|a| sensor.is_none_or(|s| a.alert.sensor == s))
            .cloned()
            .collect();
        assert_eq!(
            seen, want,
            "limit {limit}: same alerts, same order, once each"
        );
    }
}

fn entry_at(sensor: u32, r: Resolution, t: u64, version: u64) -> (Key, Entry) {
    (
        Key::containing(SensorId(sensor), r, Timestamp(t)),
        Entry {
            version,
            summary: Summary::of(Timestamp(t), 1.0).unwrap(),
        },
    )
}

#[test]
fn sensors_list_reporting_nodes_and_the_newest_reading() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    assert!(store.sensors().unwrap().is_empty());
    store
        .apply(
            A,
            &[
                entry_at(1, Resolution::Second, 5_000, 1),
                entry_at(1, Resolution::Minute, 5_000, 2),
                entry_at(2, Resolution::Second, 9_000, 3),
            ],
        )
        .unwrap();
    store
        .apply(B, &[entry_at(1, Resolution::Hour, 7_000, 1)])
        .unwrap();
    // A late, older delta moves nothing back; a replay changes nothing.
    store
        .apply(A, &[entry_at(1, Resolution::Second, 1_000, 4)])
        .unwrap();
    store
        .apply(B, &[entry_at(1, Resolution::Hour, 7_000, 1)])
        .unwrap();
    let want = vec![
        SensorRecord {
            sensor: SensorId(1),
            nodes: vec![A, B],
            newest: Timestamp(7_000),
        },
        SensorRecord {
            sensor: SensorId(2),
            nodes: vec![A],
            newest: Timestamp(9_000),
        },
    ];
    assert_eq!(store.sensors().unwrap(), want);
    assert_eq!(store.sensor(SensorId(2)).unwrap(), Some(want[1].clone()));
    assert_eq!(store.sensor(SensorId(3)).unwrap(), None);
    // A rejected batch adds no sensor.
    let mut bad = entry_at(4, Resolution::Second, 1_000, 5);
    bad.1.summary.count = 0;
    assert!(
        store
            .apply(A, &[entry_at(5, Resolution::Second, 0, 6), bad])
            .is_err()
    );
    assert_eq!(store.sensors().unwrap(), want);
}

#[test]
fn readers_see_commits_refuse_writes_and_need_a_migrated_file() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteOptions {
        path: dir.path().join("hub.db"),
        synchronous_full: false,
    };
    assert!(SqliteStore::open_reader(&opts).is_err(), "no file yet");
    let mut writer = SqliteStore::open_with(&opts).unwrap();
    let mut reader = SqliteStore::open_reader(&opts).unwrap();
    assert!(reader.sensors().unwrap().is_empty());
    writer
        .apply(A, &[entry_at(1, Resolution::Second, 5_000, 1)])
        .unwrap();
    writer.insert_alerts(A, &[alert(A, 1, 1, 1)], 1).unwrap();
    assert_eq!(reader.sensors().unwrap().len(), 1);
    assert_eq!(all(&reader).len(), 1);
    reader.probe().unwrap();
    assert!(matches!(
        reader.apply(A, &[entry_at(1, Resolution::Second, 6_000, 2)]),
        Err(MergeError::Sqlite(_))
    ));
    assert!(reader.insert_alerts(A, &[alert(A, 1, 2, 2)], 1).is_err());
    assert_eq!(all(&writer).len(), 1);
}

#[test]
fn node_series_returns_one_nodes_buckets_within_range_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = open(&dir);
    for r in [Resolution::Second, Resolution::Minute] {
        for i in 0..5u64 {
            let t = i * r.millis();
            store.apply(A, &[entry_at(1, r, t, 10 + i)]).unwrap();
            if i % 2 == 0 {
                store.apply(B, &[entry_at(1, r, t, 10 + i)]).unwrap();
            }
        }
        let q = tributary_hub::store::RangeQuery {
            sensor: SensorId(1),
            resolution: r,
            from: Timestamp(r.millis()),
            to: Timestamp(u64::MAX),
            limit: 2,
        };
        let b = store.node_series(B, &q).unwrap();
        let starts: Vec<u64> = b.iter().map(|x| x.bucket_start.0).collect();
        assert_eq!(starts, vec![2 * r.millis(), 4 * r.millis()], "{r}");
        assert!(b.iter().all(|x| x.node == B));
        let a = store.node_series(A, &q).unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[0].entry.version, 11);
    }
}
