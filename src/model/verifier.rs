//! The face verifier: a small network that tells a face from a phantom among
//! the Haar cascade's candidates (trained by `train face-verifier`,
//! `crate::train::face_verifier`).

use std::path::Path;

use anyhow::{anyhow, bail, Result};
use tch::{Kind, Tensor};

use super::{FaceNetConfig, LoadedFaceModel, ModelCard, FACE_SIZE};
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
        if crops.size()[0] == 0 {
            return Ok(Vec::new());
        }
        let p = self.model.net.predict_proba(&crops.to_kind(Kind::Float)).select(1, 1).contiguous();
        Ok(Vec::<f32>::try_from(p)?)
    }

    /// The face probability of each of `crops` (48x48 grey, row-major),
    /// computed in batches of bounded size.
    pub fn scores(&self, crops: &[Vec<u8>]) -> Result<Vec<f32>> {
        let mut scores = Vec::with_capacity(crops.len());
        for part in crops.chunks(VERIFY_BATCH) {
            let pixels: Vec<u8> = part.concat();
            let batch = Tensor::from_slice(&pixels).view([part.len() as i64, 1, FACE_SIZE, FACE_SIZE]);
            scores.extend(self.face_probabilities(&batch)?);
        }
        Ok(scores)
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
        let scores = self.scores(&crops)?;
        Ok(Self::keep_scored(boxes, crops, &scores, self.threshold_for(detector)))
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
    fn refuses_cards_of_other_models_or_without_a_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let weights = save(dir.path(), &["female", "male"], serde_json::json!({ "threshold": 0.5 }));
        assert!(FaceVerifier::load(&weights).err().unwrap().to_string().contains("not a face verifier"));
        let weights = save(dir.path(), &VERIFIER_CLASSES, serde_json::json!({}));
        assert!(FaceVerifier::load(&weights).err().unwrap().to_string().contains("threshold"));
    }
}
