//! Is there human speech in this clip (or this window)? Asked before any
//! emotion is read: a tone, noise, a beep, music or a DC offset must get
//! "no speech", not a confident "sad, male".
//!
//! One RMS threshold cannot tell a sine from a voice, so the check measures
//! what makes speech speech ([`SpeechFeatures`], from 25 ms frames of the
//! clip with its DC removed):
//!
//! - **voicing that comes and goes**: voiced stretches (periodic, pitch
//!   70-500 Hz, [`crate::features::pitch`]) alternating with unvoiced sounds
//!   and short pauses, a few times a second;
//! - **a moving pitch**: speech glides continuously over a few semitones;
//!   tones hold one pitch, melodies step between held notes;
//! - **a moving spectrum**: formants and fricatives change the spectral
//!   envelope from frame to frame (spectral flux, centroid spread, flatness
//!   spread), which a steady tone, chord or noise does not;
//! - **syllabic rhythm**: the energy envelope fluctuates at 2-8 Hz.
//!
//! A small network ([`SpeechDetector`], 2 layers, weights in the JSON card
//! `models/speech_check.json`) turns the clip-level statistics into a
//! probability; it was trained on speech of the training speakers of our
//! corpora against generated non-speech of many kinds, and its threshold
//! fitted on that data (`emotion-ai train speech-check`; figures in the card).
//! Anything with less than [`MIN_ACTIVE_SECONDS`] of sound is not speech
//! whatever the network says: one sample, a click.
//!
//! A card may also list two statistics of Silero VAD, a pretrained
//! voice-activity network ([`VAD_FEATURE_NAMES`], [`crate::model::vad`]); the
//! detector then loads it. The shipped card does not (tried, not kept:
//! models/README.md, speech_check).

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};
use serde::{Deserialize, Serialize};

use crate::features::pitch::{PitchTracker, MAX_F0, MIN_F0};
use crate::model::vad::{SileroVad, VAD_SAMPLE_RATE};
use crate::pool::Pool;

/// Less sound than this (frames within 40 dB of the loudest and above
/// [`ACTIVE_FLOOR_DB`]) is never speech: not even one syllable.
pub const MIN_ACTIVE_SECONDS: f32 = 0.15;
/// Frames quieter than this (dBFS) are silence whatever the rest of the clip.
pub const ACTIVE_FLOOR_DB: f32 = -70.0;
/// Frames more than this below the loudest frame are pauses.
const ACTIVE_RANGE_DB: f32 = 40.0;
/// A frame is voiced from this voicing strength (the voice input's threshold).
const VOICED: f32 = crate::features::voice_input::VOICED_STRENGTH;

/// Names of the clip-level statistics, in [`SpeechFeatures::values`] order.
pub const FEATURE_NAMES: [&str; 22] = [
    "active_seconds_log10",
    "active_fraction",
    "voiced_fraction",
    "strength_mean",
    "f0_spread_semitones",
    "f0_glide_semitones",
    "f0_jump_fraction",
    "f0_median_log2",
    "energy_std_db",
    "syllabic_modulation",
    "flatness_mean",
    "flatness_std",
    "flux_mean_db",
    "centroid_std_khz",
    "voicing_changes_per_second",
    "high_band_share",
    "low_band_share",
    "voiced_flux_db",
    "run_f0_std_semitones",
    "f0_flat_fraction",
    "shape_variation_db",
    "noisy_unvoiced_fraction",
];

/// The clip-level statistics the detector reads.
#[derive(Debug, Clone, PartialEq)]
pub struct SpeechFeatures {
    /// Seconds of sound (active frames).
    pub active_seconds: f32,
    /// [`FEATURE_NAMES`], in order.
    pub values: Vec<f32>,
}

/// Per-frame measurements of a clip (25 ms frames every 10 ms).
#[derive(Debug, Clone, Default)]
pub struct FrameMeasures {
    pub energy_db: Vec<f32>,
    pub flatness: Vec<f32>,
    pub centroid: Vec<f32>,
    pub high_share: Vec<f32>,
    pub low_share: Vec<f32>,
    /// Level (dB) of 16 log-spaced bands, 100 Hz - 7 kHz.
    pub band_db: Vec<Vec<f32>>,
    pub f0: Vec<f32>,
    pub strength: Vec<f32>,
}

impl FrameMeasures {
    /// Number of frames.
    pub fn len(&self) -> usize {
        self.energy_db.len()
    }

    /// Whether there are no frames (a clip shorter than one frame).
    pub fn is_empty(&self) -> bool {
        self.energy_db.is_empty()
    }
}

/// Frame-level measurements; build once and share.
pub struct SpeechAnalyser {
    sample_rate: u32,
    hop: usize,
    frame: usize,
    fft: Arc<dyn Fft<f32>>,
    fft_len: usize,
    window: Vec<f32>,
    pitch: PitchTracker,
    /// FFT bin edges of the log-spaced bands used for spectral flux.
    bands: Vec<(usize, usize)>,
}

impl std::fmt::Debug for SpeechAnalyser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeechAnalyser").field("sample_rate", &self.sample_rate).finish()
    }
}

impl SpeechAnalyser {
    /// An analyser for `sample_rate` audio: 25 ms frames every 10 ms.
    pub fn new(sample_rate: u32) -> Self {
        let hop = (sample_rate / 100).max(1) as usize;
        let frame = (sample_rate as usize / 40).max(8);
        let fft_len = frame.next_power_of_two();
        let window: Vec<f32> =
            (0..frame).map(|i| 0.5 - 0.5 * (std::f32::consts::TAU * (i as f32 + 0.5) / frame as f32).cos()).collect();
        let bin_hz = sample_rate as f32 / fft_len as f32;
        let edges: Vec<f32> = (0..=16).map(|i| 100.0 * (70.0f32).powf(i as f32 / 16.0)).collect(); // 100 Hz - 7 kHz
        let bands = edges
            .windows(2)
            .map(|w| {
                let lo = (w[0] / bin_hz).round() as usize;
                let hi = ((w[1] / bin_hz).round() as usize).max(lo + 1).min(fft_len / 2);
                (lo.min(hi - 1), hi)
            })
            .collect();
        Self {
            sample_rate,
            hop,
            frame,
            fft: FftPlanner::new().plan_fft_forward(fft_len),
            fft_len,
            window,
            pitch: PitchTracker::new(sample_rate, hop),
            bands,
        }
    }

    /// The statistics of `samples`, or `None` when there is too little sound
    /// to be speech (less than [`MIN_ACTIVE_SECONDS`]).
    pub fn features(&self, samples: &[f32]) -> Option<SpeechFeatures> {
        let measures = self.frames(samples);
        self.stats(&measures, 0..measures.len())
    }

    /// The frames that lie wholly inside samples `start..end`.
    pub fn frame_range(&self, start: usize, end: usize) -> std::ops::Range<usize> {
        let first = start.div_ceil(self.hop);
        let last = if end >= self.frame { (end - self.frame) / self.hop + 1 } else { 0 };
        first..last.max(first)
    }

    /// Frame-level measurements of a whole clip, from which the statistics of
    /// any stretch of it follow ([`Self::stats`]): a long clip's overlapping
    /// windows share one pass.
    pub fn frames(&self, samples: &[f32]) -> FrameMeasures {
        if samples.len() < self.frame {
            return FrameMeasures::default();
        }
        // DC and rumble out: a constant offset is not sound.
        let offset = samples.iter().map(|&s| f64::from(s)).sum::<f64>() / samples.len() as f64;
        let mut x: Vec<f32> = samples.iter().map(|&s| s - offset as f32).collect();
        crate::features::filter::Biquad::high_pass(60.0, 0.707, f64::from(self.sample_rate)).apply(&mut x);

        let frames = (x.len() - self.frame) / self.hop + 1;
        let track = self.pitch.track(&x);
        let bin_hz = self.sample_rate as f32 / self.fft_len as f32;
        let (lo_flat, hi_flat) = ((250.0 / bin_hz) as usize, ((6000.0 / bin_hz) as usize).min(self.fft_len / 2));
        let high_bin = (4000.0 / bin_hz) as usize;
        let low_bin = (300.0 / bin_hz) as usize;
        let mut buffer = vec![Complex::new(0.0f32, 0.0); self.fft_len];
        let mut power = vec![0.0f32; self.fft_len / 2 + 1];
        let mut energy_db = Vec::with_capacity(frames);
        let mut flatness = Vec::with_capacity(frames);
        let mut centroid = Vec::with_capacity(frames);
        let mut high_share = Vec::with_capacity(frames);
        let mut low_share = Vec::with_capacity(frames);
        let mut band_db: Vec<Vec<f32>> = Vec::with_capacity(frames);
        for t in 0..frames {
            let chunk = &x[t * self.hop..t * self.hop + self.frame];
            let e = chunk.iter().map(|s| s * s).sum::<f32>() / self.frame as f32;
            energy_db.push(10.0 * (e + 1e-12).log10());
            for (b, (s, w)) in buffer.iter_mut().zip(chunk.iter().zip(&self.window)) {
                *b = Complex::new(s * w, 0.0);
            }
            buffer[self.frame..].fill(Complex::new(0.0, 0.0));
            self.fft.process(&mut buffer);
            for (p, b) in power.iter_mut().zip(&buffer) {
                *p = b.norm_sqr() + 1e-12;
            }
            let total: f32 = power[1..].iter().sum();
            let span = &power[lo_flat..hi_flat];
            let log_mean = span.iter().map(|p| p.ln()).sum::<f32>() / span.len() as f32;
            let arith = span.iter().sum::<f32>() / span.len() as f32;
            flatness.push((log_mean.exp() / arith).clamp(0.0, 1.0));
            centroid.push(power.iter().enumerate().map(|(i, p)| i as f32 * bin_hz * p).sum::<f32>() / total / 1000.0);
            high_share.push(power[high_bin..].iter().sum::<f32>() / total);
            low_share.push(power[1..low_bin].iter().sum::<f32>() / total);
            band_db
                .push(self.bands.iter().map(|&(lo, hi)| 10.0 * (power[lo..hi].iter().sum::<f32>()).log10()).collect());
        }
        // The pitch frames are centred on t * hop; these start there.
        let centre = self.frame / 2 / self.hop;
        let f0 = (0..frames).map(|t| track.f0.get(t + centre).copied().unwrap_or(0.0)).collect();
        let strength = (0..frames).map(|t| track.strength.get(t + centre).copied().unwrap_or(0.0)).collect();
        FrameMeasures { energy_db, flatness, centroid, high_share, low_share, band_db, f0, strength }
    }

    /// The statistics of frames `range` of `m`, or `None` when they hold too
    /// little sound to be speech.
    pub fn stats(&self, m: &FrameMeasures, range: std::ops::Range<usize>) -> Option<SpeechFeatures> {
        let range = range.start.min(m.len())..range.end.min(m.len());
        let frames = range.len();
        if frames == 0 {
            return None;
        }
        let energy_db = &m.energy_db[range.clone()];
        let flatness = &m.flatness[range.clone()];
        let centroid = &m.centroid[range.clone()];
        let high_share = &m.high_share[range.clone()];
        let low_share = &m.low_share[range.clone()];
        let band_db = &m.band_db[range.clone()];
        let (f0s, strengths) = (&m.f0[range.clone()], &m.strength[range]);
        let loudest = energy_db.iter().copied().fold(f32::MIN, f32::max);
        let active: Vec<bool> =
            energy_db.iter().map(|&e| e > ACTIVE_FLOOR_DB && e > loudest - ACTIVE_RANGE_DB).collect();
        let n_active = active.iter().filter(|&&a| a).count();
        let frame_seconds = self.hop as f32 / self.sample_rate as f32;
        let active_seconds = n_active as f32 * frame_seconds;
        if active_seconds < MIN_ACTIVE_SECONDS {
            return None;
        }
        let strength = |t: usize| strengths[t];
        let f0 = |t: usize| f0s[t];
        let voiced: Vec<bool> =
            (0..frames).map(|t| active[t] && strength(t) >= VOICED && (MIN_F0..=MAX_F0).contains(&f0(t))).collect();
        let on = |v: &[f32]| v.iter().zip(&active).filter(|(_, &a)| a).map(|(&v, _)| v).collect::<Vec<f32>>();

        let n_voiced = voiced.iter().filter(|&&v| v).count();
        let semitones: Vec<f32> = (0..frames).filter(|&t| voiced[t]).map(|t| 12.0 * (f0(t) / 200.0).log2()).collect();
        let mut steps = Vec::new();
        for t in 1..frames {
            if voiced[t] && voiced[t - 1] {
                steps.push((12.0 * (f0(t) / f0(t - 1)).log2()).abs());
            }
        }
        let jumps = steps.iter().filter(|&&s| s > 1.5).count() as f32 / steps.len().max(1) as f32;
        let mut changes = 0usize;
        let mut previous: Option<bool> = None;
        for t in (0..frames).filter(|&t| active[t]) {
            if previous.is_some_and(|p| p != voiced[t]) {
                changes += 1;
            }
            previous = Some(voiced[t]);
        }
        let flux: Vec<f32> = (1..frames)
            .map(|t| band_db[t].iter().zip(&band_db[t - 1]).map(|(a, b)| (a - b).abs()).sum::<f32>() / 16.0)
            .collect();
        let active_flux: Vec<f32> = (1..frames).filter(|&t| active[t] && active[t - 1]).map(|t| flux[t - 1]).collect();
        let voiced_flux: Vec<f32> = (1..frames).filter(|&t| voiced[t] && voiced[t - 1]).map(|t| flux[t - 1]).collect();
        // Pitch movement inside each voiced run (a syllable's intonation; a
        // held note or beep has none), and the share of exactly level steps.
        let mut run_spread = Vec::new();
        let mut run: Vec<f32> = Vec::new();
        for (t, &v) in voiced.iter().chain(std::iter::once(&false)).enumerate() {
            if v {
                run.push(12.0 * (f0(t) / 200.0).log2());
            } else {
                if run.len() >= 5 {
                    run_spread.push(std(&run));
                }
                run.clear();
            }
        }
        let flat = steps.iter().filter(|&&s| s < 0.03).count() as f32 / steps.len().max(1) as f32;
        // How much the spectral envelope's shape (band levels less the frame's
        // mean level) changes over the voiced frames: formants move, a
        // synthesiser's timbre does not.
        let shape: Vec<Vec<f32>> = (0..frames)
            .filter(|&t| voiced[t])
            .map(|t| {
                let m = mean(&band_db[t]);
                band_db[t].iter().map(|b| b - m).collect()
            })
            .collect();
        let shape_variation = if shape.len() >= 2 {
            mean(&(0..shape[0].len()).map(|b| std(&shape.iter().map(|f| f[b]).collect::<Vec<_>>())).collect::<Vec<_>>())
        } else {
            0.0
        };

        let values = vec![
            (active_seconds + 0.01).log10(),
            n_active as f32 / frames as f32,
            n_voiced as f32 / n_active as f32,
            mean(&on(&(0..frames).map(strength).collect::<Vec<_>>())),
            std(&semitones),
            median(&steps),
            jumps,
            median(&semitones) / 12.0,
            std(&on(energy_db)),
            syllabic_modulation(energy_db, loudest, frame_seconds),
            mean(&on(flatness)),
            std(&on(flatness)),
            mean(&active_flux),
            std(&on(centroid)),
            changes as f32 / active_seconds,
            mean(&on(high_share)),
            mean(&on(low_share)),
            mean(&voiced_flux),
            mean(&run_spread),
            flat,
            shape_variation,
            // Fricatives and breath: active, unvoiced, noise-like frames.
            (0..frames).filter(|&t| active[t] && !voiced[t] && (flatness[t] > 0.3 || high_share[t] > 0.3)).count()
                as f32
                / n_active as f32,
        ];
        Some(SpeechFeatures {
            active_seconds,
            values: values.into_iter().map(|v| if v.is_finite() { v } else { 0.0 }).collect(),
        })
    }
}

fn mean(v: &[f32]) -> f32 {
    if v.is_empty() {
        0.0
    } else {
        v.iter().sum::<f32>() / v.len() as f32
    }
}

fn std(v: &[f32]) -> f32 {
    if v.len() < 2 {
        return 0.0;
    }
    let m = mean(v);
    (v.iter().map(|x| (x - m) * (x - m)).sum::<f32>() / v.len() as f32).sqrt()
}

/// The middle value (the upper of the two middle ones for an even count); 0
/// for none.
pub(crate) fn median(v: &[f32]) -> f32 {
    if v.is_empty() {
        return 0.0;
    }
    let mut sorted = v.to_vec();
    sorted.sort_by(f32::total_cmp);
    sorted[sorted.len() / 2]
}

/// Share of the energy envelope's fluctuation (in dB, floored 50 dB below
/// the loudest frame) that lies between 2 and 8 Hz, the syllable rate.
fn syllabic_modulation(energy_db: &[f32], loudest: f32, frame_seconds: f32) -> f32 {
    let envelope: Vec<f32> = energy_db.iter().map(|&e| e.max(loudest - 50.0)).collect();
    let m = mean(&envelope);
    let centred: Vec<f32> = envelope.iter().map(|e| e - m).collect();
    let total: f32 = centred.iter().map(|v| v * v).sum();
    if total <= 1e-6 || centred.len() < 8 {
        return 0.0;
    }
    let n = centred.len();
    let seconds = n as f32 * frame_seconds;
    // Power at each DFT frequency k / seconds; Parseval: sum over k of
    // |X_k|^2 = n * total.
    let mut band = 0.0f32;
    let first = (2.0 * seconds).ceil().max(1.0) as usize;
    let last = ((8.0 * seconds).floor() as usize).min(n / 2);
    for k in first..=last {
        let w = std::f32::consts::TAU * k as f32 / n as f32;
        let (mut re, mut im) = (0.0f32, 0.0f32);
        for (i, v) in centred.iter().enumerate() {
            re += v * (w * i as f32).cos();
            im -= v * (w * i as f32).sin();
        }
        band += 2.0 * (re * re + im * im);
    }
    (band / (n as f32 * total)).clamp(0.0, 1.0)
}

/// The detector's weights and measured figures (`models/speech_check.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SpeechCheckCard {
    pub name: String,
    pub description: String,
    pub sample_rate: u32,
    pub features: Vec<String>,
    /// Per-feature standardisation fitted on the training data.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    /// Hidden layer: `hidden[j] = tanh(b1[j] + sum_i w1[j][i] * z[i])`.
    pub w1: Vec<Vec<f32>>,
    pub b1: Vec<f32>,
    /// Output: `p = sigmoid(b2 + sum_j w2[j] * hidden[j])`.
    pub w2: Vec<f32>,
    pub b2: f32,
    /// Speech from this probability.
    pub threshold: f32,
    /// A second way to speech, for stretches the network doubts: see
    /// [`VadGate`]. Absent in cards without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vad_gate: Option<VadGate>,
    pub trained_on: String,
    pub metrics: serde_json::Value,
    pub train_command: String,
}

/// Speech the network doubts, let through by Silero VAD: a stretch whose
/// probability is under the card's threshold is still speech if it is at
/// least `min_probability` and the VAD calls at least `min_vad_speech_share`
/// of its 32 ms chunks speech. The VAD only speaks where the statistics are
/// unsure, so it can accept speech they doubt but not music they refuse
/// outright. Fitted by `train speech-check --vad-gate` on training data
/// only ([`crate::train::speech_check`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct VadGate {
    pub min_probability: f32,
    pub min_vad_speech_share: f32,
}

impl VadGate {
    /// Whether a stretch with the network's `probability` and the VAD's
    /// `vad_speech_share` passes the gate.
    pub fn admits(&self, probability: f32, vad_speech_share: f32) -> bool {
        probability >= self.min_probability && vad_speech_share >= self.min_vad_speech_share
    }
}

/// Names of the two statistics of Silero VAD ([`crate::model::vad`]) that a
/// card may list after [`FEATURE_NAMES`]: the share of the stretch's 32 ms
/// chunks the VAD calls speech (probability 0.5 or more) and their mean
/// probability.
pub const VAD_FEATURE_NAMES: [&str; 2] = ["vad_speech_share", "vad_mean_probability"];

/// [`VAD_FEATURE_NAMES`] of a stretch from its chunks' speech probabilities
/// (zeros for no chunk).
pub fn vad_statistics(probabilities: &[f32]) -> [f32; 2] {
    if probabilities.is_empty() {
        return [0.0, 0.0];
    }
    let n = probabilities.len() as f32;
    [probabilities.iter().filter(|&&p| p >= 0.5).count() as f32 / n, probabilities.iter().sum::<f32>() / n]
}

/// The samples of window `(start, end)` of a clip, cut to the clip's end.
fn window_samples(samples: &[f32], (start, end): (usize, usize)) -> &[f32] {
    &samples[start.min(samples.len())..end.min(samples.len())]
}

/// What the check reads from a stretch of audio: the [`SpeechAnalyser`]
/// statistics, then, when it has the network, Silero VAD's
/// ([`VAD_FEATURE_NAMES`]). Each stretch (a clip, a window) is read alone:
/// the VAD starts afresh at its first sample, in training as in serving.
pub struct SpeechFeaturizer {
    analyser: SpeechAnalyser,
    vad: Option<Pool<SileroVad>>,
}

impl std::fmt::Debug for SpeechFeaturizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeechFeaturizer").field("analyser", &self.analyser).field("vad", &self.vad.is_some()).finish()
    }
}

impl SpeechFeaturizer {
    /// A featurizer for `sample_rate` audio; with `vad`, the rate must be the
    /// VAD's.
    pub fn new(sample_rate: u32, vad: Option<Pool<SileroVad>>) -> Result<Self> {
        if vad.is_some() && sample_rate != VAD_SAMPLE_RATE {
            bail!("Silero VAD reads {VAD_SAMPLE_RATE} Hz audio, not {sample_rate} Hz");
        }
        Ok(Self { analyser: SpeechAnalyser::new(sample_rate), vad })
    }

    /// The names of [`Self::features`]' values, in order.
    pub fn names(&self) -> Vec<&'static str> {
        let vad: &[&'static str] = if self.vad.is_some() { &VAD_FEATURE_NAMES } else { &[] };
        FEATURE_NAMES.iter().chain(vad).copied().collect()
    }

    /// Whether Silero VAD's statistics are read.
    pub fn uses_vad(&self) -> bool {
        self.vad.is_some()
    }

    /// The statistics of `samples`, or `None` when there is too little sound
    /// to be speech.
    pub fn features(&self, samples: &[f32]) -> Result<Option<Vec<f32>>> {
        let Some(features) = self.analyser.features(samples) else { return Ok(None) };
        let mut values = features.values;
        if let Some(vad) = &self.vad {
            values.extend(vad_statistics(&vad.with(|vad| vad.probabilities(samples))??));
        }
        Ok(Some(values))
    }

    /// The statistics of every window `(start, end)` (samples) of one clip:
    /// one pass of the analyser over the clip, the VAD on the windows in
    /// batches.
    pub fn window_features(&self, samples: &[f32], windows: &[(usize, usize)]) -> Result<Vec<Option<Vec<f32>>>> {
        let measures = self.analyser.frames(samples);
        let mut all: Vec<Option<Vec<f32>>> = windows
            .iter()
            .map(|&(start, end)| {
                self.analyser.stats(&measures, self.analyser.frame_range(start, end)).map(|f| f.values)
            })
            .collect();
        if let Some(vad) = &self.vad {
            let spans: Vec<(usize, &[f32])> = windows
                .iter()
                .enumerate()
                .filter(|(i, _)| all[*i].is_some())
                .map(|(i, &window)| (i, window_samples(samples, window)))
                .collect();
            let slices: Vec<&[f32]> = spans.iter().map(|(_, s)| *s).collect();
            for ((i, _), p) in spans.iter().zip(vad.with(|vad| vad.probabilities_of_each(&slices))??) {
                if let Some(values) = all[*i].as_mut() {
                    values.extend(vad_statistics(&p));
                }
            }
        }
        Ok(all)
    }

    /// The statistics' frame-level half (for training and diagnosis).
    pub fn analyser(&self) -> &SpeechAnalyser {
        &self.analyser
    }

    /// The VAD copies, for a detector built on what this featurizer read
    /// (training fits the card on these features, then checks with it).
    pub fn into_vad(self) -> Option<Pool<SileroVad>> {
        self.vad
    }
}

impl SpeechCheckCard {
    /// Whether the check needs Silero VAD: its network reads the VAD's
    /// statistics, or it has a [`VadGate`].
    pub fn reads_vad(&self) -> bool {
        self.vad_gate.is_some() || self.features.iter().any(|f| VAD_FEATURE_NAMES.contains(&f.as_str()))
    }

    /// The card's network's probability of speech for given statistics (in
    /// the order of `features`), whatever its threshold.
    pub fn probability_of(&self, features: &[f32]) -> f32 {
        let z: Vec<f32> =
            features.iter().zip(self.mean.iter().zip(&self.std)).map(|(x, (m, s))| (x - m) / s.max(1e-6)).collect();
        let logit = self.b2
            + self
                .w1
                .iter()
                .zip(&self.b1)
                .zip(&self.w2)
                .map(|((row, b), w)| w * (b + row.iter().zip(&z).map(|(a, x)| a * x).sum::<f32>()).tanh())
                .sum::<f32>();
        1.0 / (1.0 + (-logit).exp())
    }
}

/// The speech check, ready to use: the card's network over the
/// [`SpeechFeaturizer`]'s statistics.
pub struct SpeechDetector {
    card: SpeechCheckCard,
    featurizer: SpeechFeaturizer,
    /// Silero VAD for the card's [`VadGate`] when the network does not read
    /// it: asked only about stretches in the gate's band (probability at
    /// least its minimum, under the threshold), the only ones whose verdict
    /// it can change.
    gate_vad: Option<Pool<SileroVad>>,
}

/// What the check found in a stretch of audio.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SpeechVerdict {
    /// The network's probability of speech (0 when there was too little sound).
    pub probability: f32,
    pub is_speech: bool,
}

impl std::fmt::Debug for SpeechDetector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SpeechDetector")
            .field("card", &self.card.name)
            .field("featurizer", &self.featurizer)
            .field("gate_vad", &self.gate_vad.is_some())
            .finish()
    }
}

impl SpeechDetector {
    /// A detector from its card. The card lists [`FEATURE_NAMES`], or those
    /// and [`VAD_FEATURE_NAMES`]; if it lists the VAD's or has a
    /// [`VadGate`], `vad` must be given (a VAD given to a card that does not
    /// read it is dropped).
    pub fn new(card: SpeechCheckCard, vad: Option<Pool<SileroVad>>) -> Result<Self> {
        let names: Vec<&str> = card.features.iter().map(String::as_str).collect();
        let statistics_only = names == FEATURE_NAMES;
        let with_vad = names.iter().eq(FEATURE_NAMES.iter().chain(&VAD_FEATURE_NAMES));
        if !statistics_only && !with_vad {
            bail!("the speech check card lists other features than this build computes");
        }
        let needs_vad = card.reads_vad();
        if needs_vad && vad.is_none() {
            bail!("the speech check card reads Silero VAD, which is not loaded: scripts/setup.sh installs it");
        }
        let k = names.len();
        let hidden = card.b1.len();
        if card.mean.len() != k
            || card.std.len() != k
            || card.w1.len() != hidden
            || card.w1.iter().any(|row| row.len() != k)
            || card.w2.len() != hidden
        {
            bail!("the speech check card's weights do not have consistent shapes");
        }
        let (network_vad, gate_vad) = if with_vad {
            (vad, None)
        } else if needs_vad {
            (None, vad)
        } else {
            (None, None)
        };
        let featurizer = SpeechFeaturizer::new(card.sample_rate, network_vad)?;
        if gate_vad.is_some() && card.sample_rate != VAD_SAMPLE_RATE {
            bail!("Silero VAD reads {VAD_SAMPLE_RATE} Hz audio, not {} Hz", card.sample_rate);
        }
        Ok(Self { card, featurizer, gate_vad })
    }

    /// Reads `models/speech_check.json` (or another card), and Silero VAD
    /// from `vad_weights` if the card reads it (two copies to start with:
    /// the two halves of a clip run side by side).
    pub fn load(path: &Path, vad_weights: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let card: SpeechCheckCard =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let vad = if card.reads_vad() { Some(SileroVad::pool(vad_weights, 2)?) } else { None };
        Self::new(card, vad).with_context(|| format!("loading {}", path.display()))
    }

    /// The card (weights, threshold, measured figures).
    pub fn card(&self) -> &SpeechCheckCard {
        &self.card
    }

    /// The sample rate the detector expects.
    pub fn sample_rate(&self) -> u32 {
        self.card.sample_rate
    }

    /// The network's probability of speech for given statistics.
    pub fn probability_of(&self, features: &[f32]) -> f32 {
        self.card.probability_of(features)
    }

    /// Whether Silero VAD is loaded (the card's network or its gate reads it).
    pub fn uses_vad(&self) -> bool {
        self.featurizer.uses_vad() || self.gate_vad.is_some()
    }

    /// Whether `samples` (mono at [`Self::sample_rate`]) hold speech.
    pub fn check(&self, samples: &[f32]) -> Result<SpeechVerdict> {
        Ok(self.check_windows(samples, &[(0, samples.len())])?.remove(0))
    }

    /// The verdict of every window `(start, end)` (samples) of one clip.
    pub fn check_windows(&self, samples: &[f32], windows: &[(usize, usize)]) -> Result<Vec<SpeechVerdict>> {
        let features = self.featurizer.window_features(samples, windows)?;
        let probabilities: Vec<Option<f32>> =
            features.iter().map(|f| f.as_ref().map(|f| self.probability_of(&f[..self.card.features.len()]))).collect();
        // The VAD's share of speech chunks: read with the statistics when the
        // network reads it, else asked now of the windows in the gate's band.
        let mut shares: Vec<Option<f32>> =
            features.iter().map(|f| f.as_ref().and_then(|f| f.get(FEATURE_NAMES.len()).copied())).collect();
        if let (Some(gate), Some(vad)) = (&self.card.vad_gate, &self.gate_vad) {
            let doubted: Vec<usize> = (0..windows.len())
                .filter(|&i| probabilities[i].is_some_and(|p| p >= gate.min_probability && p < self.card.threshold))
                .collect();
            if !doubted.is_empty() {
                let slices: Vec<&[f32]> = doubted.iter().map(|&i| window_samples(samples, windows[i])).collect();
                for (&i, p) in doubted.iter().zip(vad.with(|vad| vad.probabilities_of_each(&slices))??) {
                    shares[i] = Some(vad_statistics(&p)[0]);
                }
            }
        }
        Ok(probabilities
            .into_iter()
            .zip(shares)
            .map(|(probability, share)| match probability {
                None => SpeechVerdict { probability: 0.0, is_speech: false },
                Some(probability) => {
                    let gated = self
                        .card
                        .vad_gate
                        .is_some_and(|gate| share.is_some_and(|share| gate.admits(probability, share)));
                    SpeechVerdict { probability, is_speech: probability >= self.card.threshold || gated }
                }
            })
            .collect())
    }

    /// What the check reads (for training and diagnosis).
    pub fn featurizer(&self) -> &SpeechFeaturizer {
        &self.featurizer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f32, seconds: f32) -> Vec<f32> {
        (0..(16_000.0 * seconds) as usize)
            .map(|i| 0.3 * (std::f32::consts::TAU * freq * i as f32 / 16_000.0).sin())
            .collect()
    }

    #[test]
    fn too_little_sound_has_no_features() {
        let analyser = SpeechAnalyser::new(16_000);
        assert_eq!(analyser.features(&[0.5]), None, "one sample");
        assert_eq!(analyser.features(&vec![0.25; 48_000]), None, "a DC offset is silence");
        assert_eq!(analyser.features(&vec![0.0; 48_000]), None);
        let mut click = vec![0.0f32; 48_000];
        click[20_000] = 0.9;
        assert_eq!(analyser.features(&click), None, "a click");
    }

    #[test]
    fn a_steady_tone_is_voiced_but_holds_its_pitch_and_spectrum() {
        let analyser = SpeechAnalyser::new(16_000);
        let f = analyser.features(&sine(150.0, 2.0)).expect("a tone has sound");
        let get = |name: &str| f.values[FEATURE_NAMES.iter().position(|n| *n == name).unwrap()];
        assert!(get("voiced_fraction") > 0.9, "{f:?}");
        assert!(get("f0_spread_semitones") < 0.2, "{f:?}");
        assert!(get("flux_mean_db") < 1.0, "{f:?}");
        assert!((get("f0_median_log2") - (150.0f32 / 200.0).log2()).abs() < 0.02);
        assert!((1.9..2.1).contains(&f.active_seconds));
        assert!(f.values.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn window_statistics_from_the_whole_clip_match_the_window_alone() {
        let analyser = SpeechAnalyser::new(16_000);
        assert_eq!(analyser.frame_range(0, 48_000), 0..298);
        assert_eq!(analyser.frame_range(16_000, 64_000), 100..398);
        assert_eq!(analyser.frame_range(0, 10), 0..0);
        // A gliding tone: the window's statistics from the clip's frames are
        // those of the window cut out (up to the high-pass filter's start).
        let clip: Vec<f32> = (0..80_000)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                0.3 * (std::f32::consts::TAU * (150.0 * t + 20.0 * t * t)).sin() * (1.0 + (7.0 * t).sin()) / 2.0
            })
            .collect();
        let measures = analyser.frames(&clip);
        let from_clip = analyser.stats(&measures, analyser.frame_range(16_000, 64_000)).unwrap();
        let alone = analyser.features(&clip[16_000..64_000]).unwrap();
        for (name, (a, b)) in FEATURE_NAMES.iter().zip(from_clip.values.iter().zip(&alone.values)) {
            assert!((a - b).abs() <= 0.05 * b.abs().max(1.0), "{name}: {a} vs {b}");
        }
    }

    #[test]
    fn vad_statistics_count_chunks_at_one_half_and_average() {
        assert_eq!(vad_statistics(&[]), [0.0, 0.0]);
        let [share, mean] = vad_statistics(&[0.1, 0.5, 0.9, 0.3]);
        assert_eq!(share, 0.5);
        assert!((mean - 0.45).abs() < 1e-6);
    }

    #[test]
    fn the_syllabic_band_is_found() {
        // An envelope at 4 Hz is all in the band; at 20 Hz none of it.
        let at = |hz: f32| -> Vec<f32> {
            (0..300).map(|i| -20.0 + 10.0 * (std::f32::consts::TAU * hz * i as f32 * 0.01).sin()).collect()
        };
        assert!(syllabic_modulation(&at(4.0), -10.0, 0.01) > 0.9);
        assert!(syllabic_modulation(&at(20.0), -10.0, 0.01) < 0.05);
    }

    #[test]
    fn cards_with_other_shapes_are_refused() {
        let k = FEATURE_NAMES.len();
        let card = SpeechCheckCard {
            name: "t".into(),
            description: String::new(),
            sample_rate: 16_000,
            features: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
            mean: vec![0.0; k],
            std: vec![1.0; k],
            w1: vec![vec![0.0; k]; 2],
            b1: vec![0.0; 2],
            w2: vec![1.0, 1.0],
            b2: 3.0,
            threshold: 0.5,
            vad_gate: None,
            trained_on: String::new(),
            metrics: serde_json::json!({}),
            train_command: String::new(),
        };
        let detector = SpeechDetector::new(card.clone(), None).unwrap();
        // A constant network: probability sigmoid(3) for anything with sound.
        assert!((detector.probability_of(&vec![0.0; k]) - 0.9526).abs() < 1e-3);
        assert!(detector.check(&sine(200.0, 1.0)).unwrap().is_speech);
        assert!(!detector.check(&[0.1]).unwrap().is_speech, "too short whatever the network says");
        assert!(SpeechDetector::new(SpeechCheckCard { w2: vec![1.0], ..card.clone() }, None).is_err());
        assert!(SpeechDetector::new(SpeechCheckCard { features: vec!["x".into()], ..card.clone() }, None).is_err());
        // A card that reads Silero VAD needs it.
        let with_vad = SpeechCheckCard {
            features: FEATURE_NAMES.iter().chain(&VAD_FEATURE_NAMES).map(|s| s.to_string()).collect(),
            mean: vec![0.0; k + 2],
            std: vec![1.0; k + 2],
            w1: vec![vec![0.0; k + 2]; 2],
            ..card
        };
        let err = SpeechDetector::new(with_vad, None).unwrap_err().to_string();
        assert!(err.contains("Silero VAD") && err.contains("scripts/setup.sh"), "{err}");
    }
}
