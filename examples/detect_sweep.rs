//! Compares face-detection settings on speed and on what they find; the
//! evidence behind [`DetectParams::default`] and the face verifier (README,
//! "Face detection").
//!
//! For each setting `CASCADE:SCALE_STEP:MIN_NEIGHBORS:MIN_FACE_FRACTION[+m][+d][+v]`
//! (`+m` with the mirror pass; `+d` keeping verified boxes that overlap, as
//! before `FaceVerifier::select`; `+vTHRESHOLD` for another threshold than the card's; CASCADE is a file name under Debian's `haarcascades/` without
//! `haarcascade_frontalface_` and `.xml`, e.g. `default` or `alt2`; `+v`
//! passes the candidates through the face verifier given by `--verifier`;
//! `+c` (with `+v`) asks CenterFace where the setting finds no face, as
//! served by `--detector haar-then-centerface`;
//! `centerface:HEAT[:MIN_FACE_FRACTION:MIN_FACE_PIXELS][@SIDE][+v]` is CenterFace at
//! that heat threshold instead of the cascade, reading a copy whose longest
//! side is at most SIDE (default `centerface::MAX_SIDE`, as served), the network from
//! `--centerface`, default where the setup script installs it, its
//! candidates verified at `centerface::VERIFIER_THRESHOLD` as served) it
//! prints a Markdown row:
//!
//! - the median detection (and verification) time on the one-face 640x480
//!   portrait fixture;
//! - the faces found on the fixtures (portrait 1, astronaut 1, group 3,
//!   coffee 0);
//! - with `--utkface DIR`: recall and false positives on synthetic scenes,
//!   four UTKFace faces of 40-200 px pasted on a smooth random 640x480
//!   background (the same scenes for every setting; nothing is written;
//!   `--scene-seed N` draws another 150, default 7).
//!   The faces come from the validation and test parts of the split the sex
//!   model and the verifier train on, so neither has seen them. Recall is
//!   also given by UTKFace's race field (0 White, 1 Black, 2 Asian, 3 Indian,
//!   4 other);
//!   A false positive is a box that matches no pasted face (its centre
//!   within 0.3 of the face's side, its side 0.35-1.25 of it); those that
//!   touch no face at all (phantoms on the background) are counted apart
//!   from boxes framing a face badly;
//! - with `--chips` (and `--utkface`): on standard error, the share of
//!   UTKFace's test-part chips (tight 200x200 face crops) with a box centred
//!   on the face, overall and by race;
//! - with `--photos DIR`: the face-free photos (`*.jpg`, `*.png`) with any
//!   detection, and how many detections they had in all.
//!
//! `cargo run --release --example detect_sweep -- --utkface ../shared/datasets/utkface --photos runs/photos/test --verifier models/face_verifier.safetensors alt2:1.2:2:0.06+v alt2:1.2:2:0.06+m+v`

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use emotion_ai::decode::{decode_image, ImageLimits};
use emotion_ai::detect::centerface::{CenterFace, CenterFaceParams, DEFAULT_CENTERFACE, MAX_SIDE, VERIFIER_THRESHOLD};
use emotion_ai::detect::{crop_face, AnyDetector, DetectParams, FaceBox, FaceDetector};
use emotion_ai::model::verifier::FaceVerifier;
use emotion_ai::train::face_verifier::{race_of, synthetic_scene, utkface_files, PastedFace, SCENE_FACE_SIZES};
use emotion_ai::train::utkface::{Part, RACES};
use image::GrayImage;
use rand::rngs::StdRng;
use rand::SeedableRng;

const CASCADES: &str = "/usr/share/opencv4/haarcascades";
const SCENES: usize = 150;

struct Setting {
    cascade: PathBuf,
    /// `Some(threshold)`: CenterFace (`--centerface`) instead of the cascade.
    centerface: Option<f32>,
    /// `+c`: CenterFace where the setting finds no face.
    fallback: bool,
    label: String,
    params: DetectParams,
    /// `Some` to verify, with a threshold other than the card's.
    verify: Option<Option<f32>>,
    /// `+d`: verified boxes that overlap one another are all kept (before
    /// `FaceVerifier::select` dropped the duplicates).
    overlaps_kept: bool,
}

fn parse_setting(spec: &str) -> Result<Setting> {
    // `+m`: with the mirror pass (DetectParams::mirror_pass).
    let mirror_pass = spec.contains("+m");
    let overlaps_kept = spec.contains("+d");
    let fallback = spec.contains("+c");
    let spec = spec.replace("+m", "").replace("+d", "").replace("+c", "");
    let spec = spec.as_str();
    // `+v` or `+vTHRESHOLD` (e.g. `+v0.8`): verified, at the card's or that threshold.
    let (spec, verify) = match spec.split_once("+v") {
        Some((rest, "")) => (rest, Some(None)),
        Some((rest, t)) => (rest, Some(Some(t.parse::<f32>().context("verifier threshold")?))),
        None => (spec, None),
    };
    // `@SIDE`: the longest side of the copy the detector reads.
    let (spec, max_side) = match spec.split_once('@') {
        Some((rest, side)) => (rest, Some(side.parse::<u32>().context("longest side")?)),
        None => (spec, None),
    };
    let parts: Vec<&str> = spec.split(':').collect();
    if let ["centerface", threshold, rest @ ..] = &parts[..] {
        // `centerface:HEAT[:MIN_FACE_FRACTION:MIN_FACE_PIXELS]`
        let cascade = DetectParams::default();
        let (fraction, pixels) = match rest {
            [] => (cascade.min_face_fraction, cascade.min_face_pixels),
            [f, p] => (f.parse().context("min face fraction")?, p.parse().context("min face pixels")?),
            _ => bail!("{spec}: expected centerface:HEAT[:MIN_FACE_FRACTION:MIN_FACE_PIXELS]"),
        };
        return Ok(Setting {
            cascade: PathBuf::new(),
            centerface: Some(threshold.parse().context("CenterFace threshold")?),
            label: format!(
                "CenterFace, heat {threshold}, longest side {} | - | - | {fraction}, {pixels} px | - | {}",
                max_side.unwrap_or(MAX_SIDE),
                match verify {
                    None => "no".to_string(),
                    Some(None) => "yes".to_string(),
                    Some(Some(t)) => format!("yes, {t}"),
                } + if overlaps_kept { ", duplicates kept" } else { "" }
            ),
            params: DetectParams {
                min_face_fraction: fraction,
                min_face_pixels: pixels,
                max_side: max_side.unwrap_or(MAX_SIDE),
                ..cascade
            },
            verify,
            overlaps_kept,
            fallback,
        });
    }
    let [name, scale, neighbors, fraction] = parts[..] else {
        bail!("{spec}: expected CASCADE:SCALE_STEP:MIN_NEIGHBORS:MIN_FACE_FRACTION[+m][+d][+v]");
    };
    let params = DetectParams {
        scale_factor: scale.parse().context("scale step")?,
        min_neighbors: neighbors.parse().context("min neighbours")?,
        min_face_fraction: fraction.parse().context("min face fraction")?,
        mirror_pass,
        ..DetectParams::default()
    };
    Ok(Setting {
        cascade: Path::new(CASCADES).join(format!("haarcascade_frontalface_{name}.xml")),
        centerface: None,
        label: format!(
            "{name} | {scale} | {neighbors} | {fraction} | {} | {}",
            if mirror_pass { "yes" } else { "no" },
            match verify {
                None => "no".to_string(),
                Some(None) => "yes".to_string(),
                Some(Some(t)) => format!("yes, {t}"),
            } + if overlaps_kept { ", duplicates kept" } else { "" }
                + if fallback { ", then CenterFace where none" } else { "" }
        ),
        params,
        verify,
        overlaps_kept,
        fallback,
    })
}

fn scenes(utkface: &Path, seed: u64) -> Result<Vec<(GrayImage, Vec<PastedFace>)>> {
    let faces = utkface_files(&utkface.join("crop_part1"), &[Part::Validation, Part::Test])
        .or_else(|_| utkface_files(utkface, &[Part::Validation, Part::Test]))?;
    let mut rng = StdRng::seed_from_u64(seed);
    (0..SCENES).map(|_| synthetic_scene(&faces, &mut rng)).collect()
}

/// A setting's detector, and the verifier when the setting asks for it.
struct Finder<'a> {
    detector: AnyDetector,
    verifier: Option<&'a FaceVerifier>,
    overlaps_kept: bool,
    /// `+c`: CenterFace (default heat, verified at its own threshold) asked
    /// where the setting finds no face, as `--detector haar-then-centerface` serves.
    fallback: Option<CenterFace>,
}

impl Finder<'_> {
    fn find(&mut self, gray: &GrayImage) -> Result<Vec<FaceBox>> {
        let boxes = self.detector.detect(gray)?;
        let Some(verifier) = self.verifier else { return Ok(boxes) };
        let crops: Vec<Vec<u8>> = boxes.iter().map(|&b| crop_face(gray, b).into_raw()).collect();
        let keep = if self.overlaps_kept { verifier.faces(&crops)? } else { verifier.select(&boxes, &crops)? };
        let found: Vec<FaceBox> = boxes.into_iter().zip(keep).filter(|(_, k)| *k).map(|(b, _)| b).collect();
        match &mut self.fallback {
            Some(centerface) if found.is_empty() => {
                let boxes = centerface.detect(gray)?;
                let crops: Vec<Vec<u8>> = boxes.iter().map(|&b| crop_face(gray, b).into_raw()).collect();
                let keep = verifier.select_from(&boxes, &crops, VERIFIER_THRESHOLD)?;
                Ok(boxes.into_iter().zip(keep).filter(|(_, k)| *k).map(|(b, _)| b).collect())
            }
            _ => Ok(found),
        }
    }
}

fn load(path: &Path) -> Result<GrayImage> {
    Ok(decode_image(&std::fs::read(path).with_context(|| format!("{}", path.display()))?, ImageLimits::default())?.gray)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut utkface, mut photos, mut verifier_path, mut specs) = (None, None, None, Vec::new());
    let mut scene_seed = 7;
    let mut centerface_path = PathBuf::from(DEFAULT_CENTERFACE);
    let mut with_chips = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--utkface" => utkface = Some(PathBuf::from(args.next().ok_or_else(|| anyhow!("--utkface DIR"))?)),
            "--photos" => photos = Some(PathBuf::from(args.next().ok_or_else(|| anyhow!("--photos DIR"))?)),
            "--centerface" => centerface_path = PathBuf::from(args.next().ok_or_else(|| anyhow!("--centerface ONNX"))?),
            "--chips" => with_chips = true,
            "--scene-seed" => scene_seed = args.next().ok_or_else(|| anyhow!("--scene-seed N"))?.parse()?,
            "--verifier" => {
                verifier_path = Some(PathBuf::from(args.next().ok_or_else(|| anyhow!("--verifier WEIGHTS"))?))
            }
            _ => specs.push(parse_setting(&arg)?),
        }
    }
    if specs.is_empty() {
        specs.push(parse_setting("alt2:1.2:3:0.06")?);
    }
    if specs.iter().any(|s| s.verify.is_some()) && verifier_path.is_none() {
        bail!("a +v setting needs --verifier WEIGHTS");
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let fixture_images: Vec<GrayImage> = ["portrait_640x480", "astronaut", "group", "coffee"]
        .iter()
        .map(|n| load(&fixtures.join(format!("{n}.jpg"))))
        .collect::<Result<_>>()?;
    let scenes = match &utkface {
        Some(dir) => scenes(dir, scene_seed)?,
        None => {
            eprintln!("no --utkface: skipping the synthetic scenes");
            Vec::new()
        }
    };
    // Tight crops: UTKFace's test-part chips as they are.
    let chips: Vec<(GrayImage, u32)> = match (&utkface, with_chips) {
        (Some(dir), true) => utkface_files(&dir.join("crop_part1"), &[Part::Test])
            .or_else(|_| utkface_files(dir, &[Part::Test]))?
            .iter()
            .map(|p| Ok((load(p)?, race_of(p).unwrap_or(4))))
            .collect::<Result<_>>()?,
        _ => Vec::new(),
    };
    let mut photo_images = Vec::new();
    if let Some(dir) = &photos {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "jpg" || e == "png"))
            .collect();
        paths.sort();
        for p in paths {
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            photo_images.push((stem, load(&p)?));
        }
    }

    println!("| cascade | scale step | neighbours | smallest face | mirror pass | verifier | portrait ms | fixtures (1, 1, 3, 0) | scene recall | by face size (px) | by race ({}) | scene false positives | photos with detections |", RACES.join(", "));
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for setting in &specs {
        let verifier = match (setting.verify, &verifier_path) {
            (Some(threshold), Some(path)) => {
                let verifier = FaceVerifier::load(path)?;
                Some(match (threshold, setting.centerface) {
                    (Some(t), _) => verifier.with_threshold(t),
                    // As served: CenterFace's candidates at their own threshold.
                    (None, Some(_)) => verifier.with_threshold(VERIFIER_THRESHOLD),
                    (None, None) => verifier,
                })
            }
            _ => None,
        };
        let mut detector = Finder {
            detector: match setting.centerface {
                None => AnyDetector::Haar(FaceDetector::new(&setting.cascade, setting.params)?),
                Some(threshold) => AnyDetector::CenterFace(CenterFace::new(
                    &centerface_path,
                    CenterFaceParams {
                        threshold,
                        min_face_fraction: setting.params.min_face_fraction,
                        min_face_pixels: setting.params.min_face_pixels,
                        max_side: setting.params.max_side,
                        ..CenterFaceParams::default()
                    },
                )?),
            },
            verifier: verifier.as_ref(),
            overlaps_kept: setting.overlaps_kept,
            fallback: if setting.fallback {
                Some(CenterFace::new(&centerface_path, CenterFaceParams::default())?)
            } else {
                None
            },
        };
        let portrait = &fixture_images[0];
        for _ in 0..3 {
            detector.find(portrait)?;
        }
        let mut times: Vec<f64> = (0..15)
            .map(|_| {
                let start = Instant::now();
                detector.find(portrait).map(|_| start.elapsed().as_secs_f64() * 1000.0)
            })
            .collect::<Result<_>>()?;
        times.sort_by(f64::total_cmp);
        let found: Vec<String> =
            fixture_images.iter().map(|g| detector.find(g).map(|b| b.len().to_string())).collect::<Result<_>>()?;

        let (mut hits, mut total, mut false_pos, mut phantoms) = (0usize, 0usize, 0usize, 0usize);
        let mut by_size = [(0usize, 0usize); SCENE_FACE_SIZES.len()];
        let mut by_race = [(0usize, 0usize); RACES.len()];
        for (scene, truths) in &scenes {
            let boxes = detector.find(scene)?;
            for t in truths {
                let hit = boxes.iter().any(|b| t.matches(b));
                let slot = SCENE_FACE_SIZES.iter().position(|&s| s == t.size).unwrap_or(0);
                by_size[slot].0 += usize::from(hit);
                by_size[slot].1 += 1;
                let race = (t.race as usize).min(RACES.len() - 1);
                by_race[race].0 += usize::from(hit);
                by_race[race].1 += 1;
                hits += usize::from(hit);
                total += 1;
            }
            let unmatched: Vec<&FaceBox> = boxes.iter().filter(|b| !truths.iter().any(|t| t.matches(b))).collect();
            false_pos += unmatched.len();
            phantoms += unmatched.iter().filter(|b| !truths.iter().any(|t| t.touches(b))).count();
        }
        let recall =
            if total > 0 { format!("{hits}/{total} ({:.1}%)", 100.0 * hits as f64 / total as f64) } else { "-".into() };
        let sizes = if total > 0 {
            SCENE_FACE_SIZES
                .iter()
                .zip(by_size)
                .map(|(s, (h, n))| format!("{s}: {h}/{n}"))
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            "-".into()
        };
        let races = if total > 0 {
            by_race
                .iter()
                .map(|(h, n)| format!("{:.1}% of {n}", 100.0 * *h as f64 / (*n).max(1) as f64))
                .collect::<Vec<_>>()
                .join(", ")
        } else {
            "-".into()
        };
        let (mut with_detections, mut photo_detections) = (Vec::new(), 0);
        for (stem, gray) in &photo_images {
            let n = detector.find(gray)?.len();
            if n > 0 {
                photo_detections += n;
                with_detections.push(format!("{stem} {n}"));
            }
        }
        let (mut chips_found, mut chips_by_race) = (0usize, [(0usize, 0usize); RACES.len()]);
        for (chip, race) in &chips {
            let (w, h) = chip.dimensions();
            // Found: a box centred on the chip (within a fifth of its side).
            let hit = detector
                .find(chip)?
                .iter()
                .any(|b| (b.x + b.width / 2).abs_diff(w / 2) < w / 5 && (b.y + b.height / 2).abs_diff(h / 2) < h / 5);
            chips_found += usize::from(hit);
            let slot = &mut chips_by_race[(*race as usize).min(RACES.len() - 1)];
            slot.0 += usize::from(hit);
            slot.1 += 1;
        }
        if !chips.is_empty() {
            eprintln!(
                "{}: tight chips found {chips_found}/{} ({:.1}%), by race {}",
                setting.label,
                chips.len(),
                100.0 * chips_found as f64 / chips.len() as f64,
                chips_by_race
                    .iter()
                    .map(|(h, n)| format!("{:.1}% of {n}", 100.0 * *h as f64 / (*n).max(1) as f64))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        let photo_column = match (&photos, with_detections.is_empty()) {
            (None, _) => "-".to_string(),
            (Some(_), true) => format!("none of {}", photo_images.len()),
            (Some(_), false) => format!(
                "{} of {} ({photo_detections} detections): {}",
                with_detections.len(),
                photo_images.len(),
                with_detections.join(", ")
            ),
        };
        println!(
            "| {} | {:.1} | {} | {recall} | {sizes} | {races} | {} | {photo_column} |",
            setting.label,
            times[times.len() / 2],
            found.join(", "),
            if total > 0 { format!("{false_pos} ({phantoms} on no face)") } else { "-".into() },
        );
    }
    Ok(())
}
