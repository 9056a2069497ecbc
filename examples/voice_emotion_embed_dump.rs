//! Probe (not served): dumps, per clip with an emotion, the speaker
//! encoder's clip embedding (the served windows' RMS-weighted mean, as the
//! voice sex head reads them) beside the emotion marginals of two voice
//! models, so that a head on the embedding can be fitted and blended
//! outside the crate. One TSV row per clip: corpus, speaker, split part,
//! emotion, sex, the first model's 7 emotions, the second's, 256 numbers.
//!
//! `cargo run --release --example voice_emotion_embed_dump -- OUT.tsv MODEL_A MODEL_B DATA...`
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use emotion_ai::model::speaker::{SpeakerEncoder, DEFAULT_SPEAKER_ENCODER};
use emotion_ai::model::voice::LoadedVoiceModel;
use emotion_ai::predict::voice::{aggregate, emotion_marginal, WindowPrediction};
use emotion_ai::train::voice_data::load_clips;
use emotion_ai::train::voice_emotion::{predict_clips, speaker_part};
use emotion_ai::train::voice_sex::embed_windows;

fn main() -> anyhow::Result<()> {
    tch::set_num_threads(2);
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() >= 4, "usage: OUT.tsv MODEL_A MODEL_B DATA...");
    let out = PathBuf::from(&args[0]);
    let models = [LoadedVoiceModel::load(Path::new(&args[1]))?, LoadedVoiceModel::load(Path::new(&args[2]))?];
    let data: Vec<PathBuf> = args[3..].iter().map(PathBuf::from).collect();
    let extractor = models[0].card.input.extractor();
    let clips: Vec<_> = load_clips(&data, extractor.mfcc_config().sample_rate)?
        .into_iter()
        .filter(|c| c.label.emotion.is_some())
        .collect();
    eprintln!("{} clips with an emotion", clips.len());
    let emotions: Vec<Vec<Vec<f32>>> = models
        .iter()
        .map(|m| {
            let p = predict_clips(&m.frozen, &m.card.input.extractor(), None, &clips)?;
            Ok(p.iter().map(|j| emotion_marginal(j)).collect())
        })
        .collect::<anyhow::Result<_>>()?;
    eprintln!("networks done");
    let encoder = SpeakerEncoder::load(Path::new(DEFAULT_SPEAKER_ENCODER))?;
    let emb = embed_windows(&encoder, None, &clips)?;
    let rows: Vec<Vec<f32>> = Vec::<Vec<f32>>::try_from(&emb.embeddings).context("reading embeddings")?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(&out)?);
    for (i, clip) in clips.iter().enumerate() {
        // The clip's windows, weighted as the server weighs them.
        let windows: Vec<WindowPrediction> = emb
            .clip
            .iter()
            .enumerate()
            .filter(|(_, &c)| c == i)
            .map(|(w, _)| WindowPrediction { start: 0, end: 0, rms: emb.rms[w], joint: rows[w].clone() })
            .collect();
        let mean = aggregate(&windows);
        let part = speaker_part(&clip.label.speaker).name();
        let mut line = format!(
            "{}\t{}\t{}\t{}\t{}",
            clip.label.corpus(),
            clip.label.speaker,
            part,
            clip.label.emotion.unwrap_or(99),
            clip.label.sex
        );
        for v in emotions[0][i].iter().chain(&emotions[1][i]).chain(&mean) {
            line.push_str(&format!("\t{v}"));
        }
        writeln!(file, "{line}")?;
    }
    eprintln!("wrote {}", out.display());
    Ok(())
}
