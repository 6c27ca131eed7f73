//! Properties and malformed-input tests of the v1 codec: round trips of
//! every message, every cut and single-byte corruption of valid frames,
//! hostile length prefixes, the semantic checks behind each rejection
//! label, and the byte budget of a one-minute delta entry.
#![cfg(feature = "alloc")]

extern crate std;

use std::vec::Vec;
use std::{format, println, vec};

use minicbor::bytes::ByteVec;
use minicbor::encode::Encoder;
use proptest::prelude::*;

use super::device::MAX_SAMPLES;
use super::*;
use crate::codec::DecodeError;
use crate::crdt::aggregate::{Entry, Key};
use crate::hlc::Hlc;
use crate::ids::{Bucket, DeviceId, NodeId, Resolution, SensorId, Timestamp};
use crate::summary::Summary;

// ---------------------------------------------------------------- strategies

/// Readings as sensors deliver them: modest doubles, values that are exact
/// in an f32 (the common case, encoded in 5 bytes) or even in an f16
/// (3 bytes: 21.5, −40, small integers), and signed zeros.
fn reading() -> impl Strategy<Value = f64> {
    prop_oneof![
        5 => -1e6f64..1e6,
        4 => (-1e6f32..1e6f32).prop_map(f64::from),
        2 => finite_f16(),
        1 => prop::sample::select(vec![
            0.0,
            -0.0,
            21.5,
            1013.25,
            -40.0,
            f64::from(21.37f32),
            0.1,
        ]),
    ]
}

/// Any finite half-precision value (subnormals and ±65504 included), as a
/// double.
fn finite_f16() -> impl Strategy<Value = f64> {
    any::<u16>()
        .prop_map(|bits| f64::from(half::f16::from_bits(bits).to_f32()))
        .prop_filter("finite", |x| x.is_finite())
}

/// Any finite double, for fields that are not summaries of readings.
fn finite_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        3 => reading(),
        1 => prop::num::f64::NORMAL | prop::num::f64::SUBNORMAL | prop::num::f64::ZERO,
    ]
}

fn finite_f32() -> impl Strategy<Value = f32> {
    prop_oneof![
        4 => -1e6f32..1e6,
        1 => prop::sample::select(vec![0.0f32, -0.0, 21.5, 1013.25, f32::MAX, -f32::MAX, f32::MIN_POSITIVE]),
        1 => prop::num::f32::NORMAL | prop::num::f32::SUBNORMAL | prop::num::f32::ZERO,
    ]
}

fn node() -> impl Strategy<Value = NodeId> {
    prop_oneof![0u64..1000, any::<u64>()].prop_map(NodeId)
}

fn sensor() -> impl Strategy<Value = SensorId> {
    prop_oneof![0u32..4, any::<u32>()].prop_map(SensorId)
}

fn resolution() -> impl Strategy<Value = Resolution> {
    prop::sample::select(Resolution::ALL.to_vec())
}

fn detector() -> impl Strategy<Value = DetectorKind> {
    use DetectorKind::*;
    prop::sample::select(vec![
        ZScore,
        MadZScore,
        Cusum,
        PageHinkley,
        Flatline,
        RateOfChange,
        Range,
        Seasonal,
        Ensemble,
    ])
}

/// A bucket index at `resolution` whose whole span lies inside the
/// timestamp range: near 2023 (dense, so groups get several items), around
/// today, or anywhere at all.
fn bucket_index(resolution: Resolution, mode: u8, raw: u64) -> u64 {
    let width = resolution.millis();
    match mode % 3 {
        0 => 1_700_000_000_000 / width + raw % 100,
        1 => 1_600_000_000_000 / width + raw % (400_000_000_000 / width),
        _ => raw % (u64::MAX / width),
    }
}

fn key() -> impl Strategy<Value = Key> {
    (sensor(), resolution(), any::<u8>(), any::<u64>())
        .prop_map(|(s, r, mode, raw)| Key::new(s, r, Bucket(bucket_index(r, mode, raw))))
}

/// The summary of `readings` recorded at times inside `bucket` (offsets are
/// reduced modulo the bucket width).
fn summary_in(bucket: Bucket, resolution: Resolution, readings: &[(u64, f64)]) -> Summary {
    let start = bucket.start(resolution).0;
    let mut s = Summary::EMPTY;
    for &(raw, x) in readings {
        let t = Timestamp(start + raw % resolution.millis());
        s.record(t, x).unwrap();
    }
    s
}

fn readings(min: usize) -> impl Strategy<Value = Vec<(u64, f64)>> {
    prop::collection::vec((any::<u64>(), reading()), min..12)
}

/// Any summary a sensor could produce (possibly empty), at any times.
fn summary() -> impl Strategy<Value = Summary> {
    prop::collection::vec((0u64..4_000_000_000_000, reading()), 0..12).prop_map(|rs| {
        let mut s = Summary::EMPTY;
        for (t, x) in rs {
            s.record(Timestamp(t), x).unwrap();
        }
        s
    })
}

/// Valid (key, entry) pairs with distinct keys, sorted by key, each
/// version inside `(from, to]`.
fn entries(max: usize) -> impl Strategy<Value = (u64, u64, Vec<(Key, Entry)>)> {
    (
        prop_oneof![0u64..10_000, 0u64..u64::MAX / 2],
        0u64..1_000_000,
        prop::collection::btree_map(key(), (readings(1), any::<u64>()), 0..max),
    )
        .prop_map(|(from, extra, by_key)| {
            let to = from + by_key.len() as u64 + extra;
            let entries = by_key
                .into_iter()
                .map(|(k, (rs, raw_version))| {
                    let span = to - from; // > 0: there is at least this entry
                    let entry = Entry {
                        version: from + 1 + raw_version % span,
                        summary: summary_in(k.bucket, k.resolution, &rs),
                    };
                    (k, entry)
                })
                .collect();
            (from, to, entries)
        })
}

fn delta(max_entries: usize) -> impl Strategy<Value = Delta> {
    (node(), entries(max_entries))
        .prop_map(|(n, (from, to, es))| Delta::from_entries(n, from, to, es))
}

fn digest_entry() -> impl Strategy<Value = DigestEntry> {
    (sensor(), any::<u64>(), any::<u64>()).prop_map(|(sensor, day, hash)| DigestEntry {
        sensor,
        day: Bucket(day),
        hash,
    })
}

fn hello() -> impl Strategy<Value = Hello> {
    (
        node(),
        any::<u64>(),
        prop::option::of(prop::collection::vec(digest_entry(), 0..8)),
    )
        .prop_map(|(node, version_high, digest)| Hello {
            node,
            version_high,
            digest,
        })
}

fn alert() -> impl Strategy<Value = Alert> {
    (
        (node(), sensor(), any::<u64>(), any::<u64>()),
        finite_f64(),
        prop_oneof![0.0f64..=1.0, Just(0.0), Just(-0.0), Just(1.0)],
        detector(),
        summary(),
    )
        .prop_map(
            |((node, sensor, hlc, at), value, score, detector, window)| Alert {
                node,
                sensor,
                hlc: Hlc::from_u64(hlc),
                at: Timestamp(at),
                value,
                score,
                detector,
                window,
            },
        )
}

fn message_with(max_entries: usize) -> impl Strategy<Value = Message> {
    prop_oneof![
        hello().prop_map(Message::Hello),
        (
            node(),
            any::<u64>(),
            prop::option::of(any::<u32>()),
            prop::option::of(prop::collection::vec(digest_entry(), 0..4))
        )
            .prop_map(|(node, watermark, credit, repair)| Message::Resume(Resume {
                node,
                watermark,
                credit,
                repair
            })),
        delta(max_entries).prop_map(Message::Delta),
        (node(), any::<u64>(), prop::option::of(any::<u32>())).prop_map(|(node, upto, credit)| {
            Message::Ack(Ack {
                node,
                upto,
                credit,
                alert: None,
            })
        }),
        alert().prop_map(Message::Alert),
        (node(), prop::collection::vec(any::<u8>(), 0..200)).prop_map(|(node, sync)| {
            Message::Config(ConfigSync {
                node,
                sync: ByteVec::from(sync),
            })
        }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    message_with(16)
}

fn samples() -> impl Strategy<Value = Samples> {
    prop::collection::vec((any::<u32>(), finite_f32()), 0..=MAX_SAMPLES).prop_map(|v| {
        Samples(
            v.into_iter()
                .map(|(offset_ms, value)| Sample { offset_ms, value })
                .collect(),
        )
    })
}

fn window() -> impl Strategy<Value = Window> {
    (
        (
            any::<u32>(),
            sensor(),
            resolution(),
            any::<u8>(),
            any::<u64>(),
        ),
        readings(0),
    )
        .prop_map(|((seq, sensor, resolution, mode, raw), rs)| {
            let bucket = Bucket(bucket_index(resolution, mode, raw));
            Window {
                seq,
                sensor,
                resolution,
                bucket,
                summary: summary_in(bucket, resolution, &rs),
            }
        })
}

fn device_message() -> impl Strategy<Value = DeviceMessage> {
    prop_oneof![
        (any::<u64>(), any::<u32>(), any::<u16>()).prop_map(|(device, boot, firmware)| {
            DeviceMessage::Hello(DeviceHello {
                device: DeviceId(device),
                boot,
                firmware,
            })
        }),
        (
            any::<u32>(),
            sensor(),
            prop_oneof![any::<u64>(), Just(u64::MAX)],
            samples()
        )
            .prop_map(|(seq, sensor, raw_base, samples)| {
                // Every sample's time must fit in a u64 (`time_out_of_range`
                // otherwise): clamp the base, which keeps the exact limit
                // `base + largest offset = u64::MAX` among the cases.
                let last = samples.0.iter().map(|s| u64::from(s.offset_ms)).max();
                let base = raw_base.min(u64::MAX - last.unwrap_or(0));
                DeviceMessage::Readings(Readings {
                    seq,
                    sensor,
                    base: Timestamp(base),
                    samples,
                })
            }),
        window().prop_map(DeviceMessage::Window),
        (any::<u32>(), any::<u32>())
            .prop_map(|(boot, upto)| DeviceMessage::Ack(DeviceAck { boot, upto })),
        any::<u64>().prop_map(|now| DeviceMessage::TimeSync(TimeSync {
            now: Timestamp(now)
        })),
    ]
}

// ------------------------------------------------------------------ helpers

/// A whole device message encoded without an allocator.
fn device_bytes(msg: &DeviceMessage) -> Vec<u8> {
    let mut buf = [0u8; MAX_DEVICE_MESSAGE];
    let len = encode_device(msg, &mut buf).unwrap();
    buf[..len].to_vec()
}

/// A CBOR encoder over a buffer that already holds the v1 version byte, for
/// hand-built (hostile or semantically wrong) messages.
fn v1_encoder() -> Encoder<Vec<u8>> {
    Encoder::new(vec![WIRE_VERSION])
}

/// A valid one-reading delta item at offset 0 of its bucket.
fn item(bucket_offset: u64, version: u64) -> DeltaItem {
    DeltaItem {
        bucket_offset,
        version,
        count: 1,
        sum: 21.5,
        min: 21.5,
        max: 21.5,
        sum_sq: 462.25,
        first_offset_ms: 0,
        last_offset_ms: 0,
    }
}

fn delta_of(
    from: u64,
    to: u64,
    resolution: Resolution,
    base: u64,
    items: Vec<DeltaItem>,
) -> Message {
    Message::Delta(Delta {
        node: NodeId(1),
        from,
        to,
        groups: vec![DeltaGroup {
            sensor: SensorId(7),
            resolution,
            base: Bucket(base),
            items,
        }],
    })
}

fn malformed(reason: &'static str) -> Result<Message, DecodeError> {
    Err(DecodeError::Malformed(reason))
}

fn assert_malformed(result: Result<Message, DecodeError>, what: &str) {
    assert!(
        matches!(result, Err(DecodeError::Malformed(_))),
        "{what}: {result:?}"
    );
}

/// Decoding arbitrary bytes must not panic; whatever decodes re-encodes to
/// bytes that decode to the same message, and `decode_prefix` agrees with
/// `decode` on what it accepts.
fn check_any_bytes(bytes: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(m) = decode(bytes) {
        prop_assert_eq!(decode(&encode(&m)), Ok(m.clone()));
        prop_assert_eq!(decode_prefix(bytes), Ok((m, bytes.len())));
    }
    if let Ok((m, used)) = decode_prefix(bytes) {
        prop_assert!(used <= bytes.len());
        prop_assert_eq!(decode(&bytes[..used]), Ok(m));
    }
    if let Ok(m) = decode_device(bytes) {
        prop_assert_eq!(decode_device(&device_bytes(&m)), Ok(m));
    }
    Ok(())
}

/// Replacement values for a corrupted byte: bit flips, and bytes that mean
/// something in CBOR (zero, a 64-bit length, an indefinite array, a break,
/// null, the f16, f32 and f64 markers).
fn corruptions(b: u8) -> [u8; 11] {
    [
        b ^ 0x01,
        b ^ 0x80,
        b ^ 0x20,
        0x00,
        0xff,
        0x1b,
        0x9f,
        0xf6,
        0xf9,
        0xfa,
        0xfb,
    ]
}

// ---------------------------------------------------------------- round trip

proptest! {
    #[test]
    fn every_message_round_trips(m in message()) {
        let bytes = encode(&m);
        prop_assert_eq!(bytes[0], WIRE_VERSION);
        prop_assert!(bytes.len() <= MAX_MESSAGE);
        prop_assert_eq!(m.validate(), Ok(()));
        prop_assert_eq!(decode(&bytes), Ok(m.clone()));
        prop_assert_eq!(decode_prefix(&bytes), Ok((m, bytes.len())));
    }

    #[test]
    fn decode_prefix_reports_the_bytes_it_used(
        m in message(),
        next in message(),
        tail in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let (first, second) = (encode(&m), encode(&next));
        let mut stream = first.clone();
        stream.extend_from_slice(&second);
        stream.extend_from_slice(&tail);
        prop_assert_eq!(decode_prefix(&stream), Ok((m, first.len())));
        prop_assert_eq!(decode_prefix(&stream[first.len()..]), Ok((next, second.len())));
        // A whole-message decoder refuses what follows the message.
        prop_assert_eq!(decode(&stream), malformed("trailing_bytes"));
    }

    #[test]
    fn every_device_message_round_trips_without_an_allocator(m in device_message()) {
        let mut buf = [0u8; MAX_DEVICE_MESSAGE];
        let len = encode_device(&m, &mut buf).unwrap();
        prop_assert_eq!(&buf[..len], &encode_device_vec(&m)[..]);
        prop_assert_eq!(buf[0], WIRE_VERSION);
        prop_assert_eq!(m.validate(), Ok(()));
        prop_assert_eq!(decode_device(&buf[..len]), Ok(m));
    }

    #[test]
    fn delta_from_entries_gives_back_its_entries_sorted_by_key(
        n in node(),
        (from, to, sorted) in entries(24),
        rotate in any::<usize>(),
    ) {
        // Hand them over in another order: the delta sorts them.
        let mut shuffled = sorted.clone();
        shuffled.reverse();
        if !shuffled.is_empty() {
            let k = rotate % shuffled.len();
            shuffled.rotate_left(k);
        }
        let d = Delta::from_entries(n, from, to, shuffled);
        prop_assert_eq!(d.validate(), Ok(()));
        prop_assert_eq!(d.len(), sorted.len());
        prop_assert_eq!(d.is_empty(), sorted.is_empty());
        prop_assert_eq!(d.entries().collect::<Vec<_>>(), sorted);
        // One group per (sensor, resolution), each with ascending buckets.
        for pair in d.groups.windows(2) {
            prop_assert!((pair[0].sensor, pair[0].resolution) < (pair[1].sensor, pair[1].resolution));
        }
        for g in &d.groups {
            prop_assert_eq!(g.items.first().map(|i| i.bucket_offset), Some(0));
            prop_assert!(g.items.windows(2).all(|w| w[0].bucket_offset < w[1].bucket_offset));
        }
    }
}

// ------------------------------------------------------- truncation, noise

proptest! {
    #[test]
    fn every_cut_of_a_message_is_truncated_or_incomplete(m in message_with(8)) {
        let bytes = encode(&m);
        prop_assert_eq!(decode(&[]), malformed("empty"));
        prop_assert!(matches!(decode_prefix(&[]), Err(DecodeError::Incomplete(_))));
        for cut in 1..bytes.len() {
            prop_assert_eq!(decode(&bytes[..cut]), malformed("truncated"), "cut at {}", cut);
            let prefix = decode_prefix(&bytes[..cut]);
            prop_assert!(
                matches!(prefix, Err(DecodeError::Incomplete(n)) if n >= 1),
                "cut at {}: {:?}", cut, prefix
            );
        }
    }

    #[test]
    fn every_cut_of_a_device_message_is_truncated(m in device_message()) {
        let bytes = device_bytes(&m);
        prop_assert_eq!(decode_device(&[]), Err(DecodeError::Malformed("empty")));
        for cut in 1..bytes.len() {
            prop_assert_eq!(
                decode_device(&bytes[..cut]),
                Err(DecodeError::Malformed("truncated")),
                "cut at {}", cut
            );
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn corrupting_any_byte_of_a_message_never_panics_and_decodes_stably(m in message_with(4)) {
        let bytes = encode(&m);
        for (pos, &byte) in bytes.iter().enumerate() {
            for value in corruptions(byte) {
                let mut bad = bytes.clone();
                bad[pos] = value;
                check_any_bytes(&bad)?;
            }
        }
    }

    #[test]
    fn corrupting_any_byte_of_a_device_message_never_panics_and_decodes_stably(m in device_message()) {
        let bytes = device_bytes(&m);
        for (pos, &byte) in bytes.iter().enumerate() {
            for value in corruptions(byte) {
                let mut bad = bytes.clone();
                bad[pos] = value;
                check_any_bytes(&bad)?;
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn random_bytes_never_panic(
        // Most random bytes die at the version byte or the message wrapper;
        // a plausible head (`[type, …`) gets the noise into the message bodies.
        head in prop_oneof![
            Just(vec![]),
            Just(vec![WIRE_VERSION]),
            (0u8..8).prop_map(|variant| vec![WIRE_VERSION, 0x82, variant]),
        ],
        noise in prop::collection::vec(any::<u8>(), 0..300),
    ) {
        let mut bytes = head;
        bytes.extend_from_slice(&noise);
        check_any_bytes(&bytes)?;
    }
}

// ------------------------------------------------------- envelope and sizes

#[test]
fn other_wire_versions_are_unsupported() {
    let ack = encode(&Message::Ack(Ack {
        node: NodeId(7),
        upto: 42,
        credit: None,
        alert: None,
    }));
    for version in [0x00, 0x02, 0xff] {
        let mut bytes = ack.clone();
        bytes[0] = version;
        let unsupported = DecodeError::UnsupportedVersion(version);
        assert_eq!(decode(&bytes), Err(unsupported));
        assert_eq!(decode_prefix(&bytes), Err(unsupported));
        assert_eq!(
            decode_device(&bytes),
            Err(DecodeError::UnsupportedVersion(version))
        );
        // The version byte alone is enough to refuse.
        assert_eq!(
            decode_prefix(&[version]),
            Err(DecodeError::UnsupportedVersion(version))
        );
    }
}

#[test]
fn oversized_messages_are_too_large() {
    let mut big = vec![WIRE_VERSION; MAX_MESSAGE + 1];
    assert_eq!(
        decode(&big),
        Err(DecodeError::TooLarge {
            len: MAX_MESSAGE + 1,
            max: MAX_MESSAGE
        })
    );
    // At the limit the size is fine and the content is judged.
    big.truncate(MAX_MESSAGE);
    assert_malformed(decode(&big), "exactly MAX_MESSAGE bytes of 0x01");

    let device = vec![WIRE_VERSION; MAX_DEVICE_MESSAGE + 1];
    assert_eq!(
        decode_device(&device),
        Err(DecodeError::TooLarge {
            len: MAX_DEVICE_MESSAGE + 1,
            max: MAX_DEVICE_MESSAGE
        })
    );
}

#[test]
fn a_stream_prefix_that_cannot_finish_within_the_limit_is_too_large() {
    // A config message whose byte string claims more than the limit.
    let mut e = message_head(5);
    e.array(2).unwrap().u64(7).unwrap();
    let claimed = MAX_MESSAGE as u64 * 2;
    // A definite byte-string header (major type 2, 8-byte length).
    let mut bytes = e.into_writer();
    bytes.push(0x5b);
    bytes.extend_from_slice(&claimed.to_be_bytes());
    bytes.resize(MAX_MESSAGE - 1, 0xab);
    assert_eq!(decode_prefix(&bytes), Err(DecodeError::Incomplete(1)));
    bytes.push(0xab);
    assert_eq!(
        decode_prefix(&bytes),
        Err(DecodeError::TooLarge {
            len: MAX_MESSAGE,
            max: MAX_MESSAGE
        })
    );
    // In a stream the buffer may hold more than one message: a small one at
    // the front of a buffer longer than the limit still decodes.
    let ack = Message::Ack(Ack {
        node: NodeId(7),
        upto: 42,
        credit: Some(1),
        alert: None,
    });
    let mut stream = encode(&ack);
    let used = stream.len();
    stream.resize(MAX_MESSAGE * 2, 0);
    assert_eq!(decode_prefix(&stream), Ok((ack, used)));
}

#[test]
fn encode_device_into_a_short_buffer_is_an_error() {
    let m = DeviceMessage::Ack(DeviceAck { boot: 17, upto: 6 });
    let whole = encode_device_vec(&m);
    for size in 0..whole.len() {
        let mut out = vec![0u8; size];
        assert_eq!(
            encode_device(&m, &mut out),
            Err(BufferTooSmall),
            "{size} bytes"
        );
    }
    let mut out = vec![0u8; whole.len()];
    assert_eq!(encode_device(&m, &mut out), Ok(whole.len()));
    assert_eq!(out, whole);
}

#[test]
fn largest_device_messages_fit_max_device_message() {
    let worst_samples = Samples(
        (0..MAX_SAMPLES)
            .map(|_| Sample {
                offset_ms: u32::MAX,
                value: f32::MAX,
            })
            .collect(),
    );
    let readings = DeviceMessage::Readings(Readings {
        seq: u32::MAX,
        sensor: SensorId(u32::MAX),
        // The latest base at which every sample's time still fits in a u64
        // (still a 9-byte integer).
        base: Timestamp(u64::MAX - u64::from(u32::MAX)),
        samples: worst_samples,
    });
    let resolution = Resolution::Second;
    let bucket = Bucket(u64::MAX / resolution.millis() - 1);
    let start = bucket.start(resolution).0;
    let mut summary = Summary::EMPTY;
    summary.record(Timestamp(start), 0.1).unwrap();
    summary.record(Timestamp(start + 999), -1e150).unwrap();
    let window = DeviceMessage::Window(Window {
        seq: u32::MAX,
        sensor: SensorId(u32::MAX),
        resolution,
        bucket,
        summary,
    });
    for m in [readings, window] {
        let len = encode_device_vec(&m).len();
        assert!(len <= MAX_DEVICE_MESSAGE, "{len} bytes: {m:?}");
        assert_eq!(decode_device(&device_bytes(&m)), Ok(m));
    }
}

// ------------------------------------------------------- hostile prefixes

/// `[version][message wrapper: 2-array][type]`: the head of a message of
/// type `variant` (of either family), to be followed by its body array.
fn message_head(variant: u8) -> Encoder<Vec<u8>> {
    let mut e = v1_encoder();
    e.array(2).unwrap().u8(variant).unwrap();
    e
}

#[test]
fn hostile_length_prefixes_fail_fast_without_allocating() {
    let mut cases: Vec<(&str, Vec<u8>)> = Vec::new();

    // The top-level array claims 2^60 and u64::MAX elements.
    for claim in [1u64 << 60, u64::MAX] {
        let mut e = v1_encoder();
        e.array(claim).unwrap();
        cases.push(("top-level array", e.into_writer()));
    }
    // An Ack whose field array claims 2^60 elements (the rest are skipped).
    let mut e = message_head(3);
    e.array(1 << 60).unwrap().u8(7).unwrap().u8(42).unwrap();
    cases.push(("ack fields", e.into_writer()));
    // A Hello whose digest claims u64::MAX entries.
    let mut e = message_head(0);
    e.array(3).unwrap().u8(7).unwrap().u8(1).unwrap();
    e.array(u64::MAX).unwrap();
    cases.push(("hello digest", e.into_writer()));
    // A Delta whose groups array claims 2^40 items.
    let mut e = message_head(2);
    e.array(4)
        .unwrap()
        .u8(1)
        .unwrap()
        .u8(0)
        .unwrap()
        .u8(10)
        .unwrap();
    e.array(1 << 40).unwrap();
    cases.push(("delta groups", e.into_writer()));
    // ... and whose first group's items claim 2^60.
    let mut e = message_head(2);
    e.array(4)
        .unwrap()
        .u8(1)
        .unwrap()
        .u8(0)
        .unwrap()
        .u8(10)
        .unwrap();
    e.array(1)
        .unwrap()
        .array(4)
        .unwrap()
        .u8(7)
        .unwrap()
        .u8(1)
        .unwrap()
        .u8(0)
        .unwrap();
    e.array(1 << 60).unwrap();
    cases.push(("delta items", e.into_writer()));
    // A ConfigSync whose byte string claims 2^62 bytes, and a map claiming
    // 2^60 pairs where the bytes should be.
    for header in [0x5b_u8, 0xbb] {
        let mut e = message_head(5);
        e.array(2).unwrap().u8(7).unwrap();
        let mut bytes = e.into_writer();
        bytes.push(header);
        bytes.extend_from_slice(&(1u64 << 62).to_be_bytes());
        bytes.extend_from_slice(b"short");
        let what = if header == 0x5b {
            "config bytes"
        } else {
            "config map"
        };
        cases.push((what, bytes));
    }
    // A text string where a node id should be.
    let mut bytes = message_head(3).into_writer();
    bytes.extend_from_slice(&[0x82, 0x7b]);
    bytes.extend_from_slice(&(1u64 << 62).to_be_bytes());
    cases.push(("text", bytes));

    // Each runs out of input (a stream decoder waits for more), except where
    // the claimed item has the wrong type to begin with.
    for (what, bytes) in &cases {
        let wrong_type = matches!(*what, "config map" | "text");
        let (whole, prefix) = if wrong_type {
            let e = DecodeError::Malformed("cbor_type_mismatch");
            (Err(e), Err(e))
        } else {
            (malformed("truncated"), Err(DecodeError::Incomplete(1)))
        };
        assert_eq!(decode(bytes), whole, "{what}");
        assert_eq!(decode_prefix(bytes), prefix, "{what}");
    }

    // Device frames: a Readings whose samples claim 2^60, and u64::MAX.
    for claim in [1u64 << 60, u64::MAX] {
        let mut e = message_head(1);
        e.array(4)
            .unwrap()
            .u8(1)
            .unwrap()
            .u8(7)
            .unwrap()
            .u8(0)
            .unwrap();
        e.array(claim).unwrap();
        let bytes = e.into_writer();
        assert_eq!(
            decode_device(&bytes),
            Err(DecodeError::Malformed("truncated"))
        );
    }
}

#[test]
fn deep_nesting_does_not_overflow_the_stack() {
    const DEPTH: usize = 100_000;
    for nest in [0x81_u8, 0x9f] {
        // Right after the version byte.
        let mut bytes = vec![WIRE_VERSION];
        bytes.extend(std::iter::repeat_n(nest, DEPTH));
        assert!(decode(&bytes).is_err());
        assert!(decode_prefix(&bytes).is_err());

        // As an unknown trailing field of an Ack, [3, [7, 42, null, null, …]],
        // and as an unknown trailing element of the message wrapper,
        // [3, [7, 42], …]: the decoder skips both (forward compatibility),
        // and the skip must be iterative.
        let heads: [&[u8]; 2] = [
            &[WIRE_VERSION, 0x82, 0x03, 0x85, 0x07, 0x18, 0x2a, 0xf6, 0xf6],
            &[WIRE_VERSION, 0x83, 0x03, 0x82, 0x07, 0x18, 0x2a],
        ];
        for head in heads {
            let mut bytes = head.to_vec();
            bytes.extend(std::iter::repeat_n(nest, DEPTH));
            // Unterminated: runs out of input.
            assert_eq!(decode(&bytes), malformed("truncated"));
            // Terminated: a well-formed unknown field, skipped.
            if nest == 0x81 {
                bytes.push(0x00);
            } else {
                bytes.push(0x00);
                bytes.extend(std::iter::repeat_n(0xff, DEPTH));
            }
            assert_eq!(
                decode(&bytes),
                Ok(Message::Ack(Ack {
                    node: NodeId(7),
                    upto: 42,
                    credit: None,
                    alert: None,
                }))
            );
        }

        // As the filler of an empty summary (skipped, not checked).
        let mut bytes = message_head(4).into_writer();
        bytes.extend_from_slice(&[0x88, 7, 7, 7, 7, 0xf9, 0, 0, 0xf9, 0, 0, 6]);
        bytes.extend_from_slice(&[0x87, 0x00]);
        bytes.extend(std::iter::repeat_n(nest, DEPTH));
        assert_eq!(decode(&bytes), malformed("truncated"));
        // Terminated, and followed by the five other filler items.
        bytes.push(0x00);
        if nest == 0x9f {
            bytes.extend(std::iter::repeat_n(0xff, DEPTH));
        }
        bytes.extend_from_slice(&[0; 5]);
        assert_eq!(
            decode(&bytes),
            Ok(Message::Alert(Alert {
                node: NodeId(7),
                sensor: SensorId(7),
                hlc: Hlc::from_u64(7),
                at: Timestamp(7),
                value: 0.0,
                score: 0.0,
                detector: DetectorKind::Range,
                window: Summary::EMPTY,
            }))
        );

        // In a device frame, where the size limit stops it first.
        let mut bytes = vec![WIRE_VERSION];
        bytes.extend(std::iter::repeat_n(nest, DEPTH));
        assert!(matches!(
            decode_device(&bytes),
            Err(DecodeError::TooLarge { .. })
        ));
        bytes.truncate(MAX_DEVICE_MESSAGE);
        assert!(decode_device(&bytes).is_err());
    }
}

// ------------------------------------------------------ semantic validation

#[test]
fn delta_with_a_version_outside_its_range_is_rejected() {
    for version in [0, 10, 21, u64::MAX] {
        let m = delta_of(10, 20, Resolution::Minute, 5, vec![item(0, version)]);
        assert_eq!(
            decode(&encode(&m)),
            malformed("delta_version_out_of_range"),
            "version {version}"
        );
    }
    // Both ends of (from, to] are accepted.
    let m = delta_of(
        10,
        20,
        Resolution::Minute,
        5,
        vec![item(0, 11), item(1, 20)],
    );
    assert_eq!(decode(&encode(&m)), Ok(m));
}

#[test]
fn delta_with_an_inverted_range_is_rejected() {
    let m = delta_of(20, 10, Resolution::Minute, 5, vec![]);
    assert_eq!(decode(&encode(&m)), malformed("delta_range_inverted"));
    // An empty range with no entries is a pure watermark advance.
    let m = delta_of(10, 10, Resolution::Minute, 5, vec![]);
    assert_eq!(decode(&encode(&m)), Ok(m));
}

#[test]
fn delta_with_an_empty_entry_is_rejected() {
    let empty = DeltaItem {
        count: 0,
        ..item(0, 11)
    };
    let m = delta_of(10, 20, Resolution::Minute, 5, vec![empty]);
    assert_eq!(decode(&encode(&m)), malformed("empty_entry"));
}

#[test]
fn delta_with_a_time_outside_its_bucket_is_rejected() {
    for resolution in Resolution::ALL {
        let width = resolution.millis();
        for (first, last) in [(width, width), (0, width), (width - 1, u64::MAX)] {
            let bad = DeltaItem {
                first_offset_ms: first,
                last_offset_ms: last,
                ..item(0, 11)
            };
            let m = delta_of(10, 20, resolution, 5, vec![bad]);
            assert_eq!(
                decode(&encode(&m)),
                malformed("time_outside_bucket"),
                "{resolution} {first}..{last}"
            );
        }
        // The last millisecond of the bucket is inside it.
        let edge = DeltaItem {
            first_offset_ms: width - 1,
            last_offset_ms: width - 1,
            ..item(0, 11)
        };
        let m = delta_of(10, 20, resolution, 5, vec![edge]);
        assert_eq!(decode(&encode(&m)), Ok(m));
    }
}

/// The last bucket of `resolution` whose every millisecond fits in a u64:
/// u64 milliseconds hold ⌊2^64 / width⌋ whole buckets.
fn last_valid_bucket(resolution: Resolution) -> u64 {
    let whole = (1u128 << 64) / u128::from(resolution.millis());
    u64::try_from(whole - 1).unwrap()
}

#[test]
fn delta_with_a_bucket_past_the_end_of_time_is_rejected() {
    for resolution in Resolution::ALL {
        let width = resolution.millis();
        let last_valid = last_valid_bucket(resolution);
        // The next bucket still starts inside u64 milliseconds, but ends
        // past them: the boundary is its end, not its start.
        let first_invalid = last_valid + 1;
        assert!(first_invalid.checked_mul(width).is_some());
        assert!((first_invalid * width).checked_add(width - 1).is_none());
        for (base, offset) in [
            (u64::MAX, 0),
            (u64::MAX, 1),             // base + offset overflows u64
            (1, u64::MAX),             // likewise
            (u64::MAX / width + 1, 0), // its start overflows
            (first_invalid, 0),        // its start fits, its end does not
            (0, first_invalid),        // the same, reached by the offset
            (last_valid, 1),           // likewise
            (last_valid - 5, 6),       // likewise
        ] {
            let m = delta_of(10, 20, resolution, base, vec![item(offset, 11)]);
            assert_eq!(
                decode(&encode(&m)),
                malformed("bucket_out_of_range"),
                "{resolution}: base {base} + offset {offset}"
            );
        }
        // The last valid bucket decodes, however it is reached, with a
        // reading in its last millisecond.
        let last_ms = last_valid * width + (width - 1);
        for (base, offset) in [(last_valid, 0), (last_valid - 1, 1), (0, last_valid)] {
            let edge = DeltaItem {
                first_offset_ms: width - 1,
                last_offset_ms: width - 1,
                ..item(offset, 11)
            };
            let m = delta_of(10, 20, resolution, base, vec![edge]);
            assert_eq!(
                decode(&encode(&m)),
                Ok(m.clone()),
                "{resolution}: {base} + {offset}"
            );
            let Message::Delta(d) = m else {
                unreachable!("delta_of builds a Delta")
            };
            let (key, entry) = d.entries().next().unwrap();
            assert_eq!(key.bucket, Bucket(last_valid));
            // Computed exactly, not saturated.
            assert_eq!(entry.summary.last_ts, Timestamp(last_ms));
        }
    }
}

#[test]
fn non_finite_floats_are_rejected_everywhere() {
    // Every float field of a delta item, an alert and a device frame, with
    // NaN (quiet, signalling, negative) and both infinities, in whatever
    // width the encoder picks (an f16 for ±∞ and the quiet NaNs, an f64 for
    // the signalling NaN, whose payload a narrower NaN cannot carry).
    let bad = [
        f64::NAN,
        -f64::NAN,
        f64::from_bits(0x7ff0_0000_0000_0001),
        f64::INFINITY,
        f64::NEG_INFINITY,
    ];
    for x in bad {
        for field in 0..4 {
            let mut it = item(0, 11);
            *[&mut it.sum, &mut it.min, &mut it.max, &mut it.sum_sq][field] = x;
            let m = delta_of(10, 20, Resolution::Minute, 5, vec![it]);
            assert_malformed(decode(&encode(&m)), "delta item float");
        }
        let window = Summary::of(Timestamp(1), 1.0).unwrap();
        let good = Alert {
            node: NodeId(1),
            sensor: SensorId(7),
            hlc: Hlc::from_u64(1 << 20),
            at: Timestamp(1),
            value: 1.0,
            score: 0.5,
            detector: DetectorKind::Range,
            window,
        };
        for field in 0..6 {
            let mut a = good.clone();
            match field {
                0 => a.value = x,
                1 => a.score = x,
                2 => a.window.sum = x,
                3 => a.window.min = x,
                4 => a.window.max = x,
                _ => a.window.sum_sq = x,
            }
            assert_malformed(decode(&encode(&Message::Alert(a))), "alert float");
        }
        let r = DeviceMessage::Readings(Readings {
            seq: 1,
            sensor: SensorId(7),
            base: Timestamp(0),
            samples: Samples(
                [
                    Sample {
                        offset_ms: 0,
                        value: 21.5,
                    },
                    Sample {
                        offset_ms: 1000,
                        value: x as f32,
                    },
                ]
                .into_iter()
                .collect(),
            ),
        });
        assert_eq!(
            decode_device(&device_bytes(&r)),
            Err(DecodeError::Malformed("non_finite_sample"))
        );
    }
    // Written by another encoder, in every width: a NaN with a payload only
    // an f64 carries, and NaN and ±∞ as f32 and f16. Refused as an alert's
    // value and as a sample.
    let raw: [&[u8]; 7] = [
        &[0xfb, 0x7f, 0xf8, 0xde, 0xad, 0xbe, 0xef, 0x00, 0x01],
        &[0xfa, 0x7f, 0xc0, 0x00, 0x00],
        &[0xfa, 0xff, 0x80, 0x00, 0x00],
        &[0xf9, 0x7e, 0x00],
        &[0xf9, 0x7d, 0x01],
        &[0xf9, 0x7c, 0x00],
        &[0xf9, 0xfc, 0x00],
    ];
    for x in raw {
        let mut e = message_head(4);
        e.array(8).unwrap();
        e.u8(1)
            .unwrap()
            .u8(7)
            .unwrap()
            .u8(1)
            .unwrap()
            .u8(1)
            .unwrap();
        let mut bytes = e.into_writer();
        bytes.extend_from_slice(x);
        // score 0.5 (f16), detector 6, an empty window
        bytes.extend_from_slice(&[0xf9, 0x38, 0x00, 0x06, 0x87, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(decode(&bytes), malformed("invalid_field"), "{x:02x?}");
        if x[0] == 0xfb {
            continue; // a sample is never an f64 (see below)
        }
        // [1, [seq 1, sensor 7, base 0, [[0, x]]]]
        let mut bytes = vec![
            WIRE_VERSION,
            0x82,
            0x01,
            0x84,
            0x01,
            0x07,
            0x00,
            0x81,
            0x82,
            0x00,
        ];
        bytes.extend_from_slice(x);
        assert_eq!(
            decode_device(&bytes),
            Err(DecodeError::Malformed("non_finite_sample")),
            "{x:02x?}"
        );
    }
}

#[test]
fn delta_with_an_impossible_summary_is_rejected() {
    let inverted = [
        DeltaItem {
            min: 22.0,
            max: 21.0,
            ..item(0, 11)
        },
        DeltaItem {
            first_offset_ms: 5,
            last_offset_ms: 4,
            ..item(0, 11)
        },
        DeltaItem {
            sum_sq: -1.0,
            ..item(0, 11)
        },
    ];
    for it in inverted {
        let m = delta_of(10, 20, Resolution::Minute, 5, vec![it]);
        // The label comes from `Summary::validate`.
        assert_eq!(decode(&encode(&m)), malformed("summary_bounds_inverted"));
    }
}

#[test]
fn alert_with_a_score_outside_the_unit_interval_is_rejected() {
    for score in [1.5, -0.25, 1.000_000_1, f64::MAX] {
        let a = Alert {
            node: NodeId(1),
            sensor: SensorId(7),
            hlc: Hlc::from_u64(1 << 20),
            at: Timestamp(1),
            value: 80.0,
            score,
            detector: DetectorKind::ZScore,
            window: Summary::EMPTY,
        };
        assert_eq!(
            decode(&encode(&Message::Alert(a))),
            malformed("score_out_of_range"),
            "score {score}"
        );
    }
}

#[test]
fn readings_with_more_than_max_samples_are_rejected() {
    for count in [MAX_SAMPLES + 1, 40] {
        for indefinite in [false, true] {
            let mut e = message_head(1);
            e.array(4)
                .unwrap()
                .u8(1)
                .unwrap()
                .u8(7)
                .unwrap()
                .u8(0)
                .unwrap();
            if indefinite {
                e.begin_array().unwrap();
            } else {
                e.array(count as u64).unwrap();
            }
            for i in 0..count {
                e.array(2)
                    .unwrap()
                    .u32(i as u32)
                    .unwrap()
                    .f32(21.5)
                    .unwrap();
            }
            if indefinite {
                e.end().unwrap();
            }
            let bytes = e.into_writer();
            assert!(bytes.len() <= MAX_DEVICE_MESSAGE);
            assert_eq!(
                decode_device(&bytes),
                Err(DecodeError::Malformed("invalid_field")),
                "{count} samples, indefinite: {indefinite}"
            );
        }
    }
}

#[test]
fn readings_whose_times_overflow_are_rejected() {
    let readings = |base, offsets: &[u32]| {
        DeviceMessage::Readings(Readings {
            seq: 1,
            sensor: SensorId(7),
            base: Timestamp(base),
            samples: Samples(
                offsets
                    .iter()
                    .map(|&offset_ms| Sample {
                        offset_ms,
                        value: 21.5,
                    })
                    .collect(),
            ),
        })
    };
    let max = u64::from(u32::MAX);
    // The largest offset counts, wherever it is in the batch.
    for (base, offsets) in [
        (u64::MAX, &[1][..]),
        (u64::MAX - max + 1, &[u32::MAX][..]),
        (u64::MAX - 999, &[0, 1_000, 0][..]),
        (u64::MAX - 999, &[2_000, 1_000][..]),
    ] {
        assert_eq!(
            decode_device(&device_bytes(&readings(base, offsets))),
            Err(DecodeError::Malformed("time_out_of_range")),
            "base {base}, offsets {offsets:?}"
        );
    }
    // Up to u64::MAX exactly is fine, and so is an empty batch at the end of time.
    for (base, offsets) in [
        (u64::MAX, &[0][..]),
        (u64::MAX, &[][..]),
        (u64::MAX - max, &[u32::MAX][..]),
        (u64::MAX - 2_000, &[0, 2_000, 1_000][..]),
    ] {
        let r = readings(base, offsets);
        assert_eq!(
            decode_device(&device_bytes(&r)),
            Ok(r),
            "base {base}, offsets {offsets:?}"
        );
    }
}

#[test]
fn window_with_a_summary_outside_its_bucket_is_rejected() {
    let resolution = Resolution::Minute;
    let bucket = Bucket(28_333_333);
    let start = bucket.start(resolution).0;
    for (first, last) in [(start - 1, start), (start, start + 60_000), (0, 1)] {
        let mut summary = Summary::of(Timestamp(first), 20.0).unwrap();
        summary.record(Timestamp(last), 21.0).unwrap();
        let w = DeviceMessage::Window(Window {
            seq: 1,
            sensor: SensorId(7),
            resolution,
            bucket,
            summary,
        });
        assert_eq!(
            decode_device(&device_bytes(&w)),
            Err(DecodeError::Malformed("time_outside_bucket")),
            "{first}..{last}"
        );
    }
}

#[test]
fn window_with_a_bucket_past_the_end_of_time_is_rejected() {
    let window = |resolution, bucket, summary| {
        DeviceMessage::Window(Window {
            seq: 1,
            sensor: SensorId(7),
            resolution,
            bucket: Bucket(bucket),
            summary,
        })
    };
    for resolution in Resolution::ALL {
        let width = resolution.millis();
        let last_valid = last_valid_bucket(resolution);
        // The next bucket starts inside u64 milliseconds but ends past
        // them; u64::MAX does not even start there.
        for bucket in [last_valid + 1, u64::MAX] {
            let w = window(resolution, bucket, Summary::EMPTY);
            assert_eq!(
                decode_device(&device_bytes(&w)),
                Err(DecodeError::Malformed("bucket_out_of_range")),
                "{resolution}: bucket {bucket}"
            );
        }
        // The last valid one decodes, empty or with readings at both ends.
        let start = last_valid * width;
        let mut summary = Summary::of(Timestamp(start), 20.0).unwrap();
        summary.record(Timestamp(start + width - 1), 21.0).unwrap();
        for s in [Summary::EMPTY, summary] {
            let w = window(resolution, last_valid, s);
            assert_eq!(decode_device(&device_bytes(&w)), Ok(w), "{resolution}");
        }
    }
}

#[test]
fn unknown_enum_indices_are_rejected() {
    // Index 6 is not (yet) a message type; -1 never is.
    for variant in [&[0x06][..], &[0x18, 0xff], &[0x20]] {
        let mut bytes = vec![WIRE_VERSION, 0x82];
        bytes.extend_from_slice(variant);
        bytes.push(0x80);
        assert_eq!(decode(&bytes), malformed("unknown_variant"));
        assert_eq!(
            decode_prefix(&bytes),
            Err(DecodeError::Malformed("unknown_variant"))
        );
    }
    // Device message type 5, likewise.
    assert_eq!(
        decode_device(&[WIRE_VERSION, 0x82, 0x05, 0x80]),
        Err(DecodeError::Malformed("unknown_variant"))
    );
    // The same label for an unknown index of a field-less enum inside a
    // message: resolution 4 in a Delta group and in a Window, detector 9 in
    // an Alert.
    for index in [0x04, 0x20] {
        // [2, [node 1, from 10, to 20, [[sensor 7, index, base 5, []]]]]
        let delta = [
            WIRE_VERSION,
            0x82,
            0x02,
            0x84,
            0x01,
            0x0a,
            0x14,
            0x81,
            0x84,
            0x07,
            index,
            0x05,
            0x80,
        ];
        assert_eq!(decode(&delta), malformed("unknown_variant"));
        // [2, [seq 1, sensor 7, index, bucket 5, [0, 0, 0, 0, 0, 0, 0]]]
        let window = [
            WIRE_VERSION,
            0x82,
            0x02,
            0x85,
            0x01,
            0x07,
            index,
            0x05,
            0x87,
            0,
            0,
            0,
            0,
            0,
            0,
            0,
        ];
        assert_eq!(
            decode_device(&window),
            Err(DecodeError::Malformed("unknown_variant"))
        );
    }
    // [4, [node 1, sensor 7, hlc 1, at 1, value 1.0, score 0.5, detector,
    // an empty window]]
    let alert = |detector: u8| {
        let mut bytes = message_head(4).into_writer();
        bytes.extend_from_slice(&[
            0x88, 0x01, 0x07, 0x01, 0x01, 0xf9, 0x3c, 0x00, 0xf9, 0x38, 0x00,
        ]);
        bytes.extend_from_slice(&[detector, 0x87, 0, 0, 0, 0, 0, 0, 0]);
        bytes
    };
    assert_eq!(decode(&alert(0x09)), malformed("unknown_variant"));
    // Detector 8, the last known one, decodes.
    assert!(matches!(
        decode(&alert(0x08)),
        Ok(Message::Alert(Alert {
            detector: DetectorKind::Ensemble,
            ..
        }))
    ));
}

#[test]
fn misshapen_cbor_gets_its_own_label() {
    // [3, [7]]: an Ack without its required `upto`.
    assert_eq!(
        decode(&[WIRE_VERSION, 0x82, 0x03, 0x81, 0x07]),
        malformed("missing_field")
    );
    // [3]: a message wrapper without its message.
    assert_eq!(
        decode(&[WIRE_VERSION, 0x81, 0x03]),
        malformed("missing_field")
    );
    assert_eq!(
        decode_device(&[WIRE_VERSION, 0x81, 0x03]),
        Err(DecodeError::Malformed("missing_field"))
    );
    // A text string where the node id should be.
    assert_eq!(
        decode(&[WIRE_VERSION, 0x82, 0x03, 0x82, 0x61, 0x41, 0x08]),
        malformed("cbor_type_mismatch")
    );
    // A bare type index where the message wrapper's array should be.
    assert_eq!(
        decode(&[WIRE_VERSION, 0x03]),
        malformed("cbor_type_mismatch")
    );
    // The message wrapper must be a definite-length, non-empty array:
    // [_ 3, [7, 8]] and [].
    assert_eq!(
        decode(&[WIRE_VERSION, 0x9f, 0x03, 0x82, 0x07, 0x08, 0xff]),
        malformed("invalid_field")
    );
    assert_eq!(decode(&[WIRE_VERSION, 0x80]), malformed("invalid_field"));
    assert_eq!(
        decode_device(&[WIRE_VERSION, 0x9f, 0x03, 0x82, 0x11, 0x06, 0xff]),
        Err(DecodeError::Malformed("invalid_field"))
    );
    // A credit that does not fit its u32.
    assert_eq!(
        decode(&[
            WIRE_VERSION,
            0x82,
            0x03,
            0x83,
            0x07,
            0x08,
            0x1b,
            1,
            0,
            0,
            0,
            0,
            0,
            0,
            0
        ]),
        malformed("cbor_syntax")
    );
    // A summary that is not a 7-array.
    let mut e = message_head(4);
    e.array(8).unwrap();
    e.u8(1)
        .unwrap()
        .u8(7)
        .unwrap()
        .u8(1)
        .unwrap()
        .u8(1)
        .unwrap();
    e.f32(1.0).unwrap().f32(0.5).unwrap().u8(6).unwrap();
    e.array(6).unwrap();
    for _ in 0..6 {
        e.u8(0).unwrap();
    }
    assert_eq!(decode(&e.into_writer()), malformed("invalid_field"));
}

// ------------------------------------------------------------ compatibility

#[test]
fn absent_optional_fields_are_omitted_and_null_is_accepted() {
    let ack = Message::Ack(Ack {
        node: NodeId(7),
        upto: 42,
        credit: None,
        alert: None,
    });
    // [3, [7, 42]]: a trailing None is left out, not written as null.
    assert_eq!(encode(&ack), [1, 0x82, 0x03, 0x82, 0x07, 0x18, 0x2a]);
    // Another encoder's explicit null decodes the same.
    assert_eq!(
        decode(&[1, 0x82, 0x03, 0x83, 0x07, 0x18, 0x2a, 0xf6]),
        Ok(ack)
    );
}

#[test]
fn unknown_trailing_fields_are_skipped() {
    // What a later minor revision adding an optional field sends: an older
    // decoder skips it, in the message and after the message in the
    // wrapper's array.
    let ack = Ok(Message::Ack(Ack {
        node: NodeId(7),
        upto: 42,
        credit: Some(1000),
        alert: None,
    }));
    // [3, [7, 42, 1000, null, "x", {1: 2}]]
    assert_eq!(
        decode(&[
            1, 0x82, 0x03, 0x86, 0x07, 0x18, 0x2a, 0x19, 0x03, 0xe8, 0xf6, 0x61, 0x78, 0xa1, 0x01,
            0x02
        ]),
        ack
    );
    // [3, [7, 42, 1000], h'']
    assert_eq!(
        decode(&[
            1, 0x83, 0x03, 0x83, 0x07, 0x18, 0x2a, 0x19, 0x03, 0xe8, 0x40
        ]),
        ack
    );
    assert_eq!(
        decode_device(&[1, 0x83, 0x03, 0x82, 0x11, 0x06, 0x40]),
        Ok(DeviceMessage::Ack(DeviceAck { boot: 17, upto: 6 }))
    );
    // Indefinite-length arrays are accepted for structs and lists alike.
    assert_eq!(
        decode(&[
            1, 0x82, 0x03, 0x9f, 0x07, 0x18, 0x2a, 0x19, 0x03, 0xe8, 0xff
        ]),
        ack
    );
}

/// How wide the encoder writes a float.
#[derive(Clone, Copy, Debug)]
enum Width {
    F16,
    F32,
    F64,
}

#[test]
fn floats_use_the_shortest_exact_encoding() {
    use Width::*;
    let two = |e: i32| 2f64.powi(e);
    let cases = [
        // Exact in an f16 (3 bytes): zeros, small readings, the extremes,
        // the smallest normal and subnormals.
        (0.0, F16),
        (-0.0, F16),
        (1.0, F16),
        (21.5, F16),
        (-40.0, F16),
        (0.5, F16),
        (65_504.0, F16),
        (-65_504.0, F16),
        (two(-14), F16),
        (two(-24), F16),
        (3.0 * two(-24), F16),
        // Exact in an f32 (5 bytes) but not in an f16: one significant bit
        // too many, too large (65 520 rounds to ∞ in an f16), too small.
        (1013.25, F32),
        (1.0 + two(-11), F32),
        (f64::from(21.37f32), F32),
        (65_520.0, F32),
        (f64::from(f32::MAX), F32),
        (two(-25), F32),
        (f64::from(f32::MIN_POSITIVE), F32),
        // Anything else (9 bytes).
        (0.1, F64),
        (21.37, F64),
        (1.0 + two(-24), F64),
        (1e300, F64),
        (f64::MAX, F64),
        (f64::MIN_POSITIVE, F64),
        (f64::from_bits(1), F64),
    ];
    for (value, width) in cases {
        let m = Message::Alert(Alert {
            node: NodeId(1),
            sensor: SensorId(1),
            hlc: Hlc::from_u64(0),
            at: Timestamp(0),
            value,
            score: 0.0,
            detector: DetectorKind::ZScore,
            window: Summary::EMPTY,
        });
        let bytes = encode(&m);
        // The value follows `01 82 04 88 01 01 00 00`; after it come the
        // score 0.0 (an f16, 3 bytes), the detector and the empty window (9).
        let expected: Vec<u8> = match width {
            F16 => {
                let mut v = vec![0xf9];
                v.extend_from_slice(&half::f16::from_f64(value).to_bits().to_be_bytes());
                v
            }
            F32 => {
                let mut v = vec![0xfa];
                v.extend_from_slice(&(value as f32).to_bits().to_be_bytes());
                v
            }
            F64 => {
                let mut v = vec![0xfb];
                v.extend_from_slice(&value.to_bits().to_be_bytes());
                v
            }
        };
        assert_eq!(&bytes[8..8 + expected.len()], &expected[..], "{value:e}");
        assert_eq!(bytes.len(), 8 + expected.len() + 3 + 9, "{value:e}");
        // Every bit survives, the sign of zero included.
        let Ok(Message::Alert(back)) = decode(&bytes) else {
            panic!("{value:e} does not decode")
        };
        assert_eq!(back.value.to_bits(), value.to_bits(), "{value:e}");
        assert_eq!(Message::Alert(back), m);
    }
}

#[test]
fn half_precision_floats_are_accepted() {
    // A foreign encoder's f16s decode wherever an f64 field goes: an
    // alert's value and score and its window's statistics.
    // [4, [node 1, sensor 7, hlc 1, at 1, 1.0, 0.5, detector 6,
    //      [1, 1.0, 1.0, 1.0, 1.0, 1, 1]]]
    let mut bytes = message_head(4).into_writer();
    bytes.extend_from_slice(&[0x88, 0x01, 0x07, 0x01, 0x01]);
    bytes.extend_from_slice(&[0xf9, 0x3c, 0x00, 0xf9, 0x38, 0x00, 0x06, 0x87, 0x01]);
    for _ in 0..4 {
        bytes.extend_from_slice(&[0xf9, 0x3c, 0x00]);
    }
    bytes.extend_from_slice(&[0x01, 0x01]);
    let alert = Message::Alert(Alert {
        node: NodeId(1),
        sensor: SensorId(7),
        hlc: Hlc::from_u64(1),
        at: Timestamp(1),
        value: 1.0,
        score: 0.5,
        detector: DetectorKind::Range,
        window: Summary::of(Timestamp(1), 1.0).unwrap(),
    });
    assert_eq!(decode(&bytes), Ok(alert.clone()));
    // They are exactly what this encoder writes for those values.
    assert_eq!(encode(&alert), bytes);
    // Wider forms of the same values decode to the same message (decoders
    // accept all three widths), and re-encode to the short form.
    let mut wide = message_head(4).into_writer();
    wide.extend_from_slice(&[0x88, 0x01, 0x07, 0x01, 0x01]);
    wide.extend_from_slice(&[0xfb, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0]); // 1.0
    wide.extend_from_slice(&[0xfa, 0x3f, 0x00, 0x00, 0x00, 0x06, 0x87, 0x01]); // 0.5
    for _ in 0..4 {
        wide.extend_from_slice(&[0xfa, 0x3f, 0x80, 0x00, 0x00]); // 1.0
    }
    wide.extend_from_slice(&[0x01, 0x01]);
    assert_eq!(decode(&wide), Ok(alert.clone()));
    assert_eq!(encode(&decode(&wide).unwrap()), bytes);
    // f16 subnormals and negative values decode exactly.
    for (raw, value) in [
        (0x0001_u16, 2f64.powi(-24)),
        (0x8000, -0.0),
        (0xd140, -42.0),
        (0x7bff, 65_504.0),
    ] {
        let mut b = message_head(4).into_writer();
        b.extend_from_slice(&[0x88, 0x01, 0x07, 0x01, 0x01, 0xf9]);
        b.extend_from_slice(&raw.to_be_bytes());
        b.extend_from_slice(&[0xf9, 0x38, 0x00, 0x06, 0x87, 0, 0, 0, 0, 0, 0, 0]);
        let Ok(Message::Alert(a)) = decode(&b) else {
            panic!("f16 {raw:04x} does not decode")
        };
        assert_eq!(a.value.to_bits(), value.to_bits(), "f16 {raw:04x}");
    }

    // A sample value is an f32 in memory: the encoder always writes an f32
    // (5 bytes, even for 21.5), decoders accept an f16 or an f32, but an
    // f64 is refused, even an exact one.
    // [1, [seq 1, sensor 7, base 0, [[0, value]]]]
    let readings = |value: &[u8]| {
        let mut b = vec![1, 0x82, 0x01, 0x84, 0x01, 0x07, 0x00, 0x81, 0x82, 0x00];
        b.extend_from_slice(value);
        b
    };
    let expected = DeviceMessage::Readings(Readings {
        seq: 1,
        sensor: SensorId(7),
        base: Timestamp(0),
        samples: Samples(
            [Sample {
                offset_ms: 0,
                value: 21.5,
            }]
            .into_iter()
            .collect(),
        ),
    });
    let as_f32 = readings(&[0xfa, 0x41, 0xac, 0x00, 0x00]);
    assert_eq!(device_bytes(&expected), as_f32);
    assert_eq!(decode_device(&as_f32), Ok(expected.clone()));
    assert_eq!(decode_device(&readings(&[0xf9, 0x4d, 0x60])), Ok(expected));
    assert_eq!(
        decode_device(&readings(&[0xfb, 0x40, 0x35, 0x80, 0, 0, 0, 0, 0])),
        Err(DecodeError::Malformed("cbor_type_mismatch"))
    );
}

#[test]
fn empty_summary_is_seven_zeros_and_any_filler_decodes_as_empty() {
    let alert = |window| {
        Message::Alert(Alert {
            node: NodeId(1),
            sensor: SensorId(7),
            hlc: Hlc::from_u64(5),
            at: Timestamp(1),
            value: 1.0,
            score: 0.5,
            detector: DetectorKind::Cusum,
            window,
        })
    };
    let bytes = encode(&alert(Summary::EMPTY));
    assert!(bytes.ends_with(&[0x87, 0, 0, 0, 0, 0, 0, 0]));
    assert_eq!(decode(&bytes), Ok(alert(Summary::EMPTY)));
    // A count of 0 ends the check; the rest only has to be six CBOR items.
    let mut other = bytes[..bytes.len() - 7].to_vec();
    other.extend_from_slice(&[0x00, 0xf6, 0xf9, 0x7e, 0x00, 0x61, 0x78, 0x80, 0xa0, 0x20]);
    assert_eq!(decode(&other), Ok(alert(Summary::EMPTY)));
}

#[test]
fn decode_error_reasons_are_stable_labels() {
    assert_eq!(DecodeError::Incomplete(3).reason(), "incomplete");
    assert_eq!(DecodeError::Malformed("truncated").reason(), "truncated");
    assert_eq!(
        DecodeError::UnsupportedVersion(2).reason(),
        "unsupported_version"
    );
    assert_eq!(
        DecodeError::TooLarge { len: 2, max: 1 }.reason(),
        "too_large"
    );
}

// ------------------------------------------------------------- size budget

/// A tiny deterministic noise source (xorshift64), so the size is the same
/// on every run.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn a_one_minute_delta_entry_costs_at_most_48_bytes() {
    const MINUTES: u64 = 60;
    let node = NodeId(0x0123_4567_89ab_cdef);
    let sensor = SensorId(7);
    let first_minute = 28_333_334; // 2023-11-14T22:14Z
    let mut noise = Noise(0x2545_f491_4f6c_dd1d);
    let mut entries = Vec::new();
    for m in 0..MINUTES {
        let key = Key::new(sensor, Resolution::Minute, Bucket(first_minute + m));
        let start = key.bucket.start(Resolution::Minute).0;
        let mut summary = Summary::EMPTY;
        for s in 0..60 {
            // 20.00 ± 1.50, two decimals, as an f32 sensor reports it.
            let hundredths = 2_000 + (noise.next() % 301) as i32 - 150;
            let reading = f64::from(hundredths as f32 / 100.0);
            // 1 Hz, sampled a quarter second into each second.
            summary
                .record(Timestamp(start + s * 1_000 + 250), reading)
                .unwrap();
        }
        // A gateway bumps the version four times per reading (one per
        // resolution), so the minute's last write is in the thousands.
        let version = 5_000 + m * 240 + 239;
        entries.push((key, Entry { version, summary }));
    }
    let delta = Delta::from_entries(node, 4_999, 5_000 + MINUTES * 240, entries.clone());
    let m = Message::Delta(delta);
    let bytes = encode(&m);
    assert_eq!(decode(&bytes), Ok(m));
    let per_entry = bytes.len() as f64 / MINUTES as f64;
    let empty = encode(&Message::Delta(Delta::from_entries(node, 4_999, 5_000, [])));
    let one = encode(&Message::Delta(Delta::from_entries(
        node,
        4_999,
        5_000 + MINUTES * 240,
        entries.into_iter().take(1),
    )));
    // Printed before the check, so that a failure shows which field grew.
    let hex: std::string::String = bytes.iter().take(80).map(|b| format!("{b:02x}")).collect();
    println!(
        "one-minute delta entries: {per_entry:.2} bytes each on average ({} bytes for {MINUTES}); \
         an empty delta is {} bytes, a one-entry delta {}; first bytes: {hex}",
        bytes.len(),
        empty.len(),
        one.len(),
    );
    assert!(per_entry <= 48.0, "{per_entry:.2} bytes per entry");
}
