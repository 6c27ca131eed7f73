//! CSV replay against the fake ingest: batches with stable origins (a
//! second run sends the same (source, seq) pairs), bad rows counted and
//! skipped, shift to now, pacing, shutdown mid-replay.

mod common;

use std::io::Write;

use common::{DEADLINE, counter, eventually};
use tokio::sync::watch;
use tributary_core::ids::{SensorId, Timestamp};
use tributary_edge::metrics::Metrics;
use tributary_edge::reading::{Item, Origin, Sample};
use tributary_edge::sources::replay::{self, ReplayOptions};
use tributary_edge::sources::wall_now;

const CSV: &str = "\
timestamp,value
2013-07-04 00:00:00,69.5
2013-07-04 01:00:00,71.25
2013-07-04 02:00:00,not-a-number
2013-07-04 03:00:00,70.0
yesterday,70.0
2013-07-04 04:00:00,NaN
2013-07-04 05:00:00,72.0
2013-07-04 06:00:00,1,extra
2013-07-04 07:00:00,73.5
";

/// 2013-07-04T00:00:00Z in ms.
const T0: u64 = 1_372_896_000_000;
const HOUR: u64 = 3_600_000;

fn temp_csv(text: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new()
        .prefix("series")
        .suffix(".csv")
        .tempfile()
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
    f
}

fn reading(hour: u64, value: f64) -> Item {
    Item::Reading(Sample {
        sensor: SensorId(9),
        ts: Timestamp(T0 + hour * HOUR),
        value,
    })
}

#[actix::test]
async fn replays_in_stable_batches_and_counts_bad_rows() {
    let file = temp_csv(CSV);
    let name = file
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let opts = ReplayOptions {
        path: file.path().to_owned(),
        sensor: 9,
        speed: 0.0,
        batch_size: 2,
        ..ReplayOptions::default()
    };
    let (ingest, recorded) = common::start();
    let metrics = Metrics::new();
    let (_stop, stop_rx) = watch::channel(false);
    let result = replay::run(
        opts.clone(),
        ingest.clone(),
        metrics.clone(),
        stop_rx.clone(),
    )
    .await;
    assert!(result.is_ok(), "{result:?}");

    let subs = recorded.submissions();
    let origin = |seq| {
        Some(Origin {
            source: format!("replay:{name}"),
            seq,
        })
    };
    assert_eq!(subs.len(), 3);
    assert_eq!(subs[0].origin, origin(0));
    assert_eq!(subs[0].items, [reading(0, 69.5), reading(1, 71.25)]);
    assert_eq!(subs[1].origin, origin(1));
    assert_eq!(subs[1].items, [reading(3, 70.0), reading(5, 72.0)]);
    assert_eq!(subs[2].origin, origin(2));
    assert_eq!(subs[2].items, [reading(7, 73.5)]);

    let rejected = |reason: &str| {
        counter(
            &metrics,
            &format!("tributary_readings_rejected_total{{source=\"replay\",reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(rejected("bad_value"), 1, "{}", metrics.encode());
    assert_eq!(rejected("bad_time"), 1);
    assert_eq!(rejected("non_finite"), 1);
    assert_eq!(rejected("bad_row"), 1);

    // A restarted replay sends the very same submissions: the store's
    // (source, seq) dedup makes it a no-op.
    let again = replay::run(opts, ingest, metrics.clone(), stop_rx).await;
    assert!(again.is_ok());
    let all = recorded.submissions();
    assert_eq!(all.len(), 6);
    assert_eq!(all[..3], all[3..]);
}

#[actix::test]
async fn shift_to_now_maps_the_first_row_to_the_start() {
    let file = temp_csv(CSV);
    let before = wall_now().as_millis();
    let (ingest, recorded) = common::start();
    let (_stop, stop_rx) = watch::channel(false);
    let opts = ReplayOptions {
        path: file.path().to_owned(),
        sensor: 9,
        // Paced: an hour of recording per 10 ms, so the 7 hours take ~70 ms.
        speed: 360_000.0,
        batch_size: 1,
        shift_to_now: true,
        ..ReplayOptions::default()
    };
    replay::run(opts, ingest, Metrics::new(), stop_rx)
        .await
        .unwrap();
    let after = wall_now().as_millis();
    let subs = recorded.submissions();
    assert_eq!(subs.len(), 5);
    let times: Vec<u64> = subs
        .iter()
        .map(|s| s.items[0].last_ts().as_millis())
        .collect();
    assert!((before..=after).contains(&times[0]), "{times:?}");
    // Spacing is kept.
    assert_eq!(times[1] - times[0], HOUR);
    assert_eq!(times[4] - times[0], 7 * HOUR);
}

#[actix::test]
async fn shutdown_stops_a_paced_replay() {
    let file = temp_csv(CSV);
    let (ingest, recorded) = common::start();
    let (stop_tx, stop_rx) = watch::channel(false);
    let opts = ReplayOptions {
        path: file.path().to_owned(),
        speed: 1.0, // the second row is due in an hour
        batch_size: 1,
        ..ReplayOptions::default()
    };
    let task = actix::spawn(replay::run(opts, ingest, Metrics::new(), stop_rx));
    assert!(eventually(DEADLINE, || recorded.submissions().len() == 1).await);
    stop_tx.send(true).unwrap();
    let result = tokio::time::timeout(DEADLINE, task).await;
    assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
    assert_eq!(recorded.submissions().len(), 1);
}

#[actix::test]
async fn a_missing_file_or_column_is_an_error() {
    let (ingest, _) = common::start();
    let (_stop, stop_rx) = watch::channel(false);
    let missing = ReplayOptions {
        path: "/nonexistent/file.csv".into(),
        ..ReplayOptions::default()
    };
    let err = replay::run(missing, ingest.clone(), Metrics::new(), stop_rx.clone())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/file.csv"), "{err}");

    let file = temp_csv(CSV);
    let no_column = ReplayOptions {
        path: file.path().to_owned(),
        value_column: "temperature".into(),
        ..ReplayOptions::default()
    };
    let err = replay::run(no_column, ingest, Metrics::new(), stop_rx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no column `temperature`"), "{err}");
}
