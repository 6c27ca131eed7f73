//! A running replica of the fleet document, as the hub and the gateways
//! keep one: the document, persisted in its own SQLite file, and one sync
//! [`Peer`] per remote replica.
//!
//! # Persistence
//!
//! One table of chunks (`fleet_chunk`): a base written by
//! [`FleetConfig::save`] followed by the [`FleetConfig::save_incremental`]
//! chunks appended after every local edit and every received change, each
//! in its own transaction (WAL, `synchronous = FULL`), **before** any sync
//! message that could tell a peer about it is generated. Loading
//! concatenates the rows in order. The file is compacted (every row
//! replaced by one `save()` in one transaction) at open and whenever the
//! appended chunks outgrow the base, because many chunks load slower and
//! take more room than one save. If appending fails (disk full), the next
//! write compacts instead, so the failed chunk is not lost from the file.
//!
//! The document is not in the gateway's or hub's main database on purpose:
//! a first sync of a large fleet applies ~330 KB in ~0.8 s
//! (docs/fleet-config.md), which must not stall the single writer of the
//! ingest or merge path.
//!
//! # Sync
//!
//! Automerge's protocol is request/response: after a message is generated
//! for a peer, [`generate`](Replica::generate) returns `None` until the
//! peer answers. A lost message would leave that peer waiting forever, so
//! each peer remembers since when it has waited; [`stalled`](Replica::stalled)
//! names the peers silent for too long and [`reset_peer`](Replica::reset_peer)
//! forgets what was in flight (keeping the shared heads), after which
//! `generate` sends again.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};
use tributary_core::ids::NodeId;

use crate::{Changed, FleetConfig, FleetError, Peer};

/// The schema of the fleet file (`tributary_sqlite::migrate`).
const MIGRATIONS: &[&str] = &["CREATE TABLE fleet_chunk (
    seq   INTEGER PRIMARY KEY,
    bytes BLOB NOT NULL
);"];

/// Appended chunks may grow to this many bytes, or to the base's size if
/// larger, before the file is compacted.
const COMPACT_MIN_BYTES: usize = 64 * 1024;
/// Appended chunks before the file is compacted whatever their size.
const COMPACT_MAX_CHUNKS: usize = 512;

/// Why a replica could not open or persist.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The file could not be opened, migrated, read or written.
    #[error("fleet document file: {0}")]
    Store(#[from] tributary_sqlite::Error),
    /// The document or a sync message was refused.
    #[error(transparent)]
    Fleet(#[from] FleetError),
}

impl From<rusqlite::Error> for ReplicaError {
    fn from(e: rusqlite::Error) -> Self {
        ReplicaError::Store(e.into())
    }
}

impl ReplicaError {
    /// A stable label for metrics: the document's reason, or `store`.
    pub fn reason(&self) -> &'static str {
        match self {
            ReplicaError::Store(_) => "store",
            ReplicaError::Fleet(e) => e.reason(),
        }
    }
}

#[derive(Debug, Default)]
struct PeerSlot {
    peer: Peer,
    /// When the last unanswered message to this peer was generated.
    awaiting_since_ms: Option<u64>,
    /// When this peer last sent a well-formed message.
    heard_ms: Option<u64>,
}

/// The document, its own SQLite file (chunks appended before any peer can
/// hear of them, compacted when they outgrow the base) and one sync peer
/// per remote replica, with stall detection (docs/fleet-config.md).
#[derive(Debug)]
pub struct Replica {
    doc: FleetConfig,
    conn: Connection,
    peers: BTreeMap<NodeId, PeerSlot>,
    base_bytes: usize,
    chunk_bytes: usize,
    chunks: usize,
    /// An append failed: the next write is a compaction.
    must_compact: bool,
}

impl Replica {
    /// Opens (creating) the fleet file at `path` for replica `node` in a new
    /// `session` (draw it at random per process start; see
    /// [`FleetConfig::new`]), loads the document and compacts the file.
    ///
    /// A file whose bytes are not a fleet document is an error naming the
    /// reason, never replaced by an empty document: that would look like
    /// data loss to every peer it syncs with.
    pub fn open(path: &Path, node: NodeId, session: u64) -> Result<Replica, ReplicaError> {
        let mut conn = tributary_sqlite::open(
            path,
            &tributary_sqlite::Pragmas {
                synchronous_full: true,
                cache_kib: 2048,
                statement_cache: 8,
                incremental_vacuum: false,
                busy_timeout: Duration::from_secs(5),
            },
        )?;
        tributary_sqlite::migrate(&mut conn, MIGRATIONS)?;
        let mut bytes = Vec::new();
        {
            let mut stmt = conn.prepare("SELECT bytes FROM fleet_chunk ORDER BY seq")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let chunk: Vec<u8> = row.get(0)?;
                bytes.extend_from_slice(&chunk);
            }
        }
        let doc = if bytes.is_empty() {
            FleetConfig::new(node, session)
        } else {
            FleetConfig::load(&bytes, node, session)?
        };
        let mut replica = Replica {
            doc,
            conn,
            peers: BTreeMap::new(),
            base_bytes: 0,
            chunk_bytes: 0,
            chunks: 0,
            must_compact: true,
        };
        replica.persist()?;
        Ok(replica)
    }

    /// The document (read it through its getters).
    pub fn doc(&self) -> &FleetConfig {
        &self.doc
    }

    /// Bytes of the document in the file (base and chunks).
    pub fn stored_bytes(&self) -> usize {
        self.base_bytes + self.chunk_bytes
    }

    /// Applies a batch of edits as one change and persists it. If `edit`
    /// fails, none of its edits is kept (they are rolled back) and the
    /// error is returned. Generate for the peers afterwards.
    pub fn edit<T>(
        &mut self,
        edit: impl FnOnce(&mut FleetConfig) -> Result<T, FleetError>,
    ) -> Result<T, ReplicaError> {
        match edit(&mut self.doc) {
            Ok(v) => {
                self.doc.commit();
                self.persist()?;
                Ok(v)
            }
            Err(e) => {
                self.doc.rollback();
                Err(e.into())
            }
        }
    }

    /// Applies a sync message from peer `from`, received at `now_ms`, and
    /// persists what it changed. A malformed message changes nothing and is
    /// [`FleetError::MalformedSync`]. Answer with
    /// [`generate`](Self::generate) for `from`, and on
    /// [`Changed::Updated`] for the other peers too.
    pub fn receive(
        &mut self,
        from: NodeId,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<Changed, ReplicaError> {
        let slot = self.peers.entry(from).or_default();
        let changed = self.doc.receive(&mut slot.peer, bytes)?;
        // Any well-formed message is an answer.
        slot.awaiting_since_ms = None;
        slot.heard_ms = Some(now_ms);
        if changed == Changed::Updated {
            self.persist()?;
        }
        Ok(changed)
    }

    /// The next sync message for `to`, if there is one (see
    /// [`FleetConfig::generate`]); registers `to` as a peer.
    pub fn generate(&mut self, to: NodeId, now_ms: u64) -> Option<Vec<u8>> {
        let slot = self.peers.entry(to).or_default();
        let msg = self.doc.generate(&mut slot.peer)?;
        slot.awaiting_since_ms.get_or_insert(now_ms);
        Some(msg)
    }

    /// [`generate`](Self::generate) for every known peer but `except`.
    pub fn generate_for_peers(
        &mut self,
        except: Option<NodeId>,
        now_ms: u64,
    ) -> Vec<(NodeId, Vec<u8>)> {
        let peers: Vec<NodeId> = self
            .peers
            .keys()
            .copied()
            .filter(|p| Some(*p) != except)
            .collect();
        peers
            .into_iter()
            .filter_map(|p| self.generate(p, now_ms).map(|m| (p, m)))
            .collect()
    }

    /// Peers that have not answered a message generated more than
    /// `after_ms` before `now_ms`, among those never heard from or heard
    /// from within `heard_within_ms` (a gateway gone for long is not
    /// retried every round: it starts a new round when it reconnects).
    pub fn stalled(&self, now_ms: u64, after_ms: u64, heard_within_ms: u64) -> Vec<NodeId> {
        self.peers
            .iter()
            .filter(|(_, s)| {
                s.awaiting_since_ms
                    .is_some_and(|t| now_ms.saturating_sub(t) >= after_ms)
                    && s.heard_ms
                        .is_none_or(|h| now_ms.saturating_sub(h) <= heard_within_ms)
            })
            .map(|(p, _)| *p)
            .collect()
    }

    /// Forgets what is in flight to `peer` (as after a reconnect): keeps
    /// the heads known to be shared, so the next [`generate`](Self::generate)
    /// starts a new round instead of waiting for a lost answer.
    pub fn reset_peer(&mut self, peer: NodeId) {
        let slot = self.peers.entry(peer).or_default();
        slot.peer = Peer::decode(&slot.peer.encode()).unwrap_or_default();
        slot.awaiting_since_ms = None;
    }

    /// Writes what changed since the last write: a chunk, or the whole
    /// document when the chunks outgrew the base (or an append failed).
    fn persist(&mut self) -> Result<(), ReplicaError> {
        let over = self.chunks >= COMPACT_MAX_CHUNKS
            || self.chunk_bytes > self.base_bytes.max(COMPACT_MIN_BYTES);
        if self.must_compact || over {
            return self.compact();
        }
        let chunk = self.doc.save_incremental();
        if chunk.is_empty() {
            return Ok(());
        }
        // `save_incremental` has moved its base: if this write fails, only
        // a whole save can put the chunk on disk.
        self.must_compact = true;
        self.conn.execute(
            "INSERT INTO fleet_chunk (seq, bytes) VALUES (
                 (SELECT COALESCE(MAX(seq), 0) + 1 FROM fleet_chunk), ?1)",
            params![chunk],
        )?;
        self.must_compact = false;
        self.chunks += 1;
        self.chunk_bytes += chunk.len();
        Ok(())
    }

    fn compact(&mut self) -> Result<(), ReplicaError> {
        let bytes = self.doc.save();
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM fleet_chunk", [])?;
        tx.execute(
            "INSERT INTO fleet_chunk (seq, bytes) VALUES (1, ?1)",
            params![bytes],
        )?;
        tx.commit()?;
        self.must_compact = false;
        self.base_bytes = bytes.len();
        self.chunk_bytes = 0;
        self.chunks = 0;
        Ok(())
    }

    /// Rows in the file (1 after a compaction): for tests and status.
    pub fn stored_chunks(&self) -> Result<u64, ReplicaError> {
        let n: Option<i64> = self
            .conn
            .query_row("SELECT COUNT(*) FROM fleet_chunk", [], |r| r.get(0))
            .optional()?;
        Ok(n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
    }
}

/// A session number for this process start (see [`FleetConfig::new`]):
/// from the OS RNG; if that fails, the clock and the process id, which
/// still differ between starts.
pub fn random_session() -> u64 {
    let mut word = [0u8; 8];
    match rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut word) {
        Ok(()) => u64::from_le_bytes(word),
        Err(_) => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ (u64::from(std::process::id()) << 32)
        }
    }
}
