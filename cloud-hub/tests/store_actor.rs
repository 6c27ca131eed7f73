//! The store actors: the writer merges, stores alerts and counts metrics;
//! readers on their own connections see its commits.

use tributary_core::codec::v1::{Alert, DetectorKind};
use tributary_core::crdt::aggregate::{AggregateState, Entry, Key};
use tributary_core::hlc::Hlc;
use tributary_core::ids::{NodeId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;
use tributary_hub::metrics::Metrics;
use tributary_hub::store::actor::{
    AckAlert, CountOpenAlerts, InsertAlerts, MergeGroup, OwnedBatch, Probe, QueryAlerts,
    QueryMerged, QueryNodes, QueryPerNode, QuerySensors, Touch, Watermarks, start_readers,
    start_writer,
};
use tributary_hub::store::{
    AlertOutcome, AlertQuery, MergeError, MergeOutcome, Progress, RangeQuery, SqliteOptions,
    SqliteStore,
};

fn entry(t: u64, x: f64, version: u64) -> (Key, Entry) {
    (
        Key::containing(SensorId(1), Resolution::Minute, Timestamp(t)),
        Entry {
            version,
            summary: Summary::of(Timestamp(t), x).unwrap(),
        },
    )
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {line_start} in\n{text}"))
}

#[test]
fn writer_and_readers_serve_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let opts = SqliteOptions {
        path: dir.path().join("hub.db"),
        synchronous_full: false,
    };
    actix::System::new().block_on(async move {
        let bad = SqliteOptions::new(dir.path().join("missing.db"));
        assert!(start_readers(&bad, 2).is_err(), "an error, not a panic");

        let metrics = Metrics::new();
        let writer = start_writer(SqliteStore::open_with(&opts).unwrap(), metrics.clone());
        let reader = start_readers(&opts, 2).unwrap();
        let (a, b) = (NodeId(1), NodeId(u64::MAX));
        let mut core = AggregateState::new();
        let batches = vec![
            OwnedBatch {
                node: a,
                entries: vec![entry(0, 1.0, 1), entry(60_000, 2.0, 2)],
                progress: Some(Progress {
                    seen_ms: 10,
                    watermark: 2,
                }),
            },
            OwnedBatch {
                node: b,
                entries: vec![entry(5, 4.0, 1)],
                progress: None,
            },
        ];
        for batch in &batches {
            for (k, e) in &batch.entries {
                core.join_entry(*k, batch.node, *e);
            }
        }
        let out = writer
            .send(MergeGroup {
                batches: batches.clone(),
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(
            out,
            vec![
                MergeOutcome {
                    applied: 2,
                    stale: 0
                },
                MergeOutcome {
                    applied: 1,
                    stale: 0
                }
            ]
        );
        // A replay is stale.
        let out = writer.send(MergeGroup { batches }).await.unwrap().unwrap();
        assert_eq!(out[0].stale + out[1].stale, 3);
        // An invalid group is rejected whole and counted as an error.
        let mut bad = entry(0, 1.0, 9);
        bad.1.version = 0;
        let err = writer
            .send(MergeGroup {
                batches: vec![OwnedBatch {
                    node: a,
                    entries: vec![bad],
                    progress: None,
                }],
            })
            .await
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, MergeError::InvalidBatch { batch: 0, .. }));

        writer
            .send(Touch {
                node: NodeId(7),
                seen_ms: 99,
            })
            .await
            .unwrap()
            .unwrap();
        let wm = writer.send(Watermarks).await.unwrap().unwrap();
        assert_eq!(wm, vec![(a, 2), (NodeId(7), 0), (b, 0)]);

        let q = RangeQuery {
            sensor: SensorId(1),
            resolution: Resolution::Minute,
            from: Timestamp(0),
            to: Timestamp(u64::MAX),
            limit: 100,
        };
        let merged = reader.send(QueryMerged(q)).await.unwrap().unwrap();
        let want: Vec<(Timestamp, Summary)> = core
            .iter_merged()
            .map(|(k, s)| (k.bucket.start(k.resolution), s))
            .collect();
        assert_eq!(merged, want);
        let per = reader.send(QueryPerNode(q)).await.unwrap().unwrap();
        assert_eq!(per.len(), 3);
        let nodes = reader.send(QueryNodes).await.unwrap().unwrap();
        assert_eq!(nodes.len(), 3);
        assert_eq!(nodes[0].last_seen_ms, Some(10));
        let sensors = reader.send(QuerySensors).await.unwrap().unwrap();
        assert_eq!(sensors.len(), 1);
        assert_eq!(sensors[0].nodes, vec![a, b]);
        reader.send(Probe).await.unwrap().unwrap();

        let alert = Alert {
            node: a,
            sensor: SensorId(1),
            hlc: Hlc::from_u64(77),
            at: Timestamp(5),
            value: 3.0,
            score: 0.5,
            detector: DetectorKind::Range,
            window: Summary::of(Timestamp(5), 3.0).unwrap(),
        };
        let insert = || InsertAlerts {
            node: a,
            alerts: vec![alert.clone()],
            received_ms: 11,
        };
        let first = writer.send(insert()).await.unwrap().unwrap();
        let second = writer.send(insert()).await.unwrap().unwrap();
        assert_eq!(
            (first, second),
            (
                AlertOutcome {
                    new: 1,
                    duplicate: 0
                },
                AlertOutcome {
                    new: 0,
                    duplicate: 1
                }
            )
        );
        assert_eq!(reader.send(CountOpenAlerts).await.unwrap().unwrap(), 1);
        let ack = AckAlert {
            node: a,
            hlc: alert.hlc,
            acked_ms: 12,
        };
        assert!(writer.send(ack).await.unwrap().unwrap());
        let got = reader
            .send(QueryAlerts(AlertQuery::default()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].alert.clone(), got[0].acked_ms), (alert, Some(12)));

        let text = metrics.encode();
        assert_eq!(
            metric(
                &text,
                "tributary_hub_merge_entries_total{outcome=\"applied\"}"
            ),
            3.0
        );
        assert_eq!(
            metric(
                &text,
                "tributary_hub_merge_entries_total{outcome=\"stale\"}"
            ),
            3.0
        );
        assert_eq!(metric(&text, "tributary_hub_merge_errors_total"), 1.0);
        assert_eq!(metric(&text, "tributary_hub_merge_group_deltas_count"), 2.0);
        assert_eq!(
            metric(&text, "tributary_hub_merge_commit_seconds_count"),
            2.0
        );
        assert_eq!(
            metric(&text, "tributary_hub_alerts_total{outcome=\"new\"}"),
            1.0
        );
        assert_eq!(
            metric(&text, "tributary_hub_alerts_total{outcome=\"duplicate\"}"),
            1.0
        );
    });
}
