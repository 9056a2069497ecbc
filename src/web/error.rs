//! The one error type of the HTTP layer. Each variant has a status, a stable
//! machine-readable `code` and a human message saying what was wrong and what
//! is accepted. API clients get it as JSON; browsers get a page (see
//! [`HtmlError`]).

use askama::Template;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::decode::audio::{AudioDecodeError, ACCEPTED_AUDIO_FORMATS};
use crate::decode::{ImageDecodeError, ACCEPTED_IMAGE_FORMATS};
use crate::predict::AnalyzeError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    BadRequest(String),
    #[error(
        "the request has no file: send multipart/form-data with the upload in a field named `file` \
         (or a photo in `image` and a clip in `audio`)"
    )]
    MissingFile,
    /// The detail says what was sent.
    #[error("send one file, or one image and one audio clip of the same person ({0})")]
    TooManyFiles(String),
    #[error("the uploaded file is empty")]
    EmptyFile,
    /// The detail says what the file was, when known.
    #[error("{0}: upload an image ({ACCEPTED_IMAGE_FORMATS}) or an audio clip ({ACCEPTED_AUDIO_FORMATS})")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    CorruptFile(String),
    #[error("the upload is larger than the {limit_mib} MiB limit")]
    PayloadTooLarge { limit_mib: u64 },
    #[error("{0}")]
    ImageTooLarge(String),
    #[error("{0}")]
    AudioTooLong(String),
    #[error(
        "no face was found in the image: upload a photo with a clearly visible, roughly frontal face, or, if \
         the picture is one face already cropped, send it with `whole_image_face=true` (on the page: tick \
         \"The picture is one face\")"
    )]
    NoFace,
    /// The detail says whether the clip was silent or held sound but no voice.
    #[error("{0}")]
    NoSpeech(String),
    #[error("the server is busy: try again in a few seconds")]
    Busy,
    #[error("not found: the API is under /api/v1 (see /api/openapi.json)")]
    NotFound,
    #[error("this route does not take that method (uploads are POSTed; see /api/openapi.json)")]
    MethodNotAllowed,
    #[error("the analysis took longer than the {seconds} s limit: send a shorter clip or a smaller picture")]
    Timeout { seconds: u64 },
    #[error("the upload did not arrive within {seconds} s (a {limit_mib} MiB file needs about {kib_per_s} KB/s): send a smaller file, or on a faster link")]
    UploadTimeout { seconds: u64, limit_mib: u64, kib_per_s: u64 },
    #[error("internal error")]
    Internal(String),
}

/// The JSON body of every error response.
#[derive(Debug, Clone, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Stable identifier, for programs.
    pub code: String,
    /// What was wrong and what to do, for people.
    pub message: String,
    /// The HTTP status, repeated for clients that only keep the body.
    pub status: u16,
}

impl AppError {
    /// HTTP status of the error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) | Self::MissingFile | Self::TooManyFiles(_) | Self::EmptyFile => {
                StatusCode::BAD_REQUEST
            }
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::CorruptFile(_) | Self::NoFace | Self::NoSpeech(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::PayloadTooLarge { .. } | Self::ImageTooLarge(_) | Self::AudioTooLong(_) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            Self::Busy => StatusCode::SERVICE_UNAVAILABLE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Timeout { .. } | Self::UploadTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::MissingFile => "missing_file",
            Self::TooManyFiles(_) => "too_many_files",
            Self::EmptyFile => "empty_file",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::CorruptFile(_) => "corrupt_file",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::ImageTooLarge(_) => "image_too_large",
            Self::AudioTooLong(_) => "audio_too_long",
            Self::NoFace => "no_face",
            Self::NoSpeech(_) => "no_speech",
            Self::Busy => "busy",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Timeout { .. } => "timeout",
            Self::UploadTimeout { .. } => "upload_timeout",
            Self::Internal(_) => "internal",
        }
    }

    /// Short title for the browser page.
    fn title(&self) -> &'static str {
        match self {
            Self::NoFace => "No face found",
            Self::NoSpeech(_) => "No speech found",
            Self::UnsupportedMediaType(_) => "Unsupported file",
            Self::PayloadTooLarge { .. } | Self::ImageTooLarge(_) => "Too large",
            Self::AudioTooLong(_) => "Clip too long",
            Self::Busy => "Server busy",
            Self::EmptyFile => "Empty file",
            Self::CorruptFile(_) => "Unreadable file",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::Timeout { .. } => "Too slow",
            Self::UploadTimeout { .. } => "Upload too slow",
            Self::Internal(_) => "Something went wrong",
            _ => "Bad request",
        }
    }

    /// The message a person reads on the error page: the JSON message, with
    /// the API's words (field names, multipart) put plainly where they differ.
    fn page_message(&self) -> String {
        match self {
            Self::NoFace => "No face was found in this picture. A face that is clearly visible and looks roughly \
                             at the camera works best; if the picture is a face already cropped, it can be read \
                             as one face whole."
                .into(),
            Self::MissingFile => "No file arrived: choose a photo or a voice clip and send it again.".into(),
            Self::PayloadTooLarge { limit_mib } => {
                format!("The file is larger than {limit_mib} MB, the most accepted: send a smaller picture or a shorter clip.")
            }
            Self::UnsupportedMediaType(_) => format!(
                "This is not a picture or a voice clip this service reads. Pictures: {ACCEPTED_IMAGE_FORMATS}. \
                 Voice clips: {ACCEPTED_AUDIO_FORMATS}."
            ),
            _ => self.body().message,
        }
    }

    /// What the page offers to do next, besides choosing another file; the
    /// page's script acts on it with the file still in hand.
    fn next_step(&self) -> Option<&'static str> {
        match self {
            Self::NoFace => Some("whole-face"),
            Self::AudioTooLong(_) => Some("first-minutes"),
            Self::Busy | Self::Timeout { .. } | Self::UploadTimeout { .. } => Some("again"),
            _ => None,
        }
    }

    /// The JSON body.
    pub fn body(&self) -> ErrorBody {
        let mut message = self.to_string();
        if let Some(first) = message.get(..1) {
            message = first.to_uppercase() + &message[1..];
        }
        ErrorBody { code: self.code().to_string(), message, status: self.status().as_u16() }
    }

    fn finish(&self, mut response: Response) -> Response {
        if let Self::Internal(detail) = self {
            tracing::error!(%detail, "internal error");
        }
        if matches!(self, Self::Busy) {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
        }
        response
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let response = (self.status(), Json(self.body())).into_response();
        self.finish(response)
    }
}

impl From<ImageDecodeError> for AppError {
    fn from(e: ImageDecodeError) -> Self {
        match e {
            ImageDecodeError::Empty => Self::EmptyFile,
            ImageDecodeError::UnsupportedFormat => Self::UnsupportedMediaType("unsupported file type".into()),
            ImageDecodeError::TooLarge { .. } => Self::ImageTooLarge(e.to_string()),
            ImageDecodeError::ZeroSized { .. } | ImageDecodeError::Corrupt { .. } => Self::CorruptFile(e.to_string()),
        }
    }
}

impl From<AudioDecodeError> for AppError {
    fn from(e: AudioDecodeError) -> Self {
        match e {
            AudioDecodeError::Empty => Self::EmptyFile,
            AudioDecodeError::UnsupportedFormat => Self::UnsupportedMediaType("unsupported audio format".into()),
            AudioDecodeError::UnsupportedCodec(_) => Self::UnsupportedMediaType(e.to_string()),
            AudioDecodeError::TooLong { .. } | AudioDecodeError::TooManySamples { .. } => {
                Self::AudioTooLong(e.to_string())
            }
            AudioDecodeError::TooManyChannels { .. } => Self::UnsupportedMediaType(e.to_string()),
            AudioDecodeError::Corrupt(_) | AudioDecodeError::NoSamples | AudioDecodeError::NonFinite => {
                Self::CorruptFile(e.to_string())
            }
        }
    }
}

impl From<AnalyzeError> for AppError {
    fn from(e: AnalyzeError) -> Self {
        match e {
            AnalyzeError::Empty => Self::EmptyFile,
            AnalyzeError::UnsupportedFormat => Self::UnsupportedMediaType("unsupported file type".into()),
            AnalyzeError::UnsupportedAudio(_) => Self::UnsupportedMediaType(e.to_string()),
            AnalyzeError::Decode(d) => d.into(),
            AnalyzeError::Audio(a) => a.into(),
            AnalyzeError::NoFace { .. } => Self::NoFace,
            AnalyzeError::NoSpeech | AnalyzeError::NotSpeech { .. } => Self::NoSpeech(e.to_string()),
            AnalyzeError::Internal(e) => Self::Internal(format!("{e:#}")),
        }
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: String,
    code: &'a str,
    status: u16,
    next_step: Option<&'static str>,
}

/// An [`AppError`] rendered as a page for browsers.
pub struct HtmlError(pub AppError);

impl IntoResponse for HtmlError {
    fn into_response(self) -> Response {
        let page = ErrorPage {
            title: self.0.title(),
            message: self.0.page_message(),
            code: self.0.code(),
            status: self.0.status().as_u16(),
            next_step: self.0.next_step(),
        };
        match page.render() {
            Ok(html) => self.0.finish((self.0.status(), Html(html)).into_response()),
            Err(_) => self.0.into_response(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_distinct_code_and_a_client_or_server_status() {
        let all = [
            AppError::BadRequest("x".into()),
            AppError::MissingFile,
            AppError::TooManyFiles("file".into()),
            AppError::EmptyFile,
            AppError::UnsupportedMediaType("x".into()),
            AppError::CorruptFile("x".into()),
            AppError::PayloadTooLarge { limit_mib: 1 },
            AppError::ImageTooLarge("x".into()),
            AppError::AudioTooLong("x".into()),
            AppError::NoFace,
            AppError::NoSpeech("x".into()),
            AppError::Busy,
            AppError::NotFound,
            AppError::MethodNotAllowed,
            AppError::Timeout { seconds: 1 },
            AppError::Internal("x".into()),
        ];
        let mut codes: Vec<&str> = all.iter().map(AppError::code).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
        assert!(all.iter().all(|e| e.status().is_client_error() || e.status().is_server_error()));
    }

    #[test]
    fn messages_start_with_a_capital_and_internal_details_stay_private() {
        assert!(AppError::EmptyFile.body().message.starts_with("The uploaded file is empty"));
        let body = AppError::Internal("secret path /x".into()).body();
        assert!(!body.message.contains("secret"));
    }

    #[test]
    fn busy_answers_carry_retry_after() {
        let response = AppError::Busy.into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
    }
}
