//! The `train face-sex` and `eval face-sex` commands: UTKFace in, shipped
//! weights and a model card out.
//!
//! The shipped network is the face-emotion architecture with two outputs,
//! started from the shipped face-emotion weights (its convolutions already
//! know 48x48 grayscale faces) and fine-tuned on UTKFace crops made by the
//! serving pipeline. `--input-size` and `--margin` train on a larger crop with
//! context around the box instead (hair, jaw line, neck; 96 px reads it with
//! [`FaceNetConfig::sex_context`]): tried, not better on adults so far
//! (models/README.md). The split is fixed by [`SPLIT_SEED`] (see
//! [`utkface::part_of`]).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use serde_json::json;
use tch::nn;

use super::metrics::{round4, CalibrationSummary, ConfusionMatrix};
use super::utkface::{self, SexSet};
use super::{export_weights, train_face_classifier, ClassifierTask, RunState, TrainOptions};
use crate::detect::CropSpec;
use crate::model::face_embedder::FaceSexHeadModel;
use crate::model::voice::SEXES;
use crate::model::{card_path, parameter_count, FaceNet, FaceNetConfig, InputSpec, LoadedFaceModel, ModelCard};

/// Seed of the fixed train / validation / test split of UTKFace.
pub const SPLIT_SEED: u64 = 2017;

/// The age from which a face counts as an adult's in the reported metrics.
pub const ADULT_AGE: u32 = 18;

/// Hyper-parameters of the shipped face-sex model: a fine-tuning schedule.
pub fn default_options() -> TrainOptions {
    TrainOptions { epochs: 20, lr: 0.02, ..TrainOptions::default() }
}

/// Side of the shipped model's input crop.
pub const DEFAULT_INPUT_SIZE: i64 = crate::model::FACE_SIZE;

/// Context the shipped model reads around the detected box (fraction of its
/// side, on every side): none, the emotion network's crop.
pub const DEFAULT_MARGIN: f64 = 0.0;

/// The network for a crop of `input_size` pixels: the emotion network's shape
/// at 48 (so it can start from its weights), the context network otherwise.
pub fn architecture(input_size: i64) -> Result<FaceNetConfig> {
    if input_size == crate::model::FACE_SIZE {
        return Ok(FaceNetConfig::sex());
    }
    let config = FaceNetConfig::sex_context();
    let stages = config.channels.len() as u32;
    if input_size < 32 || input_size % (1 << stages) != 0 {
        anyhow::bail!("--input-size must be 48 or a multiple of {} from 32 up (got {input_size})", 1 << stages);
    }
    Ok(FaceNetConfig { input_size, ..config })
}

/// Where and how to train.
pub struct FaceSexTrainRequest {
    /// UTKFace (`crop_part1/` or any folder of its `[age]_[sex]_...jpg` files).
    pub data: PathBuf,
    /// How the faces are found (the server's detector and verifier).
    pub finder: utkface::FaceFinder,
    pub run_dir: PathBuf,
    pub resume: bool,
    pub export: PathBuf,
    /// Weights to start from (the face-emotion model, for a 48 px input), or none.
    pub init_from: Option<PathBuf>,
    /// Side of the input crop (see [`architecture`]).
    pub input_size: i64,
    /// Context around the detected box, as a fraction of its side.
    pub margin: f64,
    pub options: TrainOptions,
}

/// Trains on the train part, validates on the validation part each epoch,
/// then exports the best epoch and a card (test metrics come from
/// [`run_eval`]).
pub fn run_train(request: &FaceSexTrainRequest) -> Result<ModelCard> {
    if !(0.0..=1.0).contains(&request.margin) {
        anyhow::bail!("--margin must be between 0 and 1 (a fraction of the face box's side; got {})", request.margin);
    }
    let architecture = architecture(request.input_size)?;
    let [train, val, _test] = load(&request.data, &request.finder, crop_spec(request))?;
    let task =
        ClassifierTask { name: "face-sex", classes: &SEXES, architecture, init_from: request.init_from.as_deref() };
    let state = train_face_classifier(
        &task,
        &train.faces,
        &val.faces,
        request.options.clone(),
        &request.run_dir,
        request.resume,
    )?;
    export(&request.run_dir.join("best.safetensors"), &state, &train, request)
}

fn crop_spec(request: &FaceSexTrainRequest) -> CropSpec {
    CropSpec { size: request.input_size as u32, margin: request.margin }
}

pub(crate) fn load(data: &Path, finder: &utkface::FaceFinder, spec: CropSpec) -> Result<[SexSet; 3]> {
    let mut sets = load_each(data, finder, &[spec])?;
    sets.pop().context("one crop asked for, one given")
}

/// [`load`] for several crops of the same faces, each image searched once
/// ([`utkface::load_each`]).
pub(crate) fn load_each(data: &Path, finder: &utkface::FaceFinder, specs: &[CropSpec]) -> Result<Vec<[SexSet; 3]>> {
    let sizes: Vec<u32> = specs.iter().map(|s| s.size).collect();
    let margins: Vec<f64> = specs.iter().map(|s| s.margin).collect();
    tracing::info!(data = %data.display(), ?sizes, ?margins, "loading UTKFace");
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let sets = utkface::load_each(data, finder, SPLIT_SEED, threads, specs)?;
    if let Some(first) = sets.first() {
        for (name, set) in ["train", "validation", "test"].iter().zip(first) {
            let detected = set.detected.iter().filter(|d| **d).count();
            tracing::info!(part = name, faces = set.ages.len(), detected, "UTKFace split");
        }
    }
    Ok(sets)
}

fn export(best: &Path, state: &RunState, train: &SexSet, request: &FaceSexTrainRequest) -> Result<ModelCard> {
    let export = &request.export;
    let mut vs = nn::VarStore::new(tch::Device::Cpu);
    let _net = FaceNet::new(&vs.root(), &state.architecture);
    export_weights(best, export, &mut vs)?;
    let o = &state.options;
    let detected = train.detected.iter().filter(|d| **d).count();
    let init = request.init_from.as_ref().map_or("random initialisation".to_string(), |p| {
        format!("initialised from {} (all but the last layer)", p.file_name().unwrap_or_default().to_string_lossy())
    });
    let card = ModelCard {
        name: "face_sex".into(),
        description: format!(
            "Residual VGG-style CNN giving the probabilities of female and male for a {size}x{size} grayscale crop \
             of the detected face{}; averaged over the face and its mirror image.",
            if request.margin > 0.0 {
                format!(" grown by {:.0}% of its side on every side (hair, jaw line, neck)", request.margin * 100.0)
            } else {
                String::new()
            },
            size = request.input_size
        ),
        classes: SEXES.iter().map(|s| s.to_string()).collect(),
        input: InputSpec::grey_context(
            request.input_size,
            request.margin,
            state.input_mean,
            state.input_std,
            "(grey level 0..255 - mean) / std; statistics of the UTKFace training crops, also stored in the weights; \
             past the image's edge the crop repeats its edge pixels",
        ),
        architecture: state.architecture.clone(),
        params: parameter_count(&vs),
        trained_on: format!(
            "UTKFace crop_part1, train part of the split seeded {SPLIT_SEED} ({} faces, {detected} cropped where \
             {} found them, the rest by the median detected box); {init}; best of {} epochs on the validation \
             part (epoch {}); SGD nesterov lr {} cosine, batch {}, weight decay {}, label smoothing {}; augmentation: \
             mirror, rotation, zoom, shift, contrast/brightness, random erasing",
            train.ages.len(),
            request.finder.describe(),
            state.epochs_done,
            state.best_epoch,
            o.lr,
            o.batch_size,
            o.weight_decay,
            o.label_smoothing
        ),
        metrics: json!({ "validation_accuracy": state.best_val_accuracy, "split_seed": SPLIT_SEED }),
        calibration: None,
        mixed: None,
        train_command: format!(
            "emotion-ai train face-sex --data {} {} --epochs {} --lr {} --input-size {} --margin {} --init-from {}",
            request.data.display(),
            request.finder.options(),
            o.epochs,
            o.lr,
            request.input_size,
            request.margin,
            request.init_from.as_ref().map_or("none".to_string(), |p| p.display().to_string())
        ),
        eval_command: format!(
            "emotion-ai eval face-sex --data {} {} --write-card",
            request.data.display(),
            request.finder.options()
        ),
    };
    card.save(&card_path(export))?;
    Ok(card)
}

/// Each sex's recall in `matrix`, by name.
pub(crate) fn recall_by_sex(matrix: &ConfusionMatrix) -> serde_json::Map<String, serde_json::Value> {
    SEXES.iter().zip(matrix.recall()).map(|(c, r)| (c.to_string(), json!(round4(r)))).collect()
}

/// Accuracy on one of UTKFace's race groups.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RaceAccuracy {
    pub race: String,
    pub faces: u64,
    pub accuracy: f64,
}

/// What `eval face-sex` measured on the held-out test part.
pub struct FaceSexReport {
    pub faces: u64,
    pub accuracy: f64,
    pub adults: u64,
    pub adult_accuracy: f64,
    /// Accuracy on the faces the detector found (what serving sees).
    pub detected_accuracy: f64,
    pub recall: serde_json::Map<String, serde_json::Value>,
    /// Recall of each sex among the adults.
    pub adult_recall: serde_json::Map<String, serde_json::Value>,
    /// Adults' accuracy in each of UTKFace's race groups.
    pub adults_by_race: Vec<RaceAccuracy>,
    /// ECE on the evaluated part (all ages), raw and with the temperature
    /// fitted on the validation part.
    pub calibration: CalibrationSummary,
    pub json_path: PathBuf,
    pub png_path: PathBuf,
}

/// Evaluates `weights` on the test part (or, for choices made while
/// developing, the validation part): overall, adults (18+), and faces
/// `finder` found; writes the confusion matrix as JSON and PNG into `out_dir`
/// and, with `write_card` (test part only), the metrics into the card.
pub fn run_eval(
    data: &Path,
    finder: &utkface::FaceFinder,
    weights: &Path,
    head: Option<&FaceSexHeadModel>,
    out_dir: &Path,
    part: utkface::Part,
    write_card: bool,
) -> Result<FaceSexReport> {
    if write_card && part != utkface::Part::Test {
        anyhow::bail!("the card records test-part figures only: drop --write-card or evaluate the test part");
    }
    let model = LoadedFaceModel::load(weights)?;
    // The network's crops and, with a head, the head's: one search per image.
    let specs: Vec<CropSpec> = std::iter::once(model.card.input.crop()).chain(head.map(|h| h.card.crop())).collect();
    let mut sets = load_each(data, finder, &specs)?.into_iter();
    let [_, validation, test] = sets.next().context("the network's crops")?;
    let head_sets = sets.next();
    // The served distribution: the network's, blended with the head's.
    // Beside the head, the network is read as the head's card says.
    let network_mirror = head.is_none_or(|h| h.card.network_mirror);
    let served = |set: &SexSet, head_set: Option<&SexSet>| -> Result<(Vec<Vec<f32>>, Vec<usize>)> {
        let (p, truth) = super::distributions_with(&model.frozen, &set.faces, network_mirror);
        match (head, head_set) {
            (Some(h), Some(faces)) => Ok((super::face_sex_head::served_probabilities(&p, faces, h)?, truth)),
            _ => Ok((p, truth)),
        }
    };
    let evaluated_slot = if part == utkface::Part::Test { 2 } else { 1 };
    let (fit, fit_truth) = served(&validation, head_sets.as_ref().map(|s| &s[1]))?;
    let test = if part == utkface::Part::Test { test } else { validation };
    let (p, truth) = served(&test, head_sets.as_ref().map(|s| &s[evaluated_slot]))?;
    let calibration = CalibrationSummary::fit((&fit, &fit_truth), (&p, &truth), "UTKFace validation part");
    let matrix = |indices: &[i64]| {
        let (t, predicted): (Vec<i64>, Vec<i64>) = indices
            .iter()
            .map(|&i| {
                let row = &p[i as usize];
                (truth[i as usize] as i64, i64::from(row[1] > row[0]))
            })
            .unzip();
        ConfusionMatrix::new(&SEXES, &t, &predicted)
    };
    let everyone: Vec<i64> = (0..p.len() as i64).collect();
    let all = matrix(&everyone);
    let adults = matrix(&test.adult_indices());
    let adult_recall = recall_by_sex(&adults);
    let adults_by_race: Vec<RaceAccuracy> = utkface::RACES
        .iter()
        .enumerate()
        .map(|(race, name)| {
            let m = matrix(&test.adult_indices_of_race(race as u32));
            RaceAccuracy { race: name.to_string(), faces: m.total(), accuracy: round4(m.accuracy()) }
        })
        .collect();
    let detected: Vec<i64> = (0..test.detected.len() as i64).filter(|&i| test.detected[i as usize]).collect();
    let detected = matrix(&detected);
    let recall = recall_by_sex(&all);
    let served_by = head.map_or("the network alone".to_string(), |h| {
        format!("the network moved {} of the way to the face sex head (face_sex_head.json)", h.card.head_weight)
    });

    std::fs::create_dir_all(out_dir)?;
    let json_path = out_dir.join("face_sex_confusion.json");
    let png_path = out_dir.join("face_sex_confusion.png");
    let matrix_json = |m: &ConfusionMatrix| json!({ "samples": m.total(), "accuracy": m.accuracy(), "matrix": m });
    let report = json!({
        "model": weights.display().to_string(),
        "split": format!("UTKFace {part:?} part (seed {SPLIT_SEED})"),
        "all": matrix_json(&all),
        "adults": matrix_json(&adults),
        "adult_recall": adult_recall,
        "adults_by_race": adults_by_race,
        "finder": finder.describe(),
        "served_by": served_by,
        "detected": matrix_json(&detected),
        "recall": recall,
        "calibration": calibration,
    });
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")?;
    all.save_png(&png_path, &format!("face_sex on the UTKFace test part ({} faces)", all.total()))?;

    if write_card {
        let mut card = model.card.clone();
        let metrics = card.metrics.as_object_mut().ok_or_else(|| anyhow!("card metrics is not an object"))?;
        metrics.insert("heldout_accuracy".into(), json!(round4(all.accuracy())));
        metrics.insert("heldout_adult_accuracy".into(), json!(round4(adults.accuracy())));
        metrics.insert("heldout_detected_accuracy".into(), json!(round4(detected.accuracy())));
        metrics.insert("heldout_faces".into(), json!(all.total()));
        metrics.insert("heldout_cropped_by".into(), json!(finder.describe()));
        metrics.insert("heldout_served_by".into(), json!(served_by));
        metrics.insert("heldout_adults".into(), json!(adults.total()));
        metrics.insert("heldout_recall".into(), json!(recall));
        metrics.insert("heldout_adult_recall".into(), json!(adult_recall));
        metrics.insert("heldout_adults_by_race".into(), json!(adults_by_race));
        metrics.insert("heldout_ece".into(), json!(round4(calibration.raw.ece)));
        metrics.insert("heldout_ece_calibrated".into(), json!(round4(calibration.calibrated.ece)));
        card.calibration = Some(calibration.card_entry());
        card.save(&card_path(weights))?;
    }
    Ok(FaceSexReport {
        faces: all.total(),
        accuracy: all.accuracy(),
        adults: adults.total(),
        adult_accuracy: adults.accuracy(),
        detected_accuracy: detected.accuracy(),
        recall,
        adult_recall,
        adults_by_race,
        calibration,
        json_path,
        png_path,
    })
}
