//! [`Store::enforce_budget`]: evict oldest detail until the database is
//! back under 90 % of its budget (see the module docs of [`super`]).

use rusqlite::{OptionalExtension, params};
use tributary_core::ids::Resolution;

use super::batch::RAW_READING_BYTES;
use super::{Evictions, Store, StoreError, from_sql, meta, set_meta, to_sql};

/// Rough bytes per row, to size chunks from the overshoot (a raw reading is
/// 20 bytes in its packed row; a bucket row ~80 plus two index entries).
/// Only the chunk size depends on them, not correctness: the loop
/// re-measures.
const BUCKET_ROW_BYTES: u64 = 120;
const MIN_CHUNK: u64 = 64;
const MAX_CHUNK: u64 = 65_536;

/// The evictable resolutions, finest first, with their floor slot.
const EVICTABLE: [(Resolution, usize); 3] = [
    (Resolution::Second, 0),
    (Resolution::Minute, 1),
    (Resolution::Hour, 2),
];

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
        incremental_vacuum(&self.conn)?;
        // Evicted keys lie below the new floors and are never looked up
        // again, but their cached copies would only waste memory.
        self.cache.clear();
        self.frontier = [None; 4];
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
            // Readings to drop; whole packed rows go, at least the oldest
            // one (its id is the smallest, so `id <= min(id) + chunk` holds).
            let chunk = (o / RAW_READING_BYTES as u64).clamp(MIN_CHUNK, MAX_CHUNK);
            let mut stmt = self.conn.prepare_cached(
                "DELETE FROM raw WHERE id <= (SELECT min(id) FROM raw) + ?1 RETURNING count",
            )?;
            let mut rows = stmt.query([to_sql(chunk)])?;
            let mut n = 0u64;
            while let Some(r) = rows.next()? {
                let c: i64 = r.get(0)?;
                n = n.saturating_add(from_sql(c.max(0)));
            }
            drop(rows);
            if n == 0 {
                break;
            }
            ev.raw += n;
        }
        for (r, slot) in EVICTABLE {
            loop {
                let o = over(self)?;
                if o == 0 {
                    return Ok(());
                }
                let rows = (o / BUCKET_ROW_BYTES).clamp(MIN_CHUNK, MAX_CHUNK);
                // The bucket index at the `rows`-th oldest row (or the
                // newest, if fewer): everything up to it goes, for every
                // sensor, so the floor is exact. Both walk the key index.
                let nth: Option<i64> = self
                    .conn
                    .prepare_cached(
                        "SELECT bucket FROM aggregate WHERE resolution = ?1
                         ORDER BY bucket LIMIT 1 OFFSET ?2",
                    )?
                    .query_row(params![r as u8, to_sql(rows - 1)], |row| row.get(0))
                    .optional()?;
                let cutoff = match nth {
                    Some(b) => Some(b),
                    None => self
                        .conn
                        .prepare_cached("SELECT max(bucket) FROM aggregate WHERE resolution = ?1")?
                        .query_row([r as u8], |row| row.get(0))?,
                };
                let Some(cutoff) = cutoff else { break };
                let n = self
                    .conn
                    .prepare_cached("DELETE FROM aggregate WHERE resolution = ?1 AND bucket <= ?2")?
                    .execute(params![r as u8, cutoff])? as u64;
                let floor = from_sql(cutoff).saturating_add(1);
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
            }
        }
        Ok(())
    }
}

/// `PRAGMA incremental_vacuum` frees one page per step: `execute_batch`
/// steps once (it freed a single page per eviction, so the file kept the
/// rest of the freed pages). Stepped here until done.
fn incremental_vacuum(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached("PRAGMA incremental_vacuum")?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}
