//! The `train voice-emotion` and `eval voice-emotion` commands.
//!
//! Split by speaker, never by file (a speaker's clips are near duplicates of
//! each other), corpus by corpus ([`speaker_part`]):
//!
//! | corpus | test speakers | validation speakers |
//! |---|---|---|
//! | RAVDESS | actors [`HELDOUT_ACTORS`] | actors [`VALIDATION_ACTORS`] |
//! | EmoDB | [`EMODB_HELDOUT_SPEAKERS`] | [`EMODB_VALIDATION_SPEAKERS`] |
//! | speechsex | 2 in 10 of each sub-corpus's speakers (by a hash of the id) | 1 in 10 |
//!
//! and every other speaker (and any CREMA-D, TESS or SAVEE clip) trains. A
//! corpus *left out* (`--leave-out emodb`) trains nothing and chooses nothing:
//! all its clips measure the model as a corpus it never heard.
//!
//! Clips with a sex but no emotion (speechsex, EmoDB's boredom) train through
//! the sex marginal of the 14 joint classes, `log sum_e p(e, s)`; every clip
//! also does (weight [`SEX_LOSS_WEIGHT`]), so sex is learnt from all the
//! voices there are. Each epoch draws a fresh augmented window from every
//! clip with an emotion and from [`VoiceTrainRequest::sex_only_per_epoch`]
//! of the others ([`super::voice_augment`]: speed, microphone colour, rooms,
//! telephone, band limits, levels, clipping, noise), then its features (MFCCs
//! with per-window cepstral mean normalisation, and pitch), then a time mask
//! for half of them. Validation and evaluation run [`predict_clip`], the
//! exact path a served clip takes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tch::nn::{self, OptimizerConfig};
use tch::{Device, Kind, Reduction, Tensor};

use super::metrics::{calibration, round4, CalibrationSummary, ConfusionMatrix, ECE_BINS};
use super::voice_augment::{augment_window, shift_pitch_row, VoiceAugment};
use super::voice_data::{class_counts, load_clips, VoiceClip, VoiceLabel};
use super::{class_weights, export_weights, learning_rate, EpochRecord, RunState, TrainOptions};
use crate::features::voice_input::VoiceFeatureExtractor;
use crate::features::MfccConfig;
use crate::model::speaker::SpeakerSexModel;
use crate::model::voice::{
    member_prefix, voice_class_names, LoadedVoiceModel, VoiceClassifier, VoiceInputSpec, VoiceModelCard, VoiceNet,
    VoiceNetConfig, VoiceNormalisation, SEXES,
};
use crate::model::{card_path, parameter_count, EMOTIONS};
use crate::predict::voice::{emotion_marginal, predict_clip, sex_marginal, window_samples, Windowing};

/// RAVDESS actors never seen in training: the test set (two men, two women).
pub const HELDOUT_ACTORS: [u32; 4] = [21, 22, 23, 24];
/// RAVDESS actors that choose the best epoch (a man and a woman).
pub const VALIDATION_ACTORS: [u32; 2] = [19, 20];
/// EmoDB speakers kept for testing when EmoDB trains (a man, a woman).
pub const EMODB_HELDOUT_SPEAKERS: [u32; 2] = [3, 8];
/// EmoDB speakers that help choose the epoch when EmoDB trains.
pub const EMODB_VALIDATION_SPEAKERS: [u32; 2] = [10, 9];
/// Length of the network's analysis window.
pub const WINDOW_SECONDS: f64 = 3.0;
/// Step between windows of longer clips.
pub const HOP_SECONDS: f64 = 1.0;
/// Weight of the sex-marginal loss (on every clip) beside the 14-class loss.
pub const SEX_LOSS_WEIGHT: f64 = 0.5;
/// Weight of sex accuracy beside emotion accuracy when choosing the epoch.
const SEX_SELECTION_WEIGHT: f64 = 0.25;

/// The training defaults for the voice model (AdamW; `lr` is its peak).
pub fn default_options() -> TrainOptions {
    TrainOptions {
        epochs: 40,
        batch_size: 32,
        lr: 2e-3,
        weight_decay: 1e-2,
        label_smoothing: 0.1,
        class_weight_power: 0.5,
        seed: 1,
    }
}

/// The network's input as `input` says (the shipped model: log-mel bands
/// with each window's mean removed) and pitch rows (statistics are filled in
/// by training).
pub fn input_spec(input: &RunInput, mean: Vec<f32>, std: Vec<f32>) -> VoiceInputSpec {
    VoiceInputSpec {
        features: input.features.clone(),
        cmn: input.cmn,
        pitch: true,
        window_seconds: WINDOW_SECONDS,
        hop_seconds: HOP_SECONDS,
        normalisation: VoiceNormalisation {
            mean,
            std,
            note: format!(
                "(x[r] - mean[r]) / std[r] per input row ({}, log2(F0/200), voicing), statistics of the training \
                 clips' first 3 s windows, also stored in the weights as input_mean / input_std",
                input.spectral_rows()
            ),
        },
    }
}

/// What a run's network reads: the spectral rows and whether each window's
/// mean of every row is removed. Kept in the run directory, so that a resume
/// cannot continue a run's checkpoints with other input.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunInput {
    #[serde(flatten)]
    pub features: MfccConfig,
    /// Each window's mean of every spectral row removed (runs from before
    /// this field always removed it).
    #[serde(default = "removed_by_default")]
    pub cmn: bool,
}

fn removed_by_default() -> bool {
    true
}

impl RunInput {
    /// The spectral rows in words, for the card: "40 log-mel bands, each
    /// window's mean removed".
    pub fn spectral_rows(&self) -> String {
        format!(
            "{} {}, each window's mean {}",
            self.features.n_mfcc,
            if self.features.log_mel { "log-mel bands" } else { "MFCCs" },
            if self.cmn { "removed" } else { "kept" }
        )
    }
}

/// The windowing of the shipped model, in samples at the features' rate.
pub fn windowing(features: &MfccConfig) -> Windowing {
    let rate = f64::from(features.sample_rate);
    Windowing { window: (WINDOW_SECONDS * rate) as usize, hop: (HOP_SECONDS * rate) as usize }
}

/// Which part of the split a speaker belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitPart {
    Train,
    Validation,
    Test,
}

impl SplitPart {
    /// What reports and dumps call the part.
    pub fn name(self) -> &'static str {
        match self {
            SplitPart::Train => "train",
            SplitPart::Validation => "validation",
            SplitPart::Test => "test",
        }
    }
}

/// FNV-1a: a hash that never changes between runs or platforms.
fn stable_hash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// The part of the split of a corpus-qualified speaker id (see the module
/// docs).
pub fn speaker_part(speaker: &str) -> SplitPart {
    let (corpus, id) = speaker.split_once(':').unwrap_or(("", speaker));
    let number = id.parse::<u32>().ok();
    match (corpus, number) {
        ("ravdess", Some(a)) if HELDOUT_ACTORS.contains(&a) => SplitPart::Test,
        ("ravdess", Some(a)) if VALIDATION_ACTORS.contains(&a) => SplitPart::Validation,
        ("emodb", Some(s)) if EMODB_HELDOUT_SPEAKERS.contains(&s) => SplitPart::Test,
        ("emodb", Some(s)) if EMODB_VALIDATION_SPEAKERS.contains(&s) => SplitPart::Validation,
        ("speechsex", _) => match stable_hash(id) % 10 {
            0 | 1 => SplitPart::Test,
            2 => SplitPart::Validation,
            _ => SplitPart::Train,
        },
        _ => SplitPart::Train,
    }
}

/// Clips split by speaker.
#[derive(Debug, Default)]
pub struct SpeakerSplit {
    pub train: Vec<VoiceClip>,
    pub validation: Vec<VoiceClip>,
    pub test: Vec<VoiceClip>,
}

/// Splits clips by speaker; every clip of a corpus in `leave_out` is a test
/// clip.
pub fn split_by_speaker(clips: Vec<VoiceClip>, leave_out: &[String]) -> SpeakerSplit {
    let mut split = SpeakerSplit::default();
    for clip in clips {
        let part = if leave_out.iter().any(|c| c == clip.label.corpus()) {
            SplitPart::Test
        } else {
            speaker_part(&clip.label.speaker)
        };
        match part {
            SplitPart::Train => split.train.push(clip),
            SplitPart::Validation => split.validation.push(clip),
            SplitPart::Test => split.test.push(clip),
        }
    }
    split
}

/// The corpora of `clips`, sorted, each once.
pub fn corpora(clips: &[VoiceClip]) -> Vec<String> {
    let mut names: Vec<String> = clips.iter().map(|c| c.label.corpus().to_string()).collect();
    names.sort();
    names.dedup();
    names
}

/// Sets up to `max_frames` consecutive frames of a feature map to the
/// per-row training mean (zero after normalisation).
fn time_mask(data: &mut [f32], frames: usize, mean: &[f32], max_frames: usize, rng: &mut SmallRng) {
    let width = rng.random_range(0..=max_frames.min(frames));
    let start = rng.random_range(0..=frames - width);
    for (r, m) in mean.iter().enumerate() {
        data[r * frames + start..r * frames + start + width].fill(*m);
    }
}

/// Sets up to `max_rows` consecutive rows among the first `spectral_rows` of
/// a `[rows, frames]` feature map to their training mean (zero after
/// normalisation), every frame of them.
fn frequency_mask(
    data: &mut [f32],
    frames: usize,
    spectral_rows: usize,
    mean: &[f32],
    max_rows: usize,
    rng: &mut SmallRng,
) {
    let height = rng.random_range(0..=max_rows.min(spectral_rows));
    let start = rng.random_range(0..=spectral_rows - height);
    for r in start..start + height {
        data[r * frames..(r + 1) * frames].fill(mean[r]);
    }
}

/// Feature maps of one augmented window per clip, as a `[N, rows, frames]`
/// tensor; the work is split over two threads with seeded generators, so an
/// epoch's data depend only on the seed and the epoch.
fn augmented_batch(
    clips: &[&VoiceClip],
    extractor: &VoiceFeatureExtractor,
    recipe: &VoiceAugment,
    window: usize,
    mean: &[f32],
    seed: u64,
) -> Tensor {
    let rows = extractor.rows();
    let frames = extractor.frames_for(window);
    let rate = f64::from(extractor.mfcc_config().sample_rate);
    let spectral_rows = extractor.mfcc_config().n_mfcc;
    let per_clip = rows * frames;
    let mut data = vec![0.0f32; clips.len() * per_clip];
    let half = clips.len().div_ceil(2).max(1);
    std::thread::scope(|scope| {
        for (part, (chunk, out)) in clips.chunks(half).zip(data.chunks_mut(half * per_clip)).enumerate() {
            scope.spawn(move || {
                let mut rng = SmallRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(part as u64));
                for (clip, slot) in chunk.iter().zip(out.chunks_mut(per_clip)) {
                    let samples = augment_window(&clip.samples, window, rate, recipe, &mut rng);
                    slot.copy_from_slice(&extractor.compute(&samples).data);
                    if recipe.f0_shift > 0.0 && rng.random_bool(0.5) {
                        shift_pitch_row(slot, rows, frames, recipe.f0_shift, &mut rng);
                    }
                    if rng.random_bool(0.5) {
                        time_mask(slot, frames, mean, 30, &mut rng);
                    }
                    if recipe.freq_mask > 0 && rng.random_bool(0.5) {
                        frequency_mask(slot, frames, spectral_rows, mean, recipe.freq_mask, &mut rng);
                    }
                }
            });
        }
    });
    Tensor::from_slice(&data).view([clips.len() as i64, rows as i64, frames as i64])
}

/// Per-row mean and std over every frame of each clip's first window.
fn feature_stats(clips: &[VoiceClip], extractor: &VoiceFeatureExtractor, window: usize) -> (Vec<f32>, Vec<f32>) {
    let n = extractor.rows();
    let (mut sum, mut sum_sq, mut count) = (vec![0f64; n], vec![0f64; n], 0f64);
    for clip in clips {
        let map = extractor.compute(&window_samples(&clip.samples, 0, window));
        for (r, row) in map.data.chunks(map.frames).enumerate() {
            for &v in row {
                sum[r] += f64::from(v);
                sum_sq[r] += f64::from(v) * f64::from(v);
            }
        }
        count += map.frames as f64;
    }
    let mean: Vec<f32> = sum.iter().map(|s| (s / count) as f32).collect();
    let std =
        sum_sq.iter().zip(&sum).map(|(q, s)| ((q / count - (s / count).powi(2)).max(1e-6)).sqrt() as f32).collect();
    (mean, std)
}

/// Clip-level joint probabilities for every clip (the serving path), on both
/// cores.
pub fn predict_clips(
    net: &impl VoiceClassifier,
    extractor: &VoiceFeatureExtractor,
    sex_head: Option<&SpeakerSexModel>,
    clips: &[VoiceClip],
) -> Result<Vec<Vec<f32>>> {
    let windowing = windowing(extractor.mfcc_config());
    clips.iter().map(|c| Ok(predict_clip(net, extractor, sex_head, &c.samples, windowing)?.joint)).collect()
}

/// Index of the largest value.
fn argmax(values: &[f32]) -> i64 {
    super::metrics::argmax(values) as i64
}

/// Confusion matrices of clip-level predictions: 14 joint classes and 7
/// emotions over the clips with an emotion, 2 sexes over all.
pub fn confusion_matrices(
    predictions: &[Vec<f32>],
    clips: &[VoiceClip],
) -> (ConfusionMatrix, ConfusionMatrix, ConfusionMatrix) {
    let pairs: Vec<(&[f32], &VoiceLabel)> =
        predictions.iter().map(Vec::as_slice).zip(clips.iter().map(|c| &c.label)).collect();
    confusion_of(&pairs)
}

/// [`confusion_matrices`] of (prediction, label) pairs.
fn confusion_of(pairs: &[(&[f32], &VoiceLabel)]) -> (ConfusionMatrix, ConfusionMatrix, ConfusionMatrix) {
    let names = voice_class_names();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let with_emotion: Vec<&(&[f32], &VoiceLabel)> = pairs.iter().filter(|(_, l)| l.emotion.is_some()).collect();
    let joint_truth: Vec<i64> = with_emotion.iter().filter_map(|(_, l)| l.class()).map(|c| c as i64).collect();
    let emotion_truth: Vec<i64> = with_emotion.iter().filter_map(|(_, l)| l.emotion).map(|e| e as i64).collect();
    let joint: Vec<i64> = with_emotion.iter().map(|(p, _)| argmax(p)).collect();
    let emotion: Vec<i64> = with_emotion.iter().map(|(p, _)| argmax(&emotion_marginal(p))).collect();
    let sex_truth: Vec<i64> = pairs.iter().map(|(_, l)| l.sex as i64).collect();
    let sex: Vec<i64> = pairs.iter().map(|(p, _)| argmax(&sex_marginal(p))).collect();
    (
        ConfusionMatrix::new(&names, &joint_truth, &joint),
        ConfusionMatrix::new(&EMOTIONS, &emotion_truth, &emotion),
        ConfusionMatrix::new(&SEXES, &sex_truth, &sex),
    )
}

/// The loss of a batch with partial labels: the 14-class loss on the rows
/// whose `classes` are known (not -1), and the sex-marginal loss on every
/// row. Also returns the sex logits.
fn partial_label_loss(
    logits: &Tensor,
    classes: &[i64],
    sexes: &[i64],
    weights: &Tensor,
    label_smoothing: f64,
) -> (Tensor, Tensor) {
    let batch = classes.len() as i64;
    // [N, 14] emotion-major -> [N, 7, 2] -> log-sum over emotions -> [N, 2].
    let sex_logits =
        logits.view([batch, EMOTIONS.len() as i64, SEXES.len() as i64]).logsumexp([1i64].as_slice(), false);
    let sex_truth = Tensor::from_slice(sexes);
    let mut loss =
        sex_logits.cross_entropy_loss::<&Tensor>(&sex_truth, None, Reduction::Mean, -100, 0.0) * SEX_LOSS_WEIGHT;
    let known: Vec<i64> = (0..batch).filter(|&i| classes[i as usize] >= 0).collect();
    if !known.is_empty() {
        let rows = Tensor::from_slice(&known);
        let truth = Tensor::from_slice(&known.iter().map(|&i| classes[i as usize]).collect::<Vec<_>>());
        let joint = logits.index_select(0, &rows).cross_entropy_loss::<&Tensor>(
            &truth,
            Some(weights),
            Reduction::Mean,
            -100,
            label_smoothing,
        );
        // Scaled by the share of rows it covers, so that a batch's loss does not
        // depend on how many sex-only clips it happened to draw.
        loss += joint * (known.len() as f64 / batch as f64);
    }
    (loss, sex_logits)
}

/// Mixup of a batch: each row becomes `lambda` of itself and `1 - lambda`
/// of its partner row.
pub struct Mixup<'a> {
    pub lambda: f64,
    pub partner: &'a [i64],
}

/// One optimisation step on a batch with partial labels
/// ([`partial_label_loss`]); with `mixup`, on the mixed rows, the loss the
/// same mix of the rows' own labels and their partners'. Returns the loss
/// and the rows whose sex was right.
#[allow(clippy::too_many_arguments)]
fn partial_label_step(
    net: &VoiceNet,
    opt: &mut nn::Optimizer,
    xs: &Tensor,
    classes: &[i64],
    sexes: &[i64],
    weights: &Tensor,
    label_smoothing: f64,
    mixup: Option<Mixup>,
) -> (f64, i64) {
    use tch::nn::ModuleT;
    let input = match &mixup {
        Some(m) => xs * m.lambda + xs.index_select(0, &Tensor::from_slice(m.partner)) * (1.0 - m.lambda),
        None => xs.shallow_clone(),
    };
    let logits = net.forward_t(&input, true);
    let (mut loss, sex_logits) = partial_label_loss(&logits, classes, sexes, weights, label_smoothing);
    if let Some(m) = &mixup {
        let of_partner = |labels: &[i64]| m.partner.iter().map(|&j| labels[j as usize]).collect::<Vec<i64>>();
        let (partner_loss, _) =
            partial_label_loss(&logits, &of_partner(classes), &of_partner(sexes), weights, label_smoothing);
        loss = loss * m.lambda + partner_loss * (1.0 - m.lambda);
    }
    opt.backward_step(&loss);
    let right = sex_logits.argmax(-1, false).eq_tensor(&Tensor::from_slice(sexes)).sum(Kind::Int64).int64_value(&[]);
    (loss.double_value(&[]), right)
}

/// A draw from Beta(`alpha`, `alpha`), `alpha` in (0, 1] (Johnk's method).
pub fn beta_symmetric(alpha: f64, rng: &mut SmallRng) -> f64 {
    loop {
        let x = rng.random::<f64>().powf(1.0 / alpha);
        let y = rng.random::<f64>().powf(1.0 / alpha);
        if x + y <= 1.0 && x + y > 0.0 {
            return x / (x + y);
        }
    }
}

/// What the epoch is chosen by: the mean 7-emotion accuracy over the
/// validation corpora that have emotions, plus a quarter of the mean sex
/// accuracy over all validation corpora.
fn selection_score(predictions: &[Vec<f32>], clips: &[VoiceClip]) -> (f64, f64, f64) {
    let (mut emotion, mut sex) = (Vec::new(), Vec::new());
    for corpus in corpora(clips) {
        let pairs: Vec<(&[f32], &VoiceLabel)> = predictions
            .iter()
            .zip(clips)
            .filter(|(_, c)| c.label.corpus() == corpus)
            .map(|(p, c)| (p.as_slice(), &c.label))
            .collect();
        let (_, e7, s) = confusion_of(&pairs);
        if e7.total() > 0 {
            emotion.push(e7.accuracy());
        }
        sex.push(s.accuracy());
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
    let (e, s) = (mean(&emotion), mean(&sex));
    (e + SEX_SELECTION_WEIGHT * s, e, s)
}

/// Where and how to train.
#[derive(Clone)]
pub struct VoiceTrainRequest {
    /// Corpus directories (RAVDESS, EmoDB, speechsex, and optionally CREMA-D,
    /// TESS, SAVEE).
    pub data: Vec<PathBuf>,
    /// Corpora to keep out of training and epoch choice entirely.
    pub leave_out: Vec<String>,
    pub run_dir: PathBuf,
    pub resume: bool,
    /// Weights file to write the best epoch to, with its card beside it.
    pub export: PathBuf,
    pub options: TrainOptions,
    pub augment: VoiceAugment,
    /// The spectral rows ([`MfccConfig::voice_log_mel`] for the shipped
    /// model, [`MfccConfig::voice`] for MFCCs, the model before it) and
    /// whether each window's mean is removed (the shipped model: yes).
    pub input: RunInput,
    /// Clips without an emotion drawn each epoch (they outnumber the others;
    /// the shipped recipe: [`DEFAULT_SEX_ONLY_PER_EPOCH`]).
    pub sex_only_per_epoch: usize,
    /// Random windows of every clip with an emotion in each epoch (1: one):
    /// more keeps their share of an epoch when more sex-only clips are drawn.
    pub emotion_windows_per_epoch: usize,
    /// Decay of an exponential moving average of the weights, updated after
    /// every step; when set, the averaged weights are what each epoch's
    /// validation measures and what is exported. See [`WeightAverage`].
    pub weight_average: Option<f64>,
}

/// Sex-only clips drawn each epoch by the shipped recipe.
pub const DEFAULT_SEX_ONLY_PER_EPOCH: usize = 700;

/// An exponential moving average of a network's variables (Polyak
/// averaging). The raw weights jump from batch to batch; their running mean
/// sits nearer the middle of the region they wander in, and its validation
/// score moves smoothly from epoch to epoch, so the epoch chosen on a few
/// validation speakers is less often a lucky spike.
pub struct WeightAverage {
    pub decay: f64,
    /// The averaged variables, and a network that reads them.
    pub vs: nn::VarStore,
    pub net: VoiceNet,
    updates: u64,
}

impl WeightAverage {
    /// Starts the average at the current variables of `trained`, a network of
    /// shape `architecture`.
    pub fn new(decay: f64, architecture: &VoiceNetConfig, trained: &nn::VarStore) -> Result<Self> {
        anyhow::ensure!(decay > 0.0 && decay < 1.0, "a weight-average decay must lie between 0 and 1, not {decay}");
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = VoiceNet::new(&vs.root(), architecture);
        vs.copy(trained)?;
        Ok(Self { decay, vs, net, updates: 0 })
    }

    /// Moves the average towards `net`'s variables. Early on the effective
    /// decay is smaller (`(1 + n) / (10 + n)`), so the first random weights
    /// do not linger.
    pub fn update(&mut self, net: &nn::VarStore) {
        self.updates += 1;
        let n = self.updates as f64;
        let decay = self.decay.min((1.0 + n) / (10.0 + n));
        let current = net.variables();
        tch::no_grad(|| {
            for (name, mut average) in self.vs.variables() {
                if let Some(value) = current.get(&name) {
                    average.copy_(&(&average * decay + value * (1.0 - decay)));
                }
            }
        });
    }
}

/// Writes `value` to `run_dir/file`; on a resume, first refuses to go on if
/// the run was started with another value (`flags` name the options that set
/// it). A run without the file (from before the setting was kept) is taken
/// to have had `absent`, or is not checked when that is `None`.
fn pin_run_setting<T>(
    run_dir: &Path,
    file: &str,
    value: &T,
    absent: Option<T>,
    request: &VoiceTrainRequest,
    flags: &str,
) -> Result<()>
where
    T: serde::Serialize + serde::de::DeserializeOwned + PartialEq,
{
    let path = run_dir.join(file);
    let started = State::path(run_dir).is_file();
    if started && !request.resume {
        // Left as it is: `State::resumable` refuses to start over a run.
        return Ok(());
    }
    if started {
        let earlier = if path.is_file() {
            let text = std::fs::read_to_string(&path)?;
            Some(serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?)
        } else {
            absent
        };
        if let Some(earlier) = earlier.filter(|e| e != value) {
            bail!(
                "{} was trained with other settings ({}); resume it with the same {flags}",
                run_dir.display(),
                serde_json::to_string(&earlier)?
            );
        }
    }
    std::fs::write(&path, serde_json::to_string_pretty(value)?)?;
    Ok(())
}

type State = RunState<VoiceNetConfig, Vec<f32>>;

/// Trains the voice network; returns the run's state. The best epoch (by
/// `selection_score` on the validation clips) is in
/// `run_dir/best.safetensors`.
pub fn train_voice(
    train: &[VoiceClip],
    val: &[VoiceClip],
    architecture: &VoiceNetConfig,
    request: &VoiceTrainRequest,
) -> Result<RunState<VoiceNetConfig, Vec<f32>>> {
    const TASK: &str = "voice-emotion";
    let (run_dir, options) = (&request.run_dir, request.options.clone());
    std::fs::create_dir_all(run_dir).with_context(|| format!("creating {}", run_dir.display()))?;
    if train.is_empty() || val.is_empty() {
        bail!("training needs clips of both training and validation speakers");
    }
    // The run's checkpoints and input statistics belong to its features (and
    // its averaged weights to their decay): a resume must not continue them
    // with others.
    pin_run_setting(run_dir, "features.json", &request.input, None, request, "--features and --window-mean")?;
    pin_run_setting(run_dir, "weight_average.json", &request.weight_average, Some(None), request, "--weight-average")?;
    pin_run_setting(
        run_dir,
        "augment.json",
        &request.augment,
        None,
        request,
        "augmentation (--f0-shift, --pitch-shift, --speed, --freq-mask, --mixup)",
    )?;
    let spec = input_spec(&request.input, Vec::new(), Vec::new());
    if architecture.n_mfcc != spec.rows() as i64 {
        bail!("the network reads {} rows but the features have {}", architecture.n_mfcc, spec.rows());
    }
    let extractor = spec.extractor();
    let windowing = windowing(extractor.mfcc_config());
    // Seeded before the weights are drawn, so a run's initialisation depends
    // on its seed alone.
    tch::manual_seed(options.seed);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let mut net = VoiceNet::new(&vs.root(), architecture);

    let mut state = match State::resumable(run_dir, TASK, architecture, request.resume)? {
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

    let (with_emotion, sex_only): (Vec<&VoiceClip>, Vec<&VoiceClip>) =
        train.iter().partition(|c| c.label.emotion.is_some());
    if request.emotion_windows_per_epoch == 0 {
        bail!("--emotion-windows-per-epoch must be at least 1");
    }
    let per_epoch =
        with_emotion.len() * request.emotion_windows_per_epoch + request.sex_only_per_epoch.min(sex_only.len());
    let batch = options.batch_size as usize;
    let steps_per_epoch = per_epoch / batch;
    if steps_per_epoch == 0 {
        bail!("{per_epoch} training clips an epoch are fewer than one batch of {batch}");
    }
    let total_steps = steps_per_epoch * options.epochs;
    let average_path = run_dir.join("average.safetensors");
    let mut average = match request.weight_average {
        Some(decay) => {
            let mut average = WeightAverage::new(decay, architecture, &vs)?;
            if state.epochs_done > 0 {
                average.vs.load(&average_path).context("loading the averaged weights of the run")?;
                // Past its first steps: no second warm-up with the small decay.
                average.updates = (state.epochs_done * steps_per_epoch) as u64;
            }
            Some(average)
        }
        None => None,
    };
    let weights =
        Tensor::from_slice(&class_weights(&class_counts(train), options.class_weight_power)).to_kind(Kind::Float);
    let mut opt = nn::AdamW { wd: options.weight_decay, ..Default::default() }.build(&vs, options.lr)?;
    tracing::info!(
        params = parameter_count(&vs),
        with_emotion = with_emotion.len(),
        sex_only = sex_only.len(),
        per_epoch,
        val = val.len(),
        epochs = options.epochs,
        "training {TASK}"
    );

    for epoch in state.epochs_done..options.epochs {
        let started = Instant::now();
        let mut rng = SmallRng::seed_from_u64(options.seed as u64 * 1_000_003 + epoch as u64);
        let mut extra: Vec<&VoiceClip> = sex_only.clone();
        for i in (1..extra.len()).rev() {
            extra.swap(i, rng.random_range(0..=i));
        }
        extra.truncate(request.sex_only_per_epoch);
        // Each repeat of a clip gets a window and augmentation of its own.
        let repeated = std::iter::repeat_n(with_emotion.iter().copied(), request.emotion_windows_per_epoch).flatten();
        let mut epoch_clips: Vec<&VoiceClip> = repeated.chain(extra).collect();
        for i in (1..epoch_clips.len()).rev() {
            epoch_clips.swap(i, rng.random_range(0..=i));
        }
        let xs_all = augmented_batch(
            &epoch_clips,
            &extractor,
            &request.augment,
            windowing.window,
            &state.input_mean,
            rng.random(),
        );
        let classes: Vec<i64> = epoch_clips.iter().map(|c| c.label.class().map_or(-1, |c| c as i64)).collect();
        let sexes: Vec<i64> = epoch_clips.iter().map(|c| c.label.sex as i64).collect();

        let bar = ProgressBar::new(steps_per_epoch as u64).with_style(
            ProgressStyle::with_template("epoch {msg} [{bar:30}] {pos}/{len} batches, {elapsed_precise}, eta {eta}")?
                .progress_chars("=> "),
        );
        bar.set_message(format!("{}/{}", epoch + 1, options.epochs));
        let (mut loss_sum, mut correct, mut seen, mut lr) = (0.0, 0i64, 0i64, options.lr);
        for step in 0..steps_per_epoch {
            lr = learning_rate(options.lr, epoch * steps_per_epoch + step, steps_per_epoch, total_steps);
            opt.set_lr(lr);
            let rows = step * batch..(step + 1) * batch;
            let xs = xs_all.narrow(0, (step * batch) as i64, batch as i64);
            // Mixup: the larger share stays the row's own, so its labels lead.
            let mut partner: Vec<i64> = (0..batch as i64).collect();
            let mixup = (request.augment.mixup > 0.0).then(|| {
                for i in (1..partner.len()).rev() {
                    partner.swap(i, rng.random_range(0..=i));
                }
                let lambda = beta_symmetric(f64::from(request.augment.mixup), &mut rng);
                Mixup { lambda: lambda.max(1.0 - lambda), partner: &partner }
            });
            let (loss, right) = partial_label_step(
                &net,
                &mut opt,
                &xs,
                &classes[rows.clone()],
                &sexes[rows],
                &weights,
                options.label_smoothing,
                mixup,
            );
            if let Some(average) = &mut average {
                average.update(&vs);
            }
            loss_sum += loss;
            correct += right;
            seen += batch as i64;
            bar.inc(1);
        }
        bar.finish_and_clear();

        // With averaging on, the averaged weights are the ones measured, chosen
        // and exported; the raw ones only carry on training.
        let (measured_vs, measured_net) = match &average {
            Some(average) => (&average.vs, &average.net),
            None => (&vs, &net),
        };
        let (score, val_emotion, val_sex) = selection_score(&predict_clips(measured_net, &extractor, None, val)?, val);
        let record = EpochRecord {
            epoch: epoch + 1,
            lr,
            train_loss: loss_sum / steps_per_epoch as f64,
            train_accuracy: correct as f64 / seen.max(1) as f64,
            val_accuracy: score,
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(
            epoch = record.epoch,
            loss = format!("{:.4}", record.train_loss),
            train_sex = format!("{:.4}", record.train_accuracy),
            val_emotion7 = format!("{val_emotion:.4}"),
            val_sex = format!("{val_sex:.4}"),
            score = format!("{score:.4}"),
            secs = format!("{:.0}", record.seconds),
            "epoch done"
        );
        // Later epochs win ties: with a decaying rate they are the better-settled weights.
        let is_best = record.val_accuracy >= state.best_val_accuracy;
        if let Some(average) = &average {
            super::save_atomic(&average.vs, &average_path)?;
        }
        state.finish_epoch_measured(record, is_best, &vs, measured_vs, run_dir)?;
    }
    Ok(state)
}

/// Loads the corpora, trains, and exports the chosen epoch with its card.
pub fn run_train(request: &VoiceTrainRequest, architecture: &VoiceNetConfig) -> Result<VoiceModelCard> {
    let rate = MfccConfig::voice().sample_rate;
    tracing::info!(data = ?request.data, leave_out = ?request.leave_out, "loading speech clips");
    let split = split_by_speaker(load_clips(&request.data, rate)?, &request.leave_out);
    tracing::info!(
        train = split.train.len(),
        val = split.validation.len(),
        test = split.test.len(),
        "split by speaker"
    );
    let state = train_voice(&split.train, &split.validation, architecture, request)?;
    export(&request.run_dir.join("best.safetensors"), &state, &split, request)
}

fn data_args(data: &[PathBuf]) -> String {
    data.iter().map(|d| format!("--data {}", d.display())).collect::<Vec<_>>().join(" ")
}

/// ` --NAME VALUE` for the card's command where `shown` (the value is not
/// what the command line gives without the flag), else nothing.
pub(crate) fn flag_if(shown: bool, name: &str, value: impl std::fmt::Display) -> String {
    if shown {
        format!(" --{name} {value}")
    } else {
        String::new()
    }
}

fn leave_out_args(leave_out: &[String]) -> String {
    leave_out.iter().map(|c| format!(" --leave-out {c}")).collect()
}

/// Copies `weights` to the request's export path and writes its card
/// (metrics from [`run_eval`] are added later).
pub fn export(
    weights: &Path,
    state: &RunState<VoiceNetConfig, Vec<f32>>,
    split: &SpeakerSplit,
    request: &VoiceTrainRequest,
) -> Result<VoiceModelCard> {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _net = VoiceNet::new(&vs.root(), &state.architecture);
    export_weights(weights, &request.export, &mut vs)?;
    let (o, augment) = (&state.options, &request.augment);
    let mut seen = corpora(&split.train);
    seen.extend(corpora(&split.validation));
    seen.sort();
    seen.dedup();
    let count = |clips: &[VoiceClip], corpus: &str| clips.iter().filter(|c| c.label.corpus() == corpus).count();
    let per_corpus: Vec<String> = seen
        .iter()
        .map(|c| format!("{c} {} train / {} validation clips", count(&split.train, c), count(&split.validation, c)))
        .collect();
    let card = VoiceModelCard {
        name: "voice_emotion".into(),
        description: format!(
            "Residual CNN over a 3 s map of {} and two pitch rows, giving 14 joint probabilities (7 \
             emotions x 2 sexes); longer clips are scored in 3 s windows every 1 s and combined by RMS-weighted mean \
             over the windows that hold speech.",
            request.input.spectral_rows()
        ),
        classes: voice_class_names(),
        emotions: EMOTIONS.iter().map(|s| s.to_string()).collect(),
        sexes: SEXES.iter().map(|s| s.to_string()).collect(),
        input: input_spec(&request.input, state.input_mean.clone(), state.input_std.clone()),
        architecture: state.architecture.clone(),
        ensemble: Vec::new(),
        params: parameter_count(&vs),
        trained_on: format!(
            "{} (split by speaker: RAVDESS actors 1-18 train, {VALIDATION_ACTORS:?} validate, {HELDOUT_ACTORS:?} test; \
             EmoDB speakers {EMODB_VALIDATION_SPEAKERS:?} validate, {EMODB_HELDOUT_SPEAKERS:?} test; speechsex \
             2 in 10 speakers test, 1 in 10 validate); left out entirely: {}. Clips without an emotion (speechsex, \
             EmoDB boredom) train through the sex marginal. Best of {} epochs{} by validation 7-emotion accuracy + \
             {SEX_SELECTION_WEIGHT} x sex accuracy (epoch {}); {} sex-only clips and {} window(s) of every clip \
             with an emotion an epoch; AdamW lr {} cosine, \
             batch {}, weight decay {}, label smoothing {}, class weights (mean/count)^{}, sex loss weight \
             {SEX_LOSS_WEIGHT}; augmentation {}",
            per_corpus.join(", "),
            if request.leave_out.is_empty() { "none".to_string() } else { request.leave_out.join(", ") },
            state.epochs_done,
            request
                .weight_average
                .map(|d| format!(" of weights averaged over the steps (exponential moving average, decay {d})"))
                .unwrap_or_default(),
            state.best_epoch,
            request.sex_only_per_epoch,
            request.emotion_windows_per_epoch,
            o.lr,
            o.batch_size,
            o.weight_decay,
            o.label_smoothing,
            o.class_weight_power,
            serde_json::to_string(&request.augment)?,
        ),
        training_corpora: seen,
        metrics: json!({
            "validation_score": state.best_val_accuracy,
        }),
        calibration: None,
        mixed: None,
        // The seed is named when it is not the default: two members of an
        // ensemble differ by nothing else.
        train_command: format!(
            "emotion-ai train voice-emotion {}{}{}{}{}{}{}{}{}{}{}{}{} --epochs {}{}",
            data_args(&request.data),
            leave_out_args(&request.leave_out),
            if request.input.features.log_mel { " --features log-mel" } else { " --features mfcc" },
            if request.input.cmn { "" } else { " --window-mean keep" },
            request.weight_average.map(|d| format!(" --weight-average {d}")).unwrap_or_default(),
            flag_if(augment.f0_shift > 0.0, "f0-shift", augment.f0_shift),
            flag_if(augment.pitch_shift > 0.0, "pitch-shift", augment.pitch_shift),
            flag_if(augment.speed != VoiceAugment::channel_robust().speed, "speed", augment.speed),
            flag_if(augment.freq_mask > 0, "freq-mask", augment.freq_mask),
            flag_if(augment.mixup > 0.0, "mixup", augment.mixup),
            flag_if(augment.short_excerpt > 0.0, "short-excerpts", augment.short_excerpt),
            flag_if(
                request.sex_only_per_epoch != DEFAULT_SEX_ONLY_PER_EPOCH,
                "sex-only-per-epoch",
                request.sex_only_per_epoch
            ),
            flag_if(
                request.emotion_windows_per_epoch != 1,
                "emotion-windows-per-epoch",
                request.emotion_windows_per_epoch
            ),
            o.epochs,
            if o.seed == default_options().seed { String::new() } else { format!(" --seed {}", o.seed) }
        ),
        eval_command: format!("emotion-ai eval voice-emotion {} --write-card", data_args(&request.data)),
    };
    card.save(&card_path(&request.export))?;
    Ok(card)
}

/// Joins trained voice networks into one ensemble file at `out` (and its
/// card): the first network's variables at the root, the others under
/// [`member_prefix`]. A member that is itself an ensemble contributes each
/// of its networks (so a shipped ensemble can take one more member without
/// the files of the runs that made it). The members must read the same
/// input (features, windows) and must have heard the same corpora, so that
/// "never heard" still means one thing; the card's metrics are left for
/// `eval voice-emotion --write-card` to measure.
pub fn merge_ensemble(members: &[PathBuf], out: &Path) -> Result<VoiceModelCard> {
    if members.len() < 2 {
        bail!("an ensemble needs at least two members (got {})", members.len());
    }
    let mut named = Vec::new();
    let mut card: Option<VoiceModelCard> = None;
    let mut train_commands = Vec::new();
    let mut trained_on = Vec::new();
    let mut networks = 0;
    for path in members {
        let member = VoiceModelCard::load(&card_path(path))?;
        if let Some(first) = &card {
            let (a, b) = (&first.input, &member.input);
            if (a.features != b.features)
                || (a.cmn, a.pitch, a.window_seconds, a.hop_seconds)
                    != (b.cmn, b.pitch, b.window_seconds, b.hop_seconds)
            {
                bail!("{} reads different input from {}", path.display(), members[0].display());
            }
            if first.training_corpora != member.training_corpora {
                bail!(
                    "{} heard {:?}, {} heard {:?}: members must have heard the same corpora",
                    members[0].display(),
                    first.training_corpora,
                    path.display(),
                    member.training_corpora
                );
            }
        }
        let tensors = Tensor::read_safetensors(path).with_context(|| format!("reading {}", path.display()))?;
        let inner = 1 + member.ensemble.len();
        for (name, tensor) in tensors {
            let (index, rest) = split_member_name(&name, inner)
                .with_context(|| format!("{}: variable {name} belongs to no network of the card", path.display()))?;
            named.push((format!("{}{rest}", member_prefix(networks + index)), tensor));
        }
        trained_on.push(MemberTraining::of(&member, networks));
        networks += inner;
        train_commands.push(member.train_command.clone());
        match &mut card {
            None => card = Some(member),
            Some(card) => {
                card.ensemble.push(member.architecture.clone());
                card.ensemble.extend(member.ensemble.iter().cloned());
                card.params += member.params;
            }
        }
    }
    let mut card = card.context("no members")?;
    // A flattened ensemble's card already says what each network is.
    let each = card.description.split_once("Each: ").map_or(card.description.as_str(), |(_, each)| each).to_string();
    card.description =
        format!("Mean of the probabilities of {networks} networks trained alike from different seeds. Each: {each}");
    card.trained_on = describe_members(&trained_on);
    card.metrics = json!({});
    card.calibration = None;
    card.mixed = None;
    let listed: Vec<String> = members.iter().map(|m| format!("--member {}", m.display())).collect();
    card.train_command = format!(
        "{}; then emotion-ai train voice-ensemble {} --out {}",
        train_commands.join("; "),
        listed.join(" "),
        out.display()
    );
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    Tensor::write_safetensors(&named, out).with_context(|| format!("writing {}", out.display()))?;
    card.save(&card_path(out))?;
    // What was written must load as the ensemble it claims to be.
    let loaded = LoadedVoiceModel::load(out)?;
    anyhow::ensure!(loaded.net.members.len() == networks, "the ensemble did not reload whole");
    Ok(card)
}

/// How one member of an ensemble (one network, or an ensemble itself) was
/// trained, and which of the joined file's networks it became.
struct MemberTraining {
    /// Index of its first network in the joined file.
    first: usize,
    networks: usize,
    /// Its card's `trained_on`, without a leading "each member: ".
    what: String,
    /// Whether `what` holds for each of its networks alike (a single network,
    /// or an ensemble whose card says "each member: ").
    alike: bool,
}

impl MemberTraining {
    fn of(card: &VoiceModelCard, first: usize) -> Self {
        let networks = 1 + card.ensemble.len();
        let stripped = card.trained_on.strip_prefix("each member: ");
        let what = stripped.unwrap_or(&card.trained_on).to_string();
        Self { first, networks, what, alike: networks == 1 || stripped.is_some() }
    }
}

/// The card's `trained_on` for an ensemble: one description when every
/// network was trained alike (the same data, recipe and chosen epoch), else
/// one per member, so that no network's chosen epoch is misstated.
fn describe_members(members: &[MemberTraining]) -> String {
    if members.iter().all(|m| m.alike) && members.windows(2).all(|pair| pair[0].what == pair[1].what) {
        return format!("each member: {}", members.first().map_or("", |m| m.what.as_str()));
    }
    let parts: Vec<String> = members
        .iter()
        .map(|m| {
            let (first, last) = (m.first + 1, m.first + m.networks);
            match (m.networks, m.alike) {
                (1, _) => format!("network {first}: {}", m.what),
                (_, true) => format!("networks {first}-{last}, each: {}", m.what),
                (_, false) => format!("networks {first}-{last}: [{}]", m.what),
            }
        })
        .collect();
    parts.join("; ")
}

/// Which of a file's `networks` networks a variable belongs to, and its name
/// within that network: `member2.stages.0.w` is network 2's `stages.0.w`,
/// an unprefixed name is network 0's.
fn split_member_name(name: &str, networks: usize) -> Option<(usize, &str)> {
    if let Some((head, rest)) = name.split_once('.') {
        if let Some(index) = head.strip_prefix("member").and_then(|i| i.parse::<usize>().ok()) {
            return (index >= 1 && index < networks).then_some((index, rest));
        }
    }
    Some((0, name))
}

/// What the model does on one corpus's test clips.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CorpusEval {
    pub corpus: String,
    /// Whether the model trained on (other speakers of) this corpus; if not,
    /// every clip of it is a test clip.
    pub seen_in_training: bool,
    pub speakers: usize,
    pub clips: u64,
    /// Clips with an emotion of the 7 (the others are scored for sex only).
    pub emotion_clips: u64,
    pub emotion7_accuracy: Option<f64>,
    pub emotion7_balanced_accuracy: Option<f64>,
    pub sex_accuracy: f64,
    pub female_accuracy: f64,
    pub male_accuracy: f64,
    pub emotion7_recall: serde_json::Map<String, serde_json::Value>,
    pub confusion_emotion7: Option<ConfusionMatrix>,
    pub confusion_sex: ConfusionMatrix,
    /// What clips without one of the 7 emotions (EmoDB's boredom) are heard
    /// as, by count.
    pub unlabelled_heard_as: BTreeMap<String, u64>,
}

/// What `eval voice-emotion` measured.
#[derive(Debug)]
pub struct VoiceEvalReport {
    pub corpora: Vec<CorpusEval>,
    /// RAVDESS's held-out actors, as the first model's card reported them
    /// (`None` without RAVDESS).
    pub ravdess_class14_accuracy: Option<f64>,
    /// 7-emotion ECE on the test clips with emotions of the corpora the model
    /// saw, raw and with the temperature fitted on the validation clips.
    pub emotion7_calibration: Option<CalibrationSummary>,
    /// Where the sex figures' sex came from (the network's, or the head's blend).
    pub sex_from: String,
    /// How many networks the measured model joins.
    pub networks: usize,
    /// How the measured model was trained (its card's command) and on what.
    pub trained_by: String,
    pub training_corpora: Vec<String>,
    pub json_path: PathBuf,
    pub png_paths: Vec<PathBuf>,
}

fn corpus_eval(corpus: &str, seen: bool, pairs: &[(&[f32], &VoiceLabel)]) -> (CorpusEval, ConfusionMatrix) {
    let (joint, emotion7, sex) = confusion_of(pairs);
    let has_emotion = emotion7.total() > 0;
    let recall = sex.recall();
    let mut speakers: Vec<&str> = pairs.iter().map(|(_, l)| l.speaker.as_str()).collect();
    speakers.sort();
    speakers.dedup();
    let mut unlabelled_heard_as = BTreeMap::new();
    for (p, _) in pairs.iter().filter(|(_, l)| l.emotion.is_none()) {
        if corpus != "speechsex" {
            *unlabelled_heard_as.entry(EMOTIONS[argmax(&emotion_marginal(p)) as usize].to_string()).or_insert(0) += 1;
        }
    }
    let eval = CorpusEval {
        corpus: corpus.to_string(),
        seen_in_training: seen,
        speakers: speakers.len(),
        clips: sex.total(),
        emotion_clips: emotion7.total(),
        emotion7_accuracy: has_emotion.then(|| round4(emotion7.accuracy())),
        emotion7_balanced_accuracy: has_emotion.then(|| round4(emotion7.balanced_accuracy())),
        sex_accuracy: round4(sex.accuracy()),
        female_accuracy: round4(recall[0]),
        male_accuracy: round4(recall[1]),
        emotion7_recall: if has_emotion {
            EMOTIONS
                .iter()
                .zip(emotion7.recall())
                .zip(&emotion7.counts)
                .filter(|(_, row)| row.iter().sum::<u64>() > 0)
                .map(|((c, r), _)| (c.to_string(), json!(round4(r))))
                .collect()
        } else {
            serde_json::Map::new()
        },
        confusion_emotion7: has_emotion.then_some(emotion7),
        confusion_sex: sex,
        unlabelled_heard_as,
    };
    (eval, joint)
}

/// Evaluates `weights` corpus by corpus: on each corpus's held-out speakers,
/// or on all of it when the model never saw it (or it is in `leave_out`);
/// writes the confusion matrices (JSON, and PNGs of the 7 emotions per
/// corpus) into `out_dir` and, with `write_card`, the figures into the card.
pub fn run_eval(
    data: &[PathBuf],
    weights: &Path,
    sex_head: Option<&SpeakerSexModel>,
    leave_out: &[String],
    out_dir: &Path,
    write_card: bool,
) -> Result<VoiceEvalReport> {
    let model = LoadedVoiceModel::load(weights)?;
    let extractor = model.card.input.extractor();
    let clips = load_clips(data, extractor.mfcc_config().sample_rate)?;
    let seen_corpora = &model.card.training_corpora;
    for corpus in leave_out {
        if seen_corpora.contains(corpus) {
            bail!("the model in {} was trained on {corpus}: --leave-out {corpus} needs a model that never heard it (train one with --leave-out {corpus})", weights.display());
        }
    }
    // Corpora the model never heard are measured whole.
    let unseen: Vec<String> =
        corpora(&clips).into_iter().filter(|c| !seen_corpora.contains(c) || leave_out.contains(c)).collect();
    let split = split_by_speaker(clips, &unseen);
    if split.test.is_empty() {
        bail!("no test clips under {data:?}");
    }
    let predictions = predict_clips(&model.frozen, &extractor, sex_head, &split.test)?;

    let mut reports = Vec::new();
    let mut ravdess_class14 = None;
    std::fs::create_dir_all(out_dir)?;
    let mut png_paths = Vec::new();
    for corpus in corpora(&split.test) {
        let pairs: Vec<(&[f32], &VoiceLabel)> = predictions
            .iter()
            .zip(&split.test)
            .filter(|(_, c)| c.label.corpus() == corpus)
            .map(|(p, c)| (p.as_slice(), &c.label))
            .collect();
        let (eval, joint) = corpus_eval(&corpus, !unseen.contains(&corpus), &pairs);
        if corpus == "ravdess" && joint.total() > 0 {
            ravdess_class14 = Some(joint.accuracy());
        }
        if let Some(m) = &eval.confusion_emotion7 {
            let png = out_dir.join(format!("voice_emotion_confusion7_{corpus}.png"));
            let what = if eval.seen_in_training { "held-out speakers" } else { "never heard in training" };
            m.save_png(&png, &format!("voice_emotion, {corpus} ({what}, {} clips)", m.total()))?;
            png_paths.push(png);
        }
        reports.push(eval);
    }

    // Calibration: fitted on the validation clips with emotions, measured on
    // the test clips with emotions of the corpora the model saw.
    let emotion_pairs = |predictions: &[Vec<f32>], clips: &[VoiceClip], seen_only: bool| {
        predictions
            .iter()
            .zip(clips)
            .filter(|(_, c)| c.label.emotion.is_some() && (!seen_only || !unseen.iter().any(|u| u == c.label.corpus())))
            .map(|(p, c)| (emotion_marginal(p), c.label.emotion.unwrap_or_default()))
            .unzip::<_, _, Vec<_>, Vec<_>>()
    };
    let emotion7_calibration = if split.validation.iter().any(|c| c.label.emotion.is_some()) {
        let validation_predictions = predict_clips(&model.frozen, &extractor, sex_head, &split.validation)?;
        let (vp, vt) = emotion_pairs(&validation_predictions, &split.validation, true);
        let (tp, tt) = emotion_pairs(&predictions, &split.test, true);
        (!tp.is_empty()).then(|| {
            CalibrationSummary::fit(
                (&vp, &vt),
                (&tp, &tt),
                &format!("validation speakers of {}", seen_corpora.join(", ")),
            )
        })
    } else {
        None
    };

    let json_path = out_dir.join("voice_emotion_eval.json");
    let sex_from = match sex_head {
        Some(head) => format!(
            "the voice sex head ({}; weight {} against the network's marginal)",
            head.card.train_command, head.card.head_weight
        ),
        None => "the network's sex marginal".to_string(),
    };
    let report = json!({
        "model": weights.display().to_string(),
        "sex_from": sex_from,
        "training_corpora": seen_corpora,
        "corpora": reports,
        "emotion7_calibration": emotion7_calibration,
    });
    std::fs::write(&json_path, serde_json::to_string_pretty(&report)? + "\n")?;

    if write_card {
        let mut card = model.card.clone();
        let metrics = card.metrics.as_object_mut().ok_or_else(|| anyhow!("card metrics is not an object"))?;
        let summary: serde_json::Map<String, serde_json::Value> = reports
            .iter()
            .map(|r| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.remove("confusion_emotion7");
                    o.remove("confusion_sex");
                }
                (r.corpus.clone(), v)
            })
            .collect();
        metrics.insert("corpora".into(), json!(summary));
        metrics.insert("sex_from".into(), json!(sex_from));
        if let Some(r) = reports.iter().find(|r| r.corpus == "ravdess" && r.seen_in_training) {
            metrics.insert("heldout_actors".into(), json!(HELDOUT_ACTORS));
            metrics.insert("heldout_clips".into(), json!(r.clips));
            if let Some(a) = ravdess_class14 {
                metrics.insert("heldout_actor_class14_accuracy".into(), json!(round4(a)));
            }
            metrics.insert("heldout_actor_emotion7_accuracy".into(), json!(r.emotion7_accuracy));
            metrics.insert("heldout_actor_emotion7_balanced_accuracy".into(), json!(r.emotion7_balanced_accuracy));
            metrics.insert("heldout_actor_sex_accuracy".into(), json!(r.sex_accuracy));
            metrics.insert("heldout_actor_emotion7_recall".into(), json!(r.emotion7_recall));
        }
        if let Some(c) = &emotion7_calibration {
            metrics.insert("heldout_actor_emotion7_ece".into(), json!(round4(c.raw.ece)));
            metrics.insert("heldout_actor_emotion7_ece_calibrated".into(), json!(round4(c.calibrated.ece)));
            card.calibration = Some(c.card_entry());
        }
        let sex_all: Vec<(Vec<f32>, usize)> =
            predictions.iter().zip(&split.test).map(|(p, c)| (sex_marginal(p), c.label.sex)).collect();
        let (sp, st): (Vec<_>, Vec<_>) = sex_all.into_iter().unzip();
        metrics.insert("heldout_sex_ece".into(), json!(round4(calibration(&sp, &st, ECE_BINS).ece)));
        card.save(&card_path(weights))?;
    }
    Ok(VoiceEvalReport {
        corpora: reports,
        ravdess_class14_accuracy: ravdess_class14,
        emotion7_calibration,
        sex_from,
        networks: model.card.ensemble.len() + 1,
        trained_by: model.card.train_command.clone(),
        training_corpora: model.card.training_corpora.clone(),
        json_path,
        png_paths,
    })
}

/// Records, in the card at `card` (the shipped model's), what `report`
/// measured on the corpora `leave_out` names with a model that never heard
/// them: the card's `metrics.never_heard.<corpus>`, with the command that
/// measured it. The shipped model heard every corpus, so only a model
/// trained without one can say what it does on a new corpus; this keeps
/// that figure beside the shipped one, where users look. Other entries of
/// the card are kept.
pub fn record_never_heard(card: &Path, report: &VoiceEvalReport, leave_out: &[String], command: &str) -> Result<()> {
    if leave_out.is_empty() {
        bail!("recording a never-heard figure needs --leave-out CORPUS");
    }
    let mut target = VoiceModelCard::load(card)?;
    let metrics =
        target.metrics.as_object_mut().ok_or_else(|| anyhow!("{}: metrics is not an object", card.display()))?;
    let entries = metrics.entry("never_heard").or_insert_with(|| json!({}));
    let entries =
        entries.as_object_mut().ok_or_else(|| anyhow!("{}: metrics.never_heard is not an object", card.display()))?;
    for corpus in leave_out {
        let measured = report
            .corpora
            .iter()
            .find(|c| &c.corpus == corpus && !c.seen_in_training)
            .ok_or_else(|| anyhow!("no clips of {corpus} were measured as never heard"))?;
        let mut entry = serde_json::to_value(measured)?;
        if let Some(o) = entry.as_object_mut() {
            o.remove("confusion_sex");
            o.insert("sex_from".into(), json!(report.sex_from));
            o.insert("networks".into(), json!(report.networks));
            o.insert("networks_trained_on".into(), json!(report.training_corpora));
            o.insert("networks_trained_by".into(), json!(report.trained_by));
            o.insert("command".into(), json!(command));
        }
        entries.insert(corpus.clone(), entry);
    }
    target.save(card)
}

/// The clip-level 7-emotion distribution of every clip of the held-out
/// RAVDESS actors (or, with `validation`, the validation actors), with the
/// true emotions (for `eval fusion`).
pub fn heldout_distributions(
    data: &[PathBuf],
    weights: &Path,
    validation: bool,
) -> Result<(Vec<Vec<f32>>, Vec<usize>)> {
    let model = LoadedVoiceModel::load(weights)?;
    let extractor = model.card.input.extractor();
    let clips: Vec<VoiceClip> = load_clips(data, extractor.mfcc_config().sample_rate)?
        .into_iter()
        .filter(|c| c.label.corpus() == "ravdess" && c.label.emotion.is_some())
        .collect();
    let split = split_by_speaker(clips, &[]);
    let clips = if validation { split.validation } else { split.test };
    if clips.is_empty() {
        bail!("no clips of the RAVDESS actors to evaluate on under {data:?}");
    }
    let predictions = predict_clips(&model.frozen, &extractor, None, &clips)?;
    Ok((
        predictions.iter().map(|j| emotion_marginal(j)).collect(),
        clips.iter().filter_map(|c| c.label.emotion).collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(speaker: &str, emotion: Option<usize>, sex: usize) -> VoiceClip {
        VoiceClip { samples: vec![], label: VoiceLabel { emotion, sex, speaker: speaker.into() }, path: PathBuf::new() }
    }

    #[test]
    fn never_heard_figures_are_recorded_beside_the_shipped_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        let card = dir.path().join("voice_emotion.json");
        std::fs::copy("models/voice_emotion.json", &card).expect("copying the shipped card");
        let emotion = |name: &str| EMOTIONS.iter().position(|e| *e == name).expect("an emotion");
        let one_hot = |e: usize, s: usize| {
            let mut p = vec![0.0f32; crate::model::voice::VOICE_CLASSES];
            p[crate::model::voice::joint_class(e, s)] = 1.0;
            p
        };
        // One EmoDB clip heard right, one sad clip heard as neutral.
        let labels = [
            VoiceLabel { emotion: Some(emotion("angry")), sex: 0, speaker: "emodb:08".into() },
            VoiceLabel { emotion: Some(emotion("sad")), sex: 1, speaker: "emodb:03".into() },
        ];
        let predictions = [one_hot(emotion("angry"), 0), one_hot(emotion("neutral"), 1)];
        let pairs: Vec<(&[f32], &VoiceLabel)> = predictions.iter().map(Vec::as_slice).zip(&labels).collect();
        let report = VoiceEvalReport {
            corpora: vec![corpus_eval("emodb", false, &pairs).0],
            ravdess_class14_accuracy: None,
            emotion7_calibration: None,
            sex_from: "the network's sex marginal".into(),
            networks: 3,
            trained_by: "emotion-ai train voice-emotion --leave-out emodb".into(),
            training_corpora: vec!["ravdess".into(), "speechsex".into()],
            json_path: PathBuf::new(),
            png_paths: vec![],
        };
        let leave_out = ["emodb".to_string()];
        assert!(record_never_heard(&card, &report, &[], "cmd").is_err(), "nothing to record without --leave-out");
        assert!(record_never_heard(&card, &report, &["ravdess".into()], "cmd").is_err(), "ravdess was not measured");
        record_never_heard(&card, &report, &leave_out, "emotion-ai eval voice-emotion --leave-out emodb")
            .expect("recorded");

        let written = VoiceModelCard::load(&card).expect("the card still loads");
        let entry = &written.metrics["never_heard"]["emodb"];
        assert_eq!(entry["emotion7_accuracy"], json!(0.5));
        assert_eq!(entry["sex_accuracy"], json!(1.0));
        assert_eq!(entry["networks"], json!(3));
        assert_eq!(entry["networks_trained_on"], json!(["ravdess", "speechsex"]));
        assert_eq!(entry["command"], json!("emotion-ai eval voice-emotion --leave-out emodb"));
        assert!(entry.get("confusion_emotion7").is_some() && entry.get("confusion_sex").is_none());
        // The shipped figures stay as they were.
        let shipped = VoiceModelCard::load(Path::new("models/voice_emotion.json")).expect("shipped card");
        assert_eq!(written.metrics["corpora"], shipped.metrics["corpora"]);
        assert_eq!(written.training_corpora, shipped.training_corpora);
    }

    #[test]
    fn mixup_weights_follow_beta() {
        let mut rng = SmallRng::seed_from_u64(11);
        for (alpha, ends_at_least, ends_at_most) in [(0.2, 0.5, 0.8), (1.0, 0.15, 0.25)] {
            let draws: Vec<f64> = (0..4000).map(|_| beta_symmetric(alpha, &mut rng)).collect();
            assert!(draws.iter().all(|d| (0.0..=1.0).contains(d)));
            let mean = draws.iter().sum::<f64>() / draws.len() as f64;
            assert!((mean - 0.5).abs() < 0.03, "alpha {alpha}: mean {mean}");
            // Beta(0.2, 0.2) piles up near 0 and 1; Beta(1, 1) is uniform.
            let ends = draws.iter().filter(|&&d| !(0.1..=0.9).contains(&d)).count() as f64 / draws.len() as f64;
            assert!((ends_at_least..=ends_at_most).contains(&ends), "alpha {alpha}: {ends} within 0.1 of an end");
        }
    }

    #[test]
    fn a_mixup_step_mixes_inputs_and_losses_and_all_of_its_own_is_the_plain_step() {
        let vs = nn::VarStore::new(Device::Cpu);
        // No dropout, and lr 0 leaves the weights as they are: every step sees
        // one network.
        let net = VoiceNet::new(&vs.root(), &VoiceNetConfig { dropout: 0.0, ..VoiceNetConfig::emotion_sex_pitch() });
        let mut opt = nn::Sgd::default().build(&vs, 0.0).unwrap();
        let xs = Tensor::randn([4, 42, 50], (Kind::Float, Device::Cpu));
        let (classes, sexes) = ([0i64, 5, -1, 13], [0i64, 1, 1, 1]);
        let weights = Tensor::ones([14], (Kind::Float, Device::Cpu));
        let mut step = |mixup| partial_label_step(&net, &mut opt, &xs, &classes, &sexes, &weights, 0.1, mixup).0;
        let partner = [3i64, 2, 1, 0];
        let plain = step(None);
        let own = step(Some(Mixup { lambda: 1.0, partner: &partner }));
        assert!((plain - own).abs() < 1e-4, "{plain} vs {own}");
        let half = step(Some(Mixup { lambda: 0.5, partner: &partner }));
        assert!(half.is_finite() && (half - plain).abs() > 1e-4, "{half} vs {plain}");
    }

    #[test]
    fn the_frequency_mask_covers_spectral_rows_only_and_at_most_its_height() {
        let (rows, frames, spectral) = (6, 4, 4);
        let mean = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0];
        let mut rng = SmallRng::seed_from_u64(3);
        let mut heights = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let mut map = vec![-1.0f32; rows * frames];
            frequency_mask(&mut map, frames, spectral, &mean, 3, &mut rng);
            let masked: Vec<usize> = (0..rows).filter(|r| map[r * frames] != -1.0).collect();
            for &r in &masked {
                assert!(map[r * frames..(r + 1) * frames].iter().all(|&v| v == mean[r]), "row {r} wholly masked");
            }
            assert!(masked.len() <= 3 && masked.iter().all(|&r| r < spectral), "{masked:?}");
            assert!(masked.windows(2).all(|w| w[1] == w[0] + 1), "consecutive: {masked:?}");
            heights.insert(masked.len());
        }
        assert_eq!(heights.into_iter().collect::<Vec<_>>(), vec![0, 1, 2, 3]);
        // Asked for more rows than there are spectral rows, it masks at most those.
        let mut map = vec![-1.0f32; rows * frames];
        for _ in 0..50 {
            frequency_mask(&mut map, frames, spectral, &mean, 99, &mut rng);
        }
        assert!(map[spectral * frames..].iter().all(|&v| v == -1.0), "pitch rows untouched");
    }

    #[test]
    fn run_input_of_runs_from_before_window_mean_reads_as_mean_removed() {
        let old = serde_json::to_string(&MfccConfig::voice_log_mel()).unwrap();
        let input: RunInput = serde_json::from_str(&old).unwrap();
        assert_eq!(input, RunInput { features: MfccConfig::voice_log_mel(), cmn: true });
        let kept = RunInput { features: MfccConfig::voice(), cmn: false };
        let back: RunInput = serde_json::from_str(&serde_json::to_string(&kept).unwrap()).unwrap();
        assert_eq!(back, kept);
        assert!(!input_spec(&kept, vec![], vec![]).cmn);
    }

    #[test]
    fn split_keeps_speakers_apart_and_leaves_corpora_out() {
        let mut clips: Vec<VoiceClip> =
            (1..=24).map(|a| clip(&format!("ravdess:{a}"), Some(0), (a % 2) as usize)).collect();
        clips.extend([3, 8, 9, 10, 11, 12, 13, 14, 15, 16].map(|s| clip(&format!("emodb:{s:02}"), Some(1), 0)));
        clips.extend((0..100).map(|s| clip(&format!("speechsex:x/{s:04}"), None, s % 2)));
        let split = split_by_speaker(clips.clone(), &[]);
        let count = |v: &[VoiceClip], corpus: &str| v.iter().filter(|c| c.label.corpus() == corpus).count();
        assert_eq!(
            (count(&split.train, "ravdess"), count(&split.validation, "ravdess"), count(&split.test, "ravdess")),
            (18, 2, 4)
        );
        assert_eq!(
            (count(&split.train, "emodb"), count(&split.validation, "emodb"), count(&split.test, "emodb")),
            (6, 2, 2)
        );
        let (train, val, test) =
            (count(&split.train, "speechsex"), count(&split.validation, "speechsex"), count(&split.test, "speechsex"));
        assert_eq!(train + val + test, 100);
        assert!((10..=30).contains(&test) && (3..=20).contains(&val), "{train} {val} {test}");
        let sexes: Vec<usize> =
            split.test.iter().filter(|c| c.label.corpus() == "ravdess").map(|c| c.label.sex).collect();
        assert!(sexes.contains(&0) && sexes.contains(&1), "held-out actors of both sexes");
        // The split is a function of the speaker id alone.
        assert_eq!(speaker_part("speechsex:x/0042"), speaker_part("speechsex:x/0042"));

        let split = split_by_speaker(clips, &["emodb".to_string()]);
        assert_eq!(count(&split.test, "emodb"), 10, "a corpus left out is all test");
        assert_eq!(count(&split.train, "emodb") + count(&split.validation, "emodb"), 0);
    }

    #[test]
    fn confusion_leaves_sex_only_clips_out_of_emotion_scores() {
        let clips = [clip("a:1", Some(3), 0), clip("a:1", None, 1)];
        let mut p = vec![0.0f32; 14];
        p[crate::model::voice::joint_class(3, 0)] = 1.0;
        let mut q = vec![0.0f32; 14];
        q[crate::model::voice::joint_class(5, 1)] = 1.0;
        let (joint, emotion, sex) = confusion_matrices(&[p, q], &clips);
        assert_eq!((joint.total(), emotion.total(), sex.total()), (1, 1, 2));
        assert_eq!((emotion.accuracy(), sex.accuracy()), (1.0, 1.0));
    }

    fn tiny_architecture() -> VoiceNetConfig {
        VoiceNetConfig { n_mfcc: 42, channels: vec![4, 8], classes: 14, dropout: 0.0, pitch_summary: true }
    }

    #[test]
    fn an_ensemble_card_says_how_each_network_was_trained() {
        let member = |first, networks, what: &str, alike| MemberTraining { first, networks, what: what.into(), alike };
        let alike = [member(0, 2, "recipe (epoch 28)", true), member(2, 1, "recipe (epoch 28)", true)];
        assert_eq!(describe_members(&alike), "each member: recipe (epoch 28)");
        let apart = [member(0, 2, "recipe (epoch 28)", true), member(2, 1, "recipe (epoch 37)", true)];
        assert_eq!(describe_members(&apart), "networks 1-2, each: recipe (epoch 28); network 3: recipe (epoch 37)");
    }

    #[test]
    fn weight_average_moves_towards_the_trained_weights() {
        let arch = tiny_architecture();
        let trained = nn::VarStore::new(Device::Cpu);
        let _net = VoiceNet::new(&trained.root(), &arch);
        let mut average = WeightAverage::new(0.99, &arch, &trained).unwrap();
        let name = "classifier.weight";
        let start = average.vs.variables()[name].copy();
        assert!(start.allclose(&trained.variables()[name], 0.0, 0.0, false), "it starts at the trained weights");
        tch::no_grad(|| {
            for (_, mut v) in trained.variables() {
                v.copy_(&(&v + 1.0));
            }
        });
        average.update(&trained);
        // First update: decay min(0.99, 2/11), so the average moves 9/11 of the way.
        let expected = &start + 9.0 / 11.0;
        let got = average.vs.variables()[name].copy();
        assert!(got.allclose(&expected, 1e-5, 1e-6, false), "{got} vs {expected}");
        for _ in 0..2000 {
            average.update(&trained);
        }
        let settled = average.vs.variables()[name].copy();
        assert!(settled.allclose(&trained.variables()[name], 1e-4, 1e-4, false), "it reaches weights that stay put");
        assert!(WeightAverage::new(1.0, &arch, &trained).is_err());
        assert!(WeightAverage::new(0.0, &arch, &trained).is_err());
    }

    /// Two "speakers" a network can tell apart (low and high tones), some
    /// clips with an emotion and some with a sex only, trained for a few
    /// epochs: learns, checkpoints, resumes, exports a loadable card.
    #[test]
    fn trains_a_toy_task_resumes_and_exports() {
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
                label: VoiceLabel { emotion: k.is_multiple_of(2).then_some(3), sex, speaker: speaker.into() },
                path: PathBuf::from(format!("{speaker}-{k}.wav")),
            }
        };
        let make = |speakers: [&str; 2]| -> Vec<VoiceClip> {
            (0..32).flat_map(|k| [tone(110.0, speakers[0], 1, k), tone(260.0, speakers[1], 0, k)]).collect()
        };
        let (train, val) = (make(["t:a", "t:b"]), make(["t:c", "t:d"]));
        let arch = tiny_architecture();
        let dir = tempfile::tempdir().unwrap();
        // Only 2 of the 14 classes occur: class weights and label smoothing
        // would push probability towards the 12 absent ones.
        let mut request = VoiceTrainRequest {
            data: vec![PathBuf::from("d")],
            leave_out: vec![],
            run_dir: dir.path().join("run"),
            resume: false,
            export: dir.path().join("out/voice.safetensors"),
            options: TrainOptions {
                epochs: 5,
                batch_size: 8,
                lr: 1e-2,
                label_smoothing: 0.0,
                class_weight_power: 0.0,
                ..default_options()
            },
            augment: VoiceAugment::basic(),
            input: RunInput { features: MfccConfig::voice(), cmn: true },
            sex_only_per_epoch: 32,
            emotion_windows_per_epoch: 1,
            weight_average: None,
        };
        let state = train_voice(&train, &val, &arch, &request).unwrap();
        assert_eq!(state.epochs_done, 5);
        request.options.epochs = 10;
        assert!(train_voice(&train, &val, &arch, &request).is_err(), "a finished run is not overwritten");
        request.resume = true;
        // A resume must read the run's own input: not with the window's mean kept.
        let kept = VoiceTrainRequest { input: RunInput { cmn: false, ..request.input.clone() }, ..request.clone() };
        let refused = train_voice(&train, &val, &arch, &kept).unwrap_err().to_string();
        assert!(refused.contains("--window-mean"), "{refused}");
        // Nor with averaged weights it never kept.
        let averaged = VoiceTrainRequest { weight_average: Some(0.9), ..request.clone() };
        let refused = train_voice(&train, &val, &arch, &averaged).unwrap_err().to_string();
        assert!(refused.contains("--weight-average"), "{refused}");
        // Nor with another augmentation.
        let shifted = VoiceTrainRequest {
            augment: VoiceAugment { f0_shift: 0.25, ..request.augment.clone() },
            ..request.clone()
        };
        let refused = train_voice(&train, &val, &arch, &shifted).unwrap_err().to_string();
        assert!(refused.contains("--f0-shift"), "{refused}");
        let shifted = VoiceTrainRequest {
            augment: VoiceAugment { pitch_shift: 0.5, ..request.augment.clone() },
            ..request.clone()
        };
        let refused = train_voice(&train, &val, &arch, &shifted).unwrap_err().to_string();
        assert!(refused.contains("--pitch-shift"), "{refused}");
        let masked =
            VoiceTrainRequest { augment: VoiceAugment { freq_mask: 8, ..request.augment.clone() }, ..request.clone() };
        let refused = train_voice(&train, &val, &arch, &masked).unwrap_err().to_string();
        assert!(refused.contains("--freq-mask"), "{refused}");
        let mixed =
            VoiceTrainRequest { augment: VoiceAugment { mixup: 0.2, ..request.augment.clone() }, ..request.clone() };
        let refused = train_voice(&train, &val, &arch, &mixed).unwrap_err().to_string();
        assert!(refused.contains("--mixup"), "{refused}");
        let state = train_voice(&train, &val, &arch, &request).unwrap();
        assert_eq!(state.history.len(), 10);

        let split = SpeakerSplit { train, validation: val.clone(), test: vec![] };
        export(&request.run_dir.join("last.safetensors"), &state, &split, &request).unwrap();
        let model = LoadedVoiceModel::load(&request.export).unwrap();
        assert_eq!(model.card.training_corpora, vec!["t".to_string()]);
        assert!(model.card.input.cmn && model.card.input.pitch);
        let predictions = predict_clips(&model.net, &model.card.input.extractor(), None, &val).unwrap();
        let (_, _, sex) = confusion_matrices(&predictions, &val);
        assert!(sex.accuracy() > 0.9, "toy sex accuracy {}, history {:?}", sex.accuracy(), state.history);

        // A second seed, joined with the first: the ensemble answers with the
        // mean of the two networks' probabilities.
        let mut second = request.clone();
        second.run_dir = dir.path().join("run2");
        second.export = dir.path().join("out2/voice.safetensors");
        second.resume = false;
        second.options.epochs = 3;
        second.options.seed = 7;
        // This one measures and keeps averaged weights, and reads two
        // windows of every clip with an emotion an epoch.
        second.weight_average = Some(0.9);
        second.emotion_windows_per_epoch = 2;
        let state2 = train_voice(&split.train, &val, &arch, &second).unwrap();
        let average_file = second.run_dir.join("average.safetensors");
        assert!(average_file.is_file());
        if state2.best_epoch == 3 {
            let best = Tensor::read_safetensors(second.run_dir.join("best.safetensors")).unwrap();
            let average: BTreeMap<String, Tensor> =
                Tensor::read_safetensors(&average_file).unwrap().into_iter().collect();
            for (name, tensor) in best {
                assert!(tensor.equal(&average[&name]), "best.safetensors holds the averaged {name}");
            }
        }
        export(&second.run_dir.join("last.safetensors"), &state2, &split, &second).unwrap();
        let card2 = VoiceModelCard::load(&card_path(&second.export)).unwrap();
        assert!(card2.train_command.contains("--weight-average 0.9"), "{}", card2.train_command);
        assert!(card2.trained_on.contains("averaged"), "{}", card2.trained_on);
        assert!(card2.train_command.contains("--emotion-windows-per-epoch 2"), "{}", card2.train_command);
        assert!(card2.train_command.contains("--sex-only-per-epoch 32"), "{}", card2.train_command);
        assert!(!model.card.train_command.contains("--emotion-windows-per-epoch"), "{}", model.card.train_command);
        let joined = dir.path().join("ensemble/voice.safetensors");
        let card = merge_ensemble(&[request.export.clone(), second.export.clone()], &joined).unwrap();
        assert_eq!((card.ensemble.len(), card.training_corpora.clone()), (1, vec!["t".to_string()]));
        let ensemble = LoadedVoiceModel::load(&joined).unwrap();
        let other = LoadedVoiceModel::load(&second.export).unwrap();
        let map = model.card.input.extractor().compute(&val[0].samples);
        let x = Tensor::from_slice(&map.data).view([1, map.rows as i64, map.frames as i64]);
        let mean = (model.net.predict_proba(&x) + other.net.predict_proba(&x)) / 2.0;
        let got = ensemble.net.predict_proba(&x);
        assert!(got.allclose(&mean, 1e-5, 1e-6, false), "{got} vs {mean}");
        assert_eq!(card.params, model.card.params + other.card.params);
        // One network is not an ensemble.
        assert!(merge_ensemble(&[request.export.clone()], &dir.path().join("x.safetensors")).is_err());
        // An ensemble given as a member brings each of its networks: the
        // three-network file answers with the mean of all three.
        let three = dir.path().join("three/voice.safetensors");
        let card3 = merge_ensemble(&[joined.clone(), request.export.clone()], &three).unwrap();
        assert_eq!(card3.ensemble.len(), 2);
        assert_eq!(card3.params, 2 * model.card.params + other.card.params);
        assert!(card3.description.starts_with("Mean of the probabilities of 3 networks"), "{}", card3.description);
        assert_eq!(card3.description.matches("Each: ").count(), 1);
        // The members chose their epochs apart (and one averaged its
        // weights): the card says how each network was trained.
        assert!(
            card.trained_on.starts_with("network 1: ") && card.trained_on.contains("; network 2: "),
            "{}",
            card.trained_on
        );
        assert!(card3.trained_on.starts_with("networks 1-2: [network 1: "), "{}", card3.trained_on);
        assert!(card3.trained_on.contains("]; network 3: "), "{}", card3.trained_on);
        let ensemble3 = LoadedVoiceModel::load(&three).unwrap();
        assert_eq!(ensemble3.net.members.len(), 3);
        let mean3 = (model.net.predict_proba(&x) * 2.0 + other.net.predict_proba(&x)) / 3.0;
        let got3 = ensemble3.net.predict_proba(&x);
        assert!(got3.allclose(&mean3, 1e-5, 1e-6, false), "{got3} vs {mean3}");

        // An averaged run resumes with its average.
        second.resume = true;
        second.options.epochs = 4;
        let resumed = train_voice(&split.train, &val, &arch, &second).unwrap();
        assert_eq!(resumed.history.len(), 4);
        let without = VoiceTrainRequest { weight_average: None, ..second.clone() };
        let refused = train_voice(&split.train, &val, &arch, &without).unwrap_err().to_string();
        assert!(refused.contains("--weight-average"), "{refused}");
    }
}
