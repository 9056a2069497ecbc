//! The face verifier: a small network that tells a face from a phantom among
//! the Haar cascade's candidates (trained by `train face-verifier`,
//! `crate::train::face_verifier`).

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use tch::{Kind, Tensor};

use super::{FaceClassifier, FaceNetConfig, LoadedFaceModel, ModelCard, FACE_SIZE};
use crate::detect::{crop_face, suppress_overlaps, DetectorChoice, FaceBox, DUPLICATE_IOU};
use image::GrayImage;

/// Candidates checked at once.
const VERIFY_BATCH: usize = 64;

/// The verifier's classes; serving reads the probability of the second.
pub const VERIFIER_CLASSES: [&str; 2] = ["not_face", "face"];

/// The verifier's shape: the face networks' stages, narrower (about 100
/// thousand parameters, well under a millisecond a candidate).
pub fn architecture() -> FaceNetConfig {
    FaceNetConfig { channels: vec![16, 32, 64], hidden: 64, classes: 2, dropout: 0.2, input_size: FACE_SIZE }
}

/// A loaded verifier and its threshold.
pub struct FaceVerifier {
    model: LoadedFaceModel,
    threshold: f32,
}

impl FaceVerifier {
    /// Loads the weights and the threshold from the card beside them.
    pub fn load(weights: &Path) -> Result<Self> {
        let model = LoadedFaceModel::load(weights)?;
        if model.card.classes != VERIFIER_CLASSES {
            bail!("{} is not a face verifier (classes {:?})", weights.display(), model.card.classes);
        }
        let threshold = model.card.metrics["threshold"]
            .as_f64()
            .ok_or_else(|| anyhow!("{} has no threshold in its card", weights.display()))?
            as f32;
        Ok(Self { model, threshold })
    }

    /// The face probability of each `[N, 1, 48, 48]` crop.
    pub fn face_probabilities(&self, crops: &Tensor) -> Result<Vec<f32>> {
        self.face_probabilities_with(crops, true)
    }

    /// [`Self::face_probabilities`], averaged with the mirror images' only
    /// when `mirror`.
    fn face_probabilities_with(&self, crops: &Tensor, mirror: bool) -> Result<Vec<f32>> {
        if crops.size()[0] == 0 {
            return Ok(Vec::new());
        }
        let p = self.model.frozen.predict_proba_with(&crops.to_kind(Kind::Float), mirror).select(1, 1).contiguous();
        Ok(Vec::<f32>::try_from(p)?)
    }

    /// The face probability of each of `crops` (48x48 grey, row-major),
    /// computed in batches of bounded size.
    pub fn scores(&self, crops: &[Vec<u8>]) -> Result<Vec<f32>> {
        let mut scores = Vec::with_capacity(crops.len());
        for part in crops.chunks(VERIFY_BATCH) {
            scores.extend(self.probabilities_of(part, true)?);
        }
        Ok(scores)
    }

    /// [`Self::scores`] wherever it could reach `threshold`; elsewhere an
    /// upper bound of it that is below `threshold`. A score is the mean of
    /// the crop's and its mirror image's face probabilities, so a crop whose
    /// own probability is under `2 threshold - 1` cannot reach it whatever
    /// its mirror image gives: its mirror pass is skipped (serving asks only
    /// whether each candidate reaches the threshold, and most of CenterFace's
    /// candidates are phantoms far below it: three of the four on the
    /// one-face benchmark portrait).
    pub fn scores_against(&self, crops: &[Vec<u8>], threshold: f32) -> Result<Vec<f32>> {
        // With room for rounding: the mean is then surely under the threshold.
        let hopeless = |p: f32| p < 2.0 * threshold - 1.0 - 1e-5;
        let mut scores = Vec::with_capacity(crops.len());
        for part in crops.chunks(VERIFY_BATCH) {
            let alone = self.probabilities_of(part, false)?;
            let open: Vec<&Vec<u8>> =
                part.iter().zip(&alone).filter(|(_, &p)| !hopeless(p)).map(|(crop, _)| crop).collect();
            let mut judged = self.probabilities_of(&open, true)?.into_iter();
            for p in alone {
                scores.push(if hopeless(p) { (p + 1.0) / 2.0 } else { judged.next().unwrap_or(0.0) });
            }
        }
        Ok(scores)
    }

    /// The face probability of each crop of `crops` (48x48 grey, at most a
    /// batch), with or without its mirror image.
    fn probabilities_of(&self, crops: &[impl AsRef<[u8]>], mirror: bool) -> Result<Vec<f32>> {
        let pixels: Vec<u8> = crops.iter().flat_map(|c| c.as_ref().iter().copied()).collect();
        let batch = Tensor::from_slice(&pixels).view([crops.len() as i64, 1, FACE_SIZE, FACE_SIZE]);
        self.face_probabilities_with(&batch, mirror)
    }

    /// Which of `crops` are faces: at least the threshold.
    pub fn faces(&self, crops: &[Vec<u8>]) -> Result<Vec<bool>> {
        Ok(self.scores(crops)?.into_iter().map(|p| p >= self.threshold).collect())
    }

    /// Which candidate `boxes` (with their `crops`) to keep as faces: those
    /// at least the threshold, less any that overlaps a more face-like kept
    /// one by more than [`DUPLICATE_IOU`]: two boxes on one face (one on its
    /// upper half, say) are one face, framed by the box the verifier likes
    /// best.
    pub fn select(&self, boxes: &[FaceBox], crops: &[Vec<u8>]) -> Result<Vec<bool>> {
        self.select_from(boxes, crops, self.threshold)
    }

    /// [`Self::select`] from another threshold than this verifier's (each
    /// detector's candidates have their own: `centerface::VERIFIER_THRESHOLD`).
    pub fn select_from(&self, boxes: &[FaceBox], crops: &[Vec<u8>], threshold: f32) -> Result<Vec<bool>> {
        Ok(keep_mask(boxes, &self.scores(crops)?, threshold))
    }

    /// The boxes of `boxes`, found in `gray` by `detector`, that
    /// [`Self::select_from`] keeps at that detector's threshold (the card's
    /// where it has none of its own), each with its 48x48 crop; order is kept.
    pub fn keep_faces(
        &self,
        gray: &GrayImage,
        boxes: Vec<FaceBox>,
        detector: &DetectorChoice,
    ) -> Result<(Vec<FaceBox>, Vec<Vec<u8>>)> {
        let crops: Vec<Vec<u8>> = boxes.iter().map(|&b| crop_face(gray, b).into_raw()).collect();
        let threshold = self.threshold_for(detector);
        let scores = self.scores_against(&crops, threshold)?;
        Ok(Self::keep_scored(boxes, crops, &scores, threshold))
    }

    /// The threshold `detector`'s candidates are judged at: its own, or the
    /// card's.
    pub fn threshold_for(&self, detector: &DetectorChoice) -> f32 {
        detector.verifier_threshold().unwrap_or(self.threshold)
    }

    /// [`Self::keep_faces`] once the candidates are scored ([`Self::scores`],
    /// which callers may split between threads): those at least `threshold`,
    /// one box a face.
    pub fn keep_scored(
        boxes: Vec<FaceBox>,
        crops: Vec<Vec<u8>>,
        scores: &[f32],
        threshold: f32,
    ) -> (Vec<FaceBox>, Vec<Vec<u8>>) {
        let keep = keep_mask(&boxes, scores, threshold);
        boxes.into_iter().zip(crops).zip(keep).filter(|(_, k)| *k).map(|(pair, _)| pair).unzip()
    }

    /// The same verifier keeping candidates from `threshold` on (for
    /// comparing thresholds; serving uses the card's).
    pub fn with_threshold(mut self, threshold: f32) -> Self {
        self.threshold = threshold;
        self
    }

    /// The probability at which a candidate is kept.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// The card.
    pub fn card(&self) -> &ModelCard {
        &self.model.card
    }
}

/// Which of `boxes` (scored `scores`) are kept: at least `threshold`, one box
/// a face ([`FaceVerifier::select`]).
fn keep_mask(boxes: &[FaceBox], scores: &[f32], threshold: f32) -> Vec<bool> {
    let mut keep: Vec<bool> = scores.iter().map(|&p| p >= threshold).collect();
    keep.resize(boxes.len(), false);
    suppress_overlaps(boxes, scores, &mut keep, DUPLICATE_IOU);
    keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{card_path, FaceNet, InputSpec, Normalisation};
    use tch::{nn, Device};

    /// Saves a fresh verifier-shaped network with a card holding `metrics`
    /// and `classes`; returns the weights' path.
    fn save(dir: &Path, classes: &[&str], metrics: serde_json::Value) -> std::path::PathBuf {
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = FaceNet::new(&vs.root(), &architecture());
        let weights = dir.join("face_verifier.safetensors");
        vs.save(&weights).unwrap();
        let card = ModelCard {
            name: "face_verifier".into(),
            description: String::new(),
            classes: classes.iter().map(|c| c.to_string()).collect(),
            input: InputSpec {
                size: [FACE_SIZE, FACE_SIZE],
                color: "grayscale".into(),
                normalisation: Normalisation { mean: 128.0, std: 64.0, note: String::new() },
                margin: 0.0,
            },
            architecture: architecture(),
            params: 0,
            trained_on: String::new(),
            metrics,
            calibration: None,
            mixed: None,
            train_command: String::new(),
            eval_command: String::new(),
        };
        card.save(&card_path(&weights)).unwrap();
        weights
    }

    #[test]
    fn loads_with_its_threshold_and_answers_one_probability_a_crop() {
        let dir = tempfile::tempdir().unwrap();
        let weights = save(dir.path(), &VERIFIER_CLASSES, serde_json::json!({ "threshold": 0.25 }));
        let verifier = FaceVerifier::load(&weights).unwrap();
        assert_eq!(verifier.threshold(), 0.25);
        let crops: Vec<Vec<u8>> = (0..70u8).map(|i| vec![i; (FACE_SIZE * FACE_SIZE) as usize]).collect();
        let p = verifier
            .face_probabilities(&Tensor::from_slice(&crops.concat()).view([70, 1, FACE_SIZE, FACE_SIZE]))
            .unwrap();
        assert_eq!(p.len(), 70);
        assert!(p.iter().all(|p| (0.0..=1.0).contains(p)));
        // More crops than one batch: every one gets an answer, in order.
        let keep = verifier.faces(&crops).unwrap();
        assert_eq!(keep, p.iter().map(|&p| p >= 0.25).collect::<Vec<_>>());
        assert!(verifier.faces(&[]).unwrap().is_empty());
    }

    #[test]
    fn scores_against_a_threshold_decide_as_the_full_scores_and_skip_only_hopeless_mirrors() {
        let dir = tempfile::tempdir().unwrap();
        let weights = save(dir.path(), &VERIFIER_CLASSES, serde_json::json!({ "threshold": 0.5 }));
        let verifier = FaceVerifier::load(&weights).unwrap();
        let side = FACE_SIZE as usize;
        // Lopsided gradients and stripes: a crop and its mirror image differ.
        let crops: Vec<Vec<u8>> = (0..40usize)
            .map(|i| (0..side * side).map(|j| ((j % side) * (i + 1) * 3 + (j / side) * i * 5 + i * 17) as u8).collect())
            .collect();
        let full = verifier.scores(&crops).unwrap();
        let alone = verifier.probabilities_of(&crops, false).unwrap();
        // A threshold that leaves some crops hopeless and some open.
        let mut sorted = alone.clone();
        sorted.sort_by(f32::total_cmp);
        let threshold = (sorted[sorted.len() / 2] + 1.0) / 2.0;
        let against = verifier.scores_against(&crops, threshold).unwrap();
        let (mut skipped, mut judged) = (0, 0);
        for ((&f, &a), &p) in full.iter().zip(&against).zip(&alone) {
            assert_eq!(f >= threshold, a >= threshold, "full {f}, against {a}, threshold {threshold}");
            if p < 2.0 * threshold - 1.0 - 1e-5 {
                skipped += 1;
                assert!(a < threshold && a >= f - 1e-6, "a bound under the threshold: {a} for {f}");
            } else {
                judged += 1;
                assert!((a - f).abs() < 1e-5, "judged in full: {a} against {f}");
            }
        }
        assert!(skipped > 0 && judged > 0, "{skipped} skipped, {judged} judged");
        assert!(verifier.scores_against(&[], 0.9).unwrap().is_empty());
    }

    #[test]
    fn refuses_cards_of_other_models_or_without_a_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let weights = save(dir.path(), &["female", "male"], serde_json::json!({ "threshold": 0.5 }));
        assert!(FaceVerifier::load(&weights).err().unwrap().to_string().contains("not a face verifier"));
        let weights = save(dir.path(), &VERIFIER_CLASSES, serde_json::json!({}));
        assert!(FaceVerifier::load(&weights).err().unwrap().to_string().contains("threshold"));
    }
}
