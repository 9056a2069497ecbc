//! A clip of any length through the voice network: fixed-length windows, a
//! per-window timeline, and one clip-level distribution. Shared by serving and
//! by evaluation, so measured accuracy is the accuracy users get.
//!
//! A clip shorter than one window is repeated to fill it. A longer clip is cut into windows every `hop` seconds, the last one
//! flush with the clip's end. The clip-level distribution is the mean of the
//! windows' distributions weighted by their RMS level, leaving out windows
//! more than 20 dB below the loudest one: pauses carry no emotion, and
//! letting them vote would pull every long clip towards whatever the network
//! says about silence.

use anyhow::{Context, Result};
use tch::Tensor;

use crate::features::voice_input::VoiceFeatureExtractor;
use crate::model::speaker::SpeakerSexModel;
use crate::model::voice::{joint_class, split_class, VoiceClassifier, SEXES, VOICE_CLASSES};
use crate::model::EMOTIONS;

/// Windows scored by one forward pass; bounds memory for long clips.
const WINDOW_BATCH: usize = 32;

/// Windows quieter than this fraction of the loudest window's RMS (-20 dB) do
/// not count towards the clip-level result.
const QUIET_WINDOW_RATIO: f32 = 0.1;

/// Start offsets (samples) of the analysis windows of a clip of `len` samples.
pub fn window_starts(len: usize, window: usize, hop: usize) -> Vec<usize> {
    if len <= window {
        return vec![0];
    }
    let hop = hop.max(1);
    let mut starts: Vec<usize> = (0..).map(|i| i * hop).take_while(|&s| s + window < len).collect();
    starts.push(len - window);
    starts.dedup();
    starts
}

/// `(start, end)` of every analysis window of a clip of `len` samples (see
/// [`window_starts`]), the end clipped to the clip.
pub fn window_spans(len: usize, windowing: Windowing) -> Vec<(usize, usize)> {
    window_starts(len, windowing.window, windowing.hop)
        .into_iter()
        .map(|s| (s, (s + windowing.window).min(len)))
        .collect()
}

// The window's samples and level are the features layer's, so that the
// speaker encoder (`crate::model::speaker`) reads a window exactly as the
// voice network does without depending on this module.
pub use crate::features::{rms, window_samples};

/// One analysed window.
#[derive(Debug, Clone)]
pub struct WindowPrediction {
    /// First sample and one past the last (within the clip).
    pub start: usize,
    pub end: usize,
    /// RMS level of the window's samples.
    pub rms: f32,
    /// Joint probabilities, [`VOICE_CLASSES`] long.
    pub joint: Vec<f32>,
}

/// Every window of a clip and the clip-level joint distribution.
#[derive(Debug, Clone)]
pub struct ClipPrediction {
    pub windows: Vec<WindowPrediction>,
    pub joint: Vec<f32>,
}

/// Window length and hop in samples.
#[derive(Debug, Clone, Copy)]
pub struct Windowing {
    pub window: usize,
    pub hop: usize,
}

/// Runs `net` on every window of `samples` (and, given one, the voice sex
/// head; see [`apply_sex_head`]) and aggregates.
pub fn predict_clip(
    net: &impl VoiceClassifier,
    extractor: &VoiceFeatureExtractor,
    sex_head: Option<&SpeakerSexModel>,
    samples: &[f32],
    windowing: Windowing,
) -> Result<ClipPrediction> {
    let starts = window_starts(samples.len(), windowing.window, windowing.hop);
    let mut windows = predict_windows(net, extractor, samples, &starts, windowing)?;
    if let Some(head) = sex_head {
        apply_sex_head(head, samples, windowing, &mut windows)?;
    }
    let joint = aggregate(&windows);
    Ok(ClipPrediction { windows, joint })
}

/// Replaces each window's sex by the voice sex head's, blended with the
/// network's own sex marginal as the head's card says (`head_weight`); the
/// emotion marginal stays as the network gave it, and the joint becomes
/// emotion x sex. The head reads the speaker encoder's embedding of each
/// window (`crate::model::speaker`), which generalises to voices of other
/// corpora better than the network's marginal.
pub fn apply_sex_head(
    head: &SpeakerSexModel,
    samples: &[f32],
    windowing: Windowing,
    windows: &mut [WindowPrediction],
) -> Result<()> {
    let spans: Vec<(usize, usize)> = windows.iter().map(|w| (w.start, w.end)).collect();
    let sexes = head.predict_windows(samples, &spans, windowing.window)?;
    for (w, sex) in windows.iter_mut().zip(sexes) {
        w.joint = blend_sex(&w.joint, sex, head.card.head_weight);
    }
    Ok(())
}

/// The joint distribution whose emotion marginal is `joint`'s and whose sex
/// is `head_weight x head + (1 - head_weight) x joint's sex marginal`, the
/// two independent.
pub fn blend_sex(joint: &[f32], head: [f32; 2], head_weight: f32) -> Vec<f32> {
    let emotions = emotion_marginal(joint);
    let own = sex_marginal(joint);
    let sex: Vec<f32> = (0..SEXES.len()).map(|s| head_weight * head[s] + (1.0 - head_weight) * own[s]).collect();
    let mut out = vec![0.0; VOICE_CLASSES];
    for (e, pe) in emotions.iter().enumerate() {
        for (s, ps) in sex.iter().enumerate() {
            out[joint_class(e, s)] = pe * ps;
        }
    }
    out
}

/// Runs `net` on the windows of `samples` that begin at `starts` (from
/// [`window_starts`]), in order; callers may split the starts between threads.
pub fn predict_windows(
    net: &impl VoiceClassifier,
    extractor: &VoiceFeatureExtractor,
    samples: &[f32],
    starts: &[usize],
    windowing: Windowing,
) -> Result<Vec<WindowPrediction>> {
    let mut windows = Vec::with_capacity(starts.len());
    for chunk in starts.chunks(WINDOW_BATCH) {
        let mut maps = Vec::with_capacity(chunk.len());
        let mut levels = Vec::with_capacity(chunk.len());
        for &start in chunk {
            let piece = window_samples(samples, start, windowing.window);
            levels.push(rms(&samples[start..(start + windowing.window).min(samples.len())]));
            let map = extractor.compute(&piece);
            maps.push(Tensor::from_slice(&map.data).view([map.rows as i64, map.frames as i64]));
        }
        let proba = net.predict_proba(&Tensor::stack(&maps, 0));
        for (i, (&start, level)) in chunk.iter().zip(levels).enumerate() {
            let joint = Vec::<f32>::try_from(proba.get(i as i64)).context("reading voice probabilities")?;
            windows.push(WindowPrediction {
                start,
                end: (start + windowing.window).min(samples.len()),
                rms: level,
                joint,
            });
        }
    }
    Ok(windows)
}

/// RMS-weighted mean of the windows' distributions (joint, or any other of
/// one length), ignoring windows more than 20 dB below the loudest (all
/// windows count if all are silent).
pub fn aggregate(windows: &[WindowPrediction]) -> Vec<f32> {
    let loudest = windows.iter().map(|w| w.rms).fold(0.0f32, f32::max);
    let mut sum = vec![0.0f32; windows.first().map_or(VOICE_CLASSES, |w| w.joint.len())];
    let mut total = 0.0f32;
    for w in windows {
        let weight = if loudest > 0.0 {
            if w.rms < loudest * QUIET_WINDOW_RATIO {
                continue;
            }
            w.rms
        } else {
            1.0
        };
        for (s, p) in sum.iter_mut().zip(&w.joint) {
            *s += weight * p;
        }
        total += weight;
    }
    if total > 0.0 {
        sum.iter_mut().for_each(|s| *s /= total);
    }
    sum
}

/// The 7 emotion probabilities (summed over sex) of a joint distribution.
pub fn emotion_marginal(joint: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; EMOTIONS.len()];
    for (c, p) in joint.iter().enumerate() {
        out[split_class(c).0] += p;
    }
    out
}

/// The 2 sex probabilities (summed over emotion) of a joint distribution.
pub fn sex_marginal(joint: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; SEXES.len()];
    for (c, p) in joint.iter().enumerate() {
        out[split_class(c).1] += p;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_cover_the_clip_and_end_flush() {
        assert_eq!(window_starts(10, 48, 16), vec![0]);
        assert_eq!(window_starts(48, 48, 16), vec![0]);
        assert_eq!(window_starts(49, 48, 16), vec![0, 1]);
        assert_eq!(window_starts(100, 48, 16), vec![0, 16, 32, 48, 52]);
        assert_eq!(window_starts(96, 48, 16), vec![0, 16, 32, 48]);
        // 60 s at 16 kHz, 3 s windows every 1 s: 58 windows.
        assert_eq!(window_starts(960_000, 48_000, 16_000).len(), 58);
    }

    fn window(rms: f32, hot: usize) -> WindowPrediction {
        let mut joint = vec![0.0; VOICE_CLASSES];
        joint[hot] = 1.0;
        WindowPrediction { start: 0, end: 1, rms, joint }
    }

    #[test]
    fn aggregation_weights_by_level_and_skips_pauses() {
        // A loud window on class 3, a half as loud on class 5, a pause on class 0.
        let joint = aggregate(&[window(0.2, 3), window(0.1, 5), window(0.001, 0)]);
        assert!((joint[3] - 2.0 / 3.0).abs() < 1e-6);
        assert!((joint[5] - 1.0 / 3.0).abs() < 1e-6);
        assert_eq!(joint[0], 0.0);
        // All silent: plain mean.
        let joint = aggregate(&[window(0.0, 1), window(0.0, 2)]);
        assert_eq!((joint[1], joint[2]), (0.5, 0.5));
    }

    #[test]
    fn the_sex_head_changes_sex_and_keeps_emotion() {
        let joint: Vec<f32> = (0..14).map(|c| c as f32 / 91.0).collect();
        let emotions = emotion_marginal(&joint);
        for weight in [0.0, 0.5, 1.0] {
            let blended = blend_sex(&joint, [0.9, 0.1], weight);
            for (a, b) in emotion_marginal(&blended).iter().zip(&emotions) {
                assert!((a - b).abs() < 1e-6);
            }
            let female = sex_marginal(&blended)[0];
            let expected = weight * 0.9 + (1.0 - weight) * sex_marginal(&joint)[0];
            assert!((female - expected).abs() < 1e-6, "weight {weight}: {female} vs {expected}");
        }
    }

    #[test]
    fn marginals_sum_over_the_other_factor() {
        let joint: Vec<f32> = (0..14).map(|c| c as f32 / 91.0).collect();
        let emotions = emotion_marginal(&joint);
        let sexes = sex_marginal(&joint);
        assert!((emotions[0] - 1.0 / 91.0).abs() < 1e-6); // classes 0 and 1
        assert!((emotions[6] - 25.0 / 91.0).abs() < 1e-6); // classes 12 and 13
        assert!((sexes[0] - 42.0 / 91.0).abs() < 1e-6); // even classes
        assert!((sexes.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}
