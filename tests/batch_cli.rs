//! `emotion-ai predict` on a temporary tree of fixtures: JSON lines and CSV
//! parse back, directories are walked, broken files become error rows
//! without stopping the run, and the exit code fails only when nothing could
//! be analysed.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use serde_json::Value;

fn predict(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_emotion-ai"))
        .arg("predict")
        .args(args)
        .env("EMOTION_AI_MODELS", root().join("models"))
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("running emotion-ai predict")
}

/// astronaut.jpg and speech.flac at the top, group.jpg, a truncated JPEG and
/// a text file in a sub-folder, and a hidden file that must be skipped.
fn tree(dir: &Path) {
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    std::fs::write(dir.join("astronaut.jpg"), fixture("astronaut.jpg")).unwrap();
    std::fs::write(dir.join("speech.flac"), fixture("speech.flac")).unwrap();
    std::fs::write(dir.join("long.wav"), wav(16000, &repeated_speech(6))).unwrap();
    std::fs::write(dir.join("sub/group.jpg"), fixture("group.jpg")).unwrap();
    let jpeg = fixture("astronaut.jpg");
    std::fs::write(dir.join("sub/cut.jpg"), &jpeg[..jpeg.len() / 3]).unwrap();
    std::fs::write(dir.join("sub/notes.txt"), "not a picture\n").unwrap();
    std::fs::write(dir.join(".DS_Store"), "junk").unwrap();
}

fn rows_of(dir: &Path, rows: &[Value]) -> Vec<(String, String, String)> {
    rows.iter()
        .map(|r| {
            let path = Path::new(r["path"].as_str().unwrap()).strip_prefix(dir).unwrap().display().to_string();
            (path, r["kind"].as_str().unwrap().to_string(), r["status"].as_str().unwrap().to_string())
        })
        .collect()
}

#[test]
fn json_lines_one_row_per_face_and_clip_with_error_rows() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    let output = predict(&["--jobs", "2", dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rows: Vec<Value> =
        String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    assert_eq!(
        rows_of(dir.path(), &rows),
        [
            s("astronaut.jpg", "face", "ok"),
            s("long.wav", "clip", "ok"),
            s("speech.flac", "clip", "ok"),
            s("sub/cut.jpg", "file", "corrupt_file"),
            s("sub/group.jpg", "face", "ok"),
            s("sub/group.jpg", "face", "ok"),
            s("sub/group.jpg", "face", "ok"),
            s("sub/notes.txt", "file", "unsupported_media_type"),
        ]
    );
    for row in rows.iter().filter(|r| r["status"] == "ok") {
        let emotions: f64 = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
            .iter()
            .map(|e| row[format!("p_{e}")].as_f64().unwrap())
            .sum();
        let sexes = row["p_female"].as_f64().unwrap() + row["p_male"].as_f64().unwrap();
        assert!((emotions - 1.0).abs() < 1e-3 && (sexes - 1.0).abs() < 1e-3, "{row}");
    }
    assert!(rows[3]["error"].as_str().unwrap().contains("truncated"));
    let faces: Vec<u64> = rows[4..7].iter().map(|r| r["index"].as_u64().unwrap()).collect();
    assert_eq!(faces, [1, 2, 3]);
}

#[test]
fn csv_with_timeline_parses_back() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path());
    let out = dir.path().join("results.csv");
    let output = predict(&["--format", "csv", "--timeline", "-o", out.to_str().unwrap(), dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let mut reader = csv::Reader::from_path(&out).unwrap();
    let header = reader.headers().unwrap().clone();
    assert_eq!(header.iter().take(3).collect::<Vec<_>>(), ["path", "kind", "status"]);
    assert_eq!(header.iter().next_back(), Some("note"), "the note last, every other column where it was");
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let of = |file: &str| -> Vec<&csv::StringRecord> { records.iter().filter(|r| r[0].ends_with(file)).collect() };
    // The 6 s clip: its row, then 4 windows of 3 s starting at 0, 1, 2, 3 s.
    let long = of("long.wav");
    let kinds: Vec<&str> = long.iter().map(|r| &r[column("kind")]).collect();
    assert_eq!(kinds, ["clip", "window", "window", "window", "window"]);
    let starts: Vec<f64> = long[1..].iter().map(|r| r[column("start_seconds")].parse().unwrap()).collect();
    assert_eq!(starts, [0.0, 1.0, 2.0, 3.0]);
    // The 2.2 s clip has one window; an error row leaves predictions empty.
    assert_eq!(of("speech.flac").len(), 2);
    let cut = of("cut.jpg");
    assert_eq!((&cut[0][column("status")], &cut[0][column("emotion")]), ("corrupt_file", ""));
    let face = &of("astronaut.jpg")[0];
    let p: f64 = face[column("p_happy")].parse().unwrap();
    assert!((0.0..=1.0).contains(&p));
}

#[test]
fn exit_code_fails_only_when_nothing_could_be_analysed() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.txt"), "text").unwrap();
    let missing = dir.path().join("missing.jpg");
    let output = predict(&[dir.path().join("a.txt").to_str().unwrap(), missing.to_str().unwrap()]);
    assert!(!output.status.success());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 2, "one error row per file: {stdout}");
    assert!(stdout.contains("\"status\":\"unreadable\""));
    assert!(String::from_utf8_lossy(&output.stderr).contains("none of the 2 files could be analysed"));

    // A photo without a face got an answer: the run succeeds.
    std::fs::write(dir.path().join("coffee.jpg"), fixture("coffee.jpg")).unwrap();
    let output = predict(&[dir.path().join("coffee.jpg").to_str().unwrap(), missing.to_str().unwrap()]);
    assert!(output.status.success());
}

#[test]
fn whole_image_face_reads_a_face_crop_the_cascade_would_miss() {
    let dir = tempfile::tempdir().unwrap();
    // A 48x36 crop of the astronaut's face, tighter than the cascade's window.
    let photo = image::load_from_memory(&fixture("astronaut.jpg")).unwrap().to_rgb8();
    let crop = image::imageops::crop_imm(&photo, 92, 40, 48, 36).to_image();
    let path = dir.path().join("crop.png");
    crop.save(&path).unwrap();
    let detected = predict(&["--detector", "haar", path.to_str().unwrap()]);
    let row: Value = serde_json::from_slice(detected.stdout.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert_eq!(row["status"], "no_face", "the cascade alone: {row}");
    // By default CenterFace is asked where the cascade finds nothing.
    let by_default = predict(&[path.to_str().unwrap()]);
    let row: Value = serde_json::from_slice(by_default.stdout.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert_eq!((row["kind"].as_str(), row["status"].as_str()), (Some("face"), Some("ok")), "{row}");
    let whole = predict(&["--whole-image-face", path.to_str().unwrap()]);
    assert!(whole.status.success());
    let row: Value = serde_json::from_slice(whole.stdout.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert_eq!((row["kind"].as_str(), row["status"].as_str()), (Some("face"), Some("ok")), "{row}");
    // The central square of a 48x36 picture.
    assert_eq!([&row["box_x"], &row["box_y"], &row["box_width"], &row["box_height"]], [6, 0, 36, 36]);
}

#[test]
fn a_clip_under_two_seconds_gets_the_apis_note_on_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let speech = speech_samples();
    std::fs::write(dir.path().join("short.wav"), wav(16000, &speech[..16000 * 3 / 2])).unwrap();
    std::fs::write(dir.path().join("speech.flac"), fixture("speech.flac")).unwrap();
    let output = predict(&["--timeline", dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rows: Vec<Value> =
        String::from_utf8(output.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let of = |file: &str, kind: &str| -> Vec<&Value> {
        rows.iter().filter(|r| r["path"].as_str().unwrap().ends_with(file) && r["kind"] == kind).collect()
    };
    let short = of("short.wav", "clip");
    assert_eq!(short.len(), 1);
    let note = short[0]["note"].as_str().expect("the short clip's row has the note");
    assert!(note.contains("only 1.5 s long"), "{note}");
    assert!(of("short.wav", "window").iter().all(|w| w["note"].is_null()), "the note is the clip's, not each window's");
    assert!(of("speech.flac", "clip")[0]["note"].is_null(), "no note over 2 s");
}
