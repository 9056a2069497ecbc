//! Prints the speech check's statistics and verdict for each file given:
//! `cargo run --release --example speech_features -- [--card models/speech_check.json] FILE...`
//! (a development tool for looking at what the check sees).

use std::path::PathBuf;

use emotion_ai::decode::audio::decode_audio;
use emotion_ai::speech::{SpeechDetector, FEATURE_NAMES};

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut card = PathBuf::from("models/speech_check.json");
    if args.first().is_some_and(|a| a == "--card") && args.len() > 1 {
        card = PathBuf::from(args.remove(1));
        args.remove(0);
    }
    let detector = SpeechDetector::load(&card)?;
    println!("file\tprobability\t{}", FEATURE_NAMES.join("\t"));
    for path in args {
        let bytes = std::fs::read(&path)?;
        let audio = decode_audio(&bytes, detector.sample_rate(), 600.0)?;
        let verdict = detector.check(&audio.samples);
        let values = detector.analyser().features(&audio.samples).map(|f| f.values).unwrap_or_default();
        let values: Vec<String> = values.iter().map(|v| format!("{v:.3}")).collect();
        println!("{path}\t{:.3}\t{}", verdict.probability, values.join("\t"));
    }
    Ok(())
}
