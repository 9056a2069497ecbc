//! Fitting and measuring the voice sex head ([`crate::model::speaker`]): a
//! logistic regression on the speaker encoder's embedding of each served
//! window.
//!
//! The windows are the server's (3 s every 1 s, a short clip repeated to fill
//! one), each embedded by the encoder; a clip's answer is the windows'
//! RMS-weighted mean, pauses left out ([`crate::predict::voice::aggregate`]).
//! The fit weighs every corpus x sex cell alike, so that neither a corpus's
//! size nor its share of women tilts the boundary. Speakers are split as
//! for the voice network ([`super::voice_emotion::speaker_part`]); the card
//! records held-out speakers per corpus and, for every corpus, a fit on the
//! others measured on all of it (a corpus never heard), each also per source
//! of a corpus gathered from several (speechsex's read sentences and spoken
//! digits fare very differently).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use anyhow::{bail, Result};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;
use tch::{Device, Tensor};

use super::logistic::{fit_logistic, LogisticFit};
use super::metrics::{round4, ConfusionMatrix};
use super::voice_data::{load_clips, VoiceClip, VoiceLabel};
use super::voice_emotion::{corpora, flag_if, split_by_speaker, windowing, SpeakerSplit};
use crate::features::pitch::{PitchTracker, PITCH_SUMMARY_SIZE};
use crate::model::speaker::{
    encoder_mel_config, encoder_pitch_tracker, head_input, head_input_size, SpeakerEncoder, SpeakerSexCard,
    SpeakerSexHead, EMBEDDING_SIZE,
};
use crate::model::voice::SEXES;
use crate::predict::voice::{aggregate, rms, window_spans, WindowPrediction};

/// L2 penalties tried (on the mean loss), strongest first; the one with the
/// best validation accuracy is kept, the strongest among ties.
pub const PENALTIES: [f64; 5] = [0.3, 0.1, 0.03, 0.01, 0.003];

/// What `train voice-sex` needs.
#[derive(Debug, Clone)]
pub struct VoiceSexRequest {
    pub data: Vec<PathBuf>,
    pub encoder: PathBuf,
    /// Share of the head in the served sex (the rest: the voice network's).
    pub head_weight: f32,
    /// Where the head's weights go (the card beside them).
    pub export: PathBuf,
    /// Short excerpts of each fitted clip added to the fit, each embedded as
    /// a short clip is served (see [`short_excerpts`]); 0: none.
    pub short_copies: usize,
    /// Seed of the excerpts' lengths and positions.
    pub seed: u64,
    /// The head reads each window's pitch summary beside the embedding
    /// ([`crate::model::speaker::head_input`]).
    pub pitch_summary: bool,
}

/// Shortest and longest excerpt of [`short_excerpts`], in seconds: the span
/// of spoken-digit clips (AudioMNIST_AZ's are 1.2-1.9 s) and of short
/// replies, which the server repeats to fill a window.
pub const EXCERPT_SECONDS: (f64, f64) = (0.8, 2.0);

/// Every served window of every clip, embedded.
pub struct WindowEmbeddings {
    /// `[windows, head input]`: the embedding, and the pitch summary if asked.
    pub embeddings: Tensor,
    /// The clip (index into the clips) of each window.
    pub clip: Vec<usize>,
    /// Each window's RMS level (for the clip's weighted mean).
    pub rms: Vec<f32>,
}

/// Describes the served windows of `clips` as the server does
/// ([`head_input`]: the embedding, and with a tracker the pitch summary).
pub fn embed_windows(
    encoder: &SpeakerEncoder,
    pitch: Option<&PitchTracker>,
    clips: &[VoiceClip],
) -> Result<WindowEmbeddings> {
    // The served windowing (3 s every 1 s) at the encoder's rate.
    let served = windowing(&encoder_mel_config());
    let (mut parts, mut clip_of, mut levels) = (Vec::new(), Vec::new(), Vec::new());
    for (i, c) in clips.iter().enumerate() {
        let spans = window_spans(c.samples.len(), served);
        for &(start, end) in &spans {
            levels.push(rms(&c.samples[start..end]));
            clip_of.push(i);
        }
        parts.push(head_input(encoder, pitch, &c.samples, &spans, served.window)?);
    }
    Ok(WindowEmbeddings { embeddings: Tensor::cat(&parts, 0), clip: clip_of, rms: levels })
}

/// `copies` random excerpts ([`EXCERPT_SECONDS`] long, at random places)
/// of each of the clips `of` (indices into `clips`), each embedded as the
/// server embeds a clip that short: repeated to fill one window. A head
/// fitted on whole windows alone never sees that form, yet every clip of
/// a corpus of single words arrives in it. Fit-only rows: never scored.
pub fn short_excerpts(
    encoder: &SpeakerEncoder,
    pitch: Option<&PitchTracker>,
    clips: &[VoiceClip],
    of: &[usize],
    copies: usize,
    seed: u64,
) -> Result<WindowEmbeddings> {
    let served = windowing(&encoder_mel_config());
    let rate = f64::from(encoder_mel_config().sample_rate);
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut parts, mut clip_of, mut levels) = (Vec::new(), Vec::new(), Vec::new());
    for &i in of {
        let samples = &clips[i].samples;
        for _ in 0..copies {
            let wanted = (rng.random_range(EXCERPT_SECONDS.0..=EXCERPT_SECONDS.1) * rate) as usize;
            let len = wanted.min(samples.len());
            if len == 0 {
                continue;
            }
            let start = rng.random_range(0..=samples.len() - len);
            let excerpt = &samples[start..start + len];
            parts.push(head_input(encoder, pitch, excerpt, &[(0, len)], served.window)?);
            levels.push(rms(excerpt));
            clip_of.push(i);
        }
    }
    let embeddings = if parts.is_empty() {
        Tensor::zeros([0, head_input_size(pitch.is_some())], (tch::Kind::Float, Device::Cpu))
    } else {
        Tensor::cat(&parts, 0)
    };
    Ok(WindowEmbeddings { embeddings, clip: clip_of, rms: levels })
}

/// Weights giving every corpus x sex cell the same total, for windows
/// whose clips (indices into `clips`) are `windows`.
fn cell_weights(windows: &[usize], clips: &[VoiceClip]) -> Vec<f32> {
    let cell = |w: &usize| (clips[*w].label.corpus().to_string(), clips[*w].label.sex);
    let mut counts = HashMap::new();
    for w in windows {
        *counts.entry(cell(w)).or_insert(0usize) += 1;
    }
    windows.iter().map(|w| 1.0 / counts[&cell(w)] as f32).collect()
}

/// Clip-level `[female, male]` of each clip whose windows are `windows`
/// (grouped by clip, in clip order), from the windows' probabilities of male.
fn clip_probabilities(emb: &WindowEmbeddings, windows: &[usize], male: &[f32]) -> Vec<(usize, [f32; 2])> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < windows.len() {
        let clip = emb.clip[windows[i]];
        let mut group = Vec::new();
        while i < windows.len() && emb.clip[windows[i]] == clip {
            let w = windows[i];
            group.push(WindowPrediction { start: 0, end: 0, rms: emb.rms[w], joint: vec![1.0 - male[i], male[i]] });
            i += 1;
        }
        let p = aggregate(&group);
        out.push((clip, [p[0], p[1]]));
    }
    out
}

/// Sex accuracy and the recall of each sex over clips.
#[derive(Debug, Clone, Serialize)]
pub struct SexScore {
    pub clips: usize,
    pub speakers: usize,
    pub accuracy: f64,
    pub female_recall: f64,
    pub male_recall: f64,
}

fn score(clips: &[VoiceClip], predictions: &[(usize, [f32; 2])]) -> SexScore {
    let probabilities: Vec<Vec<f32>> = predictions.iter().map(|(_, p)| p.to_vec()).collect();
    let truth: Vec<usize> = predictions.iter().map(|(c, _)| clips[*c].label.sex).collect();
    let matrix = ConfusionMatrix::from_distributions(&SEXES, &probabilities, &truth);
    let recall = matrix.recall();
    let speakers: HashSet<&str> = predictions.iter().map(|(c, _)| clips[*c].label.speaker.as_str()).collect();
    SexScore {
        clips: predictions.len(),
        speakers: speakers.len(),
        accuracy: round4(matrix.accuracy()),
        female_recall: round4(recall[0]),
        male_recall: round4(recall[1]),
    }
}

/// The windows (indices, in order) of the clips `of` (indices into the
/// clips) and their embeddings.
fn windows_of(emb: &WindowEmbeddings, of: &[usize]) -> (Vec<usize>, Tensor) {
    let set: HashSet<usize> = of.iter().copied().collect();
    let windows: Vec<usize> = (0..emb.clip.len()).filter(|w| set.contains(&emb.clip[*w])).collect();
    let index: Vec<i64> = windows.iter().map(|&w| w as i64).collect();
    let x = emb.embeddings.index_select(0, &Tensor::from_slice(&index));
    (windows, x)
}

/// Fits on the windows of the clips `fit_clips` (indices into `clips`) and
/// on their fit-only `extra` rows ([`short_excerpts`]).
fn fit_on(
    emb: &WindowEmbeddings,
    extra: &WindowEmbeddings,
    clips: &[VoiceClip],
    fit_clips: &[usize],
    penalty: f64,
) -> Result<LogisticFit> {
    let (windows, x) = windows_of(emb, fit_clips);
    let (extra_rows, extra_x) = windows_of(extra, fit_clips);
    let x = Tensor::cat(&[x, extra_x], 0);
    let owners: Vec<usize> =
        windows.iter().map(|&w| emb.clip[w]).chain(extra_rows.iter().map(|&w| extra.clip[w])).collect();
    let y: Vec<f32> = owners.iter().map(|&c| clips[c].label.sex as f32).collect();
    fit_logistic(&x, &y, &cell_weights(&owners, clips), penalty)
}

/// Scores `fit` on the clips `test_clips`, per corpus, and per source
/// where a corpus has several ([`VoiceLabel::source`]).
fn score_by_corpus(
    fit: &LogisticFit,
    emb: &WindowEmbeddings,
    clips: &[VoiceClip],
    test_clips: &[usize],
) -> Result<Scores> {
    let (windows, x) = windows_of(emb, test_clips);
    if windows.is_empty() {
        return Ok(Scores::default());
    }
    let male = Vec::<f32>::try_from(fit.male_probability(&x))?;
    let predictions = clip_probabilities(emb, &windows, &male);
    let by = |key: fn(&VoiceLabel) -> &str| -> Vec<(String, SexScore)> {
        let mut names: Vec<&str> = test_clips.iter().map(|&c| key(&clips[c].label)).collect();
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .map(|name| {
                let mine: Vec<(usize, [f32; 2])> =
                    predictions.iter().filter(|(c, _)| key(&clips[*c].label) == name).cloned().collect();
                (name.to_string(), score(clips, &mine))
            })
            .collect()
    };
    let corpora = by(VoiceLabel::corpus);
    let sources =
        by(VoiceLabel::source).into_iter().filter(|(name, _)| !corpora.iter().any(|(c, _)| c == name)).collect();
    Ok(Scores { corpora, sources })
}

/// [`SexScore`]s per corpus and per source of a corpus gathered from
/// several.
#[derive(Default)]
struct Scores {
    corpora: Vec<(String, SexScore)>,
    sources: Vec<(String, SexScore)>,
}

/// Fits the head on the training speakers of every corpus not left out,
/// measures it (held-out speakers; each corpus never heard) and writes the
/// weights and card.
pub fn run_train(request: &VoiceSexRequest) -> Result<SpeakerSexCard> {
    let encoder = SpeakerEncoder::load(&request.encoder)?;
    let SpeakerSplit { train, validation, test } = split_by_speaker(load_clips(&request.data, 16_000)?, &[]);
    let (n_train, n_validation) = (train.len(), validation.len());
    let seen = corpora(&train);
    let clips: Vec<VoiceClip> = train.into_iter().chain(validation).chain(test).collect();
    let train_idx: Vec<usize> = (0..n_train).collect();
    let validation_idx: Vec<usize> = (n_train..n_train + n_validation).collect();
    let test_idx: Vec<usize> = (n_train + n_validation..clips.len()).collect();
    if train_idx.is_empty() {
        bail!("no training speakers under {:?}", request.data);
    }
    tracing::info!(clips = clips.len(), "embedding every served window with the speaker encoder");
    let tracker = request.pitch_summary.then(encoder_pitch_tracker);
    let emb = embed_windows(&encoder, tracker.as_ref(), &clips)?;
    let extra = short_excerpts(&encoder, tracker.as_ref(), &clips, &train_idx, request.short_copies, request.seed)?;

    // The penalty: the best mean validation accuracy over corpora, the
    // strongest among ties.
    let mut chosen: Option<(f64, f64, LogisticFit)> = None;
    let mut validation_scores = serde_json::Map::new();
    for &penalty in &PENALTIES {
        let fit = fit_on(&emb, &extra, &clips, &train_idx, penalty)?;
        let scores = score_by_corpus(&fit, &emb, &clips, &validation_idx)?.corpora;
        let mean = scores.iter().map(|(_, s)| s.accuracy).sum::<f64>() / scores.len().max(1) as f64;
        validation_scores.insert(
            format!("{penalty}"),
            json!(scores.iter().map(|(c, s)| (c.clone(), json!(s.accuracy))).collect::<serde_json::Map<_, _>>()),
        );
        if chosen.as_ref().is_none_or(|(_, best, _)| mean > best + 1e-9) {
            chosen = Some((penalty, mean, fit));
        }
    }
    let Some((penalty, _, fit)) = chosen else { bail!("no penalty to try") };
    let heldout = score_by_corpus(&fit, &emb, &clips, &test_idx)?;

    // Each corpus never heard: fitted on the training speakers of the others.
    let (mut never_heard, mut never_heard_sources) = (serde_json::Map::new(), serde_json::Map::new());
    if seen.len() > 1 {
        for corpus in &seen {
            let others: Vec<usize> = train_idx.iter().copied().filter(|&i| clips[i].label.corpus() != corpus).collect();
            let all: Vec<usize> = (0..clips.len()).filter(|&i| clips[i].label.corpus() == corpus).collect();
            let fit = fit_on(&emb, &extra, &clips, &others, penalty)?;
            let scores = score_by_corpus(&fit, &emb, &clips, &all)?;
            never_heard.extend(scores.corpora.into_iter().map(|(c, s)| (c, json!(s))));
            never_heard_sources.extend(scores.sources.into_iter().map(|(c, s)| (c, json!(s))));
        }
    }

    let vs = tch::nn::VarStore::new(Device::Cpu);
    let mut head = SpeakerSexHead::new(&vs.root(), head_input_size(request.pitch_summary));
    fit.write_to(&mut head);
    if let Some(dir) = request.export.parent() {
        std::fs::create_dir_all(dir)?;
    }
    vs.save(&request.export)?;
    let data = request.data.iter().map(|d| d.display().to_string()).collect::<Vec<_>>();
    let card = SpeakerSexCard {
        name: "voice_sex".into(),
        description: format!(
            "Logistic regression on the standardised {EMBEDDING_SIZE}-number embedding of Resemblyzer's speaker encoder{}, one per served window (3 s); a clip's answer is the windows' RMS-weighted mean. The metrics here are the head's alone; the served sex (head_weight of the head, the rest the voice networks' own) is measured in voice_emotion.json",
            if request.pitch_summary {
                format!(" and {PITCH_SUMMARY_SIZE} pitch statistics of the window (quartiles and median of log2(F0/200 Hz) over voiced frames, voiced share)")
            } else {
                String::new()
            }
        ),
        classes: SEXES.iter().map(|s| s.to_string()).collect(),
        encoder: "Resemblyzer 0.1.4 pretrained.pt (PyPI, Apache-2.0), converted by scripts/setup.sh".into(),
        trained_on: format!(
            "the training speakers of {} ({} windows of {} clips{}); every corpus x sex cell weighted alike; L2 penalty {penalty} (of {PENALTIES:?}, by the validation speakers' mean accuracy)",
            seen.join(", "),
            emb.clip.iter().filter(|&&c| c < n_train).count(),
            train_idx.len(),
            if extra.clip.is_empty() {
                String::new()
            } else {
                format!(
                    ", and {} excerpts of {}-{} s, {} a clip, each repeated to fill a window as a short clip is served",
                    extra.clip.len(),
                    EXCERPT_SECONDS.0,
                    EXCERPT_SECONDS.1,
                    request.short_copies
                )
            }
        ),
        head_weight: request.head_weight,
        pitch_summary: request.pitch_summary,
        train_command: format!(
            "emotion-ai train voice-sex {}{}{}{}{}",
            data.iter().map(|d| format!("--data {d}")).collect::<Vec<_>>().join(" "),
            flag_if(request.head_weight != 1.0, "head-weight", request.head_weight),
            flag_if(request.short_copies > 0, "short-copies", request.short_copies),
            flag_if(request.short_copies > 0, "seed", request.seed),
            if request.pitch_summary { " --pitch-summary" } else { "" },
        ),
        metrics: json!({
            "penalty": penalty,
            "validation_accuracy_by_penalty": validation_scores,
            "heldout_speakers": heldout.corpora.into_iter().map(|(k, v)| (k, json!(v))).collect::<serde_json::Map<_, _>>(),
            "heldout_speakers_by_source": heldout.sources.into_iter().map(|(k, v)| (k, json!(v))).collect::<serde_json::Map<_, _>>(),
            "never_heard": never_heard,
            "never_heard_by_source": never_heard_sources,
        }),
    };
    std::fs::write(crate::model::card_path(&request.export), serde_json::to_string_pretty(&card)? + "\n")?;
    Ok(card)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_weigh_alike() {
        let clip = |speaker: &str, sex| VoiceClip {
            samples: vec![],
            label: VoiceLabel { emotion: None, sex, speaker: speaker.into() },
            path: PathBuf::new(),
        };
        let clips = vec![clip("ravdess:01", 1), clip("ravdess:02", 0), clip("emodb:03", 1)];
        let w = cell_weights(&[0, 0, 1, 2], &clips);
        assert_eq!(w, vec![0.5, 0.5, 1.0, 1.0]);
    }
}
