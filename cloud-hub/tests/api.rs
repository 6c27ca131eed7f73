//! The hub's HTTP API against a seeded SQLite store: the writer and reader
//! actors and the server started in-process on port 0, queried over real
//! HTTP. Merged values are checked against the core's `AggregateState`
//! for the same entries.

mod common;
mod http_client;

use std::sync::atomic::Ordering;

use http_client::{get, request, request_with};
use serde_json::{Value, json};
use tributary_core::codec::v1::{Alert, DetectorKind};
use tributary_core::crdt::aggregate::{AggregateState, Key};
use tributary_core::hlc::Hlc;
use tributary_core::ids::{NodeId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;
use tributary_hub::api::ROUTES;
use tributary_hub::store::{MergeStore, Progress, SqliteStore};

/// Caught up and seen now; below 2^63.
const N1: NodeId = NodeId(0x10);
/// Caught up and seen now; above 2^63 (a negative i64 in SQL).
const N2: NodeId = NodeId(u64::MAX - 1);
/// Seen ten minutes ago, two versions behind.
const N3: NodeId = NodeId(0x30);

struct TestHub {
    served: common::ServedHub,
    core: AggregateState,
    now: u64,
}

impl std::ops::Deref for TestHub {
    type Target = common::ServedHub;
    fn deref(&self) -> &common::ServedHub {
        &self.served
    }
}

/// Sensor 7 from N1 and N2, sensor 8 from N2 and N3, readings every 7 s
/// for 7 minutes starting an hour ago; 25 alerts.
fn seed(store: &mut SqliteStore, now: u64) -> AggregateState {
    let t0 = (now - 3_600_000) / 60_000 * 60_000;
    let mut core = AggregateState::new();
    let plan: [(NodeId, &[u32]); 3] = [(N1, &[7]), (N2, &[7, 8]), (N3, &[8])];
    for (n, (node, sensors)) in plan.into_iter().enumerate() {
        for i in 0..60u64 {
            for &s in sensors {
                let t = Timestamp(t0 + i * 7_000 + n as u64 * 300);
                let x = (i as f64) * 0.37 - 3.1 + f64::from(s) * n as f64;
                core.record_all_resolutions(node, SensorId(s), t, x)
                    .unwrap();
            }
        }
        let entries = core.node_entries_since(node, 0);
        let high = core.version_of(node);
        let progress = if node == N3 {
            Progress {
                seen_ms: now - 600_000,
                watermark: high - 2,
            }
        } else {
            Progress {
                seen_ms: now,
                watermark: high,
            }
        };
        store.apply_with(node, &entries, Some(progress)).unwrap();
    }
    for node in [N1, N2] {
        let alerts: Vec<Alert> = (0..if node == N1 { 15 } else { 10 })
            .map(|i| Alert {
                node,
                sensor: SensorId(7),
                hlc: Hlc::new(now - 1_000_000 + i, (i % 3) as u16).unwrap(),
                at: Timestamp(t0 + (i % 4) * 1_000),
                value: i as f64,
                score: 0.5,
                detector: DetectorKind::ZScore,
                window: Summary::of(Timestamp(t0), 1.0).unwrap(),
            })
            .collect();
        store.insert_alerts(node, &alerts, now).unwrap();
    }
    core
}

fn hub() -> TestHub {
    // Not connected: the readiness test connects it.
    let (served, core, now) = common::serve(false, seed);
    TestHub { served, core, now }
}

fn ok(hub: &TestHub, path: &str) -> Value {
    common::ok_json(hub.addr, path)
}

/// Every page of `path` (which has no `from`), following `next_from`.
fn all_pages(hub: &TestHub, path: &str) -> (Vec<Value>, Vec<Value>) {
    let (mut items, mut pages) = (Vec::new(), Vec::new());
    let mut next = Some(0u64);
    while let Some(from) = next {
        let page = ok(hub, &format!("{path}&from={from}"));
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        next = page["next_from"].as_u64();
        pages.push(page);
        assert!(pages.len() < 1_000, "paging does not end");
    }
    (items, pages)
}

fn f(v: &Value) -> Option<f64> {
    v.as_f64()
}

/// The JSON bucket carries exactly the summary's statistics.
fn assert_bucket(b: &Value, s: &Summary, what: &str) {
    assert_eq!(b["count"].as_u64(), Some(s.count), "{what}");
    assert_eq!(f(&b["sum"]), Some(s.sum), "{what}");
    assert_eq!(f(&b["mean"]), s.mean(), "{what}");
    assert_eq!(f(&b["min"]), Some(s.min), "{what}");
    assert_eq!(f(&b["max"]), Some(s.max), "{what}");
    assert_eq!(f(&b["stddev"]), s.stddev(), "{what}");
    assert_eq!(b["first_ts"].as_u64(), Some(s.first_ts.0), "{what}");
    assert_eq!(b["last_ts"].as_u64(), Some(s.last_ts.0), "{what}");
}

#[test]
fn merged_aggregates_equal_the_core_join_and_pages_cover_each_bucket_once() {
    let hub = hub();
    for sensor in [7u32, 8] {
        for r in Resolution::ALL {
            let want: Vec<(Key, Summary)> = hub
                .core
                .iter_merged()
                .filter(|(k, _)| k.sensor == SensorId(sensor) && k.resolution == r)
                .collect();
            let limit = if r == Resolution::Second { 7 } else { 2 };
            let (items, pages) = all_pages(
                &hub,
                &format!("/api/v1/aggregates?sensor={sensor}&resolution={r}&limit={limit}"),
            );
            assert!(
                pages
                    .iter()
                    .all(|p| p["items"].as_array().unwrap().len() <= limit)
            );
            assert_eq!(items.len(), want.len(), "{sensor} {r}: every bucket once");
            for (b, (k, s)) in items.iter().zip(&want) {
                let start = k.bucket.start(r).0;
                assert_eq!(b["start"].as_u64(), Some(start));
                assert_eq!(b["end"].as_u64(), Some(start + r.millis()));
                assert_bucket(b, s, &format!("{sensor} {r} {start}"));
            }
        }
    }
}

#[test]
fn per_node_series_and_single_node_queries_match_each_nodes_entries() {
    let hub = hub();
    let r = Resolution::Minute;
    let node_entries = |node: NodeId| -> Vec<(Key, tributary_core::crdt::aggregate::Entry)> {
        hub.core
            .iter_entries()
            .filter(|(k, n, _)| *n == node && k.sensor == SensorId(8) && k.resolution == r)
            .map(|(k, _, e)| (k, e))
            .collect()
    };
    // node=: that node's entries, with their versions.
    let (items, _) = all_pages(
        &hub,
        &format!("/api/v1/aggregates?sensor=8&resolution=1m&node={N3}&limit=3"),
    );
    let want = node_entries(N3);
    assert_eq!(items.len(), want.len());
    for (b, (k, e)) in items.iter().zip(&want) {
        assert_eq!(b["start"].as_u64(), Some(k.bucket.start(r).0));
        assert_eq!(b["version"].as_u64(), Some(e.version));
        assert_bucket(b, &e.summary, "node N3");
    }
    // per_node=true: the merged items plus each node's series, same page.
    let page = ok(
        &hub,
        "/api/v1/aggregates?sensor=8&resolution=1m&per_node=true",
    );
    let series = page["series"].as_array().unwrap();
    let nodes: Vec<&str> = series.iter().map(|s| s["node"].as_str().unwrap()).collect();
    assert_eq!(nodes, [N3.to_string(), N2.to_string()], "ascending ids");
    for (s, node) in series.iter().zip([N3, N2]) {
        let want = node_entries(node);
        let got = s["items"].as_array().unwrap();
        assert_eq!(got.len(), want.len());
        for (b, (_, e)) in got.iter().zip(&want) {
            assert_bucket(b, &e.summary, "series");
        }
    }
    let merged = ok(&hub, "/api/v1/aggregates?sensor=8&resolution=1m");
    assert_eq!(page["items"], merged["items"], "bit for bit the same merge");
    assert!(merged.get("series").is_none());
}

#[test]
fn completeness_says_which_numbers_are_final() {
    let hub = hub();
    // Sensor 7: both reporters caught up and seen after the buckets ended.
    let p = ok(&hub, "/api/v1/aggregates?sensor=7&resolution=1h");
    let c = &p["completeness"];
    assert_eq!(c["complete_before_ms"].as_u64(), Some(hub.now));
    let nodes = c["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    assert!(nodes.iter().all(|n| n["caught_up"] == Value::Bool(true)));
    // The hour buckets: the one an hour ago ended before `now` (final),
    // unless the seeded minutes straddle into the current hour.
    for b in p["items"].as_array().unwrap() {
        let end = b["end"].as_u64().unwrap();
        assert_eq!(b["complete"].as_bool(), Some(end <= hub.now), "{b}");
    }
    // Sensor 8: N3 is two versions behind, so nothing is final.
    let p = ok(&hub, "/api/v1/aggregates?sensor=8&resolution=1m");
    assert_eq!(p["completeness"]["complete_before_ms"].as_u64(), Some(0));
    let n3 = p["completeness"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == N3.to_string().as_str())
        .cloned()
        .unwrap();
    assert_eq!(n3["caught_up"], Value::Bool(false));
    assert_eq!(
        n3["version_high"].as_u64().unwrap() - n3["watermark"].as_u64().unwrap(),
        2
    );
    assert!(
        p["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["complete"] == Value::Bool(false))
    );
    // One node asked for: only its completeness counts.
    let p = ok(&hub, &format!("/api/v1/aggregates?sensor=8&node={N2}"));
    assert_eq!(
        p["completeness"]["complete_before_ms"].as_u64(),
        Some(hub.now)
    );
    assert!(
        p["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|b| b["complete"] == Value::Bool(true))
    );
}

#[test]
fn nodes_sensors_and_fleet_describe_the_fleet() {
    let hub = hub();
    let nodes = ok(&hub, "/api/v1/nodes");
    let items = nodes["items"].as_array().unwrap();
    let ids: Vec<&str> = items.iter().map(|n| n["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        ["0000000000000010", "0000000000000030", "fffffffffffffffe"]
    );
    let n3 = &items[1];
    assert_eq!(n3["online"], Value::Bool(false));
    assert_eq!(n3["lag"]["versions"].as_u64(), Some(2));
    assert!(n3["lag"]["seconds"].as_u64().unwrap() >= 600);
    assert_eq!(n3["last_seen_ms"].as_u64(), Some(hub.now - 600_000));
    assert!(n3["last_seen"].as_str().unwrap().ends_with('Z'));
    assert_eq!(items[0]["online"], Value::Bool(true));
    assert_eq!(items[0]["lag"]["versions"].as_u64(), Some(0));
    assert_eq!(nodes["online_window_seconds"].as_u64(), Some(300));

    let sensors = ok(&hub, "/api/v1/sensors");
    let s: Vec<(u64, Vec<&str>)> = sensors["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let nodes = s["nodes"].as_array().unwrap();
            (
                s["id"].as_u64().unwrap(),
                nodes.iter().map(|n| n.as_str().unwrap()).collect(),
            )
        })
        .collect();
    assert_eq!(
        s,
        vec![
            (7, vec!["0000000000000010", "fffffffffffffffe"]),
            (8, vec!["0000000000000030", "fffffffffffffffe"]),
        ]
    );

    let fleet = ok(&hub, "/api/v1/fleet");
    assert_eq!(fleet["nodes"]["total"].as_u64(), Some(3));
    assert_eq!(fleet["nodes"]["online"].as_u64(), Some(2));
    assert_eq!(fleet["nodes"]["offline"].as_u64(), Some(1));
    assert_eq!(fleet["max_lag_versions"].as_u64(), Some(2));
    assert_eq!(fleet["alerts_open"].as_u64(), Some(25));
    assert_eq!(fleet["sensors"].as_u64(), Some(2));
    assert_eq!(fleet["mqtt_connected"], Value::Bool(false));
}

#[test]
fn alerts_page_newest_first_and_acknowledge() {
    let hub = hub();
    let mut seen: Vec<(String, u64, u64)> = Vec::new();
    let mut path = "/api/v1/alerts?limit=4".to_string();
    loop {
        let page = ok(&hub, &path);
        let items = page["items"].as_array().unwrap();
        assert!(items.len() <= 4);
        for a in items {
            seen.push((
                a["node"].as_str().unwrap().to_string(),
                a["hlc"].as_u64().unwrap(),
                a["at"].as_u64().unwrap(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/api/v1/alerts?limit=4&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 25);
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), 25, "each alert once");
    assert!(seen.windows(2).all(|w| w[0].2 >= w[1].2), "newest first");

    let n2 = ok(&hub, &format!("/api/v1/alerts?node={N2}&sensor=7"));
    assert_eq!(n2["items"].as_array().unwrap().len(), 10);
    assert_eq!(n2["next_cursor"], Value::Null);

    // Acknowledge one: 200, again 200 (first time kept), unknown 404.
    let (node, hlc) = (&seen[0].0, seen[0].1);
    let ack = format!("/api/v1/alerts/{node}/{hlc}/ack");
    let r = request(hub.addr, "POST", &ack, None, b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["acknowledged"], Value::Bool(true));
    let acked = ok(&hub, "/api/v1/alerts?acknowledged=true");
    let first_time = acked["items"][0]["acked_ms"].as_u64().unwrap();
    assert!(first_time >= hub.now);
    let r = request(hub.addr, "POST", &ack, None, b"").unwrap();
    assert_eq!(r.status, 200);
    let acked = ok(&hub, "/api/v1/alerts?acknowledged=true");
    assert_eq!(acked["items"].as_array().unwrap().len(), 1);
    assert_eq!(acked["items"][0]["acked_ms"].as_u64(), Some(first_time));
    assert_eq!(acked["items"][0]["hlc"].as_u64(), Some(hlc));
    let open = ok(&hub, "/api/v1/alerts?acknowledged=false&limit=100");
    assert_eq!(open["items"].as_array().unwrap().len(), 24);
    assert_eq!(ok(&hub, "/api/v1/fleet")["alerts_open"].as_u64(), Some(24));

    let r = request(
        hub.addr,
        "POST",
        &format!("/api/v1/alerts/{N3}/{hlc}/ack"),
        None,
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "not_found");
}

/// Bearer tokens: 401 for no or an unknown token (with a Bearer
/// challenge), 403 for a reader token on an admin route, every refusal
/// counted by reason; the OpenAPI document and health stay public.
#[test]
fn api_tokens_tell_unauthenticated_from_forbidden() {
    use tributary_hub::api::auth::Tokens;
    let reader = "r3ad3r-t0ken-0123456789";
    let admin = "adm1n-t0ken-0123456789ab";
    let (hub, _, now) = common::serve_with(
        false,
        Tokens::new(&[reader.to_owned()], &[admin.to_owned()]),
        seed,
    );
    let call = |method: &str, path: &str, token: Option<&str>| {
        let auth = token.map(|t| format!("Bearer {t}"));
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| ("Authorization", a))
            .into_iter()
            .collect();
        request_with(hub.addr, method, path, &headers, None, b"").unwrap()
    };
    let r = call("GET", "/api/v1/nodes", None);
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.json()["code"], "unauthorized");
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Bearer realm=\"tributary\"")
    );
    assert_eq!(
        call("GET", "/api/v1/nodes", Some("not-a-token-at-all")).status,
        401
    );
    // A prefix of a real token is not a token.
    assert_eq!(
        call("GET", "/api/v1/nodes", Some(&reader[..10])).status,
        401
    );
    for token in [reader, admin] {
        let r = call("GET", "/api/v1/nodes", Some(token));
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["items"].as_array().map(Vec::len), Some(3));
    }

    let alerts = call("GET", "/api/v1/alerts?limit=1", Some(reader)).json();
    let (node, hlc) = (
        alerts["items"][0]["node"].as_str().unwrap().to_owned(),
        alerts["items"][0]["hlc"].as_u64().unwrap(),
    );
    let ack = format!("/api/v1/alerts/{node}/{hlc}/ack");
    let r = call("POST", &ack, Some(reader));
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.json()["code"], "forbidden");
    assert_eq!(call("POST", &ack, None).status, 401);
    let r = call("POST", &ack, Some(admin));
    assert_eq!(r.status, 200, "{}", r.text());
    let acked = call("GET", "/api/v1/alerts?acknowledged=true", Some(admin)).json();
    assert!(acked["items"][0]["acked_ms"].as_u64() >= Some(now));

    // Public: the API's description, and what orchestrators probe.
    for path in ["/api/v1/openapi.json", "/healthz", "/metrics"] {
        assert_eq!(call("GET", path, None).status, 200, "{path}");
    }
    let metrics = call("GET", "/metrics", None).text();
    for (reason, n) in [("missing", 2), ("invalid", 2), ("forbidden", 1)] {
        let line = format!("tributary_hub_http_auth_refused_total{{reason=\"{reason}\"}} {n}");
        assert!(metrics.contains(&line), "{line} in\n{metrics}");
    }
}

#[test]
fn bad_parameters_get_400_with_a_reason() {
    let hub = hub();
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("/api/v1/aggregates", "invalid_query", None),
        ("/api/v1/aggregates?sensor=abc", "invalid_query", None),
        ("/api/v1/aggregates?sensor=7&bogus=1", "invalid_query", None),
        (
            "/api/v1/aggregates?sensor=7&resolution=2m",
            "invalid_resolution",
            Some("resolution"),
        ),
        (
            "/api/v1/aggregates?sensor=7&limit=0",
            "limit_out_of_range",
            Some("limit"),
        ),
        (
            "/api/v1/aggregates?sensor=7&limit=10001",
            "limit_out_of_range",
            Some("limit"),
        ),
        (
            "/api/v1/aggregates?sensor=7&from=10&to=5",
            "empty_range",
            Some("from"),
        ),
        (
            "/api/v1/aggregates?sensor=7&node=xyz",
            "invalid_node",
            Some("node"),
        ),
        (
            "/api/v1/aggregates?sensor=7&node=10&per_node=true",
            "conflicting_parameters",
            Some("per_node"),
        ),
        (
            "/api/v1/alerts?cursor=nope",
            "invalid_cursor",
            Some("cursor"),
        ),
        ("/api/v1/alerts?acknowledged=maybe", "invalid_query", None),
        (
            "/api/v1/alerts?limit=20000",
            "limit_out_of_range",
            Some("limit"),
        ),
        (
            "/api/v1/alerts?node=12345678901234567",
            "invalid_node",
            Some("node"),
        ),
    ];
    for (path, reason, parameter) in cases {
        let r = get(hub.addr, path).unwrap();
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        let body = r.json();
        assert_eq!(body["code"], "bad_request", "{path}");
        assert!(!body["message"].as_str().unwrap().is_empty());
        assert_eq!(body["details"]["reason"], *reason, "{path}: {body}");
        if let Some(p) = parameter {
            assert_eq!(body["details"]["parameter"], *p, "{path}");
        }
    }
    for path in [
        "/api/v1/alerts/xyz/1/ack",
        "/api/v1/alerts/10/notanumber/ack",
    ] {
        let r = request(hub.addr, "POST", path, None, b"").unwrap();
        assert_eq!(r.status, 400, "{path}: {}", r.text());
    }
    let r = get(
        hub.addr,
        &format!("/api/v1/aggregates?sensor=7&node={}", NodeId(0x99)),
    )
    .unwrap();
    assert_eq!(r.status, 404, "unknown node");
    let r = get(hub.addr, "/api/v2/nothing").unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "not_found");
}

#[test]
fn readyz_waits_for_mqtt_and_a_healthy_store() {
    let hub = hub();
    let r = get(hub.addr, "/readyz").unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["details"]["reason"], "mqtt_disconnected");
    hub.health.mqtt_connected.store(true, Ordering::Relaxed);
    let r = get(hub.addr, "/readyz").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    hub.health.store_ok.store(false, Ordering::Relaxed);
    let r = get(hub.addr, "/readyz").unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["details"]["reason"], "store_failing");
    assert_eq!(get(hub.addr, "/healthz").unwrap().status, 200);
}

#[test]
fn metrics_count_responses_and_show_per_node_lag() {
    let hub = hub();
    ok(&hub, "/api/v1/nodes");
    assert_eq!(get(hub.addr, "/api/v1/aggregates").unwrap().status, 400);
    let text = get(hub.addr, "/metrics").unwrap().text();
    let has = |needle: &str| text.lines().any(|l| l.starts_with(needle));
    assert!(
        has("tributary_hub_http_responses_total{route=\"/api/v1/nodes\",class=\"2xx\"} 1"),
        "{text}"
    );
    assert!(has(
        "tributary_hub_http_responses_total{route=\"/api/v1/aggregates\",class=\"4xx\"} 1"
    ));
    assert!(has(
        "tributary_hub_node_lag_versions{node=\"0000000000000030\"} 2"
    ));
    assert!(has(
        "tributary_hub_node_last_seen_age_seconds{node=\"0000000000000030\"}"
    ));
}

#[test]
fn openapi_document_parses_and_lists_every_route() {
    let hub = hub();
    let doc = ok(&hub, "/api/v1/openapi.json");
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for r in ROUTES {
        assert!(doc["paths"].get(*r).is_some(), "{r}");
    }
    assert!(doc["paths"]["/api/v1/alerts/{node}/{hlc}/ack"]["post"].is_object());
    assert!(doc["components"]["schemas"]["AggregatesOut"].is_object());
}

/// `/api/v1/config`: readers read, only admins edit; a bad edit is 400
/// with the document's reason and changes nothing.
#[test]
fn the_fleet_configuration_is_read_by_readers_and_edited_by_admins() {
    use tributary_hub::api::auth::Tokens;
    let (reader, admin) = ("r3ad3r-t0ken-0123456789", "adm1n-t0ken-0123456789ab");
    let (hub, _, _) = common::serve_with(
        false,
        Tokens::new(&[reader.to_owned()], &[admin.to_owned()]),
        seed,
    );
    let call = |method: &str, path: &str, token: &str, body: &str| {
        let auth = format!("Bearer {token}");
        let headers = [("Authorization", auth.as_str())];
        request_with(
            hub.addr,
            method,
            path,
            &headers,
            Some("application/json"),
            body.as_bytes(),
        )
        .unwrap()
    };
    let path = "/api/v1/config/sensors/7/threshold";
    let r = call("PUT", path, reader, r#"{"open": 0.9}"#);
    assert_eq!(r.status, 403, "{}", r.text());
    let r = call("PUT", path, admin, r#"{"open": 0.9, "close": 0.2}"#);
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(
        "PUT",
        "/api/v1/config/sensors/7",
        admin,
        r#"{"name": "inlet", "unit": "bar"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let r = call(
        "PUT",
        "/api/v1/config/nodes/00000000000000a1",
        admin,
        r#"{"name": "north", "location": "roof"}"#,
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let doc = call("GET", "/api/v1/config", reader, "").json();
    assert_eq!(
        doc["sensors"],
        json!([{"sensor": 7, "name": "inlet", "unit": "bar", "location": null,
                "threshold": {"open": 0.9, "close": 0.2}}])
    );
    assert_eq!(
        doc["nodes"],
        json!([{"node": "00000000000000a1", "name": "north", "location": "roof"}])
    );
    assert!(doc["stored_bytes"].as_u64() > Some(0));

    for (body, reason) in [
        (r#"{"open": 0}"#, "threshold_out_of_range"),
        (r#"{"open": 0.5, "close": 0.5}"#, "close_out_of_range"),
    ] {
        let r = call("PUT", path, admin, body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        assert_eq!(r.json()["details"]["reason"], reason, "{body}");
    }
    let r = call(
        "PUT",
        "/api/v1/config/sensors/-1/threshold",
        admin,
        r#"{"open": 0.5}"#,
    );
    assert_eq!(r.json()["details"]["reason"], "invalid_sensor");
    let r = call("PUT", path, admin, "{");
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["details"]["reason"], "invalid_body");
    assert_eq!(
        call("GET", "/api/v1/config", reader, "").json()["sensors"],
        doc["sensors"]
    );

    let r = call("DELETE", path, admin, "");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["sensors"][0]["threshold"], Value::Null);

    // An acknowledged alert is recorded in the document too, for the
    // gateways to see.
    let alerts = call(
        "GET",
        "/api/v1/alerts?limit=1&acknowledged=false",
        reader,
        "",
    )
    .json();
    let (node, hlc) = (
        alerts["items"][0]["node"].as_str().unwrap().to_owned(),
        alerts["items"][0]["hlc"].as_u64().unwrap(),
    );
    let r = call(
        "POST",
        &format!("/api/v1/alerts/{node}/{hlc}/ack"),
        admin,
        "",
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let acks = call("GET", "/api/v1/config", reader, "").json()["acks"].clone();
    assert_eq!(acks.as_array().map(Vec::len), Some(1), "{acks}");
    assert_eq!(acks[0]["node"], node.as_str());
    assert_eq!(acks[0]["hlc"], hlc);
    assert_eq!(acks[0]["who"], "hub API");
    let metrics = call("GET", "/metrics", reader, "").text();
    assert!(
        metrics
            .contains("tributary_hub_config_sync_rejected_total{reason=\"close_out_of_range\"} 1"),
        "{metrics}"
    );
}
