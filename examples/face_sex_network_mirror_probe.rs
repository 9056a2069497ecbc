//! Probe (not served): the served face sex on UTKFace's validation adults
//! when the face sex network reads the face alone instead of the face and
//! its mirror image (half its work), blended with the shipped face sex head.
//! `cargo run --release --example face_sex_network_mirror_probe -- ../shared/datasets/utkface`
use std::path::{Path, PathBuf};

use emotion_ai::model::face_embedder::{blend_sex, FaceSexHeadModel, DEFAULT_FACE_EMBEDDER};
use emotion_ai::model::LoadedFaceModel;
use emotion_ai::train::face_sex_head::describe_set;
use emotion_ai::train::utkface::{load, FaceFinder, SexSet};
use tch::Kind;

/// The network's probability of male, with or without the mirror image.
fn network_male(model: &LoadedFaceModel, set: &SexSet, mirror: bool) -> anyhow::Result<Vec<f32>> {
    let p = model.net.predict_proba_with(&set.faces.images.to_kind(Kind::Float), mirror);
    Ok(Vec::<f32>::try_from(p.select(1, 1))?)
}

/// Accuracy (%) of `male` on `set`'s adults: all, women, men.
fn adult_accuracy(male: &[f32], set: &SexSet) -> anyhow::Result<(f64, f64, f64, usize)> {
    let labels = Vec::<i64>::try_from(&set.faces.labels)?;
    let adults = set.adult_indices();
    let share = |sex: Option<i64>| {
        let chosen: Vec<usize> =
            adults.iter().map(|&i| i as usize).filter(|&i| sex.is_none_or(|s| labels[i] == s)).collect();
        let right = chosen.iter().filter(|&&i| i64::from(male[i] > 0.5) == labels[i]).count();
        100.0 * right as f64 / chosen.len().max(1) as f64
    };
    Ok((share(None), share(Some(0)), share(Some(1)), adults.len()))
}

fn main() -> anyhow::Result<()> {
    tch::set_num_threads(2);
    let data = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "../shared/datasets/utkface".into()));
    let finder =
        FaceFinder { detector: Default::default(), verifier: Some(PathBuf::from("models/face_verifier.safetensors")) };
    let network = LoadedFaceModel::load(Path::new("models/face_sex.safetensors"))?;
    let head = FaceSexHeadModel::load(Path::new("models/face_sex_head.safetensors"), Path::new(DEFAULT_FACE_EMBEDDER))?;
    let [_, val_net, _] = load(&data, &finder, 2017, 2, network.card.input.crop())?;
    let [_, val_head, _] = load(&data, &finder, 2017, 2, head.card.crop())?;
    let descriptors = describe_set(&head.embedder, &val_head, head.card.mirror);
    let head_male = Vec::<f32>::try_from(tch::no_grad(|| head.head.forward(&descriptors).sigmoid()))?;
    for mirror in [true, false] {
        let net = network_male(&network, &val_net, mirror)?;
        let served: Vec<f32> =
            net.iter().zip(&head_male).map(|(&n, &h)| blend_sex([1.0 - n, n], h, head.card.head_weight)[1]).collect();
        let (all, women, men, n) = adult_accuracy(&served, &val_net)?;
        let (alone, ..) = adult_accuracy(&net, &val_net)?;
        println!(
            "network mirror {mirror}: served validation adults {all:.2}% (women {women:.2}%, men {men:.2}%, \
             {n} adults); network alone {alone:.2}%"
        );
    }
    Ok(())
}
