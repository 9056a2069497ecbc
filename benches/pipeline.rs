//! Criterion benchmarks of each stage and of whole requests, on the CPU with
//! the shipped models: `cargo bench --bench pipeline`. Results and the
//! machine they were taken on are in BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use emotion_ai::decode::{decode_image, ImageLimits};
use emotion_ai::detect::centerface::{CenterFace, CenterFaceParams, DEFAULT_CENTERFACE};
use emotion_ai::detect::{DetectParams, DetectorChoice, FaceDetector, DEFAULT_CASCADE};
use emotion_ai::features::{MfccConfig, MfccExtractor};
use emotion_ai::model::face_embedder::{FaceSexHeadModel, DEFAULT_FACE_EMBEDDER};
use emotion_ai::model::vad::{SileroVad, DEFAULT_SILERO_VAD};
use emotion_ai::model::verifier::FaceVerifier;
use emotion_ai::model::voice::{LoadedVoiceModel, VoiceClassifier};
use emotion_ai::model::LoadedFaceModel;
use emotion_ai::predict::{Analyzer, AnalyzerConfig};
use emotion_ai::speech::{SpeechDetector, SpeechFeaturizer};
use emotion_ai::web::{self, AppState, ServerLimits};
use tch::Tensor;
use tower::ServiceExt;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(root().join("tests/fixtures").join(name)).expect("fixture")
}

/// `seconds` of the 16 kHz speech fixture, repeated.
fn speech(seconds: usize) -> Vec<f32> {
    let bytes = fixture("speech.wav");
    let data = bytes.windows(4).position(|w| w == b"data").expect("data chunk") + 8;
    let one: Vec<f32> =
        bytes[data..].chunks_exact(2).map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0).collect();
    one.iter().copied().cycle().take(seconds * 16_000).collect()
}

fn wav_bytes(samples: &[f32]) -> Vec<u8> {
    emotion_ai::decode::audio::pcm16_wav(samples, 16_000)
}

fn stages(c: &mut Criterion) {
    // One intra-op thread, as each server worker uses.
    tch::set_num_threads(1);
    // MFCC on one thread, as the server computes each 3 s window, and for a
    // whole clip split over the cores.
    let extractor = MfccExtractor::new(MfccConfig::voice());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all_cores = MfccExtractor::new(MfccConfig::voice()).with_threads(cores);
    for seconds in [3, 10, 60] {
        let clip = speech(seconds);
        c.bench_function(&format!("mfcc/{seconds}s"), |b| b.iter(|| extractor.compute(&clip)));
        c.bench_function(&format!("mfcc_all_cores/{seconds}s"), |b| b.iter(|| all_cores.compute(&clip)));
    }

    let portrait = decode_image(&fixture("portrait_640x480.jpg"), ImageLimits::default()).expect("portrait");
    let mut detector = FaceDetector::new(Path::new(DEFAULT_CASCADE), DetectParams::default()).expect("cascade");
    assert_eq!(detector.detect(&portrait.gray).expect("detect").len(), 1, "one face in the benchmark portrait");
    c.bench_function("detect/640x480", |b| b.iter(|| detector.detect(&portrait.gray).expect("detect")));
    let mirrored = DetectParams { mirror_pass: true, ..DetectParams::default() };
    let mut with_mirror = FaceDetector::new(Path::new(DEFAULT_CASCADE), mirrored).expect("cascade");
    c.bench_function("detect/640x480_with_mirror_pass", |b| {
        b.iter(|| with_mirror.detect(&portrait.gray).expect("detect"))
    });
    // The request with the mirror pass is measured by the request rows
    // below with BENCH_MIRROR_PASS=1 (and --detector haar).
    let mut centerface = CenterFace::new(Path::new(DEFAULT_CENTERFACE), CenterFaceParams::default())
        .expect("CenterFace (scripts/setup.sh)");
    c.bench_function("detect/640x480_centerface", |b| b.iter(|| centerface.detect(&portrait.gray).expect("detect")));
    // CenterFace reading the whole 640x480 rather than its 480 px copy.
    let full = CenterFaceParams { max_side: 640, ..CenterFaceParams::default() };
    let mut centerface_full = CenterFace::new(Path::new(DEFAULT_CENTERFACE), full).expect("CenterFace");
    c.bench_function("detect/640x480_centerface_at_640", |b| {
        b.iter(|| centerface_full.detect(&portrait.gray).expect("detect"))
    });
    c.bench_function("decode/jpeg_640x480", |b| {
        let jpeg = fixture("portrait_640x480.jpg");
        b.iter(|| decode_image(&jpeg, ImageLimits::default()).expect("decode"))
    });

    let models = root().join("models");
    let face = LoadedFaceModel::load(&models.join("face_emotion.safetensors")).expect("face model");
    let sex = LoadedFaceModel::load(&models.join("face_sex.safetensors")).expect("sex model");
    let voice = LoadedVoiceModel::load(&models.join("voice_emotion.safetensors")).expect("voice model");
    let one_face = Tensor::rand([1, 1, 48, 48], (tch::Kind::Float, tch::Device::Cpu)) * 255.0;
    c.bench_function("forward/face_emotion", |b| b.iter(|| face.net.predict_proba(&one_face)));
    let side = sex.card.architecture.input_size;
    let sex_face = Tensor::rand([1, 1, side, side], (tch::Kind::Float, tch::Device::Cpu)) * 255.0;
    c.bench_function("forward/face_sex", |b| b.iter(|| sex.net.predict_proba(&sex_face)));
    let verifier = FaceVerifier::load(&models.join("face_verifier.safetensors")).expect("face verifier");
    c.bench_function("forward/face_verifier", |b| b.iter(|| verifier.face_probabilities(&one_face).expect("verify")));
    let head = FaceSexHeadModel::load(&models.join("face_sex_head.safetensors"), Path::new(DEFAULT_FACE_EMBEDDER))
        .expect("face sex head (scripts/setup.sh installs the embedder)");
    let head_crop = vec![image::GrayImage::from_pixel(150, 150, image::Luma([128]))];
    c.bench_function("forward/face_sex_head", |b| b.iter(|| head.male_probabilities(&head_crop).expect("head")));
    // The served input: the card's spectral rows (log-mel bands) and pitch
    // rows of one 3 s window, then the networks on a map of that shape.
    let served_input = voice.card.input.extractor();
    let clip = speech(3);
    c.bench_function("features/voice_3s_window", |b| b.iter(|| served_input.compute(&clip)));
    let window = Tensor::randn([1, voice.card.input.rows() as i64, 300], (tch::Kind::Float, tch::Device::Cpu));
    c.bench_function("forward/voice_3s_window", |b| b.iter(|| voice.net.predict_proba(&window)));
    // The speech check of a 10 s clip's eight windows: its own statistics,
    // and Silero VAD on the same windows (what a card with VAD statistics adds).
    let ten = speech(10);
    let spans: Vec<(usize, usize)> = (0..8).map(|i| (i * 16_000, i * 16_000 + 48_000)).collect();
    let statistics = SpeechFeaturizer::new(16_000, None).expect("featurizer");
    c.bench_function("speech_check/statistics_10s", |b| {
        b.iter(|| statistics.window_features(&ten, &spans).expect("statistics"))
    });
    let vad = SileroVad::load(Path::new(DEFAULT_SILERO_VAD)).expect("Silero VAD (scripts/setup.sh)");
    let slices: Vec<&[f32]> = spans.iter().map(|&(s, e)| &ten[s..e]).collect();
    c.bench_function("speech_check/silero_vad_10s", |b| b.iter(|| vad.probabilities_of_each(&slices).expect("VAD")));
    // The shipped check as served: the statistics, and the VAD only on the
    // windows in its gate's band.
    let served = SpeechDetector::load(&root().join("models/speech_check.json"), Path::new(DEFAULT_SILERO_VAD))
        .expect("speech check (scripts/setup.sh installs Silero VAD)");
    c.bench_function("speech_check/served_10s", |b| b.iter(|| served.check_windows(&ten, &spans).expect("check")));
}

/// The app's state with the models `config` names (`what` says which, if
/// they fail to load).
fn serving(config: AnalyzerConfig, what: &str) -> AppState {
    let analyzer = Analyzer::load(config).unwrap_or_else(|e| panic!("{what}: {e:#}"));
    AppState::new(Arc::new(analyzer), ServerLimits::default(), root().join("static"), root().join("assets"))
}

fn requests(c: &mut Criterion) {
    tch::set_num_threads(1);
    let mut config = AnalyzerConfig::with_models_dir(&root().join("models"));
    if std::env::var_os("BENCH_MIRROR_PASS").is_some() {
        config.detect.mirror_pass = true;
        config.detector = DetectorChoice::Haar(PathBuf::from(DEFAULT_CASCADE));
    }
    let state = serving(config, "models");
    // The pipeline before issue 15 (cascade at 3 neighbours, no mirror pass,
    // every candidate kept), measured in the same run for a fair comparison.
    let mut before = AnalyzerConfig::with_models_dir(&root().join("models"));
    before.face_verifier_model = None;
    before.detector = DetectorChoice::Haar(PathBuf::from(DEFAULT_CASCADE));
    before.detect.min_neighbors = 3;
    before.detect.mirror_pass = false;
    before.fallback_detector = None;
    let before = serving(before, "models");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let boundary = "bench-boundary";
    let multipart = |bytes: &[u8]| {
        let mut body = format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"x\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .into_bytes();
        body.extend_from_slice(bytes);
        body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
        body
    };
    // Another face-sex model to compare in the same run (say the one before
    // a change: `git show REV:models/face_sex.safetensors`, and its card).
    let other_sex = std::env::var_os("BENCH_FACE_SEX_MODEL").map(|weights| {
        let mut config = AnalyzerConfig::with_models_dir(&root().join("models"));
        config.face_sex_model = weights.into();
        serving(config, "BENCH_FACE_SEX_MODEL")
    });
    // The detectors a user can choose instead of the default CenterFace:
    // `--detector haar-then-centerface` (the default before) and `haar`.
    let mut haar_then_centerface = AnalyzerConfig::with_models_dir(&root().join("models"));
    haar_then_centerface.detector = DetectorChoice::Haar(PathBuf::from(DEFAULT_CASCADE));
    haar_then_centerface.fallback_detector = Some(DetectorChoice::CenterFace(PathBuf::from(DEFAULT_CENTERFACE)));
    let haar_then_centerface = serving(haar_then_centerface, "models");
    let mut cascade_only = AnalyzerConfig::with_models_dir(&root().join("models"));
    cascade_only.detector = DetectorChoice::Haar(PathBuf::from(DEFAULT_CASCADE));
    let cascade_only = serving(cascade_only, "models");
    // Clips without the voice sex head (the network's own sex, as before it).
    let mut without_sex_head = AnalyzerConfig::with_models_dir(&root().join("models"));
    without_sex_head.voice_sex_model = None;
    let without_sex_head = serving(without_sex_head, "models");
    // Faces without the face sex head (the network's own sex, as before it).
    let mut without_face_sex_head = AnalyzerConfig::with_models_dir(&root().join("models"));
    without_face_sex_head.face_sex_head_model = None;
    let without_face_sex_head = serving(without_face_sex_head, "models");
    let (ok, no_face) = (StatusCode::OK, StatusCode::UNPROCESSABLE_ENTITY);
    let mut inputs = vec![
        ("request/image_640x480_one_face", fixture("portrait_640x480.jpg"), &state, ok),
        (
            "request/image_640x480_one_face_haar_then_centerface",
            fixture("portrait_640x480.jpg"),
            &haar_then_centerface,
            ok,
        ),
        ("request/image_640x480_one_face_cascade_only", fixture("portrait_640x480.jpg"), &cascade_only, ok),
        (
            "request/image_640x480_one_face_without_face_sex_head",
            fixture("portrait_640x480.jpg"),
            &without_face_sex_head,
            ok,
        ),
        ("request/image_640x480_one_face_without_verifier", fixture("portrait_640x480.jpg"), &before, ok),
        ("request/image_300x200_no_face", fixture("coffee.jpg"), &state, no_face),
        ("request/image_300x200_no_face_haar_then_centerface", fixture("coffee.jpg"), &haar_then_centerface, no_face),
        ("request/image_300x200_no_face_cascade_only", fixture("coffee.jpg"), &cascade_only, no_face),
        ("request/clip_3s_wav", wav_bytes(&speech(3)), &state, ok),
        ("request/clip_10s_wav", wav_bytes(&speech(10)), &state, ok),
        ("request/clip_3s_wav_without_voice_sex_head", wav_bytes(&speech(3)), &without_sex_head, ok),
        ("request/clip_10s_wav_without_voice_sex_head", wav_bytes(&speech(10)), &without_sex_head, ok),
    ];
    if let Some(other) = &other_sex {
        inputs
            .insert(1, ("request/image_640x480_one_face_other_sex_model", fixture("portrait_640x480.jpg"), other, ok));
    }
    for (name, bytes, state, expected) in inputs {
        let body = multipart(&bytes);
        c.bench_function(name, |b| {
            b.iter_batched(
                || {
                    Request::post("/api/v1/predict")
                        .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={boundary}"))
                        .body(Body::from(body.clone()))
                        .expect("request")
                },
                |request| {
                    let response = runtime.block_on(web::app(state.clone()).oneshot(request)).expect("response");
                    assert_eq!(response.status(), expected, "{name}");
                },
                BatchSize::SmallInput,
            )
        });
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(6));
    targets = stages, requests
}
criterion_main!(benches);
