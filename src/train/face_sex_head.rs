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

use super::face_sex::{load_each, recall_by_sex, ADULT_AGE, SPLIT_SEED};
use super::logistic::{fit_logistic, LogisticFit};
use super::metrics::{round4, ConfusionMatrix};
use super::utkface::{FaceFinder, SexSet};
use crate::detect::CropSpec;
use crate::model::face_embedder::{
    blend_sex, EmbedderTail, FaceEmbedder, FaceSexHeadCard, DESCRIPTOR_SIZE, EMBEDDER_INPUT, MIN_INPUT,
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
    /// Fine-tune the embedder's last this many residual blocks (and its
    /// final map) with the head (0: the embedder as installed, a logistic
    /// fit only); see [`TailTuning`].
    pub tune: TailTuning,
    /// Where the head's weights go (the card beside them).
    pub export: PathBuf,
}

/// Descriptors of every face of a part (`[N, 128]`), with `mirror` face and
/// mirror image averaged.
pub fn describe_set(embedder: &FaceEmbedder, set: &SexSet, mirror: bool) -> Tensor {
    describe_set_with(embedder, set, mirror, None)
}

/// [`describe_set`] through a fine-tuned tail, when one is given.
pub fn describe_set_with(embedder: &FaceEmbedder, set: &SexSet, mirror: bool, tail: Option<&EmbedderTail>) -> Tensor {
    if set.faces.images.size()[0] == 0 {
        return Tensor::zeros([0, DESCRIPTOR_SIZE], (Kind::Float, Device::Cpu));
    }
    in_batches(&set.faces.images, |faces| embedder.describe_with(faces, mirror, tail))
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
    if !(MIN_INPUT..=EMBEDDER_INPUT as u32).contains(&request.input_size) {
        bail!("--input-size must be between {MIN_INPUT} and {EMBEDDER_INPUT} (got {})", request.input_size);
    }
    let spec = CropSpec { size: request.input_size, margin: request.margin };
    // The network's crops and the head's, one search per image.
    let [[_, validation_net, _], [train, validation, _]] =
        <[[SexSet; 3]; 2]>::try_from(load_each(&request.data, &request.finder, &[network.card.input.crop(), spec])?)
            .map_err(|_| anyhow::anyhow!("two crops asked for"))?;
    let train = train.subset(&train.indices_aged_at_least(request.min_age));
    let (y, weights) = labels_and_weights(&train)?;
    let (validation_y, _) = labels_and_weights(&validation)?;
    let (network_p, _) = super::distributions_with(&network.frozen, &validation_net.faces, request.network_mirror);
    let adults = validation.adult_indices();
    let network_alone: Vec<f32> = network_p.iter().map(|p| p[1]).collect();
    if request.tune.blocks > 0 {
        let (vs, tail, head, tuning) = tune_tail(&embedder, &train, &request.tune)?;
        let x = describe_set_with(&embedder, &validation, request.mirror, Some(&tail));
        let head_male = Vec::<f32>::try_from(tch::no_grad(|| head.forward(&x).sigmoid()))?;
        let served: Vec<f32> = blend_rows(&network_p, &head_male, request.head_weight).iter().map(|p| p[1]).collect();
        let served_acc = accuracy_of(&served, &validation_y, &adults);
        let sex_of = |p: &[f32], i: i64| i64::from(p[i as usize] > 0.5);
        let truth: Vec<i64> = adults.iter().map(|&i| sex_of(&validation_y, i)).collect();
        let answered: Vec<i64> = adults.iter().map(|&i| sex_of(&served, i)).collect();
        let recall = recall_by_sex(&ConfusionMatrix::new(&SEXES, &truth, &answered));
        tracing::info!(
            served = served_acc,
            head = accuracy_of(&head_male, &validation_y, &adults),
            "validation adults"
        );
        let metrics = json!({
            "tuning": tuning,
            "validation_adults": adults.len(),
            "validation_adult_accuracy_served": round4(served_acc),
            "validation_adult_recall_served": recall,
            "validation_adult_accuracy_head_alone": round4(accuracy_of(&head_male, &validation_y, &adults)),
            "validation_adult_accuracy_network_alone": round4(accuracy_of(&network_alone, &validation_y, &adults)),
        });
        let trained_on = format!(
            "{}: the embedder's last {} residual blocks and final map fine-tuned with the head on nine tenths of it (face and mirror image; the two sexes weighted alike), from the installed embedder and a logistic fit on its descriptors (L2 penalty {TAIL_INIT_PENALTY}); the epoch chosen by the other tenth's log loss (head alone, all ages)",
            train_part(request, &train),
            request.tune.blocks,
        );
        return export_head(request, &vs, trained_on, metrics);
    }
    // The logistic fit on the embedder as installed.
    let started = std::time::Instant::now();
    let train_x = describe_set(&embedder, &train, request.mirror);
    let validation_x = describe_set(&embedder, &validation, request.mirror);
    tracing::info!(
        faces = train.ages.len() + validation.ages.len(),
        seconds = started.elapsed().as_secs(),
        "faces described"
    );
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
    let trained_on = format!(
        "{}; the two sexes weighted alike; L2 penalty {penalty} (of {PENALTIES:?}, by the validation part's adults ({ADULT_AGE}+) as served)",
        train_part(request, &train)
    );
    let metrics = json!({
        "penalty": penalty,
        "validation_adults": adults.len(),
        "validation_adult_accuracy_served": round4(served_acc),
        "validation_adult_accuracy_network_alone": round4(accuracy_of(&network_alone, &validation_y, &adults)),
        "validation_adult_accuracy_by_penalty": by_penalty,
    });
    export_head(request, &vs, trained_on, metrics)
}

/// The opening of the card's `trained_on`: which faces fitted the head and
/// how they were cropped.
fn train_part(request: &FaceSexHeadRequest, train: &SexSet) -> String {
    format!(
        "the UTKFace train part ({} faces, {}, split seed {SPLIT_SEED}), cropped by {}",
        train.ages.len(),
        if request.min_age == 0 { "all ages".to_string() } else { format!("aged {} and over", request.min_age) },
        request.finder.describe()
    )
}

/// Writes the head's weights (and its tuned tail's, if any) and its card.
fn export_head(
    request: &FaceSexHeadRequest,
    vs: &tch::nn::VarStore,
    trained_on: String,
    metrics: serde_json::Value,
) -> Result<FaceSexHeadCard> {
    if let Some(dir) = request.export.parent() {
        std::fs::create_dir_all(dir)?;
    }
    vs.save(&request.export)?;
    let side = request.input_size;
    let tuned = match request.tune.blocks {
        0 => String::new(),
        blocks => format!(", its last {blocks} residual blocks and final map fine-tuned with this head"),
    };
    let card = FaceSexHeadCard {
        name: "face_sex_head".into(),
        description: format!(
            "Logistic regression on the standardised {DESCRIPTOR_SIZE}-number descriptor of dlib's face recognition ResNet{tuned} ({}), read from a {side}x{side} grey crop given as three equal channels. The served sex is the face sex network's ({}) moved head_weight of the way to this head's; the served figures on the test part are in face_sex.json",
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
        tuned_blocks: request.tune.blocks,
        trained_on,
        train_command: format!(
            "emotion-ai train face-sex-head --data {} {} --margin {} --head-weight {} --mirror {} --network-mirror {} --input-size {} --min-age {}{}",
            request.data.display(),
            request.finder.options(),
            request.margin,
            request.head_weight,
            request.mirror,
            request.network_mirror,
            request.input_size,
            request.min_age,
            request.tune.options()
        ),
        metrics,
    };
    crate::model::save_card(&card, &card_path(&request.export))?;
    Ok(card)
}

/// L2 penalty of the logistic fit a tuned tail starts from (the penalty the
/// shipped head's validation adults chose, 2026-12-06).
pub const TAIL_INIT_PENALTY: f64 = 0.01;

/// How `train face-sex-head` fine-tunes the embedder's tail with the head.
///
/// The head on frozen descriptors stops near 95.5% on the validation adults
/// (models/README.md, face_sex_head); the embedder never learned sex. Its
/// last blocks and final map are trained on with the head, on the frozen
/// trunk's activations of nine tenths of the train part (face and mirror
/// image, computed once); the other tenth's log loss (the head alone, all
/// ages) chooses the epoch, epoch 0 (no tuning) included, so that the
/// validation part chooses nothing.
#[derive(Debug, Clone)]
pub struct TailTuning {
    /// Residual blocks tuned (0: none, a logistic fit only).
    pub blocks: usize,
    pub epochs: usize,
    /// Adam's peak learning rate (cosine decay over the epochs).
    pub lr: f64,
    pub seed: i64,
}

impl TailTuning {
    /// None: the logistic fit on the installed embedder.
    pub const NONE: Self = Self { blocks: 0, epochs: 8, lr: 3e-5, seed: 1 };

    /// The command-line options that give this tuning.
    pub fn options(&self) -> String {
        if self.blocks == 0 {
            return String::new();
        }
        format!(
            " --tune-blocks {} --tune-epochs {} --tune-lr {} --seed {}",
            self.blocks, self.epochs, self.lr, self.seed
        )
    }
}

/// Every `[N, ...]` row of `images` (`[N, 1, side, side]`) through `f` in
/// batches of 64, without gradients, joined (`images` holds at least one).
fn in_batches(images: &Tensor, f: impl Fn(&Tensor) -> Tensor) -> Tensor {
    let n = images.size()[0];
    let parts: Vec<Tensor> =
        (0..n).step_by(64).map(|start| tch::no_grad(|| f(&images.narrow(0, start, (n - start).min(64))))).collect();
    Tensor::cat(&parts, 0)
}

/// Weighted mean binary cross-entropy of male logits.
fn weighted_bce(logits: &Tensor, y: &Tensor, w: &Tensor) -> Tensor {
    logits.binary_cross_entropy_with_logits::<&Tensor>(y, Some(w), None, tch::Reduction::Sum) / w.sum(Kind::Float)
}

/// Fine-tunes the embedder's last `tuning.blocks` blocks with a logistic
/// head ([`TailTuning`]) on `train` (every tenth face, from the tenth,
/// chooses the epoch); returns the variables, the tail, the head and a
/// record of the epochs (`by_epoch`, `chosen_epoch`).
pub fn tune_tail(
    embedder: &FaceEmbedder,
    train: &SexSet,
    tuning: &TailTuning,
) -> Result<(tch::nn::VarStore, EmbedderTail, LogisticHead, serde_json::Value)> {
    use tch::nn::OptimizerConfig;
    let n = train.ages.len() as i64;
    // Every tenth face of the part (its order is the sorted file names)
    // chooses the epoch.
    let (held, fit): (Vec<i64>, Vec<i64>) = (0..n).partition(|i| i % 10 == 9);
    let (held, fit) = (train.subset(&held), train.subset(&fit));
    let blocks = tuning.blocks;
    let started = std::time::Instant::now();
    let fit_images = fit.faces.images.to_kind(Kind::Float);
    let fit_trunk =
        in_batches(&Tensor::cat(&[&fit_images, &fit_images.flip([3])], 0), |b| embedder.trunk_gray(b, blocks));
    let held_trunk = in_batches(&held.faces.images, |b| embedder.trunk_gray(b, blocks));
    tracing::info!(faces = fit.ages.len() + held.ages.len(), seconds = started.elapsed().as_secs(), "trunk computed");
    let (y_fit, w_fit) = labels_and_weights(&fit)?;
    let (y_held, w_held) = labels_and_weights(&held)?;
    let y_fit: Vec<f32> = y_fit.iter().chain(&y_fit).copied().collect();
    let w_fit: Vec<f32> = w_fit.iter().chain(&w_fit).copied().collect();

    let mut vs = tch::nn::VarStore::new(Device::Cpu);
    let mut head = LogisticHead::new(&vs.root(), DESCRIPTOR_SIZE);
    let mut tail = EmbedderTail::new(&vs.root(), blocks)?;
    embedder.copy_tail_into(&mut tail);
    let frozen = in_batches(&fit_trunk, |b| tail.forward(b));
    fit_logistic(&frozen, &y_fit, &w_fit, TAIL_INIT_PENALTY)?.write_to(&mut head);

    let (y_fit, w_fit) = (Tensor::from_slice(&y_fit), Tensor::from_slice(&w_fit));
    let (y_held_t, w_held_t) = (Tensor::from_slice(&y_held), Tensor::from_slice(&w_held));
    let held_adults = held.adult_indices();
    let measure = |tail: &EmbedderTail, head: &LogisticHead| -> Result<(f64, f64)> {
        let logits = in_batches(&held_trunk, |b| head.forward(&tail.forward(b)));
        let loss = tch::no_grad(|| weighted_bce(&logits, &y_held_t, &w_held_t)).double_value(&[]);
        let male = Vec::<f32>::try_from(logits.sigmoid())?;
        Ok((loss, accuracy_of(&male, &y_held, &held_adults)))
    };
    let snapshot = |vs: &tch::nn::VarStore| -> Vec<(String, Tensor)> {
        vs.variables().into_iter().map(|(name, t)| (name, t.detach().copy())).collect()
    };
    let (loss, adults) = measure(&tail, &head)?;
    tracing::info!(epoch = 0, held_loss = loss, held_adults = adults, "tuning the tail");
    let mut record = vec![json!({ "epoch": 0, "held_loss": round4(loss), "held_adult_accuracy": round4(adults) })];
    let mut best = (loss, 0usize, snapshot(&vs));
    let mut optimiser = tch::nn::Adam::default().build(&vs, tuning.lr)?;
    tch::manual_seed(tuning.seed);
    let rows = fit_trunk.size()[0];
    let steps_per_epoch = (rows + 63) / 64;
    let total_steps = (steps_per_epoch * tuning.epochs as i64).max(1);
    let mut step = 0i64;
    for epoch in 1..=tuning.epochs {
        let order = Tensor::randperm(rows, (Kind::Int64, Device::Cpu));
        for start in (0..rows).step_by(64) {
            let idx = order.narrow(0, start, (rows - start).min(64));
            let progress = step as f64 / total_steps as f64;
            optimiser.set_lr(tuning.lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()));
            let logits = head.forward(&tail.forward(&fit_trunk.index_select(0, &idx)));
            let loss = weighted_bce(&logits, &y_fit.index_select(0, &idx), &w_fit.index_select(0, &idx));
            optimiser.backward_step(&loss);
            step += 1;
        }
        let (loss, adults) = measure(&tail, &head)?;
        tracing::info!(
            epoch,
            held_loss = loss,
            held_adults = adults,
            seconds = started.elapsed().as_secs(),
            "tuning the tail"
        );
        record.push(json!({ "epoch": epoch, "held_loss": round4(loss), "held_adult_accuracy": round4(adults) }));
        if loss < best.0 {
            best = (loss, epoch, snapshot(&vs));
        }
    }
    let (_, chosen, weights) = best;
    tch::no_grad(|| {
        let variables = vs.variables();
        for (name, value) in &weights {
            if let Some(t) = variables.get(name) {
                t.shallow_clone().copy_(value);
            }
        }
    });
    vs.freeze();
    let record = json!({
        "blocks": blocks,
        "epochs": tuning.epochs,
        "lr": tuning.lr,
        "seed": tuning.seed,
        "init_penalty": TAIL_INIT_PENALTY,
        "fit_faces": fit.ages.len(),
        "held_faces": held.ages.len(),
        "chosen_epoch": chosen,
        "by_epoch": record,
    });
    Ok((vs, tail, head, record))
}

/// The served `[female, male]` of every face of a part: the network's
/// (`network_p`), blended with the head's on its own crops of the same faces
/// (`head_faces`).
pub fn served_probabilities(
    network_p: &[Vec<f32>],
    head_faces: &SexSet,
    head: &crate::model::face_embedder::FaceSexHeadModel,
) -> Result<Vec<Vec<f32>>> {
    let x = describe_set_with(&head.embedder, head_faces, head.card.mirror, head.tail.as_ref());
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
