//! The simulator's run loop against the fake ingest: one submission per
//! tick with every sensor, no origin; a refused submission is retried as
//! the same submission and counted; shutdown stops it.

mod common;

use common::{DEADLINE, eventually};
use tokio::sync::watch;
use tributary_edge::ingest::IngestError;
use tributary_edge::metrics::Metrics;
use tributary_edge::reading::SourceKind;
use tributary_edge::sources::simulator::{self, SimulatorOptions};

#[actix::test]
async fn ticks_become_submissions_and_refusals_are_retried() {
    let (ingest, recorded) = common::start();
    // The first tick is refused twice (busy, then a store error): it must
    // come back unchanged.
    recorded.script([
        Err(IngestError::Busy),
        Err(IngestError::Store("disk I/O error".into())),
    ]);
    let metrics = Metrics::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let opts = SimulatorOptions {
        sensors: 3,
        first_sensor: 40,
        rate_hz: 100.0,
        ..SimulatorOptions::default()
    };
    let source = actix::spawn(simulator::run(opts, ingest, metrics.clone(), stop_rx));

    assert!(eventually(DEADLINE, || recorded.submissions().len() >= 6).await);
    let subs = recorded.submissions();
    assert_eq!(subs[0], subs[1]);
    assert_eq!(subs[1], subs[2]);
    for s in &subs {
        assert_eq!(s.origin, None);
        let ids: Vec<u32> = s.items.iter().map(|i| i.sensor().0).collect();
        assert_eq!(ids, [40, 41, 42]);
    }
    assert!(recorded.kinds().iter().all(|k| *k == SourceKind::Simulator));

    stop_tx.send(true).unwrap();
    let result = tokio::time::timeout(DEADLINE, source).await;
    assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
}

#[actix::test]
async fn ingest_shutting_down_stops_the_simulator() {
    let (ingest, recorded) = common::start();
    recorded.script([Err(IngestError::ShuttingDown)]);
    let (_stop_tx, stop_rx) = watch::channel(false);
    let source = actix::spawn(simulator::run(
        SimulatorOptions::default(),
        ingest,
        Metrics::new(),
        stop_rx,
    ));
    let result = tokio::time::timeout(DEADLINE, source).await;
    assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
    assert_eq!(recorded.submissions().len(), 1);
}
