//! Probe: how far `eval voice-emotion` (which reads every window of a clip)
//! is from the server (which leaves out the windows the speech check
//! refuses, and refuses a clip with none). Counts, per corpus, the test
//! clips of the voice model's split (and whole corpora with `--leave-out`
//! semantics: every clip) with a refused window, and those refused whole.
//! `cargo run --release --example speech_windows_probe -- ../shared/datasets/ravdess ../shared/datasets/speechsex ../shared/datasets/emodb`
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use emotion_ai::features::MfccConfig;
use emotion_ai::model::vad::DEFAULT_SILERO_VAD;
use emotion_ai::predict::voice::window_spans;
use emotion_ai::speech::SpeechDetector;
use emotion_ai::train::voice_data::load_clips;
use emotion_ai::train::voice_emotion::{split_by_speaker, windowing};

fn main() -> anyhow::Result<()> {
    let data: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let detector = SpeechDetector::load(Path::new("models/speech_check.json"), Path::new(DEFAULT_SILERO_VAD))?;
    let clips = load_clips(&data, 16_000)?;
    let served = windowing(&MfccConfig::voice());
    // [clips, windows, windows refused, clips with a refused window, clips refused whole]
    let count = |set: &str,
                 clips: &[emotion_ai::train::voice_data::VoiceClip],
                 table: &mut BTreeMap<String, [u64; 5]>|
     -> anyhow::Result<()> {
        for c in clips {
            let spans = window_spans(c.samples.len(), served);
            let verdicts = detector.check_windows(&c.samples, &spans)?;
            let refused = verdicts.iter().filter(|v| !v.is_speech).count() as u64;
            let row = table.entry(format!("{set} {}", c.label.corpus())).or_default();
            row[0] += 1;
            row[1] += verdicts.len() as u64;
            row[2] += refused;
            row[3] += u64::from(refused > 0);
            row[4] += u64::from(refused == verdicts.len() as u64);
        }
        Ok(())
    };
    let mut table = BTreeMap::new();
    count("all", &clips, &mut table)?;
    let split = split_by_speaker(clips, &[]);
    count("held-out", &split.test, &mut table)?;
    println!("set corpus: clips, windows, windows refused, clips with a refused window, clips refused whole");
    for (k, v) in table {
        println!("{k}: {v:?}");
    }
    Ok(())
}
