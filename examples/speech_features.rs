//! Prints the speech check's statistics and verdict for each file given:
//! `cargo run --release --example speech_features -- [--card models/speech_check.json] FILE...`
//! (a development tool for looking at what the check sees).

use std::path::PathBuf;

use emotion_ai::decode::audio::decode_audio;
use emotion_ai::model::vad::DEFAULT_SILERO_VAD;
use emotion_ai::speech::SpeechDetector;

fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let mut card = PathBuf::from("models/speech_check.json");
    if args.first().is_some_and(|a| a == "--card") && args.len() > 1 {
        card = PathBuf::from(args.remove(1));
        args.remove(0);
    }
    let detector = SpeechDetector::load(&card, std::path::Path::new(DEFAULT_SILERO_VAD))?;
    println!("file\tprobability\t{}", detector.featurizer().names().join("\t"));
    for path in args {
        let bytes = std::fs::read(&path)?;
        let audio = decode_audio(&bytes, detector.sample_rate(), 600.0)?;
        let verdict = detector.check(&audio.samples)?;
        let values = detector.featurizer().features(&audio.samples)?.unwrap_or_default();
        let values: Vec<String> = values.iter().map(|v| format!("{v:.3}")).collect();
        println!("{path}\t{:.3}\t{}", verdict.probability, values.join("\t"));
    }
    Ok(())
}
