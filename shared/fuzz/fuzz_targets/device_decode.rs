//! Arbitrary bytes as a v1 device message (a UART frame's payload): decoding
//! must never panic, and a message it accepts must re-encode, without an
//! allocator, to bytes that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary_core::codec::v1;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = v1::decode_device(data) {
        let mut out = [0u8; v1::MAX_DEVICE_MESSAGE];
        let len = v1::encode_device(&msg, &mut out).expect("MAX_DEVICE_MESSAGE fits every message");
        assert_eq!(v1::decode_device(&out[..len]), Ok(msg));
    }
});
