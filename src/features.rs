//! Audio samples to MFCC time-frequency maps, the voice network's input.
//!
//! The conventions are librosa's (`librosa.feature.mfcc` over
//! `librosa.feature.melspectrogram`), so features can be checked against it
//! and reproduced in Python:
//!
//! - 16 kHz mono input; frames of 400 samples (25 ms) every 160 samples
//!   (10 ms); a periodic Hann window zero-padded in the middle of a 512-point
//!   real FFT (rustfft through realfft);
//! - `center = True`: the signal is padded with `n_fft / 2` zeros on each side,
//!   so frame `t` is centred on sample `t * hop` and a clip of `n` samples has
//!   `1 + n / hop` frames;
//! - power spectrum `|X|^2`, projected on 64 Slaney-style mel filters from 0 to
//!   8 kHz with Slaney area normalisation (`htk = False, norm = "slaney"`; the
//!   filterbank comes from `mel_spec`, which mirrors librosa's);
//! - `10 log10(max(mel, 1e-10))` dB with reference 1 and **no** `top_db`
//!   clipping: `top_db` clips relative to the loudest frame of the clip, which
//!   would make a window's features depend on the rest of the upload;
//! - type-II DCT with orthonormal scaling over the mel axis, keeping the first
//!   40 coefficients.
//!
//! `tests/fixtures/mfcc_reference.json`, made by
//! `scripts/mfcc_reference.py` with librosa, pins these conventions.

use std::sync::Arc;

use realfft::{RealFftPlanner, RealToComplex};
use rustfft::num_complex::Complex;

/// MFCC parameters. [`MfccConfig::voice`] is what the voice model uses; the
/// values are recorded in its model card.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MfccConfig {
    pub sample_rate: u32,
    pub n_fft: usize,
    pub win_length: usize,
    pub hop_length: usize,
    pub n_mels: usize,
    pub n_mfcc: usize,
    pub f_min: f64,
    pub f_max: f64,
}

impl MfccConfig {
    /// 16 kHz, 25 ms Hann frames every 10 ms, 512-point FFT, 64 mel bands
    /// over 0-8 kHz, 40 coefficients.
    pub fn voice() -> Self {
        Self {
            sample_rate: 16_000,
            n_fft: 512,
            win_length: 400,
            hop_length: 160,
            n_mels: 64,
            n_mfcc: 40,
            f_min: 0.0,
            f_max: 8_000.0,
        }
    }

    /// Number of frames for a clip of `samples` samples.
    pub fn frames_for(&self, samples: usize) -> usize {
        1 + samples / self.hop_length
    }
}

/// An `n_mfcc x frames` map, coefficient-major (`data[c * frames + t]`), the
/// layout of a `[1, n_mfcc, frames]` tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Mfcc {
    pub n_mfcc: usize,
    pub frames: usize,
    pub data: Vec<f32>,
}

impl Mfcc {
    /// Coefficient `c` of frame `t`.
    pub fn get(&self, c: usize, t: usize) -> f32 {
        self.data[c * self.frames + t]
    }
}

/// One mel filter: its first FFT bin and its non-zero weights from there.
#[derive(Debug, Clone)]
struct MelFilter {
    first_bin: usize,
    weights: Vec<f64>,
}

/// Computes MFCCs; build once and share (it holds the FFT plan, window,
/// filterbank and DCT matrix).
pub struct MfccExtractor {
    config: MfccConfig,
    fft: Arc<dyn RealToComplex<f64>>,
    /// The `win_length` Hann window centred in `n_fft` zeros.
    window: Vec<f64>,
    filters: Vec<MelFilter>,
    /// `n_mfcc x n_mels`, row-major.
    dct: Vec<f64>,
}

impl std::fmt::Debug for MfccExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfccExtractor").field("config", &self.config).finish_non_exhaustive()
    }
}

impl MfccExtractor {
    /// Prepares the FFT plan, window, mel filterbank and DCT for `config`.
    ///
    /// # Panics
    /// If `win_length > n_fft`, `n_mfcc > n_mels` or a size is zero: these
    /// are programming errors, not input errors.
    pub fn new(config: MfccConfig) -> Self {
        assert!(config.n_fft > 0 && config.hop_length > 0 && config.n_mels > 0 && config.n_mfcc > 0);
        assert!(config.win_length <= config.n_fft && config.n_mfcc <= config.n_mels);
        let fft = RealFftPlanner::<f64>::new().plan_fft_forward(config.n_fft);

        // librosa: get_window("hann", win_length, fftbins=True), then pad_center.
        let mut window = vec![0.0; config.n_fft];
        let offset = (config.n_fft - config.win_length) / 2;
        for i in 0..config.win_length {
            let phase = 2.0 * std::f64::consts::PI * i as f64 / config.win_length as f64;
            window[offset + i] = 0.5 - 0.5 * phase.cos();
        }

        let dense = mel_spec::mel::mel(
            f64::from(config.sample_rate),
            config.n_fft,
            config.n_mels,
            Some(config.f_min),
            Some(config.f_max),
            false,
            true,
        );
        let filters = dense
            .rows()
            .into_iter()
            .map(|row| {
                let row: Vec<f64> = row.to_vec();
                let first = row.iter().position(|&w| w > 0.0).unwrap_or(0);
                let last = row.iter().rposition(|&w| w > 0.0).map_or(first, |i| i + 1);
                MelFilter { first_bin: first, weights: row[first..last.max(first)].to_vec() }
            })
            .collect();

        // Orthonormal DCT-II: c_k = s_k * sum_n x_n cos(pi k (2n + 1) / 2N).
        let n = config.n_mels as f64;
        let mut dct = vec![0.0; config.n_mfcc * config.n_mels];
        for k in 0..config.n_mfcc {
            let scale = if k == 0 { (1.0 / n).sqrt() } else { (2.0 / n).sqrt() };
            for m in 0..config.n_mels {
                dct[k * config.n_mels + m] =
                    scale * (std::f64::consts::PI * k as f64 * (2.0 * m as f64 + 1.0) / (2.0 * n)).cos();
            }
        }
        Self { config, fft, window, filters, dct }
    }

    /// The parameters this extractor was built with.
    pub fn config(&self) -> &MfccConfig {
        &self.config
    }

    /// The MFCC map of `samples` (mono, at the configured rate). Any length
    /// works, including zero (one frame of padding).
    pub fn compute(&self, samples: &[f32]) -> Mfcc {
        let MfccConfig { n_fft, hop_length, n_mels, n_mfcc, .. } = self.config;
        let frames = self.config.frames_for(samples.len());
        let pad = n_fft / 2;
        let mut input = self.fft.make_input_vec();
        let mut spectrum: Vec<Complex<f64>> = self.fft.make_output_vec();
        let mut scratch = self.fft.make_scratch_vec();
        let mut power = vec![0.0f64; n_fft / 2 + 1];
        let mut log_mel = vec![0.0f64; n_mels];
        let mut data = vec![0.0f32; n_mfcc * frames];

        for t in 0..frames {
            // Sample index of input[0] in the unpadded signal (may be negative).
            let start = (t * hop_length) as isize - pad as isize;
            for (i, slot) in input.iter_mut().enumerate() {
                let at = start + i as isize;
                let sample =
                    if at >= 0 && (at as usize) < samples.len() { f64::from(samples[at as usize]) } else { 0.0 };
                *slot = sample * self.window[i];
            }
            // Cannot fail: the buffers come from the plan itself.
            let _ = self.fft.process_with_scratch(&mut input, &mut spectrum, &mut scratch);
            for (p, x) in power.iter_mut().zip(&spectrum) {
                *p = x.norm_sqr();
            }
            for (value, filter) in log_mel.iter_mut().zip(&self.filters) {
                let energy: f64 = filter.weights.iter().zip(&power[filter.first_bin..]).map(|(w, p)| w * p).sum();
                *value = 10.0 * energy.max(1e-10).log10();
            }
            for k in 0..n_mfcc {
                let row = &self.dct[k * n_mels..(k + 1) * n_mels];
                let c: f64 = row.iter().zip(&log_mel).map(|(d, l)| d * l).sum();
                data[k * frames + t] = c as f32;
            }
        }
        Mfcc { n_mfcc, frames, data }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(freq: f64, seconds: f64, rate: u32) -> Vec<f32> {
        let n = (seconds * f64::from(rate)) as usize;
        (0..n).map(|i| (0.5 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin()) as f32).collect()
    }

    #[test]
    fn frame_count_follows_librosa_centering() {
        let extractor = MfccExtractor::new(MfccConfig::voice());
        for (len, frames) in [(0, 1), (159, 1), (160, 2), (16_000, 101), (48_000, 301)] {
            let mfcc = extractor.compute(&vec![0.1; len]);
            assert_eq!((mfcc.n_mfcc, mfcc.frames, mfcc.data.len()), (40, frames, 40 * frames), "{len} samples");
        }
    }

    #[test]
    fn silence_is_the_floor_and_louder_is_higher() {
        let extractor = MfccExtractor::new(MfccConfig::voice());
        let silent = extractor.compute(&vec![0.0; 3200]);
        // All mel bands at -100 dB: c0 = -100 * sqrt(64), the rest 0.
        assert!((silent.get(0, 5) - (-800.0)).abs() < 1e-3);
        assert!(silent.get(1, 5).abs() < 1e-3);
        // Broadband signal (a sine plus pseudo-random noise), so no band sits
        // on the floor where scaling would not show.
        let mut seed = 12345u32;
        let signal: Vec<f32> = sine(440.0, 0.2, 16_000)
            .iter()
            .map(|s| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                s + (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
            })
            .collect();
        let quiet = extractor.compute(&signal.iter().map(|s| s * 0.1).collect::<Vec<_>>());
        let loud = extractor.compute(&signal);
        // 20 dB more amplitude = +20 dB in every band = +20 * 8 on c0.
        assert!((loud.get(0, 10) - quiet.get(0, 10) - 160.0).abs() < 0.01);
        assert!((loud.get(3, 10) - quiet.get(3, 10)).abs() < 0.01);
    }

    #[test]
    fn filterbank_covers_the_spectrum_like_librosa() {
        let extractor = MfccExtractor::new(MfccConfig::voice());
        assert_eq!(extractor.filters.len(), 64);
        // Slaney normalisation: each filter's weights integrate to about 2 /
        // bandwidth in Hz, so peak weights fall as filters widen.
        let peak = |f: &MelFilter| f.weights.iter().cloned().fold(0.0, f64::max);
        assert!(peak(&extractor.filters[0]) > peak(&extractor.filters[63]));
        assert!(extractor.filters.iter().all(|f| !f.weights.is_empty()));
    }

    /// The whole chain against librosa 0.11 on a speech clip (see
    /// `scripts/mfcc_reference.py`). The reference is rounded to 1e-4, and the
    /// worst difference measured is recorded in the assertion message; 0.01 on
    /// values spanning -755..158 allows for float rounding, never for a
    /// different convention (a wrong window, padding, mel scale, log or DCT
    /// scaling each moves values by whole units or more).
    #[test]
    fn matches_librosa_reference() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let reference: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join("mfcc_reference.json")).unwrap()).unwrap();
        let wav = std::fs::read(root.join("speech.wav")).unwrap();
        let audio = crate::decode::audio::decode_audio(&wav, 16_000, 60.0).unwrap();
        let mfcc = MfccExtractor::new(MfccConfig::voice()).compute(&audio.samples);
        assert_eq!(mfcc.frames as u64, reference["n_frames"].as_u64().unwrap());
        let frames: Vec<usize> =
            reference["frames"].as_array().unwrap().iter().map(|f| f.as_u64().unwrap() as usize).collect();
        let expected = reference["mfcc"].as_array().unwrap();
        assert_eq!(expected.len(), 40);
        let mut worst = 0.0f64;
        for (c, row) in expected.iter().enumerate() {
            for (i, value) in row.as_array().unwrap().iter().enumerate() {
                let diff = (f64::from(mfcc.get(c, frames[i])) - value.as_f64().unwrap()).abs();
                worst = worst.max(diff);
            }
        }
        assert!(worst < 0.01, "largest difference from librosa: {worst}");
        eprintln!("largest difference from librosa: {worst:.6}");
    }
}
