//! The node's side of sync: deltas of aggregate rows above a version, a
//! rowid range scan (the version is the rowid). Every current row is its own
//! outbox entry (its version is unique), so there is no separate outbox
//! table to keep consistent.

use rusqlite::params;
use tributary_core::codec::v1::{self, Delta, Message};
use tributary_core::crdt::aggregate::{Entry, Key};
use tributary_core::ids::{Bucket, NodeId, Resolution, SensorId};
use tributary_core::sync::digest::{Cell, CellHash};
use tributary_core::sync::{DeltaSource, SourceUnavailable};

use super::{Store, StoreError, from_sql, resolution_of, summary_at, to_sql};

/// A `DeltaItem` encodes to at least 10 bytes (array header + 9 fields), so
/// a delta of `max_bytes` holds at most `max_bytes / 10` entries: reading
/// one more tells whether the rest is complete.
const MIN_ITEM_BYTES: usize = 10;
/// Rows read for one delta at most (bounds memory for huge `max_bytes`).
const MAX_DELTA_ROWS: usize = 1 << 16;

impl Store {
    /// Up to `limit` rows with a version above `after`, ascending.
    pub fn entries_after(&self, after: u64, limit: usize) -> Result<Vec<(Key, Entry)>, StoreError> {
        self.entries_after_at(after, limit, Resolution::Second)
    }

    /// [`entries_after`](Self::entries_after), only rows at `finest` or
    /// coarser: the uplink's view when it does not sync the finest buckets.
    pub fn entries_after_at(
        &self,
        after: u64,
        limit: usize,
        finest: Resolution,
    ) -> Result<Vec<(Key, Entry)>, StoreError> {
        // The scan follows the version order (the rowid); skipped finer rows
        // cost a read each, which is cheap next to encoding and sending.
        let mut stmt = self.conn.prepare_cached(
            "SELECT sensor, resolution, bucket, version, count, sum, min, max, sum_sq, first_ts,
             last_ts FROM aggregate WHERE version > ?1 AND resolution >= ?3 ORDER BY version
             LIMIT ?2",
        )?;
        let mut rows = stmt.query(params![
            to_sql(after),
            i64::try_from(limit).unwrap_or(i64::MAX),
            resolution_index(finest)
        ])?;
        let mut out = Vec::new();
        while let Some(r) = rows.next()? {
            let key = Key::new(
                SensorId(r.get(0)?),
                resolution_of(r.get(1)?)?,
                Bucket(from_sql(r.get(2)?)),
            );
            let entry = Entry {
                version: from_sql(r.get(3)?),
                summary: summary_at(r, 4)?,
            };
            out.push((key, entry));
        }
        Ok(out)
    }

    /// A `Message::Delta` of the entries with a version above `after`,
    /// ascending, as many as fit in `max_bytes` encoded
    /// (`codec::v1::encoded_len`). `None` if `after >= version_high`. If
    /// every entry above `after` was evicted, the delta is empty and covers
    /// `(after, version_high]` (a pure watermark advance). Errors with
    /// [`StoreError::DeltaLimitTooSmall`] if not even one entry fits.
    ///
    /// The delta's `to` is `version_high` when it carries every remaining
    /// entry, else the version of its last entry: versions are unique, so a
    /// prefix ending at `v` holds every current entry in `(after, v]`.
    pub fn read_delta(&self, after: u64, max_bytes: usize) -> Result<Option<Message>, StoreError> {
        if after >= self.version_high {
            return Ok(None);
        }
        let limit = (max_bytes / MIN_ITEM_BYTES)
            .saturating_add(1)
            .min(MAX_DELTA_ROWS);
        let entries = self.entries_after(after, limit)?;
        let complete = entries.len() < limit;
        let build = |n: usize| -> Message {
            let prefix = entries.get(..n).unwrap_or(&entries);
            let to = match prefix.last() {
                Some(_) if n == entries.len() && complete => self.version_high,
                Some((_, e)) => e.version,
                None => self.version_high,
            };
            Message::Delta(Delta::from_entries(
                self.node,
                after,
                to,
                prefix.iter().copied(),
            ))
        };
        let all = build(entries.len());
        if entries.is_empty() || v1::encoded_len(&all) <= max_bytes {
            return Ok(Some(all));
        }
        let one = build(1);
        let needed = v1::encoded_len(&one);
        if needed > max_bytes {
            return Err(StoreError::DeltaLimitTooSmall { max_bytes, needed });
        }
        // Invariant: a prefix of `lo` entries fits, one of `hi` does not.
        let (mut lo, mut hi) = (1, entries.len());
        let mut best = one;
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            let m = build(mid);
            if v1::encoded_len(&m) <= max_bytes {
                lo = mid;
                best = m;
            } else {
                hi = mid;
            }
        }
        Ok(Some(best))
    }
}

/// The position of `r` in [`Resolution::ALL`] (finest first): the code
/// stored in the `resolution` column.
pub(super) fn resolution_index(r: Resolution) -> i64 {
    Resolution::ALL
        .iter()
        .position(|x| *x == r)
        .map_or(0, |i| i as i64)
}

/// The store as the uplink sees it: only entries at `finest` or coarser.
/// Versions stay the store's, so the watermark protocol is unchanged: a
/// prefix of this filtered list ending at `v` still holds every synced
/// entry in `(after, v]`, and skipped versions are simply absent.
#[derive(Debug, Clone, Copy)]
pub struct SyncView<'a> {
    /// The store.
    pub store: &'a Store,
    /// The finest resolution synced.
    pub finest: Resolution,
}

impl DeltaSource for SyncView<'_> {
    fn version_high(&self, node: NodeId) -> u64 {
        DeltaSource::version_high(self.store, node)
    }

    fn entries_since(
        &self,
        node: NodeId,
        after: u64,
        max_entries: usize,
    ) -> Result<Vec<(Key, Entry)>, SourceUnavailable> {
        if node != self.store.node {
            return Ok(Vec::new());
        }
        self.store
            .entries_after_at(after, max_entries, self.finest)
            .map_err(|e| {
                tracing::error!(error = %e, after, "reading sync entries failed");
                SourceUnavailable
            })
    }

    fn digest_cells(
        &self,
        node: NodeId,
        after: Option<Cell>,
        max_cells: usize,
    ) -> Result<Vec<(Cell, CellHash)>, SourceUnavailable> {
        if node != self.store.node {
            return Ok(Vec::new());
        }
        self.store
            .digest_cells(after, max_cells, self.finest)
            .map_err(|e| {
                tracing::error!(error = %e, "reading the anti-entropy digest failed");
                SourceUnavailable
            })
    }
}

/// Lets `tributary_core::sync::NodeSync` read the store directly.
///
/// An SQLite failure is logged here and answered with
/// [`SourceUnavailable`]: the node then sends nothing for that batch and
/// retries, instead of taking an empty answer as "nothing left".
impl DeltaSource for Store {
    fn version_high(&self, node: NodeId) -> u64 {
        if node == self.node {
            self.version_high
        } else {
            0
        }
    }

    fn entries_since(
        &self,
        node: NodeId,
        after: u64,
        max_entries: usize,
    ) -> Result<Vec<(Key, Entry)>, SourceUnavailable> {
        // Every resolution: the view that filters none.
        let all = SyncView {
            store: self,
            finest: Resolution::Second,
        };
        all.entries_since(node, after, max_entries)
    }
}
