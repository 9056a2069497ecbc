//! Browser pages, rendered with askama templates from `templates/`.

use askama::Template;
use axum::extract::State;
use axum::response::{Html, IntoResponse, Response};
use base64::Engine as _;

use super::api::{Answer, FusionAnalysis};
use super::samples::{face_sample, voice_sample, Sample};
use super::{AppError, AppState, ErrorBody, HtmlError, Upload, Uploads};
use crate::decode::audio::ACCEPTED_AUDIO_FORMATS;
use crate::decode::{sniff, MediaKind, ACCEPTED_IMAGE_FORMATS};
use crate::predict::{Analysis, AudioAnalysis, Distribution, ImageAnalysis};

#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    accepted: &'static str,
    accepted_audio: &'static str,
    max_audio_seconds: f64,
    max_upload_mib: usize,
}

/// `GET /`: the upload form.
#[utoipa::path(get, path = "/", tag = "meta", responses((status = 200, description = "the upload page", content_type = "text/html")))]
pub async fn index(State(state): State<AppState>) -> Response {
    let page = IndexPage {
        accepted: ACCEPTED_IMAGE_FORMATS,
        accepted_audio: ACCEPTED_AUDIO_FORMATS,
        max_audio_seconds: state.analyzer.config().max_audio_seconds,
        max_upload_mib: state.limits.max_upload_bytes / (1024 * 1024),
    };
    render(&page)
}

/// One model as the models page shows it, from its card.
struct ModelView {
    name: String,
    description: String,
    trained_on: String,
    params: Option<i64>,
    /// Every measured figure, flattened (`corpora / emodb / sex_accuracy`),
    /// rates as percentages.
    figures: Vec<(String, String)>,
}

/// Flattens a card's metrics into named, readable figures.
fn figures(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, String)>) {
    use serde_json::Value;
    const RATES: [&str; 16] = [
        "accuracy", "recall", "ece", "share", "female", "male", "angry", "disgust", "fear", "happy", "sad", "surprise",
        "neutral", "score", "accepted", "refused",
    ];
    let Value::Object(map) = value else { return };
    let name = |key: &str| {
        if prefix.is_empty() {
            key.replace('_', " ")
        } else {
            format!("{prefix} / {}", key.replace('_', " "))
        }
    };
    for (key, value) in map {
        match value {
            Value::Object(_) => figures(&name(key), value, out),
            Value::Number(n) => {
                // Cards write rates as fractions (1.0, 0.9159); a whole
                // number is a count, even under an emotion's name ("heard
                // as happy: 1" is one clip, not 100%).
                let rate = n.is_f64() && RATES.iter().any(|w| key.contains(w));
                let text = match n.as_f64() {
                    Some(v) if rate && (0.0..=1.0).contains(&v) => format!("{:.2}%", 100.0 * v),
                    _ => n.to_string(),
                };
                out.push((name(key), text));
            }
            Value::String(text) => out.push((name(key), text.clone())),
            Value::Bool(b) => out.push((name(key), if *b { "yes".into() } else { "no".into() })),
            Value::Array(_) | Value::Null => {}
        }
    }
}

#[derive(Template)]
#[template(path = "models.html")]
struct ModelsPage {
    models: Vec<ModelView>,
}

/// `GET /models`: what each served model is, what it learned from and how
/// well it measured, straight from the cards the server loaded.
#[utoipa::path(get, path = "/models", tag = "meta", responses((status = 200, description = "the models page", content_type = "text/html")))]
pub async fn models(State(state): State<AppState>) -> Response {
    let analyzer = &state.analyzer;
    let view = |name: &str, description: &str, trained_on: &str, params: Option<i64>, metrics: &serde_json::Value| {
        let mut list = Vec::new();
        figures("", metrics, &mut list);
        ModelView {
            name: name.to_string(),
            description: description.to_string(),
            trained_on: trained_on.to_string(),
            params,
            figures: list,
        }
    };
    let (face, sex, voice) = (analyzer.face_emotion_card(), analyzer.face_sex_card(), analyzer.voice_emotion_card());
    let speech = analyzer.speech_check().card();
    render(&ModelsPage {
        models: vec![
            view("Face emotion", &face.description, &face.trained_on, Some(face.params), &face.metrics),
            view("Face sex", &sex.description, &sex.trained_on, Some(sex.params), &sex.metrics),
            view("Voice emotion and sex", &voice.description, &voice.trained_on, Some(voice.params), &voice.metrics),
            view("Speech check", &speech.description, &speech.trained_on, None, &speech.metrics),
        ]
        .into_iter()
        .chain(analyzer.voice_sex_card().map(|v| view("Voice sex", &v.description, &v.trained_on, None, &v.metrics)))
        .chain(
            analyzer
                .face_sex_head_card()
                .map(|h| view("Face sex head", &h.description, &h.trained_on, None, &h.metrics)),
        )
        .chain(
            analyzer
                .face_verifier_card()
                .map(|v| view("Face verifier", &v.description, &v.trained_on, Some(v.params), &v.metrics)),
        )
        .collect(),
    })
}

/// One emotion's bar in the chart.
struct Bar {
    label: String,
    percent: f32,
}

fn bars(distribution: &Distribution) -> Vec<Bar> {
    distribution.probabilities.iter().map(|p| Bar { label: p.label.clone(), percent: 100.0 * p.probability }).collect()
}

/// The upload as a data URL, so the page can show or play it without the
/// upload ever touching the disk.
fn data_url(upload: &Upload) -> String {
    let mime = match sniff(&upload.bytes) {
        MediaKind::Image(format) => format.to_mime_type(),
        MediaKind::Audio(container) => container.mime_type(),
        MediaKind::UnsupportedAudio(_) | MediaKind::Unknown => "application/octet-stream",
    };
    base64_url(mime, &upload.bytes)
}

/// `bytes` as a `data:` URL of type `mime`.
fn base64_url(mime: &str, bytes: &[u8]) -> String {
    format!("data:{mime};base64,{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// How often a rate comes true, in words a newcomer reads at a glance:
/// 0.677 is "about 2 times in 3". A rate that rounds to 100% is "almost
/// always": "about 49 times in 50 (100%)" reads as a contradiction.
fn in_words(rate: f64) -> String {
    if rate >= 0.995 {
        return "almost always".into();
    }
    const FRACTIONS: [(u32, u32); 12] =
        [(1, 5), (1, 4), (1, 3), (2, 5), (1, 2), (3, 5), (2, 3), (3, 4), (4, 5), (9, 10), (19, 20), (49, 50)];
    let (n, d) = FRACTIONS
        .iter()
        .copied()
        .min_by(|a, b| {
            let gap = |(n, d): (u32, u32)| (f64::from(n) / f64::from(d) - rate).abs();
            gap(*a).total_cmp(&gap(*b))
        })
        .unwrap_or((1, 2));
    format!("about {n} time{} in {d}", if n == 1 { "" } else { "s" })
}

/// What each model's measured accuracy means, in plain words, from the
/// cards the server loaded (never numbers written by hand).
pub struct AccuracyNotes {
    face_emotion: Option<String>,
    face_sex: Option<String>,
    voice: Option<String>,
    /// The cards' gaps under which an emotion answer is called mixed.
    face_mixed: Option<f64>,
    voice_mixed: Option<f64>,
}

/// "angry or fearful" when the two likeliest emotions of `distribution` are
/// within `margin` of each other (the card's, chosen on held-out data).
fn mixed(distribution: &Distribution, margin: Option<f64>) -> Option<String> {
    let margin = margin?;
    let mut ranked: Vec<_> = distribution.probabilities.iter().collect();
    ranked.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    let (first, second) = (ranked.first()?, ranked.get(1)?);
    (f64::from(first.probability - second.probability) < margin)
        .then(|| format!("{} or {}", adjective(&first.label), adjective(&second.label)))
}

impl AccuracyNotes {
    /// The notes for the models `analyzer` serves.
    pub fn of(analyzer: &crate::predict::Analyzer) -> Self {
        let figure = |metrics: &serde_json::Value, key: &str| metrics.get(key).and_then(serde_json::Value::as_f64);
        let face_metrics = &analyzer.face_emotion_card().metrics;
        let face_emotion = figure(face_metrics, "fer2013_private_test_accuracy").map(|a| {
            // FER2013's own labels are noisy; where the card has it, say too
            // how often the model agrees with what ten raters saw.
            let raters = figure(face_metrics, "ferplus_private_test_majority_accuracy")
                .map(|r| {
                    format!(
                        ", and agrees with most of ten people who rated each face {} ({:.0}%)",
                        in_words(r),
                        100.0 * r
                    )
                })
                .unwrap_or_default();
            format!(
                "The face model is right {} ({:.0}%) on faces it was tested on (FER2013's held-out test faces, \
                 by their original labels){raters}.",
                in_words(a),
                100.0 * a
            )
        });
        let face_sex = figure(&analyzer.face_sex_card().metrics, "heldout_adult_accuracy").map(|a| {
            format!("Its sex reading is right {} ({:.0}%) on adults' faces it never saw.", in_words(a), 100.0 * a)
        });
        let voice_metrics = &analyzer.voice_emotion_card().metrics;
        let voice = figure(voice_metrics, "heldout_actor_emotion7_accuracy").map(|a| {
            let sex = figure(voice_metrics, "heldout_actor_sex_accuracy")
                .map(|s| format!(", and its sex reading {} ({:.0}%)", in_words(s), 100.0 * s))
                .unwrap_or_default();
            format!(
                "The voice model is right {} ({:.0}%) on actors it never heard, speaking as in its training{sex}; \
                 on other languages and recordings it does clearly worse.",
                in_words(a),
                100.0 * a
            )
        });
        Self {
            face_emotion,
            face_sex,
            voice,
            face_mixed: analyzer.face_emotion_card().mixed.as_ref().map(|m| m.margin),
            voice_mixed: analyzer.voice_emotion_card().mixed.as_ref().map(|m| m.margin),
        }
    }
}

/// The answer page for whatever the request carried.
pub fn result(uploads: &Uploads, answer: &Answer, notes: &AccuracyNotes) -> Response {
    let body = downloads(answer).and_then(|downloads| match (uploads, answer) {
        (Uploads::One(upload), Answer::Single(analysis)) => match analysis.as_ref() {
            Analysis::Image(image) => image_result(upload, image, downloads, notes),
            Analysis::Audio(audio) => audio_result(upload, audio, downloads, notes),
        },
        (Uploads::Pair { image, audio }, Answer::Fusion(fusion)) => {
            fusion_result(image, audio, fusion, downloads, notes)
        }
        _ => Err(AppError::Internal("the answer does not match the uploads".into())),
    });
    body.unwrap_or_else(|e| HtmlError(e).into_response())
}

/// The answer to keep: the API's JSON and the command line's CSV (a row per
/// face, or per clip and window), as `data:` links the browser saves
/// without asking the server again (uploads are never stored).
struct Downloads {
    json_href: String,
    csv_href: String,
}

fn downloads(answer: &Answer) -> Result<Downloads, AppError> {
    let json = serde_json::to_vec_pretty(answer).map_err(|e| AppError::Internal(format!("answer as JSON: {e}")))?;
    let analyses: Vec<(&str, Analysis)> = match answer {
        Answer::Single(analysis) => vec![("upload", analysis.as_ref().clone())],
        Answer::Fusion(fusion) => fusion
            .image
            .iter()
            .map(|i| ("image", Analysis::Image(i.clone())))
            .chain(fusion.audio.iter().map(|a| ("clip", Analysis::Audio(a.clone()))))
            .collect(),
    };
    let mut writer = crate::batch::RowWriter::new(Vec::new(), crate::batch::Format::Csv);
    for (name, analysis) in analyses {
        for row in crate::batch::rows_for(std::path::Path::new(name), Ok(analysis), true) {
            writer.write(&row).map_err(|e| AppError::Internal(format!("answer as CSV: {e}")))?;
        }
    }
    let csv = writer.into_inner().map_err(|e| AppError::Internal(format!("answer as CSV: {e}")))?;
    Ok(Downloads { json_href: base64_url("application/json", &json), csv_href: base64_url("text/csv", &csv) })
}

/// One probability in a timeline column, in chart units (0..100 tall).
struct Segment {
    label: String,
    y: f32,
    height: f32,
}

/// One window of the timeline chart.
struct WindowView {
    x: u32,
    width: u32,
    start: f32,
    end: f32,
    quiet: bool,
    segments: Vec<Segment>,
    /// The window in words, for its tooltip, its focus readout and screen
    /// readers: "2.0-5.0 s: happy 41%, neutral 30%, sad 12%".
    summary: String,
    /// The three likeliest emotions, for the table.
    ranked: String,
    /// The likeliest emotion and its percentage, for the table.
    top: String,
    top_percent: f32,
}

/// The timeline's seconds axis: one entry per column, the label of the
/// columns that start a tick (every 1, 2, 5, 10, 15, 30 or 60 s, at most 10
/// labels) and `None` for the others. The page lays the entries out as equal
/// shares of the width, so each label sits on its column's left edge without
/// inline styles (the content security policy forbids them).
fn axis_labels(columns: usize, hop: f32) -> Vec<Option<String>> {
    if columns == 0 || hop <= 0.0 {
        return Vec::new();
    }
    let span = columns as f32 * hop;
    let step =
        [1.0f32, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0].into_iter().find(|s| span / s <= 10.0).unwrap_or(300.0);
    let every = ((step / hop).round() as usize).max(1);
    (0..columns).map(|i| (i % every == 0).then(|| format!("{} s", (i as f32 * hop).round()))).collect()
}

/// "happy 41%, neutral 30%, sad 12%": the three likeliest.
fn top_three(distribution: &Distribution) -> String {
    let mut ranked: Vec<_> = distribution.probabilities.iter().collect();
    ranked.sort_by(|a, b| b.probability.total_cmp(&a.probability));
    ranked.iter().take(3).map(|p| format!("{} {:.0}%", p.label, 100.0 * p.probability)).collect::<Vec<_>>().join(", ")
}

#[derive(Template)]
#[template(path = "audio_result.html")]
struct AudioResultPage {
    emotion_word: &'static str,
    /// "neutral or sad" when the two are too close to call.
    mixed: Option<String>,
    emotion_confidence: f32,
    downloads: Downloads,
    /// The rendered [`AudioSection`].
    body: String,
}

/// A clip's player, bars, timeline and face sample.
#[derive(Template)]
#[template(path = "audio_section.html")]
struct AudioSection {
    audio_src: String,
    duration: f32,
    window_seconds: f32,
    emotion_label: String,
    /// The emotion as an adjective, for "the voice sounds ...".
    sex_label: String,
    sex_confidence: f32,
    emotion_bars: Vec<Bar>,
    sex_bars: Vec<Bar>,
    chart_width: u32,
    windows: Vec<WindowView>,
    axis: Vec<Option<String>>,
    /// The voice model's measured accuracy in words.
    accuracy: Option<String>,
    /// A drawn face expressing the predicted emotion and sex.
    sample: Option<Sample>,
    /// The answer's caution, if any (a clip too short for a sure answer).
    note: Option<String>,
}

/// "The voice sounds ..." reads better with adjectives than with FER2013's
/// class names.
fn adjective(emotion: &str) -> &'static str {
    match emotion {
        "angry" => "angry",
        "disgust" => "disgusted",
        "fear" => "fearful",
        "happy" => "happy",
        "sad" => "sad",
        "surprise" => "surprised",
        "neutral" => "neutral",
        _ => "like this",
    }
}

/// Width of one timeline column in chart units.
const COLUMN: u32 = 10;

fn audio_result(
    upload: &Upload,
    analysis: &AudioAnalysis,
    downloads: Downloads,
    notes: &AccuracyNotes,
) -> Result<Response, AppError> {
    let emotion_word = adjective(&analysis.emotion.label);
    let emotion_confidence = 100.0 * analysis.emotion.confidence;
    let body = audio_section(upload, analysis, notes)?;
    let mixed = mixed(&analysis.emotion, notes.voice_mixed);
    Ok(render(&AudioResultPage { emotion_word, mixed, emotion_confidence, downloads, body }))
}

fn audio_section(upload: &Upload, analysis: &AudioAnalysis, notes: &AccuracyNotes) -> Result<String, AppError> {
    let loudest = analysis.timeline.iter().map(|w| w.rms).fold(0.0f32, f32::max);
    let windows: Vec<WindowView> = analysis
        .timeline
        .iter()
        .enumerate()
        .map(|(i, w)| {
            let mut y = 0.0;
            let segments = w
                .emotion
                .probabilities
                .iter()
                .map(|p| {
                    let segment = Segment { label: p.label.clone(), y, height: 100.0 * p.probability };
                    y += segment.height;
                    segment
                })
                .collect();
            // Pauses and windows without speech are both left out of the answer.
            let quiet = w.rms < loudest * 0.1 || !w.speech;
            let aside = if !w.speech {
                " (no speech: left out)"
            } else if quiet {
                " (a pause: left out)"
            } else {
                ""
            };
            let ranked = top_three(&w.emotion);
            WindowView {
                x: i as u32 * COLUMN,
                width: COLUMN - 1,
                start: w.start_seconds,
                end: w.end_seconds,
                quiet,
                segments,
                summary: format!("{:.1}-{:.1} s: {ranked}{aside}", w.start_seconds, w.end_seconds),
                ranked: format!("{ranked}{aside}"),
                top: w.emotion.label.clone(),
                top_percent: 100.0 * w.emotion.confidence,
            }
        })
        .collect();
    let window_seconds = analysis.timeline.first().map_or(0.0, |w| w.end_seconds - w.start_seconds);
    let hop = match analysis.timeline.as_slice() {
        [first, second, ..] => second.start_seconds - first.start_seconds,
        _ => window_seconds,
    };
    to_html(&AudioSection {
        accuracy: notes.voice.clone(),
        axis: axis_labels(windows.len(), hop),
        audio_src: data_url(upload),
        duration: analysis.duration_seconds,
        window_seconds: (window_seconds * 10.0).round() / 10.0,
        emotion_label: analysis.emotion.label.clone(),
        sex_label: analysis.sex.label.clone(),
        sex_confidence: 100.0 * analysis.sex.confidence,
        emotion_bars: bars(&analysis.emotion),
        sex_bars: bars(&analysis.sex),
        chart_width: (windows.len() as u32 * COLUMN).max(COLUMN),
        windows,
        sample: face_sample(&analysis.emotion.label, &analysis.sex.label),
        note: analysis.note.clone(),
    })
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
    /// Font size of the face's tag on the photo, in image pixels: small
    /// enough for the tag to fit inside its box.
    tag_size: u32,
    /// Where the tag's baseline starts: inside the box's top-left corner, so
    /// it stays inside the image and off the other faces' tags.
    tag_x: u32,
    tag_y: u32,
    label: String,
    /// "angry or fearful" when the two are too close to call.
    mixed: Option<String>,
    confidence: f32,
    bars: Vec<Bar>,
    sex_label: String,
    sex_confidence: f32,
    sex_bars: Vec<Bar>,
    /// A voice expressing this face's emotion, in its predicted sex's voice.
    sample: Option<Sample>,
    /// The 48x48 grey crop the networks read, as a PNG data URL: a phantom
    /// face (a bookshelf, a shirt) is obvious at a glance.
    crop_src: String,
    /// Whether this face went into the fused answer (fusion pages).
    fused: bool,
}

/// A face crop (48x48 grey, row-major) as a PNG data URL; empty if it cannot
/// be encoded.
fn crop_data_url(crop: &[u8]) -> String {
    let side = crate::model::FACE_SIZE as u32;
    let Some(image) = image::GrayImage::from_raw(side, side, crop.to_vec()) else { return String::new() };
    let mut png = Vec::new();
    match image.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png) {
        Ok(()) => base64_url("image/png", &png),
        Err(_) => String::new(),
    }
}

#[derive(Template)]
#[template(path = "result.html")]
struct ResultPage {
    /// How many faces.
    faces: usize,
    downloads: Downloads,
    /// The rendered [`ImageSection`].
    body: String,
}

/// A photo with its boxes, and every face's bars and voice sample.
#[derive(Template)]
#[template(path = "image_section.html")]
struct ImageSection {
    image_src: String,
    image_width: u32,
    image_height: u32,
    faces: Vec<FaceView>,
    faces_left_out: usize,
    /// The face models' measured accuracy in words (empty if unmeasured).
    accuracy: String,
    /// Part of a fused answer: each face offers to be the one fused.
    fusion: bool,
}

/// The answer page for an analysed image.
fn image_result(
    upload: &Upload,
    analysis: &ImageAnalysis,
    downloads: Downloads,
    notes: &AccuracyNotes,
) -> Result<Response, AppError> {
    let body = image_section(upload, analysis, notes, None)?;
    Ok(render(&ResultPage { faces: analysis.faces.len(), downloads, body }))
}

/// A photo's section: `fused` is the number (1 = largest) of the face a
/// fused answer used, if any.
fn image_section(
    upload: &Upload,
    analysis: &ImageAnalysis,
    notes: &AccuracyNotes,
    fused: Option<usize>,
) -> Result<String, AppError> {
    // Browsers do not show every format read here (TIFF): those get the
    // analysis's PNG copy.
    let image_src = match &analysis.preview_png {
        Some(png) => base64_url("image/png", png),
        None => data_url(upload),
    };
    let faces = analysis
        .faces
        .iter()
        .enumerate()
        .map(|(i, face)| {
            let tag = format!("{} {}", i + 1, face.emotion.label);
            let tag_size = tag_size(face.bbox.width, face.bbox.height, tag.chars().count());
            FaceView {
                number: i + 1,
                x: face.bbox.x,
                y: face.bbox.y,
                width: face.bbox.width,
                height: face.bbox.height,
                tag_size,
                tag_x: face.bbox.x + (tag_size / 4).max(1),
                tag_y: face.bbox.y + tag_size + (tag_size / 4).max(1),
                label: face.emotion.label.clone(),
                mixed: mixed(&face.emotion, notes.face_mixed),
                confidence: 100.0 * face.emotion.confidence,
                bars: bars(&face.emotion),
                sex_label: face.sex.label.clone(),
                sex_confidence: 100.0 * face.sex.confidence,
                sex_bars: bars(&face.sex),
                sample: voice_sample(&face.emotion.label, &face.sex.label),
                crop_src: crop_data_url(&face.crop),
                fused: fused == Some(i + 1),
            }
        })
        .collect();
    to_html(&ImageSection {
        image_src,
        image_width: analysis.width,
        image_height: analysis.height,
        faces,
        faces_left_out: analysis.faces_left_out,
        accuracy: [notes.face_emotion.clone(), notes.face_sex.clone()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
        fusion: fused.is_some(),
    })
}

/// The font size (image pixels) at which a tag of `chars` characters fits
/// inside a `width` x `height` box: at most a fifth of its height, and narrow
/// enough for the whole tag (a bold glyph is about 0.62 em wide).
fn tag_size(width: u32, height: u32, chars: usize) -> u32 {
    let by_width = (f64::from(width) * 0.9 / (0.62 * chars.max(1) as f64)) as u32;
    (height / 5).min(by_width).max(6)
}

/// One modality's part in the fused answer, as the page lists it.
struct SourceView {
    modality: String,
    label: String,
    confidence: f32,
    weight: f32,
}

#[derive(Template)]
#[template(path = "fusion_result.html")]
struct FusionPage {
    label: String,
    emotion_word: &'static str,
    confidence: f32,
    bars: Vec<Bar>,
    sources: Vec<SourceView>,
    image_error: Option<ErrorBody>,
    audio_error: Option<ErrorBody>,
    /// The rendered [`ImageSection`] and [`AudioSection`], empty for a part
    /// that could not be analysed.
    image_body: String,
    audio_body: String,
    downloads: Downloads,
    /// Whether face and voice agree, in words.
    agreement: Option<String>,
}

/// "The face looks happy and the voice sounds neutral: ..." for two readings.
fn agreement(sources: &[SourceView]) -> Option<String> {
    let face = sources.iter().find(|s| s.modality == "face")?;
    let voice = sources.iter().find(|s| s.modality == "voice")?;
    Some(if face.label == voice.label {
        format!(
            "Face and voice agree: both read {}, so the combined answer is surer than either alone.",
            adjective(&face.label)
        )
    } else {
        format!(
            "They disagree: the face looks {} ({:.0}%) and the voice sounds {} ({:.0}%). The combined answer \
             weighs both, so it is less sure than either; look at each reading below.",
            adjective(&face.label),
            face.confidence,
            adjective(&voice.label),
            voice.confidence
        )
    })
}

/// The answer page for an image and a clip analysed together.
fn fusion_result(
    image: &Upload,
    audio: &Upload,
    fusion: &FusionAnalysis,
    downloads: Downloads,
    notes: &AccuracyNotes,
) -> Result<Response, AppError> {
    let fused = &fusion.fused.emotion;
    let fused_face = fusion.fused.sources.iter().find_map(|s| s.face);
    let image_body =
        fusion.image.as_ref().map(|a| image_section(image, a, notes, fused_face)).transpose()?.unwrap_or_default();
    let audio_body = fusion.audio.as_ref().map(|a| audio_section(audio, a, notes)).transpose()?.unwrap_or_default();
    let sources: Vec<SourceView> = fusion
        .fused
        .sources
        .iter()
        .map(|s| SourceView {
            modality: s.modality.clone(),
            label: s.emotion.label.clone(),
            confidence: 100.0 * s.emotion.confidence,
            weight: s.weight,
        })
        .collect();
    Ok(render(&FusionPage {
        agreement: agreement(&sources),
        label: fused.label.clone(),
        emotion_word: adjective(&fused.label),
        confidence: 100.0 * fused.confidence,
        bars: bars(fused),
        sources,
        image_error: fusion.image_error.clone(),
        audio_error: fusion.audio_error.clone(),
        image_body,
        audio_body,
        downloads,
    }))
}

fn to_html(page: &impl Template) -> Result<String, AppError> {
    page.render().map_err(|e| AppError::Internal(format!("rendering page: {e}")))
}

fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => HtmlError(AppError::Internal(format!("rendering page: {e}"))).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_simple_fractions() {
        assert_eq!(in_words(0.6771), "about 2 times in 3");
        assert_eq!(in_words(0.9489), "about 19 times in 20");
        assert_eq!(in_words(0.5), "about 1 time in 2");
        assert_eq!(in_words(0.3656), "about 1 time in 3");
        assert_eq!(in_words(0.99), "about 49 times in 50");
        assert_eq!(in_words(0.9975), "almost always", "rounds to 100%");
        assert_eq!(in_words(1.0), "almost always");
    }

    #[test]
    fn close_calls_are_mixed_by_the_cards_margin() {
        let classes: Vec<String> = crate::model::EMOTIONS.iter().map(|s| s.to_string()).collect();
        let close = Distribution::new(&classes, &[0.40, 0.0, 0.25, 0.05, 0.1, 0.1, 0.1]);
        assert_eq!(mixed(&close, Some(0.3)).as_deref(), Some("angry or fearful"));
        assert_eq!(mixed(&close, Some(0.1)), None, "a gap of 0.15 is a clear answer under a 0.1 margin");
        assert_eq!(mixed(&close, None), None, "no margin in the card: never mixed");
    }

    #[test]
    fn axis_labels_every_column_or_every_few_seconds() {
        let labels: Vec<Option<String>> = axis_labels(8, 1.0);
        assert_eq!(labels.len(), 8);
        assert!(labels.iter().enumerate().all(|(i, l)| l.as_deref() == Some(format!("{i} s").as_str())));
        // 60 windows a second apart: a label every 10 s, on the columns that start then.
        let labels = axis_labels(60, 1.0);
        let shown: Vec<(usize, &str)> =
            labels.iter().enumerate().filter_map(|(i, l)| l.as_deref().map(|l| (i, l))).collect();
        assert_eq!(shown, vec![(0, "0 s"), (10, "10 s"), (20, "20 s"), (30, "30 s"), (40, "40 s"), (50, "50 s")]);
        assert!(axis_labels(0, 1.0).is_empty());
    }

    #[test]
    fn card_figures_flatten_with_rates_as_percentages() {
        let metrics = serde_json::json!({
            "heldout_accuracy": 0.9489,
            "heldout_faces": 965,
            "corpora": { "emodb": { "sex_accuracy": 0.9159, "seen_in_training": true, "female_accuracy": 1.0 } },
            "unlabelled_heard_as": { "happy": 1, "neutral": 0 },
            "classes": ["a", "b"],
        });
        let mut out = Vec::new();
        figures("", &metrics, &mut out);
        assert_eq!(
            out,
            vec![
                ("heldout accuracy".to_string(), "94.89%".to_string()),
                ("heldout faces".to_string(), "965".to_string()),
                ("corpora / emodb / sex accuracy".to_string(), "91.59%".to_string()),
                ("corpora / emodb / seen in training".to_string(), "yes".to_string()),
                ("corpora / emodb / female accuracy".to_string(), "100.00%".to_string()),
                ("unlabelled heard as / happy".to_string(), "1".to_string()),
                ("unlabelled heard as / neutral".to_string(), "0".to_string()),
            ]
        );
    }
}
