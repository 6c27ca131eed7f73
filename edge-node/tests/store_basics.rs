//! Store behaviour through its public API: schema, identity, dedup,
//! versions, windows, atomicity, sync reads, watermark, alerts.

use std::path::Path;

use tributary_core::codec::v1::{self, DetectorKind, Message};
use tributary_core::ids::{NodeId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;
use tributary_core::sync::DeltaSource;
use tributary_edge::reading::{Item, Origin, Sample, Submission};
use tributary_edge::store::{
    AggregateQuery, AggregateRow, AlertQuery, NewAlert, Outcome, ResolvedAlert, Store, StoreOptions,
};

fn opts(dir: &Path) -> StoreOptions {
    StoreOptions {
        path: dir.join("data/edge.db"),
        synchronous_full: false,
        disk_budget_bytes: 0,
        keep_raw: true,
        node_id: None,
        cache_keys: 256,
    }
}

fn sample(sensor: u32, ts: u64, value: f64) -> Item {
    Item::Reading(Sample {
        sensor: SensorId(sensor),
        ts: Timestamp(ts),
        value,
    })
}

fn sub(source: &str, seq: u64, items: Vec<Item>) -> Submission {
    Submission {
        origin: Some(Origin {
            source: source.into(),
            seq,
        }),
        items,
    }
}

fn rows(s: &Store, sensor: u32, r: Resolution) -> Vec<AggregateRow> {
    s.aggregates(&AggregateQuery {
        sensor: SensorId(sensor),
        resolution: r,
        from: Timestamp(0),
        to: Timestamp(1 << 50),
        limit: 100_000,
    })
    .unwrap()
}

fn day_count(s: &Store, sensor: u32) -> u64 {
    rows(s, sensor, Resolution::Day)
        .iter()
        .map(|r| r.summary.count)
        .sum()
}

#[test]
fn migrates_an_empty_file_and_refuses_a_newer_one() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    let s = Store::open(&o).unwrap();
    assert_eq!(s.version_high(), 0);
    drop(s);
    let conn = rusqlite::Connection::open(&o.path).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 1);
    // Reopening an up-to-date file is a no-op.
    Store::open(&o).unwrap();
    conn.pragma_update(None, "user_version", 99).unwrap();
    drop(conn);
    let err = Store::open(&o).unwrap_err();
    assert_eq!(err.reason(), "database_newer");
    assert!(err.to_string().contains("database newer than this binary"));
}

#[test]
fn node_id_is_generated_once_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    let id = Store::open(&o).unwrap().node_id();
    assert_ne!(id, NodeId(0));
    assert_eq!(Store::open(&o).unwrap().node_id(), id);
    o.node_id = Some(id);
    assert_eq!(Store::open(&o).unwrap().node_id(), id);
    o.node_id = Some(NodeId(id.0 ^ 1));
    assert_eq!(Store::open(&o).unwrap_err().reason(), "node_id_mismatch");

    let other = tempfile::tempdir().unwrap();
    let mut o = opts(other.path());
    o.node_id = Some(NodeId(42));
    assert_eq!(Store::open(&o).unwrap().node_id(), NodeId(42));
    o.node_id = None;
    assert_eq!(Store::open(&o).unwrap().node_id(), NodeId(42));
}

#[test]
fn duplicates_count_once_within_a_batch_across_batches_and_after_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    let mut s = Store::open(&o).unwrap();
    let a = sub(
        "dev-a",
        1,
        vec![sample(1, 1_000, 1.0), sample(1, 2_000, 2.0)],
    );
    let r = s.ingest(&[a.clone(), a.clone()]).unwrap();
    assert_eq!(
        r.outcomes,
        vec![Outcome::Applied { readings: 2 }, Outcome::Duplicate]
    );
    let r = s.ingest(std::slice::from_ref(&a)).unwrap();
    assert_eq!(r.outcomes, vec![Outcome::Duplicate]);
    // Same seq from another source is a different submission.
    let b = sub("dev-b", 1, vec![sample(1, 3_000, 3.0)]);
    assert_eq!(
        s.ingest(&[b]).unwrap().outcomes,
        vec![Outcome::Applied { readings: 1 }]
    );
    let high = s.version_high();
    drop(s);

    let mut s = Store::open(&o).unwrap();
    let r = s.ingest(&[a]).unwrap();
    assert_eq!(r.outcomes, vec![Outcome::Duplicate]);
    assert_eq!(r.version_high, high, "a duplicate writes nothing");
    assert_eq!(day_count(&s, 1), 3);
    assert_eq!(s.status().unwrap().raw_readings, 3);
}

#[test]
fn out_of_order_seqs_inside_the_window_apply_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&opts(dir.path())).unwrap();
    let batch: Vec<Submission> = [5, 3, 4, 3, 5, 1]
        .iter()
        .map(|&seq| sub("dev", seq, vec![sample(1, seq * 1_000, 1.0)]))
        .collect();
    let r = s.ingest(&batch).unwrap();
    let applied = Outcome::Applied { readings: 1 };
    assert_eq!(
        r.outcomes,
        vec![
            applied,
            applied,
            applied,
            Outcome::Duplicate,
            Outcome::Duplicate,
            applied
        ]
    );
    assert_eq!(r.below_window, 0);
    let r = s
        .ingest(&[sub("dev", 2, vec![sample(1, 2_000, 1.0)])])
        .unwrap();
    assert_eq!(r.outcomes, vec![applied]);
    assert_eq!(day_count(&s, 1), 5);

    // Far ahead, then something the window no longer covers.
    let r = s
        .ingest(&[
            sub("dev", 10_000, vec![sample(1, 9_000, 1.0)]),
            sub("dev", 4, vec![sample(1, 9_000, 1.0)]),
        ])
        .unwrap();
    assert_eq!(r.outcomes, vec![applied, Outcome::Duplicate]);
    assert_eq!(r.below_window, 1);
    assert_eq!(day_count(&s, 1), 6);
}

#[test]
fn submissions_without_origin_always_apply() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&opts(dir.path())).unwrap();
    let x = Submission {
        origin: None,
        items: vec![sample(1, 1_000, 1.0)],
    };
    let r = s.ingest(&[x.clone(), x]).unwrap();
    assert_eq!(r.outcomes, vec![Outcome::Applied { readings: 1 }; 2]);
    assert_eq!(day_count(&s, 1), 2);
}

#[test]
fn each_changed_key_gets_one_new_version_per_batch() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&opts(dir.path())).unwrap();
    // Three readings in one second: 4 keys (1s, 1m, 1h, 1d) change.
    let r = s
        .ingest(&[sub(
            "d",
            1,
            vec![
                sample(1, 1_000, 1.0),
                sample(1, 1_100, 5.0),
                sample(1, 1_200, 3.0),
            ],
        )])
        .unwrap();
    assert_eq!(r.version_high, 4);
    let mut versions: Vec<u64> = Resolution::ALL
        .iter()
        .flat_map(|&res| rows(&s, 1, res))
        .map(|r| r.version)
        .collect();
    versions.sort_unstable();
    assert_eq!(versions, vec![1, 2, 3, 4]);
    let sec = rows(&s, 1, Resolution::Second);
    assert_eq!(sec.len(), 1);
    let sm = sec[0].summary;
    assert_eq!((sm.count, sm.min, sm.max, sm.sum), (3, 1.0, 5.0, 9.0));
    assert_eq!(
        (sm.first_ts, sm.last_ts),
        (Timestamp(1_000), Timestamp(1_200))
    );
}

#[test]
fn a_late_reading_updates_its_old_bucket_and_bumps_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&opts(dir.path())).unwrap();
    // An hour of readings every 10 s, in batches of a minute.
    for m in 0..60u64 {
        let items = (0..6)
            .map(|i| sample(1, m * 60_000 + i * 10_000, 1.0))
            .collect();
        s.ingest(&[sub("d", m, items)]).unwrap();
    }
    let before = rows(&s, 1, Resolution::Minute)[3];
    assert_eq!(before.summary.count, 6);
    let r = s
        .ingest(&[sub("d", 100, vec![sample(1, 3 * 60_000 + 5_000, -7.0)])])
        .unwrap();
    assert_eq!(r.late_skipped, 0);
    let after = rows(&s, 1, Resolution::Minute)[3];
    assert_eq!(after.bucket_start, before.bucket_start);
    assert_eq!(after.summary.count, 7);
    assert_eq!(after.summary.min, -7.0);
    assert!(after.version > before.version);
    // Four keys changed (1s, 1m, 1h, 1d), versioned in key order.
    assert_eq!(after.version, r.version_high - 2);
    // The new 1 s bucket in the past exists too.
    let sec = rows(&s, 1, Resolution::Second);
    assert!(sec.iter().any(|r| r.bucket_start == Timestamp(185_000)));
}

fn window(first: u64, last: u64, values: &[f64]) -> Item {
    let mut summary = Summary::EMPTY;
    for (i, &v) in values.iter().enumerate() {
        let t = if i == 0 { first } else { last };
        summary.record(Timestamp(t), v).unwrap();
    }
    Item::Window {
        sensor: SensorId(2),
        summary,
    }
}

#[test]
fn windows_land_only_in_resolutions_that_contain_them() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&opts(dir.path())).unwrap();
    let r = s
        .ingest(&[sub(
            "w",
            1,
            vec![
                // Inside one second: every resolution.
                window(10_100, 10_900, &[1.0, 2.0]),
                // Two seconds, one minute: 1m, 1h, 1d.
                window(20_500, 21_500, &[3.0, 4.0, 5.0]),
                // Across a minute boundary: 1h and 1d only.
                window(59_000, 61_000, &[6.0, 7.0]),
            ],
        )])
        .unwrap();
    assert_eq!(r.outcomes, vec![Outcome::Applied { readings: 7 }]);
    let count = |res| -> Vec<(u64, u64)> {
        rows(&s, 2, res)
            .iter()
            .map(|r| (r.bucket_start.as_millis(), r.summary.count))
            .collect()
    };
    assert_eq!(count(Resolution::Second), vec![(10_000, 2)]);
    assert_eq!(count(Resolution::Minute), vec![(0, 5)]);
    assert_eq!(count(Resolution::Hour), vec![(0, 7)]);
    assert_eq!(count(Resolution::Day), vec![(0, 7)]);
    assert_eq!(
        s.status().unwrap().raw_readings,
        0,
        "windows carry no raw readings"
    );
}

#[test]
fn a_failing_batch_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    let mut s = Store::open(&o).unwrap();
    s.ingest(&[sub("d", 1, vec![sample(1, 500, 1.0)])]).unwrap();
    let before = s.status().unwrap();
    // The first submission is fine and is written (raw row, dedup window)
    // before the second one's NaN fails the transaction.
    let good = sub("d", 2, vec![sample(1, 1_000, 1.0), sample(3, 1_000, 1.0)]);
    let bad = sub("e", 1, vec![sample(1, 2_000, f64::NAN)]);
    let err = s.ingest(&[good.clone(), bad]).unwrap_err();
    assert_eq!(err.reason(), "non_finite");
    let after = s.status().unwrap();
    assert_eq!(after.version_high, before.version_high);
    assert_eq!(after.raw_readings, before.raw_readings);
    assert_eq!(after.sensors, 1);
    assert_eq!(day_count(&s, 1), 1);
    drop(s);
    // Nothing of it survived a reopen either, and seq 2 was not burnt.
    let mut s = Store::open(&o).unwrap();
    assert_eq!(s.version_high(), before.version_high);
    let r = s.ingest(&[good]).unwrap();
    assert_eq!(r.outcomes, vec![Outcome::Applied { readings: 2 }]);
    assert_eq!(day_count(&s, 1), 2);
    drop(s);

    // A failure in SQLite itself, after some rows of the batch were
    // written (raw readings, dedup windows, the first new buckets): a
    // trigger aborts the insert of the bucket holding 666.
    let conn = rusqlite::Connection::open(&o.path).unwrap();
    conn.execute_batch(
        "CREATE TRIGGER boom BEFORE INSERT ON aggregate WHEN NEW.max = 666.0
         BEGIN SELECT RAISE(ABORT, 'boom'); END;",
    )
    .unwrap();
    drop(conn);
    let mut s = Store::open(&o).unwrap();
    let before = s.status().unwrap();
    let batch = [
        sub("d", 3, vec![sample(1, 3_000, 1.0), sample(4, 3_000, 1.0)]),
        sub("d", 4, vec![sample(1, 4_000, 2.0), sample(1, 4_500, 666.0)]),
    ];
    assert_eq!(s.ingest(&batch).unwrap_err().reason(), "sqlite");
    let after = s.status().unwrap();
    assert_eq!(after, before);
    assert_eq!(day_count(&s, 1), 2);
    assert!(rows(&s, 4, Resolution::Day).is_empty());
    let r = s.ingest(&batch[..1]).unwrap();
    assert_eq!(r.outcomes, vec![Outcome::Applied { readings: 2 }]);
    assert_eq!(r.version_high, before.version_high + 8, "4 keys per sensor");
    assert_eq!(day_count(&s, 1), 3);
}

#[test]
fn aggregate_queries_are_half_open_and_limited() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&opts(dir.path())).unwrap();
    let items = (0..10).map(|i| sample(1, i * 60_000, i as f64)).collect();
    s.ingest(&[sub("d", 1, items)]).unwrap();
    let q = |from, to, limit| -> Vec<u64> {
        s.aggregates(&AggregateQuery {
            sensor: SensorId(1),
            resolution: Resolution::Minute,
            from: Timestamp(from),
            to: Timestamp(to),
            limit,
        })
        .unwrap()
        .iter()
        .map(|r| r.bucket_start.as_millis() / 60_000)
        .collect()
    };
    assert_eq!(q(120_000, 300_000, 100), vec![2, 3, 4]);
    assert_eq!(q(120_001, 300_001, 100), vec![3, 4, 5]);
    assert_eq!(q(0, u64::MAX, 2), vec![0, 1]);
    assert!(q(300_000, 300_000, 10).is_empty());
}

fn fill(s: &mut Store, sensors: u32, seconds: u64) {
    let mut seq = 0;
    for chunk in (0..seconds).collect::<Vec<_>>().chunks(50) {
        let items = chunk
            .iter()
            .flat_map(|&t| (0..sensors).map(move |k| sample(k, t * 1_000, (t % 17) as f64)))
            .collect();
        seq += 1;
        s.ingest(&[sub("fill", seq, items)]).unwrap();
    }
}

#[test]
fn read_delta_respects_max_bytes_and_agrees_with_entries_since() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&opts(dir.path())).unwrap();
    assert!(s.read_delta(0, 1_000).unwrap().is_none());
    fill(&mut s, 3, 400);
    let high = s.version_high();
    let node = s.node_id();
    let all = s.entries_since(node, 0, usize::MAX).unwrap();
    assert!(all.windows(2).all(|w| w[0].1.version < w[1].1.version));
    assert_eq!(all.last().map(|e| e.1.version), Some(high));
    assert_eq!(DeltaSource::version_high(&s, node), high);
    assert_eq!(DeltaSource::version_high(&s, NodeId(node.0 ^ 1)), 0);
    assert_eq!(
        s.entries_since(node, 10, 5).unwrap(),
        all[..]
            .iter()
            .filter(|e| e.1.version > 10)
            .take(5)
            .copied()
            .collect::<Vec<_>>()
    );

    // Walk the whole outbox in deltas of at most 700 bytes.
    let mut after = 0;
    let mut got = Vec::new();
    while let Some(m) = s.read_delta(after, 700).unwrap() {
        assert!(v1::encoded_len(&m) <= 700);
        let Message::Delta(d) = &m else {
            panic!("not a delta: {m:?}")
        };
        assert_eq!(d.node, node);
        assert_eq!(d.from, after);
        d.validate().unwrap();
        let mut entries: Vec<_> = d.entries().collect();
        assert!(!entries.is_empty());
        entries.sort_by_key(|e| e.1.version);
        assert_eq!(entries.last().map(|e| e.1.version <= d.to), Some(true));
        // Decoding round-trips and the entries are the next ones in order.
        assert_eq!(v1::decode(&v1::encode(&m)).unwrap(), m);
        assert_eq!(entries[..], all[got.len()..got.len() + entries.len()]);
        got.extend(entries);
        after = d.to;
    }
    assert_eq!(after, high);
    assert_eq!(got, all);

    let one = s.read_delta(0, usize::MAX).unwrap().unwrap();
    let Message::Delta(d) = one else { panic!() };
    assert_eq!((d.from, d.to, d.len()), (0, high, all.len()));
    assert_eq!(
        s.read_delta(0, 8).unwrap_err().reason(),
        "delta_limit_too_small"
    );
}

#[test]
fn hub_watermark_is_monotonic_bounded_and_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    let mut s = Store::open(&o).unwrap();
    fill(&mut s, 1, 10);
    let high = s.version_high();
    assert_eq!(
        s.set_hub_watermark(high + 1).unwrap_err().reason(),
        "watermark_ahead"
    );
    s.set_hub_watermark(5).unwrap();
    s.set_hub_watermark(3).unwrap();
    assert_eq!(s.hub_watermark(), 5);
    let st = s.status().unwrap();
    assert_eq!(st.hub_watermark, 5);
    assert_eq!(
        st.unsynced_entries,
        s.entries_after(5, usize::MAX).unwrap().len() as u64
    );
    drop(s);
    let mut s = Store::open(&o).unwrap();
    assert_eq!(s.hub_watermark(), 5);
    s.set_hub_watermark(high).unwrap();
    assert_eq!(s.status().unwrap().unsynced_entries, 0);
}

fn alert(sensor: u32, at: u64) -> NewAlert {
    NewAlert {
        sensor: SensorId(sensor),
        at: Timestamp(at),
        value: 99.5,
        score: 0.97,
        detector: DetectorKind::PageHinkley,
        window: Summary::of(Timestamp(at - 1_000), 20.0).unwrap(),
    }
}

#[test]
fn alerts_get_strictly_increasing_hlcs_across_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let o = opts(dir.path());
    let mut s = Store::open(&o).unwrap();
    let now = Timestamp(1_700_000_000_000);
    let a = s.record_alert(&alert(1, 10_000), now).unwrap();
    let b = s.record_alert(&alert(2, 11_000), now).unwrap();
    assert!(b.hlc > a.hlc && b.id > a.id);
    assert_eq!(a.hlc.physical_ms(), now.as_millis());
    drop(s);
    let mut s = Store::open(&o).unwrap();
    // The wall clock went backwards across the restart: the HLC does not.
    let c = s
        .record_alert(&alert(1, 12_000), Timestamp(now.as_millis() - 60_000))
        .unwrap();
    assert!(c.hlc > b.hlc && c.id > b.id);
    let mut empty = alert(3, 13_000);
    empty.window = Summary::EMPTY;
    let d = s.record_alert(&empty, now).unwrap();

    let all = s
        .alerts(&AlertQuery {
            sensor: None,
            open_only: false,
            limit: 10,
        })
        .unwrap();
    assert_eq!(
        all.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![d.id, c.id, b.id, a.id]
    );
    assert_eq!(all[3], a);
    assert_eq!(all[0].window, Summary::EMPTY);

    s.resolve_alert(&ResolvedAlert {
        sensor: SensorId(1),
        opened_at: Timestamp(10_000),
        at: Timestamp(15_000),
        peak: 120.0,
    })
    .unwrap();
    let err = s
        .resolve_alert(&ResolvedAlert {
            sensor: SensorId(1),
            opened_at: Timestamp(10_000),
            at: Timestamp(16_000),
            peak: 1.0,
        })
        .unwrap_err();
    assert_eq!(err.reason(), "unknown_alert");
    let open1 = s
        .alerts(&AlertQuery {
            sensor: Some(SensorId(1)),
            open_only: true,
            limit: 10,
        })
        .unwrap();
    assert_eq!(open1.iter().map(|x| x.id).collect::<Vec<_>>(), vec![c.id]);
    let s1 = s
        .alerts(&AlertQuery {
            sensor: Some(SensorId(1)),
            open_only: false,
            limit: 10,
        })
        .unwrap();
    assert_eq!(s1[1].resolved_at, Some(Timestamp(15_000)));
    assert_eq!(s1[1].peak, Some(120.0));
    assert_eq!(s.status().unwrap().open_alerts, 3);
    let json = serde_json::to_value(s1[1]).unwrap();
    assert_eq!(json["detector"], "page_hinkley");
    assert_eq!(json["window"]["count"], 1);
}

#[test]
fn status_and_rows_serialize_for_the_api() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Store::open(&opts(dir.path())).unwrap();
    fill(&mut s, 2, 3);
    let st = s.status().unwrap();
    assert_eq!((st.sensors, st.raw_readings), (2, 6));
    assert!(st.db_bytes > 0);
    let json = serde_json::to_value(st).unwrap();
    assert_eq!(json["node_id"], format!("{}", s.node_id()));
    let row = rows(&s, 1, Resolution::Minute)[0];
    let json = serde_json::to_value(row).unwrap();
    assert_eq!(json["resolution"], "1m");
    assert_eq!(json["summary"]["count"], 3);
    assert_eq!(json["summary"]["mean"], 1.0);
}
