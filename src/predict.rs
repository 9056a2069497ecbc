//! The whole image pipeline behind one call: decode, detect every face, crop,
//! run the emotion network on all faces as one batch.
//!
//! An [`Analyzer`] is built once at start-up (models and cascades loaded then)
//! and shared by every request and by the command line.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::Serialize;
use tch::Tensor;

use crate::decode::{decode_image, DecodedImage, ImageDecodeError, ImageLimits};
use crate::detect::{crop_face, DetectParams, DetectorPool, FaceBox};
use crate::model::{LoadedFaceModel, ModelCard, FACE_SIZE};

/// Where an [`Analyzer`] finds its models and how it bounds its inputs.
#[derive(Debug, Clone)]
pub struct AnalyzerConfig {
    /// Face emotion weights; the card is the `.json` beside them.
    pub face_emotion_model: PathBuf,
    /// Haar cascade XML.
    pub cascade: PathBuf,
    pub detect: DetectParams,
    pub image_limits: ImageLimits,
    /// Detectors to keep loaded: the number of concurrent analyses.
    pub workers: usize,
}

impl AnalyzerConfig {
    /// The shipped models under `models_dir` and Debian's default cascade.
    pub fn with_models_dir(models_dir: &Path) -> Self {
        Self {
            face_emotion_model: models_dir.join("face_emotion.safetensors"),
            cascade: PathBuf::from(crate::detect::DEFAULT_CASCADE),
            detect: DetectParams::default(),
            image_limits: ImageLimits::default(),
            workers: 2,
        }
    }
}

/// One class and its probability; lists of these keep the model's class order.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClassProbability {
    pub label: String,
    pub probability: f32,
}

/// A probability distribution over named classes, with its most likely class.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Distribution {
    /// The most probable class.
    pub label: String,
    /// Its probability.
    pub confidence: f32,
    /// Every class, in the model's order; the probabilities sum to 1.
    pub probabilities: Vec<ClassProbability>,
}

impl Distribution {
    /// Pairs `probabilities` with `classes`.
    pub fn new(classes: &[String], probabilities: &[f32]) -> Self {
        let probabilities: Vec<ClassProbability> = classes
            .iter()
            .zip(probabilities)
            .map(|(label, &probability)| ClassProbability { label: label.clone(), probability })
            .collect();
        let top = probabilities
            .iter()
            .max_by(|a, b| a.probability.total_cmp(&b.probability))
            .cloned()
            .unwrap_or(ClassProbability { label: String::new(), probability: 0.0 });
        Self { label: top.label, confidence: top.probability, probabilities }
    }
}

/// What the models see in one face.
#[derive(Debug, Clone, Serialize)]
pub struct FaceAnalysis {
    /// Where the face is, in the uploaded image's pixels.
    #[serde(rename = "box")]
    pub bbox: FaceBox,
    pub emotion: Distribution,
}

/// What the models see in one image: every detected face, largest first.
#[derive(Debug, Clone, Serialize)]
pub struct ImageAnalysis {
    pub width: u32,
    pub height: u32,
    pub faces: Vec<FaceAnalysis>,
}

/// Why an image could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error(transparent)]
    Decode(#[from] ImageDecodeError),
    #[error("no face was found in the image")]
    NoFace { width: u32, height: u32 },
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

/// Models and detectors, loaded once, shared by all requests.
pub struct Analyzer {
    /// libtorch tensors are `Send` but not `Sync`; a forward pass on a few
    /// faces takes about a millisecond, so one lock costs nothing measurable
    /// next to detection.
    face_emotion: Mutex<LoadedFaceModel>,
    face_emotion_card: ModelCard,
    detectors: DetectorPool,
    config: AnalyzerConfig,
}

impl Analyzer {
    /// Loads every model and cascade named in `config`; fails loudly if one is
    /// missing, so a server never starts half-equipped.
    pub fn load(config: AnalyzerConfig) -> Result<Self> {
        let face_emotion = LoadedFaceModel::load(&config.face_emotion_model)
            .with_context(|| format!("loading face emotion model {}", config.face_emotion_model.display()))?;
        let detectors = DetectorPool::new(&config.cascade, config.detect, config.workers)?;
        let face_emotion_card = face_emotion.card.clone();
        Ok(Self { face_emotion: Mutex::new(face_emotion), face_emotion_card, detectors, config })
    }

    /// The face emotion model's card (classes, input, measured accuracy).
    pub fn face_emotion_card(&self) -> &ModelCard {
        &self.face_emotion_card
    }

    /// The configuration the analyzer was loaded with.
    pub fn config(&self) -> &AnalyzerConfig {
        &self.config
    }

    /// Decodes and analyses an uploaded image. CPU-bound (tens of
    /// milliseconds): async callers run it on a blocking thread.
    pub fn analyze_image_bytes(&self, bytes: &[u8]) -> Result<ImageAnalysis, AnalyzeError> {
        let decoded = decode_image(bytes, self.config.image_limits)?;
        self.analyze_image(&decoded)
    }

    /// Analyses a decoded image; [`AnalyzeError::NoFace`] when nothing is found.
    pub fn analyze_image(&self, image: &DecodedImage) -> Result<ImageAnalysis, AnalyzeError> {
        let (width, height) = image.gray.dimensions();
        let boxes = self.detectors.detect(&image.gray)?;
        if boxes.is_empty() {
            return Err(AnalyzeError::NoFace { width, height });
        }
        let emotions = self.classify_faces(&image.gray, &boxes)?;
        let faces = boxes.into_iter().zip(emotions).map(|(bbox, emotion)| FaceAnalysis { bbox, emotion }).collect();
        Ok(ImageAnalysis { width, height, faces })
    }

    /// Emotion distributions for the given faces, in one network batch.
    fn classify_faces(&self, gray: &image::GrayImage, boxes: &[FaceBox]) -> Result<Vec<Distribution>> {
        let side = FACE_SIZE as usize;
        let mut pixels = Vec::with_capacity(boxes.len() * side * side);
        for &b in boxes {
            pixels.extend_from_slice(crop_face(gray, b).as_raw());
        }
        let batch = Tensor::from_slice(&pixels).view([boxes.len() as i64, 1, FACE_SIZE, FACE_SIZE]);
        let proba = {
            let model = self.face_emotion.lock().map_err(|_| anyhow::anyhow!("face emotion model lock poisoned"))?;
            model.net.predict_proba(&batch)
        };
        let classes = &self.face_emotion_card.classes;
        (0..boxes.len() as i64)
            .map(|i| {
                let row = Vec::<f32>::try_from(proba.get(i)).context("reading probabilities")?;
                Ok(Distribution::new(classes, &row))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distribution_picks_the_most_probable_class_in_order() {
        let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let d = Distribution::new(&classes, &[0.2, 0.5, 0.3]);
        assert_eq!(d.label, "b");
        assert_eq!(d.confidence, 0.5);
        let labels: Vec<&str> = d.probabilities.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["a", "b", "c"]);
    }
}
