//! Probe (not served): how well does a logistic head on the face embedder's
//! descriptor tell the sex of UTKFace's validation faces, alone and beside
//! the shipped face sex network?
//! `cargo run --release --example face_embed_probe -- ../shared/datasets/utkface 0.0 0.1`
//! (the numbers: margins around the detected box to try).
use std::path::{Path, PathBuf};

use emotion_ai::detect::CropSpec;
use emotion_ai::model::face_embedder::{FaceEmbedder, DEFAULT_FACE_EMBEDDER, EMBEDDER_INPUT};
use emotion_ai::model::LoadedFaceModel;
use emotion_ai::train::face_sex_head::describe_set;
use emotion_ai::train::logistic::fit_logistic;
use emotion_ai::train::utkface::{load, FaceFinder, SexSet};
use tch::nn::ModuleT;
use tch::{Kind, Tensor};

fn male_of_network(model: &LoadedFaceModel, set: &SexSet) -> Tensor {
    let x = set.faces.images.to_kind(Kind::Float);
    let p = tch::no_grad(|| {
        (model.net.forward_t(&x, false).softmax(-1, Kind::Float)
            + model.net.forward_t(&x.flip([3]), false).softmax(-1, Kind::Float))
            / 2.0
    });
    p.select(1, 1)
}

fn accuracy(male: &Tensor, set: &SexSet, idx: &[i64]) -> f64 {
    let idx = Tensor::from_slice(idx);
    let predicted = male.index_select(0, &idx).gt(0.5).to_kind(Kind::Int64);
    let labels = set.faces.labels.index_select(0, &idx);
    predicted.eq_tensor(&labels).to_kind(Kind::Float).mean(Kind::Float).double_value(&[]) * 100.0
}

fn main() -> anyhow::Result<()> {
    tch::set_num_threads(2);
    let mut args = std::env::args().skip(1);
    let data = PathBuf::from(args.next().unwrap_or_else(|| "../shared/datasets/utkface".into()));
    let margins: Vec<f64> = args.map(|a| a.parse()).collect::<Result<_, _>>()?;
    let finder =
        FaceFinder { detector: Default::default(), verifier: Some(PathBuf::from("models/face_verifier.safetensors")) };
    let embedder = FaceEmbedder::load(Path::new(DEFAULT_FACE_EMBEDDER))?;
    let network = LoadedFaceModel::load(Path::new("models/face_sex.safetensors"))?;
    let [_, val48, _] = load(&data, &finder, 2017, 2, network.card.input.crop())?;
    let net_male = male_of_network(&network, &val48);
    let adults = val48.adult_indices();
    println!("network alone: val adults {:.2}%", accuracy(&net_male, &val48, &adults));
    for margin in margins {
        let [train, val, _] = load(&data, &finder, 2017, 2, CropSpec { size: EMBEDDER_INPUT as u32, margin })?;
        let started = std::time::Instant::now();
        let train_x = describe_set(&embedder, &train, true);
        let val_x = describe_set(&embedder, &val, true);
        eprintln!("margin {margin}: embedded in {:.0} s", started.elapsed().as_secs_f64());
        let y: Vec<f32> = Vec::<i64>::try_from(&train.faces.labels)?.iter().map(|&l| l as f32).collect();
        let males = y.iter().filter(|&&v| v > 0.5).count() as f32;
        let females = y.len() as f32 - males;
        let weights: Vec<f32> = y.iter().map(|&v| if v > 0.5 { 0.5 / males } else { 0.5 / females }).collect();
        for penalty in [0.3, 0.1, 0.03, 0.01, 0.003, 0.001] {
            let fit = fit_logistic(&train_x, &y, &weights, penalty)?;
            let male = tch::no_grad(|| fit.male_probability(&val_x));
            let blend = (&male + &net_male) / 2.0;
            let all: Vec<i64> = (0..val.faces.labels.size()[0]).collect();
            println!(
                "margin {margin} penalty {penalty}: head val adults {:.2}% all {:.2}% | blend adults {:.2}% all {:.2}%",
                accuracy(&male, &val, &adults),
                accuracy(&male, &val, &all),
                accuracy(&blend, &val, &adults),
                accuracy(&blend, &val, &all)
            );
        }
    }
    Ok(())
}
