//! How often the speech check accepts real speech under background sound:
//! every clip the check never trained on (all of EmoDB, the other corpora's
//! speakers outside its training part), mixed with generated noise, noise
//! that rises and falls, or music at a signal-to-noise ratio (as
//! `train speech-check --background-copies` mixes them), then judged as the
//! card judges a clip (speech if any served window is).
//!
//! `cargo run --release --example speech_noisy -- models/speech_check.json ../shared/datasets/emodb ../shared/datasets/ravdess ../shared/datasets/speechsex`

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context, Result};
use emotion_ai::speech::SpeechDetector;
use emotion_ai::train::nonspeech::Family;
use emotion_ai::train::speech_check::{any_window_speech, trains_the_check, with_background};
use emotion_ai::train::voice_data::load_clips;
use rand::rngs::SmallRng;
use rand::SeedableRng;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let card = args.first().context("usage: speech_noisy CARD DATA...")?;
    let detector =
        SpeechDetector::load(&PathBuf::from(card), std::path::Path::new(emotion_ai::model::vad::DEFAULT_SILERO_VAD))?;
    let rate = detector.sample_rate();
    let data: Vec<PathBuf> = args[1..].iter().map(PathBuf::from).collect();
    let clips: Vec<_> = load_clips(&data, rate)?.into_iter().filter(|c| !trains_the_check(c)).collect();
    let is_speech = |x: &[f32]| any_window_speech(&detector, x, rate);
    let conditions: Vec<(Family, f32)> = [Family::Noise, Family::ModulatedNoise, Family::Music]
        .into_iter()
        .flat_map(|f| [20.0, 10.0, 5.0].map(|snr| (f, snr)))
        .collect();
    let mut rng = SmallRng::seed_from_u64(20261207);
    // corpus -> [clean, each condition] as [accepted, clips].
    let mut table: BTreeMap<String, Vec<[u64; 2]>> = BTreeMap::new();
    for clip in &clips {
        let cells = table.entry(clip.label.corpus().to_string()).or_insert_with(|| vec![[0, 0]; conditions.len() + 1]);
        cells[0][0] += u64::from(is_speech(&clip.samples)?);
        cells[0][1] += 1;
        for (cell, &(family, snr)) in cells[1..].iter_mut().zip(&conditions) {
            cell[0] += u64::from(is_speech(&with_background(&clip.samples, family, snr, rate, &mut rng))?);
            cell[1] += 1;
        }
    }
    let names: Vec<String> = conditions.iter().map(|(f, snr)| format!("{} {snr} dB", f.name())).collect();
    println!("| corpus | clean | {} |", names.join(" | "));
    println!("|---|---|{}", "---|".repeat(names.len()));
    for (corpus, cells) in table {
        let shares: Vec<String> = cells.iter().map(|[a, n]| format!("{:.2}%", 100.0 * *a as f64 / *n as f64)).collect();
        println!("| {corpus} ({} clips) | {} |", cells[0][1], shares.join(" | "));
    }
    Ok(())
}
