//! [`Store::ingest`]: one transaction per batch of submissions (see the
//! module docs of [`super`] for the semantics).

use std::collections::HashSet;

use rusqlite::{OptionalExtension, params};
use tributary_core::crdt::aggregate::Key;
use tributary_core::ids::{Bucket, Resolution};
use tributary_core::summary::Summary;

use super::cache::FastMap;
use super::dedup::{ReplayWindow, Verdict};
use super::{
    BatchResult, Evictions, MAP_CAP, Outcome, Store, StoreError, from_sql, key_params, meta,
    set_meta, single, summary_at, to_sql,
};
use crate::reading::{Item, Origin, Sample, Submission};

/// Bytes of one reading in a packed `raw` row: sensor (u32), ts (u64 ms),
/// value (f64), little-endian.
pub(crate) const RAW_READING_BYTES: usize = 20;

/// What a batch produced before commit.
struct Pending {
    outcomes: Vec<Outcome>,
    version_high: u64,
    late_skipped: u64,
    below_window: u64,
}

impl Store {
    /// Stores a batch of submissions in one transaction. On error nothing
    /// of the batch is stored. When the database is then above its budget,
    /// evicts (in its own transaction, after the batch committed; an
    /// eviction failure is logged, not returned, because the batch is
    /// durable and its senders must be acknowledged).
    pub fn ingest(&mut self, batch: &[Submission]) -> Result<BatchResult, StoreError> {
        let p = self.in_tx(|s| s.ingest_in_tx(batch))?;
        self.version_high = p.version_high;
        let evicted = self.evict_if_over_budget();
        Ok(BatchResult {
            outcomes: p.outcomes,
            version_high: p.version_high,
            late_skipped: p.late_skipped,
            below_window: p.below_window,
            evicted,
        })
    }

    fn evict_if_over_budget(&mut self) -> Evictions {
        if self.budget == 0 {
            return Evictions::default();
        }
        let over = self.db_bytes().map(|b| b > self.budget);
        match over.and_then(|over| {
            if over {
                self.enforce_budget()
            } else {
                Ok(Evictions::default())
            }
        }) {
            Ok(e) => e,
            Err(e) => {
                tracing::error!(error = %e, reason = e.reason(), "disk budget enforcement failed");
                Evictions::default()
            }
        }
    }

    fn ingest_in_tx(&mut self, batch: &[Submission]) -> Result<Pending, StoreError> {
        let mut outcomes = Vec::with_capacity(batch.len());
        // Sorted in key-index order (resolution, bucket, sensor): the writes
        // below walk the index in order, and the frontier test in `lookup`
        // holds for each next key.
        //
        // Collected unsorted (a hash map from key to slot), sorted once at
        // the end: a BTreeMap paid an ordered search per reading and
        // resolution (~1.5 k instructions per reading at 1 Hz).
        let mut deltas = Deltas::default();
        let mut dirty_sources: HashSet<&str> = HashSet::new();
        let (mut late_skipped, mut below_window) = (0u64, 0u64);
        let mut raw = Vec::new();

        for sub in batch {
            if let Some(origin) = &sub.origin {
                match self.check_origin(origin)? {
                    Verdict::New => {
                        dirty_sources.insert(&origin.source);
                    }
                    Verdict::Duplicate => {
                        outcomes.push(Outcome::Duplicate);
                        continue;
                    }
                    Verdict::BelowWindow => {
                        below_window += 1;
                        outcomes.push(Outcome::Duplicate);
                        continue;
                    }
                }
            }
            let mut readings = 0u64;
            for item in &sub.items {
                match item {
                    Item::Reading(s) => {
                        let one = Summary::of(s.ts, s.value).map_err(|_| StoreError::NonFinite)?;
                        if self.keep_raw {
                            raw.push(s);
                        }
                        for r in Resolution::ALL {
                            let key = Key::containing(s.sensor, r, s.ts);
                            if self.below_floor(&key) {
                                late_skipped += 1;
                                continue;
                            }
                            deltas.add(key, &one);
                        }
                        readings += 1;
                    }
                    Item::Window { sensor, summary } => {
                        if summary.is_empty() {
                            continue;
                        }
                        summary.validate().map_err(StoreError::InvalidWindow)?;
                        for r in Resolution::ALL {
                            let b = Bucket::containing(summary.first_ts, r);
                            if b != Bucket::containing(summary.last_ts, r) {
                                continue;
                            }
                            let key = Key::new(*sensor, r, b);
                            if self.below_floor(&key) {
                                late_skipped += 1;
                                continue;
                            }
                            deltas.add(key, summary);
                        }
                        readings = readings.saturating_add(summary.count);
                    }
                }
            }
            outcomes.push(Outcome::Applied { readings });
        }

        // Each statement is prepared (looked up in the cache) once per
        // batch, not once per row: per-row lookups cost as much as the
        // raw inserts themselves.
        if !raw.is_empty() {
            self.insert_raw(&raw)?;
        }
        for name in dirty_sources {
            if let Some(w) = self.sources.get(name) {
                self.conn
                    .prepare_cached(
                        "INSERT INTO source (name, high, seen) VALUES (?1, ?2, ?3)
                         ON CONFLICT (name) DO UPDATE SET high = excluded.high, seen = excluded.seen",
                    )?
                    .execute(params![name, to_sql(w.high()), w.to_blob()])?;
            }
        }

        // Plan (cache, frontier, SELECTs for cold rows), then write.
        let mut version = self.version_high;
        // (key, new version, summary, old version if the row exists)
        let deltas = deltas.sorted();
        let mut writes: Vec<(Key, u64, Summary, Option<u64>)> = Vec::with_capacity(deltas.len());
        for (key, delta) in &deltas {
            version = version.checked_add(1).ok_or(StoreError::VersionOverflow)?;
            if !self.sensors.contains(&key.sensor) {
                if self.sensors.len() >= MAP_CAP {
                    self.sensors.clear();
                }
                self.conn
                    .prepare_cached("INSERT OR IGNORE INTO sensor (id) VALUES (?1)")?
                    .execute([key.sensor.0])?;
                self.sensors.insert(key.sensor);
            }
            match self.lookup(key)? {
                Some((old_v, old)) => {
                    writes.push((*key, version, old.combined(delta), Some(old_v)))
                }
                None => {
                    // Keys are distinct and ascending: this one is the new
                    // greatest of its resolution.
                    if let Some(f) = self.frontier.get_mut(key.resolution as usize) {
                        let here = (key.bucket.0, key.sensor.0);
                        *f = Some(Some(f.flatten().map_or(here, |h| h.max(here))));
                    }
                    writes.push((*key, version, *delta, None));
                }
            }
        }
        {
            let mut update = self.conn.prepare_cached(
                // Moves the row to its new rowid (= version); the key
                // columns re-check that the cached old version is this key's.
                "UPDATE aggregate SET version = ?4, count = ?5, sum = ?6, min = ?7,
                 max = ?8, sum_sq = ?9, first_ts = ?10, last_ts = ?11
                 WHERE version = ?12 AND sensor = ?1 AND resolution = ?2 AND bucket = ?3",
            )?;
            static SQL: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
            let (one, many) = SQL.get_or_init(|| (insert_sql(1), insert_sql(INSERT_ROWS)));
            let mut insert_one = self.conn.prepare_cached(one)?;
            let mut insert_many = self.conn.prepare_cached(many)?;
            // Writes go in version order (every row lands at the end of the
            // table); runs of new rows go `INSERT_ROWS` per statement.
            let mut run: Vec<&(Key, u64, Summary, Option<u64>)> = Vec::with_capacity(INSERT_ROWS);
            let mut flush =
                |run: &mut Vec<&(Key, u64, Summary, Option<u64>)>| -> rusqlite::Result<()> {
                    let stmt = if run.len() == INSERT_ROWS {
                        &mut insert_many
                    } else {
                        &mut insert_one
                    };
                    if run.len() == INSERT_ROWS || run.len() == 1 {
                        for (i, (key, v, s, _)) in run.iter().enumerate() {
                            bind_row(stmt, i * ROW_PARAMS, key, *v, s)?;
                        }
                        stmt.raw_execute()?;
                    } else {
                        for (key, v, s, _) in run.iter() {
                            bind_row(stmt, 0, key, *v, s)?;
                            stmt.raw_execute()?;
                        }
                    }
                    run.clear();
                    Ok(())
                };
            for w in &writes {
                let (key, v, s, old) = w;
                match old {
                    Some(old) => {
                        flush(&mut run)?;
                        bind_row(&mut update, 0, key, *v, s)?;
                        update.raw_bind_parameter(ROW_PARAMS + 1, to_sql(*old))?;
                        let n = update.raw_execute()?;
                        if n != 1 {
                            return Err(StoreError::Corrupt("cached aggregate row missing"));
                        }
                    }
                    None => {
                        run.push(w);
                        if run.len() == INSERT_ROWS {
                            flush(&mut run)?;
                        }
                    }
                }
            }
            flush(&mut run)?;
        }
        for (key, v, s, _) in writes {
            self.cache.put(key, (v, s));
        }
        if version != self.version_high {
            set_meta(&self.conn, meta::VERSION_HIGH, version)?;
        }
        Ok(Pending {
            outcomes,
            version_high: version,
            late_skipped,
            below_window,
        })
    }

    /// Appends the batch's raw readings as one packed row (see `raw` in
    /// `store/migrations.rs`): one b-tree insert per batch instead of one
    /// per reading. Its id continues the readings' sequence after the last
    /// row (restarting at 0 when eviction emptied the table: nothing older
    /// remains, so arrival order still holds).
    fn insert_raw(&mut self, raw: &[&Sample]) -> Result<(), StoreError> {
        let next: Option<i64> = self
            .conn
            .prepare_cached("SELECT id + count FROM raw ORDER BY id DESC LIMIT 1")?
            .query_row([], |r| r.get(0))
            .optional()?;
        let mut blob = Vec::with_capacity(raw.len() * RAW_READING_BYTES);
        for s in raw {
            blob.extend_from_slice(&s.sensor.0.to_le_bytes());
            blob.extend_from_slice(&s.ts.as_millis().to_le_bytes());
            blob.extend_from_slice(&s.value.to_le_bytes());
        }
        let count = i64::try_from(raw.len()).map_err(|_| StoreError::Corrupt("raw count"))?;
        self.conn
            .prepare_cached("INSERT INTO raw (id, count, data) VALUES (?1, ?2, ?3)")?
            .execute(params![next.unwrap_or(0), count, blob])?;
        Ok(())
    }

    /// Whether `key`'s bucket was evicted at its resolution.
    fn below_floor(&self, key: &Key) -> bool {
        let floor = match key.resolution {
            Resolution::Second => self.floors[0],
            Resolution::Minute => self.floors[1],
            Resolution::Hour => self.floors[2],
            Resolution::Day => 0,
        };
        key.bucket.0 < floor
    }

    /// Runs the source's replay window (loading it on first use).
    fn check_origin(&mut self, o: &Origin) -> Result<Verdict, StoreError> {
        if let Some(w) = self.sources.get_mut(&o.source) {
            return Ok(w.check_and_set(o.seq));
        }
        let stored: Option<(i64, Vec<u8>)> = self
            .conn
            .prepare_cached("SELECT high, seen FROM source WHERE name = ?1")?
            .query_row([&o.source], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let (w, verdict) = match stored {
            Some((high, blob)) => {
                let mut w = ReplayWindow::from_parts(from_sql(high), &blob)?;
                let v = w.check_and_set(o.seq);
                (w, v)
            }
            None => (ReplayWindow::first(o.seq), Verdict::New),
        };
        // Source names come from the network: bound the map. Windows are
        // persisted per batch, so dropping them only costs a reload.
        if self.sources.len() >= MAP_CAP {
            self.sources.clear();
        }
        self.sources.insert(o.source.clone(), w);
        Ok(verdict)
    }

    /// The stored (version, summary) of `key`, from the cache, or known
    /// absent from the frontier, or from a SELECT.
    fn lookup(&mut self, key: &Key) -> Result<Option<(u64, Summary)>, StoreError> {
        if let Some(v) = self.cache.get(key) {
            return Ok(Some(v));
        }
        let (sensor, res, bucket) = key_params(key);
        let slot = key.resolution as usize;
        let highest = match self.frontier.get(slot).copied().flatten() {
            Some(h) => h,
            None => {
                let h: Option<(i64, u32)> = self
                    .conn
                    .prepare_cached(
                        "SELECT bucket, sensor FROM aggregate WHERE resolution = ?1
                         ORDER BY bucket DESC, sensor DESC LIMIT 1",
                    )?
                    .query_row([res], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()?;
                let h = h.map(|(b, s)| (from_sql(b), s));
                if let Some(f) = self.frontier.get_mut(slot) {
                    *f = Some(h);
                }
                h
            }
        };
        if highest.is_none_or(|h| (key.bucket.0, key.sensor.0) > h) {
            return Ok(None);
        }
        let row = self
            .conn
            .prepare_cached(
                "SELECT version, count, sum, min, max, sum_sq, first_ts, last_ts
                 FROM aggregate WHERE sensor = ?1 AND resolution = ?2 AND bucket = ?3",
            )?
            .query_row(params![sensor, res, bucket], |r| {
                Ok((from_sql(r.get(0)?), summary_at(r, 1)?))
            })
            .optional()?;
        Ok(row)
    }
}

/// Parameters per aggregate row: sensor, resolution, bucket, version and
/// the 7 summary fields, in the column order of [`insert_sql`].
const ROW_PARAMS: usize = 11;

/// New aggregate rows per multi-row INSERT. Per-statement overhead (reset,
/// cursor open/close, halt) was ~1/4 of a single-row insert; 32 rows of 11
/// parameters stay far below SQLite's 32,766-parameter limit.
const INSERT_ROWS: usize = 32;

/// `INSERT INTO aggregate ... VALUES (...), ...` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from(
        "INSERT INTO aggregate (sensor, resolution, bucket, version, count,
         sum, min, max, sum_sq, first_ts, last_ts) VALUES ",
    );
    for r in 0..rows {
        if r > 0 {
            sql.push(',');
        }
        sql.push('(');
        for c in 0..ROW_PARAMS {
            if c > 0 {
                sql.push(',');
            }
            sql.push_str(&format!("?{}", r * ROW_PARAMS + c + 1));
        }
        sql.push(')');
    }
    sql
}

/// Binds one row's 11 parameters at 1-based positions `base + 1 ..`.
fn bind_row(
    stmt: &mut rusqlite::Statement<'_>,
    base: usize,
    key: &Key,
    version: u64,
    s: &Summary,
) -> rusqlite::Result<()> {
    let (sensor, res, bucket) = key_params(key);
    stmt.raw_bind_parameter(base + 1, sensor)?;
    stmt.raw_bind_parameter(base + 2, res)?;
    stmt.raw_bind_parameter(base + 3, bucket)?;
    stmt.raw_bind_parameter(base + 4, to_sql(version))?;
    stmt.raw_bind_parameter(base + 5, to_sql(s.count))?;
    stmt.raw_bind_parameter(base + 6, s.sum)?;
    stmt.raw_bind_parameter(base + 10, to_sql(s.first_ts.0))?;
    if single(s) {
        // Derived on read (`summary_at`).
        stmt.raw_bind_parameter(base + 7, rusqlite::types::Null)?;
        stmt.raw_bind_parameter(base + 8, rusqlite::types::Null)?;
        stmt.raw_bind_parameter(base + 9, rusqlite::types::Null)?;
        stmt.raw_bind_parameter(base + 11, rusqlite::types::Null)
    } else {
        stmt.raw_bind_parameter(base + 7, s.min)?;
        stmt.raw_bind_parameter(base + 8, s.max)?;
        stmt.raw_bind_parameter(base + 9, s.sum_sq)?;
        stmt.raw_bind_parameter(base + 11, to_sql(s.last_ts.0))
    }
}

/// A key in the key index's order.
fn pk(k: &Key) -> (u8, u64, u32) {
    (k.resolution as u8, k.bucket.0, k.sensor.0)
}

/// A batch's change per key, each key's summaries combined in arrival
/// order.
#[derive(Default)]
struct Deltas {
    slot: FastMap<Key, usize>,
    items: Vec<(Key, Summary)>,
}

impl Deltas {
    fn add(&mut self, key: Key, s: &Summary) {
        let items = &mut self.items;
        let i = *self.slot.entry(key).or_insert_with(|| {
            items.push((key, Summary::EMPTY));
            items.len() - 1
        });
        if let Some((_, acc)) = self.items.get_mut(i) {
            acc.combine(s);
        }
    }

    /// The changes in key-index order (keys are distinct).
    fn sorted(mut self) -> Vec<(Key, Summary)> {
        self.items.sort_unstable_by_key(|(k, _)| pk(k));
        self.items
    }
}
