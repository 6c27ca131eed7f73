//! The README's first command runs `tributary-demo` (through
//! `scripts/demo.sh`): this test runs the same binary, waits until data from
//! all three gateways reaches the hub's API, stops it with Ctrl-C (SIGINT)
//! and checks that it and every process it started exit cleanly, leaving
//! their data behind. The QEMU device's readings (the real firmware, on
//! gateway 1's serial source) must reach the hub as well when QEMU and the
//! firmware build are there (always under CI). On the way, headless
//! Chromium opens the dashboard URL
//! it printed (three gateways online, charts drawn) and writes a
//! screenshot to `$CARGO_TARGET_TMPDIR/demo-dashboard.png`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use tributary_testkit::browser::{chromium, chromium_or_skip, elements};
use tributary_testkit::http::get;
use tributary_testkit::{ChildGuard, free_port, poll_for};
use tributary_tests::system;

#[test]
fn the_demo_brings_three_gateways_to_the_hub_and_stops_cleanly_on_ctrl_c() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("demo");
    let hub_http: SocketAddr = ([127, 0, 0, 1], free_port()).into();
    let mut child = Command::new(system::bin("tributary-demo"))
        .arg("--data-dir")
        .arg(&data)
        .args(["--hub-http", &hub_http.to_string()])
        .args(["--rate-hz", "5", "--sensors", "3"])
        .args([
            "--outage-every",
            "3s",
            "--outage-for",
            "2s",
            "--report-every",
            "1s",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn tributary-demo");
    let stdout = child.stdout.take().unwrap();
    let mut demo = ChildGuard::new("demo", child);

    // The URL it prints is the one a user opens.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut printed = Vec::new();
    let url = poll_for(Duration::from_secs(60), || {
        while let Ok(l) = rx.try_recv() {
            printed.push(l);
        }
        printed.iter().find_map(|l| {
            l.trim()
                .strip_prefix("dashboard")
                .map(|u| u.trim().to_owned())
        })
    })
    .unwrap_or_else(|| panic!("no dashboard URL printed: {printed:?}"));
    assert_eq!(url, format!("http://{hub_http}/"));

    // All three gateways' data reaches the hub.
    let synced = poll_for(Duration::from_secs(60), || {
        let nodes = system::json(hub_http, "/api/v1/nodes");
        let items = nodes["items"].as_array()?;
        (items.len() == 3 && items.iter().all(|n| n["watermark"].as_u64() > Some(0))).then_some(())
    });
    assert!(synced.is_some(), "the hub never heard from 3 gateways");
    for sensor in [1000, 2000] {
        let a = system::json(
            hub_http,
            &format!("/api/v1/aggregates?sensor={sensor}&resolution=1m"),
        );
        assert!(
            a["items"].as_array().is_some_and(|i| !i.is_empty()),
            "no aggregates for sensor {sensor}: {a}"
        );
    }

    // The QEMU device (the real firmware) feeds gateway 1 over its UART:
    // its sensors reach the hub too. Under CI, QEMU and the firmware build
    // are there (scripts/test.sh builds it), so the device must run.
    while let Ok(l) = rx.try_recv() {
        printed.push(l);
    }
    let device = printed.iter().any(|l| l.trim().starts_with("device"));
    assert!(
        device || std::env::var_os("CI").is_none(),
        "no QEMU device under CI: {printed:?}"
    );
    // The demo names its gateways in the fleet configuration; the
    // document reaches every gateway over MQTT.
    let named = poll_for(Duration::from_secs(60), || {
        let hub_doc = system::json(hub_http, "/api/v1/config");
        let names: Vec<&str> = hub_doc["nodes"]
            .as_array()?
            .iter()
            .filter_map(|n| n["name"].as_str())
            .collect();
        (names.len() == 3).then_some(hub_doc.clone())
    });
    let hub_doc = named.unwrap_or_else(|| panic!("the demo did not name its gateways"));
    // "  gateway 1   http://127.0.0.1:PORT/api/v1/status"
    let gateway1: SocketAddr = printed
        .iter()
        .find_map(|l| {
            l.trim()
                .strip_prefix("gateway 1")?
                .trim()
                .strip_prefix("http://")
        })
        .and_then(|u| u.strip_suffix("/api/v1/status")?.parse().ok())
        .unwrap_or_else(|| panic!("no gateway 1 URL printed: {printed:?}"));
    let synced = poll_for(Duration::from_secs(60), || {
        let doc = system::json(gateway1, "/api/v1/config");
        (doc["nodes"] == hub_doc["nodes"]).then_some(())
    });
    assert!(
        synced.is_some(),
        "gateway 1 never got the hub's fleet configuration"
    );
    if device {
        let from_device = poll_for(Duration::from_secs(60), || {
            let a = system::json(hub_http, "/api/v1/aggregates?sensor=386001&resolution=1m");
            a["items"].as_array().filter(|i| !i.is_empty()).map(|_| ())
        });
        assert!(
            from_device.is_some(),
            "the device's readings never reached the hub"
        );
    } else {
        eprintln!("the demo ran without its QEMU device (no qemu-system-arm or firmware build)");
    }

    // The dashboard a user opens, in a real browser: three gateways online,
    // charts drawn; and a screenshot to look at.
    if let Some(chromium_path) = chromium_or_skip() {
        let work = tempfile::tempdir().unwrap();
        let dom = chromium(
            &chromium_path,
            work.path(),
            "dump-dom",
            &url,
            &["--dump-dom".into()],
        );
        let body = elements(&dom, "body", "");
        let body = body.first().unwrap_or_else(|| panic!("no <body>:\n{dom}"));
        assert_eq!(
            body.attr("data-error"),
            None,
            "the dashboard shows an error"
        );
        assert_eq!(body.attr("data-ready"), Some("1"), "never rendered:\n{dom}");
        let online = elements(&dom, "div", "node")
            .iter()
            .filter(|n| n.attr("data-online") == Some("true"))
            .count();
        assert_eq!(online, 3, "gateways online on the dashboard");
        let drawn = elements(&dom, "svg", "chart")
            .iter()
            .filter(|c| c.attr("data-points").is_some_and(|p| p != "0"))
            .count();
        assert!(drawn > 0, "no chart has data");
        let png = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-dashboard.png");
        chromium(
            &chromium_path,
            work.path(),
            "screenshot",
            &url,
            &[
                format!("--screenshot={}", png.display()),
                "--window-size=1400,1000".into(),
            ],
        );
        assert!(std::fs::read(&png).unwrap().starts_with(b"\x89PNG"));
        println!("demo dashboard screenshot: {}", png.display());
    }

    // Ctrl-C: everything drains and exits; the data stays.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(demo.pid() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = demo
        .wait_exit(Duration::from_secs(60))
        .expect("the demo did not stop within 60 s of Ctrl-C");
    assert!(status.success(), "demo exited with {status}");
    assert!(
        get(hub_http, "/healthz").is_err(),
        "the hub is still running after the demo stopped"
    );
    for part in ["hub", "edge1", "edge2", "edge3", "logs"] {
        assert!(
            data.join(part).exists(),
            "{part} missing from the data folder"
        );
    }
}
