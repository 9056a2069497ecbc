//! Arbitrary bytes as an uploaded image: sniff, header limits, decode,
//! grayscale, Haar detection, crops (`emotion_ai::fuzzing::image_decode_detect`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    emotion_ai::fuzzing::image_decode_detect(data);
});
