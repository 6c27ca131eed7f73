//! Unit tests of [`crate::app`], one rule each.

use std::vec::Vec;

use tributary_core::codec::v1::{DeviceAck, DeviceMessage, TimeSync, Window};
use tributary_core::ids::{Bucket, DeviceId, Resolution, SensorId, Timestamp};

use crate::app::{App, Config, UnknownSensor};

const T0: u64 = 1_700_000_000_000; // a whole minute
const BOOT: u32 = 7;

type TestApp = App<2, 8>;

fn config() -> Config {
    let mut c = Config::new(DeviceId(0xd1), 3);
    c.in_flight = 2;
    // Retries have their own test.
    c.retry_ms = 3_600_000;
    c
}

fn app() -> TestApp {
    App::new(config(), BOOT, [SensorId(1), SensorId(2)])
}

/// An app that said hello and got its clock: wall = T0 + uptime.
fn synced() -> (TestApp, Vec<DeviceMessage>) {
    let mut a = app();
    let mut out = Vec::new();
    a.start(0, &mut |m| out.push(m.clone()));
    a.on_message(&sync(T0), 0, &mut |m| out.push(m.clone()));
    (a, out)
}

fn sync(now: u64) -> DeviceMessage {
    DeviceMessage::TimeSync(TimeSync {
        now: Timestamp::from_millis(now),
    })
}

fn ack(upto: u32) -> DeviceMessage {
    DeviceMessage::Ack(DeviceAck { boot: BOOT, upto })
}

fn windows(out: &[DeviceMessage]) -> Vec<&Window> {
    out.iter()
        .filter_map(|m| match m {
            DeviceMessage::Window(w) => Some(w),
            _ => None,
        })
        .collect()
}

fn hellos(out: &[DeviceMessage]) -> usize {
    out.iter()
        .filter(|m| matches!(m, DeviceMessage::Hello(_)))
        .count()
}

/// Samples sensor 0 every 100 ms over `[from, to)` ms of uptime.
fn sample(a: &mut TestApp, from: u64, to: u64, value: f32) {
    for t in (from..to).step_by(100) {
        a.record(0, t, value).unwrap();
    }
}

#[test]
fn start_says_hello_and_its_time_sync_asks_nothing_more() {
    let (a, out) = synced();
    assert_eq!(hellos(&out), 1);
    assert_eq!(out.len(), 1);
    assert_eq!(a.wall_time(500), Some(Timestamp::from_millis(T0 + 500)));
}

#[test]
fn samples_before_the_clock_is_set_are_counted_and_dropped() {
    let mut a = app();
    a.record(0, 10, 1.0).unwrap();
    assert_eq!(a.stats().unsynced_samples, 1);
    assert_eq!(a.stats().samples, 0);
    assert_eq!(a.record(2, 10, 1.0), Err(UnknownSensor));
}

#[test]
fn a_window_closes_into_one_frame_with_the_summary() {
    let (mut a, _) = synced();
    sample(&mut a, 0, 1_000, 21.5);
    let mut out = Vec::new();
    a.poll(999, &mut |m| out.push(m.clone()));
    assert!(out.is_empty(), "the window is still open");
    a.poll(1_000, &mut |m| out.push(m.clone()));
    let w = windows(&out);
    assert_eq!(w.len(), 1);
    assert_eq!(w[0].seq, 0);
    assert_eq!(w[0].sensor, SensorId(1));
    assert_eq!(w[0].resolution, Resolution::Second);
    assert_eq!(
        w[0].bucket,
        Bucket::containing(Timestamp(T0), Resolution::Second)
    );
    assert_eq!(w[0].summary.count, 10);
    assert_eq!(w[0].summary.mean(), Some(21.5));
    assert!(DeviceMessage::Window(w[0].clone()).validate().is_ok());
}

#[test]
fn a_sample_in_the_next_bucket_closes_the_window() {
    let (mut a, _) = synced();
    sample(&mut a, 0, 1_100, 1.0);
    assert_eq!(a.stats().windows, 1);
    assert_eq!(a.buffered(), 1);
}

#[test]
fn seqs_are_contiguous_and_limited_by_the_in_flight_window() {
    let (mut a, _) = synced();
    let mut out = Vec::new();
    for s in 0..4u64 {
        sample(&mut a, s * 1_000, (s + 1) * 1_000, 1.0);
        a.poll((s + 1) * 1_000, &mut |m| out.push(m.clone()));
    }
    let seqs: Vec<u32> = windows(&out).iter().map(|w| w.seq).collect();
    assert_eq!(seqs, [0, 1], "two in flight at most");
    assert_eq!(a.in_flight(), 2);
    assert_eq!(a.buffered(), 4);
    // The ack frees the window: the next two go out with the next seqs.
    out.clear();
    a.on_message(&ack(1), 4_000, &mut |m| out.push(m.clone()));
    let seqs: Vec<u32> = windows(&out).iter().map(|w| w.seq).collect();
    assert_eq!(seqs, [2, 3]);
    assert_eq!(a.stats().acked_windows, 2);
    assert_eq!(a.stats().acked_samples, 20);
}

#[test]
fn an_ack_drops_everything_up_to_its_seq_and_no_more() {
    let (mut a, _) = synced();
    let mut out = Vec::new();
    for s in 0..2u64 {
        sample(&mut a, s * 1_000, (s + 1) * 1_000, 1.0);
    }
    a.poll(2_000, &mut |m| out.push(m.clone()));
    a.on_message(&ack(0), 2_000, &mut |_| {});
    assert_eq!(a.buffered(), 1);
    assert_eq!(a.in_flight(), 1);
    // Again (the gateway repeats its watermark): nothing changes.
    a.on_message(&ack(0), 2_000, &mut |_| {});
    assert_eq!(a.buffered(), 1);
    // Another boot's ack is ignored.
    a.on_message(
        &DeviceMessage::Ack(DeviceAck {
            boot: BOOT + 1,
            upto: 5,
        }),
        2_000,
        &mut |_| {},
    );
    assert_eq!(a.buffered(), 1);
    assert_eq!(a.stats().ignored_acks, 1);
    a.on_message(&ack(1), 2_000, &mut |_| {});
    assert_eq!(a.buffered(), 0);
    assert_eq!(a.stats().acked_samples, 20);
}

#[test]
fn an_unsolicited_time_sync_gets_a_hello_and_the_in_flight_windows_oldest_first() {
    let (mut a, _) = synced();
    let mut out = Vec::new();
    for s in 0..3u64 {
        sample(&mut a, s * 1_000, (s + 1) * 1_000, s as f32);
    }
    a.poll(3_000, &mut |m| out.push(m.clone()));
    out.clear();
    // The gateway restarted: it asks for a hello with a time sync.
    a.on_message(&sync(T0 + 10_000), 3_000, &mut |m| out.push(m.clone()));
    assert!(matches!(out[0], DeviceMessage::Hello(h) if h.boot == BOOT));
    let seqs: Vec<u32> = windows(&out).iter().map(|w| w.seq).collect();
    assert_eq!(
        seqs,
        [0, 1],
        "in flight, oldest first; pending stay pending"
    );
    assert_eq!(a.stats().frames_resent, 2);
    // The clock follows the gateway.
    assert_eq!(
        a.wall_time(3_000),
        Some(Timestamp::from_millis(T0 + 10_000))
    );
    // Its answer to that hello asks nothing more.
    out.clear();
    a.on_message(&sync(T0 + 10_001), 3_001, &mut |m| out.push(m.clone()));
    assert!(out.is_empty());
}

#[test]
fn stalled_acks_make_the_device_say_hello_and_resend() {
    let mut c = config();
    c.retry_ms = 1_000;
    let mut a: TestApp = App::new(c, BOOT, [SensorId(1), SensorId(2)]);
    a.start(0, &mut |_| {});
    a.on_message(&sync(T0), 0, &mut |_| {});
    sample(&mut a, 0, 1_000, 1.0);
    let mut out = Vec::new();
    a.poll(1_000, &mut |m| out.push(m.clone()));
    assert_eq!(windows(&out).len(), 1);
    out.clear();
    a.poll(1_999, &mut |m| out.push(m.clone()));
    assert!(out.is_empty());
    a.poll(2_000, &mut |m| out.push(m.clone()));
    assert_eq!(hellos(&out), 1);
    assert_eq!(windows(&out).iter().map(|w| w.seq).collect::<Vec<_>>(), [0]);
    // Hello answered, nothing in flight: no retries.
    a.on_message(&sync(T0 + 2_050), 2_050, &mut |_| {});
    a.on_message(&ack(0), 2_100, &mut |_| {});
    out.clear();
    a.poll(10_000, &mut |m| out.push(m.clone()));
    assert!(out.is_empty());
}

#[test]
fn a_full_ring_merges_the_oldest_pending_windows_and_loses_no_sample() {
    let (mut a, _) = synced();
    let mut out = Vec::new();
    // No acks (the gateway is away): 2 in flight, then the ring fills.
    for s in 0..20u64 {
        sample(&mut a, s * 1_000, (s + 1) * 1_000, s as f32);
        a.poll((s + 1) * 1_000, &mut |m| out.push(m.clone()));
    }
    let st = *a.stats();
    assert_eq!(st.windows, 20);
    assert_eq!(a.buffered(), 8);
    assert_eq!(st.merges, 12);
    assert_eq!(st.dropped_windows, 0);
    // The gateway comes back and acknowledges everything it gets.
    out.clear();
    a.on_message(&sync(T0 + 20_000), 20_000, &mut |m| out.push(m.clone()));
    let mut got = Vec::new();
    loop {
        let ws: Vec<Window> = windows(&out).into_iter().cloned().collect();
        let Some(last) = ws.iter().map(|w| w.seq).max() else {
            break;
        };
        got.extend(ws);
        out.clear();
        a.on_message(&ack(last), 20_000, &mut |m| out.push(m.clone()));
    }
    assert_eq!(a.buffered(), 0);
    // Each seq once, contiguous; every sample arrived exactly once.
    let mut seqs: Vec<u32> = got.iter().map(|w| w.seq).collect();
    seqs.dedup();
    assert_eq!(seqs, (0..seqs.len() as u32).collect::<Vec<_>>());
    let mut unique: Vec<&Window> = Vec::new();
    for w in &got {
        if !unique.iter().any(|u| u.seq == w.seq) {
            unique.push(w);
        }
    }
    let samples: u64 = unique.iter().map(|w| w.summary.count).sum();
    assert_eq!(samples, 200);
    assert_eq!(a.stats().acked_samples, 200);
    // The merged windows are coarser and valid; the newest stay fine.
    assert!(unique.iter().any(|w| w.resolution == Resolution::Minute));
    assert_eq!(
        unique.last().map(|w| w.resolution),
        Some(Resolution::Second)
    );
    for w in &unique {
        assert!(
            DeviceMessage::Window((*w).clone()).validate().is_ok(),
            "{w:?}"
        );
    }
}

#[test]
fn merging_prefers_the_finest_resolution() {
    let (mut a, _) = synced();
    let mut out = Vec::new();
    // Seconds 58 and 59 of a minute, then the next minute: merging 58+59
    // needs a minute, merging 59 with 60 an hour, so 58+59 merge first.
    let start = 58_000;
    for s in 0..12u64 {
        let t = start + s * 1_000;
        sample(&mut a, t, t + 1_000, 1.0);
        a.poll(t + 1_000, &mut |m| out.push(m.clone()));
    }
    let hour_merges_before = a.stats().merges;
    assert!(hour_merges_before > 0);
    // Drain and check: the first pending windows (after the 2 in flight)
    // never needed an hour while minute merges were possible.
    out.clear();
    a.on_message(&sync(T0 + 20_000), 20_000, &mut |m| out.push(m.clone()));
    let mut got = Vec::new();
    loop {
        let ws: Vec<Window> = windows(&out).into_iter().cloned().collect();
        let Some(last) = ws.iter().map(|w| w.seq).max() else {
            break;
        };
        got.extend(ws);
        out.clear();
        a.on_message(&ack(last), 20_000, &mut |m| out.push(m.clone()));
    }
    assert!(
        got.iter().all(|w| w.resolution <= Resolution::Minute),
        "{got:?}"
    );
    assert_eq!(a.stats().acked_samples, 120);
}

#[test]
fn windows_of_different_sensors_never_merge() {
    let mut a: App<2, 4> = App::new(config(), BOOT, [SensorId(1), SensorId(2)]);
    a.start(0, &mut |_| {});
    a.on_message(&sync(T0), 0, &mut |_| {});
    for s in 0..10u64 {
        let t = s * 1_000;
        a.record(0, t, 1.0).unwrap();
        a.record(1, t, 2.0).unwrap();
        a.poll(t + 1_000, &mut |_| {});
    }
    assert_eq!(a.stats().dropped_windows, 0);
    assert_eq!(a.buffered(), 4);
    let mut out = Vec::new();
    a.on_message(&sync(T0 + 10_000), 10_000, &mut |m| out.push(m.clone()));
    let mut got = Vec::new();
    loop {
        let ws: Vec<Window> = windows(&out).into_iter().cloned().collect();
        let Some(last) = ws.iter().map(|w| w.seq).max() else {
            break;
        };
        got.extend(ws);
        out.clear();
        a.on_message(&ack(last), 10_000, &mut |m| out.push(m.clone()));
    }
    for sensor in [SensorId(1), SensorId(2)] {
        let mut seen = std::collections::BTreeMap::new();
        for w in got.iter().filter(|w| w.sensor == sensor) {
            seen.insert(w.seq, w.summary);
        }
        let count: u64 = seen.values().map(|s| s.count).sum();
        let expected = if sensor == SensorId(1) { 1.0 } else { 2.0 };
        assert!(
            seen.values()
                .all(|s| s.min == expected && s.max == expected)
        );
        assert_eq!(count, 10);
    }
}

#[test]
fn windows_that_cannot_merge_are_dropped_and_counted() {
    let (mut a, _) = synced();
    // One sample per day: no resolution holds two of them.
    for d in 0..12u64 {
        let t = d * 86_400_000;
        a.record(0, t, 1.0).unwrap();
        a.poll(t + 1_000, &mut |_| {});
    }
    let st = a.stats();
    assert_eq!(st.windows, 12);
    assert_eq!(st.dropped_windows, 4);
    assert_eq!(st.dropped_samples, 4);
    assert_eq!(a.buffered(), 8);
}

#[test]
fn a_spike_opens_an_alert() {
    let (mut a, _) = synced();
    for i in 0..200u64 {
        let x = 20.0 + if i % 2 == 0 { 0.1 } else { -0.1 };
        a.record(0, i * 100, x).unwrap();
    }
    assert_eq!(a.stats().alerts, 0);
    a.record(0, 20_000, 35.0).unwrap();
    assert_eq!(a.stats().alerts, 1);
}

#[test]
fn non_finite_samples_are_refused() {
    let (mut a, _) = synced();
    a.record(0, 0, f32::NAN).unwrap();
    a.record(0, 0, f32::INFINITY).unwrap();
    assert_eq!(a.stats().rejected_samples, 2);
    assert_eq!(a.stats().samples, 0);
}

#[test]
fn an_unanswered_hello_is_repeated_until_a_time_sync_arrives() {
    let mut c = config();
    c.retry_ms = 1_000;
    let mut a: TestApp = App::new(c, BOOT, [SensorId(1), SensorId(2)]);
    let mut out = Vec::new();
    a.start(0, &mut |m| out.push(m.clone()));
    a.poll(999, &mut |m| out.push(m.clone()));
    assert_eq!(hellos(&out), 1);
    a.poll(1_000, &mut |m| out.push(m.clone()));
    a.poll(2_000, &mut |m| out.push(m.clone()));
    assert_eq!(hellos(&out), 3);
    a.on_message(&sync(T0), 2_100, &mut |m| out.push(m.clone()));
    a.poll(10_000, &mut |m| out.push(m.clone()));
    assert_eq!(hellos(&out), 3, "answered: no more hellos");
}

#[test]
fn memory_use_is_as_documented() {
    // docs/firmware.md: 80 bytes per buffered window, about 150 per sensor.
    assert_eq!(crate::app::WINDOW_BYTES, 80);
    let per_sensor = (size_of::<App<3, 0>>() - size_of::<App<1, 0>>()) / 2;
    assert!(per_sensor <= 160, "{per_sensor}");
    assert_eq!(
        size_of::<App<1, 64>>() - size_of::<App<1, 0>>(),
        64 * crate::app::WINDOW_BYTES
    );
}
