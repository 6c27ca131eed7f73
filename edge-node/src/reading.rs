//! What every source hands to ingest: a [`Submission`] of readings (and
//! device windows) with an optional idempotency [`Origin`], and the JSON and
//! CBOR bodies that HTTP clients and local MQTT devices send.
//!
//! Validation lives here, once, so every source refuses the same inputs for
//! the same reasons (and the same metric labels).

use serde::Deserialize;
use tributary_core::ids::{Bucket, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;

/// One sensor reading.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// The sensor.
    pub sensor: SensorId,
    /// Event time (ms since the Unix epoch).
    pub ts: Timestamp,
    /// The value; must be finite.
    pub value: f64,
}

/// What a submission carries.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Item {
    /// A raw reading: updates the buckets containing `ts` at every
    /// resolution.
    Reading(Sample),
    /// A window a device pre-aggregated: added to the buckets of every
    /// resolution that contain the whole window (`first_ts..=last_ts`);
    /// finer buckets cannot hold it and are skipped.
    Window {
        /// The sensor.
        sensor: SensorId,
        /// The window's readings.
        summary: Summary,
    },
}

impl Item {
    /// The sensor this item is about.
    pub fn sensor(&self) -> SensorId {
        match self {
            Item::Reading(s) => s.sensor,
            Item::Window { sensor, .. } => *sensor,
        }
    }

    /// Number of readings it stands for.
    pub fn readings(&self) -> u64 {
        match self {
            Item::Reading(_) => 1,
            Item::Window { summary, .. } => summary.count,
        }
    }

    /// The latest event time in it.
    pub fn last_ts(&self) -> Timestamp {
        match self {
            Item::Reading(s) => s.ts,
            Item::Window { summary, .. } => summary.last_ts,
        }
    }
}

/// Who sent a submission and its sequence number there: the key that makes
/// a retransmission a no-op. `source` is stable per sender (a device id and
/// boot counter, an MQTT client, an HTTP client's own name).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// The sender, at most [`MAX_SOURCE_LEN`] bytes.
    pub source: String,
    /// The sender's sequence number for this submission.
    pub seq: u64,
}

/// Longest accepted `Origin::source`.
pub const MAX_SOURCE_LEN: usize = 128;

/// A unit of ingest: all its items are stored in one transaction or none
/// are; acknowledged to the sender only after that transaction committed.
#[derive(Clone, Debug, PartialEq)]
pub struct Submission {
    /// Idempotency key; `None` means the sender does not retransmit (each
    /// copy counts).
    pub origin: Option<Origin>,
    /// The readings.
    pub items: Vec<Item>,
}

/// Which kind of source a submission came through (a bounded metric label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// `POST /api/v1/readings`.
    Http,
    /// The local MQTT subscription.
    Mqtt,
    /// The serial link to firmware.
    Serial,
    /// The built-in simulator.
    Simulator,
    /// CSV replay.
    Replay,
}

impl SourceKind {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Http => "http",
            SourceKind::Mqtt => "mqtt",
            SourceKind::Serial => "serial",
            SourceKind::Simulator => "simulator",
            SourceKind::Replay => "replay",
        }
    }
}

/// Why a submission was refused before it reached the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    /// No items.
    #[error("the submission holds no readings")]
    Empty,
    /// More items than one submission may carry.
    #[error("more than {0} readings in one submission")]
    TooMany(usize),
    /// NaN or ±infinity (or a value whose square overflows).
    #[error("value is not a finite number")]
    NonFinite,
    /// Event time further ahead of the gateway clock than allowed.
    #[error("timestamp is too far in the future")]
    FutureTimestamp,
    /// Event time beyond what the aggregate keys can represent.
    #[error("timestamp out of range")]
    TimestampOutOfRange,
    /// A window summary that is empty or inconsistent.
    #[error("invalid window: {0}")]
    InvalidWindow(&'static str),
    /// `Origin::source` empty or longer than [`MAX_SOURCE_LEN`].
    #[error("source name must be 1..={MAX_SOURCE_LEN} bytes")]
    BadSource,
}

impl RejectReason {
    /// Stable metric label (`tributary_readings_rejected_total{reason}`).
    pub fn reason(&self) -> &'static str {
        match self {
            RejectReason::Empty => "empty",
            RejectReason::TooMany(_) => "too_many",
            RejectReason::NonFinite => "non_finite",
            RejectReason::FutureTimestamp => "future_timestamp",
            RejectReason::TimestampOutOfRange => "timestamp_out_of_range",
            RejectReason::InvalidWindow(_) => "invalid_window",
            RejectReason::BadSource => "bad_source",
        }
    }
}

/// A refused submission: which item and why.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("reading {index}: {reason}")]
pub struct Rejected {
    /// Index of the offending item (0 for submission-level problems).
    pub index: usize,
    /// Why.
    pub reason: RejectReason,
}

/// Limits applied by [`Submission::validate`].
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// The gateway's wall clock now.
    pub now: Timestamp,
    /// How far ahead of `now` an event time may be.
    pub max_future_ms: u64,
    /// Most items per submission.
    pub max_items: usize,
}

impl Submission {
    /// Checks every item. All-or-nothing: one bad item refuses the whole
    /// submission, so a sender never has to work out which half landed.
    pub fn validate(&self, limits: &Limits) -> Result<(), Rejected> {
        let whole = |reason| Rejected { index: 0, reason };
        if let Some(o) = &self.origin
            && (o.source.is_empty() || o.source.len() > MAX_SOURCE_LEN)
        {
            return Err(whole(RejectReason::BadSource));
        }
        if self.items.is_empty() {
            return Err(whole(RejectReason::Empty));
        }
        if self.items.len() > limits.max_items {
            return Err(whole(RejectReason::TooMany(limits.max_items)));
        }
        let horizon = limits.now.as_millis().saturating_add(limits.max_future_ms);
        for (index, item) in self.items.iter().enumerate() {
            let fail = |reason| Rejected { index, reason };
            match item {
                Item::Reading(s) => {
                    let v = s.value;
                    if !v.is_finite() || !(v * v).is_finite() {
                        return Err(fail(RejectReason::NonFinite));
                    }
                    check_time(s.ts, horizon).map_err(fail)?;
                }
                Item::Window { summary, .. } => {
                    if summary.is_empty() {
                        return Err(fail(RejectReason::InvalidWindow("empty")));
                    }
                    summary
                        .validate()
                        .map_err(|r| fail(RejectReason::InvalidWindow(r)))?;
                    check_time(summary.last_ts, horizon).map_err(fail)?;
                    // A window lands in the buckets that contain all of it;
                    // one that crosses midnight (UTC) fits none, not even a
                    // day bucket, and would be stored nowhere.
                    let day = |t| Bucket::containing(t, Resolution::Day);
                    if day(summary.first_ts) != day(summary.last_ts) {
                        return Err(fail(RejectReason::InvalidWindow("spans_days")));
                    }
                }
            }
        }
        Ok(())
    }
}

fn check_time(ts: Timestamp, horizon_ms: u64) -> Result<(), RejectReason> {
    // Every resolution's bucket start must be representable; the day
    // bucket is the coarsest, so checking it covers the others.
    let max = MAX_EVENT_MS;
    if ts.as_millis() > max {
        return Err(RejectReason::TimestampOutOfRange);
    }
    if ts.as_millis() > horizon_ms {
        return Err(RejectReason::FutureTimestamp);
    }
    Ok(())
}

/// Latest event time accepted at all: the year 10000, far past any real
/// clock and far below where bucket arithmetic could overflow.
pub const MAX_EVENT_MS: u64 = 253_402_300_800_000;

// Keep the resolutions referenced so a new one is a compile-time reminder
// to revisit MAX_EVENT_MS (bucket starts are index × width).
const _: () = assert!(MAX_EVENT_MS / Resolution::Day.millis() < u32::MAX as u64);

/// A body that could not be parsed: the reason is the metric label, the
/// detail goes to the client.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{detail}")]
pub struct BodyError {
    /// Stable label (`bad_json`, `bad_cbor`, `unsupported_media_type`).
    pub reason: &'static str,
    /// Human-readable detail for the error response.
    pub detail: String,
}

/// The body of `POST /api/v1/readings` and of local MQTT messages, as JSON.
/// Accepted shapes: one reading object, an array of them, or
/// `{"source": "...", "seq": 5, "readings": [...]}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonBody {
    Batch(JsonBatch),
    Many(Vec<JsonReading>),
    One(JsonReading),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonBatch {
    source: Option<String>,
    seq: Option<u64>,
    readings: Vec<JsonReading>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonReading {
    sensor: u32,
    value: f64,
    /// Event time in ms since the epoch; the receive time if absent.
    ts: Option<u64>,
}

/// The CBOR form of the same body: a map `{0: source?, 1: seq?, 2: [reading]}`
/// with each reading a map `{0: sensor, 1: value, 2: ts?}`.
#[derive(minicbor::Decode)]
#[cbor(map)]
struct CborBatch {
    #[n(0)]
    source: Option<String>,
    #[n(1)]
    seq: Option<u64>,
    #[n(2)]
    readings: Vec<CborReading>,
}

#[derive(minicbor::Decode)]
#[cbor(map)]
struct CborReading {
    #[n(0)]
    sensor: u32,
    #[n(1)]
    value: f64,
    #[n(2)]
    ts: Option<u64>,
}

fn batch_origin(source: Option<String>, seq: Option<u64>) -> Result<Option<Origin>, BodyError> {
    match (source, seq) {
        (Some(source), Some(seq)) => Ok(Some(Origin { source, seq })),
        (None, None) => Ok(None),
        _ => Err(BodyError {
            reason: "bad_origin",
            detail: "`source` and `seq` must be given together".into(),
        }),
    }
}

/// One reading of a body; a missing timestamp is the receive time `now`.
fn reading_item(sensor: u32, value: f64, ts: Option<u64>, now: Timestamp) -> Item {
    Item::Reading(Sample {
        sensor: SensorId(sensor),
        ts: ts.map_or(now, Timestamp::from_millis),
        value,
    })
}

/// Parses a JSON body. `now` fills in missing timestamps.
pub fn parse_json(body: &[u8], now: Timestamp) -> Result<Submission, BodyError> {
    let parsed: JsonBody = serde_json::from_slice(body).map_err(|e| BodyError {
        reason: "bad_json",
        detail: format!("invalid readings JSON: {e}"),
    })?;
    let (origin, readings) = match parsed {
        JsonBody::Batch(b) => (batch_origin(b.source, b.seq)?, b.readings),
        JsonBody::Many(v) => (None, v),
        JsonBody::One(r) => (None, vec![r]),
    };
    let items = readings
        .into_iter()
        .map(|r| reading_item(r.sensor, r.value, r.ts, now))
        .collect();
    Ok(Submission { origin, items })
}

/// Parses a CBOR body (the map layout above: `{0: source?, 1: seq?, 2: [reading]}`).
pub fn parse_cbor(body: &[u8], now: Timestamp) -> Result<Submission, BodyError> {
    let b: CborBatch = minicbor::decode(body).map_err(|e| BodyError {
        reason: "bad_cbor",
        detail: format!("invalid readings CBOR: {e}"),
    })?;
    let origin = batch_origin(b.source, b.seq)?;
    let items = b
        .readings
        .into_iter()
        .map(|r| reading_item(r.sensor, r.value, r.ts, now))
        .collect();
    Ok(Submission { origin, items })
}

/// Parses either form, by content type (`application/json`,
/// `application/cbor`) or, when `content_type` is `None` (MQTT), by the
/// first byte: JSON bodies start with `{` or `[` (after whitespace), which
/// no CBOR map starts with.
pub fn parse_body(
    content_type: Option<&str>,
    body: &[u8],
    now: Timestamp,
) -> Result<Submission, BodyError> {
    match content_type.map(|c| c.split(';').next().unwrap_or("").trim()) {
        Some("application/json") => parse_json(body, now),
        Some("application/cbor") => parse_cbor(body, now),
        Some(other) => Err(BodyError {
            reason: "unsupported_media_type",
            detail: format!("content type `{other}`: use application/json or application/cbor"),
        }),
        None => {
            let first = body.iter().find(|b| !b.is_ascii_whitespace());
            if matches!(first, Some(b'{' | b'[')) {
                parse_json(body, now)
            } else {
                parse_cbor(body, now)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Timestamp = Timestamp::from_millis(1_700_000_000_000);

    fn limits() -> Limits {
        Limits {
            now: NOW,
            max_future_ms: 60_000,
            max_items: 10,
        }
    }

    #[test]
    fn json_shapes_parse_to_the_same_items() {
        let one = parse_json(br#"{"sensor":1,"value":2.5,"ts":5}"#, NOW).unwrap();
        let many = parse_json(br#"[{"sensor":1,"value":2.5,"ts":5}]"#, NOW).unwrap();
        let batch = parse_json(
            br#"{"source":"a","seq":9,"readings":[{"sensor":1,"value":2.5,"ts":5}]}"#,
            NOW,
        )
        .unwrap();
        assert_eq!(one.items, many.items);
        assert_eq!(one.items, batch.items);
        assert_eq!(
            batch.origin,
            Some(Origin {
                source: "a".into(),
                seq: 9
            })
        );
        assert_eq!(one.origin, None);
    }

    #[test]
    fn missing_timestamp_is_receive_time() {
        let s = parse_json(br#"{"sensor":1,"value":2.5}"#, NOW).unwrap();
        assert_eq!(s.items[0].last_ts(), NOW);
    }

    #[test]
    fn bad_bodies_are_errors_with_labels() {
        for (body, reason) in [
            (&b"{"[..], "bad_json"),
            (br#"{"sensor":"x","value":1}"#, "bad_json"),
            (br#"{"sensor":1,"value":1,"extra":2}"#, "bad_json"),
            (br#"{"source":"a","readings":[]}"#, "bad_origin"),
        ] {
            assert_eq!(
                parse_json(body, NOW).unwrap_err().reason,
                reason,
                "{body:?}"
            );
        }
        assert_eq!(
            parse_cbor(&[0xff, 0x00], NOW).unwrap_err().reason,
            "bad_cbor"
        );
        assert_eq!(
            parse_body(Some("text/plain"), b"x", NOW)
                .unwrap_err()
                .reason,
            "unsupported_media_type"
        );
    }

    #[test]
    fn cbor_body_round_trips_through_a_hand_encoded_map() {
        let mut buf = Vec::new();
        let mut e = minicbor::Encoder::new(&mut buf);
        e.map(3).unwrap();
        e.u8(0).unwrap().str("dev").unwrap();
        e.u8(1).unwrap().u64(4).unwrap();
        e.u8(2).unwrap().array(1).unwrap();
        e.map(3).unwrap();
        e.u8(0).unwrap().u32(7).unwrap();
        e.u8(1).unwrap().f64(1.5).unwrap();
        e.u8(2).unwrap().u64(10).unwrap();
        let s = parse_body(None, &buf, NOW).unwrap();
        assert_eq!(
            s.origin,
            Some(Origin {
                source: "dev".into(),
                seq: 4
            })
        );
        assert_eq!(
            s.items,
            vec![Item::Reading(Sample {
                sensor: SensorId(7),
                ts: Timestamp::from_millis(10),
                value: 1.5
            })]
        );
        // Sniffing picks JSON for JSON.
        assert!(parse_body(None, b" [ ]", NOW).unwrap().items.is_empty());
    }

    #[test]
    fn validation_refuses_each_bad_input_with_its_reason() {
        let r = |value, ts| {
            Item::Reading(Sample {
                sensor: SensorId(1),
                ts: Timestamp::from_millis(ts),
                value,
            })
        };
        let now = NOW.as_millis();
        let sub = |items| Submission {
            origin: None,
            items,
        };
        let cases = [
            (sub(vec![]), RejectReason::Empty),
            (sub(vec![r(1.0, now); 11]), RejectReason::TooMany(10)),
            (
                sub(vec![r(1.0, now), r(f64::NAN, now)]),
                RejectReason::NonFinite,
            ),
            (sub(vec![r(f64::INFINITY, now)]), RejectReason::NonFinite),
            (sub(vec![r(1e200, now)]), RejectReason::NonFinite),
            (
                sub(vec![r(1.0, now + 60_001)]),
                RejectReason::FutureTimestamp,
            ),
            (
                sub(vec![r(1.0, u64::MAX)]),
                RejectReason::TimestampOutOfRange,
            ),
        ];
        for (s, want) in cases {
            assert_eq!(s.validate(&limits()).unwrap_err().reason, want, "{s:?}");
        }
        assert_eq!(
            sub(vec![r(1.0, now), r(f64::NAN, now)])
                .validate(&limits())
                .unwrap_err()
                .index,
            1
        );
        assert!(
            sub(vec![r(1.0, now + 60_000), r(-3.0, 0)])
                .validate(&limits())
                .is_ok()
        );
        let bad_source = Submission {
            origin: Some(Origin {
                source: String::new(),
                seq: 1,
            }),
            items: vec![r(1.0, now)],
        };
        assert_eq!(
            bad_source.validate(&limits()).unwrap_err().reason,
            RejectReason::BadSource
        );
    }

    #[test]
    fn windows_are_validated() {
        let w = |summary| Submission {
            origin: None,
            items: vec![Item::Window {
                sensor: SensorId(1),
                summary,
            }],
        };
        assert!(matches!(
            w(Summary::EMPTY).validate(&limits()).unwrap_err().reason,
            RejectReason::InvalidWindow(_)
        ));
        let ok = Summary::of(NOW, 2.0).unwrap();
        assert!(w(ok).validate(&limits()).is_ok());
        let day = Resolution::Day.millis();
        let midnight = NOW.as_millis() / day * day;
        let mut across = Summary::of(Timestamp::from_millis(midnight - 1), 1.0).unwrap();
        across
            .record(Timestamp::from_millis(midnight), 2.0)
            .unwrap();
        assert_eq!(
            w(across).validate(&limits()).unwrap_err().reason,
            RejectReason::InvalidWindow("spans_days")
        );
    }
}
