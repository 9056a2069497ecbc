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

    /// Mean of the per-class recalls (balanced accuracy).
    pub fn balanced_accuracy(&self) -> f64 {
        let r = self.recall();
        r.iter().sum::<f64>() / r.len().max(1) as f64
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
}
