//! The serial source against a PTY standing in for the firmware's UART:
//! hello → time sync, readings and windows → submissions and cumulative
//! acks, garbage and corrupted frames counted without losing the next frame,
//! retransmissions submitted and acknowledged again.

mod common;

use std::fs::File;
use std::io::{Read, Write};
use std::sync::mpsc;

use common::{DEADLINE, counter, eventually};
use nix::sys::termios::{LocalFlags, tcgetattr};
use tokio::sync::watch;
use tributary_core::codec::frame::{self, FrameDecoder};
use tributary_core::codec::v1::{
    self, DeviceAck, DeviceHello, DeviceMessage, Readings, Sample, Samples, Window,
};
use tributary_core::ids::{Bucket, DeviceId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;
use tributary_edge::metrics::Metrics;
use tributary_edge::reading::{Item, Origin, Sample as Reading};
use tributary_edge::sources::serial::{self, SerialOptions};

fn wire(msg: &DeviceMessage) -> Vec<u8> {
    frame::encode_to_vec(&v1::encode_device_vec(msg)).unwrap()
}

fn readings(seq: u32, base: u64) -> DeviceMessage {
    let mut samples = Samples::default();
    for (i, v) in [21.5f32, 21.75, 22.0].into_iter().enumerate() {
        samples
            .0
            .push(Sample {
                offset_ms: 1000 * i as u32,
                value: v,
            })
            .unwrap();
    }
    DeviceMessage::Readings(Readings {
        seq,
        sensor: SensorId(7),
        base: Timestamp(base),
        samples,
    })
}

/// Decodes every frame the source writes to the master side.
fn spawn_device_reader(mut master: File) -> mpsc::Receiver<DeviceMessage> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut decoder = FrameDecoder::<1024>::new();
        let mut buf = [0u8; 256];
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                return;
            }
            let mut input = &buf[..n];
            while let Some(frame) = decoder.feed(&mut input) {
                let Ok(Ok(msg)) = frame.map(v1::decode_device) else {
                    continue;
                };
                if tx.send(msg).is_err() {
                    return;
                }
            }
        }
    });
    rx
}

/// Waits for the next frame from the gateway.
async fn next_from_gateway(rx: &mpsc::Receiver<DeviceMessage>) -> DeviceMessage {
    let mut got = None;
    assert!(
        eventually(DEADLINE, || {
            got = rx.try_recv().ok();
            got.is_some()
        })
        .await,
        "no frame from the gateway"
    );
    got.unwrap()
}

#[actix::test]
async fn serial_link_end_to_end() {
    let pty = nix::pty::openpty(None, None).unwrap();
    let path = nix::unistd::ttyname(&pty.slave).unwrap();
    let mut master = File::from(pty.master);
    let from_gateway = spawn_device_reader(master.try_clone().unwrap());

    let (ingest, recorded) = common::start();
    let metrics = Metrics::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let opts = SerialOptions {
        path,
        ..SerialOptions::default()
    };
    let source = actix::spawn(serial::run(opts, ingest, metrics.clone(), stop_rx));

    // The line is usable once the source put it in raw mode (before that,
    // the PTY would echo and line-buffer what we write).
    assert!(
        eventually(DEADLINE, || {
            let t = tcgetattr(&pty.slave).unwrap();
            !t.local_flags
                .intersects(LocalFlags::ICANON | LocalFlags::ECHO)
        })
        .await,
        "the source never set raw mode"
    );

    let now = tributary_edge::sources::wall_now().as_millis();
    let base = now - 60_000;

    // A data frame before any hello: dropped, counted, and answered with a
    // time sync that asks for a hello.
    master.write_all(&wire(&readings(0, base))).unwrap();
    assert!(matches!(
        next_from_gateway(&from_gateway).await,
        DeviceMessage::TimeSync(_)
    ));
    assert_eq!(
        counter(
            &metrics,
            "tributary_frames_rejected_total{reason=\"no_hello\"}"
        ),
        1
    );
    assert!(recorded.submissions().is_empty());

    // Hello → time sync near the gateway's clock.
    let device = DeviceId(0x0011_2233_4455_6677);
    let hello = DeviceMessage::Hello(DeviceHello {
        device,
        boot: 17,
        firmware: 0x0102,
    });
    master.write_all(&wire(&hello)).unwrap();
    match next_from_gateway(&from_gateway).await {
        DeviceMessage::TimeSync(t) => assert!(t.now.as_millis() >= now),
        other => panic!("expected a time sync, got {other:?}"),
    }

    // Readings seq 0 → one submission with the device's origin, then an ack.
    master.write_all(&wire(&readings(0, base))).unwrap();
    assert_eq!(
        next_from_gateway(&from_gateway).await,
        DeviceMessage::Ack(DeviceAck { boot: 17, upto: 0 })
    );
    let subs = recorded.submissions();
    assert_eq!(subs.len(), 1);
    let origin = |seq| {
        Some(Origin {
            source: "dev-0011223344556677-17".into(),
            seq,
        })
    };
    assert_eq!(subs[0].origin, origin(0));
    let expected: Vec<Item> = [21.5, 21.75, 22.0]
        .into_iter()
        .enumerate()
        .map(|(i, value)| {
            Item::Reading(Reading {
                sensor: SensorId(7),
                ts: Timestamp(base + 1000 * i as u64),
                value,
            })
        })
        .collect();
    assert_eq!(subs[0].items, expected);

    // Garbage, then a corrupted copy of frame 1, then frame 1 intact.
    let good = wire(&readings(1, base + 3000));
    let mut corrupted = good.clone();
    // A data byte inside the first COBS run (the payload has no zero before
    // its 8th byte), so the frame structure holds and the CRC catches it.
    corrupted[3] ^= 0x80;
    master.write_all(&[0x01, 0x02, 0x03, 0x00]).unwrap();
    master.write_all(&[0x55; 40]).unwrap();
    master.write_all(&[0x00]).unwrap();
    master.write_all(&corrupted).unwrap();
    master.write_all(&good).unwrap();
    assert_eq!(
        next_from_gateway(&from_gateway).await,
        DeviceMessage::Ack(DeviceAck { boot: 17, upto: 1 })
    );
    let rejected = |reason: &str| {
        counter(
            &metrics,
            &format!("tributary_frames_rejected_total{{reason=\"{reason}\"}}"),
        )
    };
    assert_eq!(rejected("frame_too_short"), 1, "{}", metrics.encode());
    assert_eq!(rejected("bad_cobs"), 1, "{}", metrics.encode());
    assert_eq!(rejected("crc_mismatch"), 1, "{}", metrics.encode());
    let subs = recorded.submissions();
    assert_eq!(subs.len(), 2);
    assert_eq!(subs[1].origin, origin(1));

    // A window frame → one Item::Window.
    let ts = Timestamp(base + 10_000);
    let summary = Summary::of(ts, 21.0).unwrap();
    let window = DeviceMessage::Window(Window {
        seq: 2,
        sensor: SensorId(7),
        resolution: Resolution::Minute,
        bucket: Bucket::containing(ts, Resolution::Minute),
        summary,
    });
    master.write_all(&wire(&window)).unwrap();
    assert_eq!(
        next_from_gateway(&from_gateway).await,
        DeviceMessage::Ack(DeviceAck { boot: 17, upto: 2 })
    );
    let subs = recorded.submissions();
    assert_eq!(subs[2].origin, origin(2));
    assert_eq!(
        subs[2].items,
        [Item::Window {
            sensor: SensorId(7),
            summary
        }]
    );

    // A retransmission of frame 1: submitted again, acknowledged again with
    // the cumulative watermark.
    master.write_all(&good).unwrap();
    assert_eq!(
        next_from_gateway(&from_gateway).await,
        DeviceMessage::Ack(DeviceAck { boot: 17, upto: 2 })
    );
    let subs = recorded.submissions();
    assert_eq!(subs.len(), 4);
    assert_eq!(subs[3], subs[1]);

    // Frame 3 is lost on the wire (corrupted), frame 4 arrives: 4 is stored,
    // but the cumulative ack cannot pass the gap. Ingest is busy for frame 4
    // at first: no ack before it is durable, and the refusal is counted.
    recorded.script([Err(tributary_edge::ingest::IngestError::Busy)]);
    let three = wire(&readings(3, base + 20_000));
    let mut three_corrupted = three.clone();
    three_corrupted[3] ^= 0x80;
    master.write_all(&three_corrupted).unwrap();
    master
        .write_all(&wire(&readings(4, base + 30_000)))
        .unwrap();
    assert_eq!(
        next_from_gateway(&from_gateway).await,
        DeviceMessage::Ack(DeviceAck { boot: 17, upto: 2 })
    );
    let subs = recorded.submissions();
    assert_eq!(subs.len(), 6, "frame 4 refused once, then stored");
    assert_eq!(subs[4], subs[5]);
    assert_eq!(subs[5].origin, origin(4));
    // The device resends frame 3: the gap closes, the ack jumps to 4.
    master.write_all(&three).unwrap();
    assert_eq!(
        next_from_gateway(&from_gateway).await,
        DeviceMessage::Ack(DeviceAck { boot: 17, upto: 4 })
    );
    assert!(from_gateway.try_recv().is_err(), "one ack per frame");

    // Shutdown: the source returns promptly.
    stop_tx.send(true).unwrap();
    let result = tokio::time::timeout(DEADLINE, source).await;
    assert!(
        matches!(result, Ok(Ok(Ok(())))),
        "source did not stop: {result:?}"
    );
    drop(pty.slave);
}

#[actix::test]
async fn a_missing_port_is_retried_until_shutdown() {
    let (ingest, recorded) = common::start();
    let (stop_tx, stop_rx) = watch::channel(false);
    let opts = SerialOptions {
        path: "/nonexistent/ttyTRIB0".into(),
        reopen_min: std::time::Duration::from_millis(10),
        reopen_max: std::time::Duration::from_millis(50),
        ..SerialOptions::default()
    };
    let source = actix::spawn(serial::run(opts, ingest, Metrics::new(), stop_rx));
    // Let it go round the reopen loop a few times.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert!(
        !source.is_finished(),
        "the source gave up on a missing port"
    );
    stop_tx.send(true).unwrap();
    let result = tokio::time::timeout(DEADLINE, source).await;
    assert!(matches!(result, Ok(Ok(Ok(())))), "{result:?}");
    assert!(recorded.submissions().is_empty());
}

#[actix::test]
async fn an_unsupported_baud_rate_is_a_config_error() {
    let (ingest, _) = common::start();
    let (_stop, stop_rx) = watch::channel(false);
    let opts = SerialOptions {
        baud: 12_345,
        ..SerialOptions::default()
    };
    let err = serial::run(opts, ingest, Metrics::new(), stop_rx)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("baud 12345"), "{err}");
}
