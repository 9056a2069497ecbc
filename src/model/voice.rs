//! The voice network: 14 classes (7 emotions x 2 sexes) from an MFCC map.
//!
//! The joint classes are ordered emotion-major: class `2 * e + s` is emotion
//! `EMOTIONS[e]` spoken by sex `SEXES[s]`. The 7 emotion probabilities are the
//! sums over sex and the 2 sex probabilities the sums over emotion, so the
//! three views of one answer always agree.
//!
//! Per-coefficient MFCC means and standard deviations, measured on the
//! training clips, are stored in the weights (`input_mean`, `input_std`) and
//! applied inside the network: a served clip is normalised with the training
//! set's statistics, never refitted on itself.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use super::{card_path, channels_last, frozen_linear, FrozenStage, Stage, EMOTIONS};
use crate::features::voice_input::VoiceFeatureExtractor;
use crate::features::MfccConfig;

/// Speaker sexes, in the order of the joint classes.
pub const SEXES: [&str; 2] = ["female", "male"];

/// Number of joint emotion x sex classes.
pub const VOICE_CLASSES: usize = EMOTIONS.len() * SEXES.len();

/// Joint class index of `(emotion, sex)` indices.
pub fn joint_class(emotion: usize, sex: usize) -> usize {
    emotion * SEXES.len() + sex
}

/// `(emotion, sex)` indices of a joint class.
pub fn split_class(class: usize) -> (usize, usize) {
    (class / SEXES.len(), class % SEXES.len())
}

/// Names of the joint classes, e.g. `angry_female`, in class order.
pub fn voice_class_names() -> Vec<String> {
    (0..VOICE_CLASSES)
        .map(|c| {
            let (e, s) = split_class(c);
            format!("{}_{}", EMOTIONS[e], SEXES[s])
        })
        .collect()
}

/// Shape of a [`VoiceNet`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VoiceNetConfig {
    /// Rows of the input map (MFCC coefficients, plus pitch rows if any): the
    /// input's height. (Named for the MFCC-only input it started as.)
    pub n_mfcc: i64,
    /// Output channels of each residual stage; each stage halves both axes.
    pub channels: Vec<i64>,
    pub classes: i64,
    /// Dropout before the classifier, during training only.
    pub dropout: f64,
    /// The classifier also reads three statistics of the last two input rows
    /// (the pitch rows): the mean and spread of log F0 over the voiced frames
    /// and the voiced share. The convolutions see pitch as one row among
    /// many; this hands it to the classifier directly, so that sex can rest
    /// on pitch rather than on one corpus's spectra.
    #[serde(default)]
    pub pitch_summary: bool,
}

impl VoiceNetConfig {
    /// The architecture of the first voice model (40 MFCC rows).
    pub fn emotion_sex() -> Self {
        Self {
            n_mfcc: 40,
            channels: vec![16, 32, 64, 128],
            classes: VOICE_CLASSES as i64,
            dropout: 0.3,
            pitch_summary: false,
        }
    }

    /// The architecture of the shipped voice model: 40 MFCC rows and 2 pitch
    /// rows, whose statistics the classifier also reads.
    pub fn emotion_sex_pitch() -> Self {
        Self { n_mfcc: 42, pitch_summary: true, ..Self::emotion_sex() }
    }
}

/// CNN over the `[n_mfcc, frames]` map treated as a one-channel image:
/// residual conv stages, then mean and max pooling over time (so any window
/// length works), flattening what is left of the coefficient axis, and one
/// linear layer.
#[derive(Debug)]
pub struct VoiceNet {
    input_mean: Tensor,
    input_std: Tensor,
    stages: Vec<Stage>,
    classifier: nn::Linear,
    dropout: f64,
    pitch_summary: bool,
}

/// Voicing strength from which a frame's log F0 enters the pitch summary
/// (the features' own voicing threshold).
const SUMMARY_VOICED: f64 = crate::features::voice_input::VOICED_STRENGTH as f64;

/// `[N, 3]`: mean and standard deviation of the log-F0 row over voiced
/// frames, and the voiced share, of raw `[N, rows, frames]` maps whose last
/// two rows are log F0 and voicing strength.
fn pitch_statistics(xs: &Tensor) -> Tensor {
    let rows = xs.size()[1];
    let f0 = xs.select(1, rows - 2);
    let voiced = xs.select(1, rows - 1).ge(SUMMARY_VOICED).to_kind(Kind::Float);
    let count = voiced.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
    let safe = count.clamp_min(1.0);
    let mean = (&f0 * &voiced).sum_dim_intlist([1i64].as_slice(), false, Kind::Float) / &safe;
    let centred = (&f0 - mean.unsqueeze(1)) * &voiced;
    let spread = ((&centred * &centred).sum_dim_intlist([1i64].as_slice(), false, Kind::Float) / &safe + 1e-6).sqrt();
    let share = count / f0.size()[1] as f64;
    Tensor::stack(&[mean, spread, share], 1)
}

/// `[N, C, H, T]` stage output to `[N, 2 * C * H]`: the mean and the
/// maximum over time, flattened in `[C, H]` order whatever the layout (the
/// frozen network's channels-last tensors too), as the classifier learned.
fn pooled_over_time(ys: &Tensor) -> Tensor {
    let mean = ys.mean_dim([3i64].as_slice(), false, Kind::Float);
    let max = ys.amax([3i64].as_slice(), false);
    Tensor::cat(&[mean, max], 1).contiguous().flatten(1, -1)
}

impl VoiceNet {
    /// Declares the network's variables under `vs`; input statistics start at
    /// mean 0, std 1 until [`VoiceNet::set_input_stats`] or loaded weights.
    pub fn new(vs: &nn::Path, config: &VoiceNetConfig) -> Self {
        let input_mean = vs.zeros_no_train("input_mean", &[1, config.n_mfcc, 1]);
        let input_std = vs.ones_no_train("input_std", &[1, config.n_mfcc, 1]);
        let mut stages = Vec::with_capacity(config.channels.len());
        let mut c_in = 1;
        for (i, &c_out) in config.channels.iter().enumerate() {
            stages.push(Stage::new(&(vs / format!("stage{i}")), c_in, c_out));
            c_in = c_out;
        }
        let height = config.n_mfcc >> config.channels.len();
        let summary = if config.pitch_summary { 3 } else { 0 };
        let classifier =
            nn::linear(vs / "classifier", 2 * c_in * height.max(1) + summary, config.classes, Default::default());
        Self { input_mean, input_std, stages, classifier, dropout: config.dropout, pitch_summary: config.pitch_summary }
    }

    /// Records the training set's per-coefficient mean and std (`n_mfcc`
    /// values each).
    pub fn set_input_stats(&mut self, mean: &[f32], std: &[f32]) {
        tch::no_grad(|| {
            let shape = self.input_mean.size();
            self.input_mean.copy_(&Tensor::from_slice(mean).view(shape.as_slice()));
            self.input_std.copy_(&Tensor::from_slice(std).view(shape.as_slice()));
        });
    }

    /// The stored input statistics, for the model card.
    pub fn input_stats(&self) -> (Vec<f32>, Vec<f32>) {
        let flat = |t: &Tensor| Vec::<f32>::try_from(t.flatten(0, -1)).unwrap_or_default();
        (flat(&self.input_mean), flat(&self.input_std))
    }

    /// Joint class probabilities `[N, 14]` for MFCC maps `[N, n_mfcc, frames]`.
    pub fn predict_proba(&self, mfcc: &Tensor) -> Tensor {
        tch::no_grad(|| self.forward_t(mfcc, false).softmax(-1, Kind::Float))
    }
}

/// Anything that turns `[N, rows, frames]` input maps into `[N, 14]` joint
/// probabilities: one network while training, the served ensemble after.
pub trait VoiceClassifier {
    /// Joint class probabilities `[N, 14]` for input maps `[N, rows, frames]`.
    fn predict_proba(&self, maps: &Tensor) -> Tensor;
}

impl VoiceClassifier for VoiceNet {
    fn predict_proba(&self, maps: &Tensor) -> Tensor {
        VoiceNet::predict_proba(self, maps)
    }
}

/// A trained [`VoiceNet`] prepared for inference: every batch norm folded
/// into its convolution, activations channels-last (as
/// [`super::FrozenFaceNet`]). The same function as `VoiceNet::forward_t(_,
/// false)` up to float rounding (tested within 1e-5); serving and
/// evaluation run it.
#[derive(Debug)]
pub struct FrozenVoiceNet {
    input_mean: Tensor,
    input_std: Tensor,
    stages: Vec<FrozenStage>,
    classifier: (Tensor, Option<Tensor>),
    pitch_summary: bool,
}

impl FrozenVoiceNet {
    /// Folds `net`'s current weights (a copy).
    pub fn new(net: &VoiceNet) -> Self {
        Self {
            input_mean: net.input_mean.detach().copy(),
            input_std: net.input_std.detach().copy(),
            stages: net.stages.iter().map(FrozenStage::new).collect(),
            classifier: frozen_linear(&net.classifier),
            pitch_summary: net.pitch_summary,
        }
    }

    /// Joint class logits `[N, 14]` for input maps `[N, rows, frames]`.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let xs = xs.to_kind(Kind::Float);
            let mut ys = channels_last(&((&xs - &self.input_mean) / &self.input_std).unsqueeze(1));
            for stage in &self.stages {
                ys = stage.forward(&ys);
            }
            let pooled = pooled_over_time(&ys);
            let features = if self.pitch_summary { Tensor::cat(&[pooled, pitch_statistics(&xs)], 1) } else { pooled };
            features.linear(&self.classifier.0, self.classifier.1.as_ref())
        })
    }
}

impl VoiceClassifier for FrozenVoiceNet {
    fn predict_proba(&self, maps: &Tensor) -> Tensor {
        tch::no_grad(|| self.forward(maps).softmax(-1, Kind::Float))
    }
}

/// Networks trained alike from different seeds (or recipes), answering with
/// the mean of their probabilities: members err on different clips, so the
/// mean is steadier on voices none of them heard than any one member.
/// Members are [`VoiceNet`]s as trained, or [`FrozenVoiceNet`]s to serve.
#[derive(Debug)]
pub struct VoiceEnsemble<N = VoiceNet> {
    pub members: Vec<N>,
}

impl<N: VoiceClassifier> VoiceClassifier for VoiceEnsemble<N> {
    fn predict_proba(&self, maps: &Tensor) -> Tensor {
        let mut sum = self.members[0].predict_proba(maps);
        for member in &self.members[1..] {
            sum += member.predict_proba(maps);
        }
        sum / self.members.len() as f64
    }
}

/// Where member `index` of an ensemble keeps its variables: the first at the
/// root (so a one-network file is a one-member ensemble), the others under
/// `member1.`, `member2.`, ...
pub fn member_prefix(index: usize) -> String {
    if index == 0 {
        String::new()
    } else {
        format!("member{index}.")
    }
}

impl ModuleT for VoiceNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = ((xs.to_kind(Kind::Float) - &self.input_mean) / &self.input_std).unsqueeze(1);
        for stage in &self.stages {
            ys = stage.forward_t(&ys, train);
        }
        let pooled = pooled_over_time(&ys).dropout(self.dropout, train);
        if self.pitch_summary {
            Tensor::cat(&[pooled, pitch_statistics(&xs.to_kind(Kind::Float))], 1).apply(&self.classifier)
        } else {
            pooled.apply(&self.classifier)
        }
    }
}

/// How clips become network input; recorded in the voice model card.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VoiceInputSpec {
    pub features: MfccConfig,
    /// Each window's mean of every MFCC removed (cepstral mean
    /// normalisation); absent in cards of models trained without it.
    #[serde(default)]
    pub cmn: bool,
    /// Two pitch rows (log F0, voicing strength) below the MFCCs.
    #[serde(default)]
    pub pitch: bool,
    /// Length of one analysis window; longer clips are split into windows.
    pub window_seconds: f64,
    /// Step between windows of a long clip.
    pub hop_seconds: f64,
    /// Per-row training-set statistics (also in the weights).
    pub normalisation: VoiceNormalisation,
}

impl VoiceInputSpec {
    /// The feature extractor this spec describes.
    pub fn extractor(&self) -> VoiceFeatureExtractor {
        VoiceFeatureExtractor::new(self.features.clone(), self.cmn, self.pitch)
    }

    /// Rows of the network's input map.
    pub fn rows(&self) -> usize {
        crate::features::voice_input::rows(self.features.n_mfcc, self.pitch)
    }
}

/// `(mfcc[c] - mean[c]) / std[c]` per coefficient.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VoiceNormalisation {
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub note: String,
}

/// The JSON card beside the voice weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VoiceModelCard {
    pub name: String,
    pub description: String,
    /// The 14 joint classes, in output order.
    pub classes: Vec<String>,
    pub emotions: Vec<String>,
    pub sexes: Vec<String>,
    pub input: VoiceInputSpec,
    pub architecture: VoiceNetConfig,
    /// Architectures of the ensemble's further members, whose variables sit
    /// under [`member_prefix`]; empty for a single network. The answer is
    /// the mean of all members' probabilities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ensemble: Vec<VoiceNetConfig>,
    /// Parameters of all members together.
    pub params: i64,
    pub trained_on: String,
    /// Corpora whose clips trained the model or chose its epoch (`ravdess`,
    /// `emodb`, `speechsex`, ...): any other corpus measures it as one it never
    /// heard.
    #[serde(default)]
    pub training_corpora: Vec<String>,
    pub metrics: serde_json::Value,
    /// Post-hoc temperature fitted on held-out data, used to weigh this model
    /// in face + voice fusion; absent until `eval --write-card` fits it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calibration: Option<crate::fusion::Calibration>,
    /// The gap under which the page calls the answer mixed; absent until
    /// `eval mixed --write-card` chooses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixed: Option<crate::fusion::MixedMargin>,
    pub train_command: String,
    pub eval_command: String,
}

impl VoiceModelCard {
    /// Reads a card from JSON.
    pub fn load(path: &Path) -> Result<Self> {
        super::load_card(path)
    }

    /// Writes the card as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        super::save_card(self, path)
    }
}

/// The voice network (or ensemble) with its weights and card, ready for
/// inference.
pub struct LoadedVoiceModel {
    /// Owns the tensors `net` refers to.
    _vs: nn::VarStore,
    /// The networks as trained (tools that combine them).
    pub net: VoiceEnsemble,
    /// The same networks prepared for inference: what serving and evaluation run.
    pub frozen: VoiceEnsemble<FrozenVoiceNet>,
    pub card: VoiceModelCard,
}

impl LoadedVoiceModel {
    /// Loads `weights` and the card beside it, checking that they fit the
    /// crate's class layout and feature extractor.
    pub fn load(weights: &Path) -> Result<Self> {
        let card = VoiceModelCard::load(&card_path(weights))?;
        if card.classes != voice_class_names() || card.architecture.classes != VOICE_CLASSES as i64 {
            bail!("model card {} does not list the 14 emotion x sex classes in order", card_path(weights).display());
        }
        let architectures: Vec<&VoiceNetConfig> = std::iter::once(&card.architecture).chain(&card.ensemble).collect();
        for architecture in &architectures {
            if architecture.classes != VOICE_CLASSES as i64 {
                bail!(
                    "model card {}: an ensemble member has {} classes",
                    card_path(weights).display(),
                    architecture.classes
                );
            }
            if architecture.pitch_summary && !card.input.pitch {
                bail!(
                    "model card {}: the network summarises pitch rows the features do not have",
                    card_path(weights).display()
                );
            }
            if architecture.n_mfcc != card.input.rows() as i64 {
                bail!(
                    "model card {}: the network and the features disagree on the input rows",
                    card_path(weights).display()
                );
            }
        }
        if !(card.input.window_seconds > 0.0 && card.input.hop_seconds > 0.0) {
            bail!("model card {}: window and hop must be positive", card_path(weights).display());
        }
        let mut vs = nn::VarStore::new(Device::Cpu);
        let members: Vec<VoiceNet> = architectures
            .iter()
            .enumerate()
            .map(|(i, architecture)| {
                let path = if i == 0 { vs.root() } else { vs.root() / format!("member{i}") };
                VoiceNet::new(&path, architecture)
            })
            .collect();
        vs.load(weights).with_context(|| format!("loading weights {}", weights.display()))?;
        vs.freeze();
        let frozen = VoiceEnsemble { members: members.iter().map(FrozenVoiceNet::new).collect() };
        Ok(Self { _vs: vs, net: VoiceEnsemble { members }, frozen, card })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joint_classes_round_trip_and_are_named() {
        let names = voice_class_names();
        assert_eq!(names.len(), 14);
        assert_eq!(names[0], "angry_female");
        assert_eq!(names[13], "neutral_male");
        for c in 0..VOICE_CLASSES {
            let (e, s) = split_class(c);
            assert_eq!(joint_class(e, s), c);
        }
    }

    #[test]
    fn any_window_length_gives_batch_by_14() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = VoiceNet::new(&vs.root(), &VoiceNetConfig::emotion_sex());
        for frames in [101, 301, 517] {
            let x = Tensor::randn([2, 40, frames], (Kind::Float, Device::Cpu)) * 50.0;
            let p = net.predict_proba(&x);
            assert_eq!(p.size(), vec![2, 14]);
            let sum = p.sum(Kind::Float).double_value(&[]);
            assert!((sum - 2.0).abs() < 1e-4);
        }
    }

    #[test]
    fn pitch_statistics_cover_voiced_frames_only() {
        // Two frames voiced at log F0 -1 and 0, one unvoiced (strength 0.1).
        let mut map = vec![0.0f32; 4 * 3];
        map[6..9].copy_from_slice(&[-1.0, 0.0, 0.7]);
        map[9..12].copy_from_slice(&[0.9, 0.8, 0.1]);
        let stats = pitch_statistics(&Tensor::from_slice(&map).view([1, 4, 3]));
        let v = Vec::<f32>::try_from(stats.flatten(0, -1)).unwrap();
        assert!((v[0] + 0.5).abs() < 1e-5 && (v[1] - 0.5).abs() < 1e-3 && (v[2] - 2.0 / 3.0).abs() < 1e-5, "{v:?}");
        let vs = nn::VarStore::new(Device::Cpu);
        let net = VoiceNet::new(&vs.root(), &VoiceNetConfig::emotion_sex_pitch());
        let p = net.predict_proba(&(Tensor::randn([2, 42, 120], (Kind::Float, Device::Cpu))));
        assert_eq!(p.size(), vec![2, 14]);
    }

    /// Maps like the served ones: 40 mean-removed log-mel rows (dB, spread
    /// 12), log F0 (spread 0.3) and voicing strength, from `seed` alone.
    fn served_like_maps(n: i64, frames: i64, seed: u64) -> Tensor {
        use crate::model::seeded_uniform;
        let half_width = |std: f32| std * 3f32.sqrt();
        let bands = seeded_uniform(&[n, 40, frames], -half_width(12.0), half_width(12.0), seed);
        let f0 = seeded_uniform(&[n, 1, frames], -half_width(0.3), half_width(0.3), seed + 1);
        let voicing = seeded_uniform(&[n, 1, frames], 0.0, 1.0, seed + 2);
        Tensor::cat(&[bands, f0, voicing], 1)
    }

    #[test]
    fn the_frozen_network_computes_what_the_trained_one_does() {
        let vs = nn::VarStore::new(Device::Cpu);
        let mut net = VoiceNet::new(&vs.root(), &VoiceNetConfig::emotion_sex_pitch());
        // The statistics of the maps below, as a trained network stores its
        // training maps': band rows of spread 12 dB, log F0 and voicing.
        let mean: Vec<f32> = (0..42).map(|i| if i == 41 { 0.5 } else { 0.0 }).collect();
        let std: Vec<f32> = (0..42).map(|i| if i < 40 { 12.0 } else { 0.3 }).collect();
        net.set_input_stats(&mean, &std);
        crate::model::give_trained_like_values(&vs);
        let frozen = FrozenVoiceNet::new(&net);
        for frames in [120, 300] {
            let x = served_like_maps(3, frames, 2);
            let logits = net.forward_t(&x, false);
            let scale = logits.abs().max().double_value(&[]).max(1.0);
            let gap = (frozen.forward(&x) - &logits).abs().max().double_value(&[]);
            assert!(gap < 1e-5 * scale, "logits differ by {gap} (largest {scale})");
            let gap =
                (VoiceClassifier::predict_proba(&frozen, &x) - net.predict_proba(&x)).abs().max().double_value(&[]);
            assert!(gap < 1e-5, "probabilities differ by {gap}");
        }
    }

    #[test]
    fn the_shipped_ensemble_frozen_gives_its_trained_answers() {
        let weights = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/voice_emotion.safetensors");
        let model = LoadedVoiceModel::load(&weights).unwrap();
        assert_eq!(model.frozen.members.len(), model.net.members.len());
        let x = served_like_maps(4, 300, 5);
        let gap = (model.frozen.predict_proba(&x) - model.net.predict_proba(&x)).abs().max().double_value(&[]);
        assert!(gap < 1e-5, "probabilities differ by {gap}");
    }

    #[test]
    fn input_stats_and_weights_reload_identically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("voice.safetensors");
        let config =
            VoiceNetConfig { n_mfcc: 40, channels: vec![4, 8], classes: 14, dropout: 0.0, pitch_summary: false };
        let vs = nn::VarStore::new(Device::Cpu);
        let mut net = VoiceNet::new(&vs.root(), &config);
        let mean: Vec<f32> = (0..40).map(|i| i as f32 - 20.0).collect();
        let std: Vec<f32> = (0..40).map(|i| 1.0 + i as f32).collect();
        net.set_input_stats(&mean, &std);
        vs.save(&path).unwrap();

        let mut again = nn::VarStore::new(Device::Cpu);
        let reloaded = VoiceNet::new(&again.root(), &config);
        again.load(&path).unwrap();
        let x = Tensor::randn([3, 40, 120], (Kind::Float, Device::Cpu));
        assert!(net.forward_t(&x, false).equal(&reloaded.forward_t(&x, false)));
        assert_eq!(reloaded.input_stats(), (mean, std));
    }
}
