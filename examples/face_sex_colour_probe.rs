//! Probe (not served): would the face sex head tell the sexes apart better
//! from a colour crop than from the grey one it is served? The embedder
//! (dlib's ResNet) learned on colour faces; the pipeline decodes to grey and
//! gives it three equal channels.
//!
//! Every UTKFace chip in which the served finder (CenterFace and the face
//! verifier) finds a face is cut at that box as the server cuts it: 48 px
//! grey for the face sex network (read without its mirror image, as served
//! beside the head), 150 px grey for the head as served, and 150 px colour,
//! each channel cut exactly as the grey is. A logistic head on each kind of
//! descriptor is fitted on the train part (the sexes weighted alike) at each
//! penalty, and scored on the validation part as served: half the network,
//! half the head. Chips without a face found are left out of both arms.
//!
//! `cargo run --release --example face_sex_colour_probe -- ../shared/datasets/utkface [--test]`
//! (`--test` also scores the test part, for the arm and penalty validation chose).
use std::path::{Path, PathBuf};

use emotion_ai::decode::{decode_image, ImageLimits};
use emotion_ai::detect::{crop_face_as, CropSpec};
use emotion_ai::model::face_embedder::{FaceEmbedder, DEFAULT_FACE_EMBEDDER, EMBEDDER_INPUT};
use emotion_ai::model::{FaceClassifier, LoadedFaceModel};
use emotion_ai::train::logistic::fit_logistic;
use emotion_ai::train::utkface::{list, part_of, FaceFinder, Part};
use image::GrayImage;
use tch::{Kind, Tensor};

const PENALTIES: [f64; 6] = [0.3, 0.1, 0.03, 0.01, 0.003, 0.001];

/// One chip's crops and label.
struct Face {
    part: Part,
    male: bool,
    adult: bool,
    network: Vec<u8>,
    gray: Vec<u8>,
    /// Three planes, R then G then B.
    colour: Vec<u8>,
}

fn crops_of(
    finder: &mut emotion_ai::train::utkface::LoadedFinder,
    path: &Path,
) -> anyhow::Result<Option<[Vec<u8>; 3]>> {
    let bytes = std::fs::read(path)?;
    let Ok(decoded) = decode_image(&bytes, ImageLimits::default()) else { return Ok(None) };
    let Some(&face) = finder.faces(&decoded.gray)?.first() else { return Ok(None) };
    let rgb = image::load_from_memory(&bytes)?.to_rgb8();
    if rgb.dimensions() != decoded.gray.dimensions() {
        return Ok(None);
    }
    let head = CropSpec { size: EMBEDDER_INPUT as u32, margin: 0.0 };
    let (w, h) = rgb.dimensions();
    let mut colour = Vec::with_capacity(3 * (head.size * head.size) as usize);
    for channel in 0..3 {
        let plane = GrayImage::from_fn(w, h, |x, y| image::Luma([rgb.get_pixel(x, y)[channel]]));
        colour.extend(crop_face_as(&plane, face, head).into_raw());
    }
    let network = crop_face_as(&decoded.gray, face, CropSpec::FACE).into_raw();
    Ok(Some([network, crop_face_as(&decoded.gray, face, head).into_raw(), colour]))
}

fn describe(embedder: &FaceEmbedder, faces: &[&Face], colour: bool) -> Tensor {
    let side = EMBEDDER_INPUT;
    let parts: Vec<Tensor> = faces
        .chunks(64)
        .map(|chunk| {
            let channels = if colour { 3 } else { 1 };
            let pixels: Vec<u8> =
                chunk.iter().flat_map(|f| if colour { f.colour.clone() } else { f.gray.clone() }).collect();
            let x = Tensor::from_slice(&pixels).view([chunk.len() as i64, channels, side, side]).to_kind(Kind::Float);
            tch::no_grad(|| if colour { embedder.forward(&x) } else { embedder.forward_gray(&x) })
        })
        .collect();
    Tensor::cat(&parts, 0)
}

fn network_male(network: &LoadedFaceModel, faces: &[&Face]) -> Vec<f32> {
    let pixels: Vec<u8> = faces.iter().flat_map(|f| f.network.clone()).collect();
    let x = Tensor::from_slice(&pixels).view([faces.len() as i64, 1, 48, 48]).to_kind(Kind::Float);
    Vec::<f32>::try_from(network.frozen.predict_proba_with(&x, false).select(1, 1)).unwrap_or_default()
}

/// Right answers among adults: all, women, men.
fn score(male: &[f32], faces: &[&Face]) -> (usize, usize, f64, f64) {
    let (mut right, mut adults, mut women, mut women_right, mut men_right) = (0, 0, 0, 0, 0);
    for (p, f) in male.iter().zip(faces) {
        if !f.adult {
            continue;
        }
        adults += 1;
        let ok = (*p > 0.5) == f.male;
        right += usize::from(ok);
        if f.male {
            men_right += usize::from(ok);
        } else {
            women += 1;
            women_right += usize::from(ok);
        }
    }
    let men = adults - women;
    (right, adults, 100.0 * women_right as f64 / women.max(1) as f64, 100.0 * men_right as f64 / men.max(1) as f64)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let data = PathBuf::from(args.next().unwrap_or_else(|| "../shared/datasets/utkface".into()));
    let with_test = args.any(|a| a == "--test");
    tch::set_num_threads(2);
    let finder =
        FaceFinder { detector: Default::default(), verifier: Some(PathBuf::from("models/face_verifier.safetensors")) };
    let files = list(&data)?;
    let chunk = files.len().div_ceil(2);
    let faces: Vec<Face> = std::thread::scope(|scope| -> anyhow::Result<Vec<Face>> {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|files| {
                let finder = &finder;
                scope.spawn(move || -> anyhow::Result<Vec<Face>> {
                    tch::set_num_threads(1);
                    let mut finder = finder.load()?;
                    let mut out = Vec::new();
                    for (path, label) in files {
                        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
                        if let Some([network, gray, colour]) = crops_of(&mut finder, path)? {
                            out.push(Face {
                                part: part_of(name, 2017),
                                male: label.sex == 1,
                                adult: label.age >= 18,
                                network,
                                gray,
                                colour,
                            });
                        }
                    }
                    Ok(out)
                })
            })
            .collect();
        let mut all = Vec::new();
        for w in workers {
            all.extend(w.join().map_err(|_| anyhow::anyhow!("a loading thread panicked"))??);
        }
        Ok(all)
    })?;
    let of = |part: Part| -> Vec<&Face> { faces.iter().filter(|f| f.part == part).collect() };
    let (train, validation, test) = (of(Part::Train), of(Part::Validation), of(Part::Test));
    eprintln!("faces found: train {}, validation {}, test {}", train.len(), validation.len(), test.len());

    let embedder = FaceEmbedder::load(Path::new(DEFAULT_FACE_EMBEDDER))?;
    let network = LoadedFaceModel::load(Path::new("models/face_sex.safetensors"))?;
    let (val_net, test_net) = (network_male(&network, &validation), network_male(&network, &test));
    let (r, n, w, m) = score(&val_net, &validation);
    println!(
        "network alone\tvalidation adults {r}/{n} ({:.2}%)\twomen {w:.2}%\tmen {m:.2}%",
        100.0 * r as f64 / n as f64
    );

    let y: Vec<f32> = train.iter().map(|f| f32::from(u8::from(f.male))).collect();
    let males = y.iter().filter(|&&v| v > 0.5).count() as f32;
    let females = y.len() as f32 - males;
    let weights: Vec<f32> = y.iter().map(|&v| if v > 0.5 { 0.5 / males } else { 0.5 / females }).collect();
    for colour in [false, true] {
        let arm = if colour { "colour" } else { "grey (served)" };
        let (train_x, val_x) = (describe(&embedder, &train, colour), describe(&embedder, &validation, colour));
        let mut best: Option<(usize, f64)> = None;
        for penalty in PENALTIES {
            let fit = fit_logistic(&train_x, &y, &weights, penalty)?;
            let head = Vec::<f32>::try_from(tch::no_grad(|| fit.male_probability(&val_x)))?;
            let served: Vec<f32> = head.iter().zip(&val_net).map(|(h, n)| (h + n) / 2.0).collect();
            let (r, n, w, m) = score(&served, &validation);
            let (hr, _, _, _) = score(&head, &validation);
            println!(
                "{arm}\tpenalty {penalty}\tvalidation adults as served {r}/{n} ({:.2}%)\twomen {w:.2}%\tmen {m:.2}%\thead alone {hr}/{n}",
                100.0 * r as f64 / n as f64
            );
            if best.is_none_or(|(b, _)| r > b) {
                best = Some((r, penalty));
            }
        }
        if let (true, Some((_, penalty))) = (with_test, best) {
            let fit = fit_logistic(&train_x, &y, &weights, penalty)?;
            let head =
                Vec::<f32>::try_from(tch::no_grad(|| fit.male_probability(&describe(&embedder, &test, colour))))?;
            let served: Vec<f32> = head.iter().zip(&test_net).map(|(h, n)| (h + n) / 2.0).collect();
            let (r, n, w, m) = score(&served, &test);
            println!(
                "{arm}\tchosen penalty {penalty}\tTEST adults as served {r}/{n} ({:.2}%)\twomen {w:.2}%\tmen {m:.2}%",
                100.0 * r as f64 / n as f64
            );
        }
    }
    Ok(())
}
