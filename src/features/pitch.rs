//! Fundamental frequency (F0) and voicing strength, frame by frame.
//!
//! Speech is told from other sounds, and women's voices from men's, largely by
//! the pitch of the voiced parts: both the speech check ([`crate::speech`])
//! and the voice network read these tracks.
//!
//! The method is Boersma's (1993, the one Praat uses) without its path
//! finder: each 40 ms frame is Hann-windowed, its autocorrelation (by FFT) is
//! divided by the window's own autocorrelation, so that a perfectly periodic
//! signal scores 1 at its period whatever the taper, and the best peak between
//! [`MIN_F0`] and [`MAX_F0`] gives the period (refined by a parabola) and its
//! height the voicing strength (0: noise or silence, 1: periodic). Among peaks
//! almost as high as the best, the shortest lag wins: a periodic signal also
//! peaks at twice its period, and taking that one would halve the pitch.
//!
//! Frames are centred on `t * hop` like the MFCC frames (zero padding at the
//! edges), so a clip of `n` samples has `1 + n / hop` of both.

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use super::voice_input::{F0_REFERENCE, VOICED_STRENGTH};

/// Lowest pitch searched (Hz): below most men's speaking range.
pub const MIN_F0: f32 = 70.0;
/// Highest pitch searched (Hz): above most women's (and excited) speech.
pub const MAX_F0: f32 = 500.0;
/// A peak this close to the best one (as a fraction) counts as equally good,
/// and the shortest such lag wins (see the module docs).
const OCTAVE_TOLERANCE: f32 = 0.9;

/// Pitch and voicing of each frame.
#[derive(Debug, Clone, PartialEq)]
pub struct PitchTrack {
    /// F0 in Hz of each frame (its best candidate, even where unvoiced).
    pub f0: Vec<f32>,
    /// Normalised autocorrelation at that period, 0..1.
    pub strength: Vec<f32>,
}

/// Computes [`PitchTrack`]s; build once and share (holds the FFT plans).
pub struct PitchTracker {
    sample_rate: u32,
    frame: usize,
    hop: usize,
    fft_len: usize,
    forward: Arc<dyn Fft<f32>>,
    inverse: Arc<dyn Fft<f32>>,
    window: Vec<f32>,
    /// The window's normalised autocorrelation, per lag.
    window_ac: Vec<f32>,
    min_lag: usize,
    max_lag: usize,
}

impl std::fmt::Debug for PitchTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PitchTracker").field("sample_rate", &self.sample_rate).field("hop", &self.hop).finish()
    }
}

impl PitchTracker {
    /// A tracker for `sample_rate` audio with a frame every `hop` samples.
    pub fn new(sample_rate: u32, hop: usize) -> Self {
        // 40 ms frames: almost three periods of the lowest pitch.
        let frame = (sample_rate as usize * 40 / 1000).max(16);
        let fft_len = (2 * frame).next_power_of_two();
        let mut planner = FftPlanner::new();
        let window: Vec<f32> =
            (0..frame).map(|i| 0.5 - 0.5 * (std::f32::consts::TAU * (i as f32 + 0.5) / frame as f32).cos()).collect();
        let energy: f32 = window.iter().map(|w| w * w).sum();
        let window_ac: Vec<f32> =
            (0..frame).map(|lag| window.iter().zip(&window[lag..]).map(|(a, b)| a * b).sum::<f32>() / energy).collect();
        let min_lag = (sample_rate as f32 / MAX_F0).floor().max(2.0) as usize;
        let max_lag = ((sample_rate as f32 / MIN_F0).ceil() as usize).min(frame / 2);
        Self {
            sample_rate,
            frame,
            hop: hop.max(1),
            fft_len,
            forward: planner.plan_fft_forward(fft_len),
            inverse: planner.plan_fft_inverse(fft_len),
            window,
            window_ac,
            min_lag,
            max_lag,
        }
    }

    /// Number of frames for `samples` samples (as many as the MFCCs have).
    pub fn frames_for(&self, samples: usize) -> usize {
        1 + samples / self.hop
    }

    /// Pitch and voicing of every frame of `samples`.
    pub fn track(&self, samples: &[f32]) -> PitchTrack {
        let frames = self.frames_for(samples.len());
        let mut f0 = Vec::with_capacity(frames);
        let mut strength = Vec::with_capacity(frames);
        let mut buffer = vec![Complex::new(0.0f32, 0.0); self.fft_len];
        let mut scratch = vec![
            Complex::new(0.0f32, 0.0);
            self.forward.get_inplace_scratch_len().max(self.inverse.get_inplace_scratch_len())
        ];
        let mut frame = vec![0.0f32; self.frame];
        let mut ac = vec![0.0f32; self.max_lag + 2];
        let half = self.frame as isize / 2;
        for t in 0..frames {
            let first = (t * self.hop) as isize - half;
            for (i, x) in frame.iter_mut().enumerate() {
                let j = first + i as isize;
                *x = if j >= 0 && (j as usize) < samples.len() { samples[j as usize] } else { 0.0 };
            }
            let mean = frame.iter().sum::<f32>() / self.frame as f32;
            for (b, (x, w)) in buffer.iter_mut().zip(frame.iter().zip(&self.window)) {
                *b = Complex::new((x - mean) * w, 0.0);
            }
            buffer[self.frame..].fill(Complex::new(0.0, 0.0));
            self.forward.process_with_scratch(&mut buffer, &mut scratch);
            for b in buffer.iter_mut() {
                *b = Complex::new(b.norm_sqr(), 0.0);
            }
            self.inverse.process_with_scratch(&mut buffer, &mut scratch);
            let zero = buffer[0].re;
            // Silence, or a frame whose energy is float noise: no pitch.
            if zero.is_nan() || zero <= 1e-9 * self.frame as f32 {
                f0.push(0.0);
                strength.push(0.0);
                continue;
            }
            for (lag, a) in ac.iter_mut().enumerate() {
                *a = buffer[lag].re / zero / self.window_ac[lag].max(1e-3);
            }
            let (lag, height) = self.best_peak(&ac);
            f0.push(if lag > 0.0 { self.sample_rate as f32 / lag } else { 0.0 });
            strength.push(height.clamp(0.0, 1.0));
        }
        PitchTrack { f0, strength }
    }

    /// The chosen period (fractional lag, 0 if there is no peak) and its height.
    fn best_peak(&self, ac: &[f32]) -> (f32, f32) {
        let peaks: Vec<usize> = (self.min_lag..=self.max_lag)
            .filter(|&l| l >= 1 && l + 1 < ac.len() && ac[l] > 0.0 && ac[l] >= ac[l - 1] && ac[l] > ac[l + 1])
            .collect();
        let Some(best) = peaks.iter().map(|&l| ac[l]).reduce(f32::max) else { return (0.0, 0.0) };
        let Some(&lag) = peaks.iter().find(|&&l| ac[l] >= OCTAVE_TOLERANCE * best) else { return (0.0, 0.0) };
        let (a, b, c) = (ac[lag - 1], ac[lag], ac[lag + 1]);
        let denominator = a - 2.0 * b + c;
        let shift = if denominator < 0.0 { (0.5 * (a - c) / denominator).clamp(-0.5, 0.5) } else { 0.0 };
        let height = b - 0.25 * (a - c) * shift;
        (lag as f32 + shift, height)
    }
}

/// Numbers in a [`pitch_summary`]: the lower quartile, median and upper
/// quartile of `log2(F0 / 200 Hz)` over the voiced frames, and the voiced
/// share of the frames.
pub const PITCH_SUMMARY_SIZE: usize = 4;

/// A window's pitch in [`PITCH_SUMMARY_SIZE`] numbers, for a classifier that
/// reads one vector per window (the voice sex head). Quartiles rather than a
/// mean and spread: a few frames tracked an octave off move a mean but not
/// a quartile. A window with no voiced frame gives 0 (the 200 Hz reference,
/// between typical men's and women's voices) for the three pitches.
pub fn pitch_summary(track: &PitchTrack) -> [f32; PITCH_SUMMARY_SIZE] {
    let mut voiced: Vec<f32> = track
        .f0
        .iter()
        .zip(&track.strength)
        .filter(|&(&f0, &s)| s >= VOICED_STRENGTH && f0 > 0.0)
        .map(|(&f0, _)| (f0 / F0_REFERENCE).log2())
        .collect();
    let share = voiced.len() as f32 / track.f0.len().max(1) as f32;
    if voiced.is_empty() {
        return [0.0, 0.0, 0.0, share];
    }
    voiced.sort_by(f32::total_cmp);
    let at = |q: f32| voiced[((voiced.len() - 1) as f32 * q).round() as usize];
    [at(0.25), at(0.5), at(0.75), share]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn harmonic(f0: f32, seconds: f32) -> Vec<f32> {
        (0..(16_000.0 * seconds) as usize)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                (1..6).map(|k| (std::f32::consts::TAU * f0 * k as f32 * t).sin() / k as f32).sum::<f32>() * 0.2
            })
            .collect()
    }

    fn median(mut v: Vec<f32>) -> f32 {
        v.sort_by(f32::total_cmp);
        v[v.len() / 2]
    }

    #[test]
    fn finds_the_pitch_of_harmonic_tones() {
        let tracker = PitchTracker::new(16_000, 160);
        for f0 in [85.0, 120.0, 210.0, 330.0, 460.0] {
            let track = tracker.track(&harmonic(f0, 0.5));
            assert_eq!(track.f0.len(), 51);
            let inner = 5..45;
            let found = median(track.f0[inner.clone()].to_vec());
            assert!((found - f0).abs() / f0 < 0.01, "{f0} Hz heard as {found}");
            assert!(median(track.strength[inner].to_vec()) > 0.9, "{f0} Hz");
        }
    }

    #[test]
    fn the_summary_reads_voiced_frames_only() {
        let tracker = PitchTracker::new(16_000, 160);
        // Half a second of 100 Hz voice, then as much silence.
        let mut clip = harmonic(100.0, 0.5);
        clip.extend(std::iter::repeat_n(0.0, 8_000));
        let [low, middle, high, share] = pitch_summary(&tracker.track(&clip));
        let expected = (100.0f32 / 200.0).log2();
        for q in [low, middle, high] {
            assert!((q - expected).abs() < 0.02, "{q} for {expected}");
        }
        assert!((0.4..0.6).contains(&share), "voiced share {share}");
        // A higher voice sits higher; silence says nothing about pitch.
        assert!(pitch_summary(&tracker.track(&harmonic(250.0, 0.5)))[1] > 0.3);
        assert_eq!(pitch_summary(&tracker.track(&[0.0; 4_000])), [0.0; 4]);
        assert_eq!(pitch_summary(&tracker.track(&[])), [0.0; 4]);
    }

    #[test]
    fn noise_and_silence_are_unvoiced() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        let noise: Vec<f32> = (0..8_000).map(|_| rng.random_range(-0.3..0.3)).collect();
        let tracker = PitchTracker::new(16_000, 160);
        assert!(median(tracker.track(&noise).strength) < 0.35);
        let silence = tracker.track(&[0.0; 4_000]);
        assert!(silence.strength.iter().all(|&s| s == 0.0));
        // A constant (DC) is no pitch either: each frame's mean is removed.
        assert!(tracker.track(&[0.5; 4_000]).strength[3..22].iter().all(|&s| s == 0.0));
        assert_eq!(tracker.track(&[]).f0.len(), 1);
    }
}
