//! Classification metrics: accuracy, per-class recall, confusion matrix, and
//! the matrix drawn as a PNG heat map.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;
use serde::Serialize;

/// Counts of (true class, predicted class) pairs.
#[derive(Debug, Clone, Serialize)]
pub struct ConfusionMatrix {
    pub classes: Vec<String>,
    /// `counts[true][predicted]`.
    pub counts: Vec<Vec<u64>>,
}

impl ConfusionMatrix {
    /// Builds the matrix from paired true and predicted class indices.
    pub fn new(classes: &[&str], truth: &[i64], predicted: &[i64]) -> Self {
        let k = classes.len();
        let mut counts = vec![vec![0u64; k]; k];
        for (&t, &p) in truth.iter().zip(predicted) {
            counts[t as usize][p as usize] += 1;
        }
        Self { classes: classes.iter().map(|c| c.to_string()).collect(), counts }
    }

    /// The matrix of each distribution's most probable class against the
    /// true classes.
    pub fn from_distributions(classes: &[&str], probabilities: &[Vec<f32>], truth: &[usize]) -> Self {
        let predicted: Vec<i64> = probabilities.iter().map(|p| argmax(p) as i64).collect();
        let truth: Vec<i64> = truth.iter().map(|&t| t as i64).collect();
        Self::new(classes, &truth, &predicted)
    }

    /// Number of samples counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Fraction of samples on the diagonal.
    pub fn accuracy(&self) -> f64 {
        let correct: u64 = (0..self.counts.len()).map(|i| self.counts[i][i]).sum();
        correct as f64 / self.total().max(1) as f64
    }

    /// Recall of each class (correct / true members); 0 for an absent class.
    pub fn recall(&self) -> Vec<f64> {
        self.counts.iter().enumerate().map(|(i, row)| row[i] as f64 / row.iter().sum::<u64>().max(1) as f64).collect()
    }

    /// Mean of the per-class recalls (balanced accuracy) over the classes
    /// that occur: a corpus without surprise clips is not marked down for
    /// never being right about surprise.
    pub fn balanced_accuracy(&self) -> f64 {
        let present: Vec<f64> = self
            .recall()
            .into_iter()
            .zip(&self.counts)
            .filter(|(_, row)| row.iter().sum::<u64>() > 0)
            .map(|(r, _)| r)
            .collect();
        present.iter().sum::<f64>() / present.len().max(1) as f64
    }

    /// Draws the row-normalised matrix as a heat map with counts and recall.
    pub fn save_png(&self, path: &Path, title: &str) -> Result<()> {
        register_font()?;
        let k = self.classes.len();
        let cell = 84u32;
        let (left, top) = (120u32, 70u32);
        let size = (left + cell * k as u32 + 20, top + cell * k as u32 + 90);
        let root = BitMapBackend::new(path, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let text = |size: u32| ("sans-serif", size).into_font().color(&BLACK);
        root.draw(&Text::new(title.to_string(), (10, 12), text(22))).map_err(plot_err)?;
        for (t, row) in self.counts.iter().enumerate() {
            let row_total = row.iter().sum::<u64>().max(1) as f64;
            for (p, &count) in row.iter().enumerate() {
                let share = count as f64 / row_total;
                let x = (left + cell * p as u32) as i32;
                let y = (top + cell * t as u32) as i32;
                let shade = (255.0 * (1.0 - share)) as u8;
                let fill = RGBColor(shade, shade, 255);
                root.draw(&Rectangle::new([(x, y), (x + cell as i32, y + cell as i32)], fill.filled()))
                    .map_err(plot_err)?;
                let ink = if share > 0.5 { WHITE } else { BLACK };
                let style = ("sans-serif", 16).into_font().color(&ink);
                root.draw(&Text::new(format!("{count}"), (x + 8, y + 22), style.clone())).map_err(plot_err)?;
                root.draw(&Text::new(format!("{:.0}%", share * 100.0), (x + 8, y + 46), style)).map_err(plot_err)?;
            }
            let y = (top + cell * t as u32 + cell / 2 - 8) as i32;
            root.draw(&Text::new(self.classes[t].clone(), (10, y), text(16))).map_err(plot_err)?;
        }
        let y_labels = (top + cell * k as u32 + 8) as i32;
        for (p, name) in self.classes.iter().enumerate() {
            let x = (left + cell * p as u32 + 4) as i32;
            root.draw(&Text::new(name.clone(), (x, y_labels), text(15))).map_err(plot_err)?;
        }
        let footer = format!(
            "rows: true class, columns: predicted; accuracy {:.2}% of {}",
            self.accuracy() * 100.0,
            self.total()
        );
        root.draw(&Text::new(footer, (10, y_labels + 34), text(16))).map_err(plot_err)?;
        root.present().map_err(plot_err)?;
        Ok(())
    }
}

/// How well a model's confidence matches its accuracy, on one labelled set.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationReport {
    pub samples: u64,
    /// Expected calibration error: the sample-weighted mean, over equal-width
    /// confidence bins, of |accuracy - mean confidence| (top-1).
    pub ece: f64,
    /// The largest such gap over non-empty bins.
    pub max_gap: f64,
    /// Mean negative log-likelihood of the true class.
    pub nll: f64,
    pub bins: Vec<ReliabilityBin>,
}

/// One confidence bin of a reliability diagram.
#[derive(Debug, Clone, Serialize)]
pub struct ReliabilityBin {
    pub lower: f64,
    pub upper: f64,
    pub samples: u64,
    pub mean_confidence: f64,
    pub accuracy: f64,
}

/// Calibration of top-1 predictions over `bins` equal-width confidence bins
/// (15 is the usual choice), from each sample's distribution and true class.
pub fn calibration(probabilities: &[Vec<f32>], truth: &[usize], bins: usize) -> CalibrationReport {
    let bins = bins.max(1);
    let mut count = vec![0u64; bins];
    let mut confidence_sum = vec![0.0f64; bins];
    let mut correct = vec![0u64; bins];
    let mut nll = 0.0;
    for (p, &t) in probabilities.iter().zip(truth) {
        let (top, &confidence) = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap_or((usize::MAX, &0.0));
        let confidence = f64::from(confidence);
        let bin = ((confidence * bins as f64) as usize).min(bins - 1);
        count[bin] += 1;
        confidence_sum[bin] += confidence;
        correct[bin] += u64::from(top == t);
        nll -= f64::from(p.get(t).copied().unwrap_or(0.0)).max(1e-12).ln();
    }
    let samples: u64 = count.iter().sum();
    let mut ece = 0.0;
    let mut max_gap = 0.0f64;
    let bins: Vec<ReliabilityBin> = (0..bins)
        .map(|b| {
            let n = count[b].max(1) as f64;
            let bin = ReliabilityBin {
                lower: b as f64 / bins as f64,
                upper: (b + 1) as f64 / bins as f64,
                samples: count[b],
                mean_confidence: confidence_sum[b] / n,
                accuracy: correct[b] as f64 / n,
            };
            if count[b] > 0 {
                let gap = (bin.accuracy - bin.mean_confidence).abs();
                ece += gap * count[b] as f64 / samples as f64;
                max_gap = max_gap.max(gap);
            }
            bin
        })
        .collect();
    CalibrationReport { samples, ece, max_gap, nll: nll / samples.max(1) as f64, bins }
}

/// The temperature `T` minimising the mean negative log-likelihood of
/// `p^(1/T)` (renormalised) on a labelled set: a golden-section search over
/// log T in [1/10, 10], where the likelihood is unimodal in practice.
pub fn fit_temperature(probabilities: &[Vec<f32>], truth: &[usize]) -> f64 {
    let nll = |log_t: f64| -> f64 {
        let t = log_t.exp();
        probabilities
            .iter()
            .zip(truth)
            .map(|(p, &k)| {
                let q = crate::fusion::temper(p, t).unwrap_or_else(|_| p.clone());
                -f64::from(q.get(k).copied().unwrap_or(0.0)).max(1e-12).ln()
            })
            .sum::<f64>()
    };
    let golden = (5f64.sqrt() - 1.0) / 2.0;
    let (mut a, mut b) = (0.1f64.ln(), 10f64.ln());
    let mut c = b - golden * (b - a);
    let mut d = a + golden * (b - a);
    let (mut fc, mut fd) = (nll(c), nll(d));
    for _ in 0..40 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - golden * (b - a);
            fc = nll(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + golden * (b - a);
            fd = nll(d);
        }
    }
    ((a + b) / 2.0).exp()
}

/// Each distribution tempered by `temperature` (see [`crate::fusion::temper`]).
pub fn tempered(probabilities: &[Vec<f32>], temperature: f64) -> Vec<Vec<f32>> {
    probabilities.iter().map(|p| crate::fusion::temper(p, temperature).unwrap_or_else(|_| p.clone())).collect()
}

/// A model's calibration on its test split, before and after the
/// temperature fitted on its validation split.
#[derive(Debug, Clone, Serialize)]
pub struct CalibrationSummary {
    pub temperature: f64,
    pub fitted_on: String,
    pub validation_samples: u64,
    /// As the model gives its probabilities.
    pub raw: CalibrationReport,
    /// After the temperature.
    pub calibrated: CalibrationReport,
}

/// Index of the largest value (the first on a tie; 0 when empty).
pub fn argmax(values: &[f32]) -> usize {
    values.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1).then(b.0.cmp(&a.0))).map_or(0, |(i, _)| i)
}

/// A metric rounded to 4 decimals, as the reports and cards record them.
pub fn round4(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Reliability bins used for every reported ECE.
pub const ECE_BINS: usize = 15;

impl CalibrationSummary {
    /// Fits the temperature on `validation` (distributions and true classes)
    /// and measures both versions on `test`.
    pub fn fit(validation: (&[Vec<f32>], &[usize]), test: (&[Vec<f32>], &[usize]), fitted_on: &str) -> Self {
        let temperature = fit_temperature(validation.0, validation.1);
        Self {
            temperature,
            fitted_on: fitted_on.to_string(),
            validation_samples: validation.0.len() as u64,
            raw: calibration(test.0, test.1, ECE_BINS),
            calibrated: calibration(&tempered(test.0, temperature), test.1, ECE_BINS),
        }
    }

    /// What the model card records.
    pub fn card_entry(&self) -> crate::fusion::Calibration {
        crate::fusion::Calibration {
            temperature: round4(self.temperature),
            fitted_on: self.fitted_on.clone(),
            samples: self.validation_samples,
        }
    }
}

/// The rows of a `[N, K]` probability tensor.
pub fn tensor_rows(probabilities: &tch::Tensor) -> Vec<Vec<f32>> {
    (0..probabilities.size()[0]).map(|i| Vec::<f32>::try_from(probabilities.get(i)).unwrap_or_default()).collect()
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing plot: {e:?}")
}

/// Font for plots: DejaVu Sans from Debian's fonts-dejavu-core (installed by
/// scripts/setup.sh), registered once for plotters' ab_glyph text backend.
fn register_font() -> Result<()> {
    static FONT: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    FONT.get_or_init(|| {
        let path = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
        let bytes = std::fs::read(path).map_err(|e| format!("reading font {path}: {e}"))?;
        plotters::style::register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into_boxed_slice()))
            .map_err(|_| format!("{path} is not a usable font"))
    })
    .clone()
    .map_err(|e| anyhow!(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_recall_and_counts() {
        let m = ConfusionMatrix::new(&["a", "b", "c"], &[0, 0, 1, 1, 2, 2], &[0, 1, 1, 1, 2, 0]);
        assert_eq!(m.counts, vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 0, 1]]);
        assert!((m.accuracy() - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(m.recall(), vec![0.5, 1.0, 0.5]);
        assert!((m.balanced_accuracy() - 2.0 / 3.0).abs() < 1e-12);
        // A class nobody belongs to is left out of the balanced accuracy.
        let absent = ConfusionMatrix::new(&["a", "b", "c"], &[0, 0, 2], &[0, 1, 2]);
        assert!((absent.balanced_accuracy() - 0.75).abs() < 1e-12);
    }

    #[test]
    fn a_matrix_from_distributions_counts_each_top_class() {
        let p = vec![vec![0.7, 0.2, 0.1], vec![0.1, 0.1, 0.8], vec![0.3, 0.4, 0.3]];
        let m = ConfusionMatrix::from_distributions(&["a", "b", "c"], &p, &[0, 2, 0]);
        assert_eq!(m.counts, vec![vec![1, 1, 0], vec![0, 0, 0], vec![0, 0, 1]]);
        assert_eq!(argmax(&[0.5, 0.5]), 0, "ties go to the first class");
    }

    #[test]
    fn draws_a_png() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cm.png");
        let m = ConfusionMatrix::new(&["a", "b"], &[0, 1, 1], &[0, 1, 0]);
        m.save_png(&path, "test").unwrap();
        let img = image::open(&path).unwrap();
        assert!(img.width() > 100 && img.height() > 100);
    }

    #[test]
    fn perfectly_calibrated_predictions_have_zero_ece() {
        // Confidence 0.75 and right 3 times out of 4; confidence 1 and right.
        let p = vec![vec![0.75, 0.25]; 4].into_iter().chain([vec![1.0, 0.0]]).collect::<Vec<_>>();
        let truth = [0, 0, 0, 1, 0];
        let report = calibration(&p, &truth, 10);
        assert_eq!(report.samples, 5);
        assert!(report.ece.abs() < 1e-9, "{report:?}");
        assert_eq!(report.bins.iter().map(|b| b.samples).sum::<u64>(), 5);
        assert_eq!(report.bins[7].samples, 4);
        assert_eq!(report.bins[9].samples, 1, "confidence 1.0 falls in the last bin");
    }

    #[test]
    fn over_confidence_shows_as_ece() {
        // Always 0.9 sure, right half the time: a gap of 0.4 everywhere.
        let p = vec![vec![0.9, 0.1]; 10];
        let truth: Vec<usize> = (0..10).map(|i| i % 2).collect();
        let report = calibration(&p, &truth, 15);
        assert!((report.ece - 0.4).abs() < 1e-6, "{report:?}");
        assert!((report.max_gap - 0.4).abs() < 1e-6);
        let expected_nll = -(0.5 * 0.9f64.ln() + 0.5 * 0.1f64.ln());
        assert!((report.nll - expected_nll).abs() < 1e-6);
    }

    #[test]
    fn fitted_temperature_undoes_over_confidence() {
        // Right 60% of the time at 0.9 confidence: T > 1 softens towards 0.6.
        let p = vec![vec![0.9f32, 0.1]; 100];
        let truth: Vec<usize> = (0..100).map(|i| usize::from(i % 5 >= 3)).collect();
        let t = fit_temperature(&p, &truth);
        assert!(t > 1.5, "temperature {t}");
        let calibrated = tempered(&p, t);
        assert!((calibrated[0][0] - 0.6).abs() < 0.01, "{:?}", calibrated[0]);
        assert!(calibration(&calibrated, &truth, 15).ece < 0.01);
        // Under-confident predictions get T < 1.
        let p = vec![vec![0.6f32, 0.4]; 100];
        let truth = vec![0usize; 100];
        assert!(fit_temperature(&p, &truth) < 0.5);
    }
}
