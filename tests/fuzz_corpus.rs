//! Replays the fuzz targets' committed inputs (seeds, and any input that once
//! crashed them, kept under `fuzz/regressions/`) through the same functions
//! the targets call, on stable Rust: what fuzzing found stays fixed.

use std::path::{Path, PathBuf};

/// The committed inputs of `target`: the corpus's seeds (the fuzzer's own
/// finds there are not committed) and every kept regression.
fn inputs(target: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let files_in = |dir: PathBuf, keep: &dyn Fn(&str) -> bool| -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        entries
            .flatten()
            .filter(|e| e.path().is_file() && keep(&e.file_name().to_string_lossy()))
            .map(|e| e.path())
            .collect()
    };
    let mut files = files_in(root.join("corpus").join(target), &|name| name.starts_with("seed-"));
    files.extend(files_in(root.join("regressions").join(target), &|_| true));
    files.sort();
    files
}

#[test]
fn image_seeds_and_regressions_decode_and_detect_cleanly() {
    let files = inputs("image_decode_detect");
    assert!(files.len() >= 8, "seed corpus missing: {files:?} (cargo run --release --example make_fuzz_seeds)");
    let mut faces = 0;
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        faces += emotion_ai::fuzzing::image_decode_detect(&bytes);
        // Every prefix too: truncation anywhere is handled.
        for cut in [1, bytes.len() / 3, bytes.len() / 2, bytes.len().saturating_sub(1)] {
            emotion_ai::fuzzing::image_decode_detect(&bytes[..cut.min(bytes.len())]);
        }
    }
    assert!(faces >= 1, "the face seed reaches detection and cropping");
}

#[test]
fn audio_seeds_and_regressions_decode_to_mfccs_cleanly() {
    let files = inputs("audio_decode_mfcc");
    assert!(files.len() >= 8, "seed corpus missing: {files:?} (cargo run --release --example make_fuzz_seeds)");
    let mut decoded = 0;
    for file in &files {
        let bytes = std::fs::read(file).unwrap();
        if emotion_ai::fuzzing::audio_decode_mfcc(&bytes) > 0 {
            decoded += 1;
        }
        for cut in [1, bytes.len() / 3, bytes.len() / 2, bytes.len().saturating_sub(1)] {
            emotion_ai::fuzzing::audio_decode_mfcc(&bytes[..cut.min(bytes.len())]);
        }
    }
    assert!(decoded >= 8, "every seed format decodes ({decoded} of {})", files.len());
}
