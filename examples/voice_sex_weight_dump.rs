//! Probe (not served): dumps, per clip, the voice networks' sex marginal and
//! the voice sex head's probability of male, each the clip's RMS-weighted
//! mean over the served windows, so that the head's weight in the served
//! blend can be studied outside the crate (the blend is linear, so the
//! clip's blend is the blend of these two). One TSV row per clip: corpus,
//! source, speaker, split part, sex, networks' male, head's male.
//!
//! `cargo run --release --example voice_sex_weight_dump -- OUT.tsv NETWORKS HEAD DATA...`
use std::io::Write;
use std::path::{Path, PathBuf};

use emotion_ai::model::speaker::{SpeakerSexModel, DEFAULT_SPEAKER_ENCODER};
use emotion_ai::model::voice::LoadedVoiceModel;
use emotion_ai::predict::voice::{aggregate, predict_clip, sex_marginal, WindowPrediction};
use emotion_ai::train::voice_data::load_clips;
use emotion_ai::train::voice_emotion::{speaker_part, windowing};

fn main() -> anyhow::Result<()> {
    tch::set_num_threads(1);
    let args: Vec<String> = std::env::args().skip(1).collect();
    anyhow::ensure!(args.len() >= 4, "usage: OUT.tsv NETWORKS HEAD DATA...");
    let model = LoadedVoiceModel::load(Path::new(&args[1]))?;
    let head = SpeakerSexModel::load(Path::new(&args[2]), Path::new(DEFAULT_SPEAKER_ENCODER))?;
    let data: Vec<PathBuf> = args[3..].iter().map(PathBuf::from).collect();
    let extractor = model.card.input.extractor();
    let served = windowing(extractor.mfcc_config());
    let clips = load_clips(&data, extractor.mfcc_config().sample_rate)?;
    let mut file = std::io::BufWriter::new(std::fs::File::create(&args[0])?);
    for clip in &clips {
        let windows = predict_clip(&model.frozen, &extractor, None, &clip.samples, served)?.windows;
        let spans: Vec<(usize, usize)> = windows.iter().map(|w| (w.start, w.end)).collect();
        let heads = head.predict_windows(&clip.samples, &spans, served.window)?;
        let as_sex = |joint: Vec<f32>, w: &WindowPrediction| WindowPrediction { joint, ..w.clone() };
        let network = aggregate(&windows.iter().map(|w| as_sex(sex_marginal(&w.joint), w)).collect::<Vec<_>>());
        let headed = aggregate(&windows.iter().zip(&heads).map(|(w, h)| as_sex(h.to_vec(), w)).collect::<Vec<_>>());
        let part = speaker_part(&clip.label.speaker).name();
        let l = &clip.label;
        writeln!(
            file,
            "{}\t{}\t{}\t{part}\t{}\t{}\t{}",
            l.corpus(),
            l.source(),
            l.speaker,
            l.sex,
            network[1],
            headed[1]
        )?;
    }
    eprintln!("wrote {} clips to {}", clips.len(), args[0]);
    Ok(())
}
