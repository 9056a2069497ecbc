//! The `train face-verifier` command: a small face / not-face network that
//! checks the Haar cascade's candidates, so that a lower cascade threshold
//! (more faces found) does not bring phantom faces with it.
//!
//! The verifier reads the same 48x48 grey crop as the emotion network, cut
//! from the cascade's box. It learns from what the cascade proposes:
//!
//! - **faces**: FER2013 Training faces, and the cascade's boxes on UTKFace
//!   faces (of the sex model's train part) pasted into synthetic scenes;
//! - **not faces**: every raw cascade window (no neighbour grouping) on
//!   face-free photos and on those scenes away from the faces, plus random
//!   squares of the photos.
//!
//! Photos and UTKFace faces are split by file name, so validation holds
//! photos and faces the network never trained on; the epoch is chosen on it,
//! and the acceptance threshold is set to keep 99.5% of its scene faces.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use image::imageops::{self, FilterType};
use image::{GrayImage, Luma};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tch::{nn, Kind, Tensor};

use super::fer2013::{self, FaceSet, Split};
use super::metrics::round4;
use super::utkface::{self, Part};
use super::{export_weights, predict_set, train_face_classifier, ClassifierTask, RunState, TrainOptions};
use crate::decode::{decode_image, ImageLimits};
use crate::detect::{crop_face, DetectParams, FaceBox, FaceDetector};
use crate::model::verifier::{architecture, VERIFIER_CLASSES};
use crate::model::{card_path, parameter_count, FaceNet, InputSpec, ModelCard, FACE_SIZE};

/// Training defaults: a small two-class problem, a few epochs.
pub fn default_options() -> TrainOptions {
    TrainOptions { epochs: 8, lr: 0.05, class_weight_power: 0.5, ..TrainOptions::default() }
}

/// UTKFace's split seed, shared with the sex model so the verifier never
/// trains on the sex model's validation or test faces either.
pub const UTKFACE_SPLIT_SEED: u64 = 2017;

/// Where and how to train.
pub struct VerifierTrainRequest {
    pub fer2013: PathBuf,
    pub utkface: PathBuf,
    /// Folders of face-free photos (JPEG, PNG), searched recursively.
    pub negatives: Vec<PathBuf>,
    pub cascade: PathBuf,
    pub run_dir: PathBuf,
    pub resume: bool,
    pub export: PathBuf,
    pub options: TrainOptions,
}

/// A face pasted into a synthetic scene at `(x, y)` with side `size`.
#[derive(Debug, Clone, Copy)]
pub struct PastedFace {
    pub x: u32,
    pub y: u32,
    pub size: u32,
    /// UTKFace's race field (0 White, 1 Black, 2 Asian, 3 Indian, 4 other).
    pub race: u32,
}

impl PastedFace {
    /// Whether a detection is this face: its centre near the pasted face's
    /// centre and its size plausible for it (Haar boxes are tighter than
    /// UTKFace's chips).
    pub fn matches(&self, b: &FaceBox) -> bool {
        let s = f64::from(self.size);
        let dx = f64::from(b.x) + f64::from(b.width) / 2.0 - (f64::from(self.x) + s / 2.0);
        let dy = f64::from(b.y) + f64::from(b.height) / 2.0 - (f64::from(self.y) + s / 2.0);
        dx.abs() < 0.3 * s && dy.abs() < 0.3 * s && (0.35 * s..=1.25 * s).contains(&f64::from(b.width))
    }

    /// Whether a box overlaps the pasted face at all.
    pub fn touches(&self, b: &FaceBox) -> bool {
        b.x < self.x + self.size && self.x < b.x + b.width && b.y < self.y + self.size && self.y < b.y + b.height
    }
}

/// The side lengths the scenes paste faces at (px), one of each size per
/// scene and size class.
pub const SCENE_FACE_SIZES: [u32; 6] = [40, 56, 80, 110, 150, 200];

/// UTKFace's race field of a file name (`[age]_[sex]_[race]_...`).
pub fn race_of(path: &Path) -> Option<u32> {
    utkface::parse_name(path.file_name()?.to_str()?).map(|label| label.race)
}

/// UTKFace's labelled images in `part` of the split.
pub fn utkface_files(dir: &Path, part: &[Part]) -> Result<Vec<PathBuf>> {
    Ok(utkface::list(dir)?
        .into_iter()
        .map(|(path, _)| path)
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            // Every listed name parsed, race field included.
            part.contains(&utkface::part_of(name, UTKFACE_SPLIT_SEED))
        })
        .collect())
}

/// A 640x480 scene: a smooth random background with four of `faces` pasted
/// into its quadrants at four different sizes. The same `rng` state gives the
/// same scene.
pub fn synthetic_scene(faces: &[PathBuf], rng: &mut StdRng) -> Result<(GrayImage, Vec<PastedFace>)> {
    let coarse = GrayImage::from_fn(40, 30, |_, _| Luma([rng.random_range(40..220u8)]));
    let mut scene = imageops::resize(&coarse, 640, 480, FilterType::Triangle);
    let mut sizes = SCENE_FACE_SIZES.to_vec();
    let mut pasted = Vec::new();
    for (sx, sy) in [(20u32, 20u32), (340, 20), (20, 250), (340, 250)] {
        let size = sizes.remove(rng.random_range(0..sizes.len()));
        let path = &faces[rng.random_range(0..faces.len())];
        let face = image::open(path).with_context(|| format!("{}", path.display()))?.to_luma8();
        let face = imageops::resize(&face, size, size, FilterType::Triangle);
        let x = (sx + rng.random_range(0..=(210 - size.min(210)))).min(640 - size);
        let y = (sy + rng.random_range(0..=(210 - size.min(210)))).min(480 - size);
        imageops::replace(&mut scene, &face, i64::from(x), i64::from(y));
        pasted.push(PastedFace { x, y, size, race: race_of(path).unwrap_or(4) });
    }
    Ok((scene, pasted))
}

/// Every raw window the cascade fires on (no neighbour grouping), the
/// candidates a lower threshold could let through.
fn raw_detector(cascade: &Path) -> Result<FaceDetector> {
    let params = DetectParams {
        min_neighbors: 0,
        min_face_fraction: 0.03,
        min_face_pixels: 24,
        mirror_pass: false,
        ..DetectParams::default()
    };
    FaceDetector::new(cascade, params)
}

/// Crops collected for one part (train or validation).
#[derive(Default)]
struct Collected {
    pixels: Vec<u8>,
    labels: Vec<i64>,
}

impl Collected {
    fn push(&mut self, crop: &GrayImage, face: bool) {
        self.pixels.extend_from_slice(crop.as_raw());
        self.labels.push(i64::from(face));
    }

    fn count(&self, face: bool) -> usize {
        self.labels.iter().filter(|&&l| l == i64::from(face)).count()
    }

    fn into_set(self) -> FaceSet {
        let n = self.labels.len() as i64;
        FaceSet::new(
            Tensor::from_slice(&self.pixels).view([n, 1, FACE_SIZE, FACE_SIZE]),
            Tensor::from_slice(&self.labels),
        )
    }
}

/// Image files under `dir`, recursively, sorted.
fn photo_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        bail!("{} is not a directory of face-free photos", dir.display());
    }
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(dir)
        .follow_links(true)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().to_path_buf())
        .filter(|p| {
            p.extension()
                .and_then(|e| e.to_str())
                .is_some_and(|e| matches!(e.to_ascii_lowercase().as_str(), "jpg" | "jpeg" | "png"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Whether a photo is held out for validation (a fixed hash of its name).
fn photo_is_validation(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    utkface::part_of(name, 99) != Part::Train
}

/// Negatives from one face-free photo: up to `raw_cap` raw cascade windows
/// and `random` random squares.
fn photo_negatives(
    detector: &mut FaceDetector,
    gray: &GrayImage,
    rng: &mut StdRng,
    raw_cap: usize,
    random: usize,
    out: &mut Collected,
) -> Result<()> {
    let mut raw = detector.detect(gray)?;
    shuffle(&mut raw, rng);
    for b in raw.into_iter().take(raw_cap) {
        out.push(&crop_face(gray, b), false);
    }
    let (w, h) = gray.dimensions();
    let max_side = w.min(h);
    if max_side < 24 {
        return Ok(());
    }
    for _ in 0..random {
        let side = rng.random_range(24..=max_side);
        let b =
            FaceBox { x: rng.random_range(0..=w - side), y: rng.random_range(0..=h - side), width: side, height: side };
        out.push(&crop_face(gray, b), false);
    }
    Ok(())
}

fn shuffle<T>(items: &mut [T], rng: &mut StdRng) {
    for i in (1..items.len()).rev() {
        items.swap(i, rng.random_range(0..=i));
    }
}

/// Faces and negatives from `count` synthetic scenes of `faces`: the raw
/// windows that match a pasted face (at most two a face) and, capped per
/// scene, those that touch none.
fn scene_crops(
    detector: &mut FaceDetector,
    faces: &[PathBuf],
    count: usize,
    seed: u64,
    negatives_per_scene: usize,
    out: &mut Collected,
) -> Result<()> {
    let mut rng = StdRng::seed_from_u64(seed);
    for _ in 0..count {
        let (scene, pasted) = synthetic_scene(faces, &mut rng)?;
        let mut raw = detector.detect(&scene)?;
        shuffle(&mut raw, &mut rng);
        let mut per_face = vec![0usize; pasted.len()];
        let mut negatives = 0;
        for b in raw {
            if let Some(i) = pasted.iter().position(|p| p.matches(&b)) {
                if per_face[i] < 2 {
                    per_face[i] += 1;
                    out.push(&crop_face(&scene, b), true);
                }
            } else if !pasted.iter().any(|p| p.touches(&b)) && negatives < negatives_per_scene {
                negatives += 1;
                out.push(&crop_face(&scene, b), false);
            }
        }
    }
    Ok(())
}

/// `take` faces of a FER2013 split, evenly spaced.
fn fer_faces(set: &FaceSet, take: usize, out: &mut Collected) -> Result<()> {
    let n = set.len();
    let step = (n / take.max(1)).max(1);
    for i in (0..n).step_by(step).take(take) {
        let pixels = Vec::<u8>::try_from(set.images.get(i as i64).flatten(0, -1))?;
        let crop = GrayImage::from_raw(FACE_SIZE as u32, FACE_SIZE as u32, pixels)
            .ok_or_else(|| anyhow!("FER2013 face {i} is not 48x48"))?;
        out.push(&crop, true);
    }
    Ok(())
}

/// FER2013 PublicTest faces in validation; they come first in its set.
const FER_VALIDATION_FACES: usize = 1_500;

/// Builds the training and validation sets.
fn build(request: &VerifierTrainRequest) -> Result<(FaceSet, FaceSet, serde_json::Value)> {
    let mut detector = raw_detector(&request.cascade)?;
    let (mut train, mut val) = (Collected::default(), Collected::default());

    tracing::info!("loading FER2013 faces");
    let fer = fer2013::load(&request.fer2013)?;
    let fer_train = fer.get(&Split::Training).ok_or_else(|| anyhow!("FER2013 has no Training faces"))?;
    let fer_val = fer.get(&Split::PublicTest).ok_or_else(|| anyhow!("FER2013 has no PublicTest faces"))?;
    fer_faces(fer_train, 12_000, &mut train)?;
    fer_faces(fer_val, FER_VALIDATION_FACES, &mut val)?;

    tracing::info!("synthetic scenes of UTKFace faces");
    let utk_train = utkface_files(&request.utkface, &[Part::Train])?;
    let utk_val = utkface_files(&request.utkface, &[Part::Validation])?;
    scene_crops(&mut detector, &utk_train, 800, 11, 20, &mut train)?;
    scene_crops(&mut detector, &utk_val, 100, 12, 20, &mut val)?;
    let scene_val_faces = val.count(true) - FER_VALIDATION_FACES;

    tracing::info!("face-free photos");
    let mut rng = StdRng::seed_from_u64(13);
    let (mut train_photos, mut val_photos) = (Vec::new(), Vec::new());
    for dir in &request.negatives {
        for path in photo_files(dir)? {
            let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let gray = match decode_image(&bytes, ImageLimits::default()) {
                Ok(image) => image.gray,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "skipping a photo that does not decode");
                    continue;
                }
            };
            let (out, list) =
                if photo_is_validation(&path) { (&mut val, &mut val_photos) } else { (&mut train, &mut train_photos) };
            photo_negatives(&mut detector, &gray, &mut rng, 400, 300, out)?;
            // The mirror image doubles what a few photos offer.
            photo_negatives(&mut detector, &imageops::flip_horizontal(&gray), &mut rng, 200, 100, out)?;
            list.push(path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
        }
    }
    if train_photos.is_empty() {
        bail!("no face-free photos found under {:?}", request.negatives);
    }
    let summary = json!({
        "train": { "faces": train.count(true), "not_faces": train.count(false), "photos": train_photos },
        "validation": {
            "faces": val.count(true), "scene_faces": scene_val_faces, "not_faces": val.count(false), "photos": val_photos
        },
    });
    tracing::info!(%summary, "verifier data");
    Ok((train.into_set(), val.into_set(), summary))
}

/// Trains the verifier, chooses its threshold on validation, exports the
/// weights and card.
pub fn run_train(request: &VerifierTrainRequest) -> Result<ModelCard> {
    let (train, val, summary) = build(request)?;
    let task = ClassifierTask {
        name: "face-verifier",
        classes: &VERIFIER_CLASSES,
        architecture: architecture(),
        init_from: None,
    };
    let state = train_face_classifier(&task, &train, &val, request.options.clone(), &request.run_dir, request.resume)?;
    let best = request.run_dir.join("best.safetensors");
    export(&best, &state, &val, summary, request)
}

/// The probability of "face" for every crop of `set`.
pub fn face_probabilities(net: &FaceNet, set: &FaceSet) -> Vec<f32> {
    let proba = predict_set(net, set).select(1, 1).to_kind(Kind::Float);
    Vec::<f32>::try_from(proba).unwrap_or_default()
}

/// The threshold that keeps `keep` of `faces` (their face probabilities).
pub fn threshold_keeping(faces: &[f32], keep: f64) -> f32 {
    let mut sorted = faces.to_vec();
    sorted.sort_by(f32::total_cmp);
    let index = ((1.0 - keep) * sorted.len() as f64).floor() as usize;
    sorted.get(index.min(sorted.len().saturating_sub(1))).copied().unwrap_or(0.5)
}

fn export(
    best: &Path,
    state: &RunState,
    val: &FaceSet,
    summary: serde_json::Value,
    request: &VerifierTrainRequest,
) -> Result<ModelCard> {
    let mut vs = nn::VarStore::new(tch::Device::Cpu);
    let net = FaceNet::new(&vs.root(), &state.architecture);
    export_weights(best, &request.export, &mut vs)?;
    let labels = Vec::<i64>::try_from(&val.labels)?;
    let p = face_probabilities(&net, val);
    // FER2013's validation faces come first; the threshold is set on the
    // cascade's boxes of scene faces, the framing serving sees.
    let scene_faces: Vec<f32> =
        p.iter().zip(&labels).skip(FER_VALIDATION_FACES).filter(|(_, &l)| l == 1).map(|(p, _)| *p).collect();
    let threshold = threshold_keeping(&scene_faces, 0.995).min(0.5);
    let rate = |face: i64| {
        let picked: Vec<f32> = p.iter().zip(&labels).filter(|(_, &l)| l == face).map(|(p, _)| *p).collect();
        picked.iter().filter(|&&q| q >= threshold).count() as f64 / picked.len().max(1) as f64
    };
    let o = &state.options;
    let card = ModelCard {
        name: "face_verifier".into(),
        description: "Small residual CNN telling a face from a phantom among the Haar cascade's candidates, on the same \
                      48x48 grey crop the emotion network reads; a candidate is kept when its face probability \
                      (averaged with the mirror image's) reaches the card's threshold."
            .into(),
        classes: VERIFIER_CLASSES.iter().map(|s| s.to_string()).collect(),
        input: InputSpec::grey_face(
            state.input_mean,
            state.input_std,
            "(grey level 0..255 - mean) / std over the training crops, also stored in the weights",
        ),
        architecture: state.architecture.clone(),
        params: parameter_count(&vs),
        trained_on: format!(
            "faces: 12,000 FER2013 Training faces and the cascade's raw windows on UTKFace train-part faces pasted in 800 \
             synthetic scenes; not faces: raw cascade windows (no neighbour grouping) and random squares of face-free \
             photos and their mirror images, and raw windows of the scenes away from the faces; validation: FER2013 \
             PublicTest faces, 100 scenes of UTKFace validation-part faces, and held-out photos. Best of {} epochs \
             (epoch {}); SGD nesterov lr {} cosine, batch {}, class weights (mean/count)^{}, the face augmentation",
            state.epochs_done, state.best_epoch, o.lr, o.batch_size, o.class_weight_power
        ),
        metrics: json!({
            "validation_accuracy": state.best_val_accuracy,
            "threshold": round4(f64::from(threshold)),
            "threshold_rule": "keeps 99.5% of the validation scenes' face windows (at most 0.5)",
            "validation_faces_kept": round4(rate(1)),
            "validation_not_faces_kept": round4(rate(0)),
            "data": summary,
        }),
        calibration: None,
        mixed: None,
        train_command: format!(
            "emotion-ai train face-verifier --fer2013 {} --utkface {} {} --epochs {}",
            request.fer2013.display(),
            request.utkface.display(),
            request.negatives.iter().map(|d| format!("--negatives {}", d.display())).collect::<Vec<_>>().join(" "),
            o.epochs
        ),
        eval_command: "cargo run --release --example detect_sweep -- --utkface ../shared/datasets/utkface --photos DIR"
            .into(),
    };
    card.save(&card_path(&request.export))?;
    Ok(card)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threshold_keeps_the_asked_share() {
        let faces: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        let t = threshold_keeping(&faces, 0.995);
        let kept = faces.iter().filter(|&&p| p >= t).count();
        assert_eq!(kept, 995);
        assert_eq!(threshold_keeping(&[], 0.9), 0.5);
    }

    #[test]
    fn race_comes_from_the_third_field() {
        assert_eq!(race_of(Path::new("x/26_1_2_20170116.jpg.chip.jpg")), Some(2));
        assert_eq!(race_of(Path::new("61_1_20170109142408075.jpg.chip.jpg")), None);
    }

    #[test]
    fn pasted_faces_match_boxes_near_their_centre() {
        let face = PastedFace { x: 100, y: 100, size: 100, race: 0 };
        assert!(face.matches(&FaceBox { x: 115, y: 120, width: 75, height: 75 }));
        assert!(!face.matches(&FaceBox { x: 160, y: 160, width: 75, height: 75 }), "off centre");
        assert!(!face.matches(&FaceBox { x: 140, y: 140, width: 20, height: 20 }), "too small");
        assert!(face.touches(&FaceBox { x: 190, y: 190, width: 30, height: 30 }));
        assert!(!face.touches(&FaceBox { x: 200, y: 0, width: 30, height: 30 }));
    }
}
