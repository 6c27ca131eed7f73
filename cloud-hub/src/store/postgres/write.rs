//! The write path of [`PgStore`](super::PgStore): a group of batches as
//! a few array upserts in the caller's transaction (see the parent module
//! for the SQL and why it equals entry-by-entry application).

use std::collections::{BTreeMap, HashMap};

use postgres::Transaction;
use postgres::error::SqlState;
use postgres::types::ToSql;
use tributary_core::crdt::aggregate::{Entry, Key};
use tributary_core::ids::NodeId;

use super::Statements;
use crate::store::{
    MergeError, MergeOutcome, NodeBatch, SUMMARY_COLS, from_sql, summary_columns, to_sql,
};

/// `i64::MIN` as SQL (the literal 9223372036854775808 is not a bigint):
/// XOR with it flips the sign bit.
const SIGN: &str = "(-9223372036854775807 - 1)";

/// SQL for `col` as a value whose signed order is `col`'s unsigned order.
fn unsigned(col: &str) -> String {
    format!("({col} # {SIGN})")
}

pub(super) fn upsert_sql() -> String {
    let set: Vec<String> = std::iter::once("version")
        .chain(SUMMARY_COLS)
        .map(|c| format!("{c} = excluded.{c}"))
        .collect();
    let side = |t: &str| {
        std::iter::once(format!("{t}.version"))
            .chain(SUMMARY_COLS.iter().map(|c| unsigned(&format!("{t}.{c}"))))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let arrays: Vec<String> = (1..=12).map(|i| format!("${i}::int8[]")).collect();
    // Versions are validated to at most i64::MAX, so they compare signed.
    format!(
        "INSERT INTO aggregate AS a (node, resolution, bucket, sensor, version, {cols})
         SELECT * FROM UNNEST({arrays})
         ON CONFLICT (node, resolution, bucket, sensor) DO UPDATE SET {set}
         WHERE ({new}) > ({old})
         RETURNING node, resolution, bucket, sensor, last_ts",
        cols = SUMMARY_COLS.join(", "),
        arrays = arrays.join(", "),
        set = set.join(", "),
        new = side("excluded"),
        old = side("a"),
    )
}

/// Moves a sensor's newest reading time forward, never back (unsigned).
pub(super) fn sensor_upsert_sql() -> String {
    format!(
        "INSERT INTO sensor_node AS s (node, sensor, newest)
         SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[])
         ON CONFLICT (node, sensor) DO UPDATE SET newest = excluded.newest
         WHERE {} > {}",
        unsigned("excluded.newest"),
        unsigned("s.newest")
    )
}

/// Validated versions and watermarks are at most i64::MAX, so the signed
/// `GREATEST` is the unsigned one.
pub(super) const NODE_UPSERT: &str = "
INSERT INTO node AS n (id, version_high, watermark, last_seen_ms)
SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::int8[])
ON CONFLICT (id) DO UPDATE SET
  version_high = GREATEST(n.version_high, excluded.version_high),
  watermark = GREATEST(n.watermark, excluded.watermark),
  last_seen_ms = COALESCE(excluded.last_seen_ms, n.last_seen_ms)";

/// The rows of one upsert statement, as arrays (one per column).
#[derive(Default)]
struct Columns {
    cols: [Vec<i64>; 12],
}

impl Columns {
    fn push(&mut self, node: NodeId, key: &Key, e: &Entry) {
        let head = [
            to_sql(node.0),
            i64::from(key.resolution as u8),
            to_sql(key.bucket.0),
            i64::from(key.sensor.0),
            to_sql(e.version),
        ];
        let row = head.into_iter().chain(summary_columns(&e.summary));
        for (col, x) in self.cols.iter_mut().zip(row) {
            col.push(x);
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        self.cols.iter().map(|c| c as &(dyn ToSql + Sync)).collect()
    }
}

/// A (key, node) as the primary key orders it in SQL: node, resolution,
/// bucket, sensor, as the stored i64 values.
type RowKey = (i64, i64, i64, i64);

fn row_key(node: NodeId, key: &Key) -> RowKey {
    (
        to_sql(node.0),
        i64::from(key.resolution as u8),
        to_sql(key.bucket.0),
        i64::from(key.sensor.0),
    )
}

/// An entry on its way into an upsert round: its row, its batch's index
/// in the group, its writer and the entry.
type Pending<'a> = (RowKey, usize, NodeId, &'a Key, &'a Entry);

/// Whether a failed write should simply be tried again: it lost a lock
/// race against another writer, and PostgreSQL rolled it back.
pub(super) fn is_retryable(e: &MergeError) -> bool {
    match e {
        MergeError::Postgres(e) => e.code().is_some_and(|c| {
            *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE
        }),
        _ => false,
    }
}

/// Applies a validated group inside `tx` (see the module docs).
pub(super) fn write_group(
    tx: &mut Transaction<'_>,
    stmts: &Statements,
    group: &[NodeBatch<'_>],
) -> Result<Vec<MergeOutcome>, MergeError> {
    let mut outcomes: Vec<MergeOutcome> = group
        .iter()
        .map(|b| MergeOutcome {
            applied: 0,
            stale: b.entries.len() as u64,
        })
        .collect();
    // Round i holds the i-th occurrence of each (key, node), with its
    // batch: one statement never touches a row twice.
    let mut seen: HashMap<RowKey, usize> = HashMap::new();
    let mut rounds: Vec<Vec<Pending<'_>>> = Vec::new();
    for (bi, b) in group.iter().enumerate() {
        for (k, e) in b.entries {
            let rk = row_key(b.node, k);
            let n = seen.entry(rk).or_insert(0);
            if rounds.len() <= *n {
                rounds.push(Vec::new());
            }
            if let Some(round) = rounds.get_mut(*n) {
                round.push((rk, bi, b.node, k, e));
            }
            *n += 1;
        }
    }
    // (node, sensor) → newest reading time among the applied entries.
    let mut touched: BTreeMap<(i64, i64), u64> = BTreeMap::new();
    for mut round in rounds {
        // Primary-key order: concurrent writers lock rows in one order.
        round.sort_unstable_by_key(|r| r.0);
        let mut cols = Columns::default();
        let mut batch_of: HashMap<RowKey, usize> = HashMap::with_capacity(round.len());
        for (rk, bi, node, k, e) in &round {
            cols.push(*node, k, e);
            batch_of.insert(*rk, *bi);
        }
        for r in tx.query(&stmts.upsert, &cols.params())? {
            let rk: RowKey = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?, r.try_get(3)?);
            let last_ts = from_sql(r.try_get(4)?);
            let Some(o) = batch_of.get(&rk).and_then(|bi| outcomes.get_mut(*bi)) else {
                return Err(MergeError::Corrupt("upsert returned a row it was not sent"));
            };
            o.applied += 1;
            o.stale = o.stale.saturating_sub(1);
            let newest = touched.entry((rk.0, rk.3)).or_insert(last_ts);
            *newest = (*newest).max(last_ts);
        }
    }
    if !touched.is_empty() {
        let (mut nodes, mut sensors, mut newest) = (Vec::new(), Vec::new(), Vec::new());
        for ((node, sensor), t) in touched {
            nodes.push(node);
            sensors.push(sensor);
            newest.push(to_sql(t));
        }
        tx.execute(&stmts.sensor_upsert, &[&nodes, &sensors, &newest])?;
    }
    // One row per node of the group, as SQLite's per-batch upserts add up:
    // the highest version and watermark, the last reported "seen".
    let mut node_rows: BTreeMap<i64, (u64, u64, Option<u64>)> = BTreeMap::new();
    for b in group {
        if b.entries.is_empty() && b.progress.is_none() {
            continue;
        }
        let row = node_rows.entry(to_sql(b.node.0)).or_insert((0, 0, None));
        let version_high = b.entries.iter().map(|(_, e)| e.version).max().unwrap_or(0);
        row.0 = row.0.max(version_high);
        if let Some(p) = b.progress {
            row.1 = row.1.max(p.watermark);
            row.2 = Some(p.seen_ms);
        }
    }
    if !node_rows.is_empty() {
        let (mut ids, mut versions, mut watermarks) = (Vec::new(), Vec::new(), Vec::new());
        let mut seen_ms: Vec<Option<i64>> = Vec::new();
        for (id, (v, w, seen)) in node_rows {
            ids.push(id);
            versions.push(to_sql(v));
            watermarks.push(to_sql(w));
            seen_ms.push(seen.map(to_sql));
        }
        tx.execute(
            &stmts.node_upsert,
            &[&ids, &versions, &watermarks, &seen_ms],
        )?;
    }
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SQL row comparison must order like `Entry::supersedes` on the
    /// bits: flipping the sign bit maps u64 order onto i64 order.
    #[test]
    fn sign_flip_maps_unsigned_order_onto_signed_order() {
        let flip = |x: u64| to_sql(x) ^ i64::MIN;
        let xs = [
            0,
            1,
            1 << 62,
            (1 << 63) - 1,
            1 << 63,
            u64::MAX - 1,
            u64::MAX,
        ];
        for a in xs {
            for b in xs {
                assert_eq!(a.cmp(&b), flip(a).cmp(&flip(b)), "{a} vs {b}");
            }
        }
        assert!(upsert_sql().contains(&format!("(excluded.count # {SIGN})")));
    }
}
