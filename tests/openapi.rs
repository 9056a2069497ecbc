//! The API contract: the served OpenAPI document lists every route, every
//! `$ref` in it resolves, and real answers (an image, a clip, an error, the
//! models, health) validate against the schemas it declares (OpenAPI 3.1
//! schemas are JSON Schema 2020-12).

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use serde_json::{json, Value};

async fn get(uri: &str) -> Value {
    let response = send(Request::get(uri).body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK, "{uri}");
    json_of(response).await
}

/// Every `$ref` under `value`.
fn refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
        _ => {}
    }
}

/// Validates `instance` against the schema the document gives `name`.
fn assert_valid(doc: &Value, name: &str, instance: &Value) {
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/components/schemas/{name}"),
        "components": doc["components"],
    });
    let validator =
        jsonschema::validator_for(&schema).unwrap_or_else(|e| panic!("schema {name} does not compile: {e}"));
    let errors: Vec<String> =
        validator.iter_errors(instance).map(|e| format!("{e} at {}", e.instance_path())).collect();
    assert!(errors.is_empty(), "{name}: {errors:?}\n{instance}");
}

#[tokio::test]
async fn the_document_lists_every_route_and_resolves() {
    let doc = get("/api/openapi.json").await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(doc["info"]["title"], "emotion-ai");
    let paths: Vec<&str> = doc["paths"].as_object().unwrap().keys().map(String::as_str).collect();
    for route in ["/", "/predict", "/api/v1/predict", "/api/v1/models", "/healthz", "/api/openapi.json"] {
        assert!(paths.contains(&route), "{route} missing from {paths:?}");
    }
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for (method, operation) in operations.as_object().unwrap() {
            assert!(operation["responses"]["200"].is_object(), "{method} {path} documents no 200");
        }
    }
    let predict = &doc["paths"]["/api/v1/predict"]["post"];
    assert!(predict["requestBody"]["content"]["multipart/form-data"].is_object());
    for status in ["400", "413", "415", "422", "503"] {
        assert!(predict["responses"][status].is_object(), "predict documents no {status}");
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(doc["components"]["schemas"][name].is_object(), "{r} does not resolve");
    }
}

#[tokio::test]
async fn real_answers_validate_against_the_declared_schemas() {
    let doc = get("/api/openapi.json").await;
    for (name, bytes) in [("astronaut.jpg", fixture("astronaut.jpg")), ("speech.ogg", fixture("speech.ogg"))] {
        let response = send(upload_request("/api/v1/predict", name, &bytes, None)).await;
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        let answer = json_of(response).await;
        assert_valid(&doc, "Analysis", &answer);
        assert_valid(&doc, "Answer", &answer);
    }
    // An image and a clip: whole, and with one part's error in place of its result.
    let jpeg = fixture("astronaut.jpg");
    let silence = wav(16_000, &vec![0.0; 48_000]);
    for (what, clip) in [("a clip", fixture("speech.wav")), ("a silent clip", silence)] {
        let request = Request::post("/api/v1/predict")
            .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(Body::from(multipart_body(&[("image", "a.jpg", &jpeg), ("audio", "b.wav", &clip)])))
            .unwrap();
        let answer = json_of(send(request).await).await;
        assert_eq!(answer["kind"], "fusion", "{what}: {answer}");
        assert_valid(&doc, "Answer", &answer);
        assert_valid(&doc, "FusionAnalysis", &answer);
    }
    let form = &doc["components"]["schemas"]["UploadForm"]["properties"];
    for field in ["file", "image", "audio"] {
        assert_eq!(form[field]["format"], "binary", "upload field {field}: {form}");
    }
    let response = send(upload_request("/api/v1/predict", "coffee.jpg", &fixture("coffee.jpg"), None)).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert_valid(&doc, "ErrorBody", &json_of(response).await);
    assert_valid(&doc, "Health", &get("/healthz").await);

    let models = get("/api/v1/models").await;
    assert_valid(&doc, "Models", &models);
    assert_eq!(models["face_sex"]["classes"], json!(["female", "male"]));
    assert!(models["voice_emotion"]["metrics"]["heldout_actor_emotion7_accuracy"].as_f64().unwrap() > 0.55);
    assert!(models["face_sex"]["metrics"]["heldout_adult_accuracy"].as_f64().unwrap() > 0.93);
    assert!(models["face_emotion"]["metrics"]["fer2013_private_test_accuracy"].as_f64().unwrap() > 0.6);
    assert_eq!(models["speech_check"]["classes"], json!(["speech", "not_speech"]));
    assert_eq!(models["face_detector"]["name"], "centerface", "the default detector");
    assert!(models["face_detector"]["file"].as_str().unwrap().ends_with("centerface.onnx"));
    assert!(
        models["fallback_face_detector"].is_null(),
        "no second detector by default: {}",
        models["fallback_face_detector"]
    );
    assert!(models["speech_check"]["metrics"]["nonspeech_refused"].as_f64().unwrap() > 0.99);
    assert!(models["speech_check"]["metrics"]["speech_accepted"]["ravdess"]["accepted"].as_f64().unwrap() > 0.99);
    // The shipped check's VAD gate: a band of probabilities under its threshold.
    let input = &models["speech_check"]["input"];
    let gate_floor = input["vad_gate"]["min_probability"].as_f64().unwrap();
    assert!(gate_floor > 0.0 && gate_floor < input["threshold"].as_f64().unwrap(), "{input}");
    assert!((0.0..=1.0).contains(&input["vad_gate"]["min_vad_speech_share"].as_f64().unwrap()), "{input}");
    // The calibration fusion weighs by, and the ECE it was judged on.
    for model in ["face_emotion", "voice_emotion", "face_sex"] {
        let t = models[model]["calibration"]["temperature"].as_f64().unwrap_or_default();
        assert!(t > 0.25 && t < 4.0, "{model} temperature {t}");
    }
    assert!(models["face_emotion"]["metrics"]["private_test_ece"].as_f64().unwrap() < 0.2);
    assert!(models["voice_emotion"]["metrics"]["heldout_actor_emotion7_ece"].as_f64().unwrap() < 0.2);

    // The schema is not vacuous: a wrong answer fails it.
    let schema = json!({"$ref": "#/components/schemas/Analysis", "components": doc["components"]});
    let validator = jsonschema::validator_for(&schema).unwrap();
    assert!(!validator.is_valid(&json!({"kind": "image", "width": "wide"})));
    let fusion = json!({"$ref": "#/components/schemas/FusionAnalysis", "components": doc["components"]});
    let validator = jsonschema::validator_for(&fusion).unwrap();
    assert!(!validator.is_valid(&json!({"kind": "fusion", "image": null, "audio": null})), "fused is required");
    assert!(!validator.is_valid(&json!({"kind": "video"})));
}
