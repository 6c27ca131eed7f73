//! The one error type of the crate, with a stable metric label per variant.

/// Why an edit, a load or a sync message was refused.
///
/// Every variant maps to a stable [`reason`](FleetError::reason) label for
/// `…_rejected_total{reason}` counters (STYLE.md §3, §5).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// A required text field is empty or only whitespace.
    #[error("{field} is empty")]
    Empty {
        /// Which field, e.g. "node name".
        field: &'static str,
    },
    /// A text field is longer than its limit (in bytes of UTF-8).
    #[error("{field} is {len} bytes long, the limit is {max}")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        max: usize,
    },
    /// A text field contains a control character (newline, NUL, escape…).
    #[error("{field} contains a control character")]
    ControlChar {
        /// Which field.
        field: &'static str,
    },
    /// The alert open score is not in (0, 1] (or not a number).
    #[error("alert open score {open} is outside (0, 1]")]
    OpenOutOfRange {
        /// The refused score.
        open: f64,
    },
    /// The alert close score is not in [0, open).
    #[error("alert close score {close} is outside [0, {open})")]
    CloseOutOfRange {
        /// The open score it was checked against.
        open: f64,
        /// The refused score.
        close: f64,
    },
    /// Bytes received as an Automerge sync message could not be decoded or
    /// applied. The peer's sync state is unchanged only if decoding failed;
    /// either way the caller drops the message and counts it.
    #[error("malformed sync message: {0}")]
    MalformedSync(String),
    /// Bytes given to [`load`](crate::FleetConfig::load) are not an
    /// Automerge document.
    #[error("malformed fleet document: {0}")]
    MalformedDocument(String),
    /// Bytes given to [`Peer::decode`](crate::Peer::decode) are not an
    /// encoded sync state.
    #[error("malformed peer sync state")]
    MalformedPeerState,
    /// The document is an Automerge document but not a fleet configuration
    /// of a schema version this build understands.
    #[error("unsupported fleet document schema {found:?} (this build reads {supported})")]
    UnsupportedSchema {
        /// The schema found at the root, `None` if absent or not a number.
        found: Option<u64>,
        /// The version this build reads and writes.
        supported: u64,
    },
    /// A top-level section of the document is missing or not a map: only a
    /// peer running foreign code can cause this, since this crate never
    /// deletes sections.
    #[error("fleet document section {0:?} is missing or not a map")]
    MissingSection(&'static str),
    /// Automerge refused an operation on a well-formed document; a bug
    /// rather than bad input.
    #[error("automerge: {0}")]
    Document(#[from] automerge::AutomergeError),
}

impl FleetError {
    /// A stable, bounded label for metrics. A label is public API: add new
    /// ones, never rename.
    pub fn reason(&self) -> &'static str {
        match self {
            FleetError::Empty { .. } => "empty_field",
            FleetError::TooLong { .. } => "field_too_long",
            FleetError::ControlChar { .. } => "control_character",
            FleetError::OpenOutOfRange { .. } => "threshold_out_of_range",
            FleetError::CloseOutOfRange { .. } => "close_out_of_range",
            FleetError::MalformedSync(_) => "malformed_sync",
            FleetError::MalformedDocument(_) => "malformed_document",
            FleetError::MalformedPeerState => "malformed_peer_state",
            FleetError::UnsupportedSchema { .. } => "unsupported_schema",
            FleetError::MissingSection(_) => "missing_section",
            FleetError::Document(_) => "document",
        }
    }
}
