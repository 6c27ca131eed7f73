//! [`StoreError`]: every way a store operation fails, with a stable
//! metric label.

use std::path::PathBuf;

use tributary_core::hlc::HlcError;
use tributary_core::ids::{NodeId, SensorId};

/// What a store operation failed with. Every variant has a stable
/// [`reason`](StoreError::reason) for `tributary_store_errors_total` and
/// logs.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// SQLite failed (I/O, full disk, corruption, locked…).
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// The data directory could not be created.
    #[error("cannot create directory {path}: {source}")]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file was written by a newer binary.
    #[error(
        "database newer than this binary: schema version {found}, this binary knows up to {known}"
    )]
    NewerSchema {
        /// `user_version` in the file.
        found: i64,
        /// The newest version this binary has migrations for.
        known: i64,
    },
    /// The configured node id is not the one the database belongs to.
    #[error(
        "node id mismatch: the database belongs to {stored}, the configuration says {configured}"
    )]
    NodeIdMismatch {
        /// Id in the database.
        stored: NodeId,
        /// Id in the configuration.
        configured: NodeId,
    },
    /// The OS RNG failed while generating the node id.
    #[error("cannot generate a node id: {0}")]
    Entropy(String),
    /// A hub watermark above anything this node wrote.
    #[error("hub watermark {watermark} is above the node's version_high {version_high}")]
    WatermarkAhead {
        /// The watermark offered.
        watermark: u64,
        /// The node's highest version.
        version_high: u64,
    },
    /// The hub acknowledged an alert id this node never recorded.
    #[error("alert acknowledgement {id} is above the highest alert id {max}")]
    AlertAckAhead {
        /// The id acknowledged.
        id: i64,
        /// The highest recorded alert id.
        max: i64,
    },
    /// A reading was NaN or infinite (ingest validates before; this is the
    /// store's own guard).
    #[error("reading is not a finite number")]
    NonFinite,
    /// A window summary failed `Summary::validate`.
    #[error("invalid window: {0}")]
    InvalidWindow(&'static str),
    /// The hybrid clock cannot advance.
    #[error("hybrid clock: {0}")]
    Hlc(#[from] HlcError),
    /// `resolve_alert` found no open alert.
    #[error("no open alert for sensor {sensor} opened at {opened_at} ms")]
    UnknownAlert {
        /// The sensor.
        sensor: SensorId,
        /// The alert's `at`.
        opened_at: u64,
    },
    /// `read_delta` was given fewer bytes than one entry needs.
    #[error("max_bytes {max_bytes} cannot hold one delta entry ({needed} bytes)")]
    DeltaLimitTooSmall {
        /// The limit given.
        max_bytes: usize,
        /// The smallest delta's size.
        needed: usize,
    },
    /// A stored value is outside what this binary writes.
    #[error("corrupt store: {0}")]
    Corrupt(&'static str),
    /// Version numbers ran out (2^63 writes).
    #[error("version counter exhausted")]
    VersionOverflow,
    /// The store actor could not reopen the database after a restart.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

impl From<tributary_sqlite::Error> for StoreError {
    fn from(e: tributary_sqlite::Error) -> StoreError {
        match e {
            tributary_sqlite::Error::Io { path, source } => StoreError::Io { path, source },
            tributary_sqlite::Error::Sqlite(e) => StoreError::Sqlite(e),
            tributary_sqlite::Error::NoWal => StoreError::Corrupt("journal_mode WAL refused"),
            tributary_sqlite::Error::NewerSchema { found, known } => {
                StoreError::NewerSchema { found, known }
            }
        }
    }
}

impl StoreError {
    /// Stable metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            StoreError::Sqlite(_) => "sqlite",
            StoreError::Io { .. } => "io",
            StoreError::NewerSchema { .. } => "database_newer",
            StoreError::NodeIdMismatch { .. } => "node_id_mismatch",
            StoreError::Entropy(_) => "entropy",
            StoreError::WatermarkAhead { .. } => "watermark_ahead",
            StoreError::AlertAckAhead { .. } => "alert_ack_ahead",
            StoreError::NonFinite => "non_finite",
            StoreError::InvalidWindow(_) => "invalid_window",
            StoreError::Hlc(e) => e.reason(),
            StoreError::UnknownAlert { .. } => "unknown_alert",
            StoreError::DeltaLimitTooSmall { .. } => "delta_limit_too_small",
            StoreError::Corrupt(_) => "corrupt",
            StoreError::VersionOverflow => "version_overflow",
            StoreError::Unavailable(_) => "unavailable",
        }
    }

    /// Whether the connection itself is suspect (I/O error, corruption, a
    /// full disk): the actor reopens the database after such an error.
    pub fn is_fatal(&self) -> bool {
        use rusqlite::ErrorCode as C;
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(e, _)) => matches!(
                e.code,
                C::SystemIoFailure
                    | C::DatabaseCorrupt
                    | C::NotADatabase
                    | C::CannotOpen
                    | C::ReadOnly
            ),
            StoreError::Corrupt(_) => true,
            _ => false,
        }
    }
}
