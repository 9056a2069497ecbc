//! The `train speech-check` command: fits the speech check's small network
//! ([`crate::speech::SpeechDetector`]) and its threshold, and measures it.
//!
//! - **Speech**: every served window (3 s every 1 s, the clip itself when
//!   shorter) of the clips of the *training* speakers of RAVDESS and
//!   speechsex (the voice model's split, [`speaker_part`]), each once as
//!   recorded and once through a random channel (noise, colour, level).
//!   EmoDB never trains the check: it measures it, with the held-out
//!   speakers of the other corpora.
//! - **Not speech**: clips of every [`Family`] of [`super::nonspeech`], from
//!   one seed; the reported refusal rate comes from a second seed's clips.
//!
//! Besides whole clips, the card reports how often the first 1 and 1.5 s of
//! speech of every untrained clip, the pause before it cut off, are accepted
//! ([`speech_opening`]): a user may upload one trimmed word or phrase.
//!
//! The threshold is the lowest probability above every training
//! non-speech clip, unless that would refuse more than 0.5% of the training
//! speech windows (then the 0.5% point, and the card says so).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::json;
use tch::nn::{self, Module, OptimizerConfig};
use tch::{Device, Tensor};

use super::nonspeech::{channel, generate, Family};
use super::voice_data::{load_clips, VoiceClip};
use super::voice_emotion::{speaker_part, SplitPart, HOP_SECONDS, WINDOW_SECONDS};
use crate::model::vad::SileroVad;
use crate::predict::in_two_halves;
use crate::predict::voice::{rms, window_starts};
use crate::speech::{SpeechCheckCard, SpeechDetector, SpeechFeaturizer, VadGate, FEATURE_NAMES};

/// Generated non-speech clips trained on unless the request says otherwise.
pub const DEFAULT_NEGATIVES: usize = 6000;
/// Units of the hidden layer unless the request says otherwise.
pub const DEFAULT_HIDDEN: usize = 24;
/// Corpora whose training speakers train the check.
const TRAINING_CORPORA: [&str; 2] = ["ravdess", "speechsex"];
/// Lengths of the trimmed openings of speech the card measures.
pub const SHORT_SPEECH_SECONDS: [f64; 2] = [1.0, 1.5];
/// Generated non-speech clips the card's refusal rate is measured on (from
/// a second seed), however many the check trained on.
pub const MEASURED_NEGATIVES: usize = 6000;
/// Largest share of training speech windows the threshold may refuse unless
/// the request says otherwise.
pub const MAX_SPEECH_REFUSED: f64 = 0.005;

/// What to train on and where to write the card.
pub struct SpeechCheckRequest {
    pub data: Vec<PathBuf>,
    pub export: PathBuf,
    /// Generated non-speech clips for training (and as many again, from
    /// another seed, for the measurement).
    pub negatives: usize,
    pub seed: u64,
    /// Units of the network's hidden layer.
    pub hidden: usize,
    /// Silero VAD's weights, whose statistics the check reads beside its
    /// own; `None`: its own statistics alone.
    pub vad: Option<PathBuf>,
    /// With `vad`: the network reads its own statistics alone, and the VAD
    /// only speaks through a [`VadGate`] fitted beside it
    /// ([`fit_vad_gate`]).
    pub vad_gate: bool,
    /// With `vad_gate`: this many more generated non-speech clips (of every
    /// family, from a seed of their own) that no window may pass the gate
    /// through, beside the training clips.
    pub gate_negatives: usize,
    /// Seed of the generated non-speech the card's refusal rate is measured
    /// on; `None`: the second seed (the training seed + 1,000,003).
    pub measure_seed: Option<u64>,
    /// Largest share of training speech windows the threshold may refuse
    /// ([`MAX_SPEECH_REFUSED`] unless asked; 1: always just above every
    /// training non-speech clip).
    pub max_speech_refused: f64,
    /// This many more copies of each training speech window, each with
    /// generated music, a melody, noise or fluctuating noise under it at
    /// [`BACKGROUND_SNR_DB`] (from a random stream of their own, so the rest
    /// of the training data stay as they were): speech recorded with sound
    /// behind it, which the check otherwise never sees. 0: none.
    pub background_copies: usize,
}

/// The range of signal-to-noise ratios (dB) of [`SpeechCheckRequest::background_copies`].
pub const BACKGROUND_SNR_DB: (f32, f32) = (5.0, 20.0);

/// `window` with `family`'s generated sound under it at `snr_db` (the sound
/// repeated to the window's length; an all-silent window stays as it is).
pub fn with_background(window: &[f32], family: Family, snr_db: f32, rate: u32, rng: &mut SmallRng) -> Vec<f32> {
    let mut sound = Vec::with_capacity(window.len());
    // Parts of at least 50 ms; a family that only makes shorter ones (a few
    // samples) is taken as it comes after enough tries, so the loop ends.
    let mut tries = 0usize;
    while sound.len() < window.len() {
        let part = generate(family, rate, rng);
        tries += 1;
        if part.len() >= rate as usize / 20 || (tries > 100 && !part.is_empty()) {
            sound.extend(part);
        } else if tries > 10_000 {
            sound.resize(window.len(), 0.0);
        }
    }
    let noise_level = rms(&sound[..window.len()]);
    if noise_level == 0.0 {
        return window.to_vec();
    }
    let gain = rms(window) / noise_level / 10f32.powf(snr_db / 20.0);
    window.iter().zip(&sound).map(|(s, n)| (s + gain * n).clamp(-1.0, 1.0)).collect()
}

/// The windows of a clip as the server checks them.
fn served_windows(samples: &[f32], rate: u32) -> Vec<&[f32]> {
    let window = (WINDOW_SECONDS * f64::from(rate)) as usize;
    let hop = (HOP_SECONDS * f64::from(rate)) as usize;
    window_starts(samples.len(), window, hop)
        .into_iter()
        .map(|s| &samples[s..(s + window).min(samples.len())])
        .collect()
}

/// Where a recording's speech begins (sample): 50 ms before the first sample
/// within 30 dB of its peak. `None` for silence.
pub fn speech_start(samples: &[f32], rate: u32) -> Option<usize> {
    let peak = samples.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if peak <= 0.0 {
        return None;
    }
    let first = samples.iter().position(|v| v.abs() > peak * 0.03)?;
    Some(first.saturating_sub(rate as usize / 20))
}

/// The first `seconds` of a recording's speech, the pause before it cut off:
/// what a user who trims a clip to one word or phrase uploads.
pub fn speech_opening(samples: &[f32], rate: u32, seconds: f64) -> &[f32] {
    let begin = speech_start(samples, rate).unwrap_or(0);
    &samples[begin..(begin + (seconds * f64::from(rate)) as usize).min(samples.len())]
}

/// Whether the check trains on `clip`: the training speakers of RAVDESS and
/// speechsex (the voice model's split, [`speaker_part`]).
pub fn trains_the_check(clip: &VoiceClip) -> bool {
    TRAINING_CORPORA.contains(&clip.label.corpus()) && speaker_part(&clip.label.speaker) == SplitPart::Train
}

/// Of the clips the check never trained on, per corpus, how many openings of
/// each length in `seconds` ([`speech_opening`]) it accepts: `[accepted,
/// clips]` for each length.
pub fn openings_accepted(
    detector: &SpeechDetector,
    clips: &[VoiceClip],
    seconds: &[f64],
) -> Result<BTreeMap<String, Vec<[u64; 2]>>> {
    let rate = detector.sample_rate();
    let mut by_corpus: BTreeMap<String, Vec<[u64; 2]>> = BTreeMap::new();
    for clip in clips.iter().filter(|c| !trains_the_check(c)) {
        let cells = by_corpus.entry(clip.label.corpus().to_string()).or_insert_with(|| vec![[0, 0]; seconds.len()]);
        for (cell, &length) in cells.iter_mut().zip(seconds) {
            cell[0] += u64::from(detector.check(speech_opening(&clip.samples, rate, length))?.is_speech);
            cell[1] += 1;
        }
    }
    Ok(by_corpus)
}

/// Whether any served window of `samples`, each read alone, is speech: a
/// clip's verdict as the card measures it.
pub fn any_window_speech(detector: &SpeechDetector, samples: &[f32], rate: u32) -> Result<bool> {
    for window in served_windows(samples, rate) {
        if detector.check(window)?.is_speech {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Features of every slice, computed on both cores (`None`: too little sound).
fn features_of(featurizer: &SpeechFeaturizer, clips: &[Vec<f32>]) -> Result<Vec<Option<Vec<f32>>>> {
    in_two_halves("a speech-check feature thread", clips, |part| part.iter().map(|c| featurizer.features(c)).collect())
}

/// The non-speech clips of one seed, `count` of them spread over every family.
pub fn negatives(count: usize, rate: u32, seed: u64) -> Vec<(Family, Vec<f32>)> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..count)
        .map(|i| {
            let family = Family::ALL[i % Family::ALL.len()];
            (family, generate(family, rate, &mut rng))
        })
        .collect()
}

/// Extra training clips of the families nearest to speech (melodies, music,
/// noise with a syllable-like rhythm, beeps), `count` of them.
fn hard_negatives(count: usize, rate: u32, seed: u64) -> Vec<(Family, Vec<f32>)> {
    const HARD: [Family; 4] = [Family::Melody, Family::Music, Family::ModulatedNoise, Family::Beeps];
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..count).map(|i| (HARD[i % HARD.len()], generate(HARD[i % HARD.len()], rate, &mut rng))).collect()
}

/// Trains the check, measures it and writes its card.
pub fn run_train(request: &SpeechCheckRequest) -> Result<SpeechCheckCard> {
    anyhow::ensure!(request.hidden >= 1, "the speech check's hidden layer needs at least one unit (--hidden)");
    anyhow::ensure!(
        !request.vad_gate || request.vad.is_some(),
        "a VAD gate (--vad-gate) needs Silero VAD's weights (--silero-vad)"
    );
    anyhow::ensure!(
        (0.0..=1.0).contains(&request.max_speech_refused),
        "--max-speech-refused is a share of the training speech windows, from 0 to 1"
    );
    anyhow::ensure!(
        request.vad_gate || request.gate_negatives == 0,
        "--gate-negatives only concerns a VAD gate (--vad-gate)"
    );
    let rate = 16_000u32;
    // Two threads of our own below; libtorch (the VAD) one each.
    tch::set_num_threads(1);
    let vad = request.vad.as_deref().map(|weights| SileroVad::pool(weights, 2)).transpose()?;
    let featurizer = SpeechFeaturizer::new(rate, vad)?;
    tracing::info!(data = ?request.data, "loading speech clips");
    let clips = load_clips(&request.data, rate)?;

    // Speech windows of the training speakers, as recorded and through a channel.
    let mut rng = SmallRng::seed_from_u64(request.seed);
    let mut background_rng = SmallRng::seed_from_u64(request.seed.wrapping_add(0xBAC6));
    let backgrounds = [Family::Music, Family::Melody, Family::Noise, Family::ModulatedNoise];
    let mut speech: Vec<Vec<f32>> = Vec::new();
    let mut recorded_windows = 0usize;
    for clip in clips.iter().filter(|c| trains_the_check(c)) {
        for w in served_windows(&clip.samples, rate) {
            recorded_windows += 1;
            for _ in 0..request.background_copies {
                let family = backgrounds[background_rng.random_range(0..backgrounds.len())];
                let snr = background_rng.random_range(BACKGROUND_SNR_DB.0..BACKGROUND_SNR_DB.1);
                speech.push(with_background(w, family, snr, rate, &mut background_rng));
            }
            speech.push(w.to_vec());
            // Other voices and recording chains: speed (pitch and formants)
            // 0.75-1.4 (excited and children's voices sit high), a colour and
            // noise, a level.
            let speed: f64 = rng.random_range(0.75..1.4);
            let mut copy = super::voice_augment::stretch(w, ((w.len() as f64) / speed) as usize);
            channel(&mut copy, rate, &mut rng);
            let gain = 10f32.powf(rng.random_range(-20.0..6.0) / 20.0);
            copy.iter_mut().for_each(|s| *s = (*s * gain).clamp(-1.0, 1.0));
            speech.push(copy);
        }
    }
    let mut train_negatives = negatives(request.negatives, rate, request.seed.wrapping_add(1));
    train_negatives.extend(hard_negatives(request.negatives / 2, rate, request.seed.wrapping_add(2)));
    tracing::info!(speech = speech.len(), negatives = train_negatives.len(), "computing speech-check features");
    let pos_read: Vec<Vec<f32>> = features_of(&featurizer, &speech)?.into_iter().flatten().collect();
    let neg_audio: Vec<Vec<f32>> = train_negatives.iter().map(|(_, x)| x.clone()).collect();
    let neg_read: Vec<Vec<f32>> = features_of(&featurizer, &neg_audio)?.into_iter().flatten().collect();

    // Standardise, then a 2-layer network by full-batch Adam. With a gate
    // the network reads the statistics alone; the VAD's follow them.
    let mut names = featurizer.names();
    if request.vad_gate {
        names.truncate(FEATURE_NAMES.len());
    }
    let k = names.len();
    let pos: Vec<Vec<f32>> = pos_read.iter().map(|v| v[..k].to_vec()).collect();
    let neg: Vec<Vec<f32>> = neg_read.iter().map(|v| v[..k].to_vec()).collect();
    let all: Vec<&Vec<f32>> = pos.iter().chain(&neg).collect();
    let mean: Vec<f32> = (0..k).map(|i| all.iter().map(|v| v[i]).sum::<f32>() / all.len() as f32).collect();
    let std: Vec<f32> = (0..k)
        .map(|i| (all.iter().map(|v| (v[i] - mean[i]).powi(2)).sum::<f32>() / all.len() as f32).sqrt().max(1e-4))
        .collect();
    let standardise =
        |v: &Vec<f32>| v.iter().zip(mean.iter().zip(&std)).map(|(x, (m, s))| (x - m) / s).collect::<Vec<f32>>();
    let xs: Vec<f32> = all.iter().flat_map(|v| standardise(v)).collect();
    let xs = Tensor::from_slice(&xs).view([all.len() as i64, k as i64]);
    let ys = Tensor::from_slice(
        &all.iter().enumerate().map(|(i, _)| if i < pos.len() { 1.0f32 } else { 0.0 }).collect::<Vec<_>>(),
    );
    tch::manual_seed(request.seed as i64);
    let vs = nn::VarStore::new(Device::Cpu);
    let hidden = request.hidden as i64;
    let l1 = nn::linear(vs.root() / "l1", k as i64, hidden, Default::default());
    let l2 = nn::linear(vs.root() / "l2", hidden, 1, Default::default());
    let mut opt = nn::Adam { wd: 1e-3, ..Default::default() }.build(&vs, 1e-2)?;
    // Each class weighs half, whatever their counts.
    let weights: Vec<f32> = (0..all.len())
        .map(|i| if i < pos.len() { 0.5 / pos.len() as f32 } else { 0.5 / neg.len() as f32 } * all.len() as f32)
        .collect();
    let weights = Tensor::from_slice(&weights);
    for step in 0..3000 {
        // Input noise: a smoother boundary than the training points alone ask for.
        let noisy = &xs + Tensor::randn(xs.size(), (tch::Kind::Float, Device::Cpu)) * 0.1;
        let logits = l2.forward(&l1.forward(&noisy).tanh()).squeeze_dim(1);
        let loss = logits.binary_cross_entropy_with_logits::<Tensor>(
            &ys,
            Some(weights.shallow_clone()),
            None,
            tch::Reduction::Mean,
        );
        opt.backward_step(&loss);
        if step % 500 == 0 {
            tracing::info!(step, loss = loss.double_value(&[]), "speech check");
        }
    }
    let rows = |t: &Tensor| -> Result<Vec<Vec<f32>>> {
        let (r, c) = (t.size()[0], t.size()[1]);
        (0..r).map(|i| Ok((0..c).map(|j| t.double_value(&[i, j]) as f32).collect())).collect()
    };
    let w1 = rows(&l1.ws)?;
    let b1 = Vec::<f32>::try_from(&l1.bs.as_ref().context("bias")?.shallow_clone())?;
    let w2 = rows(&l2.ws)?.remove(0);
    let b2 = l2.bs.as_ref().context("bias")?.double_value(&[0]) as f32;

    let mut card = SpeechCheckCard {
        name: "speech_check".into(),
        description: format!(
            "Is this human speech? A 2-layer network ({k} -> {hidden} tanh -> 1) over clip statistics of voicing, \
             pitch movement, spectral change and syllabic rhythm{} (src/speech.rs); less than 0.15 s of sound is never \
             speech.",
            if request.vad_gate {
                "; a stretch it doubts is still speech if Silero VAD calls enough of its chunks speech (vad_gate)"
            } else if featurizer.uses_vad() {
                ", and Silero VAD's share of speech chunks and mean probability"
            } else {
                ""
            }
        ),
        sample_rate: rate,
        features: names.iter().map(|s| s.to_string()).collect(),
        mean,
        std,
        w1,
        b1,
        w2,
        b2,
        threshold: 0.5,
        vad_gate: None,
        trained_on: String::new(),
        metrics: json!({}),
        train_command: String::new(),
    };
    let p_pos: Vec<f32> = pos.iter().map(|v| card.probability_of(v)).collect();
    let p_neg: Vec<f32> = neg.iter().map(|v| card.probability_of(v)).collect();
    let mut sorted = p_pos.clone();
    sorted.sort_by(f32::total_cmp);
    let cap = sorted[((sorted.len() as f64 * request.max_speech_refused) as usize).min(sorted.len() - 1)];
    let above_negatives = p_neg.iter().copied().fold(0.0f32, f32::max) + 1e-3;
    card.threshold = above_negatives.min(cap).max(1e-3);
    let threshold_note = if above_negatives <= cap {
        "just above every training non-speech clip".to_string()
    } else {
        format!("capped at the {:.1}% point of the training speech windows", request.max_speech_refused * 100.0)
    };
    let gate_fit = if request.vad_gate {
        // The training non-speech as the card measures clips: each served
        // window read alone.
        let reads = |clips: &[&[f32]]| gate_reads(&featurizer, &card, clips, rate);
        tracing::info!(clips = train_negatives.len(), "fitting the VAD gate");
        let mut by_clip = reads(&train_negatives.iter().map(|(_, x)| x.as_slice()).collect::<Vec<_>>())?;
        // More clips for the gate alone, in batches (45,000 clips of audio
        // would not fit in memory at once).
        let mut extra_rng = SmallRng::seed_from_u64(request.seed.wrapping_add(4));
        let mut made = 0usize;
        while made < request.gate_negatives {
            let batch = (request.gate_negatives - made).min(3000);
            let clips: Vec<Vec<f32>> = (made..made + batch)
                .map(|i| generate(Family::ALL[i % Family::ALL.len()], rate, &mut extra_rng))
                .collect();
            by_clip.extend(reads(&clips.iter().map(Vec::as_slice).collect::<Vec<_>>())?);
            made += batch;
            tracing::info!(made, "more non-speech for the VAD gate");
        }
        let speech_read: Vec<[f32; 2]> = pos_read.iter().map(|v| gate_read(&card, v)).collect();
        let fit = fit_vad_gate(&speech_read, &by_clip, card.threshold);
        card.vad_gate = Some(fit.gate);
        Some(fit)
    } else {
        None
    };
    let detector = SpeechDetector::new(card.clone(), featurizer.into_vad())?;

    // Measurement: clip-level acceptance as served (any window speech).
    let mut by_corpus: BTreeMap<String, [u64; 4]> = BTreeMap::new(); // all clips: [accepted, total], unseen: [accepted, total]
    let verdicts: Vec<bool> = in_two_halves("a speech-check thread", &clips, |part| {
        part.iter().map(|c| any_window_speech(&detector, &c.samples, rate)).collect()
    })?;
    let mut refused_examples = Vec::new();
    for (clip, &ok) in clips.iter().zip(&verdicts) {
        let entry = by_corpus.entry(clip.label.corpus().to_string()).or_default();
        entry[0] += u64::from(ok);
        entry[1] += 1;
        if !trains_the_check(clip) {
            entry[2] += u64::from(ok);
            entry[3] += 1;
        }
        if !ok && refused_examples.len() < 20 {
            refused_examples.push(clip.path.display().to_string());
        }
    }
    let short = openings_accepted(&detector, &clips, &SHORT_SPEECH_SECONDS)?;
    let measure_seed = request.measure_seed.unwrap_or(request.seed.wrapping_add(1_000_003));
    let test_negatives = negatives(MEASURED_NEGATIVES, rate, measure_seed);
    let mut by_family: BTreeMap<&str, [u64; 2]> = BTreeMap::new();
    for (family, x) in &test_negatives {
        let entry = by_family.entry(family.name()).or_default();
        entry[0] += u64::from(!any_window_speech(&detector, x, rate)?);
        entry[1] += 1;
    }
    let share = |a: u64, n: u64| if n == 0 { json!(null) } else { json!(super::metrics::round4(a as f64 / n as f64)) };
    let refused_total: u64 = by_family.values().map(|v| v[0]).sum();
    let short_accepted: serde_json::Map<String, serde_json::Value> = short
        .iter()
        .map(|(corpus, cells)| {
            let by_length =
                SHORT_SPEECH_SECONDS.iter().zip(cells).map(|(secs, v)| (format!("first_{secs}_s"), share(v[0], v[1])));
            (corpus.clone(), json!(by_length.collect::<serde_json::Map<_, _>>()))
        })
        .collect();
    card.metrics = json!({
        "speech_accepted": by_corpus.iter().map(|(c, v)| (c.clone(), json!({
            "clips": v[1], "accepted": share(v[0], v[1]),
            "clips_not_trained_on": v[3], "accepted_not_trained_on": share(v[2], v[3]),
        }))).collect::<serde_json::Map<_, _>>(),
        "short_speech_accepted_not_trained_on": short_accepted,
        "nonspeech_refused": share(refused_total, test_negatives.len() as u64),
        "nonspeech_clips": test_negatives.len(),
        "nonspeech_seed": measure_seed,
        "nonspeech_refused_by_family": by_family.iter().map(|(f, v)| (f.to_string(), share(v[0], v[1]))).collect::<serde_json::Map<_, _>>(),
        "threshold_rule": threshold_note,
        "training_windows": {"speech": pos.len(), "nonspeech": neg.len()},
        "training_nonspeech_refused": share(p_neg.iter().filter(|&&p| p < card.threshold).count() as u64, p_neg.len() as u64),
        "training_speech_accepted": share(p_pos.iter().filter(|&&p| p >= card.threshold).count() as u64, p_pos.len() as u64),
        "refused_speech_examples": refused_examples,
    });
    if let Some(fit) = &gate_fit {
        card.metrics["vad_gate_fit"] = json!({
            "rule": "of the pairs (min_probability L, min_vad_speech_share S), the one accepting the most training \
                     speech windows while no served window of a training non-speech clip the network refuses \
                     passes it; ties go to the higher S",
            "training_speech_accepted_by_the_network": share(fit.speech_accepted_without as u64, pos.len() as u64),
            "training_speech_accepted_with_the_gate": share(fit.speech_accepted_with as u64, pos.len() as u64),
            "training_nonspeech_clips_refused_by_the_network": fit.refused_clips,
        });
    }
    card.trained_on = format!(
        "speech: served windows of the training speakers of {} ({} windows, each also at another speed through a \
         random channel); not speech: {} generated clips of {} families (seed {}) and half as many again of the \
         four nearest to speech; measured on a second seed's {} clips and on every clip of the corpora (EmoDB \
         never trains the check)",
        TRAINING_CORPORA.join(" and "),
        recorded_windows,
        request.negatives,
        Family::ALL.len(),
        request.seed.wrapping_add(1),
        MEASURED_NEGATIVES
    );
    if request.vad_gate {
        card.trained_on += &format!(
            "; the VAD gate fitted on the same speech and non-speech and {} more generated clips (seed {})",
            request.gate_negatives,
            request.seed.wrapping_add(4)
        );
    }
    let data: Vec<String> = request.data.iter().map(|d| format!("--data {}", d.display())).collect();
    let hidden_arg = if request.hidden == DEFAULT_HIDDEN { String::new() } else { format!(" --hidden {hidden}") };
    let vad_arg = request.vad.as_ref().map(|v| format!(" --silero-vad {}", v.display())).unwrap_or_default();
    let negatives_arg = if request.negatives == DEFAULT_NEGATIVES {
        String::new()
    } else {
        format!(" --negatives {}", request.negatives)
    };
    let seed_arg = if request.seed == 1 { String::new() } else { format!(" --seed {}", request.seed) };
    let mut gate_arg = if request.vad_gate { " --vad-gate".to_string() } else { String::new() };
    if request.gate_negatives > 0 {
        gate_arg += &format!(" --gate-negatives {}", request.gate_negatives);
    }
    let mut measure_arg = request.measure_seed.map(|s| format!(" --measure-seed {s}")).unwrap_or_default();
    if request.max_speech_refused != MAX_SPEECH_REFUSED {
        measure_arg += &format!(" --max-speech-refused {}", request.max_speech_refused);
    }
    if request.background_copies > 0 {
        measure_arg += &format!(" --background-copies {}", request.background_copies);
        card.trained_on += &format!(
            "; each training speech window also {} more time(s) with generated music, a melody or noise under it \
             at {}-{} dB",
            request.background_copies, BACKGROUND_SNR_DB.0, BACKGROUND_SNR_DB.1
        );
    }
    card.train_command = format!(
        "emotion-ai train speech-check {}{hidden_arg}{negatives_arg}{seed_arg}{vad_arg}{gate_arg}{measure_arg}",
        data.join(" ")
    );
    save_card(&card, &request.export)?;
    Ok(card)
}

/// What the gate weighs a stretch by, from what a featurizer with the VAD
/// read of it: `[the card's probability, the VAD's speech share]`.
fn gate_read(card: &SpeechCheckCard, values: &[f32]) -> [f32; 2] {
    [card.probability_of(&values[..card.features.len()]), values[FEATURE_NAMES.len()]]
}

/// Each clip's served windows, each read alone, as [`gate_read`]s: what
/// [`fit_vad_gate`] weighs a non-speech clip by. A window with too little
/// sound is left out.
fn gate_reads(
    featurizer: &SpeechFeaturizer,
    card: &SpeechCheckCard,
    clips: &[&[f32]],
    rate: u32,
) -> Result<Vec<Vec<[f32; 2]>>> {
    let mut windows: Vec<Vec<f32>> = Vec::new();
    let mut clip_of: Vec<usize> = Vec::new();
    for (i, x) in clips.iter().enumerate() {
        for w in served_windows(x, rate) {
            windows.push(w.to_vec());
            clip_of.push(i);
        }
    }
    let mut by_clip: Vec<Vec<[f32; 2]>> = vec![Vec::new(); clips.len()];
    for (values, &clip) in features_of(featurizer, &windows)?.iter().zip(&clip_of) {
        if let Some(v) = values {
            by_clip[clip].push(gate_read(card, v));
        }
    }
    Ok(by_clip)
}

/// A fitted [`VadGate`] and what it did on the training data.
#[derive(Debug, Clone, PartialEq)]
pub struct VadGateFit {
    pub gate: VadGate,
    /// Training speech windows the network accepts alone, and with the gate.
    pub speech_accepted_without: usize,
    pub speech_accepted_with: usize,
    /// Training non-speech clips the network refuses (every window), none of
    /// which the gate lets through.
    pub refused_clips: usize,
}

/// Chooses the [`VadGate`] on training data alone: `speech` holds each
/// training speech window's `[probability, VAD speech share]`, `nonspeech`
/// each training non-speech clip's windows'. Of every share S found among
/// the speech windows the network doubts, the gate takes the lowest
/// probability L above every window, with share S or more, of the clips
/// the network refuses (so that none of them gets through), and keeps the
/// pair that accepts the most speech; ties go to the higher S (the VAD
/// surer).
pub fn fit_vad_gate(speech: &[[f32; 2]], nonspeech: &[Vec<[f32; 2]>], threshold: f32) -> VadGateFit {
    let refused_clips: Vec<&Vec<[f32; 2]>> =
        nonspeech.iter().filter(|windows| windows.iter().all(|w| w[0] < threshold)).collect();
    let refused: Vec<[f32; 2]> = refused_clips.iter().copied().flatten().copied().collect();
    let doubted: Vec<[f32; 2]> = speech.iter().filter(|w| w[0] < threshold).copied().collect();
    let accepted_without = speech.len() - doubted.len();
    let mut shares: Vec<f32> = doubted.iter().map(|w| w[1]).collect();
    shares.sort_by(f32::total_cmp);
    shares.dedup();
    // No gate at all (it admits nothing) unless a share does better.
    let mut best = (0usize, VadGate { min_probability: threshold, min_vad_speech_share: 1.0 });
    for &s in &shares {
        let highest = refused.iter().filter(|w| w[1] >= s).map(|w| w[0]).fold(f32::NEG_INFINITY, f32::max);
        let l = if highest.is_finite() { highest + 1e-3 } else { 0.0 };
        let gate = VadGate { min_probability: l, min_vad_speech_share: s };
        let admitted = doubted.iter().filter(|w| gate.admits(w[0], w[1])).count();
        // Shares ascend, so an equal count at a higher share replaces it.
        if admitted > 0 && admitted >= best.0 {
            best = (admitted, gate);
        }
    }
    VadGateFit {
        gate: best.1,
        speech_accepted_without: accepted_without,
        speech_accepted_with: accepted_without + best.0,
        refused_clips: refused_clips.len(),
    }
}

/// Writes the card as pretty JSON.
pub fn save_card(card: &SpeechCheckCard, path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, serde_json::to_string_pretty(card)? + "\n")
        .with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negatives_cover_every_family_and_depend_only_on_the_seed() {
        let a = negatives(30, 16_000, 9);
        let b = negatives(30, 16_000, 9);
        assert_eq!(a.len(), 30);
        for family in Family::ALL {
            assert!(a.iter().any(|(f, _)| *f == family), "{family:?}");
        }
        assert!(a.iter().zip(&b).all(|(x, y)| x.1 == y.1));
        assert_eq!(served_windows(&vec![0.0; 100], 16_000).len(), 1);
        assert_eq!(served_windows(&vec![0.0; 16_000 * 5], 16_000).len(), 3);
    }

    #[test]
    fn background_sound_sits_under_the_window_at_the_asked_ratio() {
        let rate = 16_000;
        let window: Vec<f32> = (0..3 * rate).map(|i| 0.1 * (i as f32 * 0.08).sin()).collect();
        let mut rng = SmallRng::seed_from_u64(5);
        for family in [Family::Music, Family::Melody, Family::Noise, Family::ModulatedNoise] {
            for snr in [5.0f32, 10.0, 20.0] {
                let mixed = with_background(&window, family, snr, rate as u32, &mut rng);
                assert_eq!(mixed.len(), window.len());
                let added: Vec<f32> = mixed.iter().zip(&window).map(|(m, w)| m - w).collect();
                let measured = 20.0 * (rms(&window) / rms(&added)).log10();
                assert!((measured - snr).abs() < 0.5, "{family:?} at {snr} dB: {measured:.2} dB");
            }
        }
        // A family of a few samples a clip still fills the window, and the
        // same stream gives the same mix.
        let a = with_background(&window, Family::Tiny, 10.0, rate as u32, &mut SmallRng::seed_from_u64(1));
        let b = with_background(&window, Family::Tiny, 10.0, rate as u32, &mut SmallRng::seed_from_u64(1));
        assert_eq!(a.len(), window.len());
        assert_eq!(a, b);
    }

    #[test]
    fn the_vad_gate_admits_the_most_doubted_speech_and_no_refused_nonspeech() {
        let threshold = 0.6;
        // Doubted speech windows: [probability, VAD share].
        let speech = [[0.9, 0.1], [0.5, 0.9], [0.4, 0.8], [0.2, 0.95], [0.1, 0.3]];
        // A refused clip with a window at (0.3, 0.85): any gate with S <= 0.85
        // needs L > 0.3; a clip the network accepts (0.7) does not count.
        let nonspeech = vec![vec![[0.05, 0.2], [0.3, 0.85]], vec![[0.7, 1.0], [0.5, 0.99]], vec![[0.1, 0.5]]];
        let fit = fit_vad_gate(&speech, &nonspeech, threshold);
        assert_eq!(fit.refused_clips, 2);
        assert_eq!(fit.speech_accepted_without, 1);
        // S 0.8 (L 0.301) admits (0.5, 0.9) and (0.4, 0.8); S 0.9 (L 0)
        // admits (0.5, 0.9) and (0.2, 0.95): two each, and the higher share wins.
        assert_eq!(fit.speech_accepted_with, 3);
        assert_eq!(fit.gate, VadGate { min_probability: 0.0, min_vad_speech_share: 0.9 });
        for windows in nonspeech.iter().filter(|w| w.iter().all(|v| v[0] < threshold)) {
            assert!(windows.iter().all(|v| !fit.gate.admits(v[0], v[1])));
        }
        // Nothing doubted: no gate admits anything.
        let fit = fit_vad_gate(&[[0.9, 0.9]], &nonspeech, threshold);
        assert_eq!(fit.speech_accepted_with, 1);
        assert!(!fit.gate.admits(0.5, 0.99));
    }

    #[test]
    fn the_opening_of_speech_starts_just_before_it() {
        let rate = 16_000u32;
        // 1 s of silence, 2 s of "speech", 0.5 s of silence.
        let mut clip = vec![0.0f32; 16_000];
        clip.extend((0..32_000).map(|i| 0.5 * (i as f32 * 0.05).sin()));
        clip.extend(vec![0.0f32; 8_000]);
        let start = speech_start(&clip, rate).unwrap();
        // 50 ms of lead-in before the first loud sample.
        assert!((15_200..=15_300).contains(&start), "{start}");
        let opening = speech_opening(&clip, rate, 1.0);
        assert_eq!(opening.len(), 16_000);
        assert!(opening[..799].iter().all(|&v| v == 0.0) && opening[800..].iter().any(|&v| v != 0.0));
        // Longer than the clip: to its end.
        assert_eq!(speech_opening(&clip, rate, 10.0).len(), clip.len() - start);
        // Silence has no speech to find; its opening is its start.
        assert_eq!(speech_start(&[0.0; 100], rate), None);
        assert_eq!(speech_opening(&[0.0; 100], rate, 1.0).len(), 100);
        assert!(speech_opening(&[], rate, 1.0).is_empty());
    }
}
