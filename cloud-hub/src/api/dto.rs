//! What the API sends: one serde + OpenAPI schema type per response shape,
//! built from the store's types. Ids are text as their `Display` writes
//! them (nodes: 16 hex digits); times are ms since the Unix epoch, with an
//! RFC 3339 copy where a person reads them.

use serde::Serialize;
use tributary_core::codec::v1::DetectorKind;
use tributary_core::summary::Summary;
use utoipa::ToSchema;

use crate::store::{NodeRecord, SensorRecord, StoredAlert};

/// RFC 3339 (UTC) of a ms timestamp; `None` outside jiff's range.
pub(crate) fn rfc3339(ms: u64) -> Option<String> {
    let ms = i64::try_from(ms).ok()?;
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| t.to_string())
}

/// One node's bookkeeping.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NodeOut {
    /// The node id, 16 hex digits.
    pub id: String,
    /// When the hub last heard from it (ms); `null` if never.
    pub last_seen_ms: Option<u64>,
    /// The same time in RFC 3339.
    pub last_seen: Option<String>,
    /// The highest entry version received from it.
    pub version_high: u64,
    /// Every entry up to this version is merged.
    pub watermark: u64,
    /// How far behind the hub is.
    pub lag: LagOut,
    /// Heard from within the online window.
    pub online: bool,
}

/// How far behind the hub is for one node.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct LagOut {
    /// `version_high - watermark`: versions received out of order, waiting
    /// for a gap to fill.
    pub versions: u64,
    /// Seconds since the hub last heard from it; `null` if never.
    pub seconds: Option<u64>,
}

impl NodeOut {
    pub(crate) fn new(r: &NodeRecord, now_ms: u64, online_window_ms: u64) -> NodeOut {
        let age = r.last_seen_ms.map(|s| now_ms.saturating_sub(s));
        NodeOut {
            id: r.node.to_string(),
            last_seen_ms: r.last_seen_ms,
            last_seen: r.last_seen_ms.and_then(rfc3339),
            version_high: r.version_high,
            watermark: r.watermark,
            lag: LagOut {
                versions: r.version_high.saturating_sub(r.watermark),
                seconds: age.map(|a| a / 1_000),
            },
            online: age.is_some_and(|a| a <= online_window_ms),
        }
    }
}

/// `GET /api/v1/nodes`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NodeList {
    /// Every known node, by id.
    pub items: Vec<NodeOut>,
    /// A node is online when heard from within this many seconds.
    pub online_window_seconds: u64,
}

/// A sensor with data.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SensorOut {
    /// The sensor id.
    pub id: u32,
    /// The nodes that report it (16 hex digits each), ascending.
    pub nodes: Vec<String>,
    /// The newest reading time among its stored entries (ms).
    pub newest_ms: u64,
    /// The same time in RFC 3339.
    pub newest: Option<String>,
}

impl From<&SensorRecord> for SensorOut {
    fn from(r: &SensorRecord) -> SensorOut {
        SensorOut {
            id: r.sensor.0,
            nodes: r.nodes.iter().map(ToString::to_string).collect(),
            newest_ms: r.newest.0,
            newest: rfc3339(r.newest.0),
        }
    }
}

/// `GET /api/v1/sensors`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SensorList {
    /// Every sensor with data, by id.
    pub items: Vec<SensorOut>,
}

/// One bucket's statistics.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BucketOut {
    /// First ms of the bucket.
    pub start: u64,
    /// First ms after the bucket.
    pub end: u64,
    /// Readings.
    pub count: u64,
    /// Sum of the readings.
    pub sum: f64,
    /// Mean; `null` when empty.
    pub mean: Option<f64>,
    /// Smallest reading.
    pub min: Option<f64>,
    /// Largest reading.
    pub max: Option<f64>,
    /// Population standard deviation (divides by `count`).
    pub stddev: Option<f64>,
    /// Time of the first reading (ms).
    pub first_ts: Option<u64>,
    /// Time of the last reading (ms).
    pub last_ts: Option<u64>,
    /// The entry's version (per-node buckets only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
    /// Final: every node that reports the sensor was heard from after the
    /// bucket ended with nothing pending (see `completeness`).
    pub complete: bool,
}

impl BucketOut {
    pub(crate) fn new(
        start: u64,
        width: u64,
        s: &Summary,
        version: Option<u64>,
        complete_before: u64,
    ) -> BucketOut {
        let end = start.saturating_add(width);
        let some = |x: f64| (!s.is_empty()).then_some(x);
        BucketOut {
            start,
            end,
            count: s.count,
            sum: s.sum,
            mean: s.mean(),
            min: some(s.min),
            max: some(s.max),
            stddev: s.stddev(),
            first_ts: (!s.is_empty()).then_some(s.first_ts.0),
            last_ts: (!s.is_empty()).then_some(s.last_ts.0),
            version,
            complete: end <= complete_before,
        }
    }
}

/// One node's part in the completeness of a response.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct NodeCompleteness {
    /// The node, 16 hex digits.
    pub node: String,
    /// Its highest received version.
    pub version_high: u64,
    /// Its contiguous watermark.
    pub watermark: u64,
    /// When the hub last heard from it (ms).
    pub last_seen_ms: Option<u64>,
    /// `watermark == version_high`: nothing received is waiting for a gap.
    pub caught_up: bool,
    /// Its buckets ending at or before this time (ms) are final: `last_seen_ms`
    /// if caught up, else 0.
    pub final_before_ms: u64,
}

/// How final the numbers of a response are.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Completeness {
    /// Buckets ending at or before this time (ms) are final: the minimum of
    /// the contributing nodes' `final_before_ms` (0 if there is none).
    pub complete_before_ms: u64,
    /// Every node that reports the sensor (or the one asked for).
    pub nodes: Vec<NodeCompleteness>,
}

impl Completeness {
    /// The completeness given the nodes that report the sensor.
    pub(crate) fn of(nodes: &[NodeRecord]) -> Completeness {
        let nodes: Vec<NodeCompleteness> = nodes
            .iter()
            .map(|r| {
                let caught_up = r.watermark >= r.version_high;
                NodeCompleteness {
                    node: r.node.to_string(),
                    version_high: r.version_high,
                    watermark: r.watermark,
                    last_seen_ms: r.last_seen_ms,
                    caught_up,
                    final_before_ms: if caught_up {
                        r.last_seen_ms.unwrap_or(0)
                    } else {
                        0
                    },
                }
            })
            .collect();
        Completeness {
            complete_before_ms: nodes.iter().map(|n| n.final_before_ms).min().unwrap_or(0),
            nodes,
        }
    }
}

/// One node's series (`per_node=true`).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SeriesOut {
    /// The node, 16 hex digits.
    pub node: String,
    /// Its buckets, oldest first.
    pub items: Vec<BucketOut>,
}

/// `GET /api/v1/aggregates`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AggregatesOut {
    /// The sensor.
    pub sensor: u32,
    /// The bucket width: `1s`, `1m`, `1h` or `1d`.
    pub resolution: String,
    /// The node asked for (`node=`); `null` when merged across nodes.
    pub node: Option<String>,
    /// Buckets with data, oldest first: merged across nodes, or the one
    /// node's when `node` is given.
    pub items: Vec<BucketOut>,
    /// With `per_node=true`: each contributing node's buckets of the same
    /// page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series: Option<Vec<SeriesOut>>,
    /// Pass as `from` to get the next page; `null` on the last page.
    pub next_from: Option<u64>,
    /// Whether the numbers are final.
    pub completeness: Completeness,
}

/// An alert's window statistics.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WindowOut {
    /// Readings in the window.
    pub count: u64,
    /// Their mean.
    pub mean: Option<f64>,
    /// Smallest.
    pub min: Option<f64>,
    /// Largest.
    pub max: Option<f64>,
    /// Population standard deviation.
    pub stddev: Option<f64>,
}

/// An alert.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AlertOut {
    /// The node that raised it, 16 hex digits.
    pub node: String,
    /// Its HLC, packed as a u64 (with `node`, the alert's identity; the
    /// `{hlc}` of the ack route).
    pub hlc: u64,
    /// The HLC's physical time (ms).
    pub hlc_ms: u64,
    /// The sensor.
    pub sensor: u32,
    /// Event time of the triggering reading (ms).
    pub at: u64,
    /// The same time in RFC 3339.
    pub at_rfc3339: Option<String>,
    /// The reading.
    pub value: f64,
    /// Anomaly score in [0, 1].
    pub score: f64,
    /// The detector: `zscore`, `madzscore`, `cusum`, `pagehinkley`,
    /// `flatline`, `rateofchange`, `range`, `seasonal`, `ensemble`.
    pub detector: String,
    /// The window the detector saw.
    pub window: WindowOut,
    /// When the hub stored it (ms).
    pub received_ms: u64,
    /// When it was acknowledged (ms); `null` while open.
    pub acked_ms: Option<u64>,
    /// `acked_ms != null`.
    pub acknowledged: bool,
}

fn detector_name(d: DetectorKind) -> &'static str {
    match d {
        DetectorKind::ZScore => "zscore",
        DetectorKind::MadZScore => "madzscore",
        DetectorKind::Cusum => "cusum",
        DetectorKind::PageHinkley => "pagehinkley",
        DetectorKind::Flatline => "flatline",
        DetectorKind::RateOfChange => "rateofchange",
        DetectorKind::Range => "range",
        DetectorKind::Seasonal => "seasonal",
        DetectorKind::Ensemble => "ensemble",
    }
}

impl From<&StoredAlert> for AlertOut {
    fn from(s: &StoredAlert) -> AlertOut {
        let a = &s.alert;
        let w = &a.window;
        AlertOut {
            node: a.node.to_string(),
            hlc: a.hlc.as_u64(),
            hlc_ms: a.hlc.physical_ms(),
            sensor: a.sensor.0,
            at: a.at.0,
            at_rfc3339: rfc3339(a.at.0),
            value: a.value,
            score: a.score,
            detector: detector_name(a.detector).to_string(),
            window: WindowOut {
                count: w.count,
                mean: w.mean(),
                min: (!w.is_empty()).then_some(w.min),
                max: (!w.is_empty()).then_some(w.max),
                stddev: w.stddev(),
            },
            received_ms: s.received_ms,
            acked_ms: s.acked_ms,
            acknowledged: s.acked_ms.is_some(),
        }
    }
}

/// `GET /api/v1/alerts`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AlertList {
    /// Matching alerts, newest event time first.
    pub items: Vec<AlertOut>,
    /// Pass as `cursor` to get the next page; `null` on the last page.
    pub next_cursor: Option<String>,
}

/// `POST /api/v1/alerts/{node}/{hlc}/ack`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AckOut {
    /// The alert's node.
    pub node: String,
    /// The alert's HLC (packed u64).
    pub hlc: u64,
    /// Always `true` (the first acknowledgement's time is kept).
    pub acknowledged: bool,
}

/// Node counts of the fleet.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FleetNodes {
    /// Known nodes.
    pub total: u64,
    /// Heard from within the online window.
    pub online: u64,
    /// The others.
    pub offline: u64,
}

/// `GET /api/v1/fleet`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FleetOut {
    /// Node counts.
    pub nodes: FleetNodes,
    /// The largest `lag.versions` of any node.
    pub max_lag_versions: u64,
    /// The largest `lag.seconds` of any node (`null` if no node was seen).
    pub max_lag_seconds: Option<u64>,
    /// Alerts not acknowledged.
    pub alerts_open: u64,
    /// Sensors with data.
    pub sensors: u64,
    /// The hub's MQTT client is connected.
    pub mqtt_connected: bool,
    /// The last store write succeeded.
    pub store_ok: bool,
    /// Seconds since the hub started.
    pub uptime_seconds: u64,
    /// A node is online when heard from within this many seconds.
    pub online_window_seconds: u64,
}
