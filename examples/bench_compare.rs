//! The Rust half of `scripts/bench_vs_python.sh`: times MFCC extraction and
//! Haar face detection on the inputs the Python half times (it writes the
//! clips it used as WAV files so both read identical samples), and prints
//! the medians as JSON.
//!
//! `cargo run --release --example bench_compare -- OUT_DIR`

use std::path::{Path, PathBuf};
use std::time::Instant;

use emotion_ai::decode::{decode_image, ImageLimits};
use emotion_ai::detect::{DetectParams, FaceDetector, DEFAULT_CASCADE};
use emotion_ai::features::{MfccConfig, MfccExtractor};
use serde_json::json;

/// Median wall time of `runs` calls of `work`, in ms, after untimed calls
/// for at least half a second (and at least 3): on this virtual machine an
/// idle second core takes a while to wake, and the first calls pay for it.
/// `scripts/bench_python.py` times the Python side the same way.
fn median_ms(runs: usize, mut work: impl FnMut()) -> f64 {
    let warmup = Instant::now();
    let mut calls = 0;
    while calls < 3 || warmup.elapsed().as_secs_f64() < 0.5 {
        work();
        calls += 1;
    }
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            work();
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Timed calls per measurement.
const RUNS: usize = 100;

fn write_wav(path: &Path, samples: &[f32]) -> anyhow::Result<()> {
    std::fs::write(path, emotion_ai::decode::audio::pcm16_wav(samples, 16_000))?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "target/bench".into()));
    std::fs::create_dir_all(&out)?;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");

    // The speech fixture repeated to 3, 10 and 60 s, quantised to 16 bits as
    // written, so Rust and Python see the same samples.
    let bytes = std::fs::read(fixtures.join("speech.wav"))?;
    let data = bytes.windows(4).position(|w| w == b"data").ok_or_else(|| anyhow::anyhow!("no data chunk"))? + 8;
    let speech: Vec<f32> =
        bytes[data..].chunks_exact(2).map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0).collect();
    // Both ways: on one thread (as the server computes each window) and
    // split over the cores (as for one whole clip).
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let one_thread = MfccExtractor::new(MfccConfig::voice());
    let all_cores = MfccExtractor::new(MfccConfig::voice()).with_threads(cores);
    let mut results = serde_json::Map::new();
    results.insert("cores".into(), json!(cores));
    for seconds in [3usize, 10, 60] {
        let clip: Vec<f32> = speech.iter().copied().cycle().take(seconds * 16_000).collect();
        let clip: Vec<f32> = clip.iter().map(|s| (s * 32767.0).round() / 32767.0).collect();
        write_wav(&out.join(format!("speech_{seconds}s.wav")), &clip)?;
        let ms = median_ms(RUNS, || {
            std::hint::black_box(all_cores.compute(&clip));
        });
        results.insert(format!("mfcc_{seconds}s"), json!(ms));
        let ms = median_ms(RUNS, || {
            std::hint::black_box(one_thread.compute(&clip));
        });
        results.insert(format!("mfcc_{seconds}s_one_thread"), json!(ms));
    }

    let params = DetectParams::default();
    let mut detector = FaceDetector::new(Path::new(DEFAULT_CASCADE), params)?;
    for name in ["portrait_640x480.jpg", "group.jpg"] {
        let decoded = decode_image(&std::fs::read(fixtures.join(name))?, ImageLimits::default())?;
        let faces = detector.detect(&decoded.gray)?.len();
        let ms = median_ms(RUNS, || {
            std::hint::black_box(detector.detect(&decoded.gray).expect("detect"));
        });
        let stem = name.trim_end_matches(".jpg");
        results.insert(format!("detect_{stem}"), json!(ms));
        results.insert(format!("detect_{stem}_faces"), json!(faces));
    }
    results.insert(
        "detect_params".into(),
        json!({ "cascade": DEFAULT_CASCADE, "scale_factor": params.scale_factor, "min_neighbors": params.min_neighbors,
                "min_face_fraction": params.min_face_fraction, "min_face_pixels": params.min_face_pixels,
                "max_side": params.max_side }),
    );
    println!("{}", serde_json::Value::Object(results));
    Ok(())
}
