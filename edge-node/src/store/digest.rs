//! Anti-entropy on the gateway (`tributary_core::sync::digest`): the cells
//! a `Hello` offers the hub, and the re-stamping of the cells the hub
//! found damaged.

use rusqlite::params;
use tributary_core::crdt::aggregate::Key;
use tributary_core::ids::{Bucket, Resolution, SensorId};
use tributary_core::sync::digest::{Cell, CellHash};

use super::outbox::resolution_index;
use super::{Store, StoreError, from_sql, meta, set_meta, to_sql};

impl Store {
    /// Up to `max` cells strictly after `after` in [`Cell`] order (newest
    /// day first), each with the hash of its hour and day rows. Only days
    /// whose hour rows are all still here (not evicted by the disk budget)
    /// are offered, and none if the uplink does not sync hour buckets
    /// (`finest` coarser than an hour): the hub's copy would differ.
    pub fn digest_cells(
        &self,
        after: Option<Cell>,
        max: usize,
        finest: Resolution,
    ) -> Result<Vec<(Cell, CellHash)>, StoreError> {
        if finest > Resolution::Hour || max == 0 {
            return Ok(Vec::new());
        }
        // The first day whose 24 hour buckets all lie at or above the
        // hour floor.
        let hour_floor = self.floors[2];
        let min_day = hour_floor.div_ceil(24);
        // Past the cursor: an older day, or the same day and a lower sensor.
        let (day, sensor) = after.map_or((i64::MAX, i64::MAX), |c| {
            (to_sql(c.day.0), i64::from(c.sensor.0))
        });
        let mut stmt = self.conn.prepare_cached(
            "SELECT bucket, sensor, version FROM aggregate
             WHERE resolution = ?1 AND bucket >= ?2 AND (bucket, sensor) < (?3, ?4)
             ORDER BY bucket DESC, sensor DESC LIMIT ?5",
        )?;
        let mut rows = stmt.query(params![
            resolution_index(Resolution::Day),
            to_sql(min_day),
            day,
            sensor,
            i64::try_from(max).unwrap_or(i64::MAX)
        ])?;
        let mut cells = Vec::new();
        while let Some(r) = rows.next()? {
            let cell = Cell {
                day: Bucket(from_sql(r.get(0)?)),
                sensor: SensorId(r.get(1)?),
            };
            let mut h = CellHash::default();
            let key = Key::new(cell.sensor, Resolution::Day, cell.day);
            h.add(self.node, &key, from_sql(r.get(2)?));
            cells.push((cell, h));
        }
        drop(rows);
        for (cell, h) in &mut cells {
            for (bucket, version) in self.cell_rows(cell, Resolution::Hour)? {
                h.add(
                    self.node,
                    &Key::new(cell.sensor, Resolution::Hour, bucket),
                    version,
                );
            }
        }
        Ok(cells)
    }

    /// The (bucket, version) of every row of `cell` at resolution `r`.
    fn cell_rows(&self, cell: &Cell, r: Resolution) -> Result<Vec<(Bucket, u64)>, StoreError> {
        let (lo, hi) = cell.buckets(r);
        let rows = self
            .conn
            .prepare_cached(
                "SELECT bucket, version FROM aggregate
                 WHERE resolution = ?1 AND bucket BETWEEN ?2 AND ?3 AND sensor = ?4",
            )?
            .query_map(
                params![
                    resolution_index(r),
                    to_sql(lo.0),
                    to_sql(hi.0),
                    cell.sensor.0
                ],
                |row| Ok((Bucket(from_sql(row.get(0)?)), from_sql(row.get(1)?))),
            )?
            .collect::<Result<_, _>>()?;
        Ok(rows)
    }

    /// Gives every row of `cells` at `finest` or coarser a fresh version
    /// (summaries unchanged), in one transaction, so the uplink sends them
    /// again; returns how many rows. See `NodeSync::take_repairs`.
    pub fn restamp_cells(&mut self, cells: &[Cell], finest: Resolution) -> Result<u64, StoreError> {
        if cells.is_empty() {
            return Ok(0);
        }
        let (n, high) = self.in_tx(|s| {
            let mut high = s.version_high;
            let mut n = 0u64;
            for cell in cells {
                for r in Resolution::ALL.into_iter().filter(|r| *r >= finest) {
                    let rows = s.cell_rows(cell, r)?;
                    let mut update = s
                        .conn
                        .prepare_cached("UPDATE aggregate SET version = ?1 WHERE version = ?2")?;
                    for (_, v) in rows {
                        high += 1;
                        update.execute(params![to_sql(high), to_sql(v)])?;
                        n += 1;
                    }
                }
            }
            set_meta(&s.conn, meta::VERSION_HIGH, high)?;
            Ok((n, high))
        })?;
        self.version_high = high;
        // Cached rows carry their old versions.
        self.cache.clear();
        Ok(n)
    }
}
