//! Shared helpers of the integration tests: the shipped models loaded once per
//! test binary, fixtures, and multipart request building.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::body::{to_bytes, Body};
use axum::http::{header, Request};
use axum::response::Response;
use emotion_ai::predict::{Analyzer, AnalyzerConfig};
use emotion_ai::web::{self, AppState, ServerLimits};
use serde_json::Value;
use tower::ServiceExt;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(name: &str) -> Vec<u8> {
    let path = root().join("tests/fixtures").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// The shipped models, loaded once per test binary.
pub fn analyzer() -> Arc<Analyzer> {
    static ANALYZER: OnceLock<Arc<Analyzer>> = OnceLock::new();
    ANALYZER
        .get_or_init(|| {
            let config = AnalyzerConfig::with_models_dir(&root().join("models"));
            Arc::new(Analyzer::load(config).expect("loading shipped models (run scripts/setup.sh)"))
        })
        .clone()
}

pub fn state_with(limits: ServerLimits) -> AppState {
    AppState::new(analyzer(), limits, web::default_static_dir(), web::samples::default_assets_dir())
}

pub fn state() -> AppState {
    state_with(ServerLimits::default())
}

pub const BOUNDARY: &str = "emotion-ai-test-boundary";

/// A multipart/form-data body with one part per `(field, filename, bytes)`.
pub fn multipart_body(parts: &[(&str, &str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (field, filename, bytes) in parts {
        body.extend_from_slice(format!("--{BOUNDARY}\r\n").as_bytes());
        body.extend_from_slice(
            format!(
                "Content-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

/// A POST of one file in the `file` field.
pub fn upload_request(uri: &str, filename: &str, bytes: &[u8], accept: Option<&str>) -> Request<Body> {
    let mut builder =
        Request::post(uri).header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={BOUNDARY}"));
    if let Some(accept) = accept {
        builder = builder.header(header::ACCEPT, accept);
    }
    builder.body(Body::from(multipart_body(&[("file", filename, bytes)]))).unwrap()
}

/// One request through the whole app with the default limits.
pub async fn send(request: Request<Body>) -> Response {
    web::app(state()).oneshot(request).await.unwrap()
}

/// The body as JSON (the panic shows what it was otherwise).
pub async fn json_of(response: Response) -> Value {
    let bytes = to_bytes(response.into_body(), usize::MAX).await.unwrap();
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)))
}

/// The body as text.
pub async fn text_of(response: Response) -> String {
    String::from_utf8(to_bytes(response.into_body(), usize::MAX).await.unwrap().to_vec()).unwrap()
}

/// A 16-bit mono PCM WAV file of `samples` (-1..1) at `rate`.
pub fn wav(rate: u32, samples: &[f32]) -> Vec<u8> {
    emotion_ai::decode::audio::pcm16_wav(samples, rate)
}

/// The samples of the 16 kHz mono 16-bit speech fixture.
pub fn speech_samples() -> Vec<f32> {
    let bytes = fixture("speech.wav");
    let data = bytes.windows(4).position(|w| w == b"data").expect("a data chunk") + 8;
    bytes[data..].chunks_exact(2).map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32768.0).collect()
}

/// `seconds` of the speech fixture repeated, with a 0.5 s pause after each
/// repetition.
pub fn repeated_speech(seconds: usize) -> Vec<f32> {
    let speech = speech_samples();
    let mut clip = Vec::with_capacity(seconds * 16000);
    while clip.len() < seconds * 16000 {
        clip.extend_from_slice(&speech);
        clip.extend(std::iter::repeat_n(0.0, 8000));
    }
    clip.truncate(seconds * 16000);
    clip
}
