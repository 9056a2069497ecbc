//! Compares face-detection settings on speed and on what they find; the
//! evidence behind [`DetectParams::default`] (README, "Face detection").
//!
//! For each setting `CASCADE:SCALE_STEP:MIN_NEIGHBORS:MIN_FACE_FRACTION`
//! (CASCADE is a file name under Debian's `haarcascades/` without
//! `haarcascade_frontalface_` and `.xml`, e.g. `default` or `alt2`) it prints
//! a Markdown row:
//!
//! - the median detection time on the one-face 640x480 portrait fixture;
//! - the faces found on the fixtures (portrait 1, astronaut 1, group 3,
//!   coffee 0);
//! - with `--utkface DIR`: recall and false positives on synthetic scenes,
//!   four UTKFace crops of 40-200 px pasted on a smooth random 640x480
//!   background (the same scenes for every setting; nothing is written);
//! - with `--photos DIR`: the photos (`*.jpg`) with any detection.
//!
//! `cargo run --release --example detect_sweep -- --utkface ../shared/datasets/utkface --photos DIR default:1.1:6:0.06 alt2:1.2:3:0.06`

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use emotion_ai::decode::{decode_image, ImageLimits};
use emotion_ai::detect::{DetectParams, FaceBox, FaceDetector};
use image::imageops::{self, FilterType};
use image::{GrayImage, Luma};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CASCADES: &str = "/usr/share/opencv4/haarcascades";
const SCENES: usize = 150;
const SIZES: [u32; 6] = [40, 56, 80, 110, 150, 200];

struct Setting {
    cascade: PathBuf,
    label: String,
    params: DetectParams,
}

fn parse_setting(spec: &str) -> Result<Setting> {
    let parts: Vec<&str> = spec.split(':').collect();
    let [name, scale, neighbors, fraction] = parts[..] else {
        bail!("{spec}: expected CASCADE:SCALE_STEP:MIN_NEIGHBORS:MIN_FACE_FRACTION");
    };
    let params = DetectParams {
        scale_factor: scale.parse().context("scale step")?,
        min_neighbors: neighbors.parse().context("min neighbours")?,
        min_face_fraction: fraction.parse().context("min face fraction")?,
        ..DetectParams::default()
    };
    Ok(Setting {
        cascade: Path::new(CASCADES).join(format!("haarcascade_frontalface_{name}.xml")),
        label: format!("{name} | {scale} | {neighbors} | {fraction}"),
        params,
    })
}

/// A face pasted at `(x, y)` with side `size`.
struct Truth {
    x: u32,
    y: u32,
    size: u32,
}

impl Truth {
    /// A detection counts if its centre is near the pasted face's centre and
    /// its size is plausible for it (Haar boxes are tighter than UTKFace crops).
    fn matches(&self, b: &FaceBox) -> bool {
        let s = f64::from(self.size);
        let dx = f64::from(b.x) + f64::from(b.width) / 2.0 - (f64::from(self.x) + s / 2.0);
        let dy = f64::from(b.y) + f64::from(b.height) / 2.0 - (f64::from(self.y) + s / 2.0);
        dx.abs() < 0.3 * s && dy.abs() < 0.3 * s && (0.35 * s..=1.25 * s).contains(&f64::from(b.width))
    }
}

fn scenes(utkface: &Path) -> Result<Vec<(GrayImage, Vec<Truth>)>> {
    let dir = utkface.join("crop_part1");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
        .collect();
    files.sort();
    let mut rng = StdRng::seed_from_u64(7);
    let mut out = Vec::with_capacity(SCENES);
    for _ in 0..SCENES {
        // Smooth background: coarse noise scaled up.
        let coarse = GrayImage::from_fn(40, 30, |_, _| Luma([rng.random_range(40..220u8)]));
        let mut scene = imageops::resize(&coarse, 640, 480, FilterType::Triangle);
        let mut sizes = SIZES.to_vec();
        let mut truths = Vec::new();
        for (sx, sy) in [(20u32, 20u32), (340, 20), (20, 250), (340, 250)] {
            let size = sizes.remove(rng.random_range(0..sizes.len()));
            let path = &files[rng.random_range(0..files.len())];
            let face = image::open(path).with_context(|| format!("{}", path.display()))?.to_luma8();
            let face = imageops::resize(&face, size, size, FilterType::Triangle);
            let x = (sx + rng.random_range(0..=(210 - size.min(210)))).min(640 - size);
            let y = (sy + rng.random_range(0..=(210 - size.min(210)))).min(480 - size);
            imageops::replace(&mut scene, &face, i64::from(x), i64::from(y));
            truths.push(Truth { x, y, size });
        }
        out.push((scene, truths));
    }
    Ok(out)
}

fn load(path: &Path) -> Result<GrayImage> {
    Ok(decode_image(&std::fs::read(path).with_context(|| format!("{}", path.display()))?, ImageLimits::default())?.gray)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut utkface, mut photos, mut specs) = (None, None, Vec::new());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--utkface" => utkface = Some(PathBuf::from(args.next().ok_or_else(|| anyhow!("--utkface DIR"))?)),
            "--photos" => photos = Some(PathBuf::from(args.next().ok_or_else(|| anyhow!("--photos DIR"))?)),
            _ => specs.push(parse_setting(&arg)?),
        }
    }
    if specs.is_empty() {
        specs.push(parse_setting("default:1.1:6:0.06")?);
    }
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let fixture_images: Vec<GrayImage> = ["portrait_640x480", "astronaut", "group", "coffee"]
        .iter()
        .map(|n| load(&fixtures.join(format!("{n}.jpg"))))
        .collect::<Result<_>>()?;
    let scenes = match &utkface {
        Some(dir) => scenes(dir)?,
        None => {
            eprintln!("no --utkface: skipping the synthetic scenes");
            Vec::new()
        }
    };
    let mut photo_images = Vec::new();
    if let Some(dir) = &photos {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|e| e == "jpg"))
            .collect();
        paths.sort();
        for p in paths {
            let stem = p.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            photo_images.push((stem, load(&p)?));
        }
    }

    println!("| cascade | scale step | neighbours | smallest face | portrait ms | fixtures (1, 1, 3, 0) | scene recall | by face size (px) | scene false positives | photos with detections |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for setting in &specs {
        let mut detector = FaceDetector::new(&setting.cascade, setting.params)?;
        let portrait = &fixture_images[0];
        for _ in 0..3 {
            detector.detect(portrait)?;
        }
        let mut times: Vec<f64> = (0..15)
            .map(|_| {
                let start = Instant::now();
                detector.detect(portrait).map(|_| start.elapsed().as_secs_f64() * 1000.0)
            })
            .collect::<Result<_>>()?;
        times.sort_by(f64::total_cmp);
        let found: Vec<String> =
            fixture_images.iter().map(|g| detector.detect(g).map(|b| b.len().to_string())).collect::<Result<_>>()?;

        let (mut hits, mut total, mut false_pos) = (0usize, 0usize, 0usize);
        let mut by_size = [(0usize, 0usize); SIZES.len()];
        for (scene, truths) in &scenes {
            let boxes = detector.detect(scene)?;
            for t in truths {
                let hit = boxes.iter().any(|b| t.matches(b));
                let slot = SIZES.iter().position(|&s| s == t.size).unwrap_or(0);
                by_size[slot].0 += usize::from(hit);
                by_size[slot].1 += 1;
                hits += usize::from(hit);
                total += 1;
            }
            false_pos += boxes.iter().filter(|b| !truths.iter().any(|t| t.matches(b))).count();
        }
        let recall =
            if total > 0 { format!("{hits}/{total} ({:.1}%)", 100.0 * hits as f64 / total as f64) } else { "-".into() };
        let sizes = if total > 0 {
            SIZES.iter().zip(by_size).map(|(s, (h, n))| format!("{s}: {h}/{n}")).collect::<Vec<_>>().join(", ")
        } else {
            "-".into()
        };
        let mut with_detections = Vec::new();
        for (stem, gray) in &photo_images {
            let n = detector.detect(gray)?.len();
            if n > 0 {
                with_detections.push(format!("{stem} {n}"));
            }
        }
        println!(
            "| {} | {:.1} | {} | {recall} | {sizes} | {} | {} |",
            setting.label,
            times[times.len() / 2],
            found.join(", "),
            if total > 0 { false_pos.to_string() } else { "-".into() },
            if photos.is_some() { with_detections.join(", ") } else { "-".into() },
        );
    }
    Ok(())
}
