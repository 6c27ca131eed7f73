//! The local HTTP API against a whole gateway (store, ingest, detector,
//! server) started in-process on port 0 with a temporary data directory.

mod http_client;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use http_client::{get, post_json, request, wait_for};
use serde_json::json;
use tributary_edge::config::{Config, Overrides};
use tributary_edge::ingest::wall_clock;

struct TestGateway {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: tempfile::TempDir,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn gateway(env: &[(&str, &str)]) -> TestGateway {
    let dir = tempfile::tempdir().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
    let config = Config::load(
        None,
        env,
        &Overrides {
            data_dir: Some(dir.path().to_path_buf()),
            http_listen: Some(addr.to_string()),
            log_format: None,
        },
    )
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // The gateway gets its own thread and actix system: the test's blocking
    // HTTP client must not block the thread its actors run on.
    let thread = std::thread::spawn(move || {
        actix::System::new().block_on(async move {
            let running = tributary_edge::daemon::start(&config, listener)
                .await
                .unwrap();
            let _ = stopped.await;
            running.shutdown().await;
        });
    });
    let ready = wait_for(Duration::from_secs(20), || {
        get(addr, "/readyz").ok().filter(|r| r.status == 200)
    });
    assert!(ready.is_some(), "gateway not ready");
    TestGateway {
        addr,
        stop: Some(stop),
        thread: Some(thread),
        _dir: dir,
    }
}

fn now_ms() -> u64 {
    wall_clock().as_millis()
}

#[test]
fn readings_in_aggregates_out_at_every_resolution() {
    let gw = gateway(&[]);
    let t = now_ms() / 60_000 * 60_000; // start of the current minute
    let body = json!({"source": "api-test", "seq": 1, "readings": [
        {"sensor": 5, "value": 1.0, "ts": t},
        {"sensor": 5, "value": 2.0, "ts": t + 1},
        {"sensor": 5, "value": 6.0, "ts": t + 1500},
    ]});
    let r = post_json(gw.addr, "/api/v1/readings", &body).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json(), json!({"accepted": 3, "duplicate": false}));

    let minute = get(gw.addr, "/api/v1/aggregates?sensor=5&resolution=1m")
        .unwrap()
        .json();
    let items = minute["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{minute}");
    assert_eq!(items[0]["count"], 3);
    assert_eq!(items[0]["mean"], 3.0);
    assert_eq!(items[0]["min"], 1.0);
    assert_eq!(items[0]["max"], 6.0);
    assert_eq!(items[0]["bucket_start"], t);

    let seconds = get(gw.addr, "/api/v1/aggregates?sensor=5&resolution=1s")
        .unwrap()
        .json();
    let counts: Vec<u64> = seconds["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["count"].as_u64().unwrap())
        .collect();
    assert_eq!(counts, [2, 1]);

    // The same submission again is a duplicate and changes nothing.
    let r = post_json(gw.addr, "/api/v1/readings", &body).unwrap();
    assert_eq!(r.json(), json!({"accepted": 0, "duplicate": true}));
    let day = get(gw.addr, "/api/v1/aggregates?sensor=5&resolution=1d")
        .unwrap()
        .json();
    assert_eq!(day["items"][0]["count"], 3);

    let status = get(gw.addr, "/api/v1/status").unwrap().json();
    assert_eq!(status["node_id"].as_str().unwrap().len(), 16, "{status}");
    assert_eq!(status["sensors"], 1);
    // 1s ×2, 1m, 1h, 1d buckets: five keys, each with its own version.
    assert!(status["version_high"].as_u64().unwrap() >= 5, "{status}");
    assert_eq!(status["uplink"]["state"], "not_configured");
}

#[test]
fn pagination_returns_every_bucket_once() {
    let gw = gateway(&[]);
    let t = now_ms() / 1000 * 1000 - 100_000;
    let readings: Vec<_> = (0..25)
        .map(|i| json!({"sensor": 2, "value": i, "ts": t + i * 1000}))
        .collect();
    let r = post_json(gw.addr, "/api/v1/readings", &json!(readings)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let mut from = 0u64;
    let mut seen = Vec::new();
    loop {
        let page = get(
            gw.addr,
            &format!("/api/v1/aggregates?sensor=2&resolution=1s&limit=10&from={from}"),
        )
        .unwrap()
        .json();
        seen.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["bucket_start"].as_u64().unwrap()),
        );
        match page["next_from"].as_u64() {
            Some(next) => from = next,
            None => break,
        }
    }
    let want: Vec<u64> = (0..25).map(|i| t + i * 1000).collect();
    assert_eq!(seen, want);
}

#[test]
fn bad_input_gets_a_clear_4xx_and_a_counter() {
    let gw = gateway(&[]);
    let now = now_ms();
    let check = |r: http_client::Response, status: u16, code: &str| {
        assert_eq!(r.status, status, "{}", r.text());
        let v = r.json();
        assert_eq!(v["code"], code, "{v}");
        assert!(v["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
        v
    };
    check(
        request(
            gw.addr,
            "POST",
            "/api/v1/readings",
            Some("application/json"),
            b"{not json",
        )
        .unwrap(),
        400,
        "bad_json",
    );
    // JSON has no NaN; CBOR does: the value is refused with its index.
    let mut cbor = Vec::new();
    let mut e = minicbor::Encoder::new(&mut cbor);
    e.map(1).unwrap().u8(2).unwrap().array(2).unwrap();
    e.map(2)
        .unwrap()
        .u8(0)
        .unwrap()
        .u32(1)
        .unwrap()
        .u8(1)
        .unwrap()
        .f64(1.0)
        .unwrap();
    e.map(2)
        .unwrap()
        .u8(0)
        .unwrap()
        .u32(1)
        .unwrap()
        .u8(1)
        .unwrap()
        .f64(f64::NAN)
        .unwrap();
    let v = check(
        request(
            gw.addr,
            "POST",
            "/api/v1/readings",
            Some("application/cbor"),
            &cbor,
        )
        .unwrap(),
        400,
        "invalid_reading",
    );
    assert_eq!(v["details"], json!({"index": 1, "reason": "non_finite"}));
    let future = json!({"sensor": 1, "value": 1.0, "ts": now + 3_600_000});
    let v = check(
        post_json(gw.addr, "/api/v1/readings", &future).unwrap(),
        400,
        "invalid_reading",
    );
    assert_eq!(v["details"]["reason"], "future_timestamp");
    check(
        request(
            gw.addr,
            "POST",
            "/api/v1/readings",
            Some("text/csv"),
            b"1,2",
        )
        .unwrap(),
        415,
        "unsupported_media_type",
    );
    check(
        get(gw.addr, "/api/v1/aggregates?sensor=1&resolution=2m").unwrap(),
        400,
        "bad_request",
    );
    check(
        get(gw.addr, "/api/v1/aggregates?resolution=1m").unwrap(),
        400,
        "bad_request",
    );
    check(
        get(gw.addr, "/api/v1/aggregates?sensor=1&limit=0").unwrap(),
        400,
        "bad_request",
    );
    check(
        get(gw.addr, "/api/v1/aggregates?sensor=1&from=5&to=5").unwrap(),
        400,
        "bad_request",
    );
    check(get(gw.addr, "/api/v1/nothing").unwrap(), 404, "not_found");
    let big = vec![b' '; 5 << 20];
    let r = request(
        gw.addr,
        "POST",
        "/api/v1/readings",
        Some("application/json"),
        &big,
    )
    .unwrap();
    assert_eq!(r.status, 413);
    // Nothing of it was stored.
    let agg = get(gw.addr, "/api/v1/aggregates?sensor=1&resolution=1d")
        .unwrap()
        .json();
    assert_eq!(agg["items"], json!([]));

    let metrics = get(gw.addr, "/metrics").unwrap().text();
    for line in [
        "tributary_readings_rejected_total{source=\"http\",reason=\"bad_json\"} 1",
        "tributary_readings_rejected_total{source=\"http\",reason=\"non_finite\"} 1",
        "tributary_readings_rejected_total{source=\"http\",reason=\"future_timestamp\"} 1",
        "tributary_readings_rejected_total{source=\"http\",reason=\"unsupported_media_type\"} 1",
    ] {
        assert!(metrics.contains(line), "missing `{line}` in\n{metrics}");
    }
    assert!(
        metrics
            .contains("tributary_http_responses_total{route=\"/api/v1/readings\",class=\"4xx\"}")
    );
}

#[test]
fn a_spike_opens_an_alert_with_its_context() {
    let gw = gateway(&[]);
    // Aligned to an hour three hours ago, so every run feeds the detectors
    // the same series at the same offsets within the minute and the hour
    // (the seasonal detector keys on time of day).
    let t0 = (now_ms() / 3_600_000 - 3) * 3_600_000;
    // A quiet sensor: a slow wave with a little deterministic noise, then
    // one reading far outside anything seen.
    let mut readings: Vec<_> = (0..400u64)
        .map(|i| {
            let x = 20.0 + ((i as f64) / 30.0).sin() + ((i * 7919 % 13) as f64 - 6.0) * 0.01;
            json!({"sensor": 9, "value": x, "ts": t0 + i * 1000})
        })
        .collect();
    readings.push(json!({"sensor": 9, "value": 95.0, "ts": t0 + 400_000}));
    let r = post_json(gw.addr, "/api/v1/readings", &json!(readings)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // Newest first: the spike's alert is the first item once it exists.
    let alerts = wait_for(Duration::from_secs(20), || {
        let v = get(gw.addr, "/api/v1/alerts?sensor=9").ok()?.json();
        (v["items"][0]["at"] == t0 + 400_000).then_some(v)
    })
    .expect("an alert for the spike");
    let a = &alerts["items"][0];
    assert_eq!(a["sensor"], 9);
    assert_eq!(a["value"], 95.0);
    assert_eq!(a["at"], t0 + 400_000);
    assert_eq!(a["detector"], "ensemble");
    assert!(a["score"].as_f64().unwrap() >= 0.8, "{a}");
    assert!(a["window"]["count"].as_u64().unwrap() >= 1, "{a}");
    // The spike's alert is still open; the counter saw it open.
    assert_eq!(a["resolved_at"], serde_json::Value::Null, "{a}");
    let open = get(gw.addr, "/api/v1/alerts?sensor=9&open=true")
        .unwrap()
        .json();
    assert_eq!(open["items"][0]["at"], t0 + 400_000);
    let metrics = get(gw.addr, "/metrics").unwrap().text();
    assert!(
        metrics.contains("tributary_alerts_total{event=\"opened\"}"),
        "{metrics}"
    );
}

fn put_json(addr: SocketAddr, path: &str, body: &serde_json::Value) -> http_client::Response {
    request(
        addr,
        "PUT",
        path,
        Some("application/json"),
        body.to_string().as_bytes(),
    )
    .unwrap()
}

/// A quiet series on `sensor` from `t0`, a small bump at `t0 + 400 s`
/// (the ensemble scores it ~0.35: below the default threshold), quiet
/// again, then a spike at `t0 + 470 s` (score 1).
fn bump_then_spike(sensor: u32, t0: u64) -> Vec<serde_json::Value> {
    (0..=470u64)
        .map(|i| {
            let x = match i {
                400 => 21.1,
                470 => 95.0,
                _ => 20.0 + ((i as f64) / 30.0).sin() + ((i * 7919 % 13) as f64 - 6.0) * 0.01,
            };
            json!({"sensor": sensor, "value": x, "ts": t0 + i * 1000})
        })
        .collect()
}

#[test]
fn a_threshold_set_in_the_fleet_configuration_applies_without_a_restart() {
    let gw = gateway(&[]);
    // Hour-aligned, as in the spike test: the same series every run.
    let t0 = (now_ms() / 3_600_000 - 3) * 3_600_000;
    // The running gateway lowers sensor 12's threshold; 11 keeps the default.
    let r = put_json(
        gw.addr,
        "/api/v1/config/sensors/12/threshold",
        &json!({"open": 0.1, "close": 0.05}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let sensors = &r.json()["sensors"];
    assert_eq!(sensors[0]["sensor"], 12);
    assert_eq!(sensors[0]["threshold"], json!({"open": 0.1, "close": 0.05}));

    let mut readings = bump_then_spike(11, t0);
    readings.extend(bump_then_spike(12, t0));
    let r = post_json(gw.addr, "/api/v1/readings", &json!(readings)).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // Once both spikes are seen, every alert of the series is in.
    let opened = |sensor: u32| -> Vec<u64> {
        wait_for(Duration::from_secs(20), || {
            let v = get(gw.addr, &format!("/api/v1/alerts?sensor={sensor}"))
                .ok()?
                .json();
            let mut at: Vec<u64> = v["items"]
                .as_array()?
                .iter()
                .filter_map(|a| a["at"].as_u64())
                .collect();
            at.sort_unstable();
            at.contains(&(t0 + 470_000)).then_some(at)
        })
        .unwrap_or_else(|| panic!("no alert for sensor {sensor}'s spike"))
    };
    assert_eq!(opened(11), vec![t0 + 470_000], "the default threshold");
    assert_eq!(
        opened(12),
        vec![t0 + 400_000, t0 + 470_000],
        "the fleet threshold did not apply to the bump"
    );

    // Removing it goes back to the default.
    let r = request(
        gw.addr,
        "DELETE",
        "/api/v1/config/sensors/12/threshold",
        None,
        b"",
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["sensors"], json!([]));
}

#[test]
fn bad_fleet_configuration_edits_get_a_400_with_the_reason_and_change_nothing() {
    let gw = gateway(&[]);
    for (path, body, reason) in [
        (
            "/api/v1/config/sensors/5/threshold",
            json!({"open": 1.5}),
            "threshold_out_of_range",
        ),
        (
            "/api/v1/config/sensors/5/threshold",
            json!({"open": 0.9, "close": 0.95}),
            "close_out_of_range",
        ),
        (
            "/api/v1/config/sensors/5",
            json!({"name": " ", "unit": "°C"}),
            "empty_field",
        ),
        (
            "/api/v1/config/nodes/0000000000000001",
            json!({"name": "a\u{7}b"}),
            "control_character",
        ),
        (
            "/api/v1/config/sensors/x/threshold",
            json!({"open": 0.9}),
            "invalid_sensor",
        ),
        (
            "/api/v1/config/nodes/zz",
            json!({"name": "n"}),
            "invalid_node",
        ),
    ] {
        let r = put_json(gw.addr, path, &body);
        assert_eq!(r.status, 400, "{path} {body}: {}", r.text());
        assert_eq!(r.json()["details"]["reason"], reason, "{path} {body}");
    }
    // Not JSON at all, and an unknown field.
    for raw in ["{", r#"{"open": 0.9, "shut": 0.1}"#] {
        let r = request(
            gw.addr,
            "PUT",
            "/api/v1/config/sensors/5/threshold",
            Some("application/json"),
            raw.as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 400, "{raw}: {}", r.text());
        assert_eq!(r.json()["code"], "bad_request");
    }
    let doc = get(gw.addr, "/api/v1/config").unwrap().json();
    assert_eq!(doc["nodes"], json!([]));
    assert_eq!(doc["sensors"], json!([]));
    let metrics = get(gw.addr, "/metrics").unwrap().text();
    assert!(
        metrics
            .contains("tributary_config_sync_rejected_total{reason=\"threshold_out_of_range\"} 1"),
        "{metrics}"
    );
}
