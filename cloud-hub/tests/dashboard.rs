//! The dashboard served by the hub: the page and its assets over plain
//! HTTP, then the page in a real browser (headless Chromium, Debian's
//! `chromium` package) against a hub seeded with three nodes, three
//! sensors of 1-minute data around now and five alerts. The dumped DOM
//! must show every node with its online state, one chart per sensor with
//! exactly the buckets the API returns, and every alert; a screenshot is
//! written to `$CARGO_TARGET_TMPDIR/dashboard.png`. A hub whose store fails
//! must make the page show the error in its banner instead of rendering.

mod common;
mod http_client;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_client::{get, request, wait_for};
use tributary_core::codec::v1::{Alert, DetectorKind};
use tributary_core::crdt::aggregate::AggregateState;
use tributary_core::hlc::Hlc;
use tributary_core::ids::{NodeId, SensorId, Timestamp};
use tributary_core::summary::Summary;
use tributary_hub::store::{MergeStore, Progress, SqliteStore};
use tributary_testkit::browser::{chromium, chromium_or_skip, elements};

/// Online, reports sensors 1 and 2.
const N1: NodeId = NodeId(0xa1);
/// Online, reports sensors 1 and 3.
const N2: NodeId = NodeId(0xb2);
/// Last heard from 20 minutes ago (offline), reports sensor 3: the newest
/// 20 minutes of sensor 3 are not final.
const N3: NodeId = NodeId(0xc3);
const SENSORS: [u32; 3] = [1, 2, 3];
const OFFLINE_FOR_MS: u64 = 20 * 60_000;

struct TestHub {
    served: common::ServedHub,
    /// `(node, hlc, acknowledged)` of every seeded alert.
    alerts: Vec<(NodeId, Hlc, bool)>,
}

impl std::ops::Deref for TestHub {
    type Target = common::ServedHub;
    fn deref(&self) -> &common::ServedHub {
        &self.served
    }
}

/// A reading every 20 s for the 5½ hours before `now` (N3's stop when it
/// went offline; all inside the page's default 6-hour window at 1m): a
/// wave per sensor plus deterministic noise, so the charts have a band.
fn seed(store: &mut SqliteStore, now: u64) -> Vec<(NodeId, Hlc, bool)> {
    let mut core = AggregateState::new();
    let plan: [(NodeId, &[u32], u64); 3] = [
        (N1, &[1, 2], now),
        (N2, &[1, 3], now),
        (N3, &[3], now - OFFLINE_FOR_MS),
    ];
    for (n, (node, sensors, seen)) in plan.into_iter().enumerate() {
        let mut t = now - 11 * 1_800_000;
        while t < seen - 5_000 {
            for &s in sensors {
                let phase = t as f64 / 1_800_000.0 + f64::from(s);
                // A hash of (time, node, sensor) in [-1, 1): repeatable
                // noise without an RNG.
                let h = (t / 20_000 + n as u64 * 7_919 + u64::from(s) * 104_729)
                    .wrapping_mul(0x9E37_79B9_7F4A_7C15);
                let noise = (h >> 40) as f64 / f64::from(1u32 << 23) - 1.0;
                let x = match s {
                    1 => 21.0 + 2.0 * phase.sin() + noise,
                    2 => 45.0 + 6.0 * phase.cos() + 2.0 * noise,
                    _ => 1013.0 + 3.0 * phase.sin() + noise + n as f64,
                };
                core.record_all_resolutions(node, SensorId(s), Timestamp(t), x)
                    .unwrap();
            }
            t += 20_000;
        }
        let entries = core.node_entries_since(node, 0);
        let progress = Progress {
            seen_ms: seen,
            watermark: core.version_of(node),
        };
        store.apply_with(node, &entries, Some(progress)).unwrap();
    }
    let plan = [
        (N1, 1, DetectorKind::ZScore, 27.4, false),
        (N2, 3, DetectorKind::Cusum, 1019.2, true),
        (N1, 2, DetectorKind::Flatline, 44.0, false),
        (N2, 1, DetectorKind::Range, -3.5, true),
        (N1, 1, DetectorKind::Ensemble, 26.1, false),
    ];
    let mut out = Vec::new();
    for (k, (node, sensor, detector, value, acked)) in plan.into_iter().enumerate() {
        let k = k as u64;
        // Logical counter ≠ 0: the packed HLC is far above 2^53, which a
        // page that parsed it as a JS number would round.
        let hlc = Hlc::new(now - k * 420_000, 3).unwrap();
        let alert = Alert {
            node,
            sensor: SensorId(sensor),
            hlc,
            at: Timestamp(hlc.physical_ms() - 500),
            value,
            score: 0.9 - k as f64 * 0.1,
            detector,
            window: Summary::of(Timestamp(hlc.physical_ms() - 60_000), value - 5.0).unwrap(),
        };
        store.insert_alerts(node, &[alert], now).unwrap();
        if acked {
            assert!(store.ack_alert(node, hlc, now).unwrap());
        }
        out.push((node, hlc, acked));
    }
    out
}

fn hub() -> TestHub {
    // Connected, as a hub serving a fleet would be.
    let (served, alerts, _) = common::serve(true, seed);
    TestHub { served, alerts }
}

#[test]
fn the_page_and_its_assets_are_served_with_their_types() {
    let hub = hub();
    let page = get(hub.addr, "/").unwrap();
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    // The browser itself refuses anything from another host.
    let csp = page.header("content-security-policy").unwrap();
    assert!(csp.starts_with("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self'"), "{csp}");
    let html = page.text();
    assert!(html.contains(r#"<script src="/assets/app.js""#), "{html}");
    assert!(html.contains(r#"href="/assets/style.css""#), "{html}");

    for (name, content_type, body) in [
        (
            "app.js",
            "text/javascript; charset=utf-8",
            include_str!("../assets/dashboard/app.js"),
        ),
        (
            "style.css",
            "text/css; charset=utf-8",
            include_str!("../assets/dashboard/style.css"),
        ),
    ] {
        let r = get(hub.addr, &format!("/assets/{name}")).unwrap();
        assert_eq!(r.status, 200, "{name}");
        assert_eq!(r.header("content-type"), Some(content_type), "{name}");
        assert_eq!(r.header("cache-control"), Some("no-cache"), "{name}");
        assert_eq!(r.text(), body, "{name}: not the embedded file");
    }

    for path in [
        "/assets/nope.js",
        "/assets/index.html",
        "/assets/..%2Fapi.rs",
    ] {
        let r = get(hub.addr, path).unwrap();
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(r.json()["code"], "not_found", "{path}");
    }
    // The page is read-only: a POST finds no route (the API's 404).
    let r = request(hub.addr, "POST", "/", None, b"").unwrap();
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["code"], "not_found");

    // Counted under their own bounded route labels, not `other`.
    let metrics = get(hub.addr, "/metrics").unwrap().text();
    for route in ["/", "/assets/{name}"] {
        let line = format!(r#"tributary_hub_http_responses_total{{route="{route}",class="2xx"}}"#);
        assert!(metrics.contains(&line), "{line} missing:\n{metrics}");
    }
}

#[test]
fn chromium_renders_the_fleet_the_charts_and_the_alerts() {
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    let hub = hub();
    // The fleet configuration names a node and sets a sensor's threshold.
    for (path, body) in [
        (
            format!("/api/v1/config/nodes/{N1}"),
            r#"{"name": "pump house"}"#,
        ),
        (
            "/api/v1/config/sensors/7/threshold".to_owned(),
            r#"{"open": 0.93}"#,
        ),
    ] {
        let r = request(
            hub.addr,
            "PUT",
            &path,
            Some("application/json"),
            body.as_bytes(),
        )
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    let work = tempfile::tempdir().unwrap();
    let url = format!("http://{}/", hub.addr);

    let dom = chromium(&bin, work.path(), "dump-dom", &url, &["--dump-dom".into()]);
    let body = elements(&dom, "body", "");
    let body = body.first().unwrap_or_else(|| panic!("no <body>:\n{dom}"));
    assert_eq!(body.attr("data-error"), None, "the page shows an error");
    assert_eq!(body.attr("data-ready"), Some("1"), "never rendered:\n{dom}");

    // Configuration: the threshold's row, and the node's name on its card.
    let rows = elements(&dom, "tr", "sensor-config");
    assert_eq!(rows.len(), 1, "{dom}");
    assert_eq!(rows[0].attr("data-sensor"), Some("7"));
    assert_eq!(rows[0].attr("data-open"), Some("0.93"));
    assert!(
        dom.contains(r#"<strong class="node-name">pump house</strong>"#),
        "{dom}"
    );

    // Nodes: each with its online state.
    let nodes: HashMap<String, String> = elements(&dom, "div", "node")
        .iter()
        .map(|e| {
            let id = e.attr("data-node").unwrap().to_string();
            (id, e.attr("data-online").unwrap().to_string())
        })
        .collect();
    let want: HashMap<String, String> = [(N1, "true"), (N2, "true"), (N3, "false")]
        .into_iter()
        .map(|(n, o)| (n.to_string(), o.to_string()))
        .collect();
    assert_eq!(nodes, want);
    assert!(dom.contains(r#"data-stat="alerts_open">3<"#), "open alerts");
    assert!(dom.contains(r#"data-stat="nodes_online">2 / 3<"#), "online");

    // Charts: one per sensor, with exactly the buckets (and not-final
    // buckets) the API holds; the seeded data lies inside the default
    // 6-hour window at 1m.
    let charts = elements(&dom, "svg", "chart");
    let sensors: Vec<&str> = charts
        .iter()
        .filter_map(|c| c.attr("data-sensor"))
        .collect();
    assert_eq!(sensors, ["1", "2", "3"]);
    for (chart, sensor) in charts.iter().zip(SENSORS) {
        let api = common::ok_json(
            hub.addr,
            &format!("/api/v1/aggregates?sensor={sensor}&resolution=1m&limit=10000"),
        );
        let items = api["items"].as_array().unwrap();
        let open = items.iter().filter(|b| b["complete"] == false).count();
        assert!(items.len() > 150, "sensor {sensor}: seeding");
        assert_eq!(
            chart.attr("data-points"),
            Some(items.len().to_string().as_str())
        );
        assert_eq!(
            chart.attr("data-incomplete"),
            Some(open.to_string().as_str())
        );
        assert!(
            chart.inner.contains(r#"class="band""#),
            "sensor {sensor}: no band"
        );
        assert!(
            chart.inner.contains(r#"class="mean""#),
            "sensor {sensor}: no mean"
        );
        if open > 0 {
            assert!(chart.inner.contains(r#"class="incomplete""#), "{sensor}");
        }
    }
    // N3 went quiet 20 minutes ago: sensor 3's newest buckets are not final.
    let open3: usize = charts[2].attr("data-incomplete").unwrap().parse().unwrap();
    assert!(open3 >= 19, "sensor 3: {open3} buckets not final");

    // Alerts: all five, newest first (the API's order), each with its
    // exact HLC (above 2^53) and state; only the open ones can be
    // acknowledged.
    let rows = elements(&dom, "tr", "alert");
    let api = common::ok_json(hub.addr, "/api/v1/alerts");
    let want: Vec<(String, String)> = api["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["node"].as_str().unwrap().to_string(),
                a["hlc"].to_string(),
            )
        })
        .collect();
    let got: Vec<(String, String)> = rows
        .iter()
        .map(|r| {
            let node = r.attr("data-node").unwrap().to_string();
            (node, r.attr("data-hlc").unwrap().to_string())
        })
        .collect();
    assert_eq!(got.len(), hub.alerts.len());
    assert_eq!(got, want);
    for (node, hlc, acked) in &hub.alerts {
        let row = rows
            .iter()
            .find(|r| r.attr("data-hlc") == Some(hlc.as_u64().to_string().as_str()))
            .unwrap_or_else(|| panic!("alert {node}/{} not rendered", hlc.as_u64()));
        assert!(hlc.as_u64() > 1 << 53);
        assert_eq!(row.attr("data-node"), Some(node.to_string().as_str()));
        assert_eq!(row.attr("data-acked"), Some(acked.to_string().as_str()));
        assert_eq!(row.inner.contains("<button"), !acked, "{}", row.inner);
    }

    // The screenshot, for a person to look at.
    let png: PathBuf = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    let _ = std::fs::remove_file(&png);
    chromium(
        &bin,
        work.path(),
        "screenshot",
        &url,
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1400,1000".into(),
        ],
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    // IHDR: width and height, big-endian, right after the signature and
    // the chunk's length and type.
    let dim = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    assert_eq!((dim(16), dim(20)), (1400, 1000));
    // A blank or error page compresses to a few kB; three charts, the node
    // cards and the table do not.
    assert!(bytes.len() > 40_000, "{} bytes only", bytes.len());
    println!("dashboard screenshot: {}", png.display());
}

#[test]
fn chromium_shows_api_failures_in_the_banner() {
    let Some(bin) = chromium_or_skip() else {
        return;
    };
    let hub = hub();
    // The node table disappears under the hub (another connection renames
    // it): every query that needs the nodes now fails with a store error.
    rusqlite::Connection::open(&hub.db)
        .unwrap()
        .execute_batch("ALTER TABLE node RENAME TO node_gone")
        .unwrap();
    let failing = wait_for(Duration::from_secs(20), || {
        get(hub.addr, "/api/v1/nodes")
            .ok()
            .filter(|r| r.status == 500)
    });
    assert!(failing.is_some(), "the store still answers");

    let work = tempfile::tempdir().unwrap();
    let url = format!("http://{}/", hub.addr);
    let dom = chromium(&bin, work.path(), "dump-dom", &url, &["--dump-dom".into()]);
    let body = elements(&dom, "body", "");
    let body = body.first().unwrap_or_else(|| panic!("no <body>:\n{dom}"));
    assert_eq!(body.attr("data-ready"), None, "rendered as if all was well");
    let error = body.attr("data-error").unwrap_or_else(|| panic!("{dom}"));
    assert!(
        error.contains("/api/v1/nodes: HTTP 500 store_error"),
        "{error}"
    );
    let banner = elements(&dom, "div", "banner");
    let banner = banner.first().unwrap();
    assert_eq!(banner.attr("hidden"), None, "the banner is hidden");
    assert!(banner.inner.contains("HTTP 500"), "{}", banner.inner);
}
