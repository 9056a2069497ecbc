//! Probe (not served): does the speaker encoder's embedding tell speech from
//! the generated non-speech better than, or beside, the speech check?
//! `cargo run --release --example speech_embed_probe -- ../shared/datasets/ravdess ../shared/datasets/speechsex ../shared/datasets/emodb`
use std::path::PathBuf;

use emotion_ai::model::speaker::{encoder_mel_config, SpeakerEncoder, DEFAULT_SPEAKER_ENCODER};
use emotion_ai::predict::voice::window_spans;
use emotion_ai::speech::SpeechDetector;
use emotion_ai::train::logistic::fit_logistic;
use emotion_ai::train::speech_check::{negatives, trains_the_check};
use emotion_ai::train::voice_data::load_clips;
use emotion_ai::train::voice_emotion::windowing;
use tch::Tensor;

struct Scored {
    /// Per window: (speech-check probability, embedding).
    check: Vec<f32>,
    emb: Tensor,
}

fn score(enc: &SpeakerEncoder, det: &SpeechDetector, x: &[f32]) -> anyhow::Result<Scored> {
    let served = windowing(&encoder_mel_config());
    let spans = window_spans(x.len(), served);
    let check = det.check_windows(x, &spans)?.iter().map(|v| if v.is_speech { 1.0 } else { 0.0 }).collect();
    Ok(Scored { check, emb: enc.window_embeddings(x, &spans, served.window)? })
}

fn main() -> anyhow::Result<()> {
    tch::set_num_threads(1);
    let data: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let enc = SpeakerEncoder::load(std::path::Path::new(DEFAULT_SPEAKER_ENCODER))?;
    let det = SpeechDetector::load(
        std::path::Path::new("models/speech_check.json"),
        std::path::Path::new(emotion_ai::model::vad::DEFAULT_SILERO_VAD),
    )?;

    let clips = load_clips(&data, 16_000)?;
    let (mut train_speech, mut test_speech) = (Vec::new(), Vec::new());
    for c in &clips {
        let s = score(&enc, &det, &c.samples)?;
        if trains_the_check(c) {
            train_speech.push(s)
        } else {
            test_speech.push((c.label.corpus().to_string(), s))
        }
    }
    eprintln!("speech embedded");
    let train_neg: Vec<Scored> =
        negatives(3000, 16_000, 3).iter().map(|(_, x)| score(&enc, &det, x)).collect::<anyhow::Result<_>>()?;
    let test_neg: Vec<(String, Scored)> = negatives(6000, 16_000, 1_000_004)
        .iter()
        .map(|(f, x)| Ok((f.name().to_string(), score(&enc, &det, x)?)))
        .collect::<anyhow::Result<_>>()?;
    eprintln!("negatives embedded");
    let pos = Tensor::cat(&train_speech.iter().map(|s| s.emb.shallow_clone()).collect::<Vec<_>>(), 0);
    let neg = Tensor::cat(&train_neg.iter().map(|s| s.emb.shallow_clone()).collect::<Vec<_>>(), 0);
    let (np, nn) = (pos.size()[0] as usize, neg.size()[0] as usize);
    let x = Tensor::cat(&[pos, neg], 0);
    let y: Vec<f32> = (0..np + nn).map(|i| if i < np { 1.0 } else { 0.0 }).collect();
    let w: Vec<f32> = (0..np + nn).map(|i| if i < np { 0.5 / np as f32 } else { 0.5 / nn as f32 }).collect();
    for penalty in [0.1, 0.01, 0.001] {
        let fit = fit_logistic(&x, &y, &w, penalty)?;
        let p = |s: &Scored| Vec::<f32>::try_from(fit.male_probability(&s.emb)).unwrap_or_default();
        for cut in [0.5f32, 0.1, 0.02] {
            // A clip is speech if any window is (check, embedding, both).
            let verdict = |s: &Scored| {
                let e = p(s);
                let c = s.check.iter().any(|&c| c >= 0.5);
                let em = e.iter().any(|&v| v >= cut);
                let both = s.check.iter().zip(&e).any(|(&c, &v)| c >= 0.5 && v >= cut);
                [c, em, both]
            };
            let mut line = format!("penalty {penalty} cut {cut}:");
            let mut corpora: Vec<&str> = test_speech.iter().map(|(c, _)| c.as_str()).collect();
            corpora.sort();
            corpora.dedup();
            for corpus in corpora {
                let v: Vec<[bool; 3]> =
                    test_speech.iter().filter(|(c, _)| c == corpus).map(|(_, s)| verdict(s)).collect();
                let n = v.len() as f64;
                line += &format!(
                    " {corpus} acc check/emb/both {:.2}/{:.2}/{:.2}",
                    100.0 * v.iter().filter(|a| a[0]).count() as f64 / n,
                    100.0 * v.iter().filter(|a| a[1]).count() as f64 / n,
                    100.0 * v.iter().filter(|a| a[2]).count() as f64 / n
                );
            }
            let v: Vec<(String, [bool; 3])> = test_neg.iter().map(|(f, s)| (f.clone(), verdict(s))).collect();
            let n = v.len() as f64;
            line += &format!(
                " | nonspeech refused {:.2}/{:.2}/{:.2}",
                100.0 * v.iter().filter(|a| !a.1[0]).count() as f64 / n,
                100.0 * v.iter().filter(|a| !a.1[1]).count() as f64 / n,
                100.0 * v.iter().filter(|a| !a.1[2]).count() as f64 / n
            );
            let missed: Vec<&str> = v.iter().filter(|a| a.1[2]).map(|a| a.0.as_str()).collect();
            line += &format!(" both-accepted: {missed:?}");
            println!("{line}");
        }
    }
    Ok(())
}
