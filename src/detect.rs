//! Face detection, and cropping faces for the networks. Two detectors:
//! [`centerface`], a small network and the default, and OpenCV's Haar
//! cascade ([`FaceDetector`]), the design's first, which is asked for by
//! name (alone, or with CenterFace where it finds no face);
//! [`DetectorChoice`] names either, [`DetectorPool`] lends them to
//! concurrent requests.
//!
//! Detection runs on a copy of the image scaled down so its longest side is at
//! most [`DetectParams::max_side`] (CenterFace: its own
//! [`centerface::MAX_SIDE`]; cost grows with the pixel count; faces that
//! matter stay well above the minimum size), and the boxes are mapped back
//! to the original's coordinates. Crops come from the full-resolution
//! original.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use image::imageops::{self, FilterType};
use image::GrayImage;
use opencv::core::{Mat, Rect, Size, Vector};
use opencv::objdetect::{CascadeClassifier, CascadeClassifierTrait, CascadeClassifierTraitConst};
use serde::Serialize;

pub mod centerface;

use crate::model::FACE_SIZE;
use crate::pool::Pool;

/// The frontal-face cascade we detect with, where Debian's opencv-data puts
/// it. `alt2` rather than OpenCV's `default`: on the same photos it finds more
/// faces with fewer false positives, and keeps doing so at a coarser scale
/// step, which makes it about twice as fast (README, "Face detection").
pub const DEFAULT_CASCADE: &str = "/usr/share/opencv4/haarcascades/haarcascade_frontalface_alt2.xml";

/// A face's bounding box in the uploaded image's pixel coordinates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FaceBox {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl FaceBox {
    fn area(&self) -> u64 {
        u64::from(self.width) * u64::from(self.height)
    }

    /// Intersection over union with another box: 1 for the same box, 0 for
    /// boxes that do not overlap.
    pub fn iou(&self, other: &FaceBox) -> f64 {
        let (x0, y0) = (self.x.max(other.x), self.y.max(other.y));
        let x1 = (self.x + self.width).min(other.x + other.width);
        let y1 = (self.y + self.height).min(other.y + other.height);
        if x1 <= x0 || y1 <= y0 {
            return 0.0;
        }
        let inter = u64::from(x1 - x0) * u64::from(y1 - y0);
        inter as f64 / (self.area() + other.area() - inter) as f64
    }
}

/// Tuning of `detectMultiScale`. The defaults were chosen with
/// `examples/detect_sweep.rs` on real photos and synthetic scenes (README,
/// "Face detection"): with the `alt2` cascade they find more faces, with fewer
/// false positives, in half the time of the `default` cascade at step 1.1.
#[derive(Debug, Clone, Copy)]
pub struct DetectParams {
    /// Step between the cascade's scales.
    pub scale_factor: f64,
    /// Overlapping raw detections a face needs to be kept; higher rejects more
    /// false positives. The default (2) is one lower than the cascade alone
    /// would want: the face verifier removes the phantoms that lets through.
    pub min_neighbors: i32,
    /// Smallest face side, as a fraction of the image's shorter side.
    pub min_face_fraction: f64,
    /// Smallest face side in pixels of the detection copy.
    pub min_face_pixels: u32,
    /// Longest side of the copy the cascade runs on.
    pub max_side: u32,
    /// A second pass of the cascade on the mirror image of a half-size copy,
    /// for faces at least twice the smallest side. The cascade's features
    /// are not left-right symmetric, so the mirror image finds faces the
    /// first pass missed (on the sweep's selection scenes, seed 7, recall
    /// rose from 95.3% to 97.2%; README, "The mirror pass"); at half size it costs about a quarter of the first
    /// pass in theory, but 45% of it measured (32 ms on the 640x480
    /// portrait), so it is off by default: the one-face request must not get
    /// slower (BENCHMARKS.md). Its boxes are added where they overlap none of
    /// the first's.
    pub mirror_pass: bool,
}

impl Default for DetectParams {
    fn default() -> Self {
        Self {
            scale_factor: 1.2,
            min_neighbors: 2,
            min_face_fraction: 0.06,
            min_face_pixels: 30,
            max_side: 640,
            mirror_pass: false,
        }
    }
}

/// One loaded cascade. OpenCV's classifier is not thread-safe (detection takes
/// `&mut self`), so concurrent users go through a [`DetectorPool`].
pub struct FaceDetector {
    cascade: CascadeClassifier,
    params: DetectParams,
}

impl FaceDetector {
    /// Loads the cascade XML at `path`.
    pub fn new(path: &Path, params: DetectParams) -> Result<Self> {
        if !path.is_file() {
            return Err(anyhow!(
                "Haar cascade {} not found (Debian's opencv-data installs it; run scripts/setup.sh)",
                path.display()
            ));
        }
        let cascade = CascadeClassifier::new(path).with_context(|| format!("loading cascade {}", path.display()))?;
        if cascade.empty()? {
            return Err(anyhow!("{} is not a valid Haar cascade", path.display()));
        }
        Ok(Self { cascade, params })
    }

    /// Finds faces, largest first: the cascade's pass over the detection
    /// copy, plus the mirror pass when [`DetectParams::mirror_pass`] is set.
    pub fn detect(&mut self, gray: &GrayImage) -> Result<Vec<FaceBox>> {
        let (width, height) = gray.dimensions();
        if width == 0 || height == 0 {
            return Ok(Vec::new());
        }
        let p = self.params;
        let scale = (f64::from(p.max_side) / f64::from(width.max(height))).min(1.0);
        let small;
        let view = if scale < 1.0 {
            let w = ((f64::from(width) * scale).round() as u32).max(1);
            let h = ((f64::from(height) * scale).round() as u32).max(1);
            small = imageops::resize(gray, w, h, FilterType::Triangle);
            &small
        } else {
            gray
        };
        let (w, h) = view.dimensions();
        let min_side = ((f64::from(w.min(h)) * p.min_face_fraction) as u32).max(p.min_face_pixels);
        if min_side > w.min(h) {
            return Ok(Vec::new());
        }
        let original = (width, height);
        let first = PassCopy { factor: scale, width: w, mirrored: false };
        let mut boxes: Vec<FaceBox> =
            self.cascade_pass(view, min_side)?.into_iter().filter_map(|r| to_original(r, first, original)).collect();
        let (hw, hh) = (w / 2, h / 2);
        if p.mirror_pass && min_side <= hw.min(hh) {
            let half = imageops::flip_horizontal(&imageops::resize(view, hw, hh, FilterType::Triangle));
            let mirror = PassCopy { factor: scale * f64::from(hw) / f64::from(w), width: hw, mirrored: true };
            let extra: Vec<FaceBox> = self
                .cascade_pass(&half, min_side)?
                .into_iter()
                .filter_map(|r| to_original(r, mirror, original))
                .filter(|b| !boxes.iter().any(|a| a.iou(b) > MERGE_IOU))
                .collect();
            boxes.extend(extra);
        }
        sort_largest_first(&mut boxes);
        Ok(boxes)
    }

    /// One `detectMultiScale` on a histogram-equalised `image`, faces of at
    /// least `min_side` pixels, in `image`'s coordinates.
    fn cascade_pass(&mut self, image: &GrayImage, min_side: u32) -> Result<Vector<Rect>> {
        let (w, h) = image.dimensions();
        let mat = Mat::new_rows_cols_with_data(h as i32, w as i32, image.as_raw())?;
        let mut equalized = Mat::default();
        opencv::imgproc::equalize_hist(&mat, &mut equalized)?;
        let mut found = Vector::<Rect>::new();
        self.cascade.detect_multi_scale(
            &equalized,
            &mut found,
            self.params.scale_factor,
            self.params.min_neighbors,
            0,
            Size::new(min_side as i32, min_side as i32),
            Size::new(0, 0),
        )?;
        Ok(found)
    }
}

/// A copy of the image a cascade pass ran on: `factor` times the original's
/// size, `width` pixels wide, mirrored or not.
#[derive(Debug, Clone, Copy)]
struct PassCopy {
    factor: f64,
    width: u32,
    mirrored: bool,
}

/// A box found on `copy`, in the coordinates of the original of size
/// `(width, height)`; `None` if nothing of it is inside.
fn to_original(r: Rect, copy: PassCopy, (width, height): (u32, u32)) -> Option<FaceBox> {
    let rx = if copy.mirrored { copy.width as i32 - r.x - r.width } else { r.x };
    let x0 = (f64::from(rx) / copy.factor).round().max(0.0) as u32;
    let y0 = (f64::from(r.y) / copy.factor).round().max(0.0) as u32;
    let x1 = ((f64::from(rx + r.width) / copy.factor).round().max(0.0) as u32).min(width);
    let y1 = ((f64::from(r.y + r.height) / copy.factor).round().max(0.0) as u32).min(height);
    (x1 > x0 && y1 > y0).then(|| FaceBox { x: x0, y: y0, width: x1 - x0, height: y1 - y0 })
}

/// Boxes in the order every detector answers in: largest first, then left
/// to right (what `max_faces` keeps and the answer numbers by).
fn sort_largest_first(boxes: &mut [FaceBox]) {
    boxes.sort_by(|a, b| b.area().cmp(&a.area()).then(a.x.cmp(&b.x)));
}

/// Overlap (intersection over union) above which a box of the mirror pass
/// is the same face as one of the first pass.
const MERGE_IOU: f64 = 0.3;

/// Overlap (intersection over union) above which two verified boxes are one
/// face (README, "Two boxes on one face").
pub const DUPLICATE_IOU: f64 = 0.3;

/// Greedy non-maximum suppression: going from the highest score down, each
/// kept box drops the kept boxes of lower score that overlap it by more than
/// `max_iou`. `keep` says which boxes are candidates on entry and which are
/// left on return; ties go to the earlier box.
pub fn suppress_overlaps(boxes: &[FaceBox], scores: &[f32], keep: &mut [bool], max_iou: f64) {
    let mut order: Vec<usize> = (0..boxes.len()).filter(|&i| keep[i]).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    for (rank, &i) in order.iter().enumerate() {
        if !keep[i] {
            continue;
        }
        for &j in &order[rank + 1..] {
            if keep[j] && boxes[i].iou(&boxes[j]) > max_iou {
                keep[j] = false;
            }
        }
    }
}

/// How a network's input is cut out of a detected box: the box grown by
/// `margin` of its side on every side, scaled to `size` x `size`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CropSpec {
    pub size: u32,
    pub margin: f64,
}

impl CropSpec {
    /// The 48x48 crop of the box itself that the FER-style networks read.
    pub const FACE: Self = Self { size: FACE_SIZE as u32, margin: 0.0 };
}

/// Cuts a face out of the full-resolution grayscale image and scales it to the
/// networks' 48x48 input (area-averaging when shrinking, as FER2013's crops were).
pub fn crop_face(gray: &GrayImage, face: FaceBox) -> GrayImage {
    crop_face_as(gray, face, CropSpec::FACE)
}

/// [`crop_face`] for any [`CropSpec`]. Where the grown box reaches past the
/// image, the image's edge pixels are repeated outwards (as the training
/// crops were padded), so a face at the border still gets a full crop.
pub fn crop_face_as(gray: &GrayImage, face: FaceBox, spec: CropSpec) -> GrayImage {
    let size = spec.size.max(1);
    let (w, h) = gray.dimensions();
    let grow = |side: u32| (f64::from(side) * spec.margin.max(0.0)).round() as i64;
    let (gx, gy) = (grow(face.width), grow(face.height));
    let (x0, y0) = (i64::from(face.x) - gx, i64::from(face.y) - gy);
    let (x1, y1) = (i64::from(face.x) + i64::from(face.width) + gx, i64::from(face.y) + i64::from(face.height) + gy);
    // The part inside the image, and where it lands in the output.
    let (ix0, iy0) = (x0.clamp(0, i64::from(w)), y0.clamp(0, i64::from(h)));
    let (ix1, iy1) = (x1.clamp(0, i64::from(w)), y1.clamp(0, i64::from(h)));
    if ix1 <= ix0 || iy1 <= iy0 {
        // A box wholly outside the image (never from the detector).
        return GrayImage::new(size, size);
    }
    let (scale_x, scale_y) = (f64::from(size) / (x1 - x0) as f64, f64::from(size) / (y1 - y0) as f64);
    let to_out = |v: i64, origin: i64, scale: f64| (((v - origin) as f64 * scale).round() as u32).min(size);
    let (ox0, oy0) = (to_out(ix0, x0, scale_x), to_out(iy0, y0, scale_y));
    let (ox1, oy1) = (to_out(ix1, x0, scale_x).max(ox0 + 1).min(size), to_out(iy1, y0, scale_y).max(oy0 + 1).min(size));
    let (ox0, oy0) = (ox0.min(ox1 - 1), oy0.min(oy1 - 1));
    let inside = imageops::crop_imm(gray, ix0 as u32, iy0 as u32, (ix1 - ix0) as u32, (iy1 - iy0) as u32).to_image();
    let (tw, th) = (ox1 - ox0, oy1 - oy0);
    let filter = if inside.width() > tw { FilterType::Triangle } else { FilterType::CatmullRom };
    let scaled = if inside.dimensions() == (tw, th) { inside } else { imageops::resize(&inside, tw, th, filter) };
    if (ox0, oy0, tw, th) == (0, 0, size, size) {
        return scaled;
    }
    GrayImage::from_fn(size, size, |x, y| {
        let sx = x.clamp(ox0, ox1 - 1) - ox0;
        let sy = y.clamp(oy0, oy1 - 1) - oy0;
        *scaled.get_pixel(sx, sy)
    })
}

/// Which face detector finds the candidates the verifier then judges.
#[derive(Debug, Clone, PartialEq)]
pub enum DetectorChoice {
    /// OpenCV's Haar cascade at this path (README, "Face detection").
    Haar(PathBuf),
    /// CenterFace, the ONNX network at this path (the default): on a copy
    /// at most [`centerface::MAX_SIDE`] wide it finds more faces and fewer
    /// phantoms than the cascade, for the cascade's time (README, "CenterFace,
    /// the default detector").
    CenterFace(PathBuf),
}

impl Default for DetectorChoice {
    fn default() -> Self {
        Self::CenterFace(PathBuf::from(centerface::DEFAULT_CENTERFACE))
    }
}

impl DetectorChoice {
    /// The detector's name, as `--detector` and `/api/v1/models` give it.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Haar(_) => "haar",
            Self::CenterFace(_) => "centerface",
        }
    }

    /// The face verifier's threshold for this detector's candidates, where
    /// it is not the card's (which was chosen for the cascade's).
    pub fn verifier_threshold(&self) -> Option<f32> {
        match self {
            Self::Haar(_) => None,
            Self::CenterFace(_) => Some(centerface::VERIFIER_THRESHOLD),
        }
    }

    /// Refuses CenterFace without the face verifier: its low heat threshold
    /// leaves the phantoms to the verifier (serving and the face-sex crops
    /// alike).
    pub fn check_verified(&self, verified: bool) -> Result<()> {
        if !verified && matches!(self, Self::CenterFace(_)) {
            anyhow::bail!(
                "--detector centerface needs the face verifier, which judges its candidates (drop --face-verifier-model none)"
            );
        }
        Ok(())
    }

    /// The cascade or network file.
    pub fn path(&self) -> &Path {
        match self {
            Self::Haar(path) | Self::CenterFace(path) => path,
        }
    }
}

/// One loaded detector of either kind.
pub enum AnyDetector {
    Haar(FaceDetector),
    CenterFace(centerface::CenterFace),
}

impl AnyDetector {
    /// Loads `choice`; `params` tunes the cascade (CenterFace takes the
    /// smallest face from it, and reads its own smaller copy).
    pub fn new(choice: &DetectorChoice, params: DetectParams) -> Result<Self> {
        Ok(match choice {
            DetectorChoice::Haar(path) => Self::Haar(FaceDetector::new(path, params)?),
            DetectorChoice::CenterFace(path) => Self::CenterFace(centerface::CenterFace::new(
                path,
                centerface::CenterFaceParams {
                    min_face_fraction: params.min_face_fraction,
                    min_face_pixels: params.min_face_pixels,
                    ..Default::default()
                },
            )?),
        })
    }

    /// Finds faces, largest first.
    pub fn detect(&mut self, gray: &GrayImage) -> Result<Vec<FaceBox>> {
        match self {
            Self::Haar(d) => d.detect(gray),
            Self::CenterFace(d) => d.detect(gray),
        }
    }
}

/// Detectors shared by concurrent requests: each caller borrows one for the
/// duration of a detection. Sized to the inference concurrency, so a
/// borrower never waits.
pub struct DetectorPool {
    detectors: Pool<AnyDetector>,
    choice: DetectorChoice,
}

impl DetectorPool {
    /// Loads `size` copies of the chosen detector.
    pub fn new(choice: &DetectorChoice, params: DetectParams, size: usize) -> Result<Self> {
        let loaded = choice.clone();
        let detectors = Pool::new("face detector", size, move || AnyDetector::new(&loaded, params))?;
        Ok(Self { detectors, choice: choice.clone() })
    }

    /// Detects faces with a borrowed detector.
    pub fn detect(&self, gray: &GrayImage) -> Result<Vec<FaceBox>> {
        self.detectors.with(|detector| detector.detect(gray))?
    }

    /// The detector in use.
    pub fn choice(&self) -> &DetectorChoice {
        &self.choice
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detector() -> FaceDetector {
        FaceDetector::new(Path::new(DEFAULT_CASCADE), DetectParams::default()).expect("cascade (run scripts/setup.sh)")
    }

    #[test]
    fn blank_and_noise_images_have_no_faces() {
        let mut d = detector();
        assert!(d.detect(&GrayImage::from_pixel(320, 240, image::Luma([128]))).unwrap().is_empty());
        assert!(d.detect(&GrayImage::new(0, 0)).unwrap().is_empty());
        assert!(d.detect(&GrayImage::new(10, 10)).unwrap().is_empty());
    }

    #[test]
    fn boxes_of_a_mirrored_half_copy_map_back_to_the_original() {
        // A 40x40 box at x 10 of a 320-wide mirrored half copy of a 640x480
        // image is, unmirrored, at x 270 of the copy: x 540 of the original.
        let copy = PassCopy { factor: 0.5, width: 320, mirrored: true };
        let b = to_original(Rect::new(10, 20, 40, 40), copy, (640, 480)).unwrap();
        assert_eq!(b, FaceBox { x: 540, y: 40, width: 80, height: 80 });
        // Unmirrored at full size a box is itself; clipped at the border.
        let same = PassCopy { factor: 1.0, width: 640, mirrored: false };
        assert_eq!(
            to_original(Rect::new(600, 450, 60, 60), same, (640, 480)),
            Some(FaceBox { x: 600, y: 450, width: 40, height: 30 })
        );
        assert_eq!(to_original(Rect::new(700, 0, 10, 10), same, (640, 480)), None);
    }

    #[test]
    fn overlapping_boxes_keep_the_best_scored_and_apart_boxes_all_stay() {
        let face = FaceBox { x: 100, y: 100, width: 60, height: 60 };
        let upper_half = FaceBox { x: 105, y: 80, width: 50, height: 50 };
        let neighbour = FaceBox { x: 170, y: 100, width: 60, height: 60 };
        let boxes = [upper_half, face, neighbour];
        assert!(face.iou(&upper_half) > DUPLICATE_IOU && face.iou(&neighbour) == 0.0);
        let mut keep = [true; 3];
        suppress_overlaps(&boxes, &[0.85, 0.99, 0.81], &mut keep, DUPLICATE_IOU);
        assert_eq!(keep, [false, true, true]);
        // A box already dropped (below the threshold) suppresses nothing.
        let mut keep = [true, false, true];
        suppress_overlaps(&boxes, &[0.85, 0.99, 0.81], &mut keep, DUPLICATE_IOU);
        assert_eq!(keep, [true, false, true]);
        // Equal scores: the earlier box wins.
        let mut keep = [true; 3];
        suppress_overlaps(&boxes, &[0.9, 0.9, 0.9], &mut keep, DUPLICATE_IOU);
        assert_eq!(keep, [true, false, true]);
    }

    #[test]
    fn iou_is_one_for_the_same_box_and_zero_apart() {
        let a = FaceBox { x: 0, y: 0, width: 10, height: 10 };
        assert_eq!(a.iou(&a), 1.0);
        assert_eq!(a.iou(&FaceBox { x: 10, y: 0, width: 10, height: 10 }), 0.0);
        let half = FaceBox { x: 5, y: 0, width: 10, height: 10 };
        assert!((a.iou(&half) - 50.0 / 150.0).abs() < 1e-12);
    }

    #[test]
    fn the_mirror_pass_adds_no_second_box_for_a_face_already_found() {
        let gray = |name: &str| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
            image::open(path).unwrap().to_luma8()
        };
        let mut without = detector();
        let mirrored = DetectParams { mirror_pass: true, ..DetectParams::default() };
        let mut with = FaceDetector::new(Path::new(DEFAULT_CASCADE), mirrored).unwrap();
        for (name, faces) in [("portrait_640x480.jpg", 1), ("group.jpg", 3), ("coffee.jpg", 0)] {
            let image = gray(name);
            let first = without.detect(&image).unwrap();
            let both = with.detect(&image).unwrap();
            assert_eq!((first.len(), both.len()), (faces, faces), "{name}");
            // The first pass's boxes are kept as they were.
            assert!(first.iter().all(|b| both.contains(b)), "{name}: {first:?} vs {both:?}");
        }
    }

    #[test]
    fn missing_cascade_is_a_clear_error() {
        let err = FaceDetector::new(Path::new("/nonexistent/cascade.xml"), DetectParams::default()).err().unwrap();
        assert!(err.to_string().contains("setup.sh"), "{err}");
    }

    #[test]
    fn crop_is_48_square() {
        let img = GrayImage::from_fn(200, 100, |x, _| image::Luma([x as u8]));
        let face = crop_face(&img, FaceBox { x: 10, y: 5, width: 90, height: 90 });
        assert_eq!(face.dimensions(), (48, 48));
        let tiny = crop_face(&img, FaceBox { x: 0, y: 0, width: 20, height: 20 });
        assert_eq!(tiny.dimensions(), (48, 48));
    }

    #[test]
    fn a_crop_with_margin_is_the_grown_box_and_repeats_the_edge_past_the_image() {
        let img = GrayImage::from_fn(200, 160, |x, y| image::Luma([(x / 2 + y) as u8]));
        let face = FaceBox { x: 50, y: 40, width: 60, height: 60 };
        let spec = CropSpec { size: 96, margin: 0.25 };
        // Inside the image: exactly the 90 px box around the face, scaled.
        let grown = FaceBox { x: 35, y: 25, width: 90, height: 90 };
        assert_eq!(crop_face_as(&img, face, spec), crop_face_as(&img, grown, CropSpec { size: 96, margin: 0.0 }));
        // No margin at 48: the box itself, area-averaged down to 48x48 as
        // the FER-style networks were trained.
        let plain =
            imageops::resize(&imageops::crop_imm(&img, 50, 40, 60, 60).to_image(), 48, 48, FilterType::Triangle);
        assert_eq!(crop_face_as(&img, face, CropSpec::FACE), plain);

        // At the top-left corner a quarter of the side lies outside: those
        // rows and columns repeat the image's first row and column.
        let corner = crop_face_as(&img, FaceBox { x: 0, y: 0, width: 80, height: 80 }, spec);
        assert_eq!(corner.dimensions(), (96, 96));
        let pad = 16; // 20 px of 120, at 96/120
        for k in 0..pad {
            assert_eq!(corner.get_pixel(k, 50), corner.get_pixel(pad, 50), "column {k}");
            assert_eq!(corner.get_pixel(50, k), corner.get_pixel(50, pad), "row {k}");
        }
        assert_ne!(corner.get_pixel(pad, 50), corner.get_pixel(90, 50), "the image itself is not flat");
        // A box covering the whole image and more still gives a full crop.
        let whole =
            crop_face_as(&img, FaceBox { x: 0, y: 0, width: 200, height: 160 }, CropSpec { size: 96, margin: 1.0 });
        assert_eq!(whole.dimensions(), (96, 96));
    }
}
