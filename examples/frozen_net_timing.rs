//! Timing (not a test): each shipped network as trained (`FaceNet`,
//! `VoiceNet`: batch norms as separate operations, channels-first) against
//! its frozen form (`FrozenFaceNet`, `FrozenVoiceNet`: batch norms folded,
//! channels-last), the two taking turns on one thread, on the batch serving
//! gives it: for the one-face portrait, the face and its mirror image (the
//! verifier: four candidates); for a clip, one 3 s window through the voice
//! ensemble. Prints medians and the largest difference in probability.
//! `cargo run --release --example frozen_net_timing -- [rounds]`
use std::path::Path;
use std::time::Instant;

use emotion_ai::model::voice::{LoadedVoiceModel, VoiceClassifier};
use emotion_ai::model::{FaceClassifier, LoadedFaceModel};
use tch::{Device, Kind, Tensor};

fn main() -> anyhow::Result<()> {
    tch::set_num_threads(1);
    let rounds: usize = std::env::args().nth(1).map_or(Ok(200), |a| a.parse())?;
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    for (name, faces, mirror) in [("face_emotion", 1, true), ("face_sex", 1, false), ("face_verifier", 4, false)] {
        let model = LoadedFaceModel::load(&models.join(format!("{name}.safetensors")))?;
        let side = model.card.architecture.input_size;
        tch::manual_seed(1);
        let x = Tensor::rand([faces, 1, side, side], (Kind::Float, Device::Cpu)) * 255.0;
        let what = format!("{name} ({faces} face(s){})", if mirror { " and mirror images" } else { "" });
        compare(
            &what,
            rounds,
            || model.net.predict_proba_with(&x, mirror),
            || model.frozen.predict_proba_with(&x, mirror),
        );
    }
    let voice = LoadedVoiceModel::load(&models.join("voice_emotion.safetensors"))?;
    tch::manual_seed(1);
    let rows = voice.card.architecture.n_mfcc;
    let window = Tensor::randn([1, rows, 300], (Kind::Float, Device::Cpu)) * 10.0;
    let what = format!("voice_emotion ({} networks, one 3 s window)", voice.net.members.len());
    compare(&what, rounds, || voice.net.predict_proba(&window), || voice.frozen.predict_proba(&window));
    Ok(())
}

/// Times `trained` and `frozen` taking turns and prints their medians and
/// the largest difference between their answers.
fn compare(what: &str, rounds: usize, trained: impl Fn() -> Tensor, frozen: impl Fn() -> Tensor) {
    let (mut trained_ms, mut frozen_ms) = (Vec::new(), Vec::new());
    for round in 0..rounds + 5 {
        let started = Instant::now();
        let p = trained();
        let t = started.elapsed().as_secs_f64() * 1e3;
        let started = Instant::now();
        let q = frozen();
        let f = started.elapsed().as_secs_f64() * 1e3;
        if round >= 5 {
            trained_ms.push(t);
            frozen_ms.push(f);
        }
        if round == 0 {
            println!("{what}: largest probability difference {:.1e}", (p - q).abs().max().double_value(&[]));
        }
    }
    for times in [&mut trained_ms, &mut frozen_ms] {
        times.sort_by(f64::total_cmp);
    }
    let median = |t: &[f64]| t[t.len() / 2];
    println!(
        "{what}: as trained {:.2} ms, frozen {:.2} ms (median of {rounds})",
        median(&trained_ms),
        median(&frozen_ms)
    );
}
