//! The store's request and result types: what the ingest actor, the HTTP
//! API and the sync agent exchange with the store actor. Serialized to
//! JSON through [`super::json`] for the core types.

use serde::Serialize;
use tributary_core::codec::v1::DetectorKind;
use tributary_core::hlc::Hlc;
use tributary_core::ids::{NodeId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;

#[cfg(doc)]
use super::Store;
use super::json;

/// What happened to one submission.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Stored now.
    Applied {
        /// Readings it stands for (a window counts its readings).
        readings: u64,
    },
    /// Its (source, seq) was stored before (or fell below the window).
    Duplicate,
}

/// Rows evicted to stay within the disk budget.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Evictions {
    /// Raw readings.
    pub raw: u64,
    /// 1 s buckets.
    pub bucket_1s: u64,
    /// 1 m buckets.
    pub bucket_1m: u64,
    /// 1 h buckets.
    pub bucket_1h: u64,
    /// Only 1 d buckets are left and the database is still above budget.
    pub budget_exhausted: bool,
}

impl Evictions {
    /// `(metric label, rows)` per kind, for `tributary_store_evicted_total`.
    pub fn by_kind(&self) -> [(&'static str, u64); 4] {
        [
            ("raw", self.raw),
            ("bucket_1s", self.bucket_1s),
            ("bucket_1m", self.bucket_1m),
            ("bucket_1h", self.bucket_1h),
        ]
    }
}

/// The result of one [`Store::ingest`] transaction.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BatchResult {
    /// One per submission, in order.
    pub outcomes: Vec<Outcome>,
    /// The node's highest version after the batch.
    pub version_high: u64,
    /// Bucket updates skipped because that fine bucket was already evicted.
    pub late_skipped: u64,
    /// Submissions treated as duplicates because their seq fell below the
    /// dedup window.
    pub below_window: u64,
    /// Evictions the batch triggered.
    pub evicted: Evictions,
}

/// A range of buckets of one sensor at one resolution.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AggregateQuery {
    /// The sensor.
    #[serde(serialize_with = "json::sensor")]
    pub sensor: SensorId,
    /// The resolution.
    #[serde(serialize_with = "json::resolution")]
    pub resolution: Resolution,
    /// Buckets starting at or after this time…
    #[serde(serialize_with = "json::ts")]
    pub from: Timestamp,
    /// …and before this one.
    #[serde(serialize_with = "json::ts")]
    pub to: Timestamp,
    /// At most this many rows (oldest first).
    pub limit: usize,
}

/// One stored bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AggregateRow {
    /// The sensor.
    #[serde(serialize_with = "json::sensor")]
    pub sensor: SensorId,
    /// The resolution.
    #[serde(serialize_with = "json::resolution")]
    pub resolution: Resolution,
    /// The bucket's start.
    #[serde(serialize_with = "json::ts")]
    pub bucket_start: Timestamp,
    /// The row's current version (this node's CRDT version).
    pub version: u64,
    /// The readings in it.
    #[serde(serialize_with = "json::summary")]
    pub summary: Summary,
}

/// An alert to record (opened by the detectors).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct NewAlert {
    /// The sensor.
    #[serde(serialize_with = "json::sensor")]
    pub sensor: SensorId,
    /// Event time of the triggering reading.
    #[serde(serialize_with = "json::ts")]
    pub at: Timestamp,
    /// The reading.
    pub value: f64,
    /// Anomaly score in [0, 1].
    pub score: f64,
    /// Which detector.
    #[serde(serialize_with = "json::detector")]
    pub detector: DetectorKind,
    /// The window the detector saw.
    #[serde(serialize_with = "json::summary")]
    pub window: Summary,
}

/// A stored alert.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct StoredAlert {
    /// Row id, monotonic.
    pub id: i64,
    /// The node's hybrid clock when it was recorded; strictly increasing.
    #[serde(serialize_with = "json::hlc")]
    pub hlc: Hlc,
    /// The sensor.
    #[serde(serialize_with = "json::sensor")]
    pub sensor: SensorId,
    /// Event time of the triggering reading.
    #[serde(serialize_with = "json::ts")]
    pub at: Timestamp,
    /// The reading.
    pub value: f64,
    /// Anomaly score in [0, 1].
    pub score: f64,
    /// Which detector.
    #[serde(serialize_with = "json::detector")]
    pub detector: DetectorKind,
    /// The window the detector saw.
    #[serde(serialize_with = "json::summary")]
    pub window: Summary,
    /// When it closed (event time), if it did.
    #[serde(serialize_with = "json::opt_ts")]
    pub resolved_at: Option<Timestamp>,
    /// The most extreme reading while it was open, once closed.
    pub peak: Option<f64>,
}

/// An alert closing.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct ResolvedAlert {
    /// The sensor.
    #[serde(serialize_with = "json::sensor")]
    pub sensor: SensorId,
    /// The `at` of the alert being closed.
    #[serde(serialize_with = "json::ts")]
    pub opened_at: Timestamp,
    /// When it closed (event time).
    #[serde(serialize_with = "json::ts")]
    pub at: Timestamp,
    /// The most extreme reading while open.
    pub peak: f64,
}

/// Which alerts to list (newest first).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct AlertQuery {
    /// Only this sensor's.
    #[serde(serialize_with = "json::opt_sensor")]
    pub sensor: Option<SensorId>,
    /// Only open ones.
    pub open_only: bool,
    /// At most this many.
    pub limit: usize,
}

/// A summary of the store for `/api/v1/status` and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct StoreStatus {
    /// This gateway's CRDT actor id.
    #[serde(serialize_with = "json::node")]
    pub node_id: NodeId,
    /// Highest version written.
    pub version_high: u64,
    /// Highest version the hub acknowledged.
    pub hub_watermark: u64,
    /// Aggregate rows with a version above the watermark.
    pub unsynced_entries: u64,
    /// Bytes the database uses (see the module docs).
    pub db_bytes: u64,
    /// The configured budget (0: none).
    pub budget_bytes: u64,
    /// Raw readings kept.
    pub raw_readings: u64,
    /// Sensors with at least one bucket.
    pub sensors: u64,
    /// Alerts not resolved.
    pub open_alerts: u64,
}
