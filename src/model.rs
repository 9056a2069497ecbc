//! Networks and their model cards.
//!
//! Models follow the candle-examples shape: `new(&nn::Path, &Config) -> Self`
//! plus `forward_t(&Tensor, train)`. Weights live in safetensors files; each
//! file has a JSON *model card* beside it (classes, input, measured metrics,
//! the commands that trained and evaluated it).
//!
//! Input normalisation is part of the network: the mean and standard deviation
//! measured on the training set are stored as non-trainable tensors in the
//! weights file, so inference can never normalise differently from training.
//! Networks take raw grey levels in `[0, 255]`.

pub mod face_embedder;
pub mod speaker;
pub mod vad;
pub mod verifier;
pub mod voice;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

use crate::detect::CropSpec;

/// The seven FER2013 emotions, in the order of the original csv's labels (and
/// of every probability vector this crate produces).
pub const EMOTIONS: [&str; 7] = ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"];

/// Side of the square grayscale face crop every face network reads.
pub const FACE_SIZE: i64 = 48;

/// Shape of a [`FaceNet`]: VGG-style stages of two 3x3 conv + batch-norm +
/// ReLU layers with a residual shortcut, each stage halving the resolution.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaceNetConfig {
    /// Output channels of each stage (each halves the side: 48 -> 24 -> 12 -> 6 -> 3).
    pub channels: Vec<i64>,
    /// Width of the hidden fully connected layer.
    pub hidden: i64,
    /// Number of output classes.
    pub classes: i64,
    /// Dropout before each fully connected layer, during training only.
    pub dropout: f64,
    /// Side of the square input in pixels (48 for the FER-style crop; each
    /// stage halves it). Cards written before it existed mean 48.
    #[serde(default = "default_input_size")]
    pub input_size: i64,
}

fn default_input_size() -> i64 {
    FACE_SIZE
}

impl FaceNetConfig {
    /// The architecture of the shipped face-emotion model.
    pub fn emotion() -> Self {
        Self {
            channels: vec![32, 64, 128, 256],
            hidden: 256,
            classes: EMOTIONS.len() as i64,
            dropout: 0.4,
            input_size: FACE_SIZE,
        }
    }

    /// The architecture of the earlier face-sex model: the emotion network's
    /// shape with two outputs, so it can start from the emotion weights.
    pub fn sex() -> Self {
        Self { classes: 2, ..Self::emotion() }
    }

    /// A face-sex network on a larger crop with context (96x96: hair, jaw
    /// line and neck around the detected box): one more stage than the
    /// emotion network and half its channels in the first stages, so a face
    /// costs about as much as the 48x48 network (150 vs 117 M multiply-adds).
    pub fn sex_context() -> Self {
        Self { channels: vec![16, 32, 64, 128, 256], hidden: 256, classes: 2, dropout: 0.4, input_size: 96 }
    }
}

/// Batch-norm epsilon of every [`Stage`] (tch's default, named so that
/// [`FrozenFaceNet`] folds with the value training used).
const BN_EPS: f64 = 1e-5;

/// One stage: conv-bn-relu, conv-bn, plus a 1x1 projected shortcut, relu, 2x2 max-pool.
#[derive(Debug)]
pub(crate) struct Stage {
    conv1: nn::Conv2D,
    bn1: nn::BatchNorm,
    conv2: nn::Conv2D,
    bn2: nn::BatchNorm,
    shortcut: nn::Conv2D,
    bn_shortcut: nn::BatchNorm,
}

impl Stage {
    pub(crate) fn new(vs: &nn::Path, c_in: i64, c_out: i64) -> Self {
        let conv3 = nn::ConvConfig { padding: 1, bias: false, ..Default::default() };
        let conv1x1 = nn::ConvConfig { bias: false, ..Default::default() };
        let bn = nn::BatchNormConfig { eps: BN_EPS, ..Default::default() };
        Self {
            conv1: nn::conv2d(vs / "conv1", c_in, c_out, 3, conv3),
            bn1: nn::batch_norm2d(vs / "bn1", c_out, bn),
            conv2: nn::conv2d(vs / "conv2", c_out, c_out, 3, conv3),
            bn2: nn::batch_norm2d(vs / "bn2", c_out, bn),
            shortcut: nn::conv2d(vs / "shortcut", c_in, c_out, 1, conv1x1),
            bn_shortcut: nn::batch_norm2d(vs / "bn_shortcut", c_out, bn),
        }
    }

    pub(crate) fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ys = xs.apply(&self.conv1).apply_t(&self.bn1, train).relu();
        let ys = ys.apply(&self.conv2).apply_t(&self.bn2, train);
        let skip = xs.apply(&self.shortcut).apply_t(&self.bn_shortcut, train);
        (ys + skip).relu().max_pool2d_default(2)
    }
}

/// Convolutional network on a square grayscale face crop (48x48 unless its
/// config says otherwise), giving class logits.
///
/// Used for the 7 emotions, the face's sex and the face verifier.
#[derive(Debug)]
pub struct FaceNet {
    input_mean: Tensor,
    input_std: Tensor,
    stages: Vec<Stage>,
    fc1: nn::Linear,
    fc2: nn::Linear,
    dropout: f64,
}

impl FaceNet {
    /// Declares the network's variables under `vs`. The input statistics start
    /// at (127.5, 64) and are overwritten by [`FaceNet::set_input_stats`] before
    /// training, or by loading weights.
    pub fn new(vs: &nn::Path, config: &FaceNetConfig) -> Self {
        let mut input_mean = vs.zeros_no_train("input_mean", &[1]);
        let mut input_std = vs.ones_no_train("input_std", &[1]);
        tch::no_grad(|| {
            let _ = input_mean.fill_(127.5);
            let _ = input_std.fill_(64.0);
        });
        let mut stages = Vec::with_capacity(config.channels.len());
        let mut c_in = 1;
        for (i, &c_out) in config.channels.iter().enumerate() {
            stages.push(Stage::new(&(vs / format!("stage{i}")), c_in, c_out));
            c_in = c_out;
        }
        let side = config.input_size >> config.channels.len();
        let flat = c_in * side * side;
        Self {
            input_mean,
            input_std,
            stages,
            fc1: nn::linear(vs / "fc1", flat, config.hidden, Default::default()),
            fc2: nn::linear(vs / "fc2", config.hidden, config.classes, Default::default()),
            dropout: config.dropout,
        }
    }

    /// Records the training set's pixel mean and standard deviation (grey
    /// levels, 0..255) in the network, where inference will find them.
    pub fn set_input_stats(&mut self, mean: f64, std: f64) {
        tch::no_grad(|| {
            let _ = self.input_mean.fill_(mean);
            let _ = self.input_std.fill_(std);
        });
    }

    /// The stored input statistics `(mean, std)`, for the model card.
    pub fn input_stats(&self) -> (f64, f64) {
        (self.input_mean.double_value(&[0]), self.input_std.double_value(&[0]))
    }

    /// Class probabilities for a batch `[N, 1, S, S]` of grey levels,
    /// averaged over each face and its mirror image (test-time augmentation,
    /// used identically by evaluation and serving).
    pub fn predict_proba(&self, faces: &Tensor) -> Tensor {
        self.predict_proba_with(faces, true)
    }

    /// [`Self::predict_proba`], with the mirror images only when `mirror`
    /// (half the work without: the face sex network beside the face sex head
    /// reads the face alone, as the head's card says).
    pub fn predict_proba_with(&self, faces: &Tensor, mirror: bool) -> Tensor {
        mirror_averaged(faces, mirror, |x| self.forward_t(x, false))
    }
}

/// Faces and their mirror images in one batch through `forward` (logits),
/// the two distributions averaged; the faces alone unless `mirror`. One
/// pass over both costs less than two (batch norm is frozen in evaluation,
/// so rows stay independent).
fn mirror_averaged(faces: &Tensor, mirror: bool, forward: impl Fn(&Tensor) -> Tensor) -> Tensor {
    tch::no_grad(|| {
        if !mirror {
            return forward(faces).softmax(-1, Kind::Float);
        }
        let n = faces.size()[0];
        let both = Tensor::cat(&[faces.shallow_clone(), faces.flip([3])], 0);
        let p = forward(&both).softmax(-1, Kind::Float);
        (p.narrow(0, 0, n) + p.narrow(0, n, n)) / 2.0
    })
}

/// What evaluation needs of a face network: class probabilities for a batch
/// of grey faces, so that the same code measures a network in training
/// ([`FaceNet`]) and the form serving runs ([`FrozenFaceNet`]).
pub trait FaceClassifier {
    /// Class probabilities for `[N, 1, S, S]` grey levels, averaged with the
    /// mirror images' when `mirror`.
    fn predict_proba_with(&self, faces: &Tensor, mirror: bool) -> Tensor;
}

impl FaceClassifier for FaceNet {
    fn predict_proba_with(&self, faces: &Tensor, mirror: bool) -> Tensor {
        FaceNet::predict_proba_with(self, faces, mirror)
    }
}

/// The same `[N, C, H, W]` tensor laid out channel by channel within each
/// pixel: libtorch's convolutions (oneDNN) and max-pooling then take their
/// channels-last paths, faster on this machine's AVX-512 cores (the face
/// embedder: 7.7 against 8.9 ms a face, measured in process).
pub(crate) fn channels_last(t: &Tensor) -> Tensor {
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// A convolution with the batch norm after it folded in: the weights scaled
/// per output channel by `gamma / sqrt(var + eps)` and a bias of `beta -
/// mean * scale`, the same function of the input as conv then batch norm
/// in evaluation, in one operation.
#[derive(Debug)]
struct FoldedConv {
    weight: Tensor,
    bias: Tensor,
    padding: i64,
}

impl FoldedConv {
    fn new(conv: &nn::Conv2D, bn: &nn::BatchNorm, padding: i64) -> Self {
        tch::no_grad(|| {
            let ones = Tensor::ones_like(&bn.running_var);
            let gamma = bn.ws.as_ref().unwrap_or(&ones);
            let zeros = Tensor::zeros_like(&bn.running_mean);
            let beta = bn.bs.as_ref().unwrap_or(&zeros);
            let scale = gamma / (&bn.running_var + BN_EPS).sqrt();
            let conv_bias = conv.bs.as_ref().map_or_else(|| Tensor::zeros_like(&bn.running_mean), |b| b.copy());
            let weight = &conv.ws * scale.view([-1, 1, 1, 1]);
            let bias = beta + (conv_bias - &bn.running_mean) * &scale;
            Self { weight: channels_last(&weight), bias, padding }
        })
    }

    fn forward(&self, xs: &Tensor) -> Tensor {
        xs.conv2d(&self.weight, Some(&self.bias), [1, 1], [self.padding, self.padding], [1, 1], 1)
    }
}

/// A copy of a linear layer's weight and bias, detached from training.
pub(crate) fn frozen_linear(layer: &nn::Linear) -> (Tensor, Option<Tensor>) {
    (layer.ws.detach().copy(), layer.bs.as_ref().map(|b| b.detach().copy()))
}

/// A trained [`Stage`] prepared for inference: its three convolutions with
/// their batch norms folded in, reading and giving channels-last tensors.
#[derive(Debug)]
pub(crate) struct FrozenStage {
    conv1: FoldedConv,
    conv2: FoldedConv,
    shortcut: FoldedConv,
}

impl FrozenStage {
    pub(crate) fn new(stage: &Stage) -> Self {
        Self {
            conv1: FoldedConv::new(&stage.conv1, &stage.bn1, 1),
            conv2: FoldedConv::new(&stage.conv2, &stage.bn2, 1),
            shortcut: FoldedConv::new(&stage.shortcut, &stage.bn_shortcut, 0),
        }
    }

    /// `Stage::forward_t(_, false)`, up to float rounding.
    pub(crate) fn forward(&self, xs: &Tensor) -> Tensor {
        let main = self.conv2.forward(&self.conv1.forward(xs).relu());
        (main + self.shortcut.forward(xs)).relu().max_pool2d([2, 2], [2, 2], [0, 0], [1, 1], false)
    }
}

/// A trained [`FaceNet`] prepared for inference: every batch norm folded into
/// its convolution and the activations kept channels-last. The same function
/// as `FaceNet::forward_t(_, false)` up to float rounding (tested within
/// 1e-5), a quarter less time on the emotion network's two-face batch
/// (BENCHMARKS.md, "A third and fourth try at no slower"). Serving and evaluation use it;
/// training keeps [`FaceNet`], whose batch norms learn.
#[derive(Debug)]
pub struct FrozenFaceNet {
    input_mean: f64,
    input_std: f64,
    stages: Vec<FrozenStage>,
    fc1: (Tensor, Option<Tensor>),
    fc2: (Tensor, Option<Tensor>),
}

impl FrozenFaceNet {
    /// Folds `net`'s current weights (a copy: later training of `net` does
    /// not reach it).
    pub fn new(net: &FaceNet) -> Self {
        let (input_mean, input_std) = net.input_stats();
        let stages = net.stages.iter().map(FrozenStage::new).collect();
        Self { input_mean, input_std, stages, fc1: frozen_linear(&net.fc1), fc2: frozen_linear(&net.fc2) }
    }

    /// Class logits for `[N, 1, S, S]` grey levels.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        tch::no_grad(|| {
            let mut ys = channels_last(&((xs.to_kind(Kind::Float) - self.input_mean) / self.input_std));
            for stage in &self.stages {
                ys = stage.forward(&ys);
            }
            // Flattened in [C, H, W] order, as fc1 learned.
            ys.contiguous()
                .flatten(1, -1)
                .linear(&self.fc1.0, self.fc1.1.as_ref())
                .relu()
                .linear(&self.fc2.0, self.fc2.1.as_ref())
        })
    }
}

impl FaceClassifier for FrozenFaceNet {
    fn predict_proba_with(&self, faces: &Tensor, mirror: bool) -> Tensor {
        mirror_averaged(faces, mirror, |x| self.forward(x))
    }
}

impl ModuleT for FaceNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let mut ys = (xs.to_kind(Kind::Float) - &self.input_mean) / &self.input_std;
        for stage in &self.stages {
            ys = stage.forward_t(&ys, train);
        }
        ys.flatten(1, -1)
            .dropout(self.dropout, train)
            .apply(&self.fc1)
            .relu()
            .dropout(self.dropout, train)
            .apply(&self.fc2)
    }
}

/// How a model's input is prepared; recorded in the card so that users of the
/// weights outside this crate can reproduce it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct InputSpec {
    /// `[height, width]` in pixels.
    pub size: [i64; 2],
    /// Colour handling, e.g. "grayscale".
    pub color: String,
    /// How grey levels become network input.
    pub normalisation: Normalisation,
    /// Context around the detected box, as a fraction of its side added on
    /// every side before scaling to `size` (0: the box itself; cards written
    /// before it existed mean 0).
    #[serde(default)]
    pub margin: f64,
}

impl InputSpec {
    /// The 48x48 grey face crop the FER-style networks read, normalised by
    /// `mean` and `std` (the training crops'), with `note` saying whose.
    pub fn grey_face(mean: f64, std: f64, note: &str) -> Self {
        Self::grey_context(FACE_SIZE, 0.0, mean, std, note)
    }

    /// A `size` x `size` grey crop of the box grown by `margin` of its side
    /// on every side.
    pub fn grey_context(size: i64, margin: f64, mean: f64, std: f64, note: &str) -> Self {
        Self {
            size: [size, size],
            color: "grayscale".into(),
            normalisation: Normalisation { mean, std, note: note.into() },
            margin,
        }
    }

    /// How to cut this input out of a detected face box.
    pub fn crop(&self) -> CropSpec {
        CropSpec { size: self.size[0].max(1) as u32, margin: self.margin }
    }
}

/// `(pixel - mean) / std` on grey levels 0..255 (stored in the weights too).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Normalisation {
    pub mean: f64,
    pub std: f64,
    pub note: String,
}

/// The JSON card beside each weights file. `metrics` is free-form because each
/// model reports what fits it (accuracy on a named split, per-class recall...).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelCard {
    pub name: String,
    pub description: String,
    pub classes: Vec<String>,
    pub input: InputSpec,
    pub architecture: FaceNetConfig,
    pub params: i64,
    pub trained_on: String,
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

impl ModelCard {
    /// Reads a card from JSON.
    pub fn load(path: &Path) -> Result<Self> {
        load_card(path)
    }

    /// Writes the card as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        save_card(self, path)
    }
}

/// Reads any model card from JSON.
pub(crate) fn load_card<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading model card {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing model card {}", path.display()))
}

/// Writes any model card as pretty JSON with a final newline.
pub(crate) fn save_card<T: Serialize>(card: &T, path: &Path) -> Result<()> {
    let text = serde_json::to_string_pretty(card)?;
    std::fs::write(path, text + "\n").with_context(|| format!("writing model card {}", path.display()))
}

/// The card path that belongs to a weights path: `x.safetensors` -> `x.json`.
pub fn card_path(weights: &Path) -> PathBuf {
    weights.with_extension("json")
}

/// A network with its weights and card, ready for inference on the CPU.
pub struct LoadedFaceModel {
    /// Owns the tensors `net` refers to.
    _vs: nn::VarStore,
    /// The network as trained (tools that combine or fine-tune networks).
    pub net: FaceNet,
    /// The same network prepared for inference: what serving and
    /// evaluation run.
    pub frozen: FrozenFaceNet,
    pub card: ModelCard,
}

impl LoadedFaceModel {
    /// Loads `weights` (safetensors) and the card beside it, checking that the
    /// card's classes match the network's output width.
    pub fn load(weights: &Path) -> Result<Self> {
        let card = ModelCard::load(&card_path(weights))?;
        if card.classes.len() as i64 != card.architecture.classes {
            bail!(
                "model card {} lists {} classes but its architecture has {} outputs",
                card_path(weights).display(),
                card.classes.len(),
                card.architecture.classes
            );
        }
        if card.input.size != [card.architecture.input_size; 2] {
            bail!(
                "model card {} gives a {:?} input but its architecture reads {} pixels a side",
                card_path(weights).display(),
                card.input.size,
                card.architecture.input_size
            );
        }
        let mut vs = nn::VarStore::new(Device::Cpu);
        let net = FaceNet::new(&vs.root(), &card.architecture);
        vs.load(weights).with_context(|| format!("loading weights {}", weights.display()))?;
        vs.freeze();
        let frozen = FrozenFaceNet::new(&net);
        Ok(Self { _vs: vs, net, frozen, card })
    }

    /// Every variable of the network by name (weights, batch-norm statistics,
    /// input scaling), for tools that combine trained networks.
    pub fn variables(&self) -> std::collections::HashMap<String, Tensor> {
        self._vs.variables()
    }
}

/// Logistic regression on a standardised embedding, `p(male) = sigmoid(w .
/// (x - mean) / std + b)`: the sex heads on the speaker encoder and the face
/// embedder. The standardisation is the training embeddings', stored in the
/// weights beside `w` and `b`.
#[derive(Debug)]
pub struct LogisticHead {
    pub mean: Tensor,
    pub std: Tensor,
    pub linear: nn::Linear,
}

impl LogisticHead {
    /// A head for `dim`-number embeddings.
    pub fn new(vs: &nn::Path, dim: i64) -> Self {
        Self {
            mean: vs.zeros_no_train("input_mean", &[dim]),
            std: vs.ones_no_train("input_std", &[dim]),
            linear: nn::linear(vs / "linear", dim, 1, Default::default()),
        }
    }

    /// `[N, dim]` embeddings to `[N]` logits of male.
    pub fn forward(&self, embeddings: &Tensor) -> Tensor {
        nn::Module::forward(&self.linear, &((embeddings - &self.mean) / &self.std)).squeeze_dim(1)
    }
}

/// Test support: gives a fresh network values like a trained one's, from a
/// generator of its own (not libtorch's global one, which tests running side
/// by side draw from in turn), visiting the variables in name order: conv and
/// linear weights and biases uniform in +-1/sqrt(fan-in) (PyTorch's default),
/// batch norms with learned scales, shifts and running statistics. Input
/// statistics and counters keep their values.
#[cfg(test)]
pub(crate) fn give_trained_like_values(vs: &nn::VarStore) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(11);
    let variables = vs.variables();
    let mut names: Vec<&String> = variables.keys().collect();
    names.sort();
    let fan_in = |weight: &Tensor| -> f64 {
        let size = weight.size();
        (size[1..].iter().product::<i64>()).max(1) as f64
    };
    tch::no_grad(|| {
        for name in names {
            let mut t = variables[name].shallow_clone();
            let n = t.numel();
            let mut draw = |lo: f64, hi: f64| -> Tensor {
                let values: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi) as f32).collect();
                Tensor::from_slice(&values).view(t.size().as_slice())
            };
            let batch_norm = name.contains("bn");
            if name.contains("running_var") {
                t.copy_(&draw(0.2, 3.2));
            } else if name.contains("running_mean") || (batch_norm && name.ends_with("bias")) {
                t.copy_(&draw(-0.8, 0.8));
            } else if batch_norm && name.ends_with("weight") {
                t.copy_(&draw(0.25, 1.75));
            } else if name.ends_with("weight") && t.dim() >= 2 {
                let bound = 1.0 / fan_in(&t).sqrt();
                t.copy_(&draw(-bound, bound));
            } else if let Some(weight) = name.strip_suffix("bias").and_then(|p| variables.get(&format!("{p}weight"))) {
                let bound = 1.0 / fan_in(weight).sqrt();
                t.copy_(&draw(-bound, bound));
            }
        }
    });
}

/// Test support: a tensor of `shape` uniform in `lo..hi` from a generator of
/// its own (see [`give_trained_like_values`]).
#[cfg(test)]
pub(crate) fn seeded_uniform(shape: &[i64], lo: f32, hi: f32, seed: u64) -> Tensor {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::SmallRng::seed_from_u64(seed);
    let n: i64 = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi)).collect();
    Tensor::from_slice(&values).view(shape)
}

/// A network whose weights `scripts/setup.sh` installs outside this
/// repository (the speaker encoder, Silero VAD): declared by `build`, loaded
/// from `weights` and frozen. `what` and `source` name it in errors: what is
/// missing, and where the setup script gets it.
pub(crate) fn load_installed<N>(
    weights: &Path,
    what: &str,
    source: &str,
    build: impl FnOnce(&nn::Path) -> N,
) -> Result<(N, nn::VarStore)> {
    if !weights.is_file() {
        bail!("the {what} {} is missing: scripts/setup.sh installs it (from {source})", weights.display());
    }
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = build(&vs.root());
    vs.load(weights).with_context(|| format!("loading the {what} {}", weights.display()))?;
    vs.freeze();
    Ok((net, vs))
}

/// Number of trainable parameters in a var store.
pub fn parameter_count(vs: &nn::VarStore) -> i64 {
    vs.trainable_variables().iter().map(|t| t.numel() as i64).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_shape_is_batch_by_classes() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = FaceNet::new(&vs.root(), &FaceNetConfig::emotion());
        let faces = Tensor::rand([3, 1, FACE_SIZE, FACE_SIZE], (Kind::Float, Device::Cpu)) * 255.0;
        let logits = net.forward_t(&faces, false);
        assert_eq!(logits.size(), vec![3, 7]);
        let proba = net.predict_proba(&faces);
        let sums = proba.sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        for i in 0..3 {
            assert!((sums.double_value(&[i]) - 1.0).abs() < 1e-5);
        }
    }

    /// A network whose batch norms have learned something; the same one
    /// every run.
    fn net_with_trained_batch_norms(config: &FaceNetConfig) -> (nn::VarStore, FaceNet) {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = FaceNet::new(&vs.root(), config);
        give_trained_like_values(&vs);
        (vs, net)
    }

    #[test]
    fn the_frozen_network_computes_what_the_trained_one_does() {
        for config in [FaceNetConfig::emotion(), FaceNetConfig::sex_context()] {
            let (_vs, net) = net_with_trained_batch_norms(&config);
            let frozen = FrozenFaceNet::new(&net);
            let side = config.input_size;
            let faces = seeded_uniform(&[3, 1, side, side], 0.0, 255.0, 2);
            let logits = net.forward_t(&faces, false);
            let frozen_logits = frozen.forward(&faces);
            assert_eq!(frozen_logits.size(), logits.size());
            let scale = logits.abs().max().double_value(&[]).max(1.0);
            let gap = (&frozen_logits - &logits).abs().max().double_value(&[]);
            assert!(gap < 1e-5 * scale, "logits differ by {gap} (largest {scale})");
            for mirror in [false, true] {
                let p = FaceClassifier::predict_proba_with(&net, &faces, mirror);
                let q = frozen.predict_proba_with(&faces, mirror);
                let gap = (&p - &q).abs().max().double_value(&[]);
                assert!(gap < 1e-5, "probabilities differ by {gap} (mirror {mirror})");
            }
        }
    }

    #[test]
    fn the_shipped_networks_frozen_give_their_trained_answers() {
        let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        for name in ["face_emotion", "face_sex", "face_verifier"] {
            let model = LoadedFaceModel::load(&models.join(format!("{name}.safetensors"))).unwrap();
            let side = model.card.architecture.input_size;
            let faces = seeded_uniform(&[4, 1, side, side], 0.0, 255.0, 3);
            let p = model.net.predict_proba(&faces);
            let q = model.frozen.predict_proba_with(&faces, true);
            let gap = (&p - &q).abs().max().double_value(&[]);
            assert!(gap < 1e-5, "{name}: probabilities differ by {gap}");
        }
    }

    #[test]
    fn the_context_sex_network_reads_96_pixel_crops() {
        let vs = nn::VarStore::new(Device::Cpu);
        let config = FaceNetConfig::sex_context();
        let net = FaceNet::new(&vs.root(), &config);
        let faces = Tensor::rand([2, 1, config.input_size, config.input_size], (Kind::Float, Device::Cpu)) * 255.0;
        assert_eq!(net.predict_proba(&faces).size(), vec![2, 2]);
        // 5 stages take 96 px to 3: the classifier sees as many features as the emotion network's.
        assert_eq!(config.input_size >> config.channels.len(), FACE_SIZE >> FaceNetConfig::emotion().channels.len());
    }

    #[test]
    fn a_card_whose_input_size_is_not_the_networks_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let weights = dir.path().join("sex.safetensors");
        let config = FaceNetConfig { channels: vec![4, 8], hidden: 8, classes: 2, dropout: 0.0, input_size: 64 };
        let vs = nn::VarStore::new(Device::Cpu);
        let _net = FaceNet::new(&vs.root(), &config);
        vs.save(&weights).unwrap();
        let card = |size: i64| ModelCard {
            name: "face_sex".into(),
            description: String::new(),
            classes: vec!["female".into(), "male".into()],
            input: InputSpec::grey_context(size, 0.25, 128.0, 64.0, ""),
            architecture: config.clone(),
            params: 0,
            trained_on: String::new(),
            metrics: serde_json::json!({}),
            calibration: None,
            mixed: None,
            train_command: String::new(),
            eval_command: String::new(),
        };
        card(64).save(&card_path(&weights)).unwrap();
        let loaded = LoadedFaceModel::load(&weights).unwrap();
        assert_eq!(loaded.card.input.crop(), CropSpec { size: 64, margin: 0.25 });
        card(48).save(&card_path(&weights)).unwrap();
        let err = LoadedFaceModel::load(&weights).err().unwrap().to_string();
        assert!(err.contains("64 pixels a side"), "{err}");
    }

    #[test]
    fn predictions_average_each_face_with_its_own_mirror_image() {
        tch::manual_seed(3);
        let vs = nn::VarStore::new(Device::Cpu);
        let net = FaceNet::new(&vs.root(), &FaceNetConfig::emotion());
        let faces = Tensor::rand([3, 1, 48, 48], (Kind::Float, Device::Cpu)) * 255.0;
        let expected = tch::no_grad(|| {
            (net.forward_t(&faces, false).softmax(-1, Kind::Float)
                + net.forward_t(&faces.flip([3]), false).softmax(-1, Kind::Float))
                / 2.0
        });
        let got = net.predict_proba(&faces);
        assert_eq!(got.size(), [3, 7]);
        let gap = (got - expected).abs().max().double_value(&[]);
        assert!(gap < 1e-5, "batched mirror pass differs by {gap}");
        // Without the mirror: the face's own distribution.
        let once = tch::no_grad(|| net.forward_t(&faces, false).softmax(-1, Kind::Float));
        let gap = (net.predict_proba_with(&faces, false) - once).abs().max().double_value(&[]);
        assert!(gap < 1e-6, "the face alone differs by {gap}");
    }

    #[test]
    fn saved_weights_reload_to_identical_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("net.safetensors");
        let config =
            FaceNetConfig { channels: vec![8, 16], hidden: 16, classes: 7, dropout: 0.3, input_size: FACE_SIZE };
        let vs = nn::VarStore::new(Device::Cpu);
        let mut net = FaceNet::new(&vs.root(), &config);
        net.set_input_stats(120.0, 60.0);
        vs.save(&path).unwrap();

        let mut reloaded_vs = nn::VarStore::new(Device::Cpu);
        let reloaded = FaceNet::new(&reloaded_vs.root(), &config);
        reloaded_vs.load(&path).unwrap();

        let faces = Tensor::rand([2, 1, FACE_SIZE, FACE_SIZE], (Kind::Float, Device::Cpu)) * 255.0;
        let a = net.forward_t(&faces, false);
        let b = reloaded.forward_t(&faces, false);
        assert_eq!(a.size(), b.size());
        assert!(a.equal(&b), "reloaded network gives different outputs");
        assert_eq!(reloaded.input_stats(), (120.0, 60.0));
    }
}
