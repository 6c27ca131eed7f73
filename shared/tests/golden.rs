//! Golden frames of wire version 1 (`tests/fixtures/wire/v1/*.hex`).
//!
//! Each fixture holds the exact bytes of one message; each test builds the
//! same message in code and checks both directions: the fixture decodes to
//! it, and encoding it gives the fixture byte for byte. A failure here means
//! the wire format changed.
//!
//! Golden files of a released wire version must keep decoding forever:
//! devices and gateways in the field still send them. Never edit or delete
//! one to make a test pass. If the *encoder* must change, the old bytes
//! still have to decode (keep the fixture, relax only the encode check, with
//! a reason); a new encoding is a new wire version, a new module and a new
//! `fixtures/wire/v2/` directory. See `tests/fixtures/wire/README.md`.
#![cfg(feature = "alloc")]

use std::fs;
use std::path::PathBuf;

use minicbor::bytes::ByteVec;
use tributary_core::codec::frame::{self, FrameDecoder};
use tributary_core::codec::v1::{
    self, Ack, Alert, ConfigSync, Delta, DetectorKind, DeviceAck, DeviceHello, DeviceMessage,
    DigestEntry, Hello, MAX_DEVICE_MESSAGE, Message, Readings, Resume, Sample, Samples, TimeSync,
    Window,
};
use tributary_core::crdt::aggregate::{Entry, Key};
use tributary_core::hlc::Hlc;
use tributary_core::ids::{Bucket, DeviceId, NodeId, Resolution, SensorId, Timestamp};
use tributary_core::summary::Summary;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/wire/v1")
}

/// The bytes of a fixture: hex digits, any whitespace ignored.
fn fixture(name: &str) -> Vec<u8> {
    let path = fixture_dir().join(name);
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    assert!(
        digits.len().is_multiple_of(2),
        "{name}: odd number of hex digits"
    );
    digits
        .chunks(2)
        .map(|pair| {
            let pair = std::str::from_utf8(pair).expect("hex digits are ASCII");
            u8::from_str_radix(pair, 16)
                .unwrap_or_else(|_| panic!("{name}: {pair:?} is not a hex byte"))
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn check_message(name: &str, expected: &Message) {
    let bytes = fixture(name);
    assert_eq!(v1::decode(&bytes).as_ref(), Ok(expected), "{name} decodes");
    assert_eq!(
        v1::decode_prefix(&bytes),
        Ok((expected.clone(), bytes.len())),
        "{name} decodes from a stream"
    );
    assert_eq!(
        hex(&v1::encode(expected)),
        hex(&bytes),
        "{name}: the encoding changed"
    );
}

fn check_device_message(name: &str, expected: &DeviceMessage) {
    let bytes = fixture(name);
    assert!(bytes.len() <= MAX_DEVICE_MESSAGE, "{name}");
    assert_eq!(
        v1::decode_device(&bytes).as_ref(),
        Ok(expected),
        "{name} decodes"
    );
    assert_eq!(
        hex(&v1::encode_device_vec(expected)),
        hex(&bytes),
        "{name}: the encoding changed"
    );
    let mut buf = [0u8; MAX_DEVICE_MESSAGE];
    let len = v1::encode_device(expected, &mut buf).expect("fits MAX_DEVICE_MESSAGE");
    assert_eq!(
        hex(&buf[..len]),
        hex(&bytes),
        "{name}: encode_device differs"
    );
}

// ---------------------------------------------------- the expected messages

/// The gateway of every edge ↔ hub example: an EUI-64.
const NODE: NodeId = NodeId(0x0123_4567_89ab_cdef);
const SENSOR: SensorId = SensorId(7);
/// 2023-11-14T22:14:00Z, the start of minute bucket 28 333 334.
const MINUTE_START: u64 = 1_700_000_040_000;
const MINUTE: Bucket = Bucket(28_333_334);

fn summary(readings: &[(u64, f64)]) -> Summary {
    let mut s = Summary::EMPTY;
    for &(t, x) in readings {
        s.record(Timestamp(t), x).expect("finite reading");
    }
    s
}

/// Hello without a digest.
pub fn hello() -> Message {
    Message::Hello(Hello {
        node: NODE,
        version_high: 4_242,
        digest: None,
    })
}

/// Hello with a two-cell anti-entropy digest.
pub fn hello_digest() -> Message {
    Message::Hello(Hello {
        node: NODE,
        version_high: 4_242,
        digest: Some(vec![
            DigestEntry {
                sensor: SENSOR,
                day: Bucket(19_675), // 2023-11-14
                hash: 0x9e37_79b9_7f4a_7c15,
            },
            DigestEntry {
                sensor: SensorId(8),
                day: Bucket(19_675),
                hash: 0x0bad_cafe_f00d_0001,
            },
        ]),
    })
}

/// Resume without credit, naming one anti-entropy cell to repair (with
/// the hub's hash of it), the answer to `hello_digest`.
pub fn resume_repair() -> Message {
    Message::Resume(Resume {
        node: NODE,
        watermark: 4_242,
        credit: None,
        repair: Some(vec![DigestEntry {
            sensor: SensorId(8),
            day: Bucket(19_675),
            hash: 0x0bad_cafe_f00d_0002,
        }]),
    })
}

/// Resume with a credit of 64 KiB.
pub fn resume() -> Message {
    Message::Resume(Resume {
        node: NODE,
        watermark: 4_000,
        credit: Some(65_536),
        repair: None,
    })
}

/// A delta of three entries in two groups: two minutes of a temperature
/// sensor and one hour of a pressure sensor.
pub fn delta() -> Message {
    let t = MINUTE_START;
    let entries = [
        (
            Key::new(SENSOR, Resolution::Minute, MINUTE),
            Entry {
                version: 4_001,
                summary: summary(&[(t + 250, 21.5), (t + 1_250, 21.75)]),
            },
        ),
        (
            Key::new(SENSOR, Resolution::Minute, Bucket(MINUTE.0 + 1)),
            Entry {
                version: 4_002,
                summary: summary(&[(t + 60_250, 21.75), (t + 90_250, 22.0)]),
            },
        ),
        (
            Key::new(SensorId(8), Resolution::Hour, Bucket(472_222)),
            Entry {
                version: 4_003,
                summary: summary(&[(t + 250, 1013.1)]),
            },
        ),
    ];
    Message::Delta(Delta::from_entries(NODE, 4_000, 4_003, entries))
}

/// The hub has merged everything up to 4003; no credit limit.
pub fn ack() -> Message {
    Message::Ack(Ack {
        node: NODE,
        upto: 4_003,
        credit: None,
        alert: None,
    })
}

/// A range alert with the two-reading window behind it.
pub fn alert() -> Message {
    Message::Alert(Alert {
        node: NODE,
        sensor: SENSOR,
        hlc: Hlc::new(MINUTE_START + 1_000, 2).expect("48-bit time"),
        at: Timestamp(MINUTE_START + 999),
        value: 85.25,
        score: 0.97,
        detector: DetectorKind::Range,
        window: summary(&[(MINUTE_START, 21.5), (MINUTE_START + 999, 85.25)]),
    })
}

/// An (opaque) Automerge sync message.
pub fn config_sync() -> Message {
    Message::Config(ConfigSync {
        node: NODE,
        sync: ByteVec::from(vec![0x42, 0x01, 0x00, 0x00, 0x00]),
    })
}

/// A device announcing its 17th boot, firmware 1.2.
pub fn device_hello() -> DeviceMessage {
    DeviceMessage::Hello(DeviceHello {
        device: DeviceId(0x0011_2233_4455_6677),
        boot: 17,
        firmware: 0x0102,
    })
}

/// Three raw samples at 1 Hz.
pub fn readings() -> DeviceMessage {
    let samples = [(0, 21.5), (1_000, 21.75), (2_000, 21.5)]
        .into_iter()
        .map(|(offset_ms, value)| Sample { offset_ms, value })
        .collect();
    DeviceMessage::Readings(Readings {
        seq: 5,
        sensor: SENSOR,
        base: Timestamp(MINUTE_START + 250),
        samples: Samples(samples),
    })
}

/// One pre-aggregated minute.
pub fn window() -> DeviceMessage {
    DeviceMessage::Window(Window {
        seq: 6,
        sensor: SENSOR,
        resolution: Resolution::Minute,
        bucket: MINUTE,
        summary: summary(&[
            (MINUTE_START + 250, 21.5),
            (MINUTE_START + 1_250, 21.75),
            (MINUTE_START + 59_250, 22.0),
        ]),
    })
}

/// The gateway holds frames 0..=6 of boot 17.
pub fn device_ack() -> DeviceMessage {
    DeviceMessage::Ack(DeviceAck { boot: 17, upto: 6 })
}

/// The gateway's clock.
pub fn time_sync() -> DeviceMessage {
    DeviceMessage::TimeSync(TimeSync {
        now: Timestamp(MINUTE_START),
    })
}

/// A fixture's file name and the function building the message it holds.
pub type Golden<M> = (&'static str, fn() -> M);

/// Every edge ↔ hub fixture and the message it holds.
pub const MESSAGES: [Golden<Message>; 8] = [
    ("hello.hex", hello),
    ("hello-digest.hex", hello_digest),
    ("resume.hex", resume),
    ("resume-repair.hex", resume_repair),
    ("delta.hex", delta),
    ("ack.hex", ack),
    ("alert.hex", alert),
    ("config-sync.hex", config_sync),
];

/// Every device ↔ gateway fixture and the message it holds.
pub const DEVICE_MESSAGES: [Golden<DeviceMessage>; 5] = [
    ("device-hello.hex", device_hello),
    ("readings.hex", readings),
    ("window.hex", window),
    ("device-ack.hex", device_ack),
    ("time-sync.hex", time_sync),
];

/// The one framed fixture: a DeviceAck as it crosses the UART.
pub const FRAMES: [Golden<DeviceMessage>; 1] = [("frame-device-ack.hex", device_ack)];

// ------------------------------------------------------------------- tests

#[test]
fn golden_hello() {
    check_message("hello.hex", &hello());
}

#[test]
fn golden_hello_with_digest() {
    check_message("hello-digest.hex", &hello_digest());
}

#[test]
fn golden_resume() {
    check_message("resume.hex", &resume());
}

#[test]
fn golden_resume_with_cells_to_repair() {
    check_message("resume-repair.hex", &resume_repair());
}

#[test]
fn golden_delta_with_two_groups() {
    let m = delta();
    let Message::Delta(d) = &m else {
        unreachable!("delta() builds a Delta")
    };
    assert_eq!(d.groups.len(), 2);
    check_message("delta.hex", &m);
}

#[test]
fn golden_ack() {
    check_message("ack.hex", &ack());
}

#[test]
fn golden_alert() {
    check_message("alert.hex", &alert());
}

#[test]
fn golden_config_sync() {
    check_message("config-sync.hex", &config_sync());
}

#[test]
fn golden_device_hello() {
    check_device_message("device-hello.hex", &device_hello());
}

#[test]
fn golden_readings() {
    check_device_message("readings.hex", &readings());
}

#[test]
fn golden_window() {
    check_device_message("window.hex", &window());
}

#[test]
fn golden_device_ack() {
    check_device_message("device-ack.hex", &device_ack());
}

#[test]
fn golden_time_sync() {
    check_device_message("time-sync.hex", &time_sync());
}

#[test]
fn golden_frame_of_a_device_ack() {
    let wire = fixture("frame-device-ack.hex");
    assert_eq!(wire.last(), Some(&frame::DELIMITER));
    assert_eq!(
        wire.iter().filter(|&&b| b == frame::DELIMITER).count(),
        1,
        "COBS leaves no 0x00 inside a frame"
    );
    let mut decoder = FrameDecoder::<MAX_DEVICE_MESSAGE>::new();
    let mut input = &wire[..];
    let payload = decoder
        .feed(&mut input)
        .expect("one whole frame")
        .expect("a good frame")
        .to_vec();
    assert!(input.is_empty());
    assert_eq!(hex(&payload), hex(&fixture("device-ack.hex")));
    assert_eq!(v1::decode_device(&payload), Ok(device_ack()));
    let framed = frame::encode_to_vec(&v1::encode_device_vec(&device_ack())).expect("non-empty");
    assert_eq!(hex(&framed), hex(&wire), "the framing changed");
}

#[test]
fn every_fixture_file_is_checked() {
    let mut on_disk: Vec<String> = fs::read_dir(fixture_dir())
        .expect("fixture directory")
        .map(|e| {
            e.expect("directory entry")
                .file_name()
                .into_string()
                .expect("UTF-8 name")
        })
        .collect();
    on_disk.sort();
    let mut known: Vec<String> = MESSAGES
        .iter()
        .map(|(n, _)| n)
        .chain(DEVICE_MESSAGES.iter().map(|(n, _)| n))
        .chain(FRAMES.iter().map(|(n, _)| n))
        .map(|n| n.to_string())
        .collect();
    known.sort();
    assert_eq!(
        on_disk, known,
        "a fixture without a test, or a test without a fixture"
    );
}

#[test]
fn fixtures_are_lowercase_hex() {
    for entry in fs::read_dir(fixture_dir()).expect("fixture directory") {
        let path = entry.expect("directory entry").path();
        let text = fs::read_to_string(&path).expect("readable");
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_whitespace() || matches!(b, b'0'..=b'9' | b'a'..=b'f')),
            "{} holds something other than lowercase hex",
            path.display()
        );
    }
}
