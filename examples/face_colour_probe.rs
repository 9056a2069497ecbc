//! Probe (not served): would the face sex head gain from colour? The
//! embedder learned on colour photos, but the pipeline decodes to grey and
//! the served head reads three equal channels. Here each UTKFace face is
//! found as served (CenterFace and the verifier, on the grey image) and cut
//! twice at the same box: grey, and in colour. A head is fitted on each
//! (train part, one pass, penalties as `train face-sex-head`) and measured on
//! the validation adults, alone and blended half and half with the shipped
//! face sex network. Faces the finder misses are left out of both.
//! `cargo run --release --example face_colour_probe -- ../shared/datasets/utkface`
use std::path::{Path, PathBuf};

use emotion_ai::decode::{decode_image, ImageLimits};
use emotion_ai::detect::{crop_face_as, CropSpec};
use emotion_ai::model::face_embedder::{FaceEmbedder, DEFAULT_FACE_EMBEDDER, EMBEDDER_INPUT};
use emotion_ai::model::LoadedFaceModel;
use emotion_ai::train::face_sex::SPLIT_SEED;
use emotion_ai::train::face_sex_head::PENALTIES;
use emotion_ai::train::logistic::fit_logistic;
use emotion_ai::train::utkface::{list, part_of, FaceFinder, Part};
use image::GrayImage;
use tch::{Kind, Tensor};

struct Face {
    part: Part,
    male: bool,
    adult: bool,
    grey: Vec<u8>,
    rgb: Vec<u8>,
    face48: Vec<u8>,
}

fn faces_of(
    files: &[(PathBuf, emotion_ai::train::utkface::UtkLabel)],
    finder: &FaceFinder,
) -> anyhow::Result<Vec<Face>> {
    let mut loaded = finder.load()?;
    let spec = CropSpec { size: EMBEDDER_INPUT as u32, margin: 0.0 };
    let mut out = Vec::new();
    for (path, label) in files {
        let bytes = std::fs::read(path)?;
        let image = decode_image(&bytes, ImageLimits::default())?;
        let Some(&face) = loaded.faces(&image.gray)?.first() else { continue };
        let rgb = image::load_from_memory(&bytes)?.to_rgb8();
        let channel =
            |c: usize| GrayImage::from_fn(rgb.width(), rgb.height(), |x, y| image::Luma([rgb.get_pixel(x, y)[c]]));
        let planes: Vec<Vec<u8>> = (0..3).map(|c| crop_face_as(&channel(c), face, spec).into_raw()).collect();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        out.push(Face {
            part: part_of(name, SPLIT_SEED),
            male: label.sex == 1,
            adult: label.age >= 18,
            grey: crop_face_as(&image.gray, face, spec).into_raw(),
            rgb: planes.concat(),
            face48: crop_face_as(&image.gray, face, CropSpec::FACE).into_raw(),
        });
    }
    Ok(out)
}

fn describe(embedder: &FaceEmbedder, faces: &[&Face], colour: bool) -> Tensor {
    let side = EMBEDDER_INPUT;
    let parts: Vec<Tensor> = faces
        .chunks(64)
        .map(|chunk| {
            let batch = if colour {
                let flat: Vec<u8> = chunk.iter().flat_map(|f| f.rgb.iter().copied()).collect();
                Tensor::from_slice(&flat).view([chunk.len() as i64, 3, side, side])
            } else {
                let flat: Vec<u8> = chunk.iter().flat_map(|f| f.grey.iter().copied()).collect();
                Tensor::from_slice(&flat).view([chunk.len() as i64, 1, side, side]).expand([-1, 3, side, side], false)
            };
            tch::no_grad(|| embedder.forward(&batch))
        })
        .collect();
    Tensor::cat(&parts, 0)
}

fn main() -> anyhow::Result<()> {
    let data = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "../shared/datasets/utkface".into()));
    let finder =
        FaceFinder { detector: Default::default(), verifier: Some(PathBuf::from("models/face_verifier.safetensors")) };
    let files = list(&data)?;
    let half = files.len() / 2;
    let faces: Vec<Face> = std::thread::scope(|scope| -> anyhow::Result<Vec<Face>> {
        let a = scope.spawn(|| faces_of(&files[..half], &finder));
        let b = faces_of(&files[half..], &finder)?;
        let mut all = a.join().map_err(|_| anyhow::anyhow!("a thread panicked"))??;
        all.extend(b);
        Ok(all)
    })?;
    tch::set_num_threads(2);
    let train: Vec<&Face> = faces.iter().filter(|f| f.part == Part::Train).collect();
    let val: Vec<&Face> = faces.iter().filter(|f| f.part == Part::Validation).collect();
    let adults: Vec<usize> = (0..val.len()).filter(|&i| val[i].adult).collect();
    eprintln!("{} faces found: {} train, {} validation ({} adults)", faces.len(), train.len(), val.len(), adults.len());
    let network = LoadedFaceModel::load(Path::new("models/face_sex.safetensors"))?;
    let flat: Vec<u8> = val.iter().flat_map(|f| f.face48.iter().copied()).collect();
    let x48 = Tensor::from_slice(&flat).view([val.len() as i64, 1, 48, 48]).to_kind(Kind::Float);
    let network_male = Vec::<f32>::try_from(tch::no_grad(|| network.net.predict_proba(&x48)).select(1, 1))?;
    let accuracy = |male: &[f32]| {
        adults.iter().filter(|&&i| (male[i] > 0.5) == val[i].male).count() as f64 / adults.len() as f64 * 100.0
    };
    println!("network alone: validation adults {:.2}%", accuracy(&network_male));
    let embedder = FaceEmbedder::load(Path::new(DEFAULT_FACE_EMBEDDER))?;
    let y: Vec<f32> = train.iter().map(|f| f32::from(u8::from(f.male))).collect();
    let males = y.iter().filter(|&&v| v > 0.5).count() as f32;
    let weights: Vec<f32> =
        y.iter().map(|&v| if v > 0.5 { 0.5 / males } else { 0.5 / (y.len() as f32 - males) }).collect();
    for colour in [false, true] {
        let (train_x, val_x) = (describe(&embedder, &train, colour), describe(&embedder, &val, colour));
        for penalty in PENALTIES {
            let fit = fit_logistic(&train_x, &y, &weights, penalty)?;
            let head = Vec::<f32>::try_from(tch::no_grad(|| fit.male_probability(&val_x)))?;
            let blend: Vec<f32> = head.iter().zip(&network_male).map(|(h, n)| (h + n) / 2.0).collect();
            println!(
                "{} penalty {penalty}: head alone {:.2}%, blend {:.2}%",
                if colour { "colour" } else { "grey  " },
                accuracy(&head),
                accuracy(&blend)
            );
        }
    }
    Ok(())
}
