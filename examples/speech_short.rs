//! How often a speech-check card accepts short stretches of real speech: the
//! first 0.75, 1, 1.5 and 2 s of each clip's speech with the pause before it
//! cut off (what a user who trims a recording to a word or two uploads), and
//! the whole clip, for every clip the check never trained on (all of EmoDB,
//! the held-out speakers of the other corpora).
//!
//! `cargo run --release --example speech_short -- models/speech_check.json ../shared/datasets/emodb ../shared/datasets/ravdess ../shared/datasets/speechsex`

use std::path::PathBuf;

use anyhow::Result;
use emotion_ai::speech::SpeechDetector;
use emotion_ai::train::speech_check::speech_opening;
use emotion_ai::train::voice_data::load_clips;
use emotion_ai::train::voice_emotion::{speaker_part, SplitPart};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let detector = SpeechDetector::load(&PathBuf::from(&args[0]))?;
    let data: Vec<PathBuf> = args[1..].iter().map(PathBuf::from).collect();
    let rate = detector.sample_rate() as usize;
    let clips = load_clips(&data, rate as u32)?;
    let lengths = [0.75f32, 1.0, 1.5, 2.0, 0.0];
    let mut table: std::collections::BTreeMap<String, Vec<(usize, usize)>> = Default::default();
    // Clips the check never trained on: EmoDB, and the other corpora's held-out speakers.
    for clip in
        clips.iter().filter(|c| c.label.corpus() == "emodb" || speaker_part(&c.label.speaker) != SplitPart::Train)
    {
        let s = &clip.samples;
        let row = table.entry(clip.label.corpus().to_string()).or_insert_with(|| vec![(0, 0); lengths.len()]);
        for (i, &secs) in lengths.iter().enumerate() {
            let piece = if secs == 0.0 { &s[..] } else { speech_opening(s, rate as u32, f64::from(secs)) };
            let v = detector.check(piece);
            row[i].0 += usize::from(v.is_speech);
            row[i].1 += 1;
        }
    }
    println!("corpus: accepted share for the first 0.75 / 1 / 1.5 / 2 s of speech / whole clip");
    for (corpus, row) in table {
        let cells: Vec<String> =
            row.iter().map(|(a, n)| format!("{:.2}% ({}/{})", 100.0 * *a as f64 / *n as f64, a, n)).collect();
        println!("{corpus}: {}", cells.join(" | "));
    }
    Ok(())
}
