//! UTKFace for the face sex model: file-name labels, crops made by the serving
//! pipeline, and a fixed seeded split.
//!
//! UTKFace's names are `[age]_[sex]_[race]_[datetime].jpg.chip.jpg` with sex
//! 0 = male, 1 = female. Each 200x200 aligned face is decoded like an upload,
//! and a [`FaceFinder`] (by default the server's: CenterFace, its candidates
//! judged by the face verifier) crops it where it finds the face, so the
//! network trains on the framing it will see; where it finds none, the median
//! detected box of the set stands in.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use image::GrayImage;
use tch::Tensor;

use super::fer2013::FaceSet;
use crate::decode::{decode_image, ImageLimits};
use crate::detect::{crop_face_as, AnyDetector, CropSpec, DetectParams, DetectorChoice, FaceBox};
use crate::model::verifier::FaceVerifier;
use crate::model::voice::SEXES;

/// How the faces are found before they are cropped: a detector and, as the
/// server does, the face verifier judging its candidates (at the detector's
/// threshold). The shipped sex model learned on the Haar cascade's crops
/// without a verifier.
#[derive(Debug, Clone)]
pub struct FaceFinder {
    pub detector: DetectorChoice,
    /// Face verifier weights; `None` keeps every candidate.
    pub verifier: Option<PathBuf>,
}

impl FaceFinder {
    /// The detector and verifier loaded for one thread.
    pub fn load(&self) -> Result<LoadedFinder> {
        let detector = AnyDetector::new(&self.detector, DetectParams::default())?;
        let verifier = self.verifier.as_deref().map(FaceVerifier::load).transpose()?;
        Ok(LoadedFinder { choice: self.detector.clone(), detector, verifier })
    }

    /// The `train face-sex` / `eval face-sex` options that give this finder
    /// (paths left at their defaults).
    pub fn options(&self) -> String {
        let verifier = if self.verifier.is_some() { "" } else { " --face-verifier-model none" };
        format!("--detector {}{verifier}", self.detector.name())
    }

    /// What the card and logs call it.
    pub fn describe(&self) -> String {
        let verified = if self.verifier.is_some() { " with the face verifier" } else { "" };
        format!("{}{verified}", self.detector.name())
    }
}

/// A [`FaceFinder`] loaded for one thread.
pub struct LoadedFinder {
    choice: DetectorChoice,
    detector: AnyDetector,
    verifier: Option<FaceVerifier>,
}

impl LoadedFinder {
    /// The faces kept in `gray`, largest first.
    pub fn faces(&mut self, gray: &GrayImage) -> Result<Vec<FaceBox>> {
        let boxes = self.detector.detect(gray)?;
        match &self.verifier {
            Some(verifier) => Ok(verifier.keep_faces(gray, boxes, &self.choice)?.0),
            None => Ok(boxes),
        }
    }
}

/// What a UTKFace file name says about its face.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtkLabel {
    pub age: u32,
    /// Index into [`SEXES`] (0 female, 1 male).
    pub sex: i64,
    /// UTKFace's race field: 0 White, 1 Black, 2 Asian, 3 Indian, 4 other.
    pub race: u32,
}

/// Names of UTKFace's race groups, by the file names' race field.
pub const RACES: [&str; 5] = ["White", "Black", "Asian", "Indian", "other"];

/// Parses `[age]_[sex]_[race]_[datetime].jpg.chip.jpg`; `None` for names
/// missing a field (two such files exist) or with out-of-range values.
pub fn parse_name(name: &str) -> Option<UtkLabel> {
    let fields: Vec<&str> = name.split('.').next()?.split('_').collect();
    if fields.len() != 4 || fields[3].is_empty() {
        return None;
    }
    let age: u32 = fields[0].parse().ok()?;
    let race: u32 = fields[2].parse().ok()?;
    if !(1..=120).contains(&age) || race > 4 {
        return None;
    }
    let sex = match fields[1] {
        "0" => SEXES.iter().position(|s| *s == "male")?,
        "1" => SEXES.iter().position(|s| *s == "female")?,
        _ => return None,
    };
    Some(UtkLabel { age, sex: sex as i64, race })
}

/// The three parts of the fixed split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    Train,
    Validation,
    Test,
}

/// Assigns a file to a part by a seeded hash of its name: 80% train, 10%
/// validation, 10% test. A name keeps its part whatever else is in the folder,
/// so the held-out set never leaks into training when files are added.
pub fn part_of(name: &str, seed: u64) -> Part {
    // FNV-1a, seeded: stable across platforms and Rust versions.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    for byte in name.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    match hash % 10 {
        0 => Part::Test,
        1 => Part::Validation,
        _ => Part::Train,
    }
}

/// One part of the data set: faces and sex labels, with each face's age,
/// race field and whether the detector found it.
pub struct SexSet {
    pub faces: FaceSet,
    pub ages: Vec<u32>,
    pub races: Vec<u32>,
    pub detected: Vec<bool>,
}

impl SexSet {
    /// Indices of adults (18 and over).
    pub fn adult_indices(&self) -> Vec<i64> {
        self.indices_aged_at_least(18)
    }

    /// Indices of the faces aged `min_age` or more.
    pub fn indices_aged_at_least(&self, min_age: u32) -> Vec<i64> {
        self.ages.iter().enumerate().filter(|(_, &a)| a >= min_age).map(|(i, _)| i as i64).collect()
    }

    /// The part made of the faces at `indices`, with their fields.
    pub fn subset(&self, indices: &[i64]) -> SexSet {
        let pick = |v: &[u32]| indices.iter().map(|&i| v[i as usize]).collect::<Vec<u32>>();
        SexSet {
            faces: self.select(indices),
            ages: pick(&self.ages),
            races: pick(&self.races),
            detected: indices.iter().map(|&i| self.detected[i as usize]).collect(),
        }
    }

    /// Indices of adults of race group `race`.
    pub fn adult_indices_of_race(&self, race: u32) -> Vec<i64> {
        self.adult_indices().into_iter().filter(|&i| self.races[i as usize] == race).collect()
    }

    /// The subset at `indices`.
    pub fn select(&self, indices: &[i64]) -> FaceSet {
        self.faces.select(indices)
    }
}

/// A decoded, cropped face.
struct Crop {
    part: Part,
    label: UtkLabel,
    /// The crops (one per [`CropSpec`] asked for) where the detector found
    /// the face...
    pixels: Option<Vec<Vec<u8>>>,
    /// ...and then the box as fractions of the image (x, y, width, height).
    relative_box: Option<[f64; 4]>,
    /// The whole image where it did not.
    gray: Option<GrayImage>,
}

/// Lists the labelled image files under `dir` (recursively), sorted by name.
pub fn list(dir: &Path) -> Result<Vec<(PathBuf, UtkLabel)>> {
    if !dir.is_dir() {
        bail!("{} is not a directory (expected UTKFace, e.g. ../shared/datasets/utkface)", dir.display());
    }
    let mut files: Vec<(PathBuf, UtkLabel)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| {
            let name = e.file_name().to_str()?.to_string();
            name.ends_with(".jpg").then_some(())?;
            Some((e.path().to_path_buf(), parse_name(&name)?))
        })
        .collect();
    files.sort_by(|a, b| a.0.cmp(&b.0));
    if files.is_empty() {
        bail!("no UTKFace images ([age]_[sex]_[race]_[datetime].jpg...) under {}", dir.display());
    }
    Ok(files)
}

/// Loads UTKFace from `dir`, crops every face that `finder` finds
/// (`threads` detectors in parallel) as `spec` says and returns the train,
/// validation and test parts of the split seeded by `seed`.
pub fn load(dir: &Path, finder: &FaceFinder, seed: u64, threads: usize, spec: CropSpec) -> Result<[SexSet; 3]> {
    let mut sets = load_each(dir, finder, seed, threads, &[spec])?;
    sets.pop().context("one crop asked for, one given")
}

/// [`load`] for several crops of the same faces (a network's and a head's):
/// each image is decoded and searched once, and every face cut as each of
/// `specs` says; one set of parts per spec, in order, holding the same faces.
pub fn load_each(
    dir: &Path,
    finder: &FaceFinder,
    seed: u64,
    threads: usize,
    specs: &[CropSpec],
) -> Result<Vec<[SexSet; 3]>> {
    if specs.is_empty() {
        bail!("no crop asked for");
    }
    let files = list(dir)?;
    let threads = threads.max(1);
    let chunk = files.len().div_ceil(threads);
    let crops: Vec<Crop> = std::thread::scope(|scope| -> Result<Vec<Crop>> {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|files| {
                scope.spawn(move || -> Result<Vec<Crop>> {
                    let mut finder = finder.load()?;
                    files.iter().map(|(path, label)| crop_file(&mut finder, path, *label, seed, specs)).collect()
                })
            })
            .collect();
        let mut all = Vec::new();
        for worker in workers {
            all.extend(worker.join().map_err(|_| anyhow::anyhow!("a loading thread panicked"))??);
        }
        Ok(all)
    })?;

    // Stand-in box for faces the detector misses: the median detected box,
    // relative to the (equal-sized) aligned images.
    let fallback = median_box(&crops);
    let detected = crops.iter().filter(|c| c.pixels.is_some()).count();
    tracing::info!(files = crops.len(), detected, finder = finder.describe(), "UTKFace faces cropped");

    // Per spec, per part: pixels; per part: labels, ages, races, detected.
    let mut pixels = vec![[Vec::new(), Vec::new(), Vec::new()]; specs.len()];
    let mut fields =
        [Part::Train, Part::Validation, Part::Test].map(|_| (Vec::new(), Vec::new(), Vec::new(), Vec::new()));
    for crop in crops {
        let (cut, found) = match (crop.pixels, crop.gray) {
            (Some(p), _) => (p, true),
            (None, Some(gray)) => {
                (specs.iter().map(|&spec| crop_face_as(&gray, fallback(&gray), spec).into_raw()).collect(), false)
            }
            (None, None) => continue,
        };
        let slot = match crop.part {
            Part::Train => 0,
            Part::Validation => 1,
            Part::Test => 2,
        };
        for (of_spec, face) in pixels.iter_mut().zip(cut) {
            of_spec[slot].extend_from_slice(&face);
        }
        let (ref mut labels, ref mut ages, ref mut races, ref mut det) = fields[slot];
        labels.push(crop.label.sex);
        ages.push(crop.label.age);
        races.push(crop.label.race);
        det.push(found);
    }
    Ok(specs
        .iter()
        .zip(pixels)
        .map(|(spec, of_spec)| {
            let side = i64::from(spec.size);
            std::array::from_fn(|slot| {
                let (labels, ages, races, detected) = fields[slot].clone();
                let n = labels.len() as i64;
                SexSet {
                    faces: FaceSet::new(
                        Tensor::from_slice(&of_spec[slot]).view([n, 1, side, side]),
                        Tensor::from_slice(&labels),
                    ),
                    ages,
                    races,
                    detected,
                }
            })
        })
        .collect())
}

fn crop_file(finder: &mut LoadedFinder, path: &Path, label: UtkLabel, seed: u64, specs: &[CropSpec]) -> Result<Crop> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let part = part_of(name, seed);
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let Ok(image) = decode_image(&bytes, ImageLimits::default()) else {
        tracing::warn!(path = %path.display(), "skipping an undecodable image");
        return Ok(Crop { part, label, pixels: None, relative_box: None, gray: None });
    };
    let boxes = finder.faces(&image.gray)?;
    let (w, h) = image.gray.dimensions();
    Ok(match boxes.first() {
        Some(&b) => Crop {
            part,
            label,
            pixels: Some(specs.iter().map(|&spec| crop_face_as(&image.gray, b, spec).into_raw()).collect()),
            relative_box: Some([
                f64::from(b.x) / f64::from(w),
                f64::from(b.y) / f64::from(h),
                f64::from(b.width) / f64::from(w),
                f64::from(b.height) / f64::from(h),
            ]),
            gray: None,
        },
        None => Crop { part, label, pixels: None, relative_box: None, gray: Some(image.gray) },
    })
}

/// The median detected box (each coordinate's median, as fractions of the
/// image), as a function giving that box for any image; the middle 60% when
/// nothing was detected.
fn median_box(crops: &[Crop]) -> impl Fn(&GrayImage) -> FaceBox {
    let boxes: Vec<[f64; 4]> = crops.iter().filter_map(|c| c.relative_box).collect();
    let relative = if boxes.is_empty() {
        [0.2, 0.2, 0.6, 0.6]
    } else {
        std::array::from_fn(|k| {
            let mut values: Vec<f64> = boxes.iter().map(|b| b[k]).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        })
    };
    move |gray: &GrayImage| {
        let (w, h) = (f64::from(gray.width()), f64::from(gray.height()));
        let x = (relative[0] * w).round().clamp(0.0, w - 1.0) as u32;
        let y = (relative[1] * h).round().clamp(0.0, h - 1.0) as u32;
        let width = ((relative[2] * w).round() as u32).clamp(1, gray.width() - x);
        let height = ((relative[3] * h).round() as u32).clamp(1, gray.height() - y);
        FaceBox { x, y, width, height }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_faces_of_the_minimum_age_or_older_are_kept_with_their_fields() {
        use tch::{Device, Kind};
        let n = 4;
        let set = SexSet {
            faces: FaceSet {
                images: Tensor::arange(n, (Kind::Uint8, Device::Cpu)).view([n, 1, 1, 1]),
                labels: Tensor::from_slice(&[0i64, 1, 1, 0]),
                names: vec!["a".into(), "b".into(), "c".into(), "d".into()],
                targets: None,
            },
            ages: vec![3, 18, 40, 17],
            races: vec![0, 1, 2, 3],
            detected: vec![true, false, true, true],
        };
        let adults = set.subset(&set.indices_aged_at_least(18));
        assert_eq!(adults.ages, [18, 40]);
        assert_eq!(adults.races, [1, 2]);
        assert_eq!(adults.detected, [false, true]);
        assert_eq!(Vec::<u8>::try_from(adults.faces.images.flatten(0, -1)).unwrap(), [1, 2]);
        assert_eq!(Vec::<i64>::try_from(&adults.faces.labels).unwrap(), [1, 1]);
        assert_eq!(set.subset(&set.indices_aged_at_least(0)).ages, set.ages);
    }

    #[test]
    fn names_give_age_and_sex_and_broken_names_are_skipped() {
        let female = SEXES.iter().position(|s| *s == "female").unwrap() as i64;
        let male = SEXES.iter().position(|s| *s == "male").unwrap() as i64;
        assert_eq!(
            parse_name("26_1_0_20170116171048641.jpg.chip.jpg"),
            Some(UtkLabel { age: 26, sex: female, race: 0 })
        );
        assert_eq!(parse_name("9_0_2_20161219204347420.jpg.chip.jpg"), Some(UtkLabel { age: 9, sex: male, race: 2 }));
        // The two names in the set that miss a field.
        assert_eq!(parse_name("61_1_20170109142408075.jpg.chip.jpg"), None);
        assert_eq!(parse_name("61_3_20170109150557335.jpg.chip.jpg"), None);
        assert_eq!(parse_name("26_2_0_20170116171048641.jpg.chip.jpg"), None);
        assert_eq!(parse_name("notes.txt"), None);
    }

    #[test]
    fn the_split_is_fixed_by_name_and_seed_and_about_80_10_10() {
        let names: Vec<String> =
            (0..5000).map(|i| format!("{}_{}_0_2017011617{i:07}.jpg.chip.jpg", i % 90, i % 2)).collect();
        let parts: Vec<Part> = names.iter().map(|n| part_of(n, 7)).collect();
        assert_eq!(parts, names.iter().map(|n| part_of(n, 7)).collect::<Vec<_>>(), "same seed, same split");
        let test = parts.iter().filter(|p| **p == Part::Test).count();
        let val = parts.iter().filter(|p| **p == Part::Validation).count();
        assert!((400..600).contains(&test) && (400..600).contains(&val), "test {test}, val {val}");
        let other: Vec<Part> = names.iter().map(|n| part_of(n, 8)).collect();
        assert_ne!(parts, other, "another seed, another split");
    }
}
