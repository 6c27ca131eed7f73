//! Arbitrary bytes as a v1 wire message: decoding must never panic, and a
//! message it accepts must re-encode to bytes that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tributary_core::codec::v1;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = v1::decode(data) {
        let bytes = v1::encode(&msg);
        assert_eq!(v1::decode(&bytes), Ok(msg));
    }
});
