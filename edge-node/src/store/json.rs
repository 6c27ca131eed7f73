//! How store rows look in the HTTP API's JSON. The core types have no serde
//! (the core stays free of it), so the row types serialize their core fields
//! through these functions:
//!
//! | core type | JSON |
//! |---|---|
//! | `SensorId` | number |
//! | `NodeId` | 16 hex digits (as everywhere else: logs, topics) |
//! | `Timestamp` | number, ms since the Unix epoch |
//! | `Resolution` | `"1s"`, `"1m"`, `"1h"`, `"1d"` |
//! | `Hlc` | number (packed: physical ms << 16 \| logical) |
//! | `Summary` | `{count, sum, min, max, sum_sq, mean, first_ts, last_ts}`; `min`, `max`, `mean`, `first_ts`, `last_ts` are `null` when `count` is 0 |
//! | `DetectorKind` | snake_case name, e.g. `"page_hinkley"` |

use serde::Serializer;
use serde::ser::SerializeStruct;
use tributary_core::codec::v1::DetectorKind;
use tributary_core::hlc::Hlc;
use tributary_core::ids::{NodeId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;

pub(crate) fn sensor<S: Serializer>(v: &SensorId, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u32(v.0)
}

pub(crate) fn opt_sensor<S: Serializer>(v: &Option<SensorId>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(id) => s.serialize_some(&id.0),
        None => s.serialize_none(),
    }
}

pub(crate) fn node<S: Serializer>(v: &NodeId, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

pub(crate) fn ts<S: Serializer>(v: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(v.as_millis())
}

pub(crate) fn opt_ts<S: Serializer>(v: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(t) => s.serialize_some(&t.as_millis()),
        None => s.serialize_none(),
    }
}

pub(crate) fn resolution<S: Serializer>(v: &Resolution, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(v.as_str())
}

pub(crate) fn hlc<S: Serializer>(v: &Hlc, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(v.as_u64())
}

pub(crate) fn detector<S: Serializer>(v: &DetectorKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(detector_name(*v))
}

/// Stable name of a detector (JSON and logs).
pub fn detector_name(d: DetectorKind) -> &'static str {
    match d {
        DetectorKind::ZScore => "zscore",
        DetectorKind::MadZScore => "mad_zscore",
        DetectorKind::Cusum => "cusum",
        DetectorKind::PageHinkley => "page_hinkley",
        DetectorKind::Flatline => "flatline",
        DetectorKind::RateOfChange => "rate_of_change",
        DetectorKind::Range => "range",
        DetectorKind::Seasonal => "seasonal",
        DetectorKind::Ensemble => "ensemble",
    }
}

pub(crate) fn summary<S: Serializer>(v: &Summary, s: S) -> Result<S::Ok, S::Error> {
    let some = |x: f64| (v.count > 0).then_some(x);
    let some_ts = |t: Timestamp| (v.count > 0).then_some(t.as_millis());
    let mut st = s.serialize_struct("Summary", 8)?;
    st.serialize_field("count", &v.count)?;
    st.serialize_field("sum", &v.sum)?;
    st.serialize_field("min", &some(v.min))?;
    st.serialize_field("max", &some(v.max))?;
    st.serialize_field("sum_sq", &v.sum_sq)?;
    st.serialize_field("mean", &v.mean())?;
    st.serialize_field("first_ts", &some_ts(v.first_ts))?;
    st.serialize_field("last_ts", &some_ts(v.last_ts))?;
    st.end()
}
