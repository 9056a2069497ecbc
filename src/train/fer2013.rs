//! FER2013 loaders: the image-folder release and the original csv.
//!
//! Both give a [`FaceSet`] per split. The split comes from the original
//! `Usage` column, which the folder release keeps as the file-name prefix
//! (`Training_`, `PublicTest_`, `PrivateTest_`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use tch::Tensor;

use crate::model::{EMOTIONS, FACE_SIZE};

/// The three FER2013 splits, named as in the original csv's `Usage` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// 28,709 faces, for fitting.
    Training,
    /// 3,589 faces, the usual validation split.
    PublicTest,
    /// 3,589 faces, the usual test split (the one papers report).
    PrivateTest,
}

impl Split {
    fn from_usage(usage: &str) -> Option<Self> {
        match usage.trim() {
            "Training" => Some(Self::Training),
            "PublicTest" => Some(Self::PublicTest),
            "PrivateTest" => Some(Self::PrivateTest),
            _ => None,
        }
    }
}

/// Faces and labels of one split, held in memory (35,887 faces take 83 MB).
pub struct FaceSet {
    /// `[N, 1, 48, 48]` grey levels as `u8`.
    pub images: Tensor,
    /// `[N]` class indices (`i64`) into [`EMOTIONS`].
    pub labels: Tensor,
    /// Where each face came from, to join other annotations of the same
    /// faces (FER+ votes, the near-copy list): the folder release's relative
    /// path (`train/happy/Training_1.jpg`); empty where the source has none.
    pub names: Vec<String>,
    /// `[N, classes]` soft targets (rows summing to 1) trained on instead of
    /// the one-hot labels, e.g. FER+ votes mixed with the original label.
    pub targets: Option<Tensor>,
}

impl FaceSet {
    /// A set of `images` and their `labels`, without names or soft targets.
    pub fn new(images: Tensor, labels: Tensor) -> Self {
        Self { images, labels, names: Vec::new(), targets: None }
    }

    fn from_parts(pixels: Vec<u8>, labels: Vec<i64>, names: Vec<String>) -> Self {
        let n = labels.len() as i64;
        Self {
            names,
            ..Self::new(Tensor::from_slice(&pixels).view([n, 1, FACE_SIZE, FACE_SIZE]), Tensor::from_slice(&labels))
        }
    }

    /// The faces at `indices`, with their names and soft targets.
    pub fn select(&self, indices: &[i64]) -> FaceSet {
        let idx = Tensor::from_slice(indices);
        FaceSet {
            images: self.images.index_select(0, &idx),
            labels: self.labels.index_select(0, &idx),
            names: indices.iter().filter_map(|&i| self.names.get(i as usize).cloned()).collect(),
            targets: self.targets.as_ref().map(|t| t.index_select(0, &idx)),
        }
    }

    /// Number of faces.
    pub fn len(&self) -> usize {
        self.labels.size()[0] as usize
    }

    /// True when the split holds no face.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many faces each of `classes` classes has, by class index.
    pub fn class_counts(&self, classes: usize) -> Vec<i64> {
        let labels = Vec::<i64>::try_from(&self.labels).unwrap_or_default();
        let mut counts = vec![0; classes];
        for l in labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts
    }
}

/// Loads every split from `dir`, which is either the folder release
/// (`train/<class>/*.jpg`, `test/<class>/*.jpg`) or holds `fer2013.csv`.
/// `dir` may also name the csv file itself.
pub fn load(dir: &Path) -> Result<HashMap<Split, FaceSet>> {
    if dir.is_file() {
        return load_csv(dir);
    }
    let csv = dir.join("fer2013.csv");
    if csv.is_file() {
        return load_csv(&csv);
    }
    if dir.join("train").is_dir() || dir.join("test").is_dir() {
        return load_folders(dir);
    }
    bail!("{} holds neither FER2013's image folders (train/, test/) nor fer2013.csv", dir.display())
}

/// Index into [`EMOTIONS`] of a folder-release class name.
fn class_index(name: &str) -> Option<usize> {
    EMOTIONS.iter().position(|e| *e == name)
}

/// Reads the image-folder release. Files whose name appears under two classes
/// (a known quirk of this release) are skipped: their label is unknown.
pub fn load_folders(dir: &Path) -> Result<HashMap<Split, FaceSet>> {
    // (file name, split, class, path, path relative to `dir`)
    let mut entries: Vec<(String, Split, usize, std::path::PathBuf, String)> = Vec::new();
    for part in ["train", "test"] {
        let part_dir = dir.join(part);
        if !part_dir.is_dir() {
            continue;
        }
        for class_dir in std::fs::read_dir(&part_dir)? {
            let class_dir = class_dir?.path();
            let Some(class_name) = class_dir.file_name().and_then(|n| n.to_str()) else { continue };
            let Some(class) = class_index(class_name) else { continue };
            for file in std::fs::read_dir(&class_dir)? {
                let path = file?.path();
                let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else { continue };
                let Some((usage, _)) = name.split_once('_') else { continue };
                let Some(split) = Split::from_usage(usage) else { continue };
                let relative = format!("{part}/{class_name}/{name}");
                entries.push((name, split, class, path, relative));
            }
        }
    }
    if entries.is_empty() {
        bail!("no FER2013 images found under {}", dir.display());
    }
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (name, ..) in &entries {
        *seen.entry(name.clone()).or_default() += 1;
    }
    entries.retain(|(name, ..)| seen[name] == 1);
    entries.sort_by(|a, b| a.0.cmp(&b.0));

    // Per split: pixels, labels, names.
    type Parts = (Vec<u8>, Vec<i64>, Vec<String>);
    let mut parts: HashMap<Split, Parts> = HashMap::new();
    for (_, split, class, path, relative) in entries {
        let img = image::open(&path).with_context(|| format!("decoding {}", path.display()))?.to_luma8();
        let img = if img.dimensions() != (FACE_SIZE as u32, FACE_SIZE as u32) {
            image::imageops::resize(&img, FACE_SIZE as u32, FACE_SIZE as u32, image::imageops::FilterType::Triangle)
        } else {
            img
        };
        let (pixels, labels, names) = parts.entry(split).or_default();
        pixels.extend_from_slice(img.as_raw());
        labels.push(class as i64);
        names.push(relative);
    }
    Ok(parts.into_iter().map(|(split, (p, l, n))| (split, FaceSet::from_parts(p, l, n))).collect())
}

/// Reads the original `fer2013.csv`: a header `emotion,pixels,Usage`, then one
/// face per line with 2,304 space-separated grey levels.
pub fn load_csv(path: &Path) -> Result<HashMap<Split, FaceSet>> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut lines = BufReader::new(file).lines();
    let header = lines.next().ok_or_else(|| anyhow!("{} is empty", path.display()))??;
    let columns: Vec<&str> = header.trim().split(',').map(str::trim).collect();
    let col = |name: &str| {
        columns
            .iter()
            .position(|c| *c == name)
            .ok_or_else(|| anyhow!("{}: header lacks the `{name}` column (got `{header}`)", path.display()))
    };
    let (c_emotion, c_pixels, c_usage) = (col("emotion")?, col("pixels")?, col("Usage")?);

    let mut parts: HashMap<Split, (Vec<u8>, Vec<i64>)> = HashMap::new();
    let expected = (FACE_SIZE * FACE_SIZE) as usize;
    for (i, line) in lines.enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let line_no = i + 2;
        let fields: Vec<&str> = line.split(',').collect();
        let field = |c: usize| fields.get(c).copied().ok_or_else(|| anyhow!("line {line_no}: missing column"));
        let emotion: usize = field(c_emotion)?.trim().parse().with_context(|| format!("line {line_no}: emotion"))?;
        if emotion >= EMOTIONS.len() {
            bail!("line {line_no}: emotion {emotion} is not in 0..7");
        }
        let usage = field(c_usage)?;
        let split = Split::from_usage(usage).ok_or_else(|| anyhow!("line {line_no}: unknown Usage `{usage}`"))?;
        let (pixels, labels) = parts.entry(split).or_default();
        let before = pixels.len();
        for value in field(c_pixels)?.split_whitespace() {
            pixels.push(value.parse().with_context(|| format!("line {line_no}: pixel `{value}`"))?);
        }
        if pixels.len() - before != expected {
            bail!("line {line_no}: {} pixels, expected {expected}", pixels.len() - before);
        }
        labels.push(emotion as i64);
    }
    Ok(parts.into_iter().map(|(split, (p, l))| (split, FaceSet::from_parts(p, l, Vec::new()))).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt::Write as _;

    fn face_pixels(seed: u8) -> Vec<u8> {
        (0..FACE_SIZE * FACE_SIZE).map(|i| (i as u8).wrapping_mul(3).wrapping_add(seed)).collect()
    }

    #[test]
    fn csv_loader_reads_splits_labels_and_pixels() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fer2013.csv");
        let mut text = String::from("emotion,pixels,Usage\n");
        let rows = [(3, "Training"), (0, "Training"), (6, "PublicTest"), (5, "PrivateTest")];
        for (i, (emotion, usage)) in rows.iter().enumerate() {
            let px: Vec<String> = face_pixels(i as u8).iter().map(u8::to_string).collect();
            writeln!(text, "{emotion},{},{usage}", px.join(" ")).unwrap();
        }
        std::fs::write(&path, text).unwrap();

        let sets = load(dir.path()).unwrap();
        let train = &sets[&Split::Training];
        assert_eq!(train.len(), 2);
        assert_eq!(Vec::<i64>::try_from(&train.labels).unwrap(), vec![3, 0]);
        assert_eq!(train.images.size(), vec![2, 1, 48, 48]);
        let first: Vec<u8> = Vec::try_from(train.images.get(0).flatten(0, -1)).unwrap();
        assert_eq!(first, face_pixels(0));
        assert_eq!(sets[&Split::PublicTest].len(), 1);
        assert_eq!(Vec::<i64>::try_from(&sets[&Split::PrivateTest].labels).unwrap(), vec![5]);
    }

    #[test]
    fn csv_loader_rejects_short_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.csv");
        std::fs::write(&path, "emotion,pixels,Usage\n3,1 2 3,Training\n").unwrap();
        let err = load(&path).err().expect("short row accepted").to_string();
        assert!(err.contains("3 pixels"), "{err}");
    }

    #[test]
    fn folder_loader_maps_classes_and_skips_ambiguous_files() {
        let dir = tempfile::tempdir().unwrap();
        let save = |rel: &str, seed: u8| {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            image::GrayImage::from_raw(48, 48, face_pixels(seed)).unwrap().save(&path).unwrap();
        };
        save("train/happy/Training_1.png", 1);
        save("train/sad/Training_2.png", 2);
        save("train/angry/Training_3.png", 3);
        save("train/fear/Training_3.png", 3); // same file in two classes: skipped
        save("test/surprise/PublicTest_4.png", 4);
        save("test/neutral/PrivateTest_5.png", 5);
        save("test/disgust/PrivateTest_6.png", 6);

        let sets = load(dir.path()).unwrap();
        let train = &sets[&Split::Training];
        assert_eq!(Vec::<i64>::try_from(&train.labels).unwrap(), vec![3, 4]); // happy, sad by name order
        let private = &sets[&Split::PrivateTest];
        assert_eq!(Vec::<i64>::try_from(&private.labels).unwrap(), vec![6, 1]);
        assert_eq!(sets[&Split::PublicTest].class_counts(EMOTIONS.len()), vec![0, 0, 0, 0, 0, 1, 0]);
        let px: Vec<u8> = Vec::try_from(private.images.get(1).flatten(0, -1)).unwrap();
        assert_eq!(px, face_pixels(6));
        assert_eq!(private.names, ["test/neutral/PrivateTest_5.png", "test/disgust/PrivateTest_6.png"]);
        let one = private.select(&[1]);
        assert_eq!(one.names, ["test/disgust/PrivateTest_6.png"]);
        assert_eq!(Vec::<i64>::try_from(&one.labels).unwrap(), vec![1]);
    }
}
