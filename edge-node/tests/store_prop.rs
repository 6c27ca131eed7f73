//! Batching does not change what is counted: ingesting the same readings
//! split into batches any way gives the same 1 m / 1 h / 1 d counts, minima
//! and maxima as computing them directly. (Sums may differ in the last
//! bits: floating-point addition is not associative.)

use std::collections::BTreeMap;

use proptest::prelude::*;
use tributary_core::ids::{Bucket, Resolution, SensorId, Timestamp};
use tributary_edge::reading::{Item, Origin, Sample, Submission};
use tributary_edge::store::{AggregateQuery, Store, StoreOptions};

type Reading = (u32, u64, f64);

fn readings() -> impl Strategy<Value = Vec<Reading>> {
    // Three sensors over ~3 days, so day, hour and minute buckets all have
    // several members and several neighbours.
    proptest::collection::vec((0u32..3, 0u64..260_000_000, -1e6f64..1e6), 1..120)
}

/// Cut points (as fractions) and, per submission, whether it is sent twice.
fn splits() -> impl Strategy<Value = (Vec<u8>, Vec<bool>)> {
    (
        proptest::collection::vec(any::<u8>(), 0..8),
        proptest::collection::vec(any::<bool>(), 0..40),
    )
}

type Totals = BTreeMap<(u32, u8, u64), (u64, u64, u64)>;

fn direct(rs: &[Reading]) -> Totals {
    let mut out: BTreeMap<(u32, u8, u64), (u64, f64, f64)> = BTreeMap::new();
    for &(s, t, v) in rs {
        for r in [Resolution::Minute, Resolution::Hour, Resolution::Day] {
            let b = Bucket::containing(Timestamp(t), r).0;
            let e = out
                .entry((s, r as u8, b))
                .or_insert((0, f64::INFINITY, f64::NEG_INFINITY));
            *e = (e.0 + 1, e.1.min(v), e.2.max(v));
        }
    }
    out.into_iter()
        .map(|(k, (c, lo, hi))| (k, (c, lo.to_bits(), hi.to_bits())))
        .collect()
}

fn stored(s: &Store) -> Totals {
    let mut out = Totals::new();
    for sensor in 0..3 {
        for r in [Resolution::Minute, Resolution::Hour, Resolution::Day] {
            let rows = s
                .aggregates(&AggregateQuery {
                    sensor: SensorId(sensor),
                    resolution: r,
                    from: Timestamp(0),
                    to: Timestamp(u64::MAX),
                    limit: usize::MAX,
                })
                .unwrap();
            for row in rows {
                let b = row.bucket_start.as_millis() / r.millis();
                let sm = row.summary;
                out.insert(
                    (sensor, r as u8, b),
                    (sm.count, sm.min.to_bits(), sm.max.to_bits()),
                );
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn any_batching_gives_the_same_buckets(rs in readings(), (cuts, resend) in splits()) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&StoreOptions {
            path: dir.path().join("p.db"),
            synchronous_full: false,
            disk_budget_bytes: 0,
            keep_raw: false,
            node_id: None,
            cache_keys: 16,
        })
        .unwrap();
        // Submissions of 1..=5 readings, each with its own seq.
        let subs: Vec<Submission> = rs
            .chunks(5)
            .enumerate()
            .map(|(i, c)| Submission {
                origin: Some(Origin { source: "p".into(), seq: i as u64 }),
                items: c
                    .iter()
                    .map(|&(s, t, v)| Item::Reading(Sample { sensor: SensorId(s), ts: Timestamp(t), value: v }))
                    .collect(),
            })
            .collect();
        // Some submissions are retransmitted (in the same or a later batch).
        let mut stream = Vec::new();
        for (i, s) in subs.iter().enumerate() {
            stream.push(s.clone());
            if resend.get(i).copied().unwrap_or(false) {
                stream.push(s.clone());
            }
        }
        let mut points: Vec<usize> = cuts.iter().map(|&c| usize::from(c) * stream.len() / 256).collect();
        points.push(0);
        points.push(stream.len());
        points.sort_unstable();
        points.dedup();
        let mut last_version = 0;
        for w in points.windows(2) {
            let r = store.ingest(&stream[w[0]..w[1]]).unwrap();
            prop_assert!(r.version_high >= last_version);
            last_version = r.version_high;
        }
        prop_assert_eq!(stored(&store), direct(&rs));
        // Versions are unique per key.
        let all = store.entries_after(0, usize::MAX).unwrap();
        let mut versions: Vec<u64> = all.iter().map(|e| e.1.version).collect();
        versions.dedup();
        prop_assert_eq!(versions.len(), all.len());
    }
}
