//! The HTTP service: routes, shared state, limits.
//!
//! Routes (built in one place, [`app`]):
//! - `GET /`: the upload page.
//! - `POST /predict`: multipart field `file` holding an image or an audio
//!   clip (told apart by content), or an image and a clip of one person
//!   (fields `image` and `audio`, or two `file` fields) whose emotions are
//!   fused; an HTML result page, or JSON when the client sends
//!   `Accept: application/json`.
//! - `POST /api/v1/predict`: the same, always JSON.
//! - `GET /healthz`: liveness plus the loaded models.
//! - `GET /static/*`: CSS and JS (no CDN); `GET /assets/{voices,faces}/*`:
//!   the cross-modal samples.
//!
//! Inference is CPU-bound, so it runs on blocking threads behind two bounds:
//! at most `workers` analyses run at once, and at most `queue` more wait; a
//! request beyond that gets an immediate 503 with `Retry-After` instead of
//! piling up. A request takes its place, and its share of the upload budget,
//! from its headers before its body is read. Connections are accepted by
//! [`serve`]'s own loop, which closes slow and idle ones and caps how many are
//! open.

pub mod api;
pub mod error;
mod pages;
pub mod samples;
mod server;

pub use server::connection_cap;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::multipart::{MultipartError, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::BoxError;
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::json;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tower::ServiceBuilder;
use tower_http::services::ServeDir;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;

pub use error::{AppError, ErrorBody, HtmlError};

use crate::decode::{sniff, MediaKind};
use crate::predict::{Analysis, AnalyzeError, Analyzer, FaceSource};
use api::{Answer, FusionAnalysis, FusionKind};

/// Limits of the HTTP layer.
#[derive(Debug, Clone)]
pub struct ServerLimits {
    /// Largest request body accepted.
    pub max_upload_bytes: usize,
    /// Analyses that run at once (each on its own blocking thread).
    pub workers: usize,
    /// Requests that may wait for a worker; one more gets 503.
    pub queue: usize,
    /// Longest a request waits for a worker before 503.
    pub queue_timeout: Duration,
    /// Longest the analysis of an upload may take (waiting for a worker
    /// included), once the upload has arrived, before 408 `timeout`.
    pub request_timeout: Duration,
    /// Longest reading an upload may take before 408 `upload_timeout`: long
    /// enough for a phone on a slow link (a 2 MB photo at 25 KB/s takes
    /// 80 s), bounded so that a client trickling bytes cannot hold its place
    /// for ever.
    pub upload_timeout: Duration,
    /// Longest a client may take to send a request's headers, and longest a
    /// kept-alive connection may sit idle between requests, before it is
    /// closed: slow and idle sockets cannot pile up.
    pub header_timeout: Duration,
    /// Connections open at once; more wait in the listen backlog (see
    /// [`connection_cap`], which sizes it by the open-file limit).
    pub max_connections: usize,
    /// Bytes of uploads that may be held in memory at once, all requests
    /// together: a request whose declared size does not fit gets 503 before
    /// its body is read.
    pub upload_budget_bytes: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            max_upload_bytes: 20 * 1024 * 1024,
            workers: 2,
            queue: 32,
            queue_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(60),
            upload_timeout: Duration::from_secs(180),
            header_timeout: Duration::from_secs(10),
            max_connections: 1000,
            upload_budget_bytes: 256 * 1024 * 1024,
        }
    }
}

/// State shared by all handlers.
#[derive(Clone)]
pub struct AppState {
    analyzer: Arc<Analyzer>,
    limits: ServerLimits,
    /// Permits for running or waiting requests (workers + queue).
    admission: Arc<Semaphore>,
    /// Permits for running analyses.
    running: Arc<Semaphore>,
    /// One permit per KiB of upload held in memory.
    upload_budget: Arc<Semaphore>,
    static_dir: PathBuf,
    assets_dir: PathBuf,
}

impl AppState {
    /// Shares `analyzer` under `limits`; the page's CSS and script are served
    /// from `static_dir`, the cross-modal samples from `assets_dir`.
    pub fn new(analyzer: Arc<Analyzer>, limits: ServerLimits, static_dir: PathBuf, assets_dir: PathBuf) -> Self {
        Self {
            analyzer,
            admission: Arc::new(Semaphore::new(limits.workers + limits.queue)),
            running: Arc::new(Semaphore::new(limits.workers.max(1))),
            upload_budget: Arc::new(Semaphore::new(limits.upload_budget_bytes.div_ceil(1024).max(1))),
            limits,
            static_dir,
            assets_dir,
        }
    }
}

/// The static assets shipped in the crate's `static/` directory.
pub fn default_static_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("static")
}

/// The whole application: every route, layer and limit.
pub fn app(state: AppState) -> Router {
    let csp = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' data: blob:; \
               style-src 'self'; script-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'";
    // A backstop over every route: an upload's own bounds (reading, then
    // analysing) are checked inside the handlers, with their own messages.
    let backstop = state.limits.upload_timeout + state.limits.request_timeout;
    let seconds = backstop.as_secs_f64().ceil() as u64;
    Router::new()
        .route("/", get(pages::index))
        .route("/models", get(pages::models))
        .route("/predict", post(predict_negotiated))
        .route("/api/v1/predict", post(predict_json))
        .route("/healthz", get(healthz))
        .route("/api/v1/models", get(api::models))
        .route("/api/openapi.json", get(api::openapi))
        .nest_service("/static", ServeDir::new(&state.static_dir))
        // Only the samples' folders: nothing else in the assets directory
        // (its README, say) is served.
        .nest_service(&format!("{}/voices", samples::ASSETS_ROUTE), ServeDir::new(state.assets_dir.join("voices")))
        .nest_service(&format!("{}/faces", samples::ASSETS_ROUTE), ServeDir::new(state.assets_dir.join("faces")))
        .fallback(|uri: Uri, headers: HeaderMap| async move { negotiated_error(&uri, &headers, AppError::NotFound) })
        .method_not_allowed_fallback(|uri: Uri, headers: HeaderMap| async move {
            negotiated_error(&uri, &headers, AppError::MethodNotAllowed)
        })
        // The static file services answer misses and wrong methods with an
        // empty body; give them the error every other route gives.
        .layer(axum::middleware::from_fn(bodiless_errors))
        // The multipart reader enforces this too and reports it as a 413 of ours.
        .layer(DefaultBodyLimit::max(state.limits.max_upload_bytes))
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(move |_: BoxError| async move { AppError::Timeout { seconds } }))
                .timeout(backstop),
        )
        .layer(SetResponseHeaderLayer::if_not_present(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(csp)))
        .layer(SetResponseHeaderLayer::overriding(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")))
        .layer(SetResponseHeaderLayer::overriding(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `app` on `listener` until `shutdown` resolves, then finishes the
/// requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (header_timeout, max_connections) = (state.limits.header_timeout, state.limits.max_connections);
    server::serve_connections(listener, app(state), header_timeout, max_connections, shutdown).await
}

/// An error as JSON or as a page, as the client prefers; always JSON under
/// `/api/`, whose clients are programs.
fn negotiated_error(uri: &Uri, headers: &HeaderMap, error: AppError) -> Response {
    if uri.path().starts_with("/api/") || wants_json(headers) {
        error.into_response()
    } else {
        HtmlError(error).into_response()
    }
}

/// Replaces a 404 or 405 that carries no body (the static file services')
/// with the service's own error.
async fn bodiless_errors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let (uri, headers) = (request.uri().clone(), request.headers().clone());
    let response = next.run(request).await;
    if response.headers().contains_key(header::CONTENT_TYPE) {
        return response;
    }
    match response.status() {
        StatusCode::NOT_FOUND => negotiated_error(&uri, &headers, AppError::NotFound),
        StatusCode::METHOD_NOT_ALLOWED => negotiated_error(&uri, &headers, AppError::MethodNotAllowed),
        _ => response,
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = terminate => {} }
}

/// Liveness, with the models' classes and metrics.
#[utoipa::path(get, path = "/healthz", tag = "meta", responses((status = 200, description = "the server is up", body = api::Health)))]
async fn healthz(State(state): State<AppState>) -> Json<api::Health> {
    let face = state.analyzer.face_emotion_card();
    let sex = state.analyzer.face_sex_card();
    let voice = state.analyzer.voice_emotion_card();
    Json(api::Health {
        status: "ok".into(),
        busy_workers: state.limits.workers - state.running.available_permits().min(state.limits.workers),
        models: json!({
            "face_emotion": { "classes": face.classes, "metrics": face.metrics },
            "face_sex": { "classes": sex.classes, "metrics": sex.metrics },
            "voice_emotion": { "classes": voice.classes, "metrics": voice.metrics },
            "speech_check": { "metrics": state.analyzer.speech_check().card().metrics },
            "voice_sex": state.analyzer.voice_sex_card().map(|c| json!({ "classes": c.classes, "metrics": c.metrics })),
            "face_sex_head": state.analyzer.face_sex_head_card().map(|c| json!({ "classes": c.classes, "metrics": c.metrics })),
            "face_verifier": state.analyzer.face_verifier_card().map(|c| json!({ "classes": c.classes, "metrics": c.metrics })),
        }),
    })
}

/// An upload read from a multipart request.
pub struct Upload {
    pub bytes: Bytes,
}

/// The multipart fields that may hold an upload.
const UPLOAD_FIELDS: [&str; 3] = ["file", "image", "audio"];

/// The form field that says the image is one face, already cropped.
const WHOLE_IMAGE_FACE_FIELD: &str = "whole_image_face";

/// The form field that asks for CenterFace alone (`centerface`) instead of
/// the server's detectors (`default`).
const DETECTOR_FIELD: &str = "detector";

/// The form field that picks which face (1 is the largest) a fused answer
/// uses.
const FUSE_FACE_FIELD: &str = "fuse_face";

/// How a request wants its upload read, from its form fields.
#[derive(Debug, Clone, Copy, Default)]
pub struct UploadOptions {
    /// Detect faces, or read the whole image as one.
    pub faces: FaceSource,
    /// The face (0-based, largest first) a fused answer uses.
    pub fuse_face: usize,
}

/// What a predict request carries.
pub enum Uploads {
    /// One file, image or clip.
    One(Upload),
    /// An image and a clip of the same person, to be fused.
    Pair { image: Upload, audio: Upload },
}

/// [`read_uploads`] within the upload timeout.
async fn read_uploads_in_time(
    state: &AppState,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(Uploads, UploadOptions), AppError> {
    let limits = &state.limits;
    let seconds = limits.upload_timeout.as_secs().max(1);
    tokio::time::timeout(limits.upload_timeout, read_uploads(multipart, limits.max_upload_bytes)).await.map_err(
        |_| AppError::UploadTimeout {
            seconds,
            limit_mib: (limits.max_upload_bytes as u64).div_ceil(1024 * 1024),
            kib_per_s: (limits.max_upload_bytes as u64 / 1024).div_ceil(seconds),
        },
    )?
}

/// [`answer`] within the request timeout.
async fn answer_in_time(state: &AppState, uploads: &Uploads, options: UploadOptions) -> Result<Answer, AppError> {
    let seconds = state.limits.request_timeout.as_secs_f64().ceil() as u64;
    tokio::time::timeout(state.limits.request_timeout, answer(state, uploads, options))
        .await
        .map_err(|_| AppError::Timeout { seconds })?
}

/// Reads the upload fields of a multipart request: one `file` (or `image`,
/// or `audio`), or two of them holding an image and a clip.
async fn read_uploads(
    multipart: Result<Multipart, MultipartRejection>,
    limit: usize,
) -> Result<(Uploads, UploadOptions), AppError> {
    let mut multipart = multipart.map_err(|e| {
        AppError::BadRequest(format!(
            "expected a multipart/form-data upload with the file in a field named `file` ({})",
            e.body_text()
        ))
    })?;
    let limit_mib = (limit as u64).div_ceil(1024 * 1024);
    // The body limit surfaces as a multipart error wherever the reader hits it.
    let reading_error = |e: MultipartError, what: &str| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge { limit_mib }
        } else {
            AppError::BadRequest(format!("{what}: {}", e.body_text()))
        }
    };
    let mut uploads: Vec<(String, Upload)> = Vec::new();
    let mut options = UploadOptions::default();
    // `whole_image_face=true` wins over `detector`, whatever their order.
    let (mut whole_image, mut detector) = (FaceSource::Detect, FaceSource::Detect);
    while let Some(field) = multipart.next_field().await.map_err(|e| reading_error(e, "malformed multipart body"))? {
        let name = field.name().unwrap_or_default().to_string();
        if name == WHOLE_IMAGE_FACE_FIELD {
            let value = field.text().await.map_err(|e| reading_error(e, "could not read a form field"))?;
            whole_image = FaceSource::from_form_value(&value).ok_or_else(|| {
                AppError::BadRequest(format!(
                    "`{WHOLE_IMAGE_FACE_FIELD}` is `true` or `false` (got `{}`)",
                    value.chars().take(40).collect::<String>()
                ))
            })?;
            continue;
        }
        if name == DETECTOR_FIELD {
            let value = field.text().await.map_err(|e| reading_error(e, "could not read a form field"))?;
            detector = FaceSource::from_detector_form_value(&value).ok_or_else(|| {
                AppError::BadRequest(format!(
                    "`{DETECTOR_FIELD}` is `centerface` (CenterFace alone, whatever detectors the server runs) or \
                     `default` (got `{}`)",
                    value.chars().take(40).collect::<String>()
                ))
            })?;
            continue;
        }
        if name == FUSE_FACE_FIELD {
            let value = field.text().await.map_err(|e| reading_error(e, "could not read a form field"))?;
            options.fuse_face =
                value.trim().parse::<usize>().ok().filter(|&n| n >= 1).map(|n| n - 1).ok_or_else(|| {
                    AppError::BadRequest(format!(
                        "`{FUSE_FACE_FIELD}` is a face's number, 1 for the largest (got `{}`)",
                        value.chars().take(40).collect::<String>()
                    ))
                })?;
            continue;
        }
        if !UPLOAD_FIELDS.contains(&name.as_str()) {
            continue;
        }
        if uploads.len() == 2 {
            return Err(AppError::TooManyFiles(format!("got a third file, in a `{name}` field")));
        }
        let bytes = field.bytes().await.map_err(|e| reading_error(e, "could not read the upload"))?;
        uploads.push((name, Upload { bytes }));
    }
    options.faces = if whole_image == FaceSource::WholeImage { whole_image } else { detector };
    let mut uploads = uploads.into_iter();
    let uploads = match (uploads.next(), uploads.next()) {
        (None, _) => Err(AppError::MissingFile),
        // An empty file is reported by the decoder, like every other content problem.
        (Some((_, one)), None) => Ok(Uploads::One(one)),
        (Some(first), Some(second)) => pair(first, second),
    }?;
    Ok((uploads, options))
}

/// Which of two uploads is the image and which the clip: by content, or by
/// field name when the content says neither (that upload then fails on its own).
fn pair(first: (String, Upload), second: (String, Upload)) -> Result<Uploads, AppError> {
    let kind = |u: &Upload| match sniff(&u.bytes) {
        MediaKind::Image(_) => Some(true),
        MediaKind::Audio(_) => Some(false),
        _ => None,
    };
    let first_is_image = match (kind(&first.1), kind(&second.1)) {
        (Some(true), Some(true)) => return Err(AppError::TooManyFiles("got two images".into())),
        (Some(false), Some(false)) => return Err(AppError::TooManyFiles("got two clips".into())),
        (Some(a), _) => a,
        (None, Some(b)) => !b,
        (None, None) => first.0 != "audio" && second.0 != "image",
    };
    let (image, audio) = if first_is_image { (first.1, second.1) } else { (second.1, first.1) };
    Ok(Uploads::Pair { image, audio })
}

/// A request's place in the server, taken before its body is read: a slot
/// among the running and waiting requests, and its share of the upload
/// budget. Dropping it gives both back.
struct Admission {
    _slot: OwnedSemaphorePermit,
    _bytes: OwnedSemaphorePermit,
}

/// Admits an upload by its headers alone: a declared length over the limit is
/// 413 at once (so `Expect: 100-continue` never gets "100 Continue"), and a
/// full queue or a spent upload budget is 503 at once; only then is the body
/// read. A body without a declared length is charged the upload limit.
fn admit_upload(state: &AppState, headers: &HeaderMap) -> Result<Admission, AppError> {
    let limit = state.limits.max_upload_bytes as u64;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(AppError::PayloadTooLarge { limit_mib: limit.div_ceil(1024 * 1024) });
    }
    let slot = state.admission.clone().try_acquire_owned().map_err(|_| AppError::Busy)?;
    let budget_kib = state.limits.upload_budget_bytes.div_ceil(1024).max(1) as u64;
    let kib = declared.unwrap_or(limit).div_ceil(1024).clamp(1, budget_kib).min(u64::from(u32::MAX)) as u32;
    let bytes = state.upload_budget.clone().try_acquire_many_owned(kib).map_err(|_| {
        tracing::warn!(kib, "upload budget spent: refusing an upload before reading it");
        AppError::Busy
    })?;
    Ok(Admission { _slot: slot, _bytes: bytes })
}

/// Runs `work` on a blocking thread once a worker is free: waits within the
/// queue's time bound, or answers 503. The caller holds its [`Admission`].
async fn run_bounded<T: Send + 'static>(
    state: &AppState,
    work: impl FnOnce(&Analyzer) -> T + Send + 'static,
) -> Result<T, AppError> {
    let running = tokio::time::timeout(state.limits.queue_timeout, state.running.clone().acquire_owned())
        .await
        .map_err(|_| AppError::Busy)?
        .map_err(|_| AppError::Busy)?;
    let analyzer = state.analyzer.clone();
    tokio::task::spawn_blocking(move || {
        let _running = running;
        // Blocking threads come and go; each must run libtorch as the process
        // says (one thread a call) from its first network on.
        crate::predict::use_process_libtorch_threads();
        work(&analyzer)
    })
    .await
    .map_err(|e| AppError::Internal(format!("analysis task failed: {e}")))
}

/// Analyses one upload.
async fn analyze(state: &AppState, upload: &Upload, faces: FaceSource) -> Result<Analysis, AppError> {
    let bytes = upload.bytes.clone();
    run_bounded(state, move |analyzer| analyzer.analyze_bytes_with(&bytes, faces)).await?.map_err(AppError::from)
}

/// Analyses an image and a clip of one person on one worker and fuses them.
/// A part that cannot be analysed is reported in the answer and left out of
/// the fusion; when neither can, the image's error is the answer.
async fn analyze_pair(
    state: &AppState,
    image: &Upload,
    audio: &Upload,
    options: UploadOptions,
) -> Result<FusionAnalysis, AppError> {
    let (image, audio) = (image.bytes.clone(), audio.bytes.clone());
    let (image, audio, fused) = run_bounded(state, move |analyzer| {
        let image = analyzer.analyze_image_bytes_with(&image, options.faces);
        let audio = analyzer.analyze_audio_bytes(&audio);
        let fused = analyzer.fuse_face(image.as_ref().ok(), audio.as_ref().ok(), options.fuse_face);
        (image, audio, fused)
    })
    .await?;
    if let Ok(analysis) = &image {
        if options.fuse_face >= analysis.faces.len() {
            return Err(AppError::BadRequest(format!(
                "`{FUSE_FACE_FIELD}` asks for face {}, but the image has {} face{}",
                options.fuse_face + 1,
                analysis.faces.len(),
                if analysis.faces.len() == 1 { "" } else { "s" }
            )));
        }
    }
    let (image, image_error) = split_outcome(image);
    let (audio, audio_error) = split_outcome(audio);
    match fused {
        Some(fused) => Ok(FusionAnalysis {
            kind: FusionKind::Fusion,
            image,
            image_error: image_error.map(|e| e.body()),
            audio,
            audio_error: audio_error.map(|e| e.body()),
            fused,
        }),
        None => Err(image_error.or(audio_error).unwrap_or(AppError::Internal("nothing to fuse".into()))),
    }
}

fn split_outcome<T>(outcome: Result<T, AnalyzeError>) -> (Option<T>, Option<AppError>) {
    match outcome {
        Ok(value) => (Some(value), None),
        Err(e) => (None, Some(AppError::from(e))),
    }
}

/// Analyses whatever the request carries.
async fn answer(state: &AppState, uploads: &Uploads, options: UploadOptions) -> Result<Answer, AppError> {
    if options.faces == FaceSource::CenterFace && !state.analyzer.has_centerface() {
        return Err(AppError::BadRequest(format!(
            "`{DETECTOR_FIELD}=centerface`: this server runs without CenterFace (started with `--detector haar`, or \
             without the face verifier that judges CenterFace's candidates)"
        )));
    }
    match uploads {
        Uploads::One(upload) => analyze(state, upload, options.faces).await.map(|a| Answer::Single(Box::new(a))),
        Uploads::Pair { image, audio } => {
            analyze_pair(state, image, audio, options).await.map(|f| Answer::Fusion(Box::new(f)))
        }
    }
}

/// Whether the client prefers JSON to a page: the `Accept` header's quality
/// for `application/json` against `text/html` (RFC 9110: media types are
/// case-insensitive, the most specific range sets a type's quality, `q=0`
/// means "not this"). A tie, as with `*/*` or no header, is a page.
fn wants_json(headers: &HeaderMap) -> bool {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    quality(accept, "application", "json") > quality(accept, "text", "html")
}

/// The quality an `Accept` value gives `kind/subtype` (0 when no range matches).
fn quality(accept: &str, kind: &str, subtype: &str) -> f32 {
    let mut best: Option<(u8, f32)> = None; // (specificity, q)
    for range in accept.split(',') {
        let mut parts = range.split(';');
        let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
        let Some((k, s)) = media.split_once('/') else { continue };
        let specificity = match (k.trim(), s.trim()) {
            (k, s) if k == kind && s == subtype => 2,
            (k, "*") if k == kind => 1,
            ("*", "*") => 0,
            _ => continue,
        };
        let q = parts
            .filter_map(|p| p.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .and_then(|(_, v)| v.trim().parse::<f32>().ok())
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        if best.is_none_or(|(spec, _)| specificity > spec) {
            best = Some((specificity, q));
        }
    }
    best.map_or(0.0, |(_, q)| q)
}

/// Analyses one upload and answers JSON.
#[utoipa::path(post, path = "/api/v1/predict", tag = "predict",
    request_body(content = api::UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "faces of an image, a clip's emotion, sex and timeline, or both with the fused emotion (`kind` says which)", body = Answer),
        (status = 400, description = "no file, not multipart, two images, two clips or three files, or an empty file (`missing_file`, `bad_request`, `too_many_files`, `empty_file`)", body = ErrorBody),
        (status = 413, description = "upload (by its declared length, before it is read), image or clip over the limits: pixels, seconds, or samples decoded (`payload_too_large`, `image_too_large`, `audio_too_long`)", body = ErrorBody),
        (status = 415, description = "neither a supported image nor supported audio, or a clip of more than 26 channels (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "corrupt file, no face, or a clip without human speech: silent, or a tone, noise, music or clicks (`corrupt_file`, `no_face`, `no_speech`)", body = ErrorBody),
        (status = 408, description = "the upload did not arrive within the upload timeout (`upload_timeout`), or its analysis took longer than the request timeout (`timeout`)", body = ErrorBody),
        (status = 503, description = "every worker busy and the queue full, or the upload budget spent (`busy`), with `Retry-After`", body = ErrorBody),
    ))]
async fn predict_json(
    State(state): State<AppState>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<Json<Answer>, AppError> {
    let _admission = admit_upload(&state, &headers)?;
    let (uploads, options) = read_uploads_in_time(&state, multipart).await?;
    Ok(Json(answer_in_time(&state, &uploads, options).await?))
}

/// The same as `/api/v1/predict`, answering an HTML page unless the client
/// accepts JSON and not HTML.
#[utoipa::path(post, path = "/predict", tag = "predict",
    request_body(content = api::UploadForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "the answer page, or the analysis as JSON",
            content((Answer = "application/json"), (String = "text/html"))),
        (status = 400, description = "no file, not multipart, two images, two clips or three files, or an empty file (`missing_file`, `bad_request`, `too_many_files`, `empty_file`)", body = ErrorBody),
        (status = 413, description = "upload (by its declared length, before it is read), image or clip over the limits: pixels, seconds, or samples decoded (`payload_too_large`, `image_too_large`, `audio_too_long`)", body = ErrorBody),
        (status = 415, description = "neither a supported image nor supported audio, or a clip of more than 26 channels (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "corrupt file, no face, or a clip without human speech: silent, or a tone, noise, music or clicks (`corrupt_file`, `no_face`, `no_speech`)", body = ErrorBody),
        (status = 408, description = "the upload did not arrive within the upload timeout (`upload_timeout`), or its analysis took longer than the request timeout (`timeout`)", body = ErrorBody),
        (status = 503, description = "every worker busy and the queue full, or the upload budget spent (`busy`), with `Retry-After`", body = ErrorBody),
    ))]
async fn predict_negotiated(
    State(state): State<AppState>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let json = wants_json(&headers);
    let result = async {
        let _admission = admit_upload(&state, &headers)?;
        let (uploads, options) = read_uploads_in_time(&state, multipart).await?;
        let answer = answer_in_time(&state, &uploads, options).await?;
        Ok::<_, AppError>((uploads, answer))
    }
    .await;
    match (result, json) {
        (Ok((_, analysis)), true) => Json(analysis).into_response(),
        (Ok((uploads, answer)), false) => pages::result(&uploads, &answer, &pages::AccuracyNotes::of(&state.analyzer)),
        (Err(e), true) => e.into_response(),
        (Err(e), false) => HtmlError(e).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_header_negotiation() {
        let mut headers = HeaderMap::new();
        assert!(!wants_json(&headers));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(wants_json(&headers));
        headers
            .insert(header::ACCEPT, HeaderValue::from_static("text/html,application/xhtml+xml,application/json;q=0.9"));
        assert!(!wants_json(&headers));
    }

    #[test]
    fn accept_quality_values_and_case_are_honoured() {
        let wants = |accept: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::ACCEPT, HeaderValue::from_static(accept));
            wants_json(&headers)
        };
        assert!(wants("text/html;q=0, application/json"));
        assert!(wants("application/json, text/html;q=0.1"));
        assert!(wants("application/JSON"));
        assert!(wants("Application/Json; charset=utf-8"));
        assert!(wants("application/*, text/html;q=0.5"));
        assert!(wants("text/html; Q=0.2, application/json;q=0.3"));
        // Ties and browsers' headers are pages.
        assert!(!wants("*/*"));
        assert!(!wants("application/json, text/html"));
        assert!(!wants("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"));
        assert!(!wants("text/*, application/json;q=0.9"));
        assert!(!wants("application/json;q=0"));
        assert!(!wants("garbage, ;;;, /, q=x"));
    }
}
