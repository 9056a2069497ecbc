//! Training and evaluation of the face networks on the CPU.
//!
//! A run lives in a directory (`--run-dir`) holding `last.safetensors` (the
//! weights after the last finished epoch), `best.safetensors` (best validation
//! accuracy so far) and `state.json` (options, history). `--resume` picks the
//! run up after its last finished epoch, so training can span sessions; the
//! learning-rate schedule is a function of the step number, so a resumed run
//! follows the same schedule (only SGD's momentum buffers start afresh).

pub mod augment;
pub mod face_emotion;
pub mod face_sex;
pub mod face_sex_head;
pub mod face_verifier;
pub mod fer2013;
pub mod ferplus;
pub mod fusion_eval;
pub mod logistic;
pub mod metrics;
pub mod mixed_eval;
pub mod nonspeech;
pub mod speech_check;
pub mod utkface;
pub mod voice_augment;
pub mod voice_data;
pub mod voice_emotion;
pub mod voice_sex;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

use crate::model::{parameter_count, FaceClassifier, FaceNet, FaceNetConfig};
use augment::Augment;
use fer2013::FaceSet;
use metrics::ConfusionMatrix;

/// Hyper-parameters of a training run, kept in its `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: i64,
    /// Peak learning rate of SGD with Nesterov momentum 0.9.
    pub lr: f64,
    pub weight_decay: f64,
    pub label_smoothing: f64,
    /// Class weights are `(mean count / class count) ^ power`: 0 = none,
    /// 1 = full inverse frequency. 0.5 helps the rare classes (disgust) without
    /// costing much overall accuracy.
    pub class_weight_power: f64,
    pub seed: i64,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 30,
            batch_size: 64,
            lr: 0.05,
            weight_decay: 5e-4,
            label_smoothing: 0.1,
            class_weight_power: 0.5,
            seed: 1,
        }
    }
}

/// What one finished epoch measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_accuracy: f64,
    pub val_accuracy: f64,
    pub seconds: f64,
}

/// The persistent state of a run (`state.json`), for a network of
/// architecture `A` whose input statistics are `S` (one number for faces, one
/// per MFCC coefficient for voices).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunState<A = FaceNetConfig, S = f64> {
    pub task: String,
    pub architecture: A,
    pub options: TrainOptions,
    pub input_mean: S,
    pub input_std: S,
    pub epochs_done: usize,
    pub best_val_accuracy: f64,
    pub best_epoch: usize,
    pub history: Vec<EpochRecord>,
}

impl<A: Serialize + DeserializeOwned, S: Serialize + DeserializeOwned> RunState<A, S> {
    pub(crate) fn path(run_dir: &Path) -> PathBuf {
        run_dir.join("state.json")
    }

    /// Reads a run's state.
    pub fn load(run_dir: &Path) -> Result<Self> {
        let path = Self::path(run_dir);
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// A new run's state, before its first epoch.
    pub(crate) fn new(task: &str, architecture: A, options: TrainOptions, input_mean: S, input_std: S) -> Self {
        Self {
            task: task.to_string(),
            architecture,
            options,
            input_mean,
            input_std,
            epochs_done: 0,
            best_val_accuracy: 0.0,
            best_epoch: 0,
            history: Vec::new(),
        }
    }

    /// The run in `run_dir` to continue, when `resume` is set and there is
    /// one (its weights are in `last.safetensors`): it must be of the same
    /// task and architecture. `None` means a new run starts; it refuses to
    /// overwrite an existing run without `resume`.
    pub(crate) fn resumable(run_dir: &Path, task: &str, architecture: &A, resume: bool) -> Result<Option<Self>>
    where
        A: PartialEq,
    {
        let exists = Self::path(run_dir).is_file();
        if !exists {
            return Ok(None);
        }
        if !resume {
            bail!(
                "{} already holds a run: pass --resume to continue it, or choose another --run-dir",
                run_dir.display()
            );
        }
        let state = Self::load(run_dir)?;
        if state.task != task || &state.architecture != architecture {
            bail!("{} holds a run of another task or architecture; use a new --run-dir", run_dir.display());
        }
        tracing::info!(epochs_done = state.epochs_done, best = state.best_val_accuracy, "resuming run");
        Ok(Some(state))
    }

    /// Records a finished epoch: `last.safetensors` always, `best.safetensors`
    /// when the caller's rule says `is_best`, then the state itself.
    pub(crate) fn finish_epoch(
        &mut self,
        record: EpochRecord,
        is_best: bool,
        vs: &nn::VarStore,
        run_dir: &Path,
    ) -> Result<()> {
        self.finish_epoch_measured(record, is_best, vs, vs, run_dir)
    }

    /// [`RunState::finish_epoch`] for a run whose measured weights (`measured`,
    /// e.g. an average) are not the ones training goes on from (`trained`):
    /// `last.safetensors` keeps the trained ones, `best.safetensors` the
    /// measured ones.
    pub(crate) fn finish_epoch_measured(
        &mut self,
        record: EpochRecord,
        is_best: bool,
        trained: &nn::VarStore,
        measured: &nn::VarStore,
        run_dir: &Path,
    ) -> Result<()> {
        save_atomic(trained, &run_dir.join("last.safetensors"))?;
        if is_best {
            self.best_val_accuracy = record.val_accuracy;
            self.best_epoch = record.epoch;
            save_atomic(measured, &run_dir.join("best.safetensors"))?;
        }
        self.epochs_done = record.epoch;
        self.history.push(record);
        self.save(run_dir)
    }

    pub(crate) fn save(&self, run_dir: &Path) -> Result<()> {
        let tmp = run_dir.join("state.json.tmp");
        std::fs::write(&tmp, serde_json::to_string_pretty(self)?)?;
        std::fs::rename(&tmp, Self::path(run_dir))?;
        Ok(())
    }
}

/// Copies a run's chosen weights to `export` (creating its directory) and
/// checks they load into `vs`, whose variables the card will describe.
pub(crate) fn export_weights(weights: &Path, export: &Path, vs: &mut nn::VarStore) -> Result<()> {
    if let Some(dir) = export.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::copy(weights, export).with_context(|| format!("copying {} to {}", weights.display(), export.display()))?;
    vs.load(export).with_context(|| format!("loading {}", export.display()))
}

/// Saves a var store atomically (write then rename), so an interrupted run
/// never leaves a half-written checkpoint behind.
pub(crate) fn save_atomic(vs: &nn::VarStore, path: &Path) -> Result<()> {
    let tmp = path.with_extension("tmp.safetensors");
    vs.save(&tmp).with_context(|| format!("saving {}", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Learning rate at `step` of `total`: linear warm-up over the first epoch,
/// then cosine decay to zero.
pub fn learning_rate(peak: f64, step: usize, steps_per_epoch: usize, total: usize) -> f64 {
    let warmup = steps_per_epoch.min(total / 4).max(1);
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    peak * 0.5 * (1.0 + (std::f64::consts::PI * progress.min(1.0)).cos())
}

/// Per-class loss weights from class counts; see [`TrainOptions::class_weight_power`].
pub fn class_weights(counts: &[i64], power: f64) -> Vec<f64> {
    let mean = counts.iter().sum::<i64>() as f64 / counts.len() as f64;
    counts.iter().map(|&c| (mean / c.max(1) as f64).powf(power)).collect()
}

/// Mean and standard deviation of the grey levels of a set.
fn pixel_stats(set: &FaceSet) -> (f64, f64) {
    let x = set.images.to_kind(Kind::Float);
    (x.mean(Kind::Float).double_value(&[]), x.std(true).double_value(&[]))
}

/// Predicted probabilities for a whole set, batch by batch (with the
/// mirror-image averaging that serving uses).
pub fn predict_set(net: &impl FaceClassifier, set: &FaceSet) -> Tensor {
    predict_set_with(net, set, true)
}

/// [`predict_set`], with the mirror images only when `mirror`.
pub fn predict_set_with(net: &impl FaceClassifier, set: &FaceSet, mirror: bool) -> Tensor {
    let n = set.len() as i64;
    let mut parts = Vec::new();
    let mut start = 0;
    while start < n {
        let len = (n - start).min(512);
        parts.push(net.predict_proba_with(&set.images.narrow(0, start, len).to_kind(Kind::Float), mirror));
        start += len;
    }
    Tensor::cat(&parts, 0)
}

/// A network's distribution for every face of a set, and the true classes.
pub fn distributions(net: &impl FaceClassifier, set: &FaceSet) -> (Vec<Vec<f32>>, Vec<usize>) {
    distributions_with(net, set, true)
}

/// [`distributions`], with the mirror images only when `mirror`.
pub fn distributions_with(net: &impl FaceClassifier, set: &FaceSet, mirror: bool) -> (Vec<Vec<f32>>, Vec<usize>) {
    let truth = Vec::<i64>::try_from(&set.labels).unwrap_or_default();
    (metrics::tensor_rows(&predict_set_with(net, set, mirror)), truth.into_iter().map(|t| t as usize).collect())
}

/// Confusion matrix of a network's top-1 predictions on a set.
pub fn evaluate(net: &impl FaceClassifier, set: &FaceSet, classes: &[&str]) -> ConfusionMatrix {
    let predicted = Vec::<i64>::try_from(predict_set(net, set).argmax(-1, false)).unwrap_or_default();
    let truth = Vec::<i64>::try_from(&set.labels).unwrap_or_default();
    ConfusionMatrix::new(classes, &truth, &predicted)
}

/// What a classifier is trained for: its task name (kept in the run's state,
/// so a resume cannot mix tasks), its classes and its network shape.
#[derive(Debug, Clone)]
pub struct ClassifierTask<'a> {
    pub name: &'a str,
    pub classes: &'a [&'a str],
    pub architecture: FaceNetConfig,
    /// Weights to start a new run from (transfer learning): every variable
    /// whose name and shape match is copied, the rest keep their fresh
    /// initialisation (e.g. a classifier layer with another class count).
    pub init_from: Option<&'a Path>,
}

/// Trains a [`FaceNet`] on `train`, validating on `val` after every epoch.
/// Returns the run's final state; the best weights are in
/// `run_dir/best.safetensors`.
pub fn train_face_classifier(
    task: &ClassifierTask,
    train: &FaceSet,
    val: &FaceSet,
    options: TrainOptions,
    run_dir: &Path,
    resume: bool,
) -> Result<RunState> {
    let (classes, architecture) = (task.classes, task.architecture.clone());
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    // Seeded before the weights are drawn, so a run's initialisation depends
    // on its seed alone.
    tch::manual_seed(options.seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let mut net = FaceNet::new(&vs.root(), &architecture);

    let mut state = match RunState::resumable(run_dir, task.name, &architecture, resume)? {
        Some(state) => {
            vs.load(run_dir.join("last.safetensors")).context("loading last checkpoint")?;
            state
        }
        None => {
            if let Some(init) = task.init_from {
                let copied = copy_matching_variables(&mut vs, init)?;
                tracing::info!(from = %init.display(), copied, "initialised from pretrained weights");
            }
            let (mean, std) = pixel_stats(train);
            net.set_input_stats(mean, std);
            RunState::new(task.name, architecture.clone(), options.clone(), mean, std)
        }
    };
    // A resumed run may extend its schedule (more epochs); nothing else changes.
    state.options.epochs = options.epochs;
    let options = state.options.clone();
    tch::manual_seed(options.seed + state.epochs_done as i64);

    let n = train.len() as i64;
    let steps_per_epoch = (n / options.batch_size) as usize;
    let total_steps = steps_per_epoch * options.epochs;
    let weights = Tensor::from_slice(&class_weights(&train.class_counts(classes.len()), options.class_weight_power))
        .to_kind(Kind::Float);
    let mut opt =
        nn::Sgd { momentum: 0.9, dampening: 0.0, wd: options.weight_decay, nesterov: true }.build(&vs, options.lr)?;
    let augment = Augment::default();
    tracing::info!(
        params = parameter_count(&vs),
        train = n,
        val = val.len(),
        epochs = options.epochs,
        "training {}",
        task.name
    );

    for epoch in state.epochs_done..options.epochs {
        let started = Instant::now();
        let bar = ProgressBar::new(steps_per_epoch as u64).with_style(
            ProgressStyle::with_template(
                "epoch {msg} [{bar:30}] {pos}/{len} batches, {elapsed_precise} elapsed, eta {eta_precise}",
            )?
            .progress_chars("=> "),
        );
        bar.set_message(format!("{}/{}", epoch + 1, options.epochs));
        let order = Tensor::randperm(n, (Kind::Int64, Device::Cpu));
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0i64, 0i64);
        let mut lr = options.lr;
        for step in 0..steps_per_epoch {
            lr = learning_rate(options.lr, epoch * steps_per_epoch + step, steps_per_epoch, total_steps);
            opt.set_lr(lr);
            let idx = order.narrow(0, step as i64 * options.batch_size, options.batch_size);
            let xs = augment.apply(&train.images.index_select(0, &idx));
            let ys = train.labels.index_select(0, &idx);
            let soft = train.targets.as_ref().map(|t| t.index_select(0, &idx));
            let (loss, right) = train_step(&net, &mut opt, &xs, &ys, soft.as_ref(), &weights, options.label_smoothing);
            loss_sum += loss;
            correct += right;
            seen += options.batch_size;
            bar.inc(1);
            if step % 20 == 0 {
                bar.set_message(format!(
                    "{}/{} loss {:.3} acc {:.1}%",
                    epoch + 1,
                    options.epochs,
                    loss_sum / (step + 1) as f64,
                    100.0 * correct as f64 / seen as f64
                ));
            }
        }
        bar.finish_and_clear();

        let val_accuracy = evaluate(&net, val, classes).accuracy();
        let record = EpochRecord {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / steps_per_epoch as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_accuracy,
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(
            epoch = record.epoch,
            loss = format!("{:.4}", record.train_loss),
            train_acc = format!("{:.4}", record.train_accuracy),
            val_acc = format!("{:.4}", record.val_accuracy),
            secs = format!("{:.0}", record.seconds),
            "epoch done"
        );
        let is_best = val_accuracy > state.best_val_accuracy;
        state.finish_epoch(record, is_best, &vs, run_dir)?;
    }
    Ok(state)
}

/// One optimisation step on a batch: weighted, label-smoothed cross-entropy
/// against the labels `ys`, or against `soft` targets where given, then
/// backward and update. Returns the loss and how many predictions were right
/// (against `ys`).
pub(crate) fn train_step(
    net: &impl nn::ModuleT,
    opt: &mut nn::Optimizer,
    xs: &Tensor,
    ys: &Tensor,
    soft: Option<&Tensor>,
    class_weights: &Tensor,
    label_smoothing: f64,
) -> (f64, i64) {
    let logits = net.forward_t(xs, true);
    let loss = match soft {
        Some(targets) => soft_cross_entropy(&logits, targets, class_weights, label_smoothing),
        None => logits.cross_entropy_loss::<&Tensor>(ys, Some(class_weights), Reduction::Mean, -100, label_smoothing),
    };
    opt.backward_step(&loss);
    let correct = logits.argmax(-1, false).eq_tensor(ys).sum(Kind::Int64).int64_value(&[]);
    (loss.double_value(&[]), correct)
}

/// Cross-entropy against soft targets (`[B, classes]`, rows summing to 1),
/// label-smoothed, each class's term weighted by its class weight and the sum
/// normalised by the targets' weight: for one-hot targets, libtorch's
/// weighted, smoothed loss.
fn soft_cross_entropy(logits: &Tensor, targets: &Tensor, class_weights: &Tensor, label_smoothing: f64) -> Tensor {
    let classes = targets.size()[1] as f64;
    let smoothed = targets * (1.0 - label_smoothing) + label_smoothing / classes;
    let weighted = smoothed * class_weights * logits.log_softmax(-1, Kind::Float);
    -weighted.sum(Kind::Float) / (targets * class_weights).sum(Kind::Float)
}

/// Copies into `vs` every tensor of the safetensors file `path` whose name
/// and shape match one of its variables; returns how many were copied.
pub fn copy_matching_variables(vs: &mut nn::VarStore, path: &Path) -> Result<usize> {
    let saved = Tensor::read_safetensors(path).with_context(|| format!("reading {}", path.display()))?;
    let mut variables = vs.variables();
    let mut copied = 0;
    tch::no_grad(|| {
        for (name, value) in &saved {
            if let Some(var) = variables.get_mut(name) {
                if var.size() == value.size() {
                    var.copy_(value);
                    copied += 1;
                }
            }
        }
    });
    if copied == 0 {
        bail!("{} shares no variable with this network", path.display());
    }
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_zero() {
        let (peak, per_epoch, total) = (0.1, 10, 100);
        assert!((learning_rate(peak, 0, per_epoch, total) - 0.01).abs() < 1e-12);
        assert!((learning_rate(peak, 9, per_epoch, total) - 0.1).abs() < 1e-12);
        assert!(learning_rate(peak, 50, per_epoch, total) < 0.1);
        assert!(learning_rate(peak, 99, per_epoch, total) < 1e-3);
    }

    #[test]
    fn soft_targets_that_are_one_hot_give_the_hard_loss() {
        tch::manual_seed(5);
        let arch = FaceNetConfig { channels: vec![4, 8], hidden: 8, classes: 3, dropout: 0.0, input_size: 48 };
        let xs = Tensor::rand([6, 1, 48, 48], (Kind::Float, Device::Cpu)) * 255.0;
        let ys = Tensor::from_slice(&[0i64, 1, 2, 2, 1, 0]);
        let weights = Tensor::from_slice(&[1.0f32, 2.0, 0.5]);
        let one_hot = ys.one_hot(3).to_kind(Kind::Float);
        // One network for both losses (lr 0 leaves its weights unchanged):
        // two networks from `manual_seed` would differ whenever another test
        // thread draws from libtorch's global generator in between.
        let vs = nn::VarStore::new(Device::Cpu);
        let net = FaceNet::new(&vs.root(), &arch);
        let mut opt = nn::Sgd::default().build(&vs, 0.0).unwrap();
        let losses: Vec<f64> = (0..2)
            .map(|soft| {
                let soft = (soft == 1).then_some(&one_hot);
                train_step(&net, &mut opt, &xs, &ys, soft, &weights, 0.1).0
            })
            .collect();
        assert!((losses[0] - losses[1]).abs() < 1e-5, "{losses:?}");
    }

    #[test]
    fn class_weights_favour_rare_classes() {
        let w = class_weights(&[100, 25, 100], 0.5);
        assert!((w[1] / w[0] - 2.0).abs() < 1e-12);
        assert_eq!(class_weights(&[5, 50], 0.0), vec![1.0, 1.0]);
    }

    #[test]
    fn transfer_copies_every_matching_variable_but_the_resized_classifier() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seven.safetensors");
        let arch = FaceNetConfig { channels: vec![4, 8], hidden: 8, classes: 7, dropout: 0.0, input_size: 48 };
        let source = nn::VarStore::new(Device::Cpu);
        let _seven = FaceNet::new(&source.root(), &arch);
        source.save(&path).unwrap();

        let mut target = nn::VarStore::new(Device::Cpu);
        let _two = FaceNet::new(&target.root(), &FaceNetConfig { classes: 2, ..arch });
        let copied = copy_matching_variables(&mut target, &path).unwrap();
        let (src, dst) = (source.variables(), target.variables());
        assert_eq!(copied, dst.len() - 2, "all but fc2's weight and bias");
        assert!(dst["stage0.conv1.weight"].equal(&src["stage0.conv1.weight"]));
        assert_eq!(dst["fc2.weight"].size(), [2, 8]);
    }

    /// Two classes a network can tell apart (bright vs dark faces): a short run
    /// must learn them, checkpoint, and resume without repeating epochs.
    #[test]
    fn learns_a_separable_toy_task_and_resumes() {
        tch::manual_seed(3);
        let make = |n: i64| {
            let labels = Tensor::randint(2, [n], (Kind::Int64, Device::Cpu));
            let base = labels.to_kind(Kind::Float).view([n, 1, 1, 1]) * 150.0 + 40.0;
            let noise = Tensor::rand([n, 1, 48, 48], (Kind::Float, Device::Cpu)) * 40.0;
            FaceSet::new((base + noise).to_kind(Kind::Uint8), labels)
        };
        let (train, val) = (make(256), make(64));
        let arch = FaceNetConfig { channels: vec![4, 8], hidden: 8, classes: 2, dropout: 0.0, input_size: 48 };
        let task = ClassifierTask { name: "toy", classes: &["dark", "bright"], architecture: arch, init_from: None };
        let options = TrainOptions { epochs: 2, batch_size: 32, lr: 0.02, ..Default::default() };
        let dir = tempfile::tempdir().unwrap();
        let state = train_face_classifier(&task, &train, &val, options.clone(), dir.path(), false).unwrap();
        assert_eq!(state.epochs_done, 2);
        assert!(state.best_val_accuracy > 0.9, "toy accuracy {}", state.best_val_accuracy);
        assert!(dir.path().join("best.safetensors").is_file());

        let again = train_face_classifier(&task, &train, &val, options.clone(), dir.path(), false);
        assert!(again.is_err(), "a second run must not overwrite the first without --resume");

        let longer = TrainOptions { epochs: 3, ..options };
        let resumed = train_face_classifier(&task, &train, &val, longer, dir.path(), true).unwrap();
        assert_eq!(resumed.history.len(), 3);
        assert_eq!(resumed.history[2].epoch, 3);
    }
}
