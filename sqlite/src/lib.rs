//! # tributary-sqlite
//!
//! The SQLite plumbing the gateway's store (`edge-node/src/store`) and the
//! hub's merge store (`cloud-hub/src/store/sqlite.rs`) share, so both open
//! and migrate their databases by the same rules (STYLE.md §6):
//!
//! - [`open`]: creates the parent directory, sets a busy timeout, WAL
//!   (refusing a file system that cannot do it), `synchronous` FULL or
//!   NORMAL, foreign keys, the page cache, and optionally `auto_vacuum =
//!   INCREMENTAL` (effective only on a new file, before the first table).
//! - [`migrate`]: applies an ordered, embedded list of migrations keyed by
//!   `PRAGMA user_version` in one transaction that also sets the version, and
//!   refuses a database written by a newer binary.
//!
//! It owns no schema and no domain types: each store keeps its own
//! migrations and maps [`Error`] into its own error type.

#![warn(missing_docs)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

/// How to open a database.
#[derive(Clone, Copy, Debug)]
pub struct Pragmas {
    /// `synchronous = FULL` (a commit survives power loss) or NORMAL.
    pub synchronous_full: bool,
    /// Page cache size in KiB.
    pub cache_kib: u32,
    /// Prepared statements kept per connection.
    pub statement_cache: usize,
    /// Set `auto_vacuum = INCREMENTAL` (for stores that evict and give
    /// pages back to the file system).
    pub incremental_vacuum: bool,
    /// How long a statement waits for a lock held by another connection.
    pub busy_timeout: Duration,
}

/// Why a database could not be opened or migrated.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The parent directory could not be created.
    #[error("cannot create {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// SQLite failed.
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    /// The file system refused WAL mode (e.g. a network file system).
    #[error("journal_mode WAL refused")]
    NoWal,
    /// The database was written by a newer binary.
    #[error("database schema version {found} is newer than this binary's ({known})")]
    NewerSchema {
        /// `user_version` in the file.
        found: i64,
        /// The newest version this binary has migrations for.
        known: i64,
    },
}

/// Opens (creating if needed) the database at `path` with `pragmas`.
pub fn open(path: &Path, pragmas: &Pragmas) -> Result<Connection, Error> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let conn = Connection::open(path)?;
    conn.busy_timeout(pragmas.busy_timeout)?;
    if pragmas.incremental_vacuum {
        // Must precede the first table; a no-op on an existing file.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    }
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(Error::NoWal);
    }
    let sync = if pragmas.synchronous_full {
        "FULL"
    } else {
        "NORMAL"
    };
    conn.pragma_update(None, "synchronous", sync)?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    // Negative: a size in KiB rather than in pages.
    conn.pragma_update(None, "cache_size", -i64::from(pragmas.cache_kib))?;
    conn.set_prepared_statement_cache_capacity(pragmas.statement_cache);
    Ok(conn)
}

/// The schema version after `migrations`.
pub fn latest(migrations: &[&str]) -> i64 {
    i64::try_from(migrations.len()).unwrap_or(i64::MAX)
}

/// Brings the database to [`latest`], or refuses one that is newer.
/// Migration `i` (0-based) takes the schema from version `i` to `i + 1`;
/// shipped migrations are never edited, a change is a new entry.
pub fn migrate(conn: &mut Connection, migrations: &[&str]) -> Result<(), Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Read under the write lock: another process may have migrated meanwhile.
    let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let latest = latest(migrations);
    if current > latest {
        return Err(Error::NewerSchema {
            found: current,
            known: latest,
        });
    }
    if current == latest {
        return Ok(());
    }
    let done = usize::try_from(current).unwrap_or(0);
    for m in migrations.iter().skip(done) {
        tx.execute_batch(m)?;
    }
    tx.pragma_update(None, "user_version", latest)?;
    tx.commit()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRAGMAS: Pragmas = Pragmas {
        synchronous_full: true,
        cache_kib: 1024,
        statement_cache: 8,
        incremental_vacuum: true,
        busy_timeout: Duration::from_secs(1),
    };

    #[test]
    fn migrations_apply_once_in_order_and_a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/x.db");
        let v1 = ["CREATE TABLE a (x INTEGER)"];
        let v2 = [
            "CREATE TABLE a (x INTEGER)",
            "ALTER TABLE a ADD COLUMN y INTEGER",
        ];
        let mut c = open(&path, &PRAGMAS).unwrap();
        migrate(&mut c, &v1).unwrap();
        migrate(&mut c, &v1).unwrap(); // idempotent
        migrate(&mut c, &v2).unwrap(); // only the new step runs
        c.execute("INSERT INTO a (x, y) VALUES (1, 2)", []).unwrap();
        let version: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 2);
        let mode: String = c
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let av: i64 = c.query_row("PRAGMA auto_vacuum", [], |r| r.get(0)).unwrap();
        assert_eq!(av, 2, "incremental");
        drop(c);
        let mut c = open(&path, &PRAGMAS).unwrap();
        assert!(matches!(
            migrate(&mut c, &v1),
            Err(Error::NewerSchema { found: 2, known: 1 })
        ));
    }

    #[test]
    fn a_failing_migration_leaves_the_old_schema() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = open(&dir.path().join("x.db"), &PRAGMAS).unwrap();
        migrate(&mut c, &["CREATE TABLE a (x INTEGER)"]).unwrap();
        let bad = ["CREATE TABLE a (x INTEGER)", "CREATE TABLE b (y); NOT SQL"];
        assert!(migrate(&mut c, &bad).is_err());
        let version: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 1);
        let b: i64 = c
            .query_row(
                "SELECT COUNT(*) FROM sqlite_master WHERE name = 'b'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(b, 0, "the failed step's table was rolled back");
    }
}
