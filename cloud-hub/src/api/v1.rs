//! The `/api/v1` handlers: parse and check parameters (400 with a reason),
//! ask a store actor, shape the answer (see docs/hub-api.md).

use actix::{Actor, Addr, Handler, Message};
use actix_web::{HttpResponse, web};
use serde::Deserialize;
use tributary_core::hlc::Hlc;
use tributary_core::ids::{NodeId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;
use utoipa::IntoParams;

use super::dto::{
    AckOut, AggregatesOut, AlertList, AlertOut, BucketOut, Completeness, FleetNodes, FleetOut,
    NodeList, NodeOut, SensorList, SensorOut, SeriesOut,
};
use super::error::{ApiError, ErrorBody};
use super::{ApiState, DEFAULT_LIMIT, MAX_LIMIT, wall_ms};
use crate::store::actor::{
    AckAlert, CountOpenAlerts, QueryAlerts, QueryMerged, QueryNodeSeries, QueryNodes, QueryPerNode,
    QuerySensor, QuerySensors,
};
use crate::store::{AlertCursor, AlertQuery, MergeError, NodeBucket, NodeRecord, RangeQuery};

/// Sends `msg` to a store actor: a gone actor is 503, a store failure 500.
pub(super) async fn ask<A, M, T>(addr: &Addr<A>, msg: M, what: &str) -> Result<T, ApiError>
where
    A: Actor + Handler<M>,
    A::Context: actix::dev::ToEnvelope<A, M>,
    M: Message<Result = Result<T, MergeError>> + Send + 'static,
    T: Send + 'static,
{
    addr.send(msg)
        .await
        .map_err(|_| ApiError::unavailable(what))?
        .map_err(|e| ApiError::store(&e))
}

fn limit(l: Option<usize>) -> Result<usize, ApiError> {
    match l.unwrap_or(DEFAULT_LIMIT) {
        n @ 1..=MAX_LIMIT => Ok(n),
        _ => Err(ApiError::bad_param(
            "limit",
            "limit_out_of_range",
            format!("limit must be between 1 and {MAX_LIMIT}"),
        )),
    }
}

pub(super) fn node_param(name: &str, s: &str) -> Result<NodeId, ApiError> {
    s.parse().map_err(|_| {
        ApiError::bad_param(
            name,
            "invalid_node",
            format!("`{name}` must be a node id: 1 to 16 hex digits"),
        )
    })
}

fn time_range(from: Option<u64>, to: Option<u64>) -> Result<(u64, u64), ApiError> {
    let (from, to) = (from.unwrap_or(0), to.unwrap_or(u64::MAX));
    if from >= to {
        return Err(ApiError::bad_param(
            "from",
            "empty_range",
            "`from` must be before `to`",
        ));
    }
    Ok((from, to))
}

/// Every known node.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "fleet",
    responses(
        (status = 200, description = "Every known node, by id", body = NodeList),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is shutting down", body = ErrorBody),
    ))]
pub(super) async fn get_nodes(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let nodes = ask(&state.reader, QueryNodes, "store").await?;
    let (now, window) = (wall_ms(), state.online_window_ms());
    Ok(HttpResponse::Ok().json(NodeList {
        items: nodes.iter().map(|r| NodeOut::new(r, now, window)).collect(),
        online_window_seconds: window / 1_000,
    }))
}

/// Every sensor with data.
#[utoipa::path(get, path = "/api/v1/sensors", tag = "aggregates",
    responses(
        (status = 200, description = "Every sensor with data, by id", body = SensorList),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is shutting down", body = ErrorBody),
    ))]
pub(super) async fn get_sensors(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let sensors = ask(&state.reader, QuerySensors, "store").await?;
    Ok(HttpResponse::Ok().json(SensorList {
        items: sensors.iter().map(SensorOut::from).collect(),
    }))
}

/// Query parameters of `GET /api/v1/aggregates`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct AggregatesParams {
    /// The sensor id (required).
    sensor: u32,
    /// Bucket width: `1s`, `1m` (default), `1h` or `1d`.
    resolution: Option<String>,
    /// Buckets starting at or after this time (ms, default 0).
    from: Option<u64>,
    /// Buckets starting before this time (ms, default: no bound).
    to: Option<u64>,
    /// Only this node's entries (16 hex digits) instead of the merge.
    node: Option<String>,
    /// Also return each node's series beside the merged one.
    per_node: Option<bool>,
    /// Most buckets (1 to 10000, default 1000).
    limit: Option<usize>,
}

/// What `/aggregates` reads.
enum Mode {
    Merged,
    Node(NodeId),
    PerNode,
}

/// Buckets of one sensor, merged across nodes or per node, with their
/// completeness.
#[utoipa::path(get, path = "/api/v1/aggregates", tag = "aggregates",
    params(AggregatesParams),
    responses(
        (status = 200, description = "One page of buckets, oldest first", body = AggregatesOut),
        (status = 400, description = "A parameter is missing or invalid", body = ErrorBody),
        (status = 404, description = "`node` is not a known node", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is shutting down", body = ErrorBody),
    ))]
pub(super) async fn get_aggregates(
    q: web::Query<AggregatesParams>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let resolution: Resolution = q
        .resolution
        .as_deref()
        .unwrap_or("1m")
        .parse()
        .map_err(|_| {
            ApiError::bad_param(
                "resolution",
                "invalid_resolution",
                "resolution must be one of 1s, 1m, 1h, 1d",
            )
        })?;
    let (from, to) = time_range(q.from, q.to)?;
    let limit = limit(q.limit)?;
    let mode = match (q.node.as_deref(), q.per_node.unwrap_or(false)) {
        (Some(_), true) => {
            return Err(ApiError::bad_param(
                "per_node",
                "conflicting_parameters",
                "`node` and `per_node=true` exclude each other",
            ));
        }
        (Some(n), false) => Mode::Node(node_param("node", n)?),
        (None, true) => Mode::PerNode,
        (None, false) => Mode::Merged,
    };
    let sensor = SensorId(q.sensor);
    let nodes = ask(&state.reader, QueryNodes, "store").await?;
    let reporting: Vec<NodeRecord> = match mode {
        Mode::Node(n) => {
            let r = nodes.iter().find(|r| r.node == n).copied();
            vec![r.ok_or_else(|| ApiError::not_found(format!("no node {n}")))?]
        }
        Mode::Merged | Mode::PerNode => {
            let ids = ask(&state.reader, QuerySensor(sensor), "store")
                .await?
                .map(|s| s.nodes)
                .unwrap_or_default();
            nodes
                .into_iter()
                .filter(|r| ids.contains(&r.node))
                .collect()
        }
    };
    let completeness = Completeness::of(&reporting);
    let before = completeness.complete_before_ms;
    // One bucket more than asked tells whether there is a next page.
    let range = RangeQuery {
        sensor,
        resolution,
        from: Timestamp(from),
        to: Timestamp(to),
        limit: limit + 1,
    };
    let width = resolution.millis();
    let mut out = AggregatesOut {
        sensor: q.sensor,
        resolution: resolution.as_str().to_string(),
        node: None,
        items: Vec::new(),
        series: None,
        next_from: None,
        completeness,
    };
    match mode {
        Mode::Merged => {
            let mut rows = ask(&state.reader, QueryMerged(range), "store").await?;
            out.next_from = rows.get(limit).map(|(t, _)| t.0);
            rows.truncate(limit);
            out.items = rows
                .iter()
                .map(|(t, s)| BucketOut::new(t.0, width, s, None, before))
                .collect();
        }
        Mode::Node(node) => {
            let mut rows = ask(&state.reader, QueryNodeSeries { node, range }, "store").await?;
            out.next_from = rows.get(limit).map(|b| b.bucket_start.0);
            rows.truncate(limit);
            out.node = Some(node.to_string());
            out.items = rows
                .iter()
                .map(|b| {
                    BucketOut::new(
                        b.bucket_start.0,
                        width,
                        &b.entry.summary,
                        Some(b.entry.version),
                        before,
                    )
                })
                .collect();
        }
        Mode::PerNode => {
            let rows = ask(&state.reader, QueryPerNode(range), "store").await?;
            let (rows, next) = first_buckets(rows, limit);
            out.next_from = next;
            out.items = merge_rows(&rows)
                .iter()
                .map(|(t, s)| BucketOut::new(*t, width, s, None, before))
                .collect();
            out.series = Some(series(&rows, width, before));
        }
    }
    Ok(HttpResponse::Ok().json(out))
}

/// The rows of the first `limit` distinct buckets, and the start of the
/// next bucket if there is one.
fn first_buckets(mut rows: Vec<NodeBucket>, limit: usize) -> (Vec<NodeBucket>, Option<u64>) {
    let mut distinct = 0usize;
    let mut last = None;
    for (i, r) in rows.iter().enumerate() {
        if last != Some(r.bucket_start) {
            if distinct == limit {
                let next = r.bucket_start.0;
                rows.truncate(i);
                return (rows, Some(next));
            }
            distinct += 1;
            last = Some(r.bucket_start);
        }
    }
    (rows, None)
}

/// Per-node rows (by bucket, then ascending node) combined per bucket in
/// that order: bit for bit the store's (and the core's) merge.
fn merge_rows(rows: &[NodeBucket]) -> Vec<(u64, Summary)> {
    let mut out: Vec<(u64, Summary)> = Vec::new();
    for r in rows {
        match out.last_mut() {
            Some((t, acc)) if *t == r.bucket_start.0 => acc.combine(&r.entry.summary),
            _ => out.push((r.bucket_start.0, r.entry.summary)),
        }
    }
    out
}

fn series(rows: &[NodeBucket], width: u64, before: u64) -> Vec<SeriesOut> {
    let mut nodes: Vec<NodeId> = rows.iter().map(|r| r.node).collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
        .into_iter()
        .map(|n| SeriesOut {
            node: n.to_string(),
            items: rows
                .iter()
                .filter(|r| r.node == n)
                .map(|r| {
                    BucketOut::new(
                        r.bucket_start.0,
                        width,
                        &r.entry.summary,
                        Some(r.entry.version),
                        before,
                    )
                })
                .collect(),
        })
        .collect()
}

/// Query parameters of `GET /api/v1/alerts`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct AlertsParams {
    /// Only this node's (16 hex digits).
    node: Option<String>,
    /// Only this sensor's.
    sensor: Option<u32>,
    /// Only acknowledged (`true`) or open (`false`) alerts.
    acknowledged: Option<bool>,
    /// Event time at or after (ms).
    from: Option<u64>,
    /// Event time before (ms).
    to: Option<u64>,
    /// Most alerts (1 to 10000, default 1000).
    limit: Option<usize>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// Alerts, newest event time first, one page at a time.
#[utoipa::path(get, path = "/api/v1/alerts", tag = "alerts",
    params(AlertsParams),
    responses(
        (status = 200, description = "One page of alerts, newest first", body = AlertList),
        (status = 400, description = "A parameter is invalid", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is shutting down", body = ErrorBody),
    ))]
pub(super) async fn get_alerts(
    q: web::Query<AlertsParams>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    let limit = limit(q.limit)?;
    let node = q
        .node
        .as_deref()
        .map(|n| node_param("node", n))
        .transpose()?;
    if q.from.is_some() || q.to.is_some() {
        time_range(q.from, q.to)?;
    }
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            c.parse::<AlertCursor>().map_err(|_| {
                ApiError::bad_param(
                    "cursor",
                    "invalid_cursor",
                    "`cursor` must be a `next_cursor` of this API",
                )
            })
        })
        .transpose()?;
    let query = AlertQuery {
        node,
        sensor: q.sensor.map(SensorId),
        acknowledged: q.acknowledged,
        from: q.from.map(Timestamp),
        to: q.to.map(Timestamp),
        after,
        limit: limit + 1,
    };
    let mut alerts = ask(&state.reader, QueryAlerts(query), "store").await?;
    let more = alerts.len() > limit;
    alerts.truncate(limit);
    let next_cursor = if more {
        alerts.last().map(|a| AlertCursor::from(a).to_string())
    } else {
        None
    };
    Ok(HttpResponse::Ok().json(AlertList {
        items: alerts.iter().map(AlertOut::from).collect(),
        next_cursor,
    }))
}

/// Acknowledges an alert. Acknowledging again succeeds and keeps the first
/// time.
#[utoipa::path(post, path = "/api/v1/alerts/{node}/{hlc}/ack", tag = "alerts",
    params(
        ("node" = String, Path, description = "The alert's node, 16 hex digits"),
        ("hlc" = u64, Path, description = "The alert's HLC as its packed u64 (the `hlc` field of an alert)"),
    ),
    responses(
        (status = 200, description = "Acknowledged", body = AckOut),
        (status = 400, description = "`node` or `hlc` is malformed", body = ErrorBody),
        (status = 404, description = "No such alert", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is shutting down", body = ErrorBody),
    ))]
pub(super) async fn post_ack(
    path: web::Path<(String, String)>,
    state: web::Data<ApiState>,
) -> Result<HttpResponse, ApiError> {
    let (node, hlc) = path.into_inner();
    let node = node_param("node", &node)?;
    let hlc: u64 = hlc
        .parse()
        .map_err(|_| ApiError::bad_param("hlc", "invalid_hlc", "`hlc` must be a decimal u64"))?;
    let msg = AckAlert {
        node,
        hlc: Hlc::from_u64(hlc),
        acked_ms: wall_ms(),
    };
    if !ask(&state.writer, msg, "store").await? {
        return Err(ApiError::not_found(format!(
            "no alert {hlc} of node {node}"
        )));
    }
    // Also in the fleet configuration, so every gateway learns that its
    // alert was seen (docs/fleet-config.md). Best effort: the store's
    // acknowledgement above is the answer; a failure here is logged and
    // counted by the document's actor.
    if let Some(fleet) = &state.fleet {
        let (key, acked_ms) = (
            tributary_fleet::AlertKey {
                node,
                hlc: Hlc::from_u64(hlc),
            },
            wall_ms(),
        );
        let edit = fleet.actor.send(tributary_fleet::Edit(Box::new(move |d| {
            // A re-ack keeps the first time, as the store does.
            if d.ack(key).is_some() {
                return Ok(());
            }
            d.ack_alert(
                key,
                &tributary_fleet::Ack {
                    acked_ms,
                    who: "hub API".into(),
                },
            )
        })));
        if !matches!(edit.await, Ok(Ok(_))) {
            tracing::warn!(%node, hlc, "could not record the acknowledgement in the fleet configuration");
        }
    }
    Ok(HttpResponse::Ok().json(AckOut {
        node: node.to_string(),
        hlc,
        acknowledged: true,
    }))
}

/// Health of the fleet at a glance.
#[utoipa::path(get, path = "/api/v1/fleet", tag = "fleet",
    responses(
        (status = 200, description = "Fleet summary", body = FleetOut),
        (status = 500, description = "The store failed", body = ErrorBody),
        (status = 503, description = "The store is shutting down", body = ErrorBody),
    ))]
pub(super) async fn get_fleet(state: web::Data<ApiState>) -> Result<HttpResponse, ApiError> {
    let nodes = ask(&state.reader, QueryNodes, "store").await?;
    let alerts_open = ask(&state.reader, CountOpenAlerts, "store").await?;
    let sensors = ask(&state.reader, QuerySensors, "store").await?;
    let (now, window) = (wall_ms(), state.online_window_ms());
    let outs: Vec<NodeOut> = nodes.iter().map(|r| NodeOut::new(r, now, window)).collect();
    let total = outs.len() as u64;
    let online = outs.iter().filter(|n| n.online).count() as u64;
    let h = &state.health;
    Ok(HttpResponse::Ok().json(FleetOut {
        nodes: FleetNodes {
            total,
            online,
            offline: total - online,
        },
        max_lag_versions: outs.iter().map(|n| n.lag.versions).max().unwrap_or(0),
        max_lag_seconds: outs.iter().filter_map(|n| n.lag.seconds).max(),
        alerts_open,
        sensors: sensors.len() as u64,
        mqtt_connected: h.mqtt_connected.load(std::sync::atomic::Ordering::Relaxed),
        store_ok: h.store_ok.load(std::sync::atomic::Ordering::Relaxed),
        uptime_seconds: h.started.elapsed().as_secs(),
        online_window_seconds: window / 1_000,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_core::crdt::aggregate::Entry;

    fn row(start: u64, node: u64, x: f64) -> NodeBucket {
        NodeBucket {
            bucket_start: Timestamp(start),
            node: NodeId(node),
            entry: Entry {
                version: 1,
                summary: Summary::of(Timestamp(start), x).unwrap(),
            },
        }
    }

    #[test]
    fn first_buckets_cuts_at_a_bucket_boundary() {
        let rows = vec![
            row(0, 1, 1.0),
            row(0, 2, 2.0),
            row(60, 1, 3.0),
            row(120, 2, 4.0),
        ];
        let (kept, next) = first_buckets(rows.clone(), 2);
        assert_eq!((kept.len(), next), (3, Some(120)));
        let (kept, next) = first_buckets(rows, 3);
        assert_eq!((kept.len(), next), (4, None));
        let merged = merge_rows(&kept);
        assert_eq!(merged.len(), 3);
        assert_eq!(merged[0].1.sum, 3.0);
    }
}
