//! The HTTP API end to end: `app().oneshot(request)` for each behaviour, and a
//! real socket for the whole stack.

mod common;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use emotion_ai::model::EMOTIONS;
use emotion_ai::web::{self, ServerLimits};
use serde_json::Value;
use tower::ServiceExt;

/// Checks one face entry: a box inside the image and 7 probabilities in the
/// FER order that sum to 1, with the top one named.
fn assert_face(face: &Value, width: u64, height: u64) {
    let b = &face["box"];
    let (x, y, w, h) = (
        b["x"].as_u64().unwrap(),
        b["y"].as_u64().unwrap(),
        b["width"].as_u64().unwrap(),
        b["height"].as_u64().unwrap(),
    );
    assert!(w > 0 && h > 0 && x + w <= width && y + h <= height, "box {b} outside {width}x{height}");
    let emotion = &face["emotion"];
    let probabilities = emotion["probabilities"].as_array().unwrap();
    let labels: Vec<&str> = probabilities.iter().map(|p| p["label"].as_str().unwrap()).collect();
    assert_eq!(labels, EMOTIONS);
    let sum: f64 = probabilities.iter().map(|p| p["probability"].as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-4, "probabilities sum to {sum}");
    let top = probabilities
        .iter()
        .max_by(|a, b| a["probability"].as_f64().partial_cmp(&b["probability"].as_f64()).unwrap())
        .unwrap();
    assert_eq!(emotion["label"], top["label"]);
    assert_eq!(emotion["confidence"], top["probability"]);
    // The sex, from the face model: female and male, summing to 1.
    let sex = &face["sex"];
    let sexes: Vec<&str> =
        sex["probabilities"].as_array().unwrap().iter().map(|p| p["label"].as_str().unwrap()).collect();
    assert_eq!(sexes, ["female", "male"]);
    let sum: f64 = sex["probabilities"].as_array().unwrap().iter().map(|p| p["probability"].as_f64().unwrap()).sum();
    assert!((sum - 1.0).abs() < 1e-4, "sex probabilities sum to {sum}");
    assert!(sexes.contains(&sex["label"].as_str().unwrap()));
}

#[tokio::test]
async fn a_portrait_gives_one_face_with_seven_probabilities() {
    let response = send(upload_request("/api/v1/predict", "astronaut.jpg", &fixture("astronaut.jpg"), None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_of(response).await;
    assert_eq!((body["width"].as_u64(), body["height"].as_u64()), (Some(256), Some(256)));
    let faces = body["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1, "{body}");
    assert_face(&faces[0], 256, 256);
    // The face is in the upper middle of the portrait.
    let b = &faces[0]["box"];
    assert!((60..140).contains(&b["x"].as_u64().unwrap()) && b["y"].as_u64().unwrap() < 80, "{b}");
}

#[tokio::test]
async fn every_face_of_a_group_photo_is_reported_largest_first() {
    let response = send(upload_request("/api/v1/predict", "group.jpg", &fixture("group.jpg"), None)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_of(response).await;
    let faces = body["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 3, "{body}");
    let areas: Vec<u64> =
        faces.iter().map(|f| f["box"]["width"].as_u64().unwrap() * f["box"]["height"].as_u64().unwrap()).collect();
    assert!(areas.windows(2).all(|w| w[0] >= w[1]), "not largest first: {areas:?}");
    let mut xs: Vec<u64> = faces.iter().map(|f| f["box"]["x"].as_u64().unwrap()).collect();
    xs.sort();
    assert!(xs[0] < 280 && (280..560).contains(&xs[1]) && xs[2] >= 560, "one face per portrait: {xs:?}");
    for face in faces {
        assert_face(face, 800, 300);
    }
}

#[tokio::test]
async fn a_photo_without_faces_says_so_and_guesses_nothing() {
    let response = send(upload_request("/api/v1/predict", "coffee.jpg", &fixture("coffee.jpg"), None)).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = json_of(response).await;
    assert_eq!(body["code"], "no_face");
    assert!(body["message"].as_str().unwrap().starts_with("No face was found"));
    assert!(body.get("faces").is_none() && body.get("emotion").is_none());
}

#[tokio::test]
async fn bad_files_get_4xx_json_errors_with_clear_messages() {
    let jpeg = fixture("astronaut.jpg");
    let cases: [(&str, &[u8], StatusCode, &str, &str); 3] = [
        (
            "notes.txt",
            b"just some text, not a picture\n",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "JPEG, PNG",
        ),
        ("empty.jpg", b"", StatusCode::BAD_REQUEST, "empty_file", "empty"),
        ("cut.jpg", &jpeg[..jpeg.len() / 3], StatusCode::UNPROCESSABLE_ENTITY, "corrupt_file", "truncated or corrupt"),
    ];
    for (name, bytes, status, code, phrase) in cases {
        let response = send(upload_request("/api/v1/predict", name, bytes, None)).await;
        assert_eq!(response.status(), status, "{name}");
        assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json", "{name}");
        let body = json_of(response).await;
        assert_eq!(body["code"], code, "{name}: {body}");
        assert_eq!(body["status"], status.as_u16());
        assert!(body["message"].as_str().unwrap().contains(phrase), "{name}: {body}");
    }
}

#[tokio::test]
async fn requests_without_a_usable_file_field_are_explained() {
    let wrong_field = Request::post("/api/v1/predict")
        .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(Body::from(multipart_body(&[("picture", "a.jpg", b"x")])))
        .unwrap();
    let body = json_of(send(wrong_field).await).await;
    assert_eq!(body["code"], "missing_file");
    assert!(body["message"].as_str().unwrap().contains("`file`"));

    let not_multipart = Request::post("/api/v1/predict")
        .header(header::CONTENT_TYPE, "image/jpeg")
        .body(Body::from(fixture("astronaut.jpg")))
        .unwrap();
    let response = send(not_multipart).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(json_of(response).await["code"], "bad_request");

    let jpeg = fixture("astronaut.jpg");
    let two = Request::post("/api/v1/predict")
        .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(Body::from(multipart_body(&[("file", "a.jpg", &jpeg), ("file", "b.jpg", &jpeg)])))
        .unwrap();
    assert_eq!(json_of(send(two).await).await["code"], "too_many_files");
}

#[tokio::test]
async fn uploads_over_the_limit_get_413() {
    let limits = ServerLimits { max_upload_bytes: 64 * 1024, ..ServerLimits::default() };
    let big = vec![0u8; 200 * 1024];
    let response =
        web::app(state_with(limits)).oneshot(upload_request("/api/v1/predict", "big.jpg", &big, None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body = json_of(response).await;
    assert_eq!(body["code"], "payload_too_large");
    assert!(body["message"].as_str().unwrap().contains("1 MiB"), "{body}");
}

#[tokio::test]
async fn a_full_server_answers_503_with_retry_after_at_once() {
    let limits = ServerLimits { workers: 0, queue: 0, ..ServerLimits::default() };
    let response = web::app(state_with(limits))
        .oneshot(upload_request("/api/v1/predict", "a.jpg", &fixture("astronaut.jpg"), None))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(response.headers().contains_key(header::RETRY_AFTER));
    assert_eq!(json_of(response).await["code"], "busy");
}

/// A multipart upload of the astronaut photo whose body arrives in `pieces`
/// pieces, `gap` apart; after them, with `stall`, nothing more ever comes.
fn trickled_upload(pieces: usize, gap: std::time::Duration, stall: bool) -> Request<Body> {
    let body = multipart_body(&[("file", "a.jpg", &fixture("astronaut.jpg"))]);
    let size = body.len().div_ceil(pieces);
    let chunks: Vec<Vec<u8>> = body.chunks(size).map(<[u8]>::to_vec).collect();
    let sent = if stall { 1 } else { chunks.len() };
    let trickle = futures_util::stream::StreamExt::then(
        futures_util::stream::iter(chunks.into_iter().take(sent).enumerate()),
        move |(i, chunk)| async move {
            if i > 0 {
                tokio::time::sleep(gap).await;
            }
            Ok::<_, std::io::Error>(chunk)
        },
    );
    let body = if stall {
        Body::from_stream(futures_util::stream::StreamExt::chain(trickle, futures_util::stream::pending()))
    } else {
        Body::from_stream(trickle)
    };
    Request::post("/api/v1/predict")
        .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(body)
        .unwrap()
}

#[tokio::test]
async fn an_upload_that_stalls_gets_408_at_the_upload_timeout() {
    let limits = ServerLimits { upload_timeout: std::time::Duration::from_millis(300), ..ServerLimits::default() };
    // Bounded so that a missing timeout fails the test instead of hanging it.
    let response = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        web::app(state_with(limits)).oneshot(trickled_upload(4, std::time::Duration::ZERO, true)),
    )
    .await
    .expect("the server must answer a stalled upload")
    .unwrap();
    assert_eq!(response.status(), StatusCode::REQUEST_TIMEOUT);
    let body = json_of(response).await;
    assert_eq!(body["code"], "upload_timeout");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("did not arrive within 1 s") && message.contains("20 MiB"), "{body}");
}

/// Reading the upload has its own bound: a slow link that takes longer than
/// the analysis timeout to deliver the photo still gets its answer.
#[tokio::test]
async fn a_slow_upload_within_the_upload_timeout_is_answered() {
    let limits = ServerLimits {
        request_timeout: std::time::Duration::from_secs(2),
        upload_timeout: std::time::Duration::from_secs(30),
        ..ServerLimits::default()
    };
    let started = std::time::Instant::now();
    let response = web::app(state_with(limits))
        .oneshot(trickled_upload(8, std::time::Duration::from_millis(450), false))
        .await
        .unwrap();
    assert!(started.elapsed() > std::time::Duration::from_secs(3), "the upload took {:?}", started.elapsed());
    assert_eq!(response.status(), StatusCode::OK, "{}", json_of(response).await);
}

#[tokio::test]
async fn predict_answers_json_to_api_clients_and_a_page_to_browsers() {
    let jpeg = fixture("astronaut.jpg");
    let response = send(upload_request("/predict", "a.jpg", &jpeg, Some("application/json"))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(json_of(response).await["faces"].as_array().unwrap().len(), 1);

    let browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let response = send(upload_request("/predict", "a.jpg", &jpeg, Some(browser_accept))).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    let csp = response.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_string();
    assert!(csp.contains("default-src 'self'"));
    let html = text_of(response).await;
    assert!(html.contains("1 face found"), "{html}");
    assert!(html.contains("class=\"face-box\""));
    // 7 emotion bars and 2 sex bars for the one face, and a voice sample
    // for its emotion and sex.
    assert_eq!(html.matches("<meter").count(), 9);
    assert!(html.contains("<audio controls preload=\"none\" src=\"/assets/voices/"), "{html}");
    assert!(html.contains("src=\"data:image/jpeg;base64,"));
    for emotion in EMOTIONS {
        assert!(html.contains(&format!("<dt>{emotion}</dt>")), "{emotion} bar missing");
    }

    let response = send(upload_request("/predict", "coffee.jpg", &fixture("coffee.jpg"), Some(browser_accept))).await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = text_of(response).await;
    assert!(html.contains("No face found") && html.contains("data-code=\"no_face\""), "{html}");
}

#[tokio::test]
async fn a_tiff_is_previewed_on_the_answer_page_as_a_png_browsers_show() {
    use base64::Engine as _;
    // The astronaut photo as a colour TIFF, a format browsers do not show in <img>.
    let photo = image::load_from_memory(&fixture("astronaut.jpg")).unwrap().to_rgb8();
    let mut tiff = Vec::new();
    photo.write_to(&mut std::io::Cursor::new(&mut tiff), image::ImageFormat::Tiff).unwrap();
    let browser_accept = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";
    let response = send(upload_request("/predict", "astronaut.tiff", &tiff, Some(browser_accept))).await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = text_of(response).await;
    assert!(html.contains("1 face found"), "{html}");
    assert!(!html.contains("data:image/tiff"), "the TIFF itself is not embedded");
    let prefix = "<img src=\"data:image/png;base64,";
    let start = html.find(prefix).expect("the picture embedded as a PNG") + prefix.len();
    let encoded = &html[start..start + html[start..].find('"').unwrap()];
    let png = base64::engine::general_purpose::STANDARD.decode(encoded).unwrap();
    let preview = image::load_from_memory_with_format(&png, image::ImageFormat::Png).expect("a PNG");
    assert_eq!((preview.width(), preview.height()), photo.dimensions(), "small pictures keep their size");
    // The JSON answer carries no preview.
    let response = send(upload_request("/predict", "astronaut.tiff", &tiff, Some("application/json"))).await;
    let json = json_of(response).await;
    assert!(json.get("preview_png").is_none() && json["faces"].as_array().unwrap().len() == 1, "{json}");
}

#[tokio::test]
async fn a_cmyk_jpeg_and_a_palette_tiff_are_read_like_the_rgb_jpeg() {
    let answer = |name: &'static str| async move {
        let response = send(upload_request("/api/v1/predict", name, &fixture(name), None)).await;
        assert_eq!(response.status(), StatusCode::OK, "{name}");
        json_of(response).await
    };
    let rgb = answer("astronaut.jpg").await;
    let reference = &rgb["faces"][0];
    // The same picture as print workflows (CMYK JPEG) and JAFFE (palette TIFF) store it.
    for name in ["astronaut_cmyk.jpg", "astronaut_palette.tif"] {
        let body = answer(name).await;
        let faces = body["faces"].as_array().unwrap();
        assert_eq!(faces.len(), 1, "{name}: {body}");
        assert_face(&faces[0], 256, 256);
        for side in ["x", "y", "width", "height"] {
            let (a, b) = (faces[0]["box"][side].as_i64().unwrap(), reference["box"][side].as_i64().unwrap());
            assert!((a - b).abs() <= 8, "{name}: box {side} {a} against {b}");
        }
        assert_eq!(faces[0]["emotion"]["label"], reference["emotion"]["label"], "{name}");
    }
}

#[tokio::test]
async fn upload_page_health_static_files_and_unknown_paths() {
    let response = send(Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(response.status(), StatusCode::OK);
    let html = text_of(response).await;
    assert!(html.contains("enctype=\"multipart/form-data\"") && html.contains("name=\"file\""));
    assert!(!html.contains("http://cdn") && !html.contains("https://"), "page must not load from a CDN");

    let health = json_of(send(Request::get("/healthz").body(Body::empty()).unwrap()).await).await;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["models"]["face_emotion"]["classes"].as_array().unwrap().len(), 7);
    assert_eq!(health["models"]["face_sex"]["classes"].as_array().unwrap().len(), 2);

    // Every cross-modal sample is served.
    for sample in web::samples::all_samples() {
        let response = send(Request::get(&sample.url).body(Body::empty()).unwrap()).await;
        assert_eq!(response.status(), StatusCode::OK, "{}", sample.url);
    }

    let css = send(Request::get("/static/style.css").body(Body::empty()).unwrap()).await;
    assert_eq!(css.status(), StatusCode::OK);
    assert!(css.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/css"));

    let missing =
        send(Request::get("/nope").header(header::ACCEPT, "application/json").body(Body::empty()).unwrap()).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(json_of(missing).await["code"], "not_found");
    // A browser (or a client that states no preference) gets a page.
    let page = send(Request::get("/nope").body(Body::empty()).unwrap()).await;
    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert!(text_of(page).await.contains("Not found"));
}

/// The whole stack over a real socket, as `curl -F file=@...` would use it.
#[tokio::test]
async fn a_real_socket_serves_multipart_uploads() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(web::serve(listener, state(), async {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::new();
    let post_file = |name: &'static str, bytes: Vec<u8>| {
        let part = reqwest::multipart::Part::bytes(bytes).file_name(name);
        let form = reqwest::multipart::Form::new().part("file", part);
        client.post(format!("http://{addr}/api/v1/predict")).multipart(form).send()
    };
    let response = post_file("group.jpg", fixture("group.jpg")).await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["faces"].as_array().unwrap().len(), 3);

    let response = post_file("speech.ogg", fixture("speech.ogg")).await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        (body["kind"].as_str(), body["classes"]["probabilities"].as_array().map(Vec::len)),
        (Some("audio"), Some(14))
    );

    let response = post_file("x.gif", b"GIF89a broken".to_vec()).await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::UNPROCESSABLE_ENTITY);

    let health = client.get(format!("http://{addr}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);

    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn the_whole_image_face_field_skips_detection_and_no_face_mentions_it() {
    let coffee = fixture("coffee.jpg");
    let no_face = json_of(send(upload_request("/api/v1/predict", "coffee.jpg", &coffee, None)).await).await;
    assert_eq!(no_face["code"], "no_face");
    assert!(no_face["message"].as_str().unwrap().contains("whole_image_face=true"), "{no_face}");
    let form = |value: &str| {
        let mut body = multipart_body(&[("file", "coffee.jpg", &coffee)]);
        let field =
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"whole_image_face\"\r\n\r\n{value}\r\n");
        body.splice(0..0, field.into_bytes());
        Request::post("/api/v1/predict")
            .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={BOUNDARY}"))
            .body(Body::from(body))
            .unwrap()
    };
    let whole = send(form("true")).await;
    assert_eq!(whole.status(), StatusCode::OK);
    let whole = json_of(whole).await;
    let faces = whole["faces"].as_array().unwrap();
    assert_eq!(faces.len(), 1);
    let (w, h) = (whole["width"].as_u64().unwrap(), whole["height"].as_u64().unwrap());
    let side = w.min(h);
    assert_eq!(
        faces[0]["box"],
        serde_json::json!({"x": (w - side) / 2, "y": (h - side) / 2, "width": side, "height": side})
    );
    let bad = send(form("maybe")).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert!(json_of(bad).await["message"].as_str().unwrap().contains("whole_image_face"));
}

/// A predict request of `file` with the form fields `fields` before it.
fn form_request(file: (&str, &[u8]), fields: &[(&str, &str)]) -> Request<Body> {
    let mut body = multipart_body(&[("file", file.0, file.1)]);
    for (name, value) in fields.iter().rev() {
        let field = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n");
        body.splice(0..0, field.into_bytes());
    }
    Request::post("/api/v1/predict")
        .header(header::CONTENT_TYPE, format!("multipart/form-data; boundary={BOUNDARY}"))
        .body(Body::from(body))
        .unwrap()
}

#[tokio::test]
async fn the_detector_field_asks_for_centerface_alone() {
    let group = fixture("group.jpg");
    let answer = send(form_request(("group.jpg", &group), &[("detector", "centerface")])).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let answer = json_of(answer).await;
    assert_eq!(answer["faces"].as_array().map(Vec::len), Some(3), "{answer}");
    for value in ["default", ""] {
        let answer = json_of(send(form_request(("group.jpg", &group), &[("detector", value)])).await).await;
        assert_eq!(answer["faces"].as_array().map(Vec::len), Some(3), "detector={value}: {answer}");
    }

    let bad = send(form_request(("group.jpg", &group), &[("detector", "yolo")])).await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let message = json_of(bad).await["message"].as_str().unwrap().to_string();
    assert!(message.contains("`detector` is `centerface`") && message.contains("yolo"), "{message}");

    // whole_image_face=true wins, in either order.
    for fields in [
        [("detector", "centerface"), ("whole_image_face", "true")],
        [("whole_image_face", "true"), ("detector", "centerface")],
    ] {
        let answer = json_of(send(form_request(("group.jpg", &group), &fields)).await).await;
        let faces = answer["faces"].as_array().unwrap();
        assert_eq!(faces.len(), 1, "{fields:?}: {answer}");
        assert_eq!(faces[0]["box"]["height"], answer["height"], "{fields:?}: the central square");
    }
}

#[tokio::test]
async fn a_server_without_centerface_refuses_the_detector_field_clearly() {
    // `--detector haar`: the cascade alone.
    let mut config = emotion_ai::predict::AnalyzerConfig::with_models_dir(&root().join("models"));
    config.detector = emotion_ai::detect::DetectorChoice::Haar(emotion_ai::detect::DEFAULT_CASCADE.into());
    config.fallback_detector = None;
    let analyzer = std::sync::Arc::new(emotion_ai::predict::Analyzer::load(config).unwrap());
    assert!(!analyzer.has_centerface());
    let state = web::AppState::new(
        analyzer,
        ServerLimits::default(),
        web::default_static_dir(),
        web::samples::default_assets_dir(),
    );
    let group = fixture("group.jpg");
    let response =
        web::app(state).oneshot(form_request(("group.jpg", &group), &[("detector", "centerface")])).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let message = json_of(response).await["message"].as_str().unwrap().to_string();
    assert!(message.contains("runs without CenterFace"), "{message}");
}
