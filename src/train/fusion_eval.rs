//! The `eval fusion` command: what late fusion of face and voice does.
//!
//! No dataset here pairs a face with the same person's voice. What can be
//! measured is fusion on *pseudo-pairs*: every held-out FER2013 face is paired
//! with clips of held-out RAVDESS actors drawn at random among those with the
//! same true emotion. That assumes face and voice err independently given
//! the emotion (the assumption the fusion rule rests on, see
//! [`crate::fusion`]), so the fused figures are an upper bound for real
//! paired recordings, whose errors are correlated. Each rule is scored on
//! the same pairs: accuracy, balanced accuracy, expected calibration error
//! and negative log-likelihood.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use super::fer2013::Split;
use super::metrics::{calibration, ConfusionMatrix, ECE_BINS};
use super::{face_emotion, voice_emotion};
use crate::fusion::{fuse, Evidence};
use crate::model::voice::VoiceModelCard;
use crate::model::{card_path, ModelCard, EMOTIONS};

/// Where the data and models are, and how to pair.
pub struct FusionEvalRequest {
    pub fer2013: PathBuf,
    pub ravdess: Vec<PathBuf>,
    pub face_weights: PathBuf,
    pub voice_weights: PathBuf,
    /// PublicTest faces and validation actors instead of the test splits.
    pub validation: bool,
    /// Clips drawn for every face.
    pub rounds: usize,
    pub seed: u64,
    pub out_dir: PathBuf,
}

/// How one rule did on the pseudo-pairs.
#[derive(Debug, Clone, Serialize)]
pub struct RuleScore {
    pub rule: String,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub ece: f64,
    pub nll: f64,
}

/// Everything `eval fusion` measured.
#[derive(Debug, Serialize)]
pub struct FusionEvalReport {
    pub faces: usize,
    pub clips: usize,
    pub pairs: usize,
    pub face_split: String,
    pub voice_split: String,
    pub face_temperature: f64,
    pub voice_temperature: f64,
    pub rules: Vec<RuleScore>,
    #[serde(skip)]
    pub json_path: PathBuf,
}

/// The rule the server uses, as named in the report.
pub const SERVED_RULE: &str = "fused: product of calibrated probabilities (served)";

/// Pairs, fuses and scores; writes `fusion_eval.json` into `out_dir`.
pub fn run_eval(request: &FusionEvalRequest) -> Result<FusionEvalReport> {
    let face_card = ModelCard::load(&card_path(&request.face_weights))?;
    let voice_card = VoiceModelCard::load(&card_path(&request.voice_weights))?;
    let temperature = |c: &Option<crate::fusion::Calibration>, name: &str| {
        c.as_ref().map(|c| c.temperature).with_context(|| {
            format!("the {name} card has no calibration: run `emotion-ai eval {name} --write-card` first")
        })
    };
    let face_temperature = temperature(&face_card.calibration, "face-emotion")?;
    let voice_temperature = temperature(&voice_card.calibration, "voice-emotion")?;

    let face_part = if request.validation { Split::PublicTest } else { Split::PrivateTest };
    let (faces, face_truth) = face_emotion::heldout_distributions(&request.fer2013, &request.face_weights, face_part)?;
    let (clips, clip_truth) =
        voice_emotion::heldout_distributions(&request.ravdess, &request.voice_weights, request.validation)?;
    let pairs = pseudo_pairs(&face_truth, &clip_truth, request.rounds, request.seed);
    if pairs.is_empty() {
        bail!("no face and clip share an emotion: nothing to pair");
    }
    let truth: Vec<usize> = pairs.iter().map(|&(f, _)| face_truth[f]).collect();

    type Rule<'a> = (&'a str, Box<dyn Fn(&[f32], &[f32]) -> Vec<f32> + 'a>);
    let product = |face: &[f32], voice: &[f32], tf: f64, tv: f64| {
        fuse(&[Evidence { probabilities: face, temperature: tf }, Evidence { probabilities: voice, temperature: tv }])
            .unwrap_or_else(|_| face.to_vec())
    };
    let rules: Vec<Rule> = vec![
        ("face alone", Box::new(|f, _| f.to_vec())),
        ("voice alone", Box::new(|_, v| v.to_vec())),
        ("fused: mean of probabilities", Box::new(|f, v| f.iter().zip(v).map(|(a, b)| (a + b) / 2.0).collect())),
        ("fused: product of raw probabilities", Box::new(move |f, v| product(f, v, 1.0, 1.0))),
        (SERVED_RULE, Box::new(move |f, v| product(f, v, face_temperature, voice_temperature))),
    ];
    let names: Vec<&str> = EMOTIONS.to_vec();
    let truth_i64: Vec<i64> = truth.iter().map(|&t| t as i64).collect();
    let scores = rules
        .iter()
        .map(|(name, rule)| {
            let fused: Vec<Vec<f32>> = pairs.iter().map(|&(f, c)| rule(&faces[f], &clips[c])).collect();
            let predicted: Vec<i64> = fused.iter().map(|p| argmax(p) as i64).collect();
            let matrix = ConfusionMatrix::new(&names, &truth_i64, &predicted);
            let calibration = calibration(&fused, &truth, ECE_BINS);
            RuleScore {
                rule: name.to_string(),
                accuracy: matrix.accuracy(),
                balanced_accuracy: matrix.balanced_accuracy(),
                ece: calibration.ece,
                nll: calibration.nll,
            }
        })
        .collect();

    let report = FusionEvalReport {
        faces: faces.len(),
        clips: clips.len(),
        pairs: pairs.len(),
        face_split: format!("FER2013 {face_part:?}"),
        voice_split: if request.validation {
            format!("RAVDESS actors {:?}", voice_emotion::VALIDATION_ACTORS)
        } else {
            format!("RAVDESS actors {:?}", voice_emotion::HELDOUT_ACTORS)
        },
        face_temperature,
        voice_temperature,
        rules: scores,
        json_path: request.out_dir.join("fusion_eval.json"),
    };
    std::fs::create_dir_all(&request.out_dir)?;
    std::fs::write(&report.json_path, serde_json::to_string_pretty(&report)? + "\n")?;
    Ok(report)
}

/// `(face, clip)` index pairs: for every face whose emotion some clip has,
/// `rounds` clips of that emotion drawn uniformly with replacement.
pub fn pseudo_pairs(face_truth: &[usize], clip_truth: &[usize], rounds: usize, seed: u64) -> Vec<(usize, usize)> {
    let classes = face_truth.iter().chain(clip_truth).max().map_or(0, |m| m + 1);
    let mut clips_of = vec![Vec::new(); classes];
    for (c, &t) in clip_truth.iter().enumerate() {
        clips_of[t].push(c);
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut pairs = Vec::with_capacity(face_truth.len() * rounds);
    for (f, &t) in face_truth.iter().enumerate() {
        let candidates = &clips_of[t];
        if candidates.is_empty() {
            continue;
        }
        for _ in 0..rounds {
            pairs.push((f, candidates[rng.random_range(0..candidates.len())]));
        }
    }
    pairs
}

fn argmax(values: &[f32]) -> usize {
    values.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_share_the_true_emotion_and_are_reproducible() {
        let faces = [0, 1, 2, 1, 0, 3];
        let clips = [1, 0, 1, 0, 2];
        let pairs = pseudo_pairs(&faces, &clips, 4, 7);
        // Face 5 (emotion 3) has no clip of its emotion and is left out.
        assert_eq!(pairs.len(), 5 * 4);
        assert!(pairs.iter().all(|&(f, c)| faces[f] == clips[c]));
        assert!(pairs.iter().all(|&(f, _)| f != 5));
        assert_eq!(pairs, pseudo_pairs(&faces, &clips, 4, 7));
        // Only clips of the face's own emotion are drawn.
        let of_face_1: Vec<usize> = pairs.iter().filter(|p| p.0 == 1).map(|p| p.1).collect();
        assert!(of_face_1.iter().all(|c| [0, 2].contains(c)));
    }
}
