//! Probe (not served): where does the served face finder put its box on a
//! FER2013 face, against the 48x48 frame the emotion network learned on?
//! Each PrivateTest face is scaled up 4 times (a 192 px face, as in a
//! photo), set in a mid-grey canvas and searched as the server searches
//! (CenterFace, the verifier); prints the share found, the kept box's
//! side and centre relative to the frame (quartiles), and the shipped
//! emotion network's accuracy on the FER2013 labels reading the face as
//! FER2013 gives it and as the server would cut it from such a photo.
//!
//! `cargo run --release --example fer_framing_probe -- ../shared/datasets/fer2013 [LIMIT]`
use std::path::PathBuf;

use emotion_ai::detect::{crop_face, DetectorChoice};
use emotion_ai::model::{FaceClassifier, LoadedFaceModel, EMOTIONS};
use emotion_ai::train::utkface::FaceFinder;
use image::imageops::{self, FilterType};
use image::{GrayImage, Luma};
use tch::Tensor;

fn quartiles(v: &mut [f64]) -> String {
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() - 1) as f64 * p).round() as usize];
    format!("{:.3} / {:.3} / {:.3}", q(0.25), q(0.5), q(0.75))
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = PathBuf::from(args.first().map_or("../shared/datasets/fer2013", String::as_str)).join("test");
    let limit: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1000);
    let finder = FaceFinder {
        detector: DetectorChoice::default(),
        verifier: Some(PathBuf::from("models/face_verifier.safetensors")),
    };
    let mut loaded = finder.load()?;
    let model = LoadedFaceModel::load(std::path::Path::new("models/face_emotion.safetensors"))?;
    // Top emotion of one 48x48 face, with its mirror image, as served.
    let top = |pixels: &[u8]| -> i64 {
        let batch = Tensor::from_slice(pixels).view([1, 1, 48, 48]);
        model.frozen.predict_proba_with(&batch, true).argmax(-1, false).int64_value(&[0])
    };
    let (mut direct_right, mut served_right, mut direct_right_found) = (0usize, 0usize, 0usize);
    let mut files: Vec<PathBuf> = Vec::new();
    for class in std::fs::read_dir(&root)? {
        for f in std::fs::read_dir(class?.path())? {
            let p = f?.path();
            if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("PrivateTest")) {
                files.push(p);
            }
        }
    }
    files.sort();
    // Every n-th file, so that every class is in the sample.
    let step = (files.len() / limit).max(1);
    let (scale, canvas_side) = (4u32, 400u32);
    let frame = 48 * scale;
    let offset = (canvas_side - frame) / 2;
    let (mut found, mut tried) = (0usize, 0usize);
    let (mut sides, mut dx, mut dy) = (Vec::new(), Vec::new(), Vec::new());
    for path in files.iter().step_by(step) {
        let face = image::open(path)?.to_luma8();
        let class = path.parent().and_then(|d| d.file_name()).and_then(|n| n.to_str()).unwrap_or_default();
        let truth = EMOTIONS.iter().position(|e| *e == class).map(|i| i as i64);
        let direct = top(face.as_raw()) == truth.unwrap_or(-1);
        direct_right += usize::from(direct);
        let big = imageops::resize(&face, frame, frame, FilterType::CatmullRom);
        let mut canvas = GrayImage::from_pixel(canvas_side, canvas_side, Luma([128]));
        imageops::replace(&mut canvas, &big, i64::from(offset), i64::from(offset));
        tried += 1;
        let centre = f64::from(canvas_side) / 2.0;
        let nearest = loaded.faces(&canvas)?.into_iter().min_by(|a, b| {
            let d = |f: &emotion_ai::detect::FaceBox| {
                (f64::from(f.x) + f64::from(f.width) / 2.0 - centre).abs()
                    + (f64::from(f.y) + f64::from(f.height) / 2.0 - centre).abs()
            };
            d(a).total_cmp(&d(b))
        });
        if let Some(b) = nearest {
            found += 1;
            direct_right_found += usize::from(direct);
            served_right += usize::from(top(crop_face(&canvas, b).as_raw()) == truth.unwrap_or(-1));
            let f = f64::from(frame);
            sides.push(f64::from(b.width) / f);
            dx.push((f64::from(b.x) + f64::from(b.width) / 2.0 - centre) / f);
            dy.push((f64::from(b.y) + f64::from(b.height) / 2.0 - centre) / f);
        }
    }
    println!("found {found} of {tried} faces");
    let pct = |n: usize, of: usize| 100.0 * n as f64 / of.max(1) as f64;
    println!(
        "emotion right: {:.2}% of all as FER2013 gives them; of the faces found, {:.2}% as given and {:.2}% as the server cuts them",
        pct(direct_right, tried),
        pct(direct_right_found, found),
        pct(served_right, found)
    );
    println!("box side / frame side, quartiles: {}", quartiles(&mut sides));
    println!("centre offset x / frame: {}", quartiles(&mut dx));
    println!("centre offset y / frame (+ = lower): {}", quartiles(&mut dy));
    Ok(())
}
