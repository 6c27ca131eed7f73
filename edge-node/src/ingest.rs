//! The ingest actor: every source sends it [`Submit`]; it validates,
//! groups submissions from all sources into one store transaction (group
//! commit: up to `batch_max_readings` or `batch_interval`, whichever comes
//! first), and answers each sender only after that transaction committed,
//! so an acknowledgement always means "durable".

use actix::Message;

use crate::reading::{Rejected, SourceKind, Submission};

/// A source hands over one submission and waits for the verdict.
#[derive(Debug, Message)]
#[rtype(result = "Result<Accepted, IngestError>")]
pub struct Submit {
    /// Which kind of source (metric label).
    pub source: SourceKind,
    /// The readings.
    pub submission: Submission,
}

/// The submission is durable (or was already).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Accepted {
    /// Readings newly stored by this submission (0 for a duplicate).
    pub readings: u64,
    /// The (source, seq) was stored before: nothing changed.
    pub duplicate: bool,
}

/// Why a submission was not stored. Only `Rejected` is final; the others
/// mean "not now": the sender keeps the data and retries.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum IngestError {
    /// Invalid input (see [`Rejected`]).
    #[error(transparent)]
    Rejected(#[from] Rejected),
    /// Too many readings waiting for a commit: back off and retry.
    #[error("ingest is saturated; retry later")]
    Busy,
    /// The gateway is stopping.
    #[error("the gateway is shutting down")]
    ShuttingDown,
    /// The store failed to commit; nothing of this submission was stored.
    #[error("store error: {0}")]
    Store(String),
}

impl IngestError {
    /// Stable metric label.
    pub fn reason(&self) -> &'static str {
        match self {
            IngestError::Rejected(r) => r.reason.reason(),
            IngestError::Busy => "busy",
            IngestError::ShuttingDown => "shutting_down",
            IngestError::Store(_) => "store_error",
        }
    }
}
