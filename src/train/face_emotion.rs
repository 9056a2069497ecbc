//! The `train face-emotion` and `eval face-emotion` commands: FER2013 in,
//! shipped weights and a model card out.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Result};
use serde_json::json;
use tch::nn;

use super::fer2013::{self, Split};
use super::ferplus::{self, FerPlus};
use super::metrics::{round4, CalibrationSummary, ConfusionMatrix};
use super::{distributions, export_weights, train_face_classifier, ClassifierTask, RunState, TrainOptions};
use crate::model::{
    card_path, parameter_count, FaceNet, FaceNetConfig, InputSpec, LoadedFaceModel, ModelCard, EMOTIONS,
};

/// Where and how to train.
pub struct TrainRequest {
    /// FER2013: the image-folder release or a directory holding fer2013.csv.
    pub data: PathBuf,
    /// Checkpoints and state of the run.
    pub run_dir: PathBuf,
    /// Continue the run in `run_dir` after its last finished epoch.
    pub resume: bool,
    /// Weights file to write the best epoch to, with its card beside it.
    pub export: PathBuf,
    pub options: TrainOptions,
    /// Share of each training target given to the FER+ vote distribution
    /// (`<data>/ferplus/votes.csv`); the rest stays on FER2013's own label.
    /// 0 trains on the original labels alone.
    pub ferplus_weight: f64,
    /// Weights to start from (fine-tuning), e.g. the shipped model.
    pub init_from: Option<PathBuf>,
}

fn split<'a>(
    sets: &'a std::collections::HashMap<Split, fer2013::FaceSet>,
    which: Split,
    data: &Path,
) -> Result<&'a fer2013::FaceSet> {
    sets.get(&which).ok_or_else(|| anyhow!("{} has no {which:?} faces", data.display()))
}

/// Trains on Training, validates on PublicTest each epoch, then exports the
/// best epoch's weights and a card (test metrics are added by [`run_eval`]).
pub fn run_train(request: &TrainRequest) -> Result<ModelCard> {
    tracing::info!(data = %request.data.display(), "loading FER2013");
    let mut sets = fer2013::load(&request.data)?;
    let mut train =
        sets.remove(&Split::Training).ok_or_else(|| anyhow!("{} has no Training faces", request.data.display()))?;
    let mut recipe = Recipe { ferplus_weight: 0.0, init_from: request.init_from.clone() };
    if request.ferplus_weight > 0.0 {
        let votes = FerPlus::load(&request.data)?
            .ok_or_else(|| anyhow!("--ferplus-weight needs {}", ferplus::votes_path(&request.data).display()))?;
        let (targets, with_votes) = votes.soft_targets(&train, request.ferplus_weight);
        if with_votes == 0 {
            bail!(
                "no Training face matched a FER+ vote (FER+ joins the image-folder release by path, not fer2013.csv)"
            );
        }
        tracing::info!(with_votes, faces = train.len(), weight = request.ferplus_weight, "FER+ soft targets");
        train.targets = Some(targets);
        recipe.ferplus_weight = request.ferplus_weight;
    }
    let val = split(&sets, Split::PublicTest, &request.data)?;
    let task = ClassifierTask {
        name: "face-emotion",
        classes: &EMOTIONS,
        architecture: FaceNetConfig::emotion(),
        init_from: request.init_from.as_deref(),
    };
    let state = train_face_classifier(&task, &train, val, request.options.clone(), &request.run_dir, request.resume)?;
    export(&request.run_dir.join("best.safetensors"), &state, train.len(), &request.export, &request.data, &recipe)
}

/// What the card says about a run beyond its [`RunState`].
#[derive(Debug, Clone, Default)]
pub struct Recipe {
    /// See [`TrainRequest::ferplus_weight`].
    pub ferplus_weight: f64,
    /// See [`TrainRequest::init_from`].
    pub init_from: Option<PathBuf>,
}

/// Copies a run's best weights to `export` and writes its card.
pub fn export(
    best: &Path,
    state: &RunState,
    train_faces: usize,
    export: &Path,
    data: &Path,
    recipe: &Recipe,
) -> Result<ModelCard> {
    let mut vs = nn::VarStore::new(tch::Device::Cpu);
    let _net = FaceNet::new(&vs.root(), &state.architecture);
    export_weights(best, export, &mut vs)?;
    let o = &state.options;
    let targets = if recipe.ferplus_weight > 0.0 {
        format!(
            "targets {:.2} x the FER2013 label + {:.2} x the FER+ vote shares among the 7 emotions (faces without votes: the label)",
            1.0 - recipe.ferplus_weight,
            recipe.ferplus_weight
        )
    } else {
        "targets the FER2013 labels".to_string()
    };
    let start = match &recipe.init_from {
        Some(path) => format!("fine-tuned from {}", path.display()),
        None => "trained from scratch".to_string(),
    };
    let mut train_command = format!("emotion-ai train face-emotion --data {} --epochs {}", data.display(), o.epochs);
    if recipe.ferplus_weight > 0.0 {
        train_command += &format!(" --ferplus-weight {}", recipe.ferplus_weight);
    }
    if let Some(path) = &recipe.init_from {
        train_command += &format!(" --init-from {} --lr {}", path.display(), o.lr);
    }
    let card = ModelCard {
        name: "face_emotion".into(),
        description: "Residual VGG-style CNN giving the probabilities of 7 emotions for a 48x48 grayscale face crop; \
                      probabilities are averaged over the face and its mirror image."
            .into(),
        classes: EMOTIONS.iter().map(|s| s.to_string()).collect(),
        input: InputSpec::grey_face(
            state.input_mean,
            state.input_std,
            "(grey level 0..255 - mean) / std; mean and std of the FER2013 Training split, also stored in the weights as input_mean / input_std",
        ),
        architecture: state.architecture.clone(),
        params: parameter_count(&vs),
        trained_on: format!(
            "FER2013 Training split ({} faces: the 2 file names filed under two classes are skipped), {targets}, {start}, \
             best of {} epochs on PublicTest (epoch {}); \
             SGD nesterov lr {} cosine, batch {}, weight decay {}, label smoothing {}, class weights (mean/count)^{}, \
             augmentation: mirror, rotation, zoom, shift, contrast/brightness, random erasing",
            train_faces, state.epochs_done, state.best_epoch, o.lr, o.batch_size, o.weight_decay, o.label_smoothing, o.class_weight_power
        ),
        metrics: json!({ "fer2013_public_test_accuracy": state.best_val_accuracy }),
        calibration: None,
        mixed: None,
        train_command,
        eval_command: format!("emotion-ai eval face-emotion --data {} --write-card", data.display()),
    };
    card.save(&card_path(export))?;
    Ok(card)
}

/// What `eval face-emotion` measured on PrivateTest.
pub struct EvalReport {
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub per_class_recall: serde_json::Map<String, serde_json::Value>,
    /// ECE on PrivateTest, raw and with the temperature fitted on PublicTest.
    pub calibration: CalibrationSummary,
    /// PrivateTest without the faces that are near-copies of training faces
    /// (where `<data>/ferplus/` has the list).
    pub without_near_copies: Option<SubsetScore>,
    /// PrivateTest against the FER+ majority labels (where `<data>/ferplus/`
    /// has the votes), with per-class recall.
    pub ferplus_majority: Option<SubsetScore>,
    /// PublicTest, the validation split, with its labels and against the
    /// FER+ majority: what choices between models (epochs, interpolation
    /// weights) are made on, so that PrivateTest stays a test.
    pub public_test: SubsetScore,
    pub public_test_ferplus_majority: Option<SubsetScore>,
    pub json_path: PathBuf,
    pub png_path: PathBuf,
}

/// Accuracy on a subset or relabelling of PrivateTest.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SubsetScore {
    pub faces: usize,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub per_class_recall: serde_json::Map<String, serde_json::Value>,
}

impl SubsetScore {
    /// Scores the predictions `distributions` (one per face of the whole
    /// split) at `indices` against `truth` (one per index).
    fn of(distributions: &[Vec<f32>], indices: &[usize], truth: &[usize]) -> Self {
        let picked: Vec<Vec<f32>> = indices.iter().map(|&i| distributions[i].clone()).collect();
        let matrix = ConfusionMatrix::from_distributions(&EMOTIONS, &picked, truth);
        let per_class_recall =
            EMOTIONS.iter().zip(matrix.recall()).map(|(c, r)| (c.to_string(), json!(round4(r)))).collect();
        Self {
            faces: indices.len(),
            accuracy: matrix.accuracy(),
            balanced_accuracy: matrix.balanced_accuracy(),
            per_class_recall,
        }
    }
}

/// PrivateTest without its near-copies, where the list is there.
fn without_near_copies(
    data: &Path,
    private: &fer2013::FaceSet,
    distributions: &[Vec<f32>],
    truth: &[usize],
) -> Result<Option<SubsetScore>> {
    if !has_paths(private) {
        return Ok(None);
    }
    Ok(ferplus::near_copies(data)?.map(|copies| {
        let keep = ferplus::indices_without(&private.names, &copies);
        let kept_truth: Vec<usize> = keep.iter().map(|&i| truth[i]).collect();
        SubsetScore::of(distributions, &keep, &kept_truth)
    }))
}

/// `set` scored against the FER+ majorities, where the votes are there.
fn majority_score(votes: Option<&FerPlus>, set: &fer2013::FaceSet, distributions: &[Vec<f32>]) -> Option<SubsetScore> {
    let votes = votes.filter(|_| has_paths(set))?;
    let (indices, labels) = votes.majority(&set.names);
    Some(SubsetScore::of(distributions, &indices, &labels))
}

/// FER+ joins faces by the folder release's paths; fer2013.csv has none.
fn has_paths(set: &fer2013::FaceSet) -> bool {
    set.names.len() == set.len()
}

/// Evaluates `weights` on FER2013 PrivateTest; writes the confusion matrix as
/// JSON and PNG into `out_dir`, and the metrics into the model card when
/// `write_card` is set.
pub fn run_eval(data: &Path, weights: &Path, out_dir: &Path, write_card: bool) -> Result<EvalReport> {
    let model = LoadedFaceModel::load(weights)?;
    let sets = fer2013::load(data)?;
    // One pass over PrivateTest serves both the confusion matrix and the ECE.
    let private = split(&sets, Split::PrivateTest, data)?;
    let (test, test_truth) = distributions(&model.frozen, private);
    let without_near_copies = without_near_copies(data, private, &test, &test_truth)?;
    // The votes are read once and score both splits.
    let votes = if has_paths(private) { FerPlus::load(data)? } else { None };
    let ferplus_majority = majority_score(votes.as_ref(), private, &test);
    let matrix = ConfusionMatrix::from_distributions(&EMOTIONS, &test, &test_truth);
    let public = split(&sets, Split::PublicTest, data)?;
    let (validation, validation_truth) = distributions(&model.frozen, public);
    let public_test = SubsetScore::of(&validation, &(0..validation.len()).collect::<Vec<_>>(), &validation_truth);
    let public_test_ferplus_majority = majority_score(votes.as_ref(), public, &validation);
    let calibration =
        CalibrationSummary::fit((&validation, &validation_truth), (&test, &test_truth), "FER2013 PublicTest");
    let recall = matrix.recall();
    let per_class_recall: serde_json::Map<_, _> =
        EMOTIONS.iter().zip(&recall).map(|(c, r)| (c.to_string(), json!(round4(*r)))).collect();

    std::fs::create_dir_all(out_dir)?;
    let json_path = out_dir.join("face_emotion_confusion.json");
    let png_path = out_dir.join("face_emotion_confusion.png");
    let report = json!({
        "model": weights.display().to_string(),
        "split": "FER2013 PrivateTest",
        "samples": matrix.total(),
        "accuracy": matrix.accuracy(),
        "balanced_accuracy": matrix.balanced_accuracy(),
        "per_class_recall": per_class_recall,
        "confusion_matrix": matrix,
        "calibration": calibration,
        "without_near_copies": without_near_copies,
        "ferplus_majority": ferplus_majority,
        "public_test": public_test,
        "public_test_ferplus_majority": public_test_ferplus_majority,
    });
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")?;
    matrix.save_png(&png_path, &format!("face_emotion on FER2013 PrivateTest ({} faces)", matrix.total()))?;

    if write_card {
        let mut card = model.card.clone();
        let metrics = card.metrics.as_object_mut().ok_or_else(|| anyhow!("card metrics is not an object"))?;
        metrics.insert("fer2013_public_test_accuracy".into(), json!(public_test.accuracy));
        if let Some(score) = &public_test_ferplus_majority {
            metrics.insert("ferplus_public_test_majority_accuracy".into(), json!(score.accuracy));
        }
        metrics.insert("fer2013_private_test_accuracy".into(), json!(matrix.accuracy()));
        metrics.insert("fer2013_private_test_balanced_accuracy".into(), json!(matrix.balanced_accuracy()));
        metrics.insert("per_class_recall".into(), json!(per_class_recall));
        metrics.insert("private_test_samples".into(), json!(matrix.total()));
        metrics.insert("private_test_ece".into(), json!(round4(calibration.raw.ece)));
        metrics.insert("private_test_ece_calibrated".into(), json!(round4(calibration.calibrated.ece)));
        if let Some(score) = &without_near_copies {
            metrics.insert("fer2013_private_test_accuracy_without_near_copies".into(), json!(score.accuracy));
            metrics.insert("private_test_samples_without_near_copies".into(), json!(score.faces));
        }
        if let Some(score) = &ferplus_majority {
            metrics.insert("ferplus_private_test_majority_accuracy".into(), json!(score.accuracy));
            metrics.insert("ferplus_private_test_majority_balanced_accuracy".into(), json!(score.balanced_accuracy));
            metrics.insert("ferplus_per_class_recall".into(), json!(score.per_class_recall));
            metrics.insert("ferplus_private_test_samples".into(), json!(score.faces));
        }
        card.calibration = Some(calibration.card_entry());
        card.save(&card_path(weights))?;
    }
    Ok(EvalReport {
        accuracy: matrix.accuracy(),
        balanced_accuracy: matrix.balanced_accuracy(),
        per_class_recall,
        calibration,
        without_near_copies,
        ferplus_majority,
        public_test,
        public_test_ferplus_majority,
        json_path,
        png_path,
    })
}

/// The emotion distribution of every FER2013 face of `part`, with the true
/// emotions (for `eval fusion`).
pub fn heldout_distributions(data: &Path, weights: &Path, part: Split) -> Result<(Vec<Vec<f32>>, Vec<usize>)> {
    let model = LoadedFaceModel::load(weights)?;
    let sets = fer2013::load(data)?;
    Ok(distributions(&model.frozen, split(&sets, part, data)?))
}

/// Writes `(1 - weight) x base + weight x tuned`, parameter by parameter
/// (batch-norm statistics and input scaling included), to `out` with a card.
///
/// Why: a fine-tune of `base` (for instance on FER+ votes) and `base` itself
/// lie in one basin of the loss, and a point between them often holds better
/// on data neither was chosen on than either end (WiSE-FT, Wortsman et al.
/// 2022), at no cost when serving: the result is one network of the same
/// shape. `weight` is chosen on PublicTest (`eval face-emotion` prints it).
pub fn interpolate(base: &Path, tuned: &Path, weight: f64, out: &Path) -> Result<ModelCard> {
    if !(0.0..=1.0).contains(&weight) {
        bail!("the interpolation weight must be within 0..=1, not {weight}");
    }
    let (base_model, tuned_model) = (LoadedFaceModel::load(base)?, LoadedFaceModel::load(tuned)?);
    let (base_card, tuned_card) = (&base_model.card, &tuned_model.card);
    if base_card.architecture != tuned_card.architecture || base_card.classes != tuned_card.classes {
        bail!(
            "{} and {} are different networks ({:?} {:?} against {:?} {:?}): only two trainings of one architecture \
             can be interpolated",
            base.display(),
            tuned.display(),
            base_card.architecture,
            base_card.classes,
            tuned_card.architecture,
            tuned_card.classes
        );
    }
    if base_card.input.size != tuned_card.input.size || base_card.input.margin != tuned_card.input.margin {
        bail!("{} and {} read different crops", base.display(), tuned.display());
    }
    let mixed = nn::VarStore::new(tch::Device::Cpu);
    let net = FaceNet::new(&mixed.root(), &base_card.architecture);
    let (from, to) = (base_model.variables(), tuned_model.variables());
    tch::no_grad(|| {
        for (name, mut variable) in mixed.variables() {
            // Both stores were built by the same constructor, so every name is in each.
            let point = &from[&name] * (1.0 - weight) + &to[&name] * weight;
            variable.copy_(&point);
        }
    });
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    mixed.save(out).map_err(|e| anyhow!("writing {}: {e}", out.display()))?;
    let (mean, std) = net.input_stats();
    let mut card = base_card.clone();
    card.input.normalisation.mean = mean;
    card.input.normalisation.std = std;
    card.params = parameter_count(&mixed);
    card.trained_on = format!(
        "the weights {:.2} x A + {:.2} x B, parameter by parameter (WiSE-FT), weight chosen on FER2013 PublicTest; \
         A ({}): {}; B ({}): {}",
        1.0 - weight,
        weight,
        base.display(),
        base_card.trained_on,
        tuned.display(),
        tuned_card.trained_on
    );
    card.train_command = format!(
        "A: {}; B: {}; then emotion-ai train face-emotion-interpolate --base A --tuned B --weight {weight}",
        base_card.train_command, tuned_card.train_command
    );
    // Figures, temperature and margin belong to the ends, not to this point:
    // `eval face-emotion --write-card` and `eval mixed --write-card` measure it.
    card.metrics = json!({});
    card.calibration = None;
    card.mixed = None;
    card.save(&card_path(out))?;
    Ok(card)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    fn tiny(dir: &Path, name: &str, seed: i64, architecture: &FaceNetConfig) -> PathBuf {
        tch::manual_seed(seed);
        let mut vs = nn::VarStore::new(Device::Cpu);
        let mut net = FaceNet::new(&vs.root(), architecture);
        net.set_input_stats(100.0 + seed as f64, 50.0);
        // Batch-norm statistics are buffers, not trained weights: give them
        // values too, so the test sees whether they are interpolated.
        tch::no_grad(|| {
            for (name, mut variable) in vs.variables() {
                if name.ends_with("running_mean") {
                    variable.copy_(&Tensor::rand(variable.size(), (Kind::Float, Device::Cpu)));
                }
            }
        });
        vs.freeze();
        let path = dir.join(format!("{name}.safetensors"));
        vs.save(&path).unwrap();
        let (mean, std) = net.input_stats();
        let card = ModelCard {
            name: "face_emotion".into(),
            description: "test".into(),
            classes: EMOTIONS.iter().take(architecture.classes as usize).map(|s| s.to_string()).collect(),
            input: InputSpec::grey_face(mean, std, "test"),
            architecture: architecture.clone(),
            params: parameter_count(&vs),
            trained_on: format!("seed {seed}"),
            metrics: json!({ "fer2013_public_test_accuracy": 0.5 }),
            calibration: None,
            mixed: None,
            train_command: format!("train {name}"),
            eval_command: "eval".into(),
        };
        card.save(&card_path(&path)).unwrap();
        path
    }

    #[test]
    fn interpolation_moves_every_variable_along_the_line_between_the_ends() {
        let dir = tempfile::tempdir().unwrap();
        let arch = FaceNetConfig { channels: vec![4, 8], hidden: 8, classes: 7, dropout: 0.0, input_size: 48 };
        let (a, b) = (tiny(dir.path(), "a", 1, &arch), tiny(dir.path(), "b", 2, &arch));
        let variables = |path: &Path| LoadedFaceModel::load(path).unwrap().variables();
        let (va, vb) = (variables(&a), variables(&b));
        for weight in [0.0, 0.3, 1.0] {
            let out = dir.path().join(format!("mix{weight}.safetensors"));
            let card = interpolate(&a, &b, weight, &out).unwrap();
            let mixed = variables(&out);
            assert_eq!(mixed.len(), va.len());
            for (name, value) in &mixed {
                let expected = &va[name] * (1.0 - weight) + &vb[name] * weight;
                let gap = (value - expected).abs().max().double_value(&[]);
                assert!(gap < 1e-5, "{name} at weight {weight} is {gap} off the line");
            }
            let expected_mean = 101.0 * (1.0 - weight) + 102.0 * weight;
            assert!((card.input.normalisation.mean - expected_mean).abs() < 1e-3, "{}", card.input.normalisation.mean);
            assert_eq!(card.metrics, json!({}), "the ends' figures are not the mixture's");
            assert!(card.train_command.contains("train a") && card.train_command.contains("train b"));
            let reread = ModelCard::load(&card_path(&out)).unwrap();
            assert_eq!(reread.architecture, arch);
        }
        assert!(
            va["stage0.bn1.running_mean"].not_equal_tensor(&vb["stage0.bn1.running_mean"]).any().int64_value(&[]) == 1
        );
    }

    #[test]
    fn interpolation_refuses_other_shapes_and_weights_outside_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let arch = FaceNetConfig { channels: vec![4, 8], hidden: 8, classes: 7, dropout: 0.0, input_size: 48 };
        let a = tiny(dir.path(), "a", 1, &arch);
        let wide = tiny(dir.path(), "wide", 2, &FaceNetConfig { channels: vec![4, 16], ..arch.clone() });
        let out = dir.path().join("mix.safetensors");
        let error = interpolate(&a, &wide, 0.5, &out).unwrap_err().to_string();
        assert!(error.contains("different networks"), "{error}");
        for weight in [-0.1, 1.5, f64::NAN] {
            let error = interpolate(&a, &a, weight, &out).unwrap_err().to_string();
            assert!(error.contains("within 0..=1"), "{error}");
        }
        assert!(!out.exists(), "nothing is written when refused");
    }
}
