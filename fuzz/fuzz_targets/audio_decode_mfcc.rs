//! Arbitrary bytes as an uploaded clip: container probe, decode, mono mix,
//! resampling to 16 kHz, duration limit, MFCCs
//! (`emotion_ai::fuzzing::audio_decode_mfcc`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    emotion_ai::fuzzing::audio_decode_mfcc(data);
});
