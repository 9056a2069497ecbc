//! The shipped face verifier on public-domain fixtures: it keeps the faces
//! the cascade finds in them, and refuses what is plainly not a face, from
//! the cascade's own raw windows on a face-free photo to flat, noisy and
//! patterned patches.

mod common;

use common::{fixture, root};
use emotion_ai::decode::{decode_image, ImageLimits};
use emotion_ai::detect::{crop_face, DetectParams, FaceBox, FaceDetector, DEFAULT_CASCADE};
use emotion_ai::model::verifier::FaceVerifier;
use image::{GrayImage, Luma};

fn verifier() -> FaceVerifier {
    FaceVerifier::load(&root().join("models/face_verifier.safetensors")).expect("shipped face verifier")
}

fn gray(name: &str) -> GrayImage {
    decode_image(&fixture(name), ImageLimits::default()).expect("fixture decodes").gray
}

fn crops(image: &GrayImage, boxes: &[FaceBox]) -> Vec<Vec<u8>> {
    boxes.iter().map(|&b| crop_face(image, b).into_raw()).collect()
}

#[test]
fn keeps_every_face_the_cascade_finds_in_the_fixtures() {
    let verifier = verifier();
    let mut detector = FaceDetector::new(std::path::Path::new(DEFAULT_CASCADE), DetectParams::default()).unwrap();
    for (name, faces) in [("portrait_640x480.jpg", 1), ("astronaut.jpg", 1), ("group.jpg", 3)] {
        let image = gray(name);
        let boxes = detector.detect(&image).unwrap();
        assert_eq!(boxes.len(), faces, "{name}: the cascade's faces");
        assert_eq!(verifier.faces(&crops(&image, &boxes)).unwrap(), vec![true; faces], "{name}");
    }
}

#[test]
fn refuses_the_cascades_raw_windows_on_a_face_free_photo() {
    let verifier = verifier();
    // Every window the cascade fires on, without the neighbour grouping that
    // normally throws most of them away: phantom faces at their most numerous.
    let raw = DetectParams {
        min_neighbors: 0,
        scale_factor: 1.05,
        min_face_fraction: 0.03,
        min_face_pixels: 20,
        mirror_pass: false,
        ..DetectParams::default()
    };
    let mut detector = FaceDetector::new(std::path::Path::new(DEFAULT_CASCADE), raw).unwrap();
    let image = gray("coffee.jpg");
    let boxes = detector.detect(&image).unwrap();
    assert!(boxes.len() >= 5, "the raw cascade fires on coffee.jpg ({} windows)", boxes.len());
    let kept = verifier.faces(&crops(&image, &boxes)).unwrap().into_iter().filter(|&k| k).count();
    assert_eq!(kept, 0, "{kept} of {} raw windows on coffee.jpg taken for faces", boxes.len());
}

#[test]
fn refuses_flat_noisy_and_patterned_patches() {
    let side = 48;
    let mut state = 12345u32;
    let mut noise = || {
        state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
        (state >> 16) as u8
    };
    let patches: Vec<(&str, GrayImage)> = vec![
        ("black", GrayImage::from_pixel(side, side, Luma([0]))),
        ("grey", GrayImage::from_pixel(side, side, Luma([128]))),
        ("white", GrayImage::from_pixel(side, side, Luma([255]))),
        ("noise", GrayImage::from_fn(side, side, |_, _| Luma([noise()]))),
        ("gradient", GrayImage::from_fn(side, side, |x, y| Luma([((x + y) * 255 / 94) as u8]))),
        (
            "checkerboard",
            GrayImage::from_fn(side, side, |x, y| Luma([if (x / 6 + y / 6) % 2 == 0 { 20 } else { 235 }])),
        ),
        ("stripes", GrayImage::from_fn(side, side, |_, y| Luma([if (y / 4) % 2 == 0 { 30 } else { 220 }]))),
        (
            "disc",
            GrayImage::from_fn(side, side, |x, y| {
                let (dx, dy) = (x as i32 - 24, y as i32 - 24);
                Luma([if dx * dx + dy * dy < 300 { 200 } else { 60 }])
            }),
        ),
    ];
    let verifier = verifier();
    let keep = verifier.faces(&patches.iter().map(|(_, p)| p.as_raw().clone()).collect::<Vec<_>>()).unwrap();
    let taken: Vec<&str> = patches.iter().zip(keep).filter(|(_, k)| *k).map(|((name, _), _)| *name).collect();
    assert!(taken.is_empty(), "taken for faces: {taken:?}");
}

/// Two boxes on one face are one face: `select` keeps the one the verifier
/// scores highest, and still keeps the faces of a group apart.
#[test]
fn select_keeps_one_box_a_face() {
    let verifier = verifier();
    let mut detector = FaceDetector::new(std::path::Path::new(DEFAULT_CASCADE), DetectParams::default()).unwrap();
    let image = gray("portrait_640x480.jpg");
    let face = detector.detect(&image).unwrap()[0];
    // The same face framed a little larger, shifted by a tenth of its side:
    // both are faces to the verifier, and they overlap well over IoU 0.3.
    let grown = FaceBox {
        x: face.x.saturating_sub(face.width / 10),
        y: face.y.saturating_sub(face.height / 10),
        width: face.width * 11 / 10,
        height: face.height * 11 / 10,
    };
    assert!(face.iou(&grown) > emotion_ai::detect::DUPLICATE_IOU);
    let boxes = [face, grown];
    let face_crops = crops(&image, &boxes);
    assert_eq!(verifier.faces(&face_crops).unwrap(), vec![true, true], "both framings are faces");
    let scores = verifier.scores(&face_crops).unwrap();
    let kept = verifier.select(&boxes, &face_crops).unwrap();
    assert_eq!(kept.iter().filter(|&&k| k).count(), 1, "one box for one face: {kept:?}");
    assert!(kept[usize::from(scores[1] > scores[0])], "the better scored box is kept: {scores:?} {kept:?}");

    let group = gray("group.jpg");
    let boxes = detector.detect(&group).unwrap();
    assert_eq!(verifier.select(&boxes, &crops(&group, &boxes)).unwrap(), vec![true; 3]);
}
