//! The attacks of issue 14 against a server on a real socket: slow and idle
//! clients, uploads held open before admission, lying lengths, cheap files
//! that are costly to decode, crowds of faces, and error bodies everywhere.
//! Each test asserts what the server answers and that good requests sent
//! alongside still succeed; CPU and memory figures are in BENCHMARKS.md
//! (`scripts/hostile_bench.py`), not here.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use common::*;
use emotion_ai::web::{self, ServerLimits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceExt;

/// A server on a fresh port under `limits`: its address and a stop switch.
async fn start(limits: ServerLimits) -> (String, tokio::sync::oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        web::serve(listener, state_with(limits), async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (addr, stop, server)
}

/// Whether the server closes `socket` within `wait`: reading (past whatever
/// answer it sent first) reaches end-of-file or an error.
async fn closed_within(socket: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// The first line of the server's answer on `socket`.
async fn status_line(socket: &mut TcpStream) -> String {
    let mut buf = vec![0u8; 1024];
    let n = tokio::time::timeout(Duration::from_secs(10), socket.read(&mut buf)).await.expect("an answer").unwrap();
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or_default().to_string()
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(60)).build().unwrap()
}

fn photo_form() -> reqwest::multipart::Form {
    reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(fixture("astronaut.jpg")).file_name("astronaut.jpg"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_and_health_still_answers_past_the_connection_cap() {
    let limits =
        ServerLimits { header_timeout: Duration::from_secs(1), max_connections: 16, ..ServerLimits::default() };
    let (addr, stop, server) = start(limits).await;
    // 12 idle sockets and 12 that send half a request: more than the cap.
    let mut idle = Vec::new();
    let mut half = Vec::new();
    for _ in 0..12 {
        idle.push(TcpStream::connect(&addr).await.unwrap());
        let mut s = TcpStream::connect(&addr).await.unwrap();
        s.write_all(b"POST /api/v1/predict HTTP/1.1\r\nHost: x\r\n").await.unwrap();
        half.push(s);
    }
    // A client behind them in the backlog is served once the header timeout
    // has closed the first ones.
    let health = client().get(format!("http://{addr}/healthz")).send().await.expect("healthz answers");
    assert_eq!(health.status(), 200);
    for (i, socket) in idle.iter_mut().chain(half.iter_mut()).enumerate() {
        assert!(closed_within(socket, Duration::from_secs(10)).await, "socket {i} still open");
    }
    // A slowloris that sends a header line every 200 ms is closed too: the
    // timeout is for the whole header, not between bytes.
    let mut slow = TcpStream::connect(&addr).await.unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    let mut closed = false;
    for k in 0..40 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if slow.write_all(format!("X-{k}: y\r\n").as_bytes()).await.is_err()
            || closed_within(&mut slow, Duration::ZERO).await
        {
            closed = true;
            break;
        }
    }
    assert!(closed, "a header trickled over 8 s was not cut off");
    // A kept-alive connection that goes quiet after its request is closed.
    let mut kept = TcpStream::connect(&addr).await.unwrap();
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    assert!(status_line(&mut kept).await.starts_with("HTTP/1.1 200"));
    assert!(closed_within(&mut kept, Duration::from_secs(10)).await, "an idle kept-alive connection stayed open");
    stop.send(()).unwrap();
    server.await.unwrap();
}

/// Sends the headers and `sent` bytes of an upload declaring `declared`
/// bytes, and holds the connection open.
async fn hold_upload(addr: &str, declared: usize, sent: usize) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         Content-Length: {declared}\r\n\r\n"
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut body = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\n")
        .into_bytes();
    body.resize(sent, 0);
    s.write_all(&body).await.unwrap();
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_get_their_place_before_their_body_is_read() {
    // One place in all: a held upload takes it, and the next is refused at once.
    let limits = ServerLimits { workers: 1, queue: 0, ..ServerLimits::default() };
    let (addr, stop, server) = start(limits).await;
    let held = hold_upload(&addr, 1_000_000, 100_000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let busy = client().post(format!("http://{addr}/api/v1/predict")).multipart(photo_form()).send().await.unwrap();
    assert_eq!(busy.status(), 503);
    assert!(busy.headers().contains_key("retry-after"));
    let body: serde_json::Value = busy.json().await.unwrap();
    assert_eq!(body["code"], "busy");
    drop(held);
    let mut answered = None;
    for _ in 0..50 {
        let r = client().post(format!("http://{addr}/api/v1/predict")).multipart(photo_form()).send().await.unwrap();
        if r.status() == 200 {
            answered = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered.is_some(), "the place was not given back when the held upload went away");
    stop.send(()).unwrap();
    server.await.unwrap();

    // Plenty of places, but a byte budget of 2 MiB: two held uploads of
    // 0.9 MiB fit, a third does not; a small photo still fits beside them.
    let limits = ServerLimits { upload_budget_bytes: 2 * 1024 * 1024, ..ServerLimits::default() };
    let (addr, stop, server) = start(limits).await;
    let _first = hold_upload(&addr, 950_000, 10_000).await;
    let _second = hold_upload(&addr, 950_000, 10_000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut third = hold_upload(&addr, 950_000, 10_000).await;
    assert!(status_line(&mut third).await.starts_with("HTTP/1.1 503"));
    let photo = client().post(format!("http://{addr}/api/v1/predict")).multipart(photo_form()).send().await.unwrap();
    assert_eq!(photo.status(), 200, "a small upload fits beside the held ones");
    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declared_length_over_the_limit_is_refused_before_any_body() {
    let (addr, stop, server) = start(ServerLimits::default()).await;
    let mut huge = TcpStream::connect(&addr).await.unwrap();
    huge.write_all(
        format!(
            "POST /api/v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
             Content-Length: 1000000000000000\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    assert!(status_line(&mut huge).await.starts_with("HTTP/1.1 413"));
    // With `Expect: 100-continue` the client must hear 413, not "100 Continue".
    let mut expect = TcpStream::connect(&addr).await.unwrap();
    expect
        .write_all(
            format!(
                "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
                 Content-Length: 31457280\r\nExpect: 100-continue\r\n\r\n"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    assert!(status_line(&mut expect).await.starts_with("HTTP/1.1 413"));
    stop.send(()).unwrap();
    server.await.unwrap();
}

/// An answer given before the body is read (413, or 503 with the queue
/// full) must reach a client that goes on sending the body: the server
/// lingers instead of resetting the connection, which would destroy the
/// answer before the client reads it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_reaches_a_client_still_sending_its_body() {
    let limits = ServerLimits::default();
    let over = limits.max_upload_bytes + 1024 * 1024;
    let (addr, stop, server) = start(limits).await;
    for attempt in 0..3 {
        let form = reqwest::multipart::Form::new()
            .part("file", reqwest::multipart::Part::bytes(vec![0u8; over]).file_name("big.jpg"));
        let response = client()
            .post(format!("http://{addr}/api/v1/predict"))
            .multipart(form)
            .send()
            .await
            .unwrap_or_else(|e| panic!("attempt {attempt}: the 413 was lost: {e}"));
        assert_eq!(response.status(), 413);
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["code"], "payload_too_large");
    }
    stop.send(()).unwrap();
    server.await.unwrap();

    // No place at all: a full-size upload sent whole still hears its 503.
    let limits = ServerLimits { workers: 1, queue: 0, ..ServerLimits::default() };
    let near_limit = limits.max_upload_bytes - 1024 * 1024;
    let (addr, stop, server) = start(limits).await;
    let _held = hold_upload(&addr, 1_000_000, 100_000).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(vec![0u8; near_limit]).file_name("big.jpg"));
    let busy = client()
        .post(format!("http://{addr}/api/v1/predict"))
        .multipart(form)
        .send()
        .await
        .unwrap_or_else(|e| panic!("the 503 was lost: {e}"));
    assert_eq!(busy.status(), 503);
    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn costly_clips_are_refused_while_photos_sent_alongside_are_answered() {
    let (addr, stop, server) = start(ServerLimits::default()).await;
    let url = format!("http://{addr}/api/v1/predict");
    let bomb = flac_square(384_000, 8, 300, false);
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (url, bomb) = (url.clone(), bomb.clone());
        tasks.push(tokio::spawn(async move {
            let form = if i % 2 == 0 {
                reqwest::multipart::Form::new().part("file", reqwest::multipart::Part::bytes(bomb).file_name("x.flac"))
            } else {
                photo_form()
            };
            let r = client().post(url).multipart(form).send().await.unwrap();
            let status = r.status().as_u16();
            (i, status, r.json::<serde_json::Value>().await.unwrap())
        }));
    }
    for task in tasks {
        let (i, status, body) = task.await.unwrap();
        if i % 2 == 0 {
            assert_eq!((status, body["code"].as_str()), (413, Some("audio_too_long")), "{body}");
            assert!(body["message"].as_str().unwrap().contains("8 channels"), "{body}");
        } else {
            assert_eq!(status, 200, "photo {i}: {body}");
        }
    }
    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn a_crowd_is_capped_at_the_largest_faces_and_the_answer_counts_the_rest() {
    // 12 x 12 tiles of the astronaut's face: 130 faces found.
    let face = image::imageops::crop_imm(
        &image::load_from_memory(&fixture("astronaut.jpg")).unwrap().to_rgb8(),
        75,
        20,
        74,
        74,
    )
    .to_image();
    let tile = image::imageops::resize(&face, 100, 100, image::imageops::FilterType::Triangle);
    let mut grid = image::RgbImage::new(1200, 1200);
    for row in 0..12 {
        for col in 0..12 {
            image::imageops::replace(&mut grid, &tile, col * 100, row * 100);
        }
    }
    let mut jpeg = std::io::Cursor::new(Vec::new());
    grid.write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
    // The cascade finds every tile (`--detector haar`). CenterFace, the
    // default, sees faces that touch on every side as a texture (1 of the
    // 144 on its 480 px copy, 81 at 960 px), and this test is about the cap.
    let mut config = emotion_ai::predict::AnalyzerConfig::with_models_dir(&root().join("models"));
    config.detector = emotion_ai::detect::DetectorChoice::Haar(emotion_ai::detect::DEFAULT_CASCADE.into());
    let analyzer = std::sync::Arc::new(emotion_ai::predict::Analyzer::load(config).unwrap());
    let state = web::AppState::new(
        analyzer,
        ServerLimits::default(),
        web::default_static_dir(),
        web::samples::default_assets_dir(),
    );
    let response =
        web::app(state).oneshot(upload_request("/api/v1/predict", "grid.jpg", jpeg.get_ref(), None)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = json_of(response).await;
    let faces = body["faces"].as_array().unwrap();
    assert_eq!(faces.len(), emotion_ai::predict::MAX_FACES);
    assert!(body["faces_left_out"].as_u64().unwrap() >= 10, "{}", body["faces_left_out"]);
    // Largest first, and every analysed face has its answer.
    assert!(faces.iter().all(|f| f["emotion"]["label"].is_string() && f["sex"]["label"].is_string()));
}

#[tokio::test]
async fn every_miss_and_wrong_method_gets_the_error_body_and_the_assets_readme_is_not_served() {
    let app = web::app(state());
    let get = |path: &str, accept: &str, method: &str| {
        Request::builder().method(method).uri(path).header(header::ACCEPT, accept).body(Body::empty()).unwrap()
    };
    for (path, method, status, code) in [
        ("/static/nope.js", "GET", 404, "not_found"),
        ("/static/app.js", "DELETE", 405, "method_not_allowed"),
        ("/assets/README.md", "GET", 404, "not_found"),
        ("/assets/voices/nope.mp3", "GET", 404, "not_found"),
        ("/nope", "GET", 404, "not_found"),
    ] {
        let response = app.clone().oneshot(get(path, "application/json", method)).await.unwrap();
        assert_eq!(response.status().as_u16(), status, "{method} {path}");
        assert_eq!(json_of(response).await["code"], code, "{method} {path}");
        // A browser gets the same error as a page.
        let page = app.clone().oneshot(get(path, "text/html,*/*;q=0.8", method)).await.unwrap();
        assert_eq!(page.status().as_u16(), status, "{method} {path}");
        assert!(page.headers()[header::CONTENT_TYPE].to_str().unwrap().starts_with("text/html"));
    }
    // Under /api/ an error is JSON whatever the client accepts.
    let api = app.clone().oneshot(get("/api/v2/nope", "text/html", "GET")).await.unwrap();
    assert_eq!(json_of(api).await["code"], "not_found");
    // The page route honours q-values: HTML refused, JSON accepted.
    let photo = fixture("astronaut.jpg");
    for accept in ["text/html;q=0, application/json", "application/json, text/html;q=0.1", "application/JSON"] {
        let response = app.clone().oneshot(upload_request("/predict", "a.jpg", &photo, Some(accept))).await.unwrap();
        let kind = response.headers()[header::CONTENT_TYPE].to_str().unwrap().to_string();
        assert!(kind.starts_with("application/json"), "{accept}: {kind}");
    }
}
