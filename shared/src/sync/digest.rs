//! Anti-entropy: cell digests that let a hub notice it lost data it had
//! acknowledged, and ask for exactly that data again (docs/protocol.md,
//! "Anti-entropy").
//!
//! The watermark protocol alone trusts the hub's memory: once a range is
//! acknowledged the node never sends it again. A hub restored from a backup
//! *together with* its watermarks answers the next `Hello` with the older
//! watermark and the node rewinds, but a hub whose rows were lost while its
//! watermark table survived (a partial restore, a damaged page, an operator
//! deleting rows) would never notice. So the node also describes what it
//! believes the hub holds, one **cell** at a time: a cell is one sensor on
//! one UTC day, and its hash covers the `(node, key, version)` of the
//! node's hour and day entries in that day. The hub hashes its own copy of
//! the same entries; a cell that differs is listed in the `Resume`, and the
//! node gives all of the cell's entries (every synced resolution) fresh
//! versions, so they stream to the hub again through the ordinary,
//! acknowledged path (`NodeSync::take_repairs`).
//!
//! Why hour and day entries only: every reading updates its hour and day
//! buckets, each with a fresh version, so any lost write of a minute is
//! also a lost (or stale) version of its hour in the hub's copy, and 25
//! rows per cell keep the hub's check cheap (a minute-level hash would read
//! 1 465). A cell is only offered once every entry in it is acknowledged
//! (its highest version ≤ the node's acked watermark): newer entries may
//! still be in flight, and the hub must not be asked to compare what it
//! cannot have yet.
//!
//! The hash is order-independent (a wrapping sum of a mixed hash per
//! entry), so both sides may read the rows in any order.

use crate::codec::v1::DigestEntry;
use crate::crdt::aggregate::Key;
use crate::ids::{Bucket, NodeId, Resolution, SensorId};

/// The resolutions a cell's hash covers.
pub const DIGEST_RESOLUTIONS: [Resolution; 2] = [Resolution::Hour, Resolution::Day];

/// One cell of a digest: a sensor on a UTC day (a [`Resolution::Day`]
/// bucket). Cells order newest day first, then by descending sensor: the
/// order a node walks its history in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cell {
    /// The day.
    pub day: Bucket,
    /// The sensor.
    pub sensor: SensorId,
}

impl PartialOrd for Cell {
    fn partial_cmp(&self, other: &Self) -> Option<core::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Cell {
    /// Newest first: a greater cell is an older day (or, on the same day, a
    /// lower sensor id).
    fn cmp(&self, other: &Self) -> core::cmp::Ordering {
        (other.day, other.sensor).cmp(&(self.day, self.sensor))
    }
}

impl Cell {
    /// The cell `key` falls in, if its resolution is digested.
    pub fn of(key: &Key) -> Option<Cell> {
        if !DIGEST_RESOLUTIONS.contains(&key.resolution) {
            return None;
        }
        Some(Cell {
            day: key.bucket.to_coarser(key.resolution, Resolution::Day)?,
            sensor: key.sensor,
        })
    }

    /// The buckets of `resolution` inside this cell's day, first and last
    /// (inclusive): what a repair of the cell re-stamps at that resolution.
    pub fn buckets(&self, resolution: Resolution) -> (Bucket, Bucket) {
        let per_day = Resolution::Day.millis() / resolution.millis();
        let first = self.day.0.saturating_mul(per_day);
        (Bucket(first), Bucket(first.saturating_add(per_day - 1)))
    }

    /// Whether `key` lies in this cell (any resolution).
    pub fn contains(&self, key: &Key) -> bool {
        let (lo, hi) = self.buckets(key.resolution);
        key.sensor == self.sensor && (lo..=hi).contains(&key.bucket)
    }
}

/// The cell a digest entry (of a `Hello`, or a `Resume`'s repair list)
/// names.
impl From<&DigestEntry> for Cell {
    fn from(d: &DigestEntry) -> Cell {
        Cell {
            day: d.day,
            sensor: d.sensor,
        }
    }
}

/// The running hash of one cell. Feed it every digested entry of the cell,
/// in any order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CellHash {
    hash: u64,
    max_version: u64,
    entries: u32,
}

impl CellHash {
    /// Adds the entry of `key` (a digested resolution) written by `node`
    /// at `version`.
    pub fn add(&mut self, node: NodeId, key: &Key, version: u64) {
        self.hash = self.hash.wrapping_add(entry_hash(node, key, version));
        self.max_version = self.max_version.max(version);
        self.entries = self.entries.saturating_add(1);
    }

    /// The cell's hash (0 for a cell with no entry).
    pub fn hash(&self) -> u64 {
        self.hash
    }

    /// The highest version added (0 if none): the node offers the cell
    /// only once this is acknowledged.
    pub fn max_version(&self) -> u64 {
        self.max_version
    }

    /// How many entries were added.
    pub fn entries(&self) -> u32 {
        self.entries
    }
}

/// The hash of one `(node, key, version)`: SplitMix64's finaliser applied
/// to each field in turn. Not cryptographic: it detects loss and staleness,
/// not a peer forging a collision (a node can only damage its own cells).
pub fn entry_hash(node: NodeId, key: &Key, version: u64) -> u64 {
    let fields = [
        node.0,
        u64::from(key.sensor.0),
        key.resolution as u64,
        key.bucket.0,
        version,
    ];
    fields
        .iter()
        .fold(0x243f_6a88_85a3_08d3, |h, &f| mix(h ^ mix(f)))
}

/// SplitMix64's output function (Steele, Lea, Flood 2014): a bijection of
/// u64 with good avalanche.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(r: Resolution, b: u64) -> Key {
        Key::new(SensorId(4), r, Bucket(b))
    }

    #[test]
    fn cells_of_hours_and_days_only() {
        assert_eq!(
            Cell::of(&key(Resolution::Hour, 24 * 7 + 23)),
            Some(Cell {
                day: Bucket(7),
                sensor: SensorId(4)
            })
        );
        assert_eq!(
            Cell::of(&key(Resolution::Day, 7)).map(|c| c.day),
            Some(Bucket(7))
        );
        assert_eq!(Cell::of(&key(Resolution::Minute, 7)), None);
        let c = Cell {
            day: Bucket(7),
            sensor: SensorId(4),
        };
        assert_eq!(c.buckets(Resolution::Hour), (Bucket(168), Bucket(191)));
        assert_eq!(
            c.buckets(Resolution::Minute),
            (Bucket(7 * 1440), Bucket(8 * 1440 - 1))
        );
        assert_eq!(c.buckets(Resolution::Day), (Bucket(7), Bucket(7)));
    }

    #[test]
    fn newest_day_orders_first() {
        let c = |day, sensor| Cell {
            day: Bucket(day),
            sensor: SensorId(sensor),
        };
        let mut v = [c(1, 1), c(2, 1), c(2, 3), c(1, 9)];
        v.sort();
        assert_eq!(v, [c(2, 3), c(2, 1), c(1, 9), c(1, 1)]);
    }

    #[test]
    fn hash_is_order_independent_and_sees_every_field() {
        let n = NodeId(9);
        let entries = [
            (key(Resolution::Hour, 170), 5),
            (key(Resolution::Hour, 171), 8),
            (key(Resolution::Day, 7), 9),
        ];
        let mut a = CellHash::default();
        let mut b = CellHash::default();
        for (k, v) in entries {
            a.add(n, &k, v);
        }
        for (k, v) in entries.iter().rev() {
            b.add(n, k, *v);
        }
        assert_eq!(a, b);
        assert_eq!((a.max_version(), a.entries()), (9, 3));
        // A stale version, another node, a missing entry: all differ.
        let mut stale = CellHash::default();
        let mut other = CellHash::default();
        let mut missing = CellHash::default();
        for (i, (k, v)) in entries.into_iter().enumerate() {
            stale.add(n, &k, if i == 1 { v - 1 } else { v });
            other.add(NodeId(10), &k, v);
            if i != 0 {
                missing.add(n, &k, v);
            }
        }
        for h in [stale, other, missing] {
            assert_ne!(h.hash(), a.hash());
        }
    }
}
