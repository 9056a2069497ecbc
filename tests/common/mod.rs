//! Shared helpers of the integration tests: the shipped models loaded once per
//! test binary, fixtures, and multipart request building.

#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use axum::body::Body;
use axum::http::{header, Request};
use emotion_ai::predict::{Analyzer, AnalyzerConfig};
use emotion_ai::web::{self, AppState, ServerLimits};

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
