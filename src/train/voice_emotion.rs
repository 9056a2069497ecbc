//! The `train voice-emotion` and `eval voice-emotion` commands.
//!
//! Split by speaker, never by file (a RAVDESS actor's 60 clips are near
//! duplicates of each other): RAVDESS actors [`HELDOUT_ACTORS`] are the test
//! set, [`VALIDATION_ACTORS`] pick the best epoch, every other actor (and any
//! CREMA-D, TESS or SAVEE clip) trains.
//!
//! Each epoch draws a fresh augmented window from every training clip: a
//! random crop (time shift; clips shorter than the window repeat from a
//! random phase), speed perturbation of +-10% by linear
//! interpolation (tempo and pitch together), a gain of +-6 dB, white noise at
//! 10-30 dB SNR for half the clips, then MFCCs, then a time mask of up to 0.3 s
//! for half the clips. Validation and evaluation run [`predict_clip`], the
//! exact path a served clip takes.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Tensor};

use super::metrics::{calibration, round4, CalibrationReport, CalibrationSummary, ConfusionMatrix, ECE_BINS};
use super::voice_data::{class_counts, load_clips, VoiceClip};
use super::{class_weights, export_weights, learning_rate, train_step, EpochRecord, RunState, TrainOptions};
use crate::features::{MfccConfig, MfccExtractor};
use crate::model::voice::{
    voice_class_names, LoadedVoiceModel, VoiceInputSpec, VoiceModelCard, VoiceNet, VoiceNetConfig, VoiceNormalisation,
    SEXES,
};
use crate::model::{card_path, parameter_count, EMOTIONS};
use crate::predict::voice::{emotion_marginal, predict_clip, sex_marginal, window_samples, Windowing};

/// RAVDESS actors never seen in training: the test set (two men, two women).
pub const HELDOUT_ACTORS: [u32; 4] = [21, 22, 23, 24];
/// RAVDESS actors that choose the best epoch (a man and a woman).
pub const VALIDATION_ACTORS: [u32; 2] = [19, 20];
/// Length of the network's analysis window.
pub const WINDOW_SECONDS: f64 = 3.0;
/// Step between windows of longer clips.
pub const HOP_SECONDS: f64 = 1.0;

/// The training defaults for the voice model (AdamW; `lr` is its peak).
pub fn default_options() -> TrainOptions {
    TrainOptions {
        epochs: 60,
        batch_size: 32,
        lr: 2e-3,
        weight_decay: 1e-2,
        label_smoothing: 0.1,
        class_weight_power: 0.5,
        seed: 1,
    }
}

/// The windowing of the shipped model, in samples at the features' rate.
pub fn windowing(features: &MfccConfig) -> Windowing {
    let rate = f64::from(features.sample_rate);
    Windowing { window: (WINDOW_SECONDS * rate) as usize, hop: (HOP_SECONDS * rate) as usize }
}

/// The RAVDESS actor number of a speaker id, if it is one.
fn ravdess_actor(speaker: &str) -> Option<u32> {
    speaker.strip_prefix("ravdess:")?.parse().ok()
}

/// Splits clips into (train, validation, held-out test) by speaker.
pub fn split_by_speaker(clips: Vec<VoiceClip>) -> (Vec<VoiceClip>, Vec<VoiceClip>, Vec<VoiceClip>) {
    let (mut train, mut val, mut test) = (Vec::new(), Vec::new(), Vec::new());
    for clip in clips {
        match ravdess_actor(&clip.label.speaker) {
            Some(a) if HELDOUT_ACTORS.contains(&a) => test.push(clip),
            Some(a) if VALIDATION_ACTORS.contains(&a) => val.push(clip),
            _ => train.push(clip),
        }
    }
    (train, val, test)
}

/// Stretches `samples` to `len` samples by linear interpolation.
fn stretch(samples: &[f32], len: usize) -> Vec<f32> {
    if samples.len() < 2 || len == 0 {
        return vec![samples.first().copied().unwrap_or(0.0); len];
    }
    let step = (samples.len() - 1) as f64 / (len.max(2) - 1) as f64;
    (0..len)
        .map(|i| {
            let x = i as f64 * step;
            let j = (x as usize).min(samples.len() - 2);
            let frac = (x - j as f64) as f32;
            samples[j] * (1.0 - frac) + samples[j + 1] * frac
        })
        .collect()
}

/// One augmented training window of `window` samples from a clip.
pub fn augment_window(samples: &[f32], window: usize, rng: &mut SmallRng) -> Vec<f32> {
    let speed: f64 = rng.random_range(0.9..1.1);
    let source_len = ((window as f64 * speed) as usize).max(1);
    let start = if samples.len() > source_len { rng.random_range(0..=samples.len() - source_len) } else { 0 };
    let source = &samples[start..(start + source_len).min(samples.len())];
    let stretched = stretch(source, ((source.len() as f64 / speed) as usize).min(window));
    // A short clip repeats to fill the window, from a random phase, as
    // serving does (see `window_samples`).
    let phase = if stretched.len() < window { rng.random_range(0..stretched.len().max(1)) } else { 0 };
    let mut out = window_samples(&stretched, phase, window);

    let gain = 10f32.powf(rng.random_range(-6.0..6.0) / 20.0);
    let level = crate::predict::voice::rms(&stretched) * gain;
    let noise_amplitude = if rng.random_bool(0.5) {
        let snr_db: f32 = rng.random_range(10.0..30.0);
        // Uniform noise on [-a, a] has RMS a / sqrt(3).
        level / 10f32.powf(snr_db / 20.0) * 3f32.sqrt()
    } else {
        0.0
    };
    for s in &mut out {
        *s *= gain;
        if noise_amplitude > 0.0 {
            *s += rng.random_range(-noise_amplitude..noise_amplitude);
        }
    }
    out
}

/// Sets up to `max_frames` consecutive frames of an MFCC map to the
/// per-coefficient training mean (zero after normalisation).
fn time_mask(data: &mut [f32], frames: usize, mean: &[f32], max_frames: usize, rng: &mut SmallRng) {
    let width = rng.random_range(0..=max_frames.min(frames));
    let start = rng.random_range(0..=frames - width);
    for (c, m) in mean.iter().enumerate() {
        data[c * frames + start..c * frames + start + width].fill(*m);
    }
}

/// MFCC maps of one augmented window per clip, as a `[N, n_mfcc, frames]`
/// tensor; the work is split over two threads with seeded generators, so an
/// epoch's data depend only on the seed and the epoch.
fn augmented_batch(clips: &[&VoiceClip], extractor: &MfccExtractor, window: usize, mean: &[f32], seed: u64) -> Tensor {
    let config = extractor.config();
    let frames = config.frames_for(window);
    let per_clip = config.n_mfcc * frames;
    let mut data = vec![0.0f32; clips.len() * per_clip];
    let half = clips.len().div_ceil(2).max(1);
    std::thread::scope(|scope| {
        for (part, (chunk, out)) in clips.chunks(half).zip(data.chunks_mut(half * per_clip)).enumerate() {
            scope.spawn(move || {
                let mut rng = SmallRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(part as u64));
                for (clip, slot) in chunk.iter().zip(out.chunks_mut(per_clip)) {
                    let samples = augment_window(&clip.samples, window, &mut rng);
                    let mfcc = extractor.compute(&samples);
                    slot.copy_from_slice(&mfcc.data);
                    if rng.random_bool(0.5) {
                        time_mask(slot, frames, mean, 30, &mut rng);
                    }
                }
            });
        }
    });
    Tensor::from_slice(&data).view([clips.len() as i64, config.n_mfcc as i64, frames as i64])
}

/// Per-coefficient mean and std over every frame of each clip's first window.
fn feature_stats(clips: &[VoiceClip], extractor: &MfccExtractor, window: usize) -> (Vec<f32>, Vec<f32>) {
    let n = extractor.config().n_mfcc;
    let (mut sum, mut sum_sq, mut count) = (vec![0f64; n], vec![0f64; n], 0f64);
    for clip in clips {
        let mfcc = extractor.compute(&window_samples(&clip.samples, 0, window));
        for c in 0..n {
            for t in 0..mfcc.frames {
                let v = f64::from(mfcc.get(c, t));
                sum[c] += v;
                sum_sq[c] += v * v;
            }
        }
        count += mfcc.frames as f64;
    }
    let mean: Vec<f32> = sum.iter().map(|s| (s / count) as f32).collect();
    let std =
        sum_sq.iter().zip(&sum).map(|(q, s)| ((q / count - (s / count).powi(2)).max(1e-6)).sqrt() as f32).collect();
    (mean, std)
}

/// Clip-level joint probabilities for every clip (the serving path).
pub fn predict_clips(net: &VoiceNet, extractor: &MfccExtractor, clips: &[VoiceClip]) -> Result<Vec<Vec<f32>>> {
    let windowing = windowing(extractor.config());
    clips.iter().map(|c| Ok(predict_clip(net, extractor, &c.samples, windowing)?.joint)).collect()
}

/// Index of the largest value.
fn argmax(values: &[f32]) -> i64 {
    values.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i as i64)
}

/// Confusion matrices of clip-level predictions: 14 joint classes, 7
/// emotions, 2 sexes.
pub fn confusion_matrices(
    predictions: &[Vec<f32>],
    clips: &[VoiceClip],
) -> (ConfusionMatrix, ConfusionMatrix, ConfusionMatrix) {
    let names = voice_class_names();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let joint_truth: Vec<i64> = clips.iter().map(|c| c.label.class() as i64).collect();
    let emotion_truth: Vec<i64> = clips.iter().map(|c| c.label.emotion as i64).collect();
    let sex_truth: Vec<i64> = clips.iter().map(|c| c.label.sex as i64).collect();
    let joint: Vec<i64> = predictions.iter().map(|p| argmax(p)).collect();
    let emotion: Vec<i64> = predictions.iter().map(|p| argmax(&emotion_marginal(p))).collect();
    let sex: Vec<i64> = predictions.iter().map(|p| argmax(&sex_marginal(p))).collect();
    (
        ConfusionMatrix::new(&names, &joint_truth, &joint),
        ConfusionMatrix::new(&EMOTIONS, &emotion_truth, &emotion),
        ConfusionMatrix::new(&SEXES, &sex_truth, &sex),
    )
}

/// Where and how to train.
pub struct VoiceTrainRequest {
    /// Corpus directories (RAVDESS, and optionally CREMA-D, TESS, SAVEE).
    pub data: Vec<PathBuf>,
    pub run_dir: PathBuf,
    pub resume: bool,
    /// Weights file to write the best epoch to, with its card beside it.
    pub export: PathBuf,
    pub options: TrainOptions,
}

/// Trains the voice network; returns the run's state. The best epoch (by
/// 7-emotion accuracy on the validation actors) is in `run_dir/best.safetensors`.
pub fn train_voice(
    train: &[VoiceClip],
    val: &[VoiceClip],
    architecture: &VoiceNetConfig,
    options: TrainOptions,
    run_dir: &Path,
    resume: bool,
) -> Result<RunState<VoiceNetConfig, Vec<f32>>> {
    const TASK: &str = "voice-emotion";
    type State = RunState<VoiceNetConfig, Vec<f32>>;
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    if train.is_empty() || val.is_empty() {
        bail!("training needs clips of both training and validation speakers");
    }
    let extractor = MfccExtractor::new(MfccConfig::voice());
    let windowing = windowing(extractor.config());
    // Seeded before the weights are drawn, so a run's initialisation depends
    // on its seed alone.
    tch::manual_seed(options.seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let mut net = VoiceNet::new(&vs.root(), architecture);

    let mut state = match State::resumable(run_dir, TASK, architecture, resume)? {
        Some(state) => {
            vs.load(run_dir.join("last.safetensors")).context("loading last checkpoint")?;
            state
        }
        None => {
            let (mean, std) = feature_stats(train, &extractor, windowing.window);
            net.set_input_stats(&mean, &std);
            State::new(TASK, architecture.clone(), options.clone(), mean, std)
        }
    };
    state.options.epochs = options.epochs;
    let options = state.options.clone();
    tch::manual_seed(options.seed + state.epochs_done as i64);

    let n = train.len();
    let batch = options.batch_size as usize;
    let steps_per_epoch = n / batch;
    if steps_per_epoch == 0 {
        bail!("{n} training clips are fewer than one batch of {batch}");
    }
    let total_steps = steps_per_epoch * options.epochs;
    let weights =
        Tensor::from_slice(&class_weights(&class_counts(train), options.class_weight_power)).to_kind(Kind::Float);
    let mut opt = nn::AdamW { wd: options.weight_decay, ..Default::default() }.build(&vs, options.lr)?;
    let labels: Vec<i64> = train.iter().map(|c| c.label.class() as i64).collect();
    tracing::info!(
        params = parameter_count(&vs),
        train = n,
        val = val.len(),
        epochs = options.epochs,
        "training {TASK}"
    );

    for epoch in state.epochs_done..options.epochs {
        let started = Instant::now();
        let mut rng = SmallRng::seed_from_u64(options.seed as u64 * 1_000_003 + epoch as u64);
        let mut order: Vec<usize> = (0..n).collect();
        for i in (1..n).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let epoch_clips: Vec<&VoiceClip> = order.iter().map(|&i| &train[i]).collect();
        let xs_all = augmented_batch(&epoch_clips, &extractor, windowing.window, &state.input_mean, rng.random());
        let ys_all = Tensor::from_slice(&order.iter().map(|&i| labels[i]).collect::<Vec<_>>());

        let bar = ProgressBar::new(steps_per_epoch as u64).with_style(
            ProgressStyle::with_template("epoch {msg} [{bar:30}] {pos}/{len} batches, {elapsed_precise}, eta {eta}")?
                .progress_chars("=> "),
        );
        bar.set_message(format!("{}/{}", epoch + 1, options.epochs));
        let (mut loss_sum, mut correct, mut seen, mut lr) = (0.0, 0i64, 0i64, options.lr);
        for step in 0..steps_per_epoch {
            lr = learning_rate(options.lr, epoch * steps_per_epoch + step, steps_per_epoch, total_steps);
            opt.set_lr(lr);
            let xs = xs_all.narrow(0, (step * batch) as i64, batch as i64);
            let ys = ys_all.narrow(0, (step * batch) as i64, batch as i64);
            let (loss, right) = train_step(&net, &mut opt, &xs, &ys, &weights, options.label_smoothing);
            loss_sum += loss;
            correct += right;
            seen += batch as i64;
            bar.inc(1);
        }
        bar.finish_and_clear();

        let (_, emotion7, sex) = confusion_matrices(&predict_clips(&net, &extractor, val)?, val);
        let record = EpochRecord {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / steps_per_epoch as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_accuracy: emotion7.accuracy(),
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(
            epoch = record.epoch,
            loss = format!("{:.4}", record.train_loss),
            train_acc14 = format!("{:.4}", record.train_accuracy),
            val_emotion7 = format!("{:.4}", record.val_accuracy),
            val_sex = format!("{:.4}", sex.accuracy()),
            secs = format!("{:.0}", record.seconds),
            "epoch done"
        );
        // Later epochs win ties: with a decaying rate they are the better-settled weights.
        let is_best = record.val_accuracy >= state.best_val_accuracy;
        state.finish_epoch(record, is_best, &vs, run_dir)?;
    }
    Ok(state)
}

/// Loads the corpora, trains, and exports the chosen epoch with its card.
pub fn run_train(request: &VoiceTrainRequest, architecture: &VoiceNetConfig) -> Result<VoiceModelCard> {
    let rate = MfccConfig::voice().sample_rate;
    tracing::info!(data = ?request.data, "loading speech clips");
    let (train, val, test) = split_by_speaker(load_clips(&request.data, rate)?);
    tracing::info!(train = train.len(), val = val.len(), test = test.len(), "split by speaker");
    let state = train_voice(&train, &val, architecture, request.options.clone(), &request.run_dir, request.resume)?;
    export(&request.run_dir.join("best.safetensors"), &state, train.len(), &request.export, &request.data)
}

fn data_args(data: &[PathBuf]) -> String {
    data.iter().map(|d| format!("--data {}", d.display())).collect::<Vec<_>>().join(" ")
}

/// Copies `weights` to `export` and writes its card (metrics from
/// [`run_eval`] are added later).
pub fn export(
    weights: &Path,
    state: &RunState<VoiceNetConfig, Vec<f32>>,
    train_clips: usize,
    export: &Path,
    data: &[PathBuf],
) -> Result<VoiceModelCard> {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _net = VoiceNet::new(&vs.root(), &state.architecture);
    export_weights(weights, export, &mut vs)?;
    let o = &state.options;
    let card = VoiceModelCard {
        name: "voice_emotion".into(),
        description: "Residual CNN over a 3 s MFCC map giving 14 joint probabilities (7 emotions x 2 sexes); \
                      longer clips are scored in 3 s windows every 1 s and combined by RMS-weighted mean."
            .into(),
        classes: voice_class_names(),
        emotions: EMOTIONS.iter().map(|s| s.to_string()).collect(),
        sexes: SEXES.iter().map(|s| s.to_string()).collect(),
        input: VoiceInputSpec {
            features: MfccConfig::voice(),
            window_seconds: WINDOW_SECONDS,
            hop_seconds: HOP_SECONDS,
            normalisation: VoiceNormalisation {
                mean: state.input_mean.clone(),
                std: state.input_std.clone(),
                note: "(mfcc[c] - mean[c]) / std[c], statistics of the training clips' first 3 s windows, \
                       also stored in the weights as input_mean / input_std"
                    .into(),
            },
        },
        architecture: state.architecture.clone(),
        params: parameter_count(&vs),
        trained_on: format!(
            "{train_clips} clips of RAVDESS speech (actors 1-18; calm merged into neutral; sex from actor parity), \
             best of {} epochs by 7-emotion accuracy on actors {VALIDATION_ACTORS:?} (epoch {}); \
             AdamW lr {} cosine, batch {}, weight decay {}, label smoothing {}, class weights (mean/count)^{}; \
             augmentation: random crop, speed +-10%, gain +-6 dB, noise 10-30 dB SNR, time mask",
            state.epochs_done,
            state.best_epoch,
            o.lr,
            o.batch_size,
            o.weight_decay,
            o.label_smoothing,
            o.class_weight_power
        ),
        metrics: json!({
            "validation_actors": VALIDATION_ACTORS,
            "validation_emotion7_accuracy": state.best_val_accuracy,
        }),
        calibration: None,
        train_command: format!("emotion-ai train voice-emotion {} --epochs {}", data_args(data), o.epochs),
        eval_command: format!("emotion-ai eval voice-emotion {} --write-card", data_args(data)),
    };
    card.save(&card_path(export))?;
    Ok(card)
}

/// What `eval voice-emotion` measured on the held-out actors.
#[derive(Debug)]
pub struct VoiceEvalReport {
    pub clips: u64,
    pub class14_accuracy: f64,
    pub emotion7_accuracy: f64,
    pub sex_accuracy: f64,
    pub emotion7_recall: serde_json::Map<String, serde_json::Value>,
    /// 7-emotion ECE on the held-out actors, raw and with the temperature
    /// fitted on the validation actors.
    pub emotion7_calibration: CalibrationSummary,
    /// Sex ECE on the held-out actors (not used by fusion; no temperature).
    pub sex_calibration: CalibrationReport,
    pub json_path: PathBuf,
    pub png_paths: Vec<PathBuf>,
}

/// Evaluates `weights` on the held-out RAVDESS actors; writes confusion
/// matrices (JSON, and PNGs for 14 classes and 7 emotions) into `out_dir`
/// and, with `write_card`, the metrics into the model card.
pub fn run_eval(data: &[PathBuf], weights: &Path, out_dir: &Path, write_card: bool) -> Result<VoiceEvalReport> {
    let model = LoadedVoiceModel::load(weights)?;
    let extractor = MfccExtractor::new(model.card.input.features.clone());
    let (_, validation, test) = split_by_speaker(load_clips(data, extractor.config().sample_rate)?);
    if test.is_empty() || validation.is_empty() {
        bail!("no clips of the held-out RAVDESS actors {HELDOUT_ACTORS:?} or {VALIDATION_ACTORS:?} under {data:?}");
    }
    let predictions = predict_clips(&model.net, &extractor, &test)?;
    let emotion7_calibration = {
        let emotions = |p: &[Vec<f32>]| p.iter().map(|j| emotion_marginal(j)).collect::<Vec<_>>();
        let truth = |clips: &[VoiceClip]| clips.iter().map(|c| c.label.emotion).collect::<Vec<_>>();
        let validation_predictions = emotions(&predict_clips(&model.net, &extractor, &validation)?);
        CalibrationSummary::fit(
            (&validation_predictions, &truth(&validation)),
            (&emotions(&predictions), &truth(&test)),
            &format!("RAVDESS actors {VALIDATION_ACTORS:?} (validation)"),
        )
    };
    let sex_calibration = calibration(
        &predictions.iter().map(|j| sex_marginal(j)).collect::<Vec<_>>(),
        &test.iter().map(|c| c.label.sex).collect::<Vec<_>>(),
        ECE_BINS,
    );
    let (joint, emotion7, sex) = confusion_matrices(&predictions, &test);
    let emotion7_recall: serde_json::Map<_, _> =
        EMOTIONS.iter().zip(emotion7.recall()).map(|(c, r)| (c.to_string(), json!(round4(r)))).collect();

    std::fs::create_dir_all(out_dir)?;
    let json_path = out_dir.join("voice_emotion_confusion.json");
    let png14 = out_dir.join("voice_emotion_confusion14.png");
    let png7 = out_dir.join("voice_emotion_confusion7.png");
    let report = json!({
        "model": weights.display().to_string(),
        "split": format!("RAVDESS actors {HELDOUT_ACTORS:?}, never seen in training"),
        "clips": joint.total(),
        "class14_accuracy": joint.accuracy(),
        "emotion7_accuracy": emotion7.accuracy(),
        "emotion7_balanced_accuracy": emotion7.balanced_accuracy(),
        "sex_accuracy": sex.accuracy(),
        "emotion7_recall": emotion7_recall,
        "confusion_class14": joint,
        "confusion_emotion7": emotion7,
        "confusion_sex": sex,
        "emotion7_calibration": emotion7_calibration,
        "sex_calibration": sex_calibration,
    });
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")?;
    let title = |what: &str| format!("voice_emotion, {what}, RAVDESS actors 21-24 ({} clips)", joint.total());
    joint.save_png(&png14, &title("14 classes"))?;
    emotion7.save_png(&png7, &title("7 emotions"))?;

    if write_card {
        let mut card = model.card.clone();
        let metrics = card.metrics.as_object_mut().ok_or_else(|| anyhow!("card metrics is not an object"))?;
        metrics.insert("heldout_actors".into(), json!(HELDOUT_ACTORS));
        metrics.insert("heldout_clips".into(), json!(joint.total()));
        metrics.insert("heldout_actor_class14_accuracy".into(), json!(round4(joint.accuracy())));
        metrics.insert("heldout_actor_emotion7_accuracy".into(), json!(round4(emotion7.accuracy())));
        metrics.insert("heldout_actor_emotion7_balanced_accuracy".into(), json!(round4(emotion7.balanced_accuracy())));
        metrics.insert("heldout_actor_sex_accuracy".into(), json!(round4(sex.accuracy())));
        metrics.insert("heldout_actor_emotion7_recall".into(), json!(emotion7_recall));
        metrics.insert("heldout_actor_emotion7_ece".into(), json!(round4(emotion7_calibration.raw.ece)));
        metrics
            .insert("heldout_actor_emotion7_ece_calibrated".into(), json!(round4(emotion7_calibration.calibrated.ece)));
        metrics.insert("heldout_actor_sex_ece".into(), json!(round4(sex_calibration.ece)));
        card.calibration = Some(emotion7_calibration.card_entry());
        card.save(&card_path(weights))?;
    }
    Ok(VoiceEvalReport {
        clips: joint.total(),
        class14_accuracy: joint.accuracy(),
        emotion7_accuracy: emotion7.accuracy(),
        sex_accuracy: sex.accuracy(),
        emotion7_recall,
        emotion7_calibration,
        sex_calibration,
        json_path,
        png_paths: vec![png14, png7],
    })
}

/// The clip-level 7-emotion distribution of every clip of the held-out
/// actors (or, with `validation`, the validation actors), with the true
/// emotions (for `eval fusion`).
pub fn heldout_distributions(
    data: &[PathBuf],
    weights: &Path,
    validation: bool,
) -> Result<(Vec<Vec<f32>>, Vec<usize>)> {
    let model = LoadedVoiceModel::load(weights)?;
    let extractor = MfccExtractor::new(model.card.input.features.clone());
    let (_, validation_clips, test) = split_by_speaker(load_clips(data, extractor.config().sample_rate)?);
    let clips = if validation { validation_clips } else { test };
    if clips.is_empty() {
        bail!("no clips of the RAVDESS actors to evaluate on under {data:?}");
    }
    let predictions = predict_clips(&model.net, &extractor, &clips)?;
    Ok((predictions.iter().map(|j| emotion_marginal(j)).collect(), clips.iter().map(|c| c.label.emotion).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn augmented_windows_have_the_window_length_and_vary() {
        let clip: Vec<f32> = (0..40_000).map(|i| ((i as f32) * 0.05).sin() * 0.3).collect();
        let mut rng = SmallRng::seed_from_u64(7);
        let a = augment_window(&clip, 48_000, &mut rng);
        let b = augment_window(&clip, 48_000, &mut rng);
        assert_eq!((a.len(), b.len()), (48_000, 48_000));
        assert_ne!(a, b);
        assert!(a.iter().all(|s| s.is_finite() && s.abs() < 2.0));
        // Long clips are cropped, short ones repeated: never padded with silence.
        for len in [100_000, 20_000] {
            let constant: Vec<f32> = vec![0.5; len];
            let w = augment_window(&constant, 48_000, &mut rng);
            assert!(w.iter().all(|s| s.abs() > 0.1), "{len}-sample clip");
        }
    }

    #[test]
    fn stretch_keeps_end_points() {
        let s = stretch(&[0.0, 1.0, 2.0], 5);
        assert_eq!(s, vec![0.0, 0.5, 1.0, 1.5, 2.0]);
        assert_eq!(stretch(&[], 3), vec![0.0; 3]);
    }

    #[test]
    fn split_keeps_actors_apart() {
        let clip = |actor: u32| VoiceClip {
            samples: vec![],
            label: super::super::voice_data::VoiceLabel {
                emotion: 0,
                sex: (actor % 2) as usize,
                speaker: format!("ravdess:{actor}"),
            },
            path: PathBuf::new(),
        };
        let (train, val, test) = split_by_speaker((1..=24).map(clip).collect());
        assert_eq!((train.len(), val.len(), test.len()), (18, 2, 4));
        let sexes: Vec<usize> = test.iter().map(|c| c.label.sex).collect();
        assert!(sexes.contains(&0) && sexes.contains(&1), "held-out actors of both sexes");
    }

    /// Two "speakers" a network can tell apart (low and high tones) trained
    /// for two epochs: learns, checkpoints, resumes, exports a loadable card.
    #[test]
    fn trains_a_toy_task_resumes_and_exports() {
        use super::super::voice_data::VoiceLabel;
        // Tones with some noise and a level that varies by clip, so that the
        // clean clips' feature statistics have a natural spread.
        let tone = |freq: f64, speaker: &str, sex: usize, k: usize| {
            let mut rng = SmallRng::seed_from_u64(k as u64 * 2 + sex as u64);
            let level = 0.1 + 0.02 * k as f64;
            VoiceClip {
                samples: (0..16_000 + 400 * k)
                    .map(|i| {
                        let t = i as f64 / 16_000.0;
                        (level * (freq * std::f64::consts::TAU * t).sin() + rng.random_range(-0.02..0.02)) as f32
                    })
                    .collect(),
                label: VoiceLabel { emotion: 3, sex, speaker: speaker.into() },
                path: PathBuf::from(format!("{speaker}-{k}.wav")),
            }
        };
        let make = |speakers: [&str; 2]| -> Vec<VoiceClip> {
            (0..32).flat_map(|k| [tone(150.0, speakers[0], 1, k), tone(1200.0, speakers[1], 0, k)]).collect()
        };
        let (train, val) = (make(["a", "b"]), make(["c", "d"]));
        let arch = VoiceNetConfig { n_mfcc: 40, channels: vec![4, 8], classes: 14, dropout: 0.0 };
        // Only 2 of the 14 classes occur: class weights and label smoothing
        // would push probability towards the 12 absent ones.
        let options = TrainOptions {
            epochs: 6,
            batch_size: 8,
            lr: 5e-3,
            label_smoothing: 0.0,
            class_weight_power: 0.0,
            ..default_options()
        };
        let dir = tempfile::tempdir().unwrap();
        let state =
            train_voice(&train, &val, &arch, TrainOptions { epochs: 3, ..options.clone() }, dir.path(), false).unwrap();
        assert_eq!(state.epochs_done, 3);
        assert!(train_voice(&train, &val, &arch, options.clone(), dir.path(), false).is_err());
        let state = train_voice(&train, &val, &arch, options, dir.path(), true).unwrap();
        assert_eq!(state.history.len(), 6);

        let export_path = dir.path().join("out/voice.safetensors");
        export(&dir.path().join("last.safetensors"), &state, train.len(), &export_path, &[PathBuf::from("d")]).unwrap();
        let model = LoadedVoiceModel::load(&export_path).unwrap();
        let predictions = predict_clips(&model.net, &MfccExtractor::new(MfccConfig::voice()), &val).unwrap();
        let (_, _, sex) = confusion_matrices(&predictions, &val);
        assert!(sex.accuracy() > 0.9, "toy sex accuracy {}, history {:?}", sex.accuracy(), state.history);
    }
}
