//! The API's contract: the OpenAPI 3 document generated from the handlers'
//! annotations and the response types' schemas (utoipa), served at
//! `/api/openapi.json`, and the model metadata at `/api/v1/models`.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

use super::{AppState, ErrorBody};
use crate::predict::{Analysis, AudioAnalysis, FusedEmotion, ImageAnalysis};

/// The multipart upload the predict routes take: `file` alone, or an image
/// and a clip of the same person in `image` and `audio` (or in two `file`
/// fields; they are told apart by content) for a fused answer.
#[derive(ToSchema)]
#[allow(dead_code)] // documents the request body; the handlers read the multipart stream
pub struct UploadForm {
    /// The image (JPEG, PNG, BMP, GIF, WebP, TIFF) or clip (WAV, FLAC, MP3,
    /// Ogg Vorbis, M4A/AAC); the format is read from the bytes.
    #[schema(value_type = Option<String>, format = Binary)]
    file: Option<Vec<u8>>,
    /// A photo, sent with `audio` to fuse face and voice.
    #[schema(value_type = Option<String>, format = Binary)]
    image: Option<Vec<u8>>,
    /// A clip of the same person, sent with `image`.
    #[schema(value_type = Option<String>, format = Binary)]
    audio: Option<Vec<u8>>,
    /// `true` when the image is one face, already cropped: its central
    /// square is read as the face and no detection runs (default `false`).
    whole_image_face: Option<bool>,
    /// `centerface` to find the faces with CenterFace alone (the server's
    /// default detector, unless it was started with `--detector haar` or
    /// `haar-then-centerface`), `default` (the default) for the server's
    /// detectors. `whole_image_face=true` overrides it.
    detector: Option<String>,
    /// With `image` and `audio`: which face of the image the fused answer
    /// uses, 1 for the largest (the default); the answer's face source says
    /// which was used.
    fuse_face: Option<u32>,
}

/// The `kind` of a fused answer.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum FusionKind {
    Fusion,
}

/// The answer for an image and a clip sent together: each one's own result
/// (or, when it could not be analysed, its error) and the fused emotion.
#[derive(Debug, Serialize, ToSchema)]
pub struct FusionAnalysis {
    /// Always `fusion`.
    pub kind: FusionKind,
    /// The image's faces, unless `image_error` says why not.
    pub image: Option<ImageAnalysis>,
    pub image_error: Option<ErrorBody>,
    /// The clip's emotion, sex and timeline, unless `audio_error` says why not.
    pub audio: Option<AudioAnalysis>,
    pub audio_error: Option<ErrorBody>,
    /// Face (the largest) and voice combined; from the one that could be
    /// analysed when the other could not.
    pub fused: FusedEmotion,
}

/// What a predict route answers: one upload's analysis, or a fused pair's.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Answer {
    Single(Box<Analysis>),
    Fusion(Box<FusionAnalysis>),
}

/// What one shipped model is, and how well it measured.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelInfo {
    pub name: String,
    pub description: String,
    /// Output classes, in the network's order.
    pub classes: Vec<String>,
    /// Input format and normalisation, as in the model card.
    #[schema(value_type = Object)]
    pub input: Value,
    pub params: i64,
    pub trained_on: String,
    /// Measured accuracy and the splits it was measured on, as in the card.
    #[schema(value_type = Object)]
    pub metrics: Value,
    /// The temperature fitted on held-out data (`null` if none): fusion
    /// weighs the model by its inverse.
    #[schema(value_type = Option<Object>)]
    pub calibration: Option<Value>,
}

/// The shipped models.
#[derive(Debug, Serialize, ToSchema)]
pub struct Models {
    pub face_emotion: ModelInfo,
    pub face_sex: ModelInfo,
    pub voice_emotion: ModelInfo,
    /// Speech or not, asked of every clip before the voice model.
    pub speech_check: ModelInfo,
    /// The voice's sex from a speaker encoder, blended with the voice
    /// model's (absent when the server runs without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voice_sex: Option<ModelInfo>,
    /// The face's sex from a face embedder, blended with the face sex
    /// model's (absent when the server runs without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face_sex_head: Option<ModelInfo>,
    /// Face or phantom, asked of every face the detector proposes (absent
    /// when the server runs without it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face_verifier: Option<ModelInfo>,
    /// What proposes the faces: the Haar cascade or CenterFace.
    pub face_detector: DetectorInfo,
    /// The detector asked only when the first finds no face (absent when
    /// there is none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fallback_face_detector: Option<DetectorInfo>,
}

fn detector_info(choice: &crate::detect::DetectorChoice) -> DetectorInfo {
    DetectorInfo { name: choice.name().to_string(), file: choice.path().display().to_string() }
}

/// A face detector a server runs with (`--detector`).
#[derive(Debug, Serialize, ToSchema)]
pub struct DetectorInfo {
    /// `haar` or `centerface`.
    pub name: String,
    /// The cascade XML or the network's ONNX file.
    pub file: String,
}

/// The speech check's card in the shape of the others (its "input" is the
/// statistics it reads).
fn speech_check_info(card: &crate::speech::SpeechCheckCard) -> ModelInfo {
    let params = card.w1.iter().map(Vec::len).sum::<usize>() + card.b1.len() + card.w2.len() + 1;
    ModelInfo {
        name: card.name.clone(),
        description: card.description.clone(),
        classes: vec!["speech".into(), "not_speech".into()],
        input: serde_json::json!({
            "sample_rate": card.sample_rate,
            "features": card.features,
            "threshold": card.threshold,
            "vad_gate": card.vad_gate,
        }),
        params: params as i64,
        trained_on: card.trained_on.clone(),
        metrics: card.metrics.clone(),
        calibration: None,
    }
}

/// The voice sex head's card in the shape of the others.
fn voice_sex_info(card: &crate::model::speaker::SpeakerSexCard) -> ModelInfo {
    ModelInfo {
        name: card.name.clone(),
        description: card.description.clone(),
        classes: card.classes.clone(),
        input: serde_json::json!({ "encoder": card.encoder, "head_weight": card.head_weight }),
        params: crate::model::speaker::EMBEDDING_SIZE * 3 + 1,
        trained_on: card.trained_on.clone(),
        metrics: card.metrics.clone(),
        calibration: None,
    }
}

/// The face sex head's card in the shape of the others.
fn face_sex_head_info(card: &crate::model::face_embedder::FaceSexHeadCard) -> ModelInfo {
    ModelInfo {
        name: card.name.clone(),
        description: card.description.clone(),
        classes: card.classes.clone(),
        input: serde_json::json!({ "embedder": card.embedder, "crop": card.input_size,
            "margin": card.margin, "head_weight": card.head_weight }),
        params: crate::model::face_embedder::DESCRIPTOR_SIZE * 3 + 1,
        trained_on: card.trained_on.clone(),
        metrics: card.metrics.clone(),
        calibration: None,
    }
}

/// Health and the models' classes and metrics.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the server answers.
    pub status: String,
    /// Analyses running now.
    pub busy_workers: usize,
    #[schema(value_type = Object)]
    pub models: Value,
}

fn info(card: &impl Serialize) -> ModelInfo {
    let card = serde_json::to_value(card).unwrap_or(Value::Null);
    let text = |key: &str| card[key].as_str().unwrap_or_default().to_string();
    ModelInfo {
        name: text("name"),
        description: text("description"),
        classes: serde_json::from_value(card["classes"].clone()).unwrap_or_default(),
        input: card["input"].clone(),
        params: card["params"].as_i64().unwrap_or_default(),
        trained_on: text("trained_on"),
        metrics: card["metrics"].clone(),
        calibration: card.get("calibration").cloned(),
    }
}

/// The shipped models: classes, input, size, data and measured accuracy.
#[utoipa::path(get, path = "/api/v1/models", tag = "models",
    responses((status = 200, description = "the shipped models, from their cards", body = Models)))]
pub async fn models(State(state): State<AppState>) -> Json<Models> {
    let analyzer = &state.analyzer;
    Json(Models {
        face_emotion: info(analyzer.face_emotion_card()),
        face_sex: info(analyzer.face_sex_card()),
        voice_emotion: info(analyzer.voice_emotion_card()),
        speech_check: speech_check_info(analyzer.speech_check().card()),
        voice_sex: analyzer.voice_sex_card().map(voice_sex_info),
        face_sex_head: analyzer.face_sex_head_card().map(face_sex_head_info),
        face_verifier: analyzer.face_verifier_card().map(info),
        face_detector: detector_info(analyzer.detector()),
        fallback_face_detector: analyzer.fallback_detector().map(detector_info),
    })
}

/// This document.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "the OpenAPI 3 document of this API", content_type = "application/json")))]
pub async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// The OpenAPI document: every route of [`super::app`] but the static files.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "emotion-ai",
        description = "Emotion (and sex) from a face photo or a voice clip. Errors are JSON \
                       `{code, message, status}` with a stable `code`.",
    ),
    paths(
        super::predict_json,
        super::predict_negotiated,
        super::healthz,
        models,
        openapi,
        super::pages::index,
        super::pages::models,
    ),
    components(schemas(UploadForm, super::ErrorBody)),
    tags(
        (name = "predict", description = "analyse an image, a clip, or both of one person (fused)"),
        (name = "models", description = "what the models are and how well they measured"),
        (name = "meta", description = "health and this document"),
    )
)]
pub struct ApiDoc;
