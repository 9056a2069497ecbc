//! Sex from a voice through a speaker encoder that learned on thousands of
//! voices, not on our few hundred.
//!
//! The voice network learns sex from ~230 speakers of three corpora, and
//! what it learns follows the corpus: on a corpus it never heard it gets
//! 88-89% (models/README.md). A speaker encoder, trained to tell thousands of
//! speakers apart, puts every voice on a sphere where sex is one of the
//! plainest directions; a logistic head on that embedding, fitted on our
//! corpora, is the served sex ([`SpeakerSexModel`]).
//!
//! The encoder is Resemblyzer's (Apache-2.0, PyPI `Resemblyzer` 0.1.4,
//! from the Real-Time-Voice-Cloning project): GE2E (Wan et al. 2018), three
//! LSTM layers of 256 over 40 mel bands, the last layer's final state through
//! a linear layer and ReLU, L2-normalised. `scripts/setup.sh` takes its
//! weights out of the wheel and converts them to safetensors
//! ([`DEFAULT_SPEAKER_ENCODER`]); they are not in this repository.
//!
//! Its input conventions, kept here because the weights expect them: 16 kHz,
//! the level raised (never lowered) to -30 dBFS, mel **power** (not dB) from
//! 400-sample Hann frames every 160 samples (librosa's `melspectrogram`
//! defaults, Slaney filters), cut into partial utterances of 160 frames
//! (1.6 s) 1.3 times a second; an utterance's embedding is the normalised
//! mean of its partials'.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module, RNN};
use tch::{Device, Kind, Tensor};

use super::{card_path, LogisticHead};
use crate::features::pitch::{pitch_summary, PitchTrack, PitchTracker, PITCH_SUMMARY_SIZE};
use crate::features::{rms, window_samples, MfccConfig, MfccExtractor};

/// Where the setup script installs the converted encoder weights.
pub const DEFAULT_SPEAKER_ENCODER: &str = "/opt/emotion-ai/models/speaker_encoder.safetensors";

/// Mel bands of the encoder's input.
pub const ENCODER_MEL_BANDS: i64 = 40;
/// Frames (10 ms) in one partial utterance.
pub const PARTIAL_FRAMES: usize = 160;
/// Length of an embedding.
pub const EMBEDDING_SIZE: i64 = 256;
/// Partial utterances per second of audio (Resemblyzer's default).
const PARTIALS_PER_SECOND: f64 = 1.3;
/// A last partial reaching past the end is kept if at least this share of it
/// is audio.
const MIN_LAST_COVERAGE: f64 = 0.75;
/// Level the audio is raised to when quieter (dBFS).
const TARGET_DBFS: f32 = -30.0;
/// Partial utterances run through the LSTM at once.
const PARTIAL_BATCH: usize = 64;

/// The encoder's mel front end: 16 kHz, 25 ms frames every 10 ms, a
/// 400-point FFT, 40 bands over 0-8 kHz (kept in dB by the extractor and
/// turned back to power for the encoder).
pub fn encoder_mel_config() -> MfccConfig {
    MfccConfig {
        sample_rate: 16_000,
        n_fft: 400,
        win_length: 400,
        hop_length: 160,
        n_mels: ENCODER_MEL_BANDS as usize,
        n_mfcc: ENCODER_MEL_BANDS as usize,
        f_min: 0.0,
        f_max: 8_000.0,
        log_mel: true,
    }
}

/// First frames of the partial utterances of a clip of `samples` samples
/// (Resemblyzer's `compute_partial_slices` with its defaults): one every
/// 77 frames, the last kept only if three quarters of it is audio, always at
/// least one. Frames past the clip's end are zeros.
pub fn partial_starts(samples: usize, hop_length: usize) -> Vec<usize> {
    let n_frames = (samples + 1).div_ceil(hop_length);
    let step = ((16_000.0 / PARTIALS_PER_SECOND) / hop_length as f64).round() as usize;
    let steps = (n_frames + step + 1).saturating_sub(PARTIAL_FRAMES).max(1);
    let mut starts: Vec<usize> = (0..steps).step_by(step).collect();
    if let Some(&last) = starts.last() {
        let span = (PARTIAL_FRAMES * hop_length) as f64;
        let coverage = (samples as f64 - (last * hop_length) as f64) / span;
        if coverage < MIN_LAST_COVERAGE && starts.len() > 1 {
            starts.pop();
        }
    }
    starts
}

/// The encoder network: `new(vs)` + `forward`, the variable names of the
/// PyTorch original (`lstm.weight_ih_l0`, ..., `linear.weight`).
#[derive(Debug)]
pub struct SpeakerEncoderNet {
    lstm: nn::LSTM,
    linear: nn::Linear,
}

impl SpeakerEncoderNet {
    pub fn new(vs: &nn::Path) -> Self {
        let config = nn::RNNConfig { num_layers: 3, train: false, batch_first: true, ..Default::default() };
        Self {
            lstm: nn::lstm(vs / "lstm", ENCODER_MEL_BANDS, EMBEDDING_SIZE, config),
            linear: nn::linear(vs / "linear", EMBEDDING_SIZE, EMBEDDING_SIZE, Default::default()),
        }
    }

    /// `[N, 160, 40]` mel power partials to `[N, 256]` unit-length embeddings.
    pub fn forward(&self, mels: &Tensor) -> Tensor {
        let (_, state) = self.lstm.seq(mels);
        let last = state.h().get(-1);
        let raw = self.linear.forward(&last).relu();
        // A partial all of whose features the ReLU zeroes has no direction.
        unit(&raw)
    }
}

/// The encoder with its mel front end, loaded once.
pub struct SpeakerEncoder {
    net: SpeakerEncoderNet,
    mel: MfccExtractor,
    _vs: nn::VarStore,
}

impl std::fmt::Debug for SpeakerEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeakerEncoder").finish_non_exhaustive()
    }
}

impl SpeakerEncoder {
    /// Loads the converted weights (see the module docs).
    pub fn load(weights: &Path) -> Result<Self> {
        let (net, vs) =
            super::load_installed(weights, "speaker encoder", "PyPI's Resemblyzer 0.1.4", SpeakerEncoderNet::new)?;
        Ok(Self { net, mel: MfccExtractor::new(encoder_mel_config()), _vs: vs })
    }

    /// The `[frames, 40]` mel power of `samples` (frame-major), the level
    /// raised to -30 dBFS first if lower, zeros appended so every partial
    /// that starts at `starts` is whole.
    fn mel_power(&self, samples: &[f32], starts: &[usize]) -> Vec<f32> {
        let hop = encoder_mel_config().hop_length;
        let level = rms(samples);
        let gain = if level > 0.0 { 10f32.powf((TARGET_DBFS - 20.0 * level.log10()) / 20.0).max(1.0) } else { 1.0 };
        let needed = (starts.last().copied().unwrap_or(0) + PARTIAL_FRAMES) * hop;
        let mut audio: Vec<f32> = samples.iter().map(|s| s * gain).collect();
        if audio.len() < needed {
            audio.resize(needed, 0.0);
        }
        let db = self.mel.compute(&audio);
        let bands = ENCODER_MEL_BANDS as usize;
        let mut power = vec![0f32; db.frames * bands];
        for t in 0..db.frames {
            for b in 0..bands {
                power[t * bands + b] = 10f32.powf(db.get(b, t) / 10.0);
            }
        }
        power
    }

    /// The first frames of the partial utterances of `samples` (see
    /// [`partial_starts`]) and their unit-length embeddings, `[partials, 256]`.
    pub fn partial_embeddings(&self, samples: &[f32]) -> Result<(Vec<usize>, Tensor)> {
        if samples.is_empty() {
            bail!("an empty clip has no speaker");
        }
        let bands = ENCODER_MEL_BANDS as usize;
        let starts = partial_starts(samples.len(), encoder_mel_config().hop_length);
        let power = self.mel_power(samples, &starts);
        let mut partials = Vec::with_capacity(starts.len() * PARTIAL_FRAMES * bands);
        for &s in &starts {
            partials.extend_from_slice(&power[s * bands..(s + PARTIAL_FRAMES) * bands]);
        }
        let all = Tensor::from_slice(&partials).view([starts.len() as i64, PARTIAL_FRAMES as i64, ENCODER_MEL_BANDS]);
        let _guard = tch::no_grad_guard();
        let parts: Vec<Tensor> = (0..starts.len())
            .step_by(PARTIAL_BATCH)
            .map(|from| {
                let len = PARTIAL_BATCH.min(starts.len() - from) as i64;
                self.net.forward(&all.narrow(0, from as i64, len))
            })
            .collect();
        Ok((starts, Tensor::cat(&parts, 0)))
    }

    /// One unit-length embedding per window of a clip, `[spans.len(), 256]`,
    /// the same way in training and serving. A clip no longer than `window`
    /// samples is one window: the clip repeated to fill it (as the voice
    /// network reads it), its partials averaged. A longer clip's partials
    /// are computed once over the whole clip and each window averages those
    /// whose middle falls inside it (about three in a 3 s window), so
    /// overlapping windows share the work.
    pub fn window_embeddings(&self, samples: &[f32], spans: &[(usize, usize)], window: usize) -> Result<Tensor> {
        if spans.is_empty() {
            return Ok(Tensor::zeros([0, EMBEDDING_SIZE], (Kind::Float, Device::Cpu)));
        }
        if samples.is_empty() {
            bail!("an empty clip has no speaker");
        }
        if samples.len() <= window {
            let filled = window_samples(samples, 0, window);
            let (_, partials) = self.partial_embeddings(&filled)?;
            let mean = unit(&partials.mean_dim([0i64].as_slice(), true, Kind::Float));
            return Ok(mean.expand([spans.len() as i64, EMBEDDING_SIZE], true).contiguous());
        }
        let hop = encoder_mel_config().hop_length;
        let (starts, partials) = self.partial_embeddings(samples)?;
        let middles: Vec<usize> = starts.iter().map(|s| (s + PARTIAL_FRAMES / 2) * hop).collect();
        let rows: Vec<Tensor> = spans
            .iter()
            .map(|&(start, end)| {
                let inside: Vec<i64> =
                    (0..middles.len()).filter(|&i| middles[i] >= start && middles[i] < end).map(|i| i as i64).collect();
                // A window too short for a partial's middle takes the nearest.
                let chosen = if inside.is_empty() {
                    let centre = (start + end) / 2;
                    let nearest = (0..middles.len()).min_by_key(|&i| middles[i].abs_diff(centre)).unwrap_or(0);
                    vec![nearest as i64]
                } else {
                    inside
                };
                partials.index_select(0, &Tensor::from_slice(&chosen)).mean_dim([0i64].as_slice(), false, Kind::Float)
            })
            .collect();
        Ok(unit(&Tensor::stack(&rows, 0)))
    }
}

/// Rows scaled to unit length (rows of zeros stay zeros).
fn unit(rows: &Tensor) -> Tensor {
    rows / rows.norm_scalaropt_dim(2, [-1i64].as_slice(), true).clamp_min(1e-12)
}

/// Numbers the sex head reads of a window: the embedding, and with
/// `pitch` the window's [`pitch_summary`] after it.
pub fn head_input_size(pitch: bool) -> i64 {
    EMBEDDING_SIZE + if pitch { PITCH_SUMMARY_SIZE as i64 } else { 0 }
}

/// A pitch tracker at the encoder's rate and hop (16 kHz, 10 ms).
pub fn encoder_pitch_tracker() -> PitchTracker {
    let config = encoder_mel_config();
    PitchTracker::new(config.sample_rate, config.hop_length)
}

/// `[spans.len(), 4]`: the [`pitch_summary`] of each window of `samples`,
/// from one track of the whole clip (frames centred on `t * hop`; a window
/// takes the frames whose centre lies inside it). Repeating a short clip to
/// fill a window, as the encoder does, would change none of the numbers.
pub fn window_pitch(tracker: &PitchTracker, samples: &[f32], spans: &[(usize, usize)]) -> Tensor {
    let hop = encoder_mel_config().hop_length;
    let track = tracker.track(samples);
    let frames = track.f0.len();
    let mut rows = Vec::with_capacity(spans.len() * PITCH_SUMMARY_SIZE);
    for &(start, end) in spans {
        let first = start.div_ceil(hop).min(frames);
        let last = end.div_ceil(hop).clamp(first, frames);
        let part = PitchTrack { f0: track.f0[first..last].to_vec(), strength: track.strength[first..last].to_vec() };
        rows.extend(pitch_summary(&part));
    }
    Tensor::from_slice(&rows).view([spans.len() as i64, PITCH_SUMMARY_SIZE as i64])
}

/// What the sex head reads of each window (`[spans.len(),
/// head_input_size(pitch)]`), the same way in training and serving: the
/// speaker embedding ([`SpeakerEncoder::window_embeddings`]) and, given a
/// tracker, the window's pitch summary: the textbook cue to a voice's sex,
/// which the encoder, trained to tell speakers apart, need not keep.
/// Measured, it did not help on corpora the head never heard
/// (models/README.md, voice_sex), so the shipped head reads no pitch.
pub fn head_input(
    encoder: &SpeakerEncoder,
    pitch: Option<&PitchTracker>,
    samples: &[f32],
    spans: &[(usize, usize)],
    window: usize,
) -> Result<Tensor> {
    let embeddings = encoder.window_embeddings(samples, spans, window)?;
    Ok(match pitch {
        Some(tracker) => Tensor::cat(&[embeddings, window_pitch(tracker, samples, spans)], 1),
        None => embeddings,
    })
}

/// The sex head's card (`voice_sex.json`, beside `voice_sex.safetensors`):
/// what it reads, how it was fitted and what it measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpeakerSexCard {
    pub name: String,
    pub description: String,
    /// `["female", "male"]`: the head gives the probability of the second.
    pub classes: Vec<String>,
    pub encoder: String,
    pub trained_on: String,
    pub train_command: String,
    /// Share of the head in the served sex; the rest is the voice network's
    /// own sex marginal (1: the head alone).
    #[serde(default = "whole")]
    pub head_weight: f32,
    /// The head reads each window's pitch summary beside the embedding
    /// ([`head_input`]); absent in cards from before it could.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub pitch_summary: bool,
    #[serde(default)]
    pub metrics: serde_json::Value,
}

fn whole() -> f32 {
    1.0
}

/// The voice sex head: a [`LogisticHead`] on the speaker embedding.
pub type SpeakerSexHead = LogisticHead;

/// The speaker encoder and the sex head, loaded once per worker.
pub struct SpeakerSexModel {
    pub encoder: SpeakerEncoder,
    pub head: SpeakerSexHead,
    pub card: SpeakerSexCard,
    /// Present when the card's head reads pitch.
    pitch: Option<PitchTracker>,
    _vs: nn::VarStore,
}

impl SpeakerSexModel {
    /// Loads the head (`weights`, its card beside it) and the encoder.
    pub fn load(weights: &Path, encoder: &Path) -> Result<Self> {
        let card_file = card_path(weights);
        let card: SpeakerSexCard = serde_json::from_str(
            &std::fs::read_to_string(&card_file).with_context(|| format!("reading {}", card_file.display()))?,
        )
        .with_context(|| format!("parsing {}", card_file.display()))?;
        if card.classes != ["female", "male"] {
            bail!("{} is not a voice sex head (classes {:?})", weights.display(), card.classes);
        }
        let mut vs = nn::VarStore::new(Device::Cpu);
        let head = SpeakerSexHead::new(&vs.root(), head_input_size(card.pitch_summary));
        vs.load(weights).with_context(|| format!("loading the voice sex head {}", weights.display()))?;
        vs.freeze();
        let pitch = card.pitch_summary.then(encoder_pitch_tracker);
        Ok(Self { encoder: SpeakerEncoder::load(encoder)?, head, card, pitch, _vs: vs })
    }

    /// `[female, male]` of each window (`spans`, each at most `window`
    /// samples; see [`SpeakerEncoder::window_embeddings`]).
    pub fn predict_windows(&self, samples: &[f32], spans: &[(usize, usize)], window: usize) -> Result<Vec<[f32; 2]>> {
        let input = head_input(&self.encoder, self.pitch.as_ref(), samples, spans, window)?;
        let male = Vec::<f32>::try_from(tch::no_grad(|| self.head.forward(&input).sigmoid()))?;
        Ok(male.into_iter().map(|m| [1.0 - m, m]).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partials_follow_resemblyzer() {
        // Values from Resemblyzer's compute_partial_slices (rate 1.3,
        // min_coverage 0.75): a 3 s window has partials at 0, 77 and 154.
        assert_eq!(partial_starts(48_000, 160), vec![0, 77, 154]);
        // 1 s: one partial, zero-padded.
        assert_eq!(partial_starts(16_000, 160), vec![0]);
        // 1.75 s: a second partial would be 61% audio: dropped; at 2 s it
        // is 77%: kept.
        assert_eq!(partial_starts(28_000, 160), vec![0]);
        assert_eq!(partial_starts(32_000, 160), vec![0, 77]);
        // 2.6 s: a third would be 66% audio: dropped.
        assert_eq!(partial_starts(41_600, 160), vec![0, 77]);
    }

    #[test]
    fn each_window_summarises_its_own_pitch() {
        // 3 s at 110 Hz, then 3 s at 240 Hz; windows of 3 s every 1 s.
        let voice = |f0: f32, seconds: usize| -> Vec<f32> {
            (0..16_000 * seconds)
                .map(|i| {
                    let t = i as f32 / 16_000.0;
                    (1..5).map(|k| (std::f32::consts::TAU * f0 * k as f32 * t).sin() / k as f32).sum::<f32>() * 0.2
                })
                .collect()
        };
        let mut clip = voice(110.0, 3);
        clip.extend(voice(240.0, 3));
        let spans = [(0, 48_000), (16_000, 64_000), (48_000, 96_000)];
        let summary = window_pitch(&encoder_pitch_tracker(), &clip, &spans);
        assert_eq!(summary.size(), [3, PITCH_SUMMARY_SIZE as i64]);
        let median = |w: i64| summary.double_value(&[w, 1]);
        assert!((median(0) - (110.0f64 / 200.0).log2()).abs() < 0.02, "{}", median(0));
        assert!((median(2) - (240.0f64 / 200.0).log2()).abs() < 0.02, "{}", median(2));
        // The window across the change: its quartiles straddle it.
        assert!(summary.double_value(&[1, 0]) < -0.5 && summary.double_value(&[1, 2]) > 0.0, "{summary:?}");
        assert!(summary.double_value(&[0, 3]) > 0.9, "voiced throughout");
        // A span past the clip's end, or empty, summarises nothing.
        let outside = window_pitch(&encoder_pitch_tracker(), &clip[..100], &[(0, 100), (200, 300)]);
        assert_eq!(outside.size(), [2, PITCH_SUMMARY_SIZE as i64]);
        assert!(Vec::<f32>::try_from(outside.flatten(0, -1)).unwrap().iter().all(|v| v.is_finite()));
    }

    #[test]
    fn an_empty_clip_is_an_error_not_a_panic() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = SpeakerEncoderNet::new(&vs.root());
        let encoder = SpeakerEncoder { net, mel: MfccExtractor::new(encoder_mel_config()), _vs: vs };
        assert!(encoder.window_embeddings(&[], &[(0, 0)], 48_000).is_err());
        assert!(encoder.partial_embeddings(&[]).is_err());
        // A one-sample clip is a (meaningless but harmless) embedding.
        assert_eq!(encoder.window_embeddings(&[0.1], &[(0, 1)], 48_000).unwrap().size(), [1, EMBEDDING_SIZE]);
    }

    #[test]
    fn the_encoder_gives_unit_embeddings_of_the_right_shape() {
        let vs = nn::VarStore::new(Device::Cpu);
        let net = SpeakerEncoderNet::new(&vs.root());
        let out = net.forward(&Tensor::rand([3, PARTIAL_FRAMES as i64, ENCODER_MEL_BANDS], (Kind::Float, Device::Cpu)));
        assert_eq!(out.size(), [3, EMBEDDING_SIZE]);
        let norms = Vec::<f32>::try_from(out.norm_scalaropt_dim(2, [1], false)).unwrap();
        assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-4 || *n == 0.0), "{norms:?}");
    }
}
