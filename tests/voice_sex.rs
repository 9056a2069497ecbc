//! The voice sex head: the speaker encoder installed by scripts/setup.sh,
//! the shipped head, and how the server blends them into a clip's answer.

mod common;

use std::path::Path;

use common::*;
use emotion_ai::decode::audio::decode_audio;
use emotion_ai::model::speaker::{
    encoder_pitch_tracker, head_input, head_input_size, SpeakerEncoder, SpeakerSexModel, DEFAULT_SPEAKER_ENCODER,
    EMBEDDING_SIZE,
};
use emotion_ai::model::voice::LoadedVoiceModel;
use emotion_ai::predict::voice::{emotion_marginal, predict_clip, sex_marginal, window_starts, Windowing};

const WINDOWING: Windowing = Windowing { window: 48_000, hop: 16_000 };

fn espeak_samples(voice: &str, text: &str) -> Vec<f32> {
    decode_audio(&espeak(voice, text), 16_000, 60.0).unwrap().samples
}

fn encoder() -> SpeakerEncoder {
    SpeakerEncoder::load(Path::new(DEFAULT_SPEAKER_ENCODER))
        .expect("bash scripts/setup.sh installs the speaker encoder")
}

fn cosine(a: &tch::Tensor, b: &tch::Tensor) -> f64 {
    (a * b).sum(tch::Kind::Float).double_value(&[])
}

#[test]
fn the_speaker_encoder_puts_one_voice_nearer_itself_than_another() {
    let encoder = encoder();
    let one = "The weather was lovely this morning, so we walked to the station together.";
    let two = "Please bring the blue folder back to my office before the meeting starts.";
    let clip = |voice, text| {
        let samples = espeak_samples(voice, text);
        encoder.window_embeddings(&samples, &[(0, samples.len().min(48_000))], 48_000).unwrap().get(0)
    };
    let (m1, m2, f1) = (clip("en+m3", one), clip("en+m3", two), clip("en+f3", one));
    assert_eq!(m1.size(), [EMBEDDING_SIZE]);
    assert!((cosine(&m1, &m1) - 1.0).abs() < 1e-4, "unit length");
    let (same, other) = (cosine(&m1, &m2), cosine(&m1, &f1));
    assert!(same > other + 0.05, "same voice {same:.3}, another voice saying the same words {other:.3}");
}

/// scripts/speaker_reference.py computes the embedding of the speech fixture
/// (repeated to fill a 3 s window) as Resemblyzer does, in librosa and numpy.
#[test]
fn the_embedding_matches_the_python_reference() {
    let reference: serde_json::Value = serde_json::from_slice(&fixture("speaker_embedding_reference.json")).unwrap();
    let expected: Vec<f32> = serde_json::from_value(reference["embedding"].clone()).unwrap();
    let samples = decode_audio(&fixture("speech.wav"), 16_000, 60.0).unwrap().samples;
    let ours = encoder().window_embeddings(&samples, &[(0, samples.len())], 48_000).unwrap().get(0);
    let ours = Vec::<f32>::try_from(ours).unwrap();
    let worst = ours.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "largest difference {worst}");
}

#[test]
fn long_clips_share_partials_between_windows_and_short_ones_repeat() {
    let encoder = encoder();
    let samples = repeated_speech(7);
    let spans: Vec<(usize, usize)> = window_starts(samples.len(), WINDOWING.window, WINDOWING.hop)
        .into_iter()
        .map(|s| (s, (s + WINDOWING.window).min(samples.len())))
        .collect();
    let embeddings = encoder.window_embeddings(&samples, &spans, WINDOWING.window).unwrap();
    assert_eq!(embeddings.size(), [spans.len() as i64, EMBEDDING_SIZE]);
    // Neighbouring windows of one speaker are near each other.
    for i in 1..spans.len() {
        let c = cosine(&embeddings.get(i as i64 - 1), &embeddings.get(i as i64));
        assert!(c > 0.8, "windows {} and {i}: {c:.3}", i - 1);
    }
    // A clip shorter than a window is one window, the clip repeated.
    let short = &samples[..20_000];
    let once = encoder.window_embeddings(short, &[(0, short.len())], WINDOWING.window).unwrap();
    let filled: Vec<f32> = (0..WINDOWING.window).map(|i| short[i % short.len()]).collect();
    let by_hand = encoder.window_embeddings(&filled, &[(0, filled.len())], WINDOWING.window).unwrap();
    assert!((cosine(&once.get(0), &by_hand.get(0)) - 1.0).abs() < 1e-4);
}

/// With pitch, the head reads the embedding and then the window's pitch
/// summary: a man's espeak voice sits lower than a woman's, in every window.
#[test]
fn the_head_input_puts_each_windows_pitch_after_its_embedding() {
    let encoder = encoder();
    let tracker = encoder_pitch_tracker();
    let text = "The weather was lovely this morning, so we walked to the station together, and then we took the train.";
    let median_pitch = |voice: &str| -> Vec<f64> {
        let samples = espeak_samples(voice, text);
        let spans: Vec<(usize, usize)> = window_starts(samples.len(), WINDOWING.window, WINDOWING.hop)
            .into_iter()
            .map(|s| (s, (s + WINDOWING.window).min(samples.len())))
            .collect();
        let plain = encoder.window_embeddings(&samples, &spans, WINDOWING.window).unwrap();
        let input = head_input(&encoder, Some(&tracker), &samples, &spans, WINDOWING.window).unwrap();
        assert_eq!(input.size(), [spans.len() as i64, head_input_size(true)]);
        assert_eq!(head_input(&encoder, None, &samples, &spans, WINDOWING.window).unwrap().size()[1], EMBEDDING_SIZE);
        let embedded = input.narrow(1, 0, EMBEDDING_SIZE);
        assert!((embedded - plain).abs().max().double_value(&[]) < 1e-6, "the embedding comes first, unchanged");
        (0..spans.len() as i64).map(|w| input.double_value(&[w, EMBEDDING_SIZE + 1])).collect()
    };
    let (man, woman) = (median_pitch("en+m3"), median_pitch("en+f3"));
    let highest_man = man.iter().copied().fold(f64::MIN, f64::max);
    let lowest_woman = woman.iter().copied().fold(f64::MAX, f64::min);
    assert!(highest_man < lowest_woman, "median log2(F0/200): man {man:?}, woman {woman:?}");
}

/// A head whose card says it reads pitch is built with the wider input and
/// served with it; the shipped card, from before the option, reads none.
#[test]
fn a_head_that_reads_pitch_reloads_and_answers() {
    let shipped = root().join("models/voice_sex.safetensors");
    let card: serde_json::Value =
        serde_json::from_slice(&std::fs::read(shipped.with_extension("json")).unwrap()).unwrap();
    assert!(card.get("pitch_summary").is_none(), "the shipped head reads the embedding alone");

    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("voice_sex.safetensors");
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    let head = emotion_ai::model::speaker::SpeakerSexHead::new(&vs.root(), head_input_size(true));
    // Male when the median pitch (the input after the embedding's) is low.
    tch::no_grad(|| {
        let mut ws = head.linear.ws.shallow_clone();
        let _ = ws.zero_();
        let _ = ws.narrow(1, EMBEDDING_SIZE + 1, 1).fill_(-8.0);
    });
    vs.save(&weights).unwrap();
    let mut card = card;
    card["pitch_summary"] = serde_json::json!(true);
    std::fs::write(weights.with_extension("json"), card.to_string()).unwrap();

    let model = SpeakerSexModel::load(&weights, Path::new(DEFAULT_SPEAKER_ENCODER)).unwrap();
    assert!(model.card.pitch_summary);
    let male = |voice: &str| {
        let samples = espeak_samples(voice, "Please bring the blue folder back to my office before the meeting.");
        model.predict_windows(&samples, &[(0, samples.len().min(48_000))], 48_000).unwrap()[0][1]
    };
    let (man, woman) = (male("en+m3"), male("en+f3"));
    assert!(man > 0.5 && woman < 0.5, "male: man {man}, woman {woman}");
    // A head of the wrong width for its card is refused, not misread.
    let plain = dir.path().join("plain.safetensors");
    std::fs::copy(&shipped, &plain).unwrap();
    std::fs::copy(weights.with_extension("json"), plain.with_extension("json")).unwrap();
    assert!(SpeakerSexModel::load(&plain, Path::new(DEFAULT_SPEAKER_ENCODER)).is_err());
}

#[test]
fn the_shipped_head_changes_the_sex_and_leaves_the_emotion() {
    let head = SpeakerSexModel::load(&root().join("models/voice_sex.safetensors"), Path::new(DEFAULT_SPEAKER_ENCODER))
        .expect("the shipped voice sex head");
    assert_eq!(head.card.classes, ["female", "male"]);
    assert!((0.0..=1.0).contains(&head.card.head_weight));
    let voice = LoadedVoiceModel::load(&root().join("models/voice_emotion.safetensors")).unwrap();
    let extractor = voice.card.input.extractor();
    let samples = speech_samples();
    let alone = predict_clip(&voice.net, &extractor, None, &samples, WINDOWING).unwrap();
    let blended = predict_clip(&voice.net, &extractor, Some(&head), &samples, WINDOWING).unwrap();
    for (a, b) in emotion_marginal(&alone.joint).iter().zip(emotion_marginal(&blended.joint)) {
        assert!((a - b).abs() < 1e-5, "emotion unchanged: {a} vs {b}");
    }
    let sexes = head.predict_windows(&samples, &[(0, samples.len().min(48_000))], 48_000).unwrap();
    let expected = head.card.head_weight * sexes[0][0] + (1.0 - head.card.head_weight) * sex_marginal(&alone.joint)[0];
    assert!(
        (sex_marginal(&blended.joint)[0] - expected).abs() < 1e-4,
        "{:?} vs {expected}",
        sex_marginal(&blended.joint)
    );
}

#[tokio::test]
async fn the_server_lists_the_voice_sex_head() {
    let response = send(axum::http::Request::get("/api/v1/models").body(axum::body::Body::empty()).unwrap()).await;
    let models = json_of(response).await;
    assert_eq!(models["voice_sex"]["classes"], serde_json::json!(["female", "male"]), "{}", models["voice_sex"]);
    let heldout = &models["voice_sex"]["metrics"]["heldout_speakers"];
    for corpus in ["ravdess", "emodb", "speechsex"] {
        assert!(heldout[corpus]["accuracy"].as_f64().unwrap() > 0.85, "{corpus}: {}", heldout[corpus]);
    }
}

#[test]
fn short_excerpts_are_embedded_as_short_clips_are_served() {
    use emotion_ai::train::voice_data::{VoiceClip, VoiceLabel};
    use emotion_ai::train::voice_sex::{short_excerpts, EXCERPT_SECONDS};
    let encoder = encoder();
    let clip = |samples: Vec<f32>| VoiceClip {
        samples,
        label: VoiceLabel { emotion: None, sex: 1, speaker: "test:1".into() },
        path: Default::default(),
    };
    let long = espeak_samples("en+m3", "The weather was lovely this morning, so we walked to the station together.");
    assert!(long.len() as f64 > EXCERPT_SECONDS.1 * 16_000.0, "a sentence longer than any excerpt");
    // A clip shorter than the shortest excerpt is its own excerpt.
    let word: Vec<f32> = long[8_000..14_000].to_vec();
    let clips = vec![clip(long.clone()), clip(word.clone())];

    let three = short_excerpts(&encoder, None, &clips, &[0, 1], 3, 7).unwrap();
    assert_eq!(three.clip, vec![0, 0, 0, 1, 1, 1], "copies per clip, in clip order");
    assert_eq!(three.embeddings.size(), [6, EMBEDDING_SIZE]);
    let norms = Vec::<f32>::try_from(three.embeddings.norm_scalaropt_dim(2, [1i64].as_slice(), false)).unwrap();
    assert!(norms.iter().all(|n| (n - 1.0).abs() < 1e-4), "unit embeddings: {norms:?}");
    let served = encoder.window_embeddings(&word, &[(0, word.len())], WINDOWING.window).unwrap().get(0);
    for row in 3..6 {
        assert!(cosine(&three.embeddings.get(row), &served) > 0.9999, "the short clip's excerpt is the clip as served");
    }
    // Excerpts of the sentence differ from each other and from the whole.
    let whole = encoder.window_embeddings(&long, &[(0, WINDOWING.window)], WINDOWING.window).unwrap().get(0);
    assert!(cosine(&three.embeddings.get(0), &three.embeddings.get(1)) < 0.9999);
    assert!(cosine(&three.embeddings.get(0), &whole) < 0.9999);

    let again = short_excerpts(&encoder, None, &clips, &[0, 1], 3, 7).unwrap();
    assert!(again.embeddings.allclose(&three.embeddings, 1e-6, 1e-6, false), "the seed fixes the excerpts");
    let other = short_excerpts(&encoder, None, &clips, &[0], 3, 8).unwrap();
    assert!(
        !other.embeddings.allclose(&three.embeddings.narrow(0, 0, 3), 1e-4, 1e-4, false),
        "another seed, other excerpts"
    );
    assert_eq!(short_excerpts(&encoder, None, &clips, &[0, 1], 0, 7).unwrap().clip.len(), 0, "none asked, none made");
}
