//! The fleet document: its schema, typed edits and reads, and persistence.
//!
//! Schema (version [`SCHEMA_VERSION`]), every section a map under the root:
//!
//! | path | key | value |
//! |---|---|---|
//! | `schema` | – | `Uint` schema version |
//! | `nodes` | `"{node:016x}/name"`, `"{node:016x}/location"` | `Str` |
//! | `sensors` | `"{sensor}/name"`, `"/unit"`, `"/location"` | `Str` |
//! | `thresholds` | `"{sensor}"` | map `{open: F64, close?: F64}` |
//! | `acks` | `"{node:016x}/{hlc:016x}"` | map `{acked_ms: Uint, who: Str}` |
//!
//! Registry fields are separate keys so that concurrent edits of different
//! fields of one node both survive; a threshold and an acknowledgement are
//! one map each, written whole, so concurrent edits of one of them keep one
//! coherent value rather than mixing an `open` from one side with a `close`
//! from the other. See docs/fleet-config.md for the conflict rules.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    ActorId, AutoCommit, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, ScalarValue, Value,
};
use tributary_core::hlc::Hlc;
use tributary_core::ids::{NodeId, SensorId};

use crate::FleetError;
use crate::model::{
    Ack, AlertKey, FleetSnapshot, MAX_LOCATION_BYTES, MAX_NAME_BYTES, MAX_UNIT_BYTES, NodeInfo,
    SensorInfo, Threshold, check_text,
};

/// The schema version this build reads and writes (root key `schema`).
pub const SCHEMA_VERSION: u64 = 1;

/// The actor of the genesis change. Every replica creates the same genesis
/// change (same actor, ops and time, hence the same hash), so the sections
/// are one shared object each and never conflicting copies created
/// concurrently by two replicas. Longer than a replica actor (16 bytes), so
/// it never equals one.
const GENESIS_ACTOR: &[u8] = b"tributary-fleet/genesis";

const SCHEMA: &str = "schema";
const NODES: &str = "nodes";
const SENSORS: &str = "sensors";
const THRESHOLDS: &str = "thresholds";
const ACKS: &str = "acks";

/// One replica of a fleet's configuration document.
///
/// Edits accumulate in one pending Automerge change until [`commit`]
/// (or implicitly [`save`], [`save_incremental`], [`generate`]), so a batch
/// of edits makes one change in the history.
///
/// [`commit`]: FleetConfig::commit
/// [`save`]: FleetConfig::save
/// [`save_incremental`]: FleetConfig::save_incremental
/// [`generate`]: FleetConfig::generate
pub struct FleetConfig {
    pub(crate) doc: AutoCommit,
    /// Heads at the last save or load: `save_incremental` writes what is
    /// not below them.
    saved_heads: Vec<ChangeHash>,
}

impl fmt::Debug for FleetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FleetConfig")
            .field("actor", self.doc.get_actor())
            .finish_non_exhaustive()
    }
}

/// The Automerge actor of a replica: the node id then a per-process session
/// number, both big-endian. The node id makes history readable; the session
/// keeps a restarted process that lost unsaved edits from reusing sequence
/// numbers its peers already saw with other content.
fn actor(node: NodeId, session: u64) -> ActorId {
    let mut bytes = [0u8; 16];
    let (hi, lo) = bytes.split_at_mut(8);
    hi.copy_from_slice(&node.0.to_be_bytes());
    lo.copy_from_slice(&session.to_be_bytes());
    ActorId::from(bytes)
}

impl FleetConfig {
    /// A new, empty fleet document for the replica `node`.
    ///
    /// `session` must differ between processes of one node (draw it at
    /// random at start-up): the Automerge actor is the node id and the
    /// session, and a restarted process that lost unsaved but already
    /// synced edits must not reuse their sequence numbers. Two replicas created
    /// independently share the genesis change, so they sync without
    /// conflicting sections.
    pub fn new(node: NodeId, session: u64) -> Self {
        let mut doc = genesis();
        doc.set_actor(actor(node, session));
        Self {
            doc,
            saved_heads: Vec::new(),
        }
    }

    /// Loads bytes written by [`save`](Self::save), optionally followed by
    /// any number of [`save_incremental`](Self::save_incremental) chunks
    /// (concatenated), for the replica `node` in a new `session`.
    ///
    /// Garbage is [`FleetError::MalformedDocument`]; an Automerge document
    /// that is not a fleet document of this schema is
    /// [`FleetError::UnsupportedSchema`] or [`FleetError::MissingSection`].
    pub fn load(bytes: &[u8], node: NodeId, session: u64) -> Result<Self, FleetError> {
        let mut doc =
            AutoCommit::load(bytes).map_err(|e| FleetError::MalformedDocument(e.to_string()))?;
        let found = match doc.get(ROOT, SCHEMA) {
            Ok(Some((Value::Scalar(v), _))) => match v.as_ref() {
                ScalarValue::Uint(n) => Some(*n),
                _ => None,
            },
            _ => None,
        };
        if found != Some(SCHEMA_VERSION) {
            return Err(FleetError::UnsupportedSchema {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        for name in [NODES, SENSORS, THRESHOLDS, ACKS] {
            section(&doc, name).ok_or(FleetError::MissingSection(name))?;
        }
        doc.set_actor(actor(node, session));
        let saved_heads = doc.get_heads();
        Ok(Self { doc, saved_heads })
    }

    /// The whole document, compacted (the history is kept, column-encoded
    /// and compressed). Resets the base of
    /// [`save_incremental`](Self::save_incremental).
    pub fn save(&mut self) -> Vec<u8> {
        let bytes = self.doc.save();
        self.saved_heads = self.doc.get_heads();
        bytes
    }

    /// The changes made or received since the last `save`,
    /// `save_incremental` or `load`, as a chunk to append to the saved
    /// bytes; empty when nothing changed. Cheap, but a store of many
    /// chunks loads slower and takes more room than one `save`: compact
    /// (replace everything by one `save`) when the appended chunks outgrow
    /// the base, or at start-up.
    pub fn save_incremental(&mut self) -> Vec<u8> {
        let bytes = self.doc.save_after(&self.saved_heads);
        self.saved_heads = self.doc.get_heads();
        bytes
    }

    /// The document's current heads (hashes of the latest changes, hex,
    /// sorted): two replicas with equal heads hold the same document. For
    /// logs and for "is this peer up to date" checks. Commits pending edits.
    pub fn heads(&mut self) -> Vec<String> {
        let mut heads: Vec<String> = self
            .doc
            .get_heads()
            .iter()
            .map(ToString::to_string)
            .collect();
        heads.sort();
        heads
    }

    /// Closes the pending batch of edits as one change in the history.
    /// Returns whether there was anything to commit.
    pub fn commit(&mut self) -> bool {
        self.doc.commit().is_some()
    }

    /// Drops the pending (uncommitted) edits: for a batch of edits that
    /// failed part-way, so the document keeps none of it. Returns how many
    /// operations were dropped.
    pub fn rollback(&mut self) -> usize {
        self.doc.rollback()
    }

    /// Registers or replaces a node: name and location together (a `None`
    /// location removes it).
    pub fn set_node(&mut self, node: NodeId, info: &NodeInfo) -> Result<(), FleetError> {
        info.validate()?;
        let obj = self.section_for_edit(NODES)?;
        let id = node.to_string();
        self.put_text(&obj, field_key(&id, "name"), Some(&info.name))?;
        self.put_text(&obj, field_key(&id, "location"), info.location.as_deref())
    }

    /// Renames a node (registering it if new), leaving its location.
    pub fn set_node_name(&mut self, node: NodeId, name: &str) -> Result<(), FleetError> {
        check_text("node name", name, MAX_NAME_BYTES)?;
        let obj = self.section_for_edit(NODES)?;
        self.put_text(&obj, field_key(&node.to_string(), "name"), Some(name))
    }

    /// Sets or (with `None`) removes a node's location, leaving its name.
    pub fn set_node_location(
        &mut self,
        node: NodeId,
        location: Option<&str>,
    ) -> Result<(), FleetError> {
        if let Some(l) = location {
            check_text("node location", l, MAX_LOCATION_BYTES)?;
        }
        let obj = self.section_for_edit(NODES)?;
        self.put_text(&obj, field_key(&node.to_string(), "location"), location)
    }

    /// Removes a node from the registry. Returns whether it was there.
    pub fn remove_node(&mut self, node: NodeId) -> Result<bool, FleetError> {
        let obj = self.section_for_edit(NODES)?;
        let id = node.to_string();
        let existed = self.text(&obj, &field_key(&id, "name")).is_some();
        self.put_text(&obj, field_key(&id, "name"), None)?;
        self.put_text(&obj, field_key(&id, "location"), None)?;
        Ok(existed)
    }

    /// Registers or replaces a sensor: all fields together.
    pub fn set_sensor(&mut self, sensor: SensorId, info: &SensorInfo) -> Result<(), FleetError> {
        info.validate()?;
        let obj = self.section_for_edit(SENSORS)?;
        let id = sensor.to_string();
        self.put_text(&obj, field_key(&id, "name"), Some(&info.name))?;
        self.put_text(&obj, field_key(&id, "unit"), Some(&info.unit))?;
        self.put_text(&obj, field_key(&id, "location"), info.location.as_deref())
    }

    /// Renames a sensor, leaving its other fields. A sensor is listed once
    /// it has a name and a unit.
    pub fn set_sensor_name(&mut self, sensor: SensorId, name: &str) -> Result<(), FleetError> {
        check_text("sensor name", name, MAX_NAME_BYTES)?;
        let obj = self.section_for_edit(SENSORS)?;
        self.put_text(&obj, field_key(&sensor.to_string(), "name"), Some(name))
    }

    /// Sets a sensor's unit, leaving its other fields.
    pub fn set_sensor_unit(&mut self, sensor: SensorId, unit: &str) -> Result<(), FleetError> {
        check_text("sensor unit", unit, MAX_UNIT_BYTES)?;
        let obj = self.section_for_edit(SENSORS)?;
        self.put_text(&obj, field_key(&sensor.to_string(), "unit"), Some(unit))
    }

    /// Sets or (with `None`) removes a sensor's location.
    pub fn set_sensor_location(
        &mut self,
        sensor: SensorId,
        location: Option<&str>,
    ) -> Result<(), FleetError> {
        if let Some(l) = location {
            check_text("sensor location", l, MAX_LOCATION_BYTES)?;
        }
        let obj = self.section_for_edit(SENSORS)?;
        self.put_text(&obj, field_key(&sensor.to_string(), "location"), location)
    }

    /// Removes a sensor from the registry (its threshold stays until
    /// cleared). Returns whether it was there.
    pub fn remove_sensor(&mut self, sensor: SensorId) -> Result<bool, FleetError> {
        let obj = self.section_for_edit(SENSORS)?;
        let id = sensor.to_string();
        let existed = self.text(&obj, &field_key(&id, "name")).is_some();
        for field in ["name", "unit", "location"] {
            self.put_text(&obj, field_key(&id, field), None)?;
        }
        Ok(existed)
    }

    /// Sets a sensor's alert thresholds (both scores as one value).
    pub fn set_threshold(
        &mut self,
        sensor: SensorId,
        threshold: Threshold,
    ) -> Result<(), FleetError> {
        threshold.validate()?;
        let obj = self.section_for_edit(THRESHOLDS)?;
        let map = self
            .doc
            .put_object(&obj, sensor.to_string(), ObjType::Map)?;
        self.doc.put(&map, "open", threshold.open)?;
        if let Some(close) = threshold.close {
            self.doc.put(&map, "close", close)?;
        }
        Ok(())
    }

    /// Removes a sensor's thresholds (the detector default applies again).
    /// Returns whether there were any.
    pub fn clear_threshold(&mut self, sensor: SensorId) -> Result<bool, FleetError> {
        let obj = self.section_for_edit(THRESHOLDS)?;
        let key = sensor.to_string();
        if self.doc.get(&obj, key.as_str())?.is_none() {
            return Ok(false);
        }
        self.doc.delete(&obj, key.as_str())?;
        Ok(true)
    }

    /// Records an acknowledgement of an alert (replacing an earlier one).
    pub fn ack_alert(&mut self, alert: AlertKey, ack: &Ack) -> Result<(), FleetError> {
        ack.validate()?;
        let obj = self.section_for_edit(ACKS)?;
        let map = self.doc.put_object(&obj, ack_key(alert), ObjType::Map)?;
        self.doc.put(&map, "acked_ms", ack.acked_ms)?;
        self.doc.put(&map, "who", ack.who.as_str())?;
        Ok(())
    }

    /// A node's registry entry, if it has a name.
    pub fn node(&self, node: NodeId) -> Option<NodeInfo> {
        let obj = section(&self.doc, NODES)?;
        self.node_in(&obj, &node.to_string())
    }

    /// Every registered node.
    pub fn nodes(&self) -> BTreeMap<NodeId, NodeInfo> {
        let Some(obj) = section(&self.doc, NODES) else {
            return BTreeMap::new();
        };
        entity_ids(&self.doc, &obj)
            .into_iter()
            .filter_map(|id| {
                let node = id.parse::<NodeId>().ok()?;
                // Only the canonical spelling: "00ab" and "ab" must not be two entries.
                (node.to_string() == id).then_some(())?;
                Some((node, self.node_in(&obj, &id)?))
            })
            .collect()
    }

    /// A sensor's registry entry, if it has a name and a unit.
    pub fn sensor(&self, sensor: SensorId) -> Option<SensorInfo> {
        let obj = section(&self.doc, SENSORS)?;
        self.sensor_in(&obj, &sensor.to_string())
    }

    /// Every registered sensor.
    pub fn sensors(&self) -> BTreeMap<SensorId, SensorInfo> {
        let Some(obj) = section(&self.doc, SENSORS) else {
            return BTreeMap::new();
        };
        entity_ids(&self.doc, &obj)
            .into_iter()
            .filter_map(|id| {
                let sensor = SensorId(id.parse::<u32>().ok()?);
                (sensor.to_string() == id).then_some(())?;
                Some((sensor, self.sensor_in(&obj, &id)?))
            })
            .collect()
    }

    /// A sensor's thresholds, if set (and valid: a value written by foreign
    /// code that fails [`Threshold::validate`] reads as unset, an invalid
    /// `close` alone as `None`).
    pub fn threshold(&self, sensor: SensorId) -> Option<Threshold> {
        let obj = section(&self.doc, THRESHOLDS)?;
        self.threshold_in(&obj, &sensor.to_string())
    }

    /// Every sensor's thresholds.
    pub fn thresholds(&self) -> BTreeMap<SensorId, Threshold> {
        let Some(obj) = section(&self.doc, THRESHOLDS) else {
            return BTreeMap::new();
        };
        self.doc
            .keys(&obj)
            .filter_map(|key| {
                let sensor = SensorId(key.parse::<u32>().ok()?);
                (sensor.to_string() == key).then_some(())?;
                Some((sensor, self.threshold_in(&obj, &key)?))
            })
            .collect()
    }

    /// An alert's acknowledgement, if any.
    pub fn ack(&self, alert: AlertKey) -> Option<Ack> {
        let obj = section(&self.doc, ACKS)?;
        self.ack_in(&obj, &ack_key(alert))
    }

    /// Every acknowledgement.
    pub fn acks(&self) -> BTreeMap<AlertKey, Ack> {
        let Some(obj) = section(&self.doc, ACKS) else {
            return BTreeMap::new();
        };
        self.doc
            .keys(&obj)
            .filter_map(|key| {
                let alert = parse_ack_key(&key)?;
                Some((alert, self.ack_in(&obj, &key)?))
            })
            .collect()
    }

    /// Everything, materialised.
    pub fn snapshot(&self) -> FleetSnapshot {
        FleetSnapshot {
            nodes: self.nodes(),
            sensors: self.sensors(),
            thresholds: self.thresholds(),
            acks: self.acks(),
        }
    }

    fn section_for_edit(&self, name: &'static str) -> Result<ObjId, FleetError> {
        section(&self.doc, name).ok_or(FleetError::MissingSection(name))
    }

    /// Puts a text field, or deletes it for `None` (only if present, so an
    /// absent field costs no op in the history).
    fn put_text(
        &mut self,
        obj: &ObjId,
        key: String,
        value: Option<&str>,
    ) -> Result<(), FleetError> {
        match value {
            Some(v) => self.doc.put(obj, key, v)?,
            None => {
                if self.doc.get(obj, key.as_str())?.is_some() {
                    self.doc.delete(obj, key)?;
                }
            }
        }
        Ok(())
    }

    fn text(&self, obj: &ObjId, key: &str) -> Option<String> {
        match self.doc.get(obj, key) {
            Ok(Some((Value::Scalar(v), _))) => match v.as_ref() {
                ScalarValue::Str(s) => Some(s.to_string()),
                _ => None,
            },
            _ => None,
        }
    }

    fn scalar(&self, obj: &ObjId, key: &str) -> Option<ScalarValue> {
        match self.doc.get(obj, key) {
            Ok(Some((Value::Scalar(v), _))) => Some(v.into_owned()),
            _ => None,
        }
    }

    fn map(&self, obj: &ObjId, key: &str) -> Option<ObjId> {
        match self.doc.get(obj, key) {
            Ok(Some((Value::Object(ObjType::Map), id))) => Some(id),
            _ => None,
        }
    }

    fn node_in(&self, obj: &ObjId, id: &str) -> Option<NodeInfo> {
        Some(NodeInfo {
            name: self.text(obj, &field_key(id, "name"))?,
            location: self.text(obj, &field_key(id, "location")),
        })
    }

    fn sensor_in(&self, obj: &ObjId, id: &str) -> Option<SensorInfo> {
        Some(SensorInfo {
            name: self.text(obj, &field_key(id, "name"))?,
            unit: self.text(obj, &field_key(id, "unit"))?,
            location: self.text(obj, &field_key(id, "location")),
        })
    }

    fn threshold_in(&self, obj: &ObjId, key: &str) -> Option<Threshold> {
        let map = self.map(obj, key)?;
        let Some(ScalarValue::F64(open)) = self.scalar(&map, "open") else {
            return None;
        };
        let close = match self.scalar(&map, "close") {
            Some(ScalarValue::F64(c)) => Some(c),
            _ => None,
        };
        let threshold = Threshold { open, close };
        match threshold.validate() {
            Ok(()) => Some(threshold),
            Err(FleetError::CloseOutOfRange { .. }) => Some(Threshold { open, close: None }),
            Err(_) => None,
        }
    }

    fn ack_in(&self, obj: &ObjId, key: &str) -> Option<Ack> {
        let map = self.map(obj, key)?;
        let Some(ScalarValue::Uint(acked_ms)) = self.scalar(&map, "acked_ms") else {
            return None;
        };
        Some(Ack {
            acked_ms,
            who: self.text(&map, "who")?,
        })
    }
}

/// The shared first change of every fleet document.
#[expect(
    clippy::expect_used,
    reason = "puts into a fresh, empty document with constant keys cannot fail"
)]
fn genesis() -> AutoCommit {
    let mut doc = AutoCommit::new().with_actor(ActorId::from(GENESIS_ACTOR));
    doc.put(ROOT, SCHEMA, SCHEMA_VERSION)
        .expect("put into a fresh document");
    for name in [NODES, SENSORS, THRESHOLDS, ACKS] {
        doc.put_object(ROOT, name, ObjType::Map)
            .expect("put into a fresh document");
    }
    // A fixed time (and no message) keeps the change, hence its hash,
    // identical on every replica.
    doc.commit_with(CommitOptions::default().with_time(0));
    doc
}

fn section(doc: &AutoCommit, name: &str) -> Option<ObjId> {
    match doc.get(ROOT, name) {
        Ok(Some((Value::Object(ObjType::Map), id))) => Some(id),
        _ => None,
    }
}

fn field_key(id: &str, field: &str) -> String {
    format!("{id}/{field}")
}

/// The entity ids present in a section of `"{id}/{field}"` keys.
fn entity_ids(doc: &AutoCommit, obj: &ObjId) -> BTreeSet<String> {
    doc.keys(obj)
        .filter_map(|key| key.split_once('/').map(|(id, _)| id.to_owned()))
        .collect()
}

fn ack_key(alert: AlertKey) -> String {
    format!("{}/{:016x}", alert.node, alert.hlc.as_u64())
}

fn parse_ack_key(key: &str) -> Option<AlertKey> {
    let (node, hlc) = key.split_once('/')?;
    let node = node.parse::<NodeId>().ok()?;
    if hlc.len() != 16 || !hlc.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let hlc = Hlc::from_u64(u64::from_str_radix(hlc, 16).ok()?);
    let alert = AlertKey { node, hlc };
    (ack_key(alert) == key).then_some(alert)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn independently_created_documents_share_their_genesis() {
        let mut a = FleetConfig::new(NodeId(1), 1);
        let mut b = FleetConfig::new(NodeId(2), 99);
        assert_eq!(a.heads(), b.heads());
        assert_eq!(a.heads().len(), 1);
    }

    #[test]
    fn a_refused_edit_writes_nothing() {
        let mut doc = FleetConfig::new(NodeId(1), 1);
        let before = doc.heads();
        let bad = Threshold {
            open: 2.0,
            close: None,
        };
        assert!(doc.set_threshold(SensorId(1), bad).is_err());
        assert!(doc.set_node_name(NodeId(1), "").is_err());
        assert!(!doc.commit());
        assert_eq!(doc.heads(), before);
    }

    #[test]
    fn a_batch_of_edits_is_one_change() {
        let mut doc = FleetConfig::new(NodeId(1), 1);
        for n in 0..10 {
            doc.set_node_name(NodeId(n), "gw").unwrap();
        }
        assert!(doc.commit());
        let heads = doc.heads();
        assert_eq!(heads.len(), 1);
        assert_eq!(doc.doc.get_changes(&[]).len(), 2, "genesis + one batch");
    }

    #[test]
    fn acks_and_their_keys_round_trip() {
        let mut doc = FleetConfig::new(NodeId(1), 1);
        let alert = AlertKey {
            node: NodeId(0xabc),
            hlc: Hlc::from_u64(u64::MAX),
        };
        let ack = Ack {
            acked_ms: 5,
            who: "ops".into(),
        };
        doc.ack_alert(alert, &ack).unwrap();
        assert_eq!(parse_ack_key(&ack_key(alert)), Some(alert));
        assert_eq!(
            doc.acks().into_iter().collect::<Vec<_>>(),
            vec![(alert, ack)]
        );
        assert_eq!(parse_ack_key("abc/1"), None, "not the canonical spelling");
    }
}
