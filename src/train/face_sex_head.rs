//! The `train face-sex-head` command: a logistic regression on the face
//! embedder's descriptor ([`crate::model::face_embedder`]) of UTKFace's
//! training faces, cropped as the server crops them.
//!
//! The served sex of a face is the face sex network's, moved `head_weight`
//! of the way to this head's ([`blend_sex`]). The L2 penalty is chosen by
//! the validation part's adults as served (the blend); the test part is
//! left to `eval face-sex`, which measures the blend.

use std::path::PathBuf;

use anyhow::{bail, Result};
use serde_json::json;
use tch::{Device, Kind, Tensor};

use super::face_sex::{load, ADULT_AGE, SPLIT_SEED};
use super::logistic::{fit_logistic, LogisticFit};
use super::metrics::round4;
use super::utkface::{FaceFinder, SexSet};
use crate::detect::CropSpec;
use crate::model::face_embedder::{
    blend_sex, FaceEmbedder, FaceSexHeadCard, DESCRIPTOR_SIZE, EMBEDDER_INPUT, MIN_INPUT,
};
use crate::model::voice::SEXES;
use crate::model::{card_path, LoadedFaceModel, LogisticHead};

/// L2 penalties tried (on the mean loss), strongest first; the strongest of
/// the best on the validation adults is kept.
pub const PENALTIES: [f64; 6] = [0.3, 0.1, 0.03, 0.01, 0.003, 0.001];

/// What `train face-sex-head` needs.
pub struct FaceSexHeadRequest {
    /// UTKFace (`crop_part1/` or any folder of its `[age]_[sex]_...jpg` files).
    pub data: PathBuf,
    /// How the faces are found (the server's detector and verifier).
    pub finder: FaceFinder,
    /// The face sex network the head is blended with (its card says its crop).
    pub network: PathBuf,
    /// The face embedder's TensorFlow.js manifest.
    pub embedder: PathBuf,
    /// Context around the detected box of the embedder's crop.
    pub margin: f64,
    /// Share of the head in the served sex.
    pub head_weight: f32,
    /// Describe each face with its mirror image too (two embedder passes).
    pub mirror: bool,
    /// Side of the embedder's square crop ([`EMBEDDER_INPUT`], the
    /// network's own, or smaller for less work).
    pub input_size: u32,
    /// Whether the face sex network reads the face's mirror image too when
    /// blended with the head.
    pub network_mirror: bool,
    /// Youngest age whose train-part faces fit the head (0: all ages).
    pub min_age: u32,
    /// Where the head's weights go (the card beside them).
    pub export: PathBuf,
}

/// Descriptors of every face of a part (`[N, 128]`), with `mirror` face and
/// mirror image averaged.
pub fn describe_set(embedder: &FaceEmbedder, set: &SexSet, mirror: bool) -> Tensor {
    let n = set.faces.images.size()[0];
    let parts: Vec<Tensor> = (0..n)
        .step_by(64)
        .map(|start| embedder.describe(&set.faces.images.narrow(0, start, (n - start).min(64)), mirror))
        .collect();
    if parts.is_empty() {
        return Tensor::zeros([0, DESCRIPTOR_SIZE], (Kind::Float, Device::Cpu));
    }
    tch::no_grad(|| Tensor::cat(&parts, 0))
}

/// Labels as 0/1 floats (1: male) and weights giving each sex half the total.
fn labels_and_weights(set: &SexSet) -> Result<(Vec<f32>, Vec<f32>)> {
    let male = SEXES.iter().position(|s| *s == "male").unwrap_or(1) as i64;
    let y: Vec<f32> =
        Vec::<i64>::try_from(&set.faces.labels)?.iter().map(|&l| f32::from(u8::from(l == male))).collect();
    let males = y.iter().filter(|&&v| v > 0.5).count() as f32;
    let females = y.len() as f32 - males;
    if males == 0.0 || females == 0.0 {
        bail!("the training part needs faces of both sexes");
    }
    let weights = y.iter().map(|&v| if v > 0.5 { 0.5 / males } else { 0.5 / females }).collect();
    Ok((y, weights))
}

/// Share of `indices` whose served male probability (`male`) is on the
/// side of their label.
fn accuracy_of(male: &[f32], y: &[f32], indices: &[i64]) -> f64 {
    let right = indices.iter().filter(|&&i| (male[i as usize] > 0.5) == (y[i as usize] > 0.5)).count();
    right as f64 / indices.len().max(1) as f64
}

/// Fits the head on the train part, chooses the penalty on the validation
/// adults as served, writes the weights and card.
pub fn run_train(request: &FaceSexHeadRequest) -> Result<FaceSexHeadCard> {
    if !(0.0..=1.0).contains(&request.margin) {
        bail!("--margin must be between 0 and 1 (a fraction of the face box's side; got {})", request.margin);
    }
    if !(0.0..=1.0).contains(&request.head_weight) {
        bail!("--head-weight must be between 0 and 1 (got {})", request.head_weight);
    }
    let network = LoadedFaceModel::load(&request.network)?;
    let embedder = FaceEmbedder::load(&request.embedder)?;
    let [_, validation_net, _] = load(&request.data, &request.finder, network.card.input.crop())?;
    if !(MIN_INPUT..=EMBEDDER_INPUT as u32).contains(&request.input_size) {
        bail!("--input-size must be between {MIN_INPUT} and {EMBEDDER_INPUT} (got {})", request.input_size);
    }
    let spec = CropSpec { size: request.input_size, margin: request.margin };
    let [train, validation, _] = load(&request.data, &request.finder, spec)?;
    let train = train.subset(&train.indices_aged_at_least(request.min_age));
    let started = std::time::Instant::now();
    let train_x = describe_set(&embedder, &train, request.mirror);
    let validation_x = describe_set(&embedder, &validation, request.mirror);
    tracing::info!(
        faces = train.ages.len() + validation.ages.len(),
        seconds = started.elapsed().as_secs(),
        "faces described"
    );

    let (y, weights) = labels_and_weights(&train)?;
    let (validation_y, _) = labels_and_weights(&validation)?;
    let (network_p, _) = super::distributions_with(&network.frozen, &validation_net.faces, request.network_mirror);
    let adults = validation.adult_indices();
    let network_alone: Vec<f32> = network_p.iter().map(|p| p[1]).collect();
    let mut best: Option<(f64, f64, LogisticFit)> = None;
    let mut by_penalty = serde_json::Map::new();
    for penalty in PENALTIES {
        let fit = fit_logistic(&train_x, &y, &weights, penalty)?;
        let head = Vec::<f32>::try_from(tch::no_grad(|| fit.male_probability(&validation_x)))?;
        let served: Vec<f32> = blend_rows(&network_p, &head, request.head_weight).iter().map(|p| p[1]).collect();
        let (served_acc, head_acc) =
            (accuracy_of(&served, &validation_y, &adults), accuracy_of(&head, &validation_y, &adults));
        tracing::info!(penalty, served = served_acc, head = head_acc, "validation adults");
        by_penalty.insert(penalty.to_string(), json!({ "served": round4(served_acc), "head_alone": round4(head_acc) }));
        if best.as_ref().is_none_or(|(b, _, _)| served_acc > *b) {
            best = Some((served_acc, penalty, fit));
        }
    }
    let Some((served_acc, penalty, fit)) = best else { bail!("no penalty to try") };

    let vs = tch::nn::VarStore::new(Device::Cpu);
    let mut head = LogisticHead::new(&vs.root(), DESCRIPTOR_SIZE);
    fit.write_to(&mut head);
    if let Some(dir) = request.export.parent() {
        std::fs::create_dir_all(dir)?;
    }
    vs.save(&request.export)?;
    let side = request.input_size;
    let card = FaceSexHeadCard {
        name: "face_sex_head".into(),
        description: format!(
            "Logistic regression on the standardised {DESCRIPTOR_SIZE}-number descriptor of dlib's face recognition ResNet ({}), read from a {side}x{side} grey crop given as three equal channels. The served sex is the face sex network's ({}) moved head_weight of the way to this head's; the served figures on the test part are in face_sex.json",
            if request.mirror { "the mean of the face's and its mirror image's" } else { "of the face alone, no mirror image" },
            if request.network_mirror { "face and mirror image averaged" } else { "of the face alone, no mirror image" }
        ),
        classes: SEXES.iter().map(|s| s.to_string()).collect(),
        embedder: "dlib_face_recognition_resnet_model_v1 (public domain) as npm's @vladmandic/face-api 1.7.15 ships it (MIT), installed by scripts/setup.sh".into(),
        margin: request.margin,
        head_weight: request.head_weight,
        mirror: request.mirror,
        input_size: request.input_size,
        network_mirror: request.network_mirror,
        trained_on: format!(
            "the UTKFace train part ({} faces, {}, split seed {SPLIT_SEED}), cropped by {}; the two sexes weighted alike; L2 penalty {penalty} (of {PENALTIES:?}, by the validation part's adults ({ADULT_AGE}+) as served)",
            train.ages.len(),
            if request.min_age == 0 { "all ages".to_string() } else { format!("aged {} and over", request.min_age) },
            request.finder.describe()
        ),
        train_command: format!(
            "emotion-ai train face-sex-head --data {} {} --margin {} --head-weight {} --mirror {} --network-mirror {} --input-size {} --min-age {}",
            request.data.display(),
            request.finder.options(),
            request.margin,
            request.head_weight,
            request.mirror,
            request.network_mirror,
            request.input_size,
            request.min_age
        ),
        metrics: json!({
            "penalty": penalty,
            "validation_adults": adults.len(),
            "validation_adult_accuracy_served": round4(served_acc),
            "validation_adult_accuracy_network_alone": round4(accuracy_of(&network_alone, &validation_y, &adults)),
            "validation_adult_accuracy_by_penalty": by_penalty,
        }),
    };
    crate::model::save_card(&card, &card_path(&request.export))?;
    Ok(card)
}

/// The served `[female, male]` of every face of a part: the network's
/// (`network_p`), blended with the head's on its own crops of the same faces
/// (`head_faces`).
pub fn served_probabilities(
    network_p: &[Vec<f32>],
    head_faces: &SexSet,
    head: &crate::model::face_embedder::FaceSexHeadModel,
) -> Result<Vec<Vec<f32>>> {
    let x = describe_set(&head.embedder, head_faces, head.card.mirror);
    let male = Vec::<f32>::try_from(tch::no_grad(|| head.head.forward(&x).sigmoid()))?;
    if male.len() != network_p.len() {
        bail!("the head's faces ({}) and the network's ({}) differ", male.len(), network_p.len());
    }
    Ok(blend_rows(network_p, &male, head.card.head_weight).iter().map(|p| p.to_vec()).collect())
}

/// Each face's served `[female, male]`: its network row blended with its
/// head probability of male ([`blend_sex`]).
fn blend_rows(network_p: &[Vec<f32>], head_male: &[f32], head_weight: f32) -> Vec<[f32; 2]> {
    network_p.iter().zip(head_male).map(|(n, &m)| blend_sex([n[0], n[1]], m, head_weight)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_counts_the_side_of_one_half() {
        let male = [0.9, 0.2, 0.6, 0.4];
        let y = [1.0, 0.0, 0.0, 1.0];
        assert_eq!(accuracy_of(&male, &y, &[0, 1]), 1.0);
        assert_eq!(accuracy_of(&male, &y, &[0, 1, 2, 3]), 0.5);
    }

    #[test]
    fn the_served_sex_moves_head_weight_of_the_way() {
        assert_eq!(blend_sex([0.8, 0.2], 0.6, 0.5), [0.6, 0.4]);
        assert_eq!(blend_sex([0.8, 0.2], 0.6, 0.0), [0.8, 0.2]);
        let head_alone = blend_sex([0.8, 0.2], 0.6, 1.0);
        assert!((head_alone[1] - 0.6).abs() < 1e-6);
    }
}
