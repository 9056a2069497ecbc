//! The work the fuzz targets in `fuzz/` exercise, in the library so that the
//! test suite can replay their committed corpora on stable Rust
//! (`tests/fuzz_corpus.rs`) and every crash fuzzing ever found stays fixed.
//!
//! Each function takes arbitrary bytes, runs them through the same code an
//! upload takes, and panics only if an invariant breaks: anything that is not
//! a clean `Ok` or a typed error is a bug.

use std::cell::RefCell;
use std::path::Path;

use crate::decode::audio::decode_audio;
use crate::decode::{decode_image, ImageLimits};
use crate::detect::{crop_face, DetectParams, FaceDetector, DEFAULT_CASCADE};
use crate::features::{MfccConfig, MfccExtractor};
use crate::model::FACE_SIZE;
use crate::speech::SpeechAnalyser;

/// Longest clip the audio target decodes: long enough to pass the limit
/// check's code paths, short enough to keep fuzzing fast.
pub const FUZZ_MAX_AUDIO_SECONDS: f64 = 20.0;

thread_local! {
    /// One cascade per thread, loaded on first use (loading takes ~50 ms).
    static DETECTOR: RefCell<Option<FaceDetector>> = const { RefCell::new(None) };
    /// The FFT plan, filterbank and DCT, built once per thread.
    static MFCC: MfccExtractor = MfccExtractor::new(MfccConfig::voice());
    /// The speech check's frame analysis (pitch, spectra), built once per thread.
    static SPEECH: SpeechAnalyser = SpeechAnalyser::new(MfccConfig::voice().sample_rate);
}

/// Image upload path: decode (with the server's limits), detect faces, crop
/// them. Returns the number of faces found.
pub fn image_decode_detect(bytes: &[u8]) -> usize {
    let limits = ImageLimits::default();
    let Ok(decoded) = decode_image(bytes, limits) else { return 0 };
    let (width, height) = decoded.gray.dimensions();
    assert!(width > 0 && height > 0, "decoded an empty image");
    assert!(u64::from(width) * u64::from(height) <= limits.max_pixels, "{width}x{height} passed the pixel limit");
    assert!(width.max(height) <= limits.max_side, "{width}x{height} passed the side limit");
    DETECTOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let detector = slot.get_or_insert_with(|| {
            FaceDetector::new(Path::new(DEFAULT_CASCADE), DetectParams::default())
                .expect("the Haar cascade (scripts/setup.sh installs it)")
        });
        let boxes = detector.detect(&decoded.gray).expect("detection of a decoded image");
        for face in &boxes {
            assert!(face.width > 0 && face.height > 0, "empty box {face:?}");
            assert!(
                face.x + face.width <= width && face.y + face.height <= height,
                "{face:?} outside {width}x{height}"
            );
            let crop = crop_face(&decoded.gray, *face);
            assert_eq!(crop.dimensions(), (FACE_SIZE as u32, FACE_SIZE as u32));
        }
        boxes.len()
    })
}

/// Audio upload path: decode to 16 kHz mono (with a duration limit), then
/// the MFCC map and the speech check's statistics. Returns the number of samples decoded.
pub fn audio_decode_mfcc(bytes: &[u8]) -> usize {
    let config = MfccConfig::voice();
    let Ok(audio) = decode_audio(bytes, config.sample_rate, FUZZ_MAX_AUDIO_SECONDS) else { return 0 };
    assert_eq!(audio.sample_rate, config.sample_rate);
    assert!(audio.duration() <= FUZZ_MAX_AUDIO_SECONDS + 1.0, "{} s passed the limit", audio.duration());
    assert!(audio.samples.iter().all(|s| s.is_finite()), "non-finite samples came out of the decoder");
    let mfcc = MFCC.with(|extractor| extractor.compute(&audio.samples));
    assert_eq!(mfcc.frames, config.frames_for(audio.samples.len()));
    assert!(mfcc.data.iter().all(|c| c.is_finite()), "non-finite MFCCs");
    if let Some(features) = SPEECH.with(|analyser| analyser.features(&audio.samples)) {
        assert!(features.values.iter().all(|v| v.is_finite()), "non-finite speech-check statistics");
    }
    audio.samples.len()
}
