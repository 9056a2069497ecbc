//! The answer pages in a real browser: Debian's headless Chromium driven
//! through chromedriver (WebDriver) against the server on a real socket.
//! Uploads by file input, drag and drop, webcam snapshot and microphone
//! recording (Chromium's fake capture devices) must each reach an answer page.
//! Screenshots go to `target/browser/`.
//!
//! Needs `chromium` and `chromium-driver` (`scripts/setup.sh` installs them);
//! without them the test fails with that message rather than passing unseen.

mod common;

use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use emotion_ai::model::voice::SEXES;
use emotion_ai::model::EMOTIONS;
use emotion_ai::web;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A chromedriver process, killed when dropped.
struct Driver {
    child: Child,
    port: u16,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn start_driver() -> Driver {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(tool).is_file(),
            "{tool} is missing: run scripts/setup.sh (Debian's chromium, chromium-driver)"
        );
    }
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting chromedriver");
    let driver = Driver { child, port };
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(started.elapsed() < Duration::from_secs(20), "chromedriver did not listen on {port} within 20 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    driver
}

async fn start_browser(driver: &Driver, profile: &Path) -> Client {
    let capabilities = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                format!("--user-data-dir={}", profile.display()),
                "--window-size=1200,1500",
                // Capture without hardware or a permission prompt: a synthetic
                // camera picture, and a microphone that plays the speech
                // fixture (its default beeps are, rightly, no speech).
                "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                format!("--use-file-for-fake-audio-capture={}", root().join("tests/fixtures/speech.wav").display()),
                "--autoplay-policy=no-user-gesture-required",
            ],
        },
    });
    let Value::Object(capabilities) = capabilities else { unreachable!() };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(capabilities)
        .connect(&format!("http://127.0.0.1:{}", driver.port))
        .await
        .expect("starting headless Chromium through chromedriver")
}

fn screenshots() -> PathBuf {
    let dir = root().join("target/browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    std::fs::write(screenshots().join(name), png).unwrap();
}

/// Waits for `css` on the page (the answer of a submitted form).
async fn wait_for(browser: &Client, css: &str) -> fantoccini::elements::Element {
    match browser.wait().at_most(Duration::from_secs(30)).for_element(Locator::Css(css)).await {
        Ok(element) => element,
        Err(e) => {
            let source = browser.source().await.unwrap_or_default();
            panic!("{css} did not appear ({e}); page:\n{}", &source[..source.len().min(3000)]);
        }
    }
}

/// Waits until the text of `css` contains `needle`, and returns it.
async fn wait_text(browser: &Client, css: &str, needle: &str) -> String {
    let started = Instant::now();
    loop {
        let script = format!("const e = document.querySelector({css:?}); return e ? e.textContent : ''");
        let text = js(browser, &script).await.as_str().unwrap_or_default().to_string();
        if text.contains(needle) {
            return text;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "{css} never said {needle:?}; it says {text:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn count(browser: &Client, css: &str) -> usize {
    browser.find_all(Locator::Css(css)).await.unwrap().len()
}

/// Runs `script` (a function body) in the page and returns its value.
async fn js(browser: &Client, script: &str) -> Value {
    browser.execute(script, vec![]).await.unwrap()
}

/// Fetches `url` from the page and returns its HTTP status and byte length.
async fn fetch_from_page(browser: &Client, url: &str) -> (u64, u64) {
    let script = format!(
        "const done = arguments[0]; fetch({url:?}).then(async r => done([r.status, (await r.arrayBuffer()).byteLength]))"
    );
    let value = browser.execute_async(&script, vec![]).await.unwrap();
    (value[0].as_u64().unwrap(), value[1].as_u64().unwrap())
}

/// Opens the upload page and submits `path` through the file input.
async fn upload(browser: &Client, base: &str, path: &Path) {
    upload_files(browser, base, &[path]).await
}

/// Chooses `paths` in the page's file input (several at once, as a user
/// selecting them together would) and submits the form.
async fn upload_files(browser: &Client, base: &str, paths: &[&Path]) {
    browser.goto(base).await.unwrap();
    let input = browser.find(Locator::Css("#file-input")).await.unwrap();
    let paths: Vec<&str> = paths.iter().map(|p| p.to_str().unwrap()).collect();
    input.send_keys(&paths.join("\n")).await.unwrap();
    browser.find(Locator::Css("#upload-form button[type=submit]")).await.unwrap().click().await.unwrap();
}

/// Where the page drew each face, against the API's JSON boxes for the same
/// file: the largest difference of any box edge in page pixels, and whether
/// every tag lies inside the picture and clear of the others.
async fn drawn_boxes_against_json(browser: &Client, base: &str, path: &Path) -> (usize, f64, bool) {
    let form = reqwest::multipart::Form::new()
        .part("file", reqwest::multipart::Part::bytes(std::fs::read(path).unwrap()).file_name("photo.jpg"));
    let answer: Value = reqwest::Client::new()
        .post(format!("{base}api/v1/predict"))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let drawn = js(
        browser,
        "const img = document.querySelector('.photo img'); const r = img.getBoundingClientRect();
         const rel = b => [b.left - r.left, b.top - r.top, b.width, b.height];
         return { scale: r.width / img.naturalWidth, width: r.width, height: r.height,
                  boxes: [...document.querySelectorAll('rect.face-box')].map(e => rel(e.getBoundingClientRect())),
                  tags: [...document.querySelectorAll('text.face-tag')].map(e => rel(e.getBoundingClientRect())) };",
    )
    .await;
    let scale = drawn["scale"].as_f64().unwrap();
    let faces = answer["faces"].as_array().unwrap();
    let boxes = drawn["boxes"].as_array().unwrap();
    assert_eq!(boxes.len(), faces.len(), "one drawn box per face");
    let mut worst = 0f64;
    for (face, drawn) in faces.iter().zip(boxes) {
        let b = &face["box"];
        let want = [
            b["x"].as_f64().unwrap(),
            b["y"].as_f64().unwrap(),
            b["width"].as_f64().unwrap(),
            b["height"].as_f64().unwrap(),
        ];
        for (w, d) in want.iter().zip(drawn.as_array().unwrap()) {
            worst = worst.max((w * scale - d.as_f64().unwrap()).abs());
        }
    }
    let (width, height) = (drawn["width"].as_f64().unwrap(), drawn["height"].as_f64().unwrap());
    let tags: Vec<[f64; 4]> = drawn["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let t: Vec<f64> = t.as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            [t[0], t[1], t[0] + t[2], t[1] + t[3]]
        })
        .collect();
    let inside = tags.iter().all(|t| t[0] >= -0.5 && t[1] >= -0.5 && t[2] <= width + 0.5 && t[3] <= height + 0.5);
    let apart = tags
        .iter()
        .enumerate()
        .all(|(i, a)| tags[i + 1..].iter().all(|b| a[2] <= b[0] || b[2] <= a[0] || a[3] <= b[1] || b[3] <= a[1]));
    (faces.len(), worst, inside && apart)
}

/// Elements (tag.class) that reach past the viewport's sides at its current
/// width, and whether the page scrolls sideways.
async fn overflowing(browser: &Client) -> (Vec<String>, bool) {
    let found = js(
        browser,
        "const w = document.documentElement.clientWidth;
         const wide = [...document.querySelectorAll('body *')].filter(e => {
           const r = e.getBoundingClientRect();
           return r.width > 0 && r.height > 0 && (r.right > w + 1 || r.left < -1);
         }).map(e => e.tagName.toLowerCase() + '.' + (e.getAttribute('class') || ''));
         return [wide, document.documentElement.scrollWidth > w];",
    )
    .await;
    let wide = found[0].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    (wide, found[1].as_bool().unwrap())
}

/// At a phone's width nothing on the current page is wider than the screen,
/// and the logo stays on one line; a screenshot is kept as `name`.
async fn fits_a_phone(browser: &Client, page: &str, name: &str) {
    let (wide, scrolls) = overflowing(browser).await;
    assert!(
        wide.is_empty() && !scrolls,
        "{page} at 390 px: wider than the screen: {wide:?} (scrolls sideways: {scrolls})"
    );
    let logo_lines = js(browser, "return document.querySelector('.brand').getClientRects().length").await;
    assert_eq!(logo_lines.as_u64(), Some(1), "{page} at 390 px: the logo wraps");
    screenshot(browser, name).await;
}

/// The decoded body of a `data:...;base64,` link.
fn data_link(href: &str) -> Vec<u8> {
    use base64::Engine as _;
    let (_, payload) = href.split_once(";base64,").unwrap_or_else(|| panic!("not a base64 data link: {href:.60}"));
    base64::engine::general_purpose::STANDARD.decode(payload).unwrap()
}

/// The astronaut portrait scaled up to 2400 x 2400 px: a photo the page
/// must scale down before sending.
fn large_portrait(dir: &Path) -> PathBuf {
    let photo = image::load_from_memory(&fixture("astronaut.jpg")).unwrap();
    let path = dir.join("large.jpg");
    photo.resize_exact(2400, 2400, image::imageops::FilterType::Triangle).to_rgb8().save(&path).unwrap();
    path
}

/// Six copies of the astronaut portrait, 3 x 2: a photo with more faces.
fn six_faces(dir: &Path) -> PathBuf {
    let photo = image::load_from_memory(&fixture("astronaut.jpg")).unwrap().to_rgb8();
    let mut grid = image::RgbImage::new(768, 512);
    for i in 0..6u32 {
        image::imageops::replace(&mut grid, &photo, i64::from(i % 3 * 256), i64::from(i / 3 * 256));
    }
    let path = dir.join("six.jpg");
    grid.save(&path).unwrap();
    path
}

/// The first 1.5 s of the speech fixture: answered, with the short-clip note.
fn short_clip(dir: &Path) -> PathBuf {
    let path = dir.join("short.wav");
    std::fs::write(&path, wav(16000, &speech_samples()[..16000 * 3 / 2])).unwrap();
    path
}

/// A 10 s clip (the speech fixture repeated with pauses), so the page shows a
/// timeline.
fn ten_second_clip(dir: &Path) -> PathBuf {
    let path = dir.join("ten-seconds.wav");
    std::fs::write(&path, wav(16000, &repeated_speech(10))).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answer_pages_work_in_headless_chromium() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(web::serve(listener, state(), async {
        let _ = stopped.await;
    }));
    let driver = start_driver().await;
    let tmp = tempfile::tempdir().unwrap();
    let browser = start_browser(&driver, &tmp.path().join("profile")).await;
    let fixtures = root().join("tests/fixtures");

    // A photo: the face boxed and labelled, 7 emotion bars and 2 sex bars,
    // and a voice sample for its emotion and sex that the server serves.
    upload(&browser, &base, &fixtures.join("astronaut.jpg")).await;
    wait_for(&browser, "article.face").await;
    assert_eq!(count(&browser, "rect.face-box").await, 1);
    assert!(js(&browser, "return document.querySelector('text.face-tag').textContent")
        .await
        .as_str()
        .unwrap()
        .starts_with("1 "));
    assert_eq!(count(&browser, "article.face meter").await, 9);
    let face = browser.find(Locator::Css("article.face")).await.unwrap();
    let (emotion, sex) =
        (face.attr("data-emotion").await.unwrap().unwrap(), face.attr("data-sex").await.unwrap().unwrap());
    assert!(EMOTIONS.contains(&emotion.as_str()) && SEXES.contains(&sex.as_str()), "{emotion} {sex}");
    let sample = browser.find(Locator::Css(".voice-sample audio")).await.unwrap();
    let url = sample.attr("src").await.unwrap().unwrap();
    assert_eq!(url, format!("/assets/voices/{emotion}_{sex}.mp3"));
    let (status, bytes) = fetch_from_page(&browser, &url).await;
    assert!(status == 200 && bytes > 8000, "{url}: {status}, {bytes} bytes");
    // The picture is displayed with the box over it.
    assert!(js(&browser, "return document.querySelector('.photo img').naturalWidth").await.as_u64().unwrap() == 256);
    screenshot(&browser, "image_result.png").await;
    // The measured accuracy in plain words beside the answer, read from the
    // card the server loaded, with a link to the models page.
    let note = browser.find(Locator::Css("p.accuracy")).await.unwrap().text().await.unwrap();
    let card: Value = serde_json::from_slice(&std::fs::read(root().join("models/face_emotion.json")).unwrap()).unwrap();
    let accuracy = card["metrics"]["fer2013_private_test_accuracy"].as_f64().unwrap();
    assert!(note.contains("about 2 times in 3") && note.contains(&format!("{:.0}%", 100.0 * accuracy)), "{note}");
    // And how often it agrees with the FER+ raters, from the same card.
    let raters = card["metrics"]["ferplus_private_test_majority_accuracy"].as_f64().unwrap();
    assert!(
        note.contains(&format!("ten people who rated each face about 4 times in 5 ({:.0}%)", 100.0 * raters)),
        "{note}"
    );
    browser.find(Locator::Css("p.accuracy a")).await.unwrap().click().await.unwrap();
    wait_for(&browser, "article.model").await;
    // Face emotion, face sex, voice, speech check, voice sex, face sex head and face verifier.
    assert_eq!(count(&browser, "article.model").await, 7);
    let names =
        js(&browser, "return [...document.querySelectorAll('article.model h2')].map(h => h.textContent).join('|')")
            .await;
    assert!(names.as_str().unwrap_or("").contains("Face verifier"), "{names}");
    assert!(names.as_str().unwrap_or("").contains("Voice sex"), "{names}");
    assert!(names.as_str().unwrap_or("").contains("Face sex head"), "{names}");
    let figures = js(&browser, "return document.querySelector('article.model table').textContent").await;
    assert!(figures.as_str().unwrap().contains(&format!("{:.2}%", 100.0 * accuracy)), "{figures}");

    // Several faces: every drawn box sits on its face (within 2 px of the
    // JSON box, in page pixels), and the tags stay inside the picture and
    // clear of each other.
    for (path, at_least) in [(fixtures.join("group.jpg"), 3), (six_faces(tmp.path()), 5)] {
        upload(&browser, &base, &path).await;
        wait_for(&browser, "article.face").await;
        let (faces, worst, tags_ok) = drawn_boxes_against_json(&browser, &base, &path).await;
        assert!(faces >= at_least, "{}: {faces} faces", path.display());
        assert!(worst <= 2.0, "{}: a drawn box is {worst:.1} px off its face", path.display());
        assert!(tags_ok, "{}: the tags leave the picture or overlap", path.display());
        // A face whose two likeliest emotions are closer than the card's
        // margin is called mixed; the others get their one label.
        let card: Value =
            serde_json::from_slice(&std::fs::read(root().join("models/face_emotion.json")).unwrap()).unwrap();
        let margin = card["mixed"]["margin"].as_f64().expect("the face card has a mixed margin");
        let json_href =
            browser.find(Locator::Css("a[download$='.json']")).await.unwrap().attr("href").await.unwrap().unwrap();
        let kept: Value = serde_json::from_slice(&data_link(&json_href)).unwrap();
        let headings =
            js(&browser, "return [...document.querySelectorAll('article.face h2')].map(h => h.textContent)").await;
        for (face, heading) in kept["faces"].as_array().unwrap().iter().zip(headings.as_array().unwrap()) {
            let mut p: Vec<f64> = face["emotion"]["probabilities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["probability"].as_f64().unwrap())
                .collect();
            p.sort_by(|a, b| b.total_cmp(a));
            let heading = heading.as_str().unwrap();
            assert_eq!(
                heading.contains("mixed:"),
                p[0] - p[1] < margin,
                "gap {:.3}, margin {margin}: {heading}",
                p[0] - p[1]
            );
        }
    }
    // What the networks read: each face's 48x48 crop on its card. A face can
    // be put aside with one click: its box leaves the picture.
    let crops =
        js(&browser, "return [...document.querySelectorAll('article.face img.crop')].map(i => i.naturalWidth)").await;
    let boxes = count(&browser, "rect.face-box").await;
    assert_eq!(crops.as_array().unwrap().len(), boxes, "one crop per face");
    assert!(crops.as_array().unwrap().iter().all(|w| w.as_u64() == Some(48)), "{crops}");
    browser.find(Locator::Css("#face-2 button.leave-out")).await.unwrap().click().await.unwrap();
    let shown = js(&browser, "return [...document.querySelectorAll('rect.face-box')].filter(r => getComputedStyle(r).display !== 'none').length").await;
    assert_eq!(shown.as_u64(), Some(boxes as u64 - 1), "face 2's box is taken off the picture");
    assert_eq!(count(&browser, "#face-2.dismissed").await, 1);
    screenshot(&browser, "six_faces_result.png").await;
    // One more click brings it back.
    browser.find(Locator::Css("#face-2 button.leave-out")).await.unwrap().click().await.unwrap();
    assert_eq!(count(&browser, "#face-2.dismissed").await + count(&browser, "rect.face-box.left-out").await, 0);
    // The same at a phone's width: the picture shrinks and the boxes with it.
    browser.set_window_size(390, 844).await.unwrap();
    let (_, worst, tags_ok) = drawn_boxes_against_json(&browser, &base, &six_faces(tmp.path())).await;
    assert!(worst <= 2.0, "at 390 px wide a drawn box is {worst:.1} px off its face");
    assert!(tags_ok, "at 390 px wide the tags leave the picture or overlap");
    // ... and stay readable: there each tag is the face's number, at least
    // 10 px tall on the screen, the labels in the list under the photo.
    let tags = js(&browser, "return [...document.querySelectorAll('text.face-tag')].map(t => [t.textContent, t.getBoundingClientRect().height])").await;
    for tag in tags.as_array().unwrap() {
        assert!(tag[1].as_f64().unwrap() >= 10.0, "a tag {} px tall at 390 px: {tag}", tag[1]);
        assert!(tag[0].as_str().unwrap().parse::<usize>().is_ok(), "small tags are numbers: {tag}");
    }
    screenshot(&browser, "six_faces_result_phone.png").await;
    browser.set_window_size(1200, 1500).await.unwrap();

    // A clip: player, emotion and sex bars, a timeline, and a drawn face
    // sample for its emotion and sex.
    upload(&browser, &base, &ten_second_clip(tmp.path())).await;
    wait_for(&browser, ".audio-result").await;
    assert_eq!(count(&browser, "audio.player").await, 1);
    assert_eq!(count(&browser, ".audio-result meter").await, 9);
    assert_eq!(count(&browser, ".timeline rect").await, 8 * 7);
    let voice = browser.find(Locator::Css("article.voice")).await.unwrap();
    let (emotion, sex) =
        (voice.attr("data-emotion").await.unwrap().unwrap(), voice.attr("data-sex").await.unwrap().unwrap());
    let img = browser.find(Locator::Css(".face-sample img")).await.unwrap();
    assert_eq!(img.attr("src").await.unwrap().unwrap(), format!("/assets/faces/{emotion}_{sex}.svg"));
    let loaded =
        js(&browser, "const i = document.querySelector('.face-sample img'); return i.complete && i.naturalWidth").await;
    assert_eq!(loaded.as_u64(), Some(200), "the face sample must load");
    screenshot(&browser, "audio_result.png").await;

    // The timeline: a seconds axis whose labels sit on their columns, a
    // readout of the focused column, a click that seeks the player, and a
    // table of every window.
    let axis = js(
        &browser,
        "const columns = [...document.querySelectorAll('.timeline g.window')].map(g => g.getBoundingClientRect().left);
         const ticks = [...document.querySelectorAll('.axis .tick')].map(t => [t.textContent, t.getBoundingClientRect().left]);
         return { columns, ticks };",
    )
    .await;
    let columns: Vec<f64> = axis["columns"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
    let ticks = axis["ticks"].as_array().unwrap();
    assert_eq!(columns.len(), 8);
    assert_eq!(ticks.len(), 8, "one label a second over 8 windows a second apart: {ticks:?}");
    for (i, tick) in ticks.iter().enumerate() {
        assert_eq!(tick[0].as_str().unwrap(), format!("{i} s"));
        let off = (tick[1].as_f64().unwrap() - columns[i]).abs();
        assert!(off <= 2.0, "the {i} s label is {off:.1} px from its column");
    }
    js(&browser, "document.querySelectorAll('.timeline g.window')[3].focus()").await;
    let readout = wait_text(&browser, "#timeline-readout", "3.0-6.0 s:").await;
    assert!(EMOTIONS.iter().any(|e| readout.contains(e)), "{readout}");
    let columns = browser.find_all(Locator::Css(".timeline g.window")).await.unwrap();
    columns[5].click().await.unwrap();
    let at = js(&browser, "return document.querySelector('audio.player').currentTime").await.as_f64().unwrap();
    assert!((5.0..6.5).contains(&at), "clicking the 5 s column seeks the player to 5 s, not {at}");
    assert_eq!(count(&browser, ".timeline-table tbody tr").await, 8);
    // The answer can be kept: the API's JSON and the command line's CSV.
    let json_href =
        browser.find(Locator::Css("a[download$='.json']")).await.unwrap().attr("href").await.unwrap().unwrap();
    let kept: Value = serde_json::from_slice(&data_link(&json_href)).unwrap();
    assert_eq!(kept["kind"], "audio");
    assert_eq!(kept["timeline"].as_array().unwrap().len(), 8);
    let csv_href =
        browser.find(Locator::Css("a[download$='.csv']")).await.unwrap().attr("href").await.unwrap().unwrap();
    let csv = String::from_utf8(data_link(&csv_href)).unwrap();
    assert!(csv.lines().next().unwrap().contains("p_happy") && csv.lines().count() == 1 + 1 + 8, "{csv}");
    // No picture on a clip's page, so no picture to save.
    assert_eq!(count(&browser, "#save-picture:not([hidden])").await, 0);

    // A photo and a clip chosen together: the fused answer first, then both parts.
    upload_files(&browser, &base, &[&fixtures.join("astronaut.jpg"), &fixtures.join("speech.wav")]).await;
    wait_for(&browser, ".fusion-result").await;
    assert_eq!(count(&browser, "article.fused meter").await, 7);
    assert_eq!(count(&browser, "li[data-modality]").await, 2);
    assert_eq!(count(&browser, "rect.face-box").await, 1);
    assert_eq!(count(&browser, "audio.player").await, 1);
    let headline = js(&browser, "return document.querySelector('h1').textContent").await;
    assert!(headline.as_str().unwrap().contains("Face and voice together"), "{headline}");
    // Fusion in plain words: whether the two agree, both readings listed,
    // no "temperature" or "renormalised" (those are in the docs).
    let fused = js(&browser, "return document.querySelector('article.fused').innerText").await;
    let fused = fused.as_str().unwrap();
    assert!(fused.contains("agree"), "{fused}");
    assert!(!fused.contains("temperature") && !fused.contains("renormalised"), "{fused}");
    screenshot(&browser, "fusion_result.png").await;

    // With several faces, any of them can be the one fused: the page sends
    // the pair again and the answer names the face it used.
    upload_files(&browser, &base, &[&fixtures.join("group.jpg"), &fixtures.join("speech.wav")]).await;
    wait_for(&browser, ".fusion-result #face-1.fused-face").await;
    browser.find(Locator::Css("button.fuse-this[data-face='2']")).await.unwrap().click().await.unwrap();
    wait_for(&browser, ".fusion-result #face-2.fused-face").await;
    let json_href =
        browser.find(Locator::Css("a[download$='.json']")).await.unwrap().attr("href").await.unwrap().unwrap();
    let kept: Value = serde_json::from_slice(&data_link(&json_href)).unwrap();
    assert_eq!(kept["fused"]["sources"][0]["face"], 2, "the answer names the fused face");

    // No face: a clear page, no guess.
    upload(&browser, &base, &fixtures.join("coffee.jpg")).await;
    wait_for(&browser, "[data-code=no_face]").await;
    assert_eq!(count(&browser, "article.face").await, 0);
    // It speaks plainly, keeps the file in view, and offers the next step.
    let visible = js(&browser, "return document.querySelector('.card.error').innerText").await;
    let visible = visible.as_str().unwrap();
    assert!(!visible.contains("HTTP 422") && !visible.contains("no_face"), "codes are for developers: {visible}");
    assert!(visible.contains("Sent: coffee.jpg"), "the page names the file sent: {visible}");
    assert_eq!(count(&browser, "#upload-echo img.thumb").await, 1);
    screenshot(&browser, "no_face.png").await;
    let whole = browser.find(Locator::XPath("//button[contains(., 'whole picture as one face')]")).await.unwrap();
    whole.click().await.unwrap();
    wait_for(&browser, "article.face").await;
    assert_eq!(count(&browser, "article.face").await, 1, "read whole, the picture is one face");

    // A clip over the 300 s limit: the page offers its first 5 minutes,
    // cut in the browser, and they are analysed.
    let long_clip = tmp.path().join("long-speech.wav");
    std::fs::write(&long_clip, wav(16000, &repeated_speech(302))).unwrap();
    upload(&browser, &base, &long_clip).await;
    wait_for(&browser, "[data-code=audio_too_long]").await;
    let first = browser.find(Locator::XPath("//button[contains(., 'first 5 minutes')]")).await.unwrap();
    first.click().await.unwrap();
    wait_for(&browser, ".audio-result").await;
    let duration = js(&browser, "return document.querySelector('p.where').textContent").await;
    assert!(duration.as_str().unwrap().trim_start().starts_with("299.0 s"), "the first 299 s: {duration}");

    // An unsupported file is refused in the page, before sending, with the
    // accepted formats named (the server's 415 says the same to API clients).
    upload(&browser, &base, &fixtures.join("speech.webm")).await;
    let said = wait_text(&browser, "#capture-status", "not among them").await;
    assert!(said.contains("speech.webm") && said.contains("WAV") && said.contains("JPEG"), "{said}");
    assert_eq!(count(&browser, "#upload-form.sending").await, 0, "nothing is being sent");

    // Drag and drop of a picture made in the page (plain grey: no face).
    browser.goto(&base).await.unwrap();
    browser
        .execute_async(
            "const done = arguments[0];
             const canvas = document.createElement('canvas'); canvas.width = 320; canvas.height = 240;
             const g = canvas.getContext('2d'); g.fillStyle = '#888'; g.fillRect(0, 0, 320, 240);
             canvas.toBlob(blob => {
               const files = new DataTransfer();
               files.items.add(new File([blob], 'dropped.png', { type: 'image/png' }));
               document.getElementById('drop-zone').dispatchEvent(new DragEvent('drop', { dataTransfer: files, bubbles: true, cancelable: true }));
               done(true);
             }, 'image/png');",
            vec![],
        )
        .await
        .unwrap();
    wait_for(&browser, "[data-code=no_face]").await;

    // The microphone: record 2 s from the fake device; the page encodes WAV.
    browser.goto(&base).await.unwrap();
    let first_click = std::time::Instant::now();
    browser.find(Locator::Css("#record-button")).await.unwrap().click().await.unwrap();
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath("//button[@id='record-button' and contains(., 'Stop')]"))
        .await
        .expect("recording starts");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    browser.find(Locator::Css("#record-button")).await.unwrap().click().await.unwrap();
    // The clicks take their time under load: the recording lasts at least
    // the wait between them and at most from the first click's start to the
    // second's end.
    let (shortest, longest) = (2.5, first_click.elapsed().as_secs_f64());
    wait_for(&browser, ".audio-result").await;
    let player = browser.find(Locator::Css("audio.player")).await.unwrap();
    assert!(
        player.attr("src").await.unwrap().unwrap().starts_with("data:audio/wav;base64,"),
        "the recording is sent as WAV"
    );
    let duration = js(&browser, "return document.querySelector('p.where').textContent").await;
    let seconds: f64 = duration
        .as_str()
        .and_then(|text| text.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {duration}"));
    // The page shows tenths of a second, and capture may begin a moment
    // after the button says Stop.
    assert!(
        seconds >= shortest - 0.3 && seconds <= longest + 0.1,
        "recorded {seconds} s between clicks {shortest:.2}-{longest:.2} s apart: {duration}"
    );

    // The webcam: a snapshot of the fake camera goes up as a JPEG image (it
    // shows no face, so the answer is the no-face page of the image path).
    browser.goto(&base).await.unwrap();
    browser.find(Locator::Css("#camera-button")).await.unwrap().click().await.unwrap();
    browser
        .wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::Css("#snap-button:not([disabled])"))
        .await
        .expect("the webcam opens");
    browser.wait().at_most(Duration::from_secs(10)).for_element(Locator::Css("#camera-video")).await.unwrap();
    let started = Instant::now();
    while js(&browser, "return document.getElementById('camera-video').videoWidth").await.as_u64() == Some(0) {
        assert!(started.elapsed() < Duration::from_secs(10), "the fake camera never produced a frame");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    browser.find(Locator::Css("#snap-button")).await.unwrap().click().await.unwrap();
    wait_for(&browser, "[data-code=no_face], article.face").await;
    let title = js(&browser, "return document.title").await;
    assert!(!title.as_str().unwrap().contains("Unsupported"), "the snapshot must be an accepted image: {title}");

    // Face and voice at once: 4 s from the fake microphone and a snapshot of
    // the fake camera go up together as one fused request. The fake camera's
    // picture (a test pattern) should hold no face: then the fused answer
    // rests on the voice and says why the face is missing.
    browser.goto(&base).await.unwrap();
    browser.find(Locator::Css("#both-button")).await.unwrap().click().await.unwrap();
    wait_for(&browser, ".fusion-result").await;
    assert_eq!(count(&browser, "li[data-modality=voice]").await, 1);
    let face_fused = count(&browser, "li[data-modality=face]").await;
    let no_face = count(&browser, ".part-error[data-code=no_face]").await;
    assert_eq!(face_fused + no_face, 1, "the picture is either fused or said to hold no face");

    // The upload's way: a large photo is scaled down in the page before
    // sending (the answer's picture is 1600 px), the progress bar reaches
    // 100% and then says "analysing", and the controls are disabled meanwhile.
    browser.goto(&base).await.unwrap();
    js(
        &browser,
        "window.seen = [];
         const text = document.getElementById('sending-text');
         new MutationObserver(() => window.seen.push([text.textContent,
             document.getElementById('upload-progress').value,
             document.querySelector('#upload-form button[type=submit]').disabled]))
           .observe(text, { childList: true, characterData: true, subtree: true });",
    )
    .await;
    let input = browser.find(Locator::Css("#file-input")).await.unwrap();
    input.send_keys(large_portrait(tmp.path()).to_str().unwrap()).await.unwrap();
    browser.find(Locator::Css("#upload-form button[type=submit]")).await.unwrap().click().await.unwrap();
    wait_for(&browser, "article.face").await;
    let seen = js(&browser, "return window.seen").await;
    let seen = seen.as_array().unwrap();
    let sent = seen.iter().position(|s| s[0] == "Sending: 100%" && s[1] == 100);
    let analysing = seen.iter().position(|s| s[0] == "Analysing...");
    assert!(matches!((sent, analysing), (Some(a), Some(b)) if a < b), "progress then analysing: {seen:?}");
    assert!(seen.iter().all(|s| s[2] == true), "the submit button stays disabled while sending: {seen:?}");
    let width = js(&browser, "return document.querySelector('.photo img').naturalWidth").await;
    assert_eq!(width.as_u64(), Some(1600), "the 2400 px photo is sent scaled to 1600 px");
    let picture = js(&browser, "return !document.getElementById('save-picture').hidden").await;
    assert_eq!(picture, Value::Bool(true), "a photo's page offers the annotated picture");
    // The answer lives in the page: a refresh shows the upload page, it
    // does not send the photo again.
    browser.refresh().await.unwrap();
    wait_for(&browser, "#upload-form").await;
    assert_eq!(count(&browser, "article.face").await, 0);

    // A file over the limit is refused in the page with its size and the limit.
    let big = tmp.path().join("long.wav");
    std::fs::write(&big, vec![0u8; 21 * 1024 * 1024]).unwrap();
    upload(&browser, &base, &big).await;
    let said = wait_text(&browser, "#capture-status", "at most 20.0 MB").await;
    assert!(said.contains("long.wav is 21.0 MB"), "{said}");

    // Without script the webcam and microphone buttons, which need it, are hidden.
    let html = reqwest::get(&base).await.unwrap().text().await.unwrap();
    assert!(html.contains(r#"id="capture" hidden"#), "the capture row is hidden in the markup");
    browser.goto(&base).await.unwrap();
    let shown = js(&browser, "return getComputedStyle(document.getElementById('capture')).display").await;
    assert_ne!(shown.as_str(), Some("none"), "with script the capture row is shown");

    // Phones: every page fits 390 px.
    browser.set_window_size(390, 844).await.unwrap();
    browser.goto(&base).await.unwrap();
    fits_a_phone(&browser, "the upload page", "upload_phone.png").await;
    upload(&browser, &base, &fixtures.join("group.jpg")).await;
    wait_for(&browser, "article.face").await;
    fits_a_phone(&browser, "a group photo's answer", "image_result_phone.png").await;
    upload(&browser, &base, &ten_second_clip(tmp.path())).await;
    wait_for(&browser, ".audio-result").await;
    fits_a_phone(&browser, "a clip's answer", "audio_result_phone.png").await;
    assert_eq!(count(&browser, ".audio-result p.note").await, 0, "no note on a 10 s clip");
    upload(&browser, &base, &short_clip(tmp.path())).await;
    let note = wait_text(&browser, ".audio-result p.note", "only 1.5 s long").await;
    assert!(note.contains("at least 2 s"), "{note}");
    // The note is read before the answer: shown, on the screen, above the bars.
    let place = js(
        &browser,
        "const n = document.querySelector('.audio-result p.note').getBoundingClientRect();
         const m = document.querySelector('.audio-result meter').getBoundingClientRect();
         return [n.height, n.left, n.right, document.documentElement.clientWidth, n.bottom, m.top];",
    )
    .await;
    let v: Vec<f64> = place.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect();
    assert!(v[0] > 0.0 && v[1] >= 0.0 && v[2] <= v[3], "the note is shown within the screen: {v:?}");
    assert!(v[4] <= v[5], "the note sits above the bars: {v:?}");
    fits_a_phone(&browser, "a short clip's answer", "short_clip_phone.png").await;
    upload_files(&browser, &base, &[&fixtures.join("astronaut.jpg"), &fixtures.join("speech.wav")]).await;
    wait_for(&browser, ".fusion-result").await;
    fits_a_phone(&browser, "a fused answer", "fusion_result_phone.png").await;
    upload(&browser, &base, &fixtures.join("coffee.jpg")).await;
    wait_for(&browser, "[data-code=no_face]").await;
    fits_a_phone(&browser, "the no-face page", "no_face_phone.png").await;
    browser.goto(&format!("{base}models")).await.unwrap();
    fits_a_phone(&browser, "the models page", "models_phone.png").await;
    browser.set_window_size(1200, 1500).await.unwrap();
    browser.goto(&base).await.unwrap();
    screenshot(&browser, "upload.png").await;

    browser.close().await.unwrap();
    drop(driver);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
