//! Late fusion of the face and voice emotion distributions.
//!
//! No dataset here pairs a face with the same person's voice, so there is
//! nothing to train a combiner on. What each model *can* be checked for
//! alone is calibration: whether its 0.8 means right 80% of the time. Each
//! model's card holds a temperature `T` fitted on its own validation split
//! (minimum negative log-likelihood); `p^(1/T)`, renormalised, is the
//! calibrated distribution (for a softmax output it is exactly temperature
//! scaling of the logits).
//!
//! If face and voice are independent given the emotion, and the prior over
//! emotions is flat, the posterior given both is proportional to the product
//! of the two calibrated posteriors. So the fused distribution is
//!
//! ```text
//! fused[k] ∝ Π_m  p_m[k] ^ (1 / T_m)
//! ```
//!
//! a log-linear pool whose weights are the inverse temperatures: a model
//! that is over-confident on its held-out data (T > 1) counts for less.
//! A modality that is missing (no face, a silent clip) is simply left out;
//! one that says nothing (uniform) leaves the other unchanged.
//! `emotion-ai eval fusion` measures what this does on pseudo-pairs (a face
//! and a clip drawn with the same true emotion).

use serde::{Deserialize, Serialize};

/// Probabilities below this count as this: one model's near-zero must not
/// veto a class the other is sure of.
const PROBABILITY_FLOOR: f64 = 1e-6;

/// A model's post-hoc calibration, recorded in its card.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Calibration {
    /// `p^(1/T)` renormalised is calibrated; 1 leaves `p` as it is.
    pub temperature: f64,
    /// Where it was fitted (never the split the accuracy is reported on).
    pub fitted_on: String,
    pub samples: u64,
}

/// When a model's two likeliest classes are too close to name one: below
/// `margin` between them, the answer page says "mixed: A or B". Chosen on
/// held-out data (`eval mixed`), recorded in the card.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MixedMargin {
    /// Probability gap between the first and second class.
    pub margin: f64,
    /// Where it was chosen (never the split the accuracy is reported on).
    pub fitted_on: String,
    /// On that data: the share of answers within the margin, how often their
    /// first class was right, and how often one of the two was.
    pub share_within: f64,
    pub top1_accuracy_within: f64,
    pub top2_accuracy_within: f64,
}

/// One modality's evidence for the fusion.
#[derive(Debug, Clone, Copy)]
pub struct Evidence<'a> {
    /// A probability distribution over the shared classes, in their order.
    pub probabilities: &'a [f32],
    /// The model's calibration temperature (1 when it has none).
    pub temperature: f64,
}

impl Evidence<'_> {
    /// The weight this evidence gets in the log-linear pool.
    pub fn weight(&self) -> f64 {
        1.0 / self.temperature
    }
}

/// Why evidence could not be fused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FusionError {
    #[error("nothing to fuse")]
    NoEvidence,
    #[error("distributions over different numbers of classes ({0} and {1})")]
    ClassCountMismatch(usize, usize),
    #[error("temperature {0} is not a positive finite number")]
    BadTemperature(f64),
}

/// `probabilities ^ (1 / temperature)`, renormalised: the calibrated
/// distribution of a model with that temperature.
pub fn temper(probabilities: &[f32], temperature: f64) -> Result<Vec<f32>, FusionError> {
    fuse(&[Evidence { probabilities, temperature }])
}

/// The normalised weighted geometric mean (log-linear pool) of the evidence;
/// see the module documentation for why this rule.
pub fn fuse(evidence: &[Evidence]) -> Result<Vec<f32>, FusionError> {
    let first = evidence.first().ok_or(FusionError::NoEvidence)?;
    let classes = first.probabilities.len();
    let mut log_fused = vec![0.0f64; classes];
    for e in evidence {
        if e.probabilities.len() != classes {
            return Err(FusionError::ClassCountMismatch(classes, e.probabilities.len()));
        }
        if !(e.temperature.is_finite() && e.temperature > 0.0) {
            return Err(FusionError::BadTemperature(e.temperature));
        }
        for (acc, &p) in log_fused.iter_mut().zip(e.probabilities) {
            *acc += e.weight() * f64::from(p).max(PROBABILITY_FLOOR).ln();
        }
    }
    // Softmax of the summed log-probabilities, shifted by the maximum so that
    // nothing overflows or underflows to an all-zero vector.
    let top = log_fused.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let exp: Vec<f64> = log_fused.iter().map(|l| (l - top).exp()).collect();
    let total: f64 = exp.iter().sum();
    Ok(exp.iter().map(|e| (e / total) as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-5)
    }

    fn evidence(probabilities: &[f32], temperature: f64) -> Evidence<'_> {
        Evidence { probabilities, temperature }
    }

    #[test]
    fn one_modality_at_temperature_one_is_unchanged() {
        let p = [0.1, 0.6, 0.3];
        assert!(close(&fuse(&[evidence(&p, 1.0)]).unwrap(), &p));
        // The other modality missing is the same as never having had it.
        assert!(close(&temper(&p, 1.0).unwrap(), &p));
    }

    #[test]
    fn temperature_above_one_softens_and_below_one_sharpens() {
        let p = [0.1, 0.6, 0.3];
        let soft = temper(&p, 2.0).unwrap();
        let sharp = temper(&p, 0.5).unwrap();
        assert!(soft[1] < 0.6 && soft[1] > 1.0 / 3.0, "{soft:?}");
        assert!(sharp[1] > 0.6, "{sharp:?}");
        // T = 2 is the square root, renormalised.
        let roots: Vec<f32> = p.iter().map(|x| x.sqrt()).collect();
        let total: f32 = roots.iter().sum();
        assert!(close(&soft, &roots.iter().map(|r| r / total).collect::<Vec<_>>()));
        // The ranking never changes.
        for q in [&soft, &sharp] {
            assert!(q[1] > q[2] && q[2] > q[0]);
        }
    }

    #[test]
    fn fused_distributions_sum_to_one() {
        let face = [0.05, 0.01, 0.04, 0.7, 0.1, 0.05, 0.05];
        let voice = [0.3, 0.1, 0.1, 0.2, 0.1, 0.1, 0.1];
        for (tf, tv) in [(1.0, 1.0), (1.3, 0.8), (3.0, 1.1)] {
            let fused = fuse(&[evidence(&face, tf), evidence(&voice, tv)]).unwrap();
            let total: f32 = fused.iter().sum();
            assert!((total - 1.0).abs() < 1e-5, "{fused:?}");
            assert!(fused.iter().all(|p| *p >= 0.0));
        }
    }

    #[test]
    fn agreement_sharpens_and_a_uniform_modality_changes_nothing() {
        let p = [0.2, 0.5, 0.3];
        let both = fuse(&[evidence(&p, 1.0), evidence(&p, 1.0)]).unwrap();
        // p^2 / sum(p^2) = [0.04, 0.25, 0.09] / 0.38
        assert!(close(&both, &[0.04 / 0.38, 0.25 / 0.38, 0.09 / 0.38]), "{both:?}");
        let uniform = [1.0 / 3.0; 3];
        assert!(close(&fuse(&[evidence(&p, 1.0), evidence(&uniform, 0.7)]).unwrap(), &p));
    }

    #[test]
    fn the_better_calibrated_modality_wins_a_disagreement() {
        let face = [0.8, 0.2];
        let voice = [0.2, 0.8];
        // Equal weights: a tie.
        let tie = fuse(&[evidence(&face, 1.0), evidence(&voice, 1.0)]).unwrap();
        assert!(close(&tie, &[0.5, 0.5]), "{tie:?}");
        // An over-confident voice model (T = 2) counts half.
        let fused = fuse(&[evidence(&face, 1.0), evidence(&voice, 2.0)]).unwrap();
        assert!(fused[0] > 0.6, "{fused:?}");
        // 0.8 * 0.2^0.5 : 0.2 * 0.8^0.5 = 2 : 1
        assert!(close(&fused, &[2.0 / 3.0, 1.0 / 3.0]), "{fused:?}");
    }

    #[test]
    fn a_zero_from_one_model_does_not_veto_the_other() {
        let fused = fuse(&[evidence(&[0.0, 1.0], 1.0), evidence(&[0.999_999, 0.000_001], 1.0)]).unwrap();
        assert!(fused.iter().all(|p| p.is_finite()));
        assert!((fused.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn bad_evidence_is_refused() {
        assert_eq!(fuse(&[]), Err(FusionError::NoEvidence));
        assert_eq!(
            fuse(&[evidence(&[0.5, 0.5], 1.0), evidence(&[0.2, 0.3, 0.5], 1.0)]),
            Err(FusionError::ClassCountMismatch(2, 3))
        );
        assert_eq!(temper(&[0.5, 0.5], 0.0), Err(FusionError::BadTemperature(0.0)));
        assert!(temper(&[0.5, 0.5], f64::NAN).is_err());
    }
}
