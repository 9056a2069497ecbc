//! Silero VAD: a voice-activity network trained by Silero on thousands of
//! hours of speech, noise and music in many languages, read beside the
//! speech check's own statistics ([`crate::speech`]).
//!
//! The check's statistics and its small network were fitted on three
//! corpora against *generated* non-speech; a detector that heard real
//! recordings of every kind is the second opinion they lack.
//!
//! The weights are `silero_vad_16k.safetensors` from PyPI's `silero-vad`
//! wheel (MIT), installed by `scripts/setup.sh` ([`DEFAULT_SILERO_VAD`]);
//! they are not in this repository. The network, as the wheel's own
//! `tinygrad_model.py` defines it: each 32 ms chunk (512 samples at 16 kHz)
//! with the 64 samples before it, reflect-padded by 64, goes through a
//! fixed STFT (a 256-tap convolution, stride 128, 129 magnitudes), four
//! 1-d convolutions with ReLU (to one 128-vector per chunk), an LSTM cell
//! of 128 carried from chunk to chunk, ReLU, and a 1x1 convolution with a
//! sigmoid: the probability that the chunk holds speech.

use std::path::Path;

use anyhow::Result;
use tch::nn::{self, Module};
use tch::Tensor;

use crate::pool::Pool;

/// Where the setup script installs the weights.
pub const DEFAULT_SILERO_VAD: &str = "/opt/emotion-ai/models/silero_vad_16k.safetensors";
/// The only sample rate these weights read.
pub const VAD_SAMPLE_RATE: u32 = 16_000;
/// Samples in one chunk (32 ms).
pub const CHUNK: usize = 512;
/// Samples of the previous chunk each chunk is read with.
const CONTEXT: usize = 64;
/// Width of the LSTM state.
const HIDDEN: i64 = 128;

/// The network: `new(vs)` + `forward`, the variable names of the wheel's
/// safetensors (`stft_conv.weight`, `conv1.weight`, ..., `lstm_cell.weight_ih`,
/// `final_conv.bias`).
#[derive(Debug)]
pub struct SileroVadNet {
    stft: nn::Conv1D,
    convs: [nn::Conv1D; 4],
    lstm: [Tensor; 4],
    out: nn::Conv1D,
}

impl SileroVadNet {
    pub fn new(vs: &nn::Path) -> Self {
        let conv = |name: &str, cin: i64, cout: i64, k: i64, stride: i64, padding: i64| {
            nn::conv1d(vs / name, cin, cout, k, nn::ConvConfig { stride, padding, ..Default::default() })
        };
        let cell = vs / "lstm_cell";
        let zeros = nn::Init::Const(0.0);
        Self {
            stft: nn::conv1d(
                vs / "stft_conv",
                1,
                258,
                256,
                nn::ConvConfig { stride: 128, bias: false, ..Default::default() },
            ),
            convs: [
                conv("conv1", 129, 128, 3, 1, 1),
                conv("conv2", 128, 64, 3, 2, 1),
                conv("conv3", 64, 64, 3, 2, 1),
                conv("conv4", 64, 128, 3, 1, 1),
            ],
            lstm: [
                cell.var("weight_ih", &[4 * HIDDEN, HIDDEN], zeros),
                cell.var("weight_hh", &[4 * HIDDEN, HIDDEN], zeros),
                cell.var("bias_ih", &[4 * HIDDEN], zeros),
                cell.var("bias_hh", &[4 * HIDDEN], zeros),
            ],
            out: conv("final_conv", HIDDEN, 1, 1, 1, 0),
        }
    }

    /// `[B, N, 576]` chunks with their context (see [`chunks_of`]) to `[B, N]`
    /// speech probabilities, the LSTM starting from zero at each row's first
    /// chunk.
    pub fn forward(&self, chunks: &Tensor) -> Tensor {
        let (b, n) = (chunks.size()[0], chunks.size()[1]);
        let x = chunks.reshape([b * n, 1, (CHUNK + CONTEXT) as i64]).reflection_pad1d([0, CONTEXT as i64]);
        let spectrum = self.stft.forward(&x);
        let half = spectrum.size()[1] / 2;
        let mut x = (spectrum.narrow(1, 0, half).square() + spectrum.narrow(1, half, half).square()).sqrt();
        for conv in &self.convs {
            x = conv.forward(&x).relu();
        }
        // One 128-vector per chunk, then the chunks in order through the LSTM.
        let x = x.reshape([b, n, HIDDEN]);
        let zeros = Tensor::zeros([1, b, HIDDEN], (x.kind(), x.device()));
        let (h, _, _) = x.lstm(&[&zeros, &zeros], &self.lstm.each_ref(), true, 1, 0.0, false, false, true);
        let logits = self.out.forward(&h.relu().transpose(1, 2));
        logits.squeeze_dim(1).sigmoid()
    }
}

/// The chunks of `samples` as the network reads them, `[N, 576]` row-major:
/// chunk `i` is samples `512 i - 64 .. 512 (i + 1)`, zeros before the start
/// and after the end (the last chunk is completed with zeros).
pub fn chunks_of(samples: &[f32]) -> (usize, Vec<f32>) {
    let n = samples.len().div_ceil(CHUNK);
    let mut padded = vec![0f32; CONTEXT + n * CHUNK];
    padded[CONTEXT..CONTEXT + samples.len()].copy_from_slice(samples);
    let mut rows = Vec::with_capacity(n * (CHUNK + CONTEXT));
    for i in 0..n {
        rows.extend_from_slice(&padded[i * CHUNK..(i + 1) * CHUNK + CONTEXT]);
    }
    (n, rows)
}

/// The network with its weights. libtorch tensors cannot be shared between
/// threads: each thread borrows its own copy from a [`Pool`] ([`Self::pool`]).
pub struct SileroVad {
    net: SileroVadNet,
    _vs: nn::VarStore,
}

impl std::fmt::Debug for SileroVad {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SileroVad").finish_non_exhaustive()
    }
}

impl SileroVad {
    /// Loads the wheel's safetensors (see the module docs).
    pub fn load(weights: &Path) -> Result<Self> {
        let (net, vs) =
            super::load_installed(weights, "voice-activity network", "PyPI's silero-vad", SileroVadNet::new)?;
        Ok(Self { net, _vs: vs })
    }

    /// `copies` networks loaded from `weights`, lent one per thread (libtorch
    /// tensors cannot be shared between threads).
    pub fn pool(weights: &Path, copies: usize) -> Result<Pool<Self>> {
        let weights = weights.to_path_buf();
        Pool::new("Silero VAD", copies, move || Self::load(&weights))
    }

    /// The speech probability of each 32 ms chunk of `samples` (mono, 16
    /// kHz), read from the first sample on (the state starts from zero).
    pub fn probabilities(&self, samples: &[f32]) -> Result<Vec<f32>> {
        Ok(self.probabilities_of_each(&[samples])?.pop().unwrap_or_default())
    }

    /// [`Self::probabilities`] of each slice, each read alone; slices of
    /// the same number of chunks (a long clip's full windows) go through the
    /// network together.
    pub fn probabilities_of_each(&self, slices: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
        let mut out = vec![Vec::new(); slices.len()];
        let mut by_length: std::collections::BTreeMap<usize, Vec<usize>> = Default::default();
        for (i, s) in slices.iter().enumerate() {
            by_length.entry(s.len().div_ceil(CHUNK)).or_default().push(i);
        }
        let _guard = tch::no_grad_guard();
        for (n, members) in by_length {
            if n == 0 {
                continue;
            }
            let rows: Vec<f32> = members.iter().flat_map(|&i| chunks_of(slices[i]).1).collect();
            let chunks = Tensor::from_slice(&rows).view([members.len() as i64, n as i64, (CHUNK + CONTEXT) as i64]);
            let p = Vec::<f32>::try_from(&self.net.forward(&chunks).view([-1]))?;
            for (row, &i) in p.chunks(n).zip(&members) {
                out[i] = row.to_vec();
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn chunks_carry_the_samples_before_them_and_end_in_zeros() {
        let samples: Vec<f32> = (1..=1000).map(|i| i as f32).collect();
        let (n, rows) = chunks_of(&samples);
        assert_eq!(n, 2);
        assert_eq!(rows.len(), 2 * 576);
        // First chunk: 64 zeros of context, then samples 1..=512.
        assert!(rows[..64].iter().all(|&v| v == 0.0));
        assert_eq!(rows[64], 1.0);
        assert_eq!(rows[575], 512.0);
        // Second: samples 449..=512 as context, then 513..=1000 and zeros.
        assert_eq!(rows[576], 449.0);
        assert_eq!(rows[576 + 64], 513.0);
        assert_eq!(rows[576 + 64 + 487], 1000.0);
        assert!(rows[576 + 64 + 488..].iter().all(|&v| v == 0.0));
        assert_eq!(chunks_of(&[]).0, 0);
    }

    #[test]
    fn the_network_gives_one_probability_per_chunk() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = SileroVadNet::new(&vs.root());
        let p = net.forward(&Tensor::zeros([2, 5, 576], (tch::Kind::Float, Device::Cpu)));
        assert_eq!(p.size(), [2, 5]);
        let values = Vec::<f32>::try_from(&p.view([-1])).unwrap();
        assert!(values.iter().all(|v| (0.0..=1.0).contains(v)));
    }
}
