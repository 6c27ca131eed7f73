//! [`Store::enforce_budget`]: evict oldest detail until the database is
//! back under 90 % of its budget (see the module docs of [`super`]).

use rusqlite::params;
use tributary_core::ids::Resolution;

use super::{Evictions, Store, StoreError, from_sql, meta, set_meta, to_sql};

/// Rough bytes per row, to size chunks from the overshoot (a raw row is
/// ~20 bytes in its table; a bucket row ~80 plus two index entries). Only
/// the chunk size depends on them, not correctness: the loop re-measures.
const RAW_ROW_BYTES: u64 = 24;
const BUCKET_ROW_BYTES: u64 = 120;
const MIN_CHUNK: u64 = 64;
const MAX_CHUNK: u64 = 65_536;

/// The evictable resolutions, finest first, with their floor slot.
const EVICTABLE: [(Resolution, usize); 3] = [
    (Resolution::Second, 0),
    (Resolution::Minute, 1),
    (Resolution::Hour, 2),
];

/// Largest chunk of bucket indices evicted at once.
const MAX_SPAN: u64 = 1 << 40;

impl Store {
    /// If the database uses more than the budget, deletes raw readings,
    /// then 1 s, 1 m and 1 h buckets, oldest first, until it uses at most
    /// 90 % of it, then returns the freed pages to the file system. A
    /// budget of 0 means none.
    pub fn enforce_budget(&mut self) -> Result<Evictions, StoreError> {
        let mut ev = Evictions::default();
        if self.budget == 0 || self.db_bytes()? <= self.budget {
            return Ok(ev);
        }
        let target = self.budget - self.budget / 10;
        let floors = self.floors;
        let res = self.in_tx(|s| s.evict_in_tx(target, &mut ev));
        if let Err(e) = res {
            self.floors = floors;
            return Err(e);
        }
        // The rows are gone whatever happens next; a failed vacuum only
        // leaves free pages in the file (reused by later inserts).
        self.conn.execute_batch("PRAGMA incremental_vacuum")?;
        // Evicted keys lie below the new floors and are never looked up
        // again, but their cached copies would only waste memory.
        self.cache.clear();
        self.frontier.clear();
        ev.budget_exhausted = self.db_bytes()? > self.budget;
        Ok(ev)
    }

    fn evict_in_tx(&mut self, target: u64, ev: &mut Evictions) -> Result<(), StoreError> {
        let over =
            |s: &Store| -> Result<u64, StoreError> { Ok(s.db_bytes()?.saturating_sub(target)) };
        loop {
            let o = over(self)?;
            if o == 0 {
                return Ok(());
            }
            let chunk = (o / RAW_ROW_BYTES).clamp(MIN_CHUNK, MAX_CHUNK);
            let n = self
                .conn
                .prepare_cached(
                    "DELETE FROM raw WHERE id IN (SELECT id FROM raw ORDER BY id LIMIT ?1)",
                )?
                .execute([to_sql(chunk)])?;
            if n == 0 {
                break;
            }
            ev.raw += n as u64;
        }
        let sensors: Vec<u32> = self
            .conn
            .prepare_cached("SELECT id FROM sensor ORDER BY id")?
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let per_bucket = (sensors.len() as u64).max(1);
        for (r, slot) in EVICTABLE {
            // Bucket indices per chunk: sized for `rows` rows if every sensor
            // has every bucket, doubled while chunks come out sparse.
            let mut span = 0u64;
            loop {
                let o = over(self)?;
                if o == 0 {
                    return Ok(());
                }
                let rows = (o / BUCKET_ROW_BYTES).clamp(MIN_CHUNK, MAX_CHUNK);
                span = span.max((rows / per_bucket).max(1));
                let Some(oldest) = self.oldest_bucket(&sensors, r)? else {
                    break;
                };
                // Everything up to `cutoff` goes, for every sensor, so the
                // floor is exact.
                let cutoff = oldest.saturating_add(span - 1);
                let mut n = 0u64;
                for &sensor in &sensors {
                    n += self
                        .conn
                        .prepare_cached(
                            "DELETE FROM aggregate
                             WHERE sensor = ?1 AND resolution = ?2 AND bucket <= ?3",
                        )?
                        .execute(params![sensor, r as u8, to_sql(cutoff)])?
                        as u64;
                }
                let floor = cutoff.saturating_add(1);
                if let Some(f) = self.floors.get_mut(slot)
                    && floor > *f
                {
                    *f = floor;
                    set_meta(&self.conn, meta::FLOORS[slot], floor)?;
                }
                match r {
                    Resolution::Second => ev.bucket_1s += n,
                    Resolution::Minute => ev.bucket_1m += n,
                    _ => ev.bucket_1h += n,
                }
                if n < rows / 2 {
                    span = span.saturating_mul(2).min(MAX_SPAN);
                }
            }
        }
        Ok(())
    }

    /// The oldest bucket index at `r` over all sensors (a primary-key seek
    /// per sensor).
    fn oldest_bucket(&self, sensors: &[u32], r: Resolution) -> Result<Option<u64>, StoreError> {
        let mut oldest: Option<u64> = None;
        for &sensor in sensors {
            let b: Option<i64> = self
                .conn
                .prepare_cached(
                    "SELECT min(bucket) FROM aggregate WHERE sensor = ?1 AND resolution = ?2",
                )?
                .query_row(params![sensor, r as u8], |row| row.get(0))?;
            if let Some(b) = b.map(from_sql) {
                oldest = Some(oldest.map_or(b, |o| o.min(b)));
            }
        }
        Ok(oldest)
    }
}
