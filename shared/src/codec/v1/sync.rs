//! Edge ↔ hub messages, carried as MQTT payloads (DESIGN.md §6).

use alloc::vec::Vec;

use minicbor::bytes::ByteVec;

use super::fields::{compact_f64, summary_codec};
use crate::crdt::aggregate::{Entry, Key};
use crate::hlc::Hlc;
use crate::ids::{Bucket, NodeId, Resolution, SensorId, Timestamp};
use crate::summary::Summary;

/// Node → hub on (re)connect: "I have written up to `version_high`".
#[derive(Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode)]
#[cbor(array)]
pub struct Hello {
    /// The sender.
    #[n(0)]
    pub node: NodeId,
    /// The highest version the node has written.
    #[n(1)]
    pub version_high: u64,
    /// Anti-entropy digest of what the node believes the hub holds, so a
    /// hub restored from an old backup can ask for a re-send.
    #[n(2)]
    pub digest: Option<Vec<DigestEntry>>,
}

/// One anti-entropy cell: a hash of every (key, version) a node holds for
/// one sensor and one UTC day.
#[derive(Clone, Copy, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode)]
#[cbor(array)]
pub struct DigestEntry {
    /// The sensor.
    #[n(0)]
    pub sensor: SensorId,
    /// The day (a [`Resolution::Day`] bucket).
    #[n(1)]
    pub day: Bucket,
    /// Order-independent hash of the cell's (key, version) pairs.
    #[n(2)]
    pub hash: u64,
}

/// Hub → node answer to [`Hello`]: "send me everything above `watermark`".
#[derive(Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode)]
#[cbor(array)]
pub struct Resume {
    /// The node addressed.
    #[n(0)]
    pub node: NodeId,
    /// The highest version the hub has merged contiguously from this node.
    #[n(1)]
    pub watermark: u64,
    /// Flow control: bytes the node may send before the next ack; `None`
    /// means no limit beyond the node's own batch size.
    #[n(2)]
    pub credit: Option<u32>,
    /// Anti-entropy: the cells of the `Hello`'s digest whose hash differs
    /// from the hub's (each with the *hub's* hash). The node re-stamps
    /// their entries with fresh versions, so they stream to the hub again
    /// like new writes. `None` when nothing differs or the `Hello` carried
    /// no digest.
    #[n(3)]
    pub repair: Option<Vec<DigestEntry>>,
}

/// Hub → node after a durable merge: "I hold everything up to `upto`".
#[derive(Clone, Copy, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode)]
#[cbor(array)]
pub struct Ack {
    /// The node addressed.
    #[n(0)]
    pub node: NodeId,
    /// The new contiguous watermark.
    #[n(1)]
    pub upto: u64,
    /// Flow control, as in [`Resume`].
    #[n(2)]
    pub credit: Option<u32>,
    /// The alert (by its `hlc`; the node is `node`) this ack answers: the
    /// hub stored it durably, so the node may stop re-sending it. `None`
    /// for the answer to a `Delta`. Alerts have no place in the version
    /// order, so they are acknowledged one by one rather than by `upto`.
    #[n(3)]
    pub alert: Option<Hlc>,
}

/// Node → hub: every entry the node wrote with a version in `(from, to]`,
/// grouped by (sensor, resolution) so the common fields and the bucket's
/// high bits are sent once per group, not once per entry.
#[derive(Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode)]
#[cbor(array)]
pub struct Delta {
    /// The writer of every entry in this delta.
    #[n(0)]
    pub node: NodeId,
    /// Exclusive lower bound of the versions covered.
    #[n(1)]
    pub from: u64,
    /// Inclusive upper bound: the delta holds *every* entry of `node` whose
    /// current version lies in `(from, to]`.
    #[n(2)]
    pub to: u64,
    /// The entries.
    #[n(3)]
    pub groups: Vec<DeltaGroup>,
}

/// Entries of one sensor at one resolution.
#[derive(Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode)]
#[cbor(array)]
pub struct DeltaGroup {
    /// The sensor.
    #[n(0)]
    pub sensor: SensorId,
    /// The resolution.
    #[n(1)]
    pub resolution: Resolution,
    /// The lowest bucket of the group; items carry offsets from it.
    #[n(2)]
    pub base: Bucket,
    /// The entries.
    #[n(3)]
    pub items: Vec<DeltaItem>,
}

/// One entry, flattened, with times relative to its bucket's start (a
/// minute bucket's offsets fit in 3 bytes instead of 9).
#[derive(Clone, Copy, Debug, PartialEq, minicbor::Encode, minicbor::Decode)]
#[cbor(array)]
pub struct DeltaItem {
    /// Bucket index minus the group's base.
    #[n(0)]
    pub bucket_offset: u64,
    /// The entry's version.
    #[n(1)]
    pub version: u64,
    /// Readings in the entry (never 0).
    #[n(2)]
    pub count: u64,
    /// Sum of readings.
    #[n(3)]
    #[cbor(with = "compact_f64")]
    pub sum: f64,
    /// Smallest reading.
    #[n(4)]
    #[cbor(with = "compact_f64")]
    pub min: f64,
    /// Largest reading.
    #[n(5)]
    #[cbor(with = "compact_f64")]
    pub max: f64,
    /// Sum of squares.
    #[n(6)]
    #[cbor(with = "compact_f64")]
    pub sum_sq: f64,
    /// First reading's time minus the bucket's start, in ms.
    #[n(7)]
    pub first_offset_ms: u64,
    /// Last reading's time minus the bucket's start, in ms.
    #[n(8)]
    pub last_offset_ms: u64,
}

// Equality is reflexive: decoding refuses NaN, so no field can hold one.
impl Eq for DeltaItem {}

impl Delta {
    /// Builds a delta of `node`'s entries covering versions `(from, to]`.
    /// Entries may come in any order; they are grouped and sorted by key.
    pub fn from_entries(
        node: NodeId,
        from: u64,
        to: u64,
        entries: impl IntoIterator<Item = (Key, Entry)>,
    ) -> Delta {
        let mut entries: Vec<(Key, Entry)> = entries.into_iter().collect();
        entries.sort_unstable_by_key(|(k, _)| *k);
        let mut groups: Vec<DeltaGroup> = Vec::new();
        for (key, entry) in entries {
            let start = key.bucket.start(key.resolution).0;
            let item_of = |base: Bucket| DeltaItem {
                bucket_offset: key.bucket.0.saturating_sub(base.0),
                version: entry.version,
                count: entry.summary.count,
                sum: entry.summary.sum,
                min: entry.summary.min,
                max: entry.summary.max,
                sum_sq: entry.summary.sum_sq,
                first_offset_ms: entry.summary.first_ts.0.saturating_sub(start),
                last_offset_ms: entry.summary.last_ts.0.saturating_sub(start),
            };
            match groups.last_mut() {
                // Sorted by key, so within a group buckets ascend and the
                // first bucket is the base: offsets are never negative.
                Some(g) if g.sensor == key.sensor && g.resolution == key.resolution => {
                    g.items.push(item_of(g.base))
                }
                _ => groups.push(DeltaGroup {
                    sensor: key.sensor,
                    resolution: key.resolution,
                    base: key.bucket,
                    items: alloc::vec![item_of(key.bucket)],
                }),
            }
        }
        Delta {
            node,
            from,
            to,
            groups,
        }
    }

    /// The entries, as (key, entry). Only meaningful on a delta that passed
    /// [`validate`](Delta::validate) (every decoded one has).
    pub fn entries(&self) -> impl Iterator<Item = (Key, Entry)> + '_ {
        self.groups.iter().flat_map(|g| {
            g.items.iter().map(move |it| {
                let bucket = Bucket(g.base.0.saturating_add(it.bucket_offset));
                let start = bucket.start(g.resolution).0;
                let key = Key::new(g.sensor, g.resolution, bucket);
                let summary = Summary {
                    count: it.count,
                    sum: it.sum,
                    min: it.min,
                    max: it.max,
                    sum_sq: it.sum_sq,
                    first_ts: Timestamp(start.saturating_add(it.first_offset_ms)),
                    last_ts: Timestamp(start.saturating_add(it.last_offset_ms)),
                };
                (
                    key,
                    Entry {
                        version: it.version,
                        summary,
                    },
                )
            })
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.groups.iter().map(|g| g.items.len()).sum()
    }

    /// Whether it carries no entry (a pure watermark advance).
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(|g| g.items.is_empty())
    }

    /// Checks what the type cannot: the range is ordered, every version is
    /// inside it, every bucket exists, every time lies inside its bucket and
    /// every summary is one that recording readings could produce.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.from > self.to {
            return Err("delta_range_inverted");
        }
        for g in &self.groups {
            let width = g.resolution.millis();
            for it in &g.items {
                if it.version <= self.from || it.version > self.to {
                    return Err("delta_version_out_of_range");
                }
                let bucket = g.base.0.checked_add(it.bucket_offset).map(Bucket);
                if !bucket.is_some_and(|b| b.is_valid(g.resolution)) {
                    return Err("bucket_out_of_range");
                }
                if it.count == 0 {
                    return Err("empty_entry");
                }
                if it.first_offset_ms >= width || it.last_offset_ms >= width {
                    return Err("time_outside_bucket");
                }
            }
        }
        for (_, e) in self.entries() {
            e.summary.validate()?;
        }
        Ok(())
    }
}

/// Which detector raised an alert. New detectors take new indices; an
/// index is never reused.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    minicbor::Encode,
    minicbor::Decode
)]
#[cbor(index_only)]
pub enum DetectorKind {
    /// Robust z-score over an EWMA mean and variance.
    #[n(0)]
    ZScore,
    /// z-score against the median absolute deviation.
    #[n(1)]
    MadZScore,
    /// CUSUM change point.
    #[n(2)]
    Cusum,
    /// Page-Hinkley change point.
    #[n(3)]
    PageHinkley,
    /// Value stuck (flatline).
    #[n(4)]
    Flatline,
    /// Rate of change too high.
    #[n(5)]
    RateOfChange,
    /// Value outside configured limits.
    #[n(6)]
    Range,
    /// Deviation from a seasonal baseline.
    #[n(7)]
    Seasonal,
    /// A combination of the above.
    #[n(8)]
    Ensemble,
}

/// Node → hub: an anomaly, sent ahead of bulk aggregates.
#[derive(Clone, Debug, PartialEq, minicbor::Encode, minicbor::Decode)]
#[cbor(array)]
pub struct Alert {
    /// The node that detected it (and the alert's writer).
    #[n(0)]
    pub node: NodeId,
    /// The sensor.
    #[n(1)]
    pub sensor: SensorId,
    /// When, by the node's hybrid clock: (hlc, node) identifies the alert.
    #[n(2)]
    pub hlc: Hlc,
    /// Event time of the reading that triggered it.
    #[n(3)]
    pub at: Timestamp,
    /// The reading.
    #[n(4)]
    #[cbor(with = "compact_f64")]
    pub value: f64,
    /// Anomaly score in [0, 1].
    #[n(5)]
    #[cbor(with = "compact_f64")]
    pub score: f64,
    /// Which detector.
    #[n(6)]
    pub detector: DetectorKind,
    /// The window the detector saw, for context on the dashboard.
    #[n(7)]
    #[cbor(with = "summary_codec")]
    pub window: Summary,
}

// Reflexive for the same reason as `DeltaItem`: no NaN ever decodes.
impl Eq for Alert {}

impl Alert {
    /// Checks the score range.
    pub fn validate(&self) -> Result<(), &'static str> {
        if !(0.0..=1.0).contains(&self.score) {
            return Err("score_out_of_range");
        }
        Ok(())
    }
}

/// Both ways: one Automerge sync message for the fleet configuration
/// document, opaque to the codec.
#[derive(Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode)]
#[cbor(array)]
pub struct ConfigSync {
    /// The gateway whose conversation this is.
    #[n(0)]
    pub node: NodeId,
    /// Automerge's sync message bytes.
    #[n(1)]
    pub sync: ByteVec,
}

/// Every edge ↔ hub message. Variant indices are the message types of
/// docs/protocol.md; never reused or renumbered.
///
/// Encoded flat: `[type, body]`, one array level less than minicbor's
/// default for enums.
#[derive(Clone, Debug, PartialEq, Eq, minicbor::Encode, minicbor::Decode)]
#[cbor(flat)]
pub enum Message {
    /// See [`Hello`].
    #[n(0)]
    Hello(#[n(0)] Hello),
    /// See [`Resume`].
    #[n(1)]
    Resume(#[n(0)] Resume),
    /// See [`Delta`].
    #[n(2)]
    Delta(#[n(0)] Delta),
    /// See [`Ack`].
    #[n(3)]
    Ack(#[n(0)] Ack),
    /// See [`Alert`].
    #[n(4)]
    Alert(#[n(0)] Alert),
    /// See [`ConfigSync`].
    #[n(5)]
    Config(#[n(0)] ConfigSync),
}

impl Message {
    /// The node the message is from or for; the hub checks it against the
    /// topic and the client's credentials.
    pub fn node(&self) -> NodeId {
        match self {
            Message::Hello(m) => m.node,
            Message::Resume(m) => m.node,
            Message::Delta(m) => m.node,
            Message::Ack(m) => m.node,
            Message::Alert(m) => m.node,
            Message::Config(m) => m.node,
        }
    }

    /// Semantic checks beyond the CBOR shape.
    pub fn validate(&self) -> Result<(), &'static str> {
        match self {
            Message::Delta(d) => d.validate(),
            Message::Alert(a) => a.validate(),
            _ => Ok(()),
        }
    }
}
