//! The store actor: opens on the caller's thread (errors surface at start),
//! answers every message, and records metrics.

use tributary_core::codec::v1::{DetectorKind, Message};
use tributary_core::ids::{NodeId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;
use tributary_edge::metrics::Metrics;
use tributary_edge::reading::{Item, Origin, Sample, Submission};
use tributary_edge::store::actor::{
    self, Checkpoint, GetStatus, QueryAggregates, QueryAlerts, ReadDelta, RecordAlert,
    ResolveAlert, SetHubWatermark, StoreBatch,
};
use tributary_edge::store::{
    AggregateQuery, AlertQuery, NewAlert, Outcome, ResolvedAlert, StoreOptions,
};

fn opts(dir: &std::path::Path) -> StoreOptions {
    StoreOptions {
        path: dir.join("edge.db"),
        synchronous_full: true,
        disk_budget_bytes: 0,
        keep_raw: true,
        node_id: None,
        cache_keys: 128,
    }
}

#[actix::test]
async fn serves_every_message_and_records_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let metrics = Metrics::new();
    let (addr, node) = actor::start(opts(dir.path()), metrics.clone()).unwrap();
    assert_ne!(node, NodeId(0));

    let sub = Submission {
        origin: Some(Origin {
            source: "a".into(),
            seq: 1,
        }),
        items: (0..10)
            .map(|i| {
                Item::Reading(Sample {
                    sensor: SensorId(3),
                    ts: Timestamp(i * 1_000),
                    value: i as f64,
                })
            })
            .collect(),
    };
    let r = addr
        .send(StoreBatch(vec![sub.clone(), sub]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        r.outcomes,
        vec![Outcome::Applied { readings: 10 }, Outcome::Duplicate]
    );
    let rows = addr
        .send(QueryAggregates(AggregateQuery {
            sensor: SensorId(3),
            resolution: Resolution::Minute,
            from: Timestamp(0),
            to: Timestamp(60_000),
            limit: 10,
        }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rows[0].summary.count, 10);

    let opened = addr
        .send(RecordAlert(NewAlert {
            sensor: SensorId(3),
            at: Timestamp(9_000),
            value: 9.0,
            score: 0.9,
            detector: DetectorKind::Range,
            window: Summary::EMPTY,
        }))
        .await
        .unwrap()
        .unwrap();
    assert!(opened.hlc.physical_ms() > 1_600_000_000_000, "wall clock");
    addr.send(ResolveAlert(ResolvedAlert {
        sensor: SensorId(3),
        opened_at: Timestamp(9_000),
        at: Timestamp(10_000),
        peak: 9.5,
    }))
    .await
    .unwrap()
    .unwrap();
    let alerts = addr
        .send(QueryAlerts(AlertQuery {
            sensor: None,
            open_only: false,
            limit: 5,
        }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(alerts.len(), 1);
    assert_eq!(alerts[0].peak, Some(9.5));

    let delta = addr
        .send(ReadDelta {
            after: 0,
            max_bytes: 64 * 1024,
        })
        .await
        .unwrap()
        .unwrap();
    let Some(Message::Delta(d)) = delta else {
        panic!("expected a delta, got {delta:?}")
    };
    assert_eq!((d.node, d.to), (node, r.version_high));
    addr.send(SetHubWatermark(d.to)).await.unwrap().unwrap();
    let err = addr
        .send(SetHubWatermark(d.to + 1))
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(err.reason(), "watermark_ahead");
    let st = addr.send(GetStatus).await.unwrap().unwrap();
    assert_eq!((st.hub_watermark, st.unsynced_entries), (d.to, 0));
    addr.send(Checkpoint).await.unwrap().unwrap();

    let text = metrics.encode();
    let has = |needle: &str| text.lines().any(|l| l.starts_with(needle));
    assert!(
        has("tributary_store_commit_duration_seconds_count 1"),
        "{text}"
    );
    assert!(has("tributary_store_batch_readings_sum 10.0"), "{text}");
    assert!(
        has(&format!("tributary_node_version {}", r.version_high)),
        "{text}"
    );
    assert!(
        has(&format!("tributary_outbox_acked_version {}", d.to)),
        "{text}"
    );
    assert!(
        has("tributary_store_errors_total{op=\"set_hub_watermark\"} 1"),
        "{text}"
    );
}

#[actix::test]
async fn open_errors_surface_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(dir.path());
    let (_, node) = actor::start(o.clone(), Metrics::new()).unwrap();
    o.node_id = Some(NodeId(node.0 ^ 0xff));
    let err = actor::start(o, Metrics::new()).unwrap_err();
    assert_eq!(err.reason(), "node_id_mismatch");
}
