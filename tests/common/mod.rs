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

/// A FLAC stream of `seconds` at `rate` Hz on `channels` channels made only of
/// constant-valued subframes (a square wave of one block a half-period): a
/// few bytes a block however many samples it holds, so a tiny file declares
/// and holds an enormous clip. `declare_length: false` writes 0 ("unknown")
/// as the total, so only decoding can find the length.
pub fn flac_square(rate: u32, channels: u8, seconds: u32, declare_length: bool) -> Vec<u8> {
    struct Bits(Vec<u8>, u32);
    impl Bits {
        fn put(&mut self, value: u64, n: u32) {
            for i in (0..n).rev() {
                if self.1.is_multiple_of(8) {
                    self.0.push(0);
                }
                let last = self.0.len() - 1;
                self.0[last] |= (((value >> i) & 1) as u8) << (7 - self.1 % 8);
                self.1 += 1;
            }
        }
    }
    fn crc8(data: &[u8]) -> u8 {
        data.iter().fold(0u8, |mut c, &b| {
            c ^= b;
            for _ in 0..8 {
                c = if c & 0x80 != 0 { (c << 1) ^ 0x07 } else { c << 1 };
            }
            c
        })
    }
    fn crc16(data: &[u8]) -> u16 {
        data.iter().fold(0u16, |mut c, &b| {
            c ^= u16::from(b) << 8;
            for _ in 0..8 {
                c = if c & 0x8000 != 0 { (c << 1) ^ 0x8005 } else { c << 1 };
            }
            c
        })
    }
    fn utf8_number(n: u64) -> Vec<u8> {
        match n {
            0..0x80 => vec![n as u8],
            0x80..0x800 => vec![0xC0 | (n >> 6) as u8, 0x80 | (n & 0x3F) as u8],
            _ => vec![0xE0 | (n >> 12) as u8, 0x80 | ((n >> 6) & 0x3F) as u8, 0x80 | (n & 0x3F) as u8],
        }
    }
    let block = 65_535u64;
    let total = u64::from(rate) * u64::from(seconds);
    let mut info = Bits(Vec::new(), 0);
    info.put(block, 16);
    info.put(block, 16);
    info.put(0, 24);
    info.put(0, 24);
    info.put(u64::from(rate), 20);
    info.put(u64::from(channels - 1), 3);
    info.put(15, 5);
    info.put(if declare_length { total } else { 0 }, 36);
    info.put(0, 64);
    info.put(0, 64);
    let mut out = b"fLaC".to_vec();
    out.push(0x80);
    out.extend_from_slice(&(info.0.len() as u32).to_be_bytes()[1..]);
    out.extend_from_slice(&info.0);
    for frame in 0..total.div_ceil(block) {
        let size = block.min(total - frame * block);
        let mut header = vec![0xFF, 0xF8, 0x70, (channels - 1) << 4];
        header.extend(utf8_number(frame));
        header.extend_from_slice(&((size - 1) as u16).to_be_bytes());
        header.push(crc8(&header));
        let value: i16 = if frame.is_multiple_of(2) { 12_000 } else { -12_000 };
        let mut sub = Bits(Vec::new(), 0);
        for _ in 0..channels {
            sub.put(0, 8); // constant subframe, no wasted bits
            sub.put(u64::from(value as u16), 16);
        }
        header.extend_from_slice(&sub.0);
        let crc = crc16(&header);
        out.extend_from_slice(&header);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    out
}

/// The WAV espeak-ng makes of `text` in `voice` (e.g. `en+f3`): speech of a
/// chosen sex and language without any dataset.
pub fn espeak(voice: &str, text: &str) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("voice.wav");
    let status = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "-w"])
        .arg(&path)
        .arg(text)
        .status()
        .unwrap_or_else(|e| panic!("espeak-ng is needed for this test (bash scripts/setup.sh installs it): {e}"));
    assert!(status.success(), "espeak-ng -v {voice}");
    std::fs::read(&path).unwrap()
}
