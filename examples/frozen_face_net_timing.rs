//! Timing (not a test): each shipped face network as trained (`FaceNet`,
//! batch norms as separate operations, channels-first) against its frozen
//! form (`FrozenFaceNet`: batch norms folded, channels-last), the two taking
//! turns on one thread, on the batch serving gives it for the one-face
//! portrait (the face and its mirror image; the verifier's four candidates).
//! Prints medians and the largest difference in probability.
//! `cargo run --release --example frozen_face_net_timing -- [rounds]`
use std::path::Path;
use std::time::Instant;

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
        let (mut trained, mut frozen) = (Vec::new(), Vec::new());
        for round in 0..rounds + 5 {
            let started = Instant::now();
            let p = model.net.predict_proba_with(&x, mirror);
            let t = started.elapsed().as_secs_f64() * 1e3;
            let started = Instant::now();
            let q = model.frozen.predict_proba_with(&x, mirror);
            let f = started.elapsed().as_secs_f64() * 1e3;
            if round >= 5 {
                trained.push(t);
                frozen.push(f);
            }
            if round == 0 {
                println!("{name}: largest probability difference {:.1e}", (p - q).abs().max().double_value(&[]));
            }
        }
        for times in [&mut trained, &mut frozen] {
            times.sort_by(f64::total_cmp);
        }
        let median = |t: &[f64]| t[t.len() / 2];
        println!(
            "{name} ({faces} face(s){}): as trained {:.2} ms, frozen {:.2} ms (median of {rounds})",
            if mirror { " and mirror images" } else { "" },
            median(&trained),
            median(&frozen)
        );
    }
    Ok(())
}
