//! Browser pages, rendered with askama templates from `templates/`.

use askama::Template;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;

use super::{AppError, AppState, HtmlError, Upload};
use crate::decode::{sniff, MediaKind, ACCEPTED_IMAGE_FORMATS};
use crate::predict::ImageAnalysis;

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    accepted: &'static str,
    max_upload_mib: usize,
}

/// `GET /`: the upload form.
pub async fn index(State(state): State<AppState>) -> Response {
    let page =
        IndexPage { accepted: ACCEPTED_IMAGE_FORMATS, max_upload_mib: state.limits.max_upload_bytes / (1024 * 1024) };
    render(&page)
}

/// One emotion's bar in the chart.
struct Bar {
    label: String,
    percent: f32,
}

/// One face as the result page shows it. The box is drawn in an SVG overlay
/// whose viewBox is the image's pixel size, so it follows the picture's
/// displayed size without script or inline styles (the CSP forbids both).
struct FaceView {
    number: usize,
    x: u32,
    y: u32,
    width: u32,
    height: u32,
    /// Font size of the face's number on the photo, in image pixels.
    tag_size: u32,
    label: String,
    confidence: f32,
    bars: Vec<Bar>,
}

#[derive(Template)]
#[template(path = "result.html")]
struct ResultPage {
    image_src: String,
    image_width: u32,
    image_height: u32,
    faces: Vec<FaceView>,
}

/// The answer page for an analysed image. The picture is embedded as a data
/// URL, so uploads never touch the disk.
pub fn result(upload: &Upload, analysis: &ImageAnalysis) -> Response {
    let mime = match sniff(&upload.bytes) {
        MediaKind::Image(format) => format.to_mime_type(),
        MediaKind::Unknown => "application/octet-stream",
    };
    let image_src = format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(&upload.bytes));
    let faces = analysis
        .faces
        .iter()
        .enumerate()
        .map(|(i, face)| FaceView {
            number: i + 1,
            x: face.bbox.x,
            y: face.bbox.y,
            width: face.bbox.width,
            height: face.bbox.height,
            tag_size: (analysis.width.max(analysis.height) / 30).max(face.bbox.height / 4).max(10),
            label: face.emotion.label.clone(),
            confidence: 100.0 * face.emotion.confidence,
            bars: face
                .emotion
                .probabilities
                .iter()
                .map(|p| Bar { label: p.label.clone(), percent: 100.0 * p.probability })
                .collect(),
        })
        .collect();
    render(&ResultPage { image_src, image_width: analysis.width, image_height: analysis.height, faces })
}

fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => HtmlError(AppError::Internal(format!("rendering page: {e}"))).into_response(),
    }
}
