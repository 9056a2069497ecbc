//! The analyzer runs independent parts of one request side by side (the two
//! face networks; the two halves of a long clip's windows) and lends each
//! concurrent request its own copy of every network. Neither may change an
//! answer: these tests compare with the plain sequential computation and
//! with answers given one at a time.

mod common;

use std::sync::Arc;

use common::*;
use emotion_ai::decode::audio::DecodedAudio;
use emotion_ai::model::voice::LoadedVoiceModel;
use emotion_ai::predict::voice::predict_clip;

fn probabilities(d: &emotion_ai::predict::Distribution) -> Vec<f32> {
    d.probabilities.iter().map(|p| p.probability).collect()
}

fn assert_close(a: &[f32], b: &[f32], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}");
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0f32, f32::max);
    // Batches of different sizes may take different convolution kernels,
    // which round differently; a wrong window or order moves values by far more.
    assert!(worst < 1e-5, "{what}: largest difference {worst}");
}

#[test]
fn a_long_clip_split_in_two_halves_matches_one_sequential_pass() {
    let analyzer = analyzer();
    let samples = repeated_speech(11);
    let audio = DecodedAudio { samples: samples.clone(), sample_rate: 16_000, source_rate: 16_000, source_channels: 1 };
    let answer = analyzer.analyze_audio(&audio).expect("analysis");

    let model = LoadedVoiceModel::load(&root().join("models/voice_emotion.safetensors")).expect("voice model");
    let extractor = analyzer.voice_emotion_card().input.extractor();
    let config = analyzer.config();
    let head = config.voice_sex_model.as_ref().map(|weights| {
        emotion_ai::model::speaker::SpeakerSexModel::load(weights, &config.speaker_encoder).expect("voice sex head")
    });
    let sequential =
        predict_clip(&model.net, &extractor, head.as_ref(), &samples, analyzer.windowing()).expect("sequential");

    assert!(answer.timeline.len() >= 8, "an 11 s clip has 9 windows, got {}", answer.timeline.len());
    assert_eq!(answer.timeline.len(), sequential.windows.len());
    for (i, (window, expected)) in answer.timeline.iter().zip(&sequential.windows).enumerate() {
        assert_eq!(window.start_seconds, expected.start as f32 / 16_000.0, "window {i} start");
        let emotion: Vec<f32> = emotion_ai::predict::voice::emotion_marginal(&expected.joint);
        assert_close(&probabilities(&window.emotion), &emotion, &format!("window {i}"));
    }
    assert_close(&probabilities(&answer.classes), &sequential.joint, "clip");
}

#[test]
fn concurrent_requests_get_the_answers_given_one_at_a_time() {
    let analyzer = analyzer();
    let photo = fixture("group.jpg");
    let clip = wav(16_000, &repeated_speech(5));
    let alone_image = analyzer.analyze_image_bytes(&photo).expect("image");
    let alone_audio = analyzer.analyze_audio_bytes(&clip).expect("audio");
    // More concurrent requests than the pools hold copies: they lend more.
    let answers: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..6)
            .map(|i| {
                let (analyzer, photo, clip) = (Arc::clone(&analyzer), &photo, &clip);
                scope.spawn(move || {
                    if i % 2 == 0 {
                        (Some(analyzer.analyze_image_bytes(photo).expect("image")), None)
                    } else {
                        (None, Some(analyzer.analyze_audio_bytes(clip).expect("audio")))
                    }
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("no panic")).collect()
    });
    for (image, audio) in answers {
        if let Some(image) = image {
            assert_eq!(image.faces.len(), 3);
            for (face, alone) in image.faces.iter().zip(&alone_image.faces) {
                assert_eq!(face.bbox, alone.bbox);
                assert_close(&probabilities(&face.emotion), &probabilities(&alone.emotion), "face emotion");
                assert_close(&probabilities(&face.sex), &probabilities(&alone.sex), "face sex");
            }
        }
        if let Some(audio) = audio {
            assert_close(&probabilities(&audio.classes), &probabilities(&alone_audio.classes), "clip");
        }
    }
}
