//! An image and a clip of one person in one request: each analysed, and
//! their emotions fused with the weights in the model cards; a part that
//! cannot be analysed is reported and left out; pairs that make no sense are
//! refused.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use emotion_ai::fusion::{fuse, Evidence};
use emotion_ai::model::voice::VoiceModelCard;
use emotion_ai::model::{ModelCard, EMOTIONS};
use serde_json::Value;

fn pair_request(parts: &[(&str, &str, &[u8])], accept: Option<&str>) -> Request<Body> {
    let mut builder = Request::post(if accept.is_some() { "/predict" } else { "/api/v1/predict" })
        .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={BOUNDARY}"));
    if let Some(accept) = accept {
        builder = builder.header(header::ACCEPT, accept);
    }
    builder.body(Body::from(multipart_body(parts))).unwrap()
}

fn probabilities(distribution: &Value) -> Vec<f32> {
    let entries = distribution["probabilities"].as_array().unwrap();
    let labels: Vec<&str> = entries.iter().map(|p| p["label"].as_str().unwrap()).collect();
    assert_eq!(labels, EMOTIONS);
    entries.iter().map(|p| p["probability"].as_f64().unwrap() as f32).collect()
}

/// The weights the shipped cards give face and voice: 1 / temperature.
fn card_weights() -> (f64, f64) {
    let face = ModelCard::load(&root().join("models/face_emotion.json")).unwrap();
    let voice = VoiceModelCard::load(&root().join("models/voice_emotion.json")).unwrap();
    (1.0 / face.calibration.unwrap().temperature, 1.0 / voice.calibration.unwrap().temperature)
}

/// Checks that `fused` is the log-linear pool of its sources with the
/// cards' weights, and returns the sources' modalities.
fn assert_fused_from_sources(fused: &Value) -> Vec<String> {
    let (face_weight, voice_weight) = card_weights();
    let sources = fused["sources"].as_array().unwrap();
    let inputs: Vec<(String, f64, Vec<f32>)> = sources
        .iter()
        .map(|s| {
            let modality = s["modality"].as_str().unwrap().to_string();
            let weight = s["weight"].as_f64().unwrap();
            let expected = if modality == "face" { face_weight } else { voice_weight };
            assert!((weight - expected).abs() < 1e-4, "{modality} weight {weight}, card says {expected}");
            (modality, weight, probabilities(&s["emotion"]))
        })
        .collect();
    let evidence: Vec<Evidence> =
        inputs.iter().map(|(_, w, p)| Evidence { probabilities: p, temperature: 1.0 / w }).collect();
    let expected = fuse(&evidence).unwrap();
    let got = probabilities(&fused["emotion"]);
    let sum: f32 = got.iter().sum();
    assert!((sum - 1.0).abs() < 1e-4, "fused probabilities sum to {sum}");
    for (g, e) in got.iter().zip(&expected) {
        assert!((g - e).abs() < 1e-4, "fused {got:?}, expected {expected:?}");
    }
    inputs.into_iter().map(|(m, _, _)| m).collect()
}

#[tokio::test]
async fn an_image_and_a_clip_are_analysed_and_fused() {
    let jpeg = fixture("astronaut.jpg");
    let clip = fixture("speech.wav");
    let response = send(pair_request(&[("image", "me.jpg", &jpeg), ("audio", "me.wav", &clip)], None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_of(response).await;
    assert_eq!(body["kind"], "fusion");
    assert!(body["image_error"].is_null() && body["audio_error"].is_null(), "{body}");
    let faces = body["image"]["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1);
    assert!(body["audio"]["timeline"].as_array().is_some_and(|t| !t.is_empty()));
    let modalities = assert_fused_from_sources(&body["fused"]);
    assert_eq!(modalities, ["face", "voice"]);
    // What went in is exactly what each part answered.
    assert_eq!(body["fused"]["sources"][0]["emotion"], faces[0]["emotion"]);
    assert_eq!(body["fused"]["sources"][1]["emotion"], body["audio"]["emotion"]);
    // The answer says which face was fused: the largest, face 1, by default.
    assert_eq!(body["fused"]["sources"][0]["face"], 1);
    assert!(body["fused"]["sources"][1].get("face").is_none());
}

#[tokio::test]
async fn the_fused_face_can_be_chosen_and_the_answer_names_it() {
    let group = fixture("group.jpg");
    let clip = fixture("speech.wav");
    let parts = |choice: &'static [u8]| {
        vec![("image", "group.jpg", group.as_slice()), ("audio", "me.wav", clip.as_slice()), ("fuse_face", "", choice)]
    };
    let response = send(pair_request(&parts(b"2"), None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_of(response).await;
    let faces = body["image"]["faces"].as_array().unwrap();
    assert!(faces.len() >= 3, "{} faces", faces.len());
    assert_eq!(body["fused"]["sources"][0]["face"], 2);
    assert_eq!(body["fused"]["sources"][0]["emotion"], faces[1]["emotion"], "face 2 is the one fused");
    assert_fused_from_sources(&body["fused"]);
    // A face the image does not have, or not a number: 400, saying why.
    for (choice, says) in
        [(&b"9"[..], "but the image has"), (&b"0"[..], "1 for the largest"), (&b"two"[..], "got `two`")]
    {
        let response = send(pair_request(
            &[("image", "group.jpg", &group), ("audio", "me.wav", &clip), ("fuse_face", "", choice)],
            None,
        ))
        .await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        let body = json_of(response).await;
        assert_eq!(body["code"], "bad_request");
        assert!(body["message"].as_str().unwrap().contains(says), "{body}");
    }
}

#[tokio::test]
async fn two_file_fields_are_told_apart_by_content() {
    let jpeg = fixture("astronaut.jpg");
    let clip = fixture("speech.ogg");
    // The clip first, under the generic field name.
    let response = send(pair_request(&[("file", "a", &clip), ("file", "b", &jpeg)], None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_of(response).await;
    assert_eq!(body["kind"], "fusion");
    assert_eq!(body["image"]["width"], 256);
    assert!(body["audio"]["duration_seconds"].as_f64().unwrap() > 1.0);
    // Field names that contradict the content do not matter either.
    let swapped = send(pair_request(&[("image", "a", &clip), ("audio", "b", &jpeg)], None)).await;
    assert_eq!(json_of(swapped).await["fused"], body["fused"]);
}

#[tokio::test]
async fn a_part_that_cannot_be_analysed_is_reported_and_left_out() {
    let no_face = fixture("coffee.jpg");
    let clip = fixture("speech.wav");
    let body =
        json_of(send(pair_request(&[("image", "c.jpg", &no_face), ("audio", "s.wav", &clip)], None)).await).await;
    assert_eq!(body["kind"], "fusion");
    assert!(body["image"].is_null());
    assert_eq!(body["image_error"]["code"], "no_face");
    assert_eq!(body["image_error"]["status"], 422);
    assert_eq!(assert_fused_from_sources(&body["fused"]), ["voice"]);

    let silence = wav(16_000, &vec![0.0; 48_000]);
    let jpeg = fixture("astronaut.jpg");
    let body =
        json_of(send(pair_request(&[("image", "a.jpg", &jpeg), ("audio", "s.wav", &silence)], None)).await).await;
    assert_eq!(body["audio_error"]["code"], "no_speech");
    assert!(body["audio"].is_null());
    assert_eq!(assert_fused_from_sources(&body["fused"]), ["face"]);
    // A truncated clip is a part error too, not a lost image.
    let cut = &clip[..100];
    let body = json_of(send(pair_request(&[("image", "a.jpg", &jpeg), ("audio", "s.wav", cut)], None)).await).await;
    assert_eq!(body["audio_error"]["code"], "corrupt_file", "{body}");
    assert_eq!(body["image"]["faces"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn when_neither_part_can_be_analysed_the_request_fails() {
    let silence = wav(16_000, &vec![0.0; 48_000]);
    let response =
        send(pair_request(&[("image", "c.jpg", &fixture("coffee.jpg")), ("audio", "s.wav", &silence)], None)).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(json_of(response).await["code"], "no_face");
}

#[tokio::test]
async fn pairs_that_are_not_an_image_and_a_clip_are_refused() {
    let jpeg = fixture("astronaut.jpg");
    let clip = fixture("speech.wav");
    type Part<'a> = (&'a str, &'a str, &'a [u8]);
    let cases: [(&str, Vec<Part>, &str); 3] = [
        ("two images", vec![("image", "a.jpg", &jpeg), ("file", "b.jpg", &jpeg)], "two images"),
        ("two clips", vec![("audio", "a.wav", &clip), ("audio", "b.wav", &clip)], "two clips"),
        (
            "three files",
            vec![("image", "a.jpg", &jpeg), ("audio", "b.wav", &clip), ("file", "c.wav", &clip)],
            "third file",
        ),
    ];
    for (what, parts, phrase) in cases {
        let response = send(pair_request(&parts, None)).await;
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{what}");
        let body = json_of(response).await;
        assert_eq!(body["code"], "too_many_files", "{what}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(phrase) && message.contains("one image and one"), "{what}: {message}");
    }
    // A lone `image` or `audio` field is an ordinary single upload.
    let body = json_of(send(pair_request(&[("audio", "a.wav", &clip)], None)).await).await;
    assert_eq!(body["kind"], "audio");
}

#[tokio::test]
async fn the_fusion_page_shows_the_fused_answer_and_both_parts() {
    let jpeg = fixture("astronaut.jpg");
    let clip = fixture("speech.wav");
    let response =
        send(pair_request(&[("image", "me.jpg", &jpeg), ("audio", "me.wav", &clip)], Some("text/html"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = text_of(response).await;
    assert!(html.contains("Face and voice together"), "{html}");
    assert_eq!(html.matches("<meter").count(), 7 + (7 + 2) + (7 + 2), "fused, face and voice bars");
    assert!(html.contains("data-modality=\"face\"") && html.contains("data-modality=\"voice\""));
    assert!(html.contains("<img src=\"data:image/jpeg;base64,"));
    assert!(html.contains("<audio class=\"player\" controls src=\"data:audio/wav;base64,"));

    let no_face = fixture("coffee.jpg");
    let html = text_of(
        send(pair_request(&[("image", "c.jpg", &no_face), ("audio", "s.wav", &clip)], Some("text/html"))).await,
    )
    .await;
    assert!(html.contains("data-code=\"no_face\"") && html.contains("The image could not be used"), "{html}");
    assert!(!html.contains("data-modality=\"face\""));
}
