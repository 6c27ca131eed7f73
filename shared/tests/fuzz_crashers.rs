//! Regression inputs for the decoders: every file in `tests/fuzz-crashers/`
//! (minimised fuzzing crashes and hand-made hostile inputs, see its README)
//! goes through every decoder. Passing means nothing panicked; whether an
//! input is accepted or rejected is each decoder's own tests' business.

use std::fs;
use std::path::{Path, PathBuf};

use tributary_core::codec::frame::{FrameDecoder, MAX_FRAME_PAYLOAD};
use tributary_core::codec::v1;

/// Every crasher file, sorted so that failures name the same file each run.
fn crashers() -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-crashers");
    let mut paths: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.expect("listing fuzz-crashers").path())
        .filter(|path| path.is_file() && path.file_name().is_some_and(|n| n != "README.md"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no crashers in {}", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            (path, bytes)
        })
        .collect()
}

/// Runs every message decoder over `bytes`, discarding the results.
fn decode_messages(bytes: &[u8]) {
    let _ = v1::decode_device(bytes);
    #[cfg(feature = "alloc")]
    let _ = v1::decode(bytes);
}

/// Frames in a file are decoded as one chunk, in small chunks (the decoder
/// must not care), and every payload that comes out also goes through the
/// message decoders, as on a real UART.
#[test]
fn frame_decoder_survives_every_crasher() {
    for (path, bytes) in crashers() {
        for chunk in [bytes.len().max(1), 1, 7] {
            // The default capacity, and a tiny one that makes every input overlong.
            let mut big = FrameDecoder::<MAX_FRAME_PAYLOAD>::new();
            let mut tiny = FrameDecoder::<8>::new();
            for piece in bytes.chunks(chunk) {
                let mut input = piece;
                while let Some(frame) = big.feed(&mut input) {
                    if let Ok(payload) = frame {
                        decode_messages(payload);
                    }
                }
                let mut input = piece;
                while tiny.feed(&mut input).is_some() {}
            }
        }
        eprintln!("frame decoder ok: {}", path.display());
    }
}

#[test]
fn message_decoders_survive_every_crasher() {
    for (path, bytes) in crashers() {
        decode_messages(&bytes);
        eprintln!("message decoders ok: {}", path.display());
    }
}
