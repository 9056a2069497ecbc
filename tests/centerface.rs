//! CenterFace, the default face detector (`--detector centerface`), on the
//! public-domain fixtures, alone, through the whole pipeline and after the
//! cascade (`--detector haar-then-centerface`). The network is what
//! `scripts/setup.sh` installs.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::{fixture, root};
use emotion_ai::decode::{decode_image, ImageLimits};
use emotion_ai::detect::centerface::{CenterFace, CenterFaceParams, DEFAULT_CENTERFACE};
use emotion_ai::detect::{DetectParams, DetectorChoice, FaceDetector, DEFAULT_CASCADE};
use emotion_ai::predict::{Analyzer, AnalyzerConfig};
use image::{GrayImage, Luma};

fn centerface() -> CenterFace {
    CenterFace::new(Path::new(DEFAULT_CENTERFACE), CenterFaceParams::default())
        .expect("CenterFace network (run scripts/setup.sh)")
}

fn gray(name: &str) -> GrayImage {
    decode_image(&fixture(name), ImageLimits::default()).expect("fixture decodes").gray
}

#[test]
fn finds_the_fixtures_faces_where_the_cascade_does() {
    let mut cf = centerface();
    let mut haar = FaceDetector::new(Path::new(DEFAULT_CASCADE), DetectParams::default()).unwrap();
    for (name, faces) in [("portrait_640x480.jpg", 1), ("astronaut.jpg", 1), ("group.jpg", 3), ("coffee.jpg", 0)] {
        let image = gray(name);
        let found = cf.detect(&image).unwrap();
        // Unverified, at its low threshold, CenterFace may propose a phantom
        // or two; each fixture face must be among its boxes, framed as the
        // cascade frames it.
        let cascade = haar.detect(&image).unwrap();
        assert_eq!(cascade.len(), faces, "{name}: the cascade's faces");
        for face in &cascade {
            let best = found.iter().map(|b| b.iou(face)).fold(0.0, f64::max);
            assert!(
                best > 0.5,
                "{name}: the face at {face:?} has no CenterFace box like it (best IoU {best:.2}): {found:?}"
            );
        }
        for b in &found {
            // Square, as the cascade's, unless cut at the image's edge.
            let at_edge = b.x == 0 || b.y == 0 || b.x + b.width == image.width() || b.y + b.height == image.height();
            assert!(b.width == b.height || at_edge, "{name}: square boxes, as the cascade's: {b:?}");
            assert!(b.x + b.width <= image.width() && b.y + b.height <= image.height(), "{name}: {b:?} inside");
        }
    }
}

#[test]
fn every_shape_of_image_gets_the_same_answer_in_any_order() {
    // OpenCV 4.6 answers wrongly when a network's input changes shape; the
    // fixed canvases must keep the answer independent of what came before.
    let mut fresh = centerface();
    let mut reused = centerface();
    let names = ["group.jpg", "portrait_640x480.jpg", "coffee.jpg", "astronaut.jpg", "group.jpg"];
    for name in names {
        let image = gray(name);
        let _ = reused.detect(&gray("coffee.jpg")).unwrap();
        assert_eq!(reused.detect(&image).unwrap(), fresh.detect(&image).unwrap(), "{name}");
        let tall = image::imageops::rotate90(&image);
        let _ = reused.detect(&image).unwrap();
        assert_eq!(reused.detect(&tall).unwrap(), fresh.detect(&tall).unwrap(), "{name}, turned upright");
    }
}

#[test]
fn blank_noise_and_tiny_images_have_no_faces() {
    let mut cf = centerface();
    assert!(cf.detect(&GrayImage::from_pixel(320, 240, Luma([128]))).unwrap().is_empty());
    let mut state = 12345u32;
    let noise = GrayImage::from_fn(640, 480, |_, _| {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        Luma([(state >> 24) as u8])
    });
    let found = cf.detect(&noise).unwrap();
    assert!(found.len() <= 1, "noise: {found:?}");
    for (w, h) in [(0, 0), (1, 1), (7, 300), (300, 7), (5000, 20)] {
        assert!(cf.detect(&GrayImage::new(w, h)).unwrap().is_empty(), "{w}x{h}");
    }
}

fn analyzer_with_centerface() -> Arc<Analyzer> {
    let mut config = AnalyzerConfig::with_models_dir(&root().join("models"));
    config.detector = DetectorChoice::CenterFace(PathBuf::from(DEFAULT_CENTERFACE));
    Arc::new(Analyzer::load(config).expect("models and CenterFace load"))
}

#[test]
fn the_pipeline_with_centerface_finds_and_reads_the_groups_three_faces() {
    let analyzer = analyzer_with_centerface();
    let group = decode_image(&fixture("group.jpg"), ImageLimits::default()).unwrap();
    let analysis = analyzer.analyze_image(&group).expect("faces found");
    assert_eq!(analysis.faces.len(), 3, "{:?}", analysis.faces.iter().map(|f| f.bbox).collect::<Vec<_>>());
    let coffee = decode_image(&fixture("coffee.jpg"), ImageLimits::default()).unwrap();
    assert!(analyzer.analyze_image(&coffee).is_err(), "the verifier removes any phantom on the coffee photo");
}

#[test]
fn the_cli_takes_detector_centerface() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_emotion-ai"))
        .args(["predict", "--detector", "centerface"])
        .arg(root().join("tests/fixtures/group.jpg"))
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // One JSON line per face.
    let rows: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows.iter().all(|r| r["kind"] == "face" && r["status"] == "ok"), "{rows:?}");
}

/// The portrait fixture's face, cut tight (the inner 70% of the cascade's
/// box) and enlarged to 150 px: a pre-cropped face photo.
fn tight_face() -> GrayImage {
    let portrait = gray("portrait_640x480.jpg");
    let mut haar = FaceDetector::new(Path::new(DEFAULT_CASCADE), DetectParams::default()).unwrap();
    let face = haar.detect(&portrait).unwrap()[0];
    let inset = face.width * 15 / 100;
    let side = face.width - 2 * inset;
    let cut = image::imageops::crop_imm(&portrait, face.x + inset, face.y + inset, side, side).to_image();
    image::imageops::resize(&cut, 150, 150, image::imageops::FilterType::Triangle)
}

fn png(gray: &GrayImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    gray.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    bytes
}

fn haar() -> DetectorChoice {
    DetectorChoice::Haar(PathBuf::from(DEFAULT_CASCADE))
}

#[test]
fn the_default_and_the_fallback_find_the_tight_crop_the_cascade_misses() {
    let tight = tight_face();
    let mut cascade = FaceDetector::new(Path::new(DEFAULT_CASCADE), DetectParams::default()).unwrap();
    assert!(cascade.detect(&tight).unwrap().is_empty(), "the cascade misses the tight crop (the case this is for)");
    let decoded = decode_image(&png(&tight), ImageLimits::default()).unwrap();

    let default = Arc::new(Analyzer::load(AnalyzerConfig::with_models_dir(&root().join("models"))).unwrap());
    assert_eq!(default.detector().name(), "centerface");
    assert_eq!(default.fallback_detector(), None);
    // `--detector haar-then-centerface`: CenterFace where the cascade finds none.
    let mut config = AnalyzerConfig::with_models_dir(&root().join("models"));
    config.detector = haar();
    config.fallback_detector = Some(DetectorChoice::CenterFace(PathBuf::from(DEFAULT_CENTERFACE)));
    let haar_then_centerface = Analyzer::load(config).unwrap();
    for (name, analyzer) in [("default", &*default), ("haar-then-centerface", &haar_then_centerface)] {
        let analysis = analyzer.analyze_image(&decoded).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(analysis.faces.len(), 1, "{name}");
        let b = analysis.faces[0].bbox;
        assert!(b.width >= 75, "{name}: the box covers most of the crop: {b:?}");
    }

    let mut config = AnalyzerConfig::with_models_dir(&root().join("models"));
    config.detector = haar();
    let cascade_only = Analyzer::load(config).unwrap();
    assert!(cascade_only.analyze_image(&decoded).is_err(), "the cascade alone: no face");
}

#[test]
fn without_the_verifier_centerface_is_never_asked() {
    // At its low heat threshold CenterFace leaves the phantoms to the
    // verifier: alone it would put faces on face-free photos.
    let mut config = AnalyzerConfig::with_models_dir(&root().join("models"));
    config.face_verifier_model = None;
    let err = Analyzer::load(config.clone()).err().expect("CenterFace without the verifier is refused");
    assert!(format!("{err:#}").contains("needs the face verifier"), "{err:#}");

    config.detector = haar();
    config.fallback_detector = Some(DetectorChoice::CenterFace(PathBuf::from(DEFAULT_CENTERFACE)));
    let analyzer = Analyzer::load(config).expect("the cascade alone loads");
    assert_eq!(analyzer.fallback_detector(), None, "the fallback is dropped");
    assert!(!analyzer.has_centerface());
}

#[test]
fn the_cli_without_the_verifier_uses_the_cascade_unless_centerface_is_named() {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_emotion-ai"))
            .arg("predict")
            .args(args)
            .arg(root().join("tests/fixtures/portrait_640x480.jpg"))
            .output()
            .expect("runs")
    };
    let out = run(&["--face-verifier-model", "none"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("the face detector is the Haar cascade"));
    let row: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).expect("one JSON line");
    assert_eq!(row["status"], "ok", "{row}");

    let out = run(&["--face-verifier-model", "none", "--detector", "centerface"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs the face verifier"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn utkface_faces_are_cropped_where_the_served_detector_finds_them() {
    use emotion_ai::detect::CropSpec;
    use emotion_ai::train::utkface::{load, load_each, FaceFinder};
    // Tight face chips like UTKFace's, named as its files are: the served
    // detector (CenterFace, judged by the verifier) finds them, the cascade
    // does not, and its crops stand in for the median box.
    let dir = tempfile::tempdir().unwrap();
    let tight = image::DynamicImage::ImageLuma8(tight_face()).to_rgb8();
    for i in 0..6 {
        tight.save(dir.path().join(format!("3{i}_{}_0_2017010100000000{i}.jpg.chip.jpg", i % 2))).unwrap();
    }
    let spec = CropSpec { size: 48, margin: 0.0 };
    let found = |finder: &FaceFinder| -> (usize, usize) {
        let parts = load(dir.path(), finder, 2017, 2, spec).unwrap();
        let faces: usize = parts.iter().map(|p| p.ages.len()).sum();
        let detected = parts.iter().flat_map(|p| &p.detected).filter(|d| **d).count();
        (faces, detected)
    };
    let verifier = Some(root().join("models/face_verifier.safetensors"));
    let served = FaceFinder { detector: DetectorChoice::default(), verifier: verifier.clone() };
    assert_eq!(served.describe(), "centerface with the face verifier");
    assert_eq!(served.options(), "--detector centerface");
    let unverified = FaceFinder { detector: haar(), verifier: None };
    assert_eq!(unverified.options(), "--detector haar --face-verifier-model none");
    assert_eq!(found(&served), (6, 6));
    let cascade = FaceFinder { detector: haar(), verifier };
    assert_eq!(found(&cascade), (6, 0), "every chip is kept, cropped by the stand-in box");

    // Several crops of one search: the same faces, each cut as asked, each
    // the crop a search of its own gives.
    let wide = CropSpec { size: 96, margin: 0.2 };
    for finder in [&served, &cascade] {
        let both = load_each(dir.path(), finder, 2017, 2, &[spec, wide]).unwrap();
        assert_eq!(both.len(), 2);
        for (sets, crop) in both.iter().zip([spec, wide]) {
            let alone = load(dir.path(), finder, 2017, 2, crop).unwrap();
            for (part, single) in sets.iter().zip(&alone) {
                assert_eq!(part.faces.images.size()[1..], [1, i64::from(crop.size), i64::from(crop.size)]);
                assert!(part.faces.images.equal(&single.faces.images), "the same pixels as a search of its own");
                assert!(part.faces.labels.equal(&single.faces.labels));
                assert_eq!((&part.ages, &part.races, &part.detected), (&single.ages, &single.races, &single.detected));
            }
        }
    }
    assert!(load_each(dir.path(), &served, 2017, 2, &[]).is_err(), "no crop asked for");
}

#[test]
fn face_sex_commands_refuse_centerface_without_the_verifier_before_loading_data() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_emotion-ai"))
        .args(["eval", "face-sex", "--data", "no-such-dir", "--detector", "centerface"])
        .args(["--face-verifier-model", "none"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("needs the face verifier"), "{stderr}");
}
