//! TEMPORARY STUB of the store contract (replaced by the edge-store branch).
#![allow(missing_docs, dead_code)]
pub mod actor;
use tributary_core::codec::v1::DetectorKind;
use tributary_core::hlc::Hlc;
use tributary_core::ids::{NodeId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;
#[derive(Clone, Debug)]
pub struct StoreOptions {
    pub path: std::path::PathBuf,
    pub synchronous_full: bool,
    pub disk_budget_bytes: u64,
    pub keep_raw: bool,
    pub node_id: Option<NodeId>,
    pub cache_keys: usize,
}
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Applied { readings: u64 },
    Duplicate,
}
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Evictions {
    pub raw: u64,
    pub bucket_1s: u64,
    pub bucket_1m: u64,
    pub bucket_1h: u64,
    pub budget_exhausted: bool,
}
#[derive(Clone, Debug)]
pub struct BatchResult {
    pub outcomes: Vec<Outcome>,
    pub version_high: u64,
    pub late_skipped: u64,
    pub below_window: u64,
    pub evicted: Evictions,
}
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("x")]
    X,
}
impl StoreError {
    pub fn reason(&self) -> &'static str {
        "x"
    }
}
#[derive(Clone, Copy, Debug)]
pub struct AggregateQuery {
    pub sensor: SensorId,
    pub resolution: Resolution,
    pub from: Timestamp,
    pub to: Timestamp,
    pub limit: usize,
}
#[derive(Clone, Copy, Debug)]
pub struct AggregateRow {
    pub sensor: SensorId,
    pub resolution: Resolution,
    pub bucket_start: Timestamp,
    pub version: u64,
    pub summary: Summary,
}
#[derive(Clone, Copy, Debug)]
pub struct NewAlert {
    pub sensor: SensorId,
    pub at: Timestamp,
    pub value: f64,
    pub score: f64,
    pub detector: DetectorKind,
    pub window: Summary,
}
#[derive(Clone, Copy, Debug)]
pub struct StoredAlert {
    pub id: i64,
    pub hlc: Hlc,
    pub sensor: SensorId,
    pub at: Timestamp,
    pub value: f64,
    pub score: f64,
    pub detector: DetectorKind,
    pub window: Summary,
    pub resolved_at: Option<Timestamp>,
    pub peak: Option<f64>,
}
#[derive(Clone, Copy, Debug)]
pub struct ResolvedAlert {
    pub sensor: SensorId,
    pub opened_at: Timestamp,
    pub at: Timestamp,
    pub peak: f64,
}
#[derive(Clone, Copy, Debug)]
pub struct AlertQuery {
    pub sensor: Option<SensorId>,
    pub open_only: bool,
    pub limit: usize,
}
#[derive(Clone, Copy, Debug)]
pub struct StoreStatus {
    pub node_id: NodeId,
    pub version_high: u64,
    pub hub_watermark: u64,
    pub unsynced_entries: u64,
    pub db_bytes: u64,
    pub budget_bytes: u64,
    pub raw_readings: u64,
    pub sensors: u64,
    pub open_alerts: u64,
}
