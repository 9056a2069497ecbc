//! The voice network's input: MFCCs, optionally with each window's cepstral
//! mean removed and two pitch rows added below them.
//!
//! - **Cepstral mean normalisation** (`cmn`): a microphone, a room or a phone
//!   line multiplies the spectrum by a fixed response, which adds a constant
//!   to every frame's MFCCs; subtracting the window's mean of each
//!   coefficient removes it (and the recording level, carried by c0), so the
//!   network cannot learn one corpus's recording chain as a trait of its
//!   speakers. It is applied per window, identically in training and serving.
//! - **Pitch** (`pitch`): `log2(F0 / 200 Hz)` where the frame is voiced (0
//!   elsewhere) and the voicing strength ([`super::pitch`]). Pitch is what
//!   separates most women's voices from most men's in any language, and its
//!   contour carries much of the emotion.
//!
//! The fixed per-row scaling measured at training time is applied inside the
//! network (see [`crate::model::voice`]), after these.

use super::pitch::PitchTracker;
use super::{MfccConfig, MfccExtractor};

/// A frame counts as voiced (its F0 enters the pitch row) from this strength.
pub const VOICED_STRENGTH: f32 = 0.5;
/// Rows the pitch stage adds below the MFCCs (log F0, voicing strength).
pub const PITCH_ROWS: usize = 2;
/// Reference pitch of the log-F0 row (Hz): between typical men's and women's.
pub(crate) const F0_REFERENCE: f32 = 200.0;

/// Rows of the map of `n_mfcc` MFCCs, with or without the pitch rows.
pub fn rows(n_mfcc: usize, pitch: bool) -> usize {
    n_mfcc + if pitch { PITCH_ROWS } else { 0 }
}

/// A `rows x frames` map, row-major (`data[r * frames + t]`).
#[derive(Debug, Clone, PartialEq)]
pub struct VoiceFeatures {
    pub rows: usize,
    pub frames: usize,
    pub data: Vec<f32>,
}

/// MFCCs (+ CMN) (+ pitch rows); build once and share.
#[derive(Debug)]
pub struct VoiceFeatureExtractor {
    mfcc: MfccExtractor,
    pitch: Option<PitchTracker>,
    cmn: bool,
}

impl VoiceFeatureExtractor {
    /// An extractor with MFCCs as `config` says, and the optional stages.
    pub fn new(config: MfccConfig, cmn: bool, pitch: bool) -> Self {
        let pitch = pitch.then(|| PitchTracker::new(config.sample_rate, config.hop_length));
        Self { mfcc: MfccExtractor::new(config), pitch, cmn }
    }

    /// Rows of every map: the MFCCs, and two more with pitch.
    pub fn rows(&self) -> usize {
        rows(self.mfcc.config().n_mfcc, self.pitch.is_some())
    }

    /// The MFCC settings (sample rate, hop, ...).
    pub fn mfcc_config(&self) -> &MfccConfig {
        self.mfcc.config()
    }

    /// Frames of the map of `samples` samples.
    pub fn frames_for(&self, samples: usize) -> usize {
        self.mfcc.config().frames_for(samples)
    }

    /// The map of one window of samples.
    pub fn compute(&self, samples: &[f32]) -> VoiceFeatures {
        let mfcc = self.mfcc.compute(samples);
        let frames = mfcc.frames;
        let mut data = mfcc.data;
        if self.cmn && frames > 0 {
            for row in data.chunks_mut(frames) {
                let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / frames as f64;
                row.iter_mut().for_each(|v| *v -= mean as f32);
            }
        }
        if let Some(tracker) = &self.pitch {
            let track = tracker.track(samples);
            debug_assert_eq!(track.f0.len(), frames);
            data.reserve(2 * frames);
            data.extend(track.f0.iter().zip(&track.strength).take(frames).map(|(&f0, &s)| {
                if s >= VOICED_STRENGTH && f0 > 0.0 {
                    (f0 / F0_REFERENCE).log2()
                } else {
                    0.0
                }
            }));
            data.extend(track.strength.iter().take(frames));
        }
        VoiceFeatures { rows: self.rows(), frames, data }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A harmonic tone over a little noise (so that no mel band is empty and
    /// floored), scaled by `gain`.
    fn tone(f0: f32, gain: f32) -> Vec<f32> {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::SmallRng::seed_from_u64(1);
        (0..16_000)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                let noise: f32 = rng.random_range(-0.05..0.05);
                gain * ((1..4).map(|k| (std::f32::consts::TAU * f0 * k as f32 * t).sin()).sum::<f32>() + noise)
            })
            .collect()
    }

    #[test]
    fn cmn_removes_level_and_pitch_rows_follow_f0() {
        let extractor = VoiceFeatureExtractor::new(MfccConfig::voice(), true, true);
        assert_eq!(extractor.rows(), 42);
        let quiet = extractor.compute(&tone(100.0, 0.01));
        let loud = extractor.compute(&tone(100.0, 0.3));
        assert_eq!((quiet.rows, quiet.frames, quiet.data.len()), (42, 101, 42 * 101));
        // 30 dB of gain is a constant on c0, removed by CMN; pitch does not
        // depend on the level.
        let largest = quiet.data.iter().zip(&loud.data).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(largest < 1e-2, "largest difference {largest}");
        // 100 Hz is log2(0.5) = -1 on the pitch row, away from the edges.
        let f0_row = &loud.data[40 * 101..41 * 101];
        assert!(f0_row[10..90].iter().all(|&v| (v + 1.0).abs() < 0.02), "{:?}", &f0_row[10..20]);
        let plain = VoiceFeatureExtractor::new(MfccConfig::voice(), false, false);
        assert_eq!(plain.compute(&tone(100.0, 0.3)).data.len(), 40 * 101);
    }
}
