//! The `eval mixed` command: how close a model's two likeliest emotions may
//! be before one label overstates the answer.
//!
//! On held-out data (FER2013 PublicTest, RAVDESS validation actors), answers
//! are grouped by the probability gap between their first and second
//! emotion. The chosen margin is the largest gap (in steps of 0.01) below
//! which the first emotion is right less than 1.5 times as often as the
//! second: there the two are about as plausible, and "mixed: A or B" is the
//! honest answer. The margin goes into the model's card; the answer page
//! reads it from there.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::fer2013::Split;
use super::{face_emotion, voice_emotion};
use crate::fusion::MixedMargin;
use crate::model::voice::VoiceModelCard;
use crate::model::{card_path, ModelCard};

/// How much more often the first emotion must be right than the second for
/// one label to be the answer.
const FIRST_OVER_SECOND: f64 = 1.5;

/// Fewest answers a margin must hold to be judged.
const MIN_WITHIN: usize = 10;

/// Answers with a gap below `margin`: how many, and how often the first
/// (and either of the first two) emotion was right.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MarginRow {
    pub margin: f64,
    pub within: usize,
    pub top1_accuracy: f64,
    pub top2_accuracy: f64,
}

/// The gap between the first and second probability, and whether the truth
/// is the first or among the first two.
fn gap_and_hits(distribution: &[f32], truth: usize) -> (f64, bool, bool) {
    let mut order: Vec<usize> = (0..distribution.len()).collect();
    order.sort_by(|&a, &b| distribution[b].total_cmp(&distribution[a]));
    let gap = f64::from(distribution[order[0]] - distribution.get(order[1]).copied().unwrap_or(0.0));
    (gap, order[0] == truth, order.iter().take(2).any(|&c| c == truth))
}

/// Rows for margins 0.01 .. 0.50, and the chosen margin (`None` when even
/// the closest answers are right more often than not).
pub fn choose_margin(distributions: &[Vec<f32>], truths: &[usize]) -> (Vec<MarginRow>, Option<MarginRow>) {
    let scored: Vec<(f64, bool, bool)> = distributions.iter().zip(truths).map(|(d, &t)| gap_and_hits(d, t)).collect();
    let rows: Vec<MarginRow> = (1..=50)
        .map(|step| {
            let margin = f64::from(step) / 100.0;
            let within: Vec<&(f64, bool, bool)> = scored.iter().filter(|(gap, _, _)| *gap < margin).collect();
            let rate = |hits: usize| if within.is_empty() { 0.0 } else { hits as f64 / within.len() as f64 };
            MarginRow {
                margin,
                within: within.len(),
                top1_accuracy: rate(within.iter().filter(|s| s.1).count()),
                top2_accuracy: rate(within.iter().filter(|s| s.2).count()),
            }
        })
        .collect();
    let second = |r: &MarginRow| r.top2_accuracy - r.top1_accuracy;
    let chosen = rows
        .iter()
        .rev()
        .find(|r| r.within >= MIN_WITHIN.min(distributions.len()) && r.top1_accuracy < FIRST_OVER_SECOND * second(r))
        .cloned();
    (rows, chosen)
}

/// Where the held-out data and the models are.
pub struct MixedEvalRequest {
    pub fer2013: PathBuf,
    pub ravdess: Vec<PathBuf>,
    pub face_weights: PathBuf,
    pub voice_weights: PathBuf,
    pub write_card: bool,
}

/// What `eval mixed` found for each model.
#[derive(Debug, Serialize)]
pub struct MixedEvalReport {
    pub face: Vec<MarginRow>,
    pub face_margin: Option<MixedMargin>,
    pub voice: Vec<MarginRow>,
    pub voice_margin: Option<MixedMargin>,
}

fn recorded(row: Option<MarginRow>, total: usize, fitted_on: &str) -> Option<MixedMargin> {
    row.map(|r| MixedMargin {
        margin: r.margin,
        fitted_on: fitted_on.to_string(),
        share_within: (r.within as f64 / total.max(1) as f64 * 10_000.0).round() / 10_000.0,
        top1_accuracy_within: (r.top1_accuracy * 10_000.0).round() / 10_000.0,
        top2_accuracy_within: (r.top2_accuracy * 10_000.0).round() / 10_000.0,
    })
}

/// Chooses both emotion models' margins on their validation data and, with
/// `write_card`, records them in the cards.
pub fn run(request: &MixedEvalRequest) -> Result<MixedEvalReport> {
    let (faces, face_truths) =
        face_emotion::heldout_distributions(&request.fer2013, &request.face_weights, Split::PublicTest)?;
    let (face, face_row) = choose_margin(&faces, &face_truths);
    let face_margin = recorded(face_row, faces.len(), &format!("FER2013 PublicTest ({} faces)", faces.len()));
    let (clips, clip_truths) = voice_emotion::heldout_distributions(&request.ravdess, &request.voice_weights, true)?;
    let (voice, voice_row) = choose_margin(&clips, &clip_truths);
    let voice_margin = recorded(voice_row, clips.len(), &format!("RAVDESS validation actors ({} clips)", clips.len()));
    if request.write_card {
        let path = card_path(&request.face_weights);
        let mut card = ModelCard::load(&path)?;
        card.mixed = face_margin.clone();
        card.save(&path)?;
        let path = card_path(&request.voice_weights);
        let mut card = VoiceModelCard::load(&path)?;
        card.mixed = voice_margin.clone();
        card.save(&path)?;
    }
    Ok(MixedEvalReport { face, face_margin, voice, voice_margin })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_margin_is_where_the_first_answer_stops_being_clearly_likelier_than_the_second() {
        // Close calls (gap 0.04) right 1 time in 4, wide ones (gap 0.6) always.
        let mut distributions = Vec::new();
        let mut truths = Vec::new();
        for i in 0..12 {
            distributions.push(vec![0.40, 0.36, 0.24]);
            truths.push(if i % 4 == 0 { 0 } else { 1 });
        }
        for _ in 0..8 {
            distributions.push(vec![0.8, 0.2, 0.0]);
            truths.push(0);
        }
        let (rows, chosen) = choose_margin(&distributions, &truths);
        assert_eq!(rows.len(), 50);
        let chosen = chosen.expect("a margin");
        // Every margin from 0.05 to 0.50 holds only the 12 close calls, whose
        // second emotion is right 3 times as often as the first.
        assert!((chosen.margin - 0.5).abs() < 1e-9, "{chosen:?}");
        assert_eq!((chosen.within, chosen.top1_accuracy, chosen.top2_accuracy), (12, 0.25, 1.0));
        // Fewer than 10 answers within any margin: too few to judge.
        let (_, few) = choose_margin(&distributions[8..], &truths[8..]);
        assert!(few.is_none());
        // All confident and right: no margin at all.
        let (_, none) = choose_margin(&[vec![0.9, 0.1]], &[0]);
        assert!(none.is_none());
    }
}
