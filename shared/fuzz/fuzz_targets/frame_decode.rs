//! Arbitrary bytes through the streaming frame decoder, in two chunks split
//! where the first input byte says, must never panic, must give the same
//! results as byte-at-a-time feeding, and every payload it accepts must
//! survive a re-encode and decode unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary_core::codec::frame::{FrameDecoder, FrameError, encode_to_vec};

/// Small, so that inputs reach the too-long path as well as good frames.
const CAP: usize = 64;

type Outcome = Result<Vec<u8>, FrameError>;

fuzz_target!(|data: &[u8]| {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let split = stream.len() * usize::from(first) / usize::from(u8::MAX);
    let (head, tail) = stream.split_at(split);

    let mut decoder = FrameDecoder::<CAP>::new();
    let mut chunked: Vec<Outcome> = Vec::new();
    for mut chunk in [head, tail] {
        while let Some(frame) = decoder.feed(&mut chunk) {
            chunked.push(frame.map(<[u8]>::to_vec));
        }
    }

    let mut decoder = FrameDecoder::<CAP>::new();
    let by_byte: Vec<Outcome> = stream
        .iter()
        .filter_map(|&b| decoder.feed_byte(b).map(|frame| frame.map(<[u8]>::to_vec)))
        .collect();
    assert_eq!(chunked, by_byte, "results depend on chunking");

    for payload in chunked.iter().filter_map(|r| r.as_ref().ok()) {
        assert!(!payload.is_empty() && payload.len() <= CAP);
        let wire = encode_to_vec(payload).expect("a decoded payload is never empty");
        let mut check = FrameDecoder::<CAP>::new();
        let mut input = wire.as_slice();
        assert_eq!(check.feed(&mut input), Some(Ok(payload.as_slice())));
        assert!(input.is_empty(), "one frame, one delimiter");
    }
});
