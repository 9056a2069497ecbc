//! How often a speech-check card accepts short stretches of real speech: the
//! first 0.75, 1, 1.5 and 2 s of each clip's speech with the pause before it
//! cut off (what a user who trims a recording to a word or two uploads), for
//! every clip the check never trained on (all of EmoDB, the other corpora's
//! speakers outside its training part). Whole clips are in the card's
//! `speech_accepted`.
//!
//! `cargo run --release --example speech_short -- models/speech_check.json ../shared/datasets/emodb ../shared/datasets/ravdess ../shared/datasets/speechsex`

use std::path::PathBuf;

use anyhow::{Context, Result};
use emotion_ai::speech::SpeechDetector;
use emotion_ai::train::speech_check::openings_accepted;
use emotion_ai::train::voice_data::load_clips;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let card = args.first().context("usage: speech_short CARD DATA...")?;
    let detector =
        SpeechDetector::load(&PathBuf::from(card), std::path::Path::new(emotion_ai::model::vad::DEFAULT_SILERO_VAD))?;
    let data: Vec<PathBuf> = args[1..].iter().map(PathBuf::from).collect();
    let clips = load_clips(&data, detector.sample_rate())?;
    let lengths = [0.75, 1.0, 1.5, 2.0];
    println!("corpus: accepted share of the first 0.75 / 1 / 1.5 / 2 s of speech");
    for (corpus, cells) in openings_accepted(&detector, &clips, &lengths)? {
        let shares: Vec<String> =
            cells.iter().map(|[a, n]| format!("{:.2}% ({a}/{n})", 100.0 * *a as f64 / *n as f64)).collect();
        println!("{corpus}: {}", shares.join(" | "));
    }
    Ok(())
}
