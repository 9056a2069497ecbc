//! Silero VAD (src/model/vad.rs) against scripts/vad_reference.py, which
//! runs the silero-vad wheel's network definition in numpy on the same
//! weights. Needs the weights `scripts/setup.sh` installs.
use std::path::Path;

use emotion_ai::decode::audio::decode_audio;
use emotion_ai::model::vad::{SileroVad, DEFAULT_SILERO_VAD};

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)).unwrap()
}

fn vad() -> SileroVad {
    SileroVad::load(Path::new(DEFAULT_SILERO_VAD)).expect("scripts/setup.sh installs Silero VAD")
}

fn reference(key: &str) -> Vec<f32> {
    let reference: serde_json::Value = serde_json::from_slice(&fixture("vad_reference.json")).unwrap();
    serde_json::from_value(reference[key].clone()).unwrap()
}

fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn speech_chunks_match_the_python_reference() {
    let samples = decode_audio(&fixture("speech.wav"), 16_000, 60.0).unwrap().samples;
    let ours = vad().probabilities(&samples).unwrap();
    let expected = reference("speech_wav");
    let worst = largest_difference(&ours, &expected);
    assert!(worst < 1e-4, "largest difference {worst}");
    // The sentence is speech; the silence after it is not.
    let speech = ours.iter().filter(|&&p| p >= 0.5).count();
    assert!(speech > ours.len() / 2, "{ours:?}");
    assert!(ours[ours.len() - 5..].iter().all(|&p| p < 0.1), "{ours:?}");
}

#[test]
fn a_tone_matches_the_python_reference_and_is_not_speech() {
    let tone: Vec<f32> =
        (0..16_000).map(|i| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16_000.0).sin()).collect();
    let ours = vad().probabilities(&tone).unwrap();
    let worst = largest_difference(&ours, &reference("tone_440hz_1s_amplitude_0.5"));
    assert!(worst < 1e-4, "largest difference {worst}");
    assert!(ours.iter().all(|&p| p < 0.1), "{ours:?}");
}

#[test]
fn nothing_in_nothing_out_and_a_missing_file_says_where_it_comes_from() {
    assert!(vad().probabilities(&[]).unwrap().is_empty());
    assert_eq!(vad().probabilities(&[0.1; 10]).unwrap().len(), 1);
    let err = SileroVad::load(Path::new("/nonexistent/vad.safetensors")).unwrap_err().to_string();
    assert!(err.contains("scripts/setup.sh"), "{err}");
}

#[test]
fn slices_read_together_are_read_as_if_alone() {
    let vad = vad();
    let speech = decode_audio(&fixture("speech.wav"), 16_000, 60.0).unwrap().samples;
    let slices: Vec<&[f32]> =
        vec![&speech[..16_000], &speech[8_000..24_000], &speech[..1_000], &[], &speech[4_000..20_000]];
    let together = vad.probabilities_of_each(&slices).unwrap();
    for (slice, batch) in slices.iter().zip(&together) {
        let alone = vad.probabilities(slice).unwrap();
        assert_eq!(alone.len(), batch.len());
        assert!(largest_difference(&alone, batch) < 1e-5);
    }
}

/// A card whose network reads only the VAD's share of speech chunks (speech
/// above one half), loaded as the server loads a card: the VAD is loaded
/// because the card lists its statistics, and a clip's windows are judged
/// by it.
#[test]
fn a_card_that_lists_the_vad_statistics_loads_and_uses_it() {
    use emotion_ai::speech::{SpeechCheckCard, SpeechDetector, FEATURE_NAMES, VAD_FEATURE_NAMES};
    let names: Vec<String> = FEATURE_NAMES.iter().chain(&VAD_FEATURE_NAMES).map(|s| s.to_string()).collect();
    let k = names.len();
    let mut row = vec![0.0f32; k];
    row[FEATURE_NAMES.len()] = 4.0; // vad_speech_share
    let card = SpeechCheckCard {
        name: "vad_only".into(),
        description: String::new(),
        sample_rate: 16_000,
        features: names,
        mean: vec![0.0; k],
        std: vec![1.0; k],
        w1: vec![row],
        b1: vec![-2.0],
        w2: vec![5.0],
        b2: 0.0,
        threshold: 0.5,
        vad_gate: None,
        trained_on: String::new(),
        metrics: serde_json::json!({}),
        train_command: String::new(),
    };
    let dir = std::env::temp_dir().join(format!("vad-card-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("speech_check.json");
    std::fs::write(&path, serde_json::to_string(&card).unwrap()).unwrap();
    let detector = SpeechDetector::load(&path, Path::new(DEFAULT_SILERO_VAD)).unwrap();
    assert_eq!(detector.featurizer().names().len(), k);
    let err = SpeechDetector::load(&path, Path::new("/nonexistent/vad.safetensors")).unwrap_err();
    assert!(format!("{err:#}").contains("scripts/setup.sh"), "{err:#}");

    // 3 s of speech (the fixture repeated), then 3 s of a 440 Hz tone.
    let speech = decode_audio(&fixture("speech.wav"), 16_000, 60.0).unwrap().samples;
    let mut clip: Vec<f32> = speech.iter().cycle().take(48_000).copied().collect();
    clip.extend((0..48_000).map(|i| 0.3 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16_000.0).sin()));
    assert!(detector.check(&clip[..48_000]).unwrap().is_speech);
    // The tone has sound enough for statistics (a probability, not the
    // too-little-sound zero); the VAD's share refuses it.
    let tone = detector.check(&clip[48_000..]).unwrap();
    assert!(!tone.is_speech && tone.probability > 0.0 && tone.probability < 0.1, "{tone:?}");
    let verdicts = detector.check_windows(&clip, &[(0, 48_000), (48_000, 96_000)]).unwrap();
    assert_eq!(verdicts.iter().map(|v| v.is_speech).collect::<Vec<_>>(), [true, false]);
    std::fs::remove_dir_all(&dir).ok();
}

/// A card whose network reads the statistics alone and doubts everything
/// (a constant 0.4 under a threshold of 0.9), with a VAD gate: the VAD is
/// loaded for the gate, speech passes it, a tone does not, and a gate that
/// asks more of the network than 0.4 passes nothing.
#[test]
fn a_vad_gate_lets_through_only_what_the_vad_calls_speech() {
    use emotion_ai::speech::{SpeechCheckCard, SpeechDetector, VadGate, FEATURE_NAMES};
    let k = FEATURE_NAMES.len();
    let gate = VadGate { min_probability: 0.3, min_vad_speech_share: 0.5 };
    let card = SpeechCheckCard {
        name: "gated".into(),
        description: String::new(),
        sample_rate: 16_000,
        features: FEATURE_NAMES.iter().map(|s| s.to_string()).collect(),
        mean: vec![0.0; k],
        std: vec![1.0; k],
        w1: vec![vec![0.0; k]],
        b1: vec![0.0],
        w2: vec![0.0],
        b2: (0.4f32 / 0.6).ln(),
        threshold: 0.9,
        vad_gate: Some(gate),
        trained_on: String::new(),
        metrics: serde_json::json!({}),
        train_command: String::new(),
    };
    let dir = std::env::temp_dir().join(format!("vad-gate-card-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("speech_check.json");
    std::fs::write(&path, serde_json::to_string(&card).unwrap()).unwrap();
    let err = SpeechDetector::load(&path, Path::new("/nonexistent/vad.safetensors")).unwrap_err();
    assert!(format!("{err:#}").contains("scripts/setup.sh"), "{err:#}");
    let detector = SpeechDetector::load(&path, Path::new(DEFAULT_SILERO_VAD)).unwrap();
    assert!(detector.uses_vad());

    let speech = decode_audio(&fixture("speech.wav"), 16_000, 60.0).unwrap().samples;
    let speech: Vec<f32> = speech.iter().cycle().take(48_000).copied().collect();
    let tone: Vec<f32> =
        (0..48_000).map(|i| 0.3 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16_000.0).sin()).collect();
    let heard = detector.check(&speech).unwrap();
    assert!((heard.probability - 0.4).abs() < 1e-4 && heard.is_speech, "{heard:?}");
    assert!(!detector.check(&tone).unwrap().is_speech);

    let strict = SpeechCheckCard { vad_gate: Some(VadGate { min_probability: 0.5, ..gate }), ..card };
    let detector =
        SpeechDetector::new(strict, Some(SileroVad::pool(Path::new(DEFAULT_SILERO_VAD), 1).unwrap())).unwrap();
    assert!(!detector.check(&speech).unwrap().is_speech, "under the gate's probability");
    std::fs::remove_dir_all(&dir).ok();
}

/// The detector asks the VAD only about windows in the gate's band; its
/// verdicts must be those of the gate applied to every window's full
/// statistics. The shipped statistics network (its own gate taken off)
/// gives the probabilities; gates are laid across them.
#[test]
fn the_gate_asks_the_vad_only_where_it_can_change_the_verdict() {
    use emotion_ai::speech::{vad_statistics, SpeechCheckCard, SpeechDetector, VadGate};
    let shipped: SpeechCheckCard = serde_json::from_slice(
        &std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("models/speech_check.json")).unwrap(),
    )
    .unwrap();
    let card = SpeechCheckCard { vad_gate: None, ..shipped };
    let speech = decode_audio(&fixture("speech.wav"), 16_000, 60.0).unwrap().samples;
    // Speech, a tone, noise and speech under noise, windows of 1-3 s.
    let mut clip: Vec<f32> = speech.clone();
    clip.extend((0..32_000).map(|i| 0.3 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 16_000.0).sin()));
    let mut state = 12345u32;
    let mut noise = || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5
    };
    clip.extend((0..32_000).map(|_| 0.2 * noise()));
    clip.extend(speech.iter().map(|s| s + 0.3 * noise()));
    let windows: Vec<(usize, usize)> = (0..clip.len().saturating_sub(16_000))
        .step_by(8_000)
        .map(|s| (s, (s + 16_000 + (s % 3) * 8_000).min(clip.len())))
        .collect();
    let plain = SpeechDetector::new(card.clone(), None).unwrap();
    let probabilities: Vec<f32> = plain.check_windows(&clip, &windows).unwrap().iter().map(|v| v.probability).collect();
    let vad = vad();
    let slices: Vec<&[f32]> = windows.iter().map(|&(s, e)| &clip[s..e]).collect();
    let shares: Vec<f32> = vad.probabilities_of_each(&slices).unwrap().iter().map(|p| vad_statistics(p)[0]).collect();
    let mut sorted = probabilities.clone();
    sorted.sort_by(f32::total_cmp);
    let mut let_through = 0;
    for min_probability in [0.0, sorted[sorted.len() / 4], sorted[sorted.len() / 2]] {
        for min_vad_speech_share in [0.2, 0.5, 0.9] {
            let gate = VadGate { min_probability, min_vad_speech_share };
            let gated = SpeechDetector::new(
                SpeechCheckCard { vad_gate: Some(gate), ..card.clone() },
                Some(SileroVad::pool(Path::new(DEFAULT_SILERO_VAD), 1).unwrap()),
            )
            .unwrap();
            let verdicts = gated.check_windows(&clip, &windows).unwrap();
            for (i, v) in verdicts.iter().enumerate() {
                let expected = probabilities[i] > 0.0
                    && (probabilities[i] >= card.threshold || gate.admits(probabilities[i], shares[i]));
                assert_eq!(v.is_speech, expected, "window {i} {:?}, {gate:?}", windows[i]);
                assert_eq!(v.probability, probabilities[i]);
                let_through += usize::from(v.is_speech && probabilities[i] < card.threshold);
            }
        }
    }
    // Some window in each verdict class, and some let through by a gate, or
    // the test shows nothing.
    assert!(probabilities.iter().any(|&p| p >= card.threshold) && probabilities.iter().any(|&p| p < card.threshold));
    assert!(let_through > 0);
}
