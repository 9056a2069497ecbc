//! Audio uploads end to end: every supported container through the same
//! endpoints as images, long clips with a timeline, and the clear 4xx answers
//! for audio that cannot be analysed. The fixtures are espeak-ng speech made by
//! `scripts/make_audio_fixtures.sh`; synthetic clips are built here.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use emotion_ai::model::voice::{voice_class_names, SEXES};
use emotion_ai::model::EMOTIONS;
use serde_json::Value;

/// Probabilities of a distribution as (label, p), after checking they sum to
/// 1 and that the top one is the named label.
fn distribution(d: &Value, labels: &[&str]) -> Vec<(String, f64)> {
    let entries: Vec<(String, f64)> = d["probabilities"]
        .as_array()
        .unwrap_or_else(|| panic!("no probabilities in {d}"))
        .iter()
        .map(|p| (p["label"].as_str().unwrap().to_string(), p["probability"].as_f64().unwrap()))
        .collect();
    let names: Vec<&str> = entries.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(names, labels);
    let sum: f64 = entries.iter().map(|(_, p)| p).sum();
    assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}: {d}");
    assert!(entries.iter().all(|(_, p)| (0.0..=1.0).contains(p)));
    let top = entries.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    assert_eq!(d["label"], top.0.as_str(), "{d}");
    assert!((d["confidence"].as_f64().unwrap() - top.1).abs() < 1e-6);
    entries
}

/// Checks an audio answer: 14 joint classes, and 7 emotions and 2 sexes that
/// are exactly their marginals.
fn assert_audio_answer(body: &Value) {
    assert_eq!(body["kind"], "audio", "{body}");
    let class_names = voice_class_names();
    let class_names: Vec<&str> = class_names.iter().map(String::as_str).collect();
    let joint = distribution(&body["classes"], &class_names);
    let emotions = distribution(&body["emotion"], &EMOTIONS);
    let sexes = distribution(&body["sex"], &SEXES);
    for (e, (_, p)) in emotions.iter().enumerate() {
        let summed = joint[2 * e].1 + joint[2 * e + 1].1;
        assert!((p - summed).abs() < 1e-4, "emotion {e}: {p} vs {summed}");
    }
    for (s, (_, p)) in sexes.iter().enumerate() {
        let summed: f64 = joint.iter().skip(s).step_by(2).map(|(_, p)| p).sum();
        assert!((p - summed).abs() < 1e-4, "sex {s}: {p} vs {summed}");
    }
    assert!(!body["timeline"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn speech_in_every_supported_container_gets_emotion_sex_and_fourteen_classes() {
    for name in ["speech.wav", "speech.flac", "speech.mp3", "speech.ogg", "speech.m4a"] {
        // A misleading file name: the format is read from the bytes.
        let response = send(upload_request("/api/v1/predict", "upload.bin", &fixture(name), None)).await;
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        let body = json_of(response).await;
        assert_audio_answer(&body);
        let duration = body["duration_seconds"].as_f64().unwrap();
        assert!((2.0..2.6).contains(&duration), "{name}: {duration} s");
        // Shorter than one 3 s window: one window covering the clip.
        assert_eq!(body["timeline"].as_array().unwrap().len(), 1, "{name}");
    }
}

#[tokio::test]
async fn a_minute_long_clip_gets_a_timeline_of_overlapping_windows() {
    let clip = repeated_speech(60);
    let response = send(upload_request("/api/v1/predict", "minute.wav", &wav(16000, &clip), None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_of(response).await;
    assert_audio_answer(&body);
    assert!((body["duration_seconds"].as_f64().unwrap() - 60.0).abs() < 0.01);
    let timeline = body["timeline"].as_array().unwrap();
    // 3 s windows every second: starts 0..=57 s.
    assert_eq!(timeline.len(), 58);
    for (i, window) in timeline.iter().enumerate() {
        let (start, end) = (window["start_seconds"].as_f64().unwrap(), window["end_seconds"].as_f64().unwrap());
        assert!((start - i as f64).abs() < 1e-3 && (end - start - 3.0).abs() < 1e-3, "window {i}: {start}-{end}");
        distribution(&window["emotion"], &EMOTIONS);
        distribution(&window["sex"], &SEXES);
        assert!(window["rms"].as_f64().unwrap() > 0.0);
    }
}

#[tokio::test]
async fn audio_that_cannot_be_analysed_gets_a_clear_4xx() {
    let wav_bytes = fixture("speech.wav");
    let flac = fixture("speech.flac");
    let zero_length = wav(16000, &[]);
    let silence = wav(16000, &vec![0.0; 3 * 16000]);
    // Five minutes and a second at 8 kHz: 4.8 MB, under the upload limit.
    let too_long = wav(8000, &vec![0.01; 301 * 8000]);
    let cases: [(&str, &[u8], StatusCode, &str, &str); 8] = [
        ("empty.wav", b"", StatusCode::BAD_REQUEST, "empty_file", "empty"),
        ("cut.wav", &wav_bytes[..wav_bytes.len() / 2], StatusCode::UNPROCESSABLE_ENTITY, "corrupt_file", "truncated"),
        ("cut.flac", &flac[..flac.len() / 2], StatusCode::UNPROCESSABLE_ENTITY, "corrupt_file", "truncated"),
        ("zero.wav", &zero_length, StatusCode::UNPROCESSABLE_ENTITY, "corrupt_file", "no audio"),
        ("speech.webm", &fixture("speech.webm"), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", "WebM"),
        (
            "notes.wav",
            b"this is text with a .wav name\n",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "WAV",
        ),
        ("silence.wav", &silence, StatusCode::UNPROCESSABLE_ENTITY, "no_speech", "silent"),
        ("long.wav", &too_long, StatusCode::PAYLOAD_TOO_LARGE, "audio_too_long", "300"),
    ];
    for (name, bytes, status, code, phrase) in cases {
        let response = send(upload_request("/api/v1/predict", name, bytes, None)).await;
        assert_eq!(response.status(), status, "{name}");
        let body = json_of(response).await;
        assert_eq!(body["code"], code, "{name}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(phrase), "{name}: {message}");
    }
}

#[tokio::test]
async fn browsers_get_an_audio_page_with_player_bars_and_timeline() {
    let browser_accept = "text/html,application/xhtml+xml,*/*;q=0.8";
    let response = send(upload_request("/predict", "speech.mp3", &fixture("speech.mp3"), Some(browser_accept))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    let html = text_of(response).await;
    assert!(html.contains("<audio") && html.contains("src=\"data:audio/mpeg;base64,"), "{html}");
    // 7 emotion bars and 2 sex bars, and a drawn face for the emotion and sex.
    assert_eq!(html.matches("<meter").count(), 9);
    assert!(html.contains("<img src=\"/assets/faces/"), "{html}");
    for label in EMOTIONS.iter().chain(SEXES.iter()) {
        assert!(html.contains(&format!("<dt>{label}</dt>")), "{label} bar missing");
    }

    let speech = speech_samples();
    let clip: Vec<f32> = speech.iter().cycle().take(10 * 16000).copied().collect();
    let response = send(upload_request("/predict", "ten.wav", &wav(16000, &clip), Some(browser_accept))).await;
    let html = text_of(response).await;
    assert!(html.contains("class=\"timeline\""), "a 10 s clip has a timeline");
    // 8 windows, each stacked from 7 emotions.
    assert_eq!(html.matches("<rect class=\"emo-").count(), 8 * 7);
}

#[tokio::test]
async fn health_lists_the_voice_model() {
    let health = json_of(send(Request::get("/healthz").body(Body::empty()).unwrap()).await).await;
    let classes = health["models"]["voice_emotion"]["classes"].as_array().unwrap();
    assert_eq!(classes.len(), 14, "{health}");
}

#[tokio::test]
async fn a_clip_under_two_seconds_is_answered_with_a_note_saying_it_is_less_sure() {
    let speech = speech_samples();
    assert!(speech.len() > 2 * 16000, "the fixture is over 2 s");
    let short = wav(16000, &speech[..16000 * 3 / 2]);

    let body = json_of(send(upload_request("/api/v1/predict", "short.wav", &short, None)).await).await;
    assert_eq!(body["kind"], "audio", "1.5 s of speech is answered: {body}");
    let note = body["note"].as_str().expect("a note on a 1.5 s clip's answer");
    assert!(note.contains("only 1.5 s long") && note.contains("at least 2 s"), "{note}");
    let whole =
        json_of(send(upload_request("/api/v1/predict", "speech.wav", &fixture("speech.wav"), None)).await).await;
    assert_eq!(whole["kind"], "audio");
    assert!(whole.get("note").is_none(), "no note over 2 s: {whole}");

    let browser_accept = "text/html,application/xhtml+xml,*/*;q=0.8";
    let html = text_of(send(upload_request("/predict", "short.wav", &short, Some(browser_accept))).await).await;
    assert!(html.contains("<p class=\"note\">The clip is only 1.5 s long"), "{html}");
    let html =
        text_of(send(upload_request("/predict", "speech.wav", &fixture("speech.wav"), Some(browser_accept))).await)
            .await;
    assert!(!html.contains("<p class=\"note\">"), "no note on the page over 2 s");
}
