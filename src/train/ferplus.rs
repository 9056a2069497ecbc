//! FER+ (Barsoum et al. 2016): ten crowd votes per FER2013 face, and the
//! list of test faces that are near-copies of training faces.
//!
//! FER2013's own labels agree with the FER+ majority on only 59% of test
//! faces. The votes serve twice: as soft training targets (mixed with the
//! original label, so the model still answers FER2013's question), and as a
//! second, cleaner test (accuracy against the majority). Both files sit in
//! `<fer2013>/ferplus/` and are joined to faces by the folder release's
//! relative path ([`FaceSet::names`]).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{anyhow, Context, Result};
use tch::{Kind, Tensor};

use super::fer2013::FaceSet;
use crate::model::EMOTIONS;

/// FER+ vote columns in [`EMOTIONS`] order (contempt, unknown and not-a-face
/// have no place among the 7 and are left out).
const VOTE_COLUMNS: [&str; 7] = [
    "votes_anger",
    "votes_disgust",
    "votes_fear",
    "votes_happiness",
    "votes_sadness",
    "votes_surprise",
    "votes_neutral",
];

/// The votes file of a FER2013 folder.
pub fn votes_path(fer_dir: &Path) -> std::path::PathBuf {
    fer_dir.join("ferplus").join("votes.csv")
}

/// The near-copy list of a FER2013 folder.
pub fn near_copies_path(fer_dir: &Path) -> std::path::PathBuf {
    fer_dir.join("ferplus").join("test_train_near_duplicates.csv")
}

/// One face's FER+ annotation.
#[derive(Debug, Clone, PartialEq)]
pub struct FerPlusFace {
    /// Votes for each of [`EMOTIONS`] (0-10).
    pub votes: [f32; 7],
    /// The majority label among the 7 emotions, where the raters had one.
    pub majority: Option<usize>,
}

/// Every face's FER+ annotation, by the folder release's relative path.
pub struct FerPlus {
    faces: HashMap<String, FerPlusFace>,
}

impl FerPlus {
    /// Reads `votes.csv`; `None` when the file is absent (FER+ is optional).
    pub fn load(fer_dir: &Path) -> Result<Option<Self>> {
        let path = votes_path(fer_dir);
        if !path.is_file() {
            return Ok(None);
        }
        let mut reader = csv::Reader::from_path(&path).with_context(|| format!("opening {}", path.display()))?;
        let headers = reader.headers()?.clone();
        let col = |name: &str| {
            headers
                .iter()
                .position(|h| h == name)
                .ok_or_else(|| anyhow!("{} lacks the `{name}` column", path.display()))
        };
        let relpath = col("folder_relpath")?;
        let majority = col("ferplus_majority_7class")?;
        let votes: Vec<usize> = VOTE_COLUMNS.iter().map(|c| col(c)).collect::<Result<_>>()?;
        let mut faces = HashMap::new();
        for (i, record) in reader.records().enumerate() {
            let record = record.with_context(|| format!("{} row {}", path.display(), i + 2))?;
            let field = |c: usize| record.get(c).unwrap_or("");
            let mut counts = [0f32; 7];
            for (count, &c) in counts.iter_mut().zip(&votes) {
                // Files without a FER+ row have empty vote fields.
                *count = field(c).trim().parse().unwrap_or(0.0);
            }
            let majority = EMOTIONS.iter().position(|e| *e == field(majority));
            faces.insert(field(relpath).to_string(), FerPlusFace { votes: counts, majority });
        }
        Ok(Some(Self { faces }))
    }

    /// The annotation of the face at the folder release's relative path.
    pub fn face(&self, name: &str) -> Option<&FerPlusFace> {
        self.faces.get(name)
    }

    /// `[N, 7]` training targets for `set`: `(1 - weight) x` the one-hot
    /// original label `+ weight x` the share of FER+ votes per emotion. Faces
    /// without votes among the 7 keep their one-hot label. Returns the
    /// targets and how many faces had votes.
    pub fn soft_targets(&self, set: &FaceSet, weight: f64) -> (Tensor, usize) {
        let labels = Vec::<i64>::try_from(&set.labels).unwrap_or_default();
        let mut rows = Vec::with_capacity(labels.len() * EMOTIONS.len());
        let mut with_votes = 0;
        for (i, &label) in labels.iter().enumerate() {
            let mut row = [0f32; 7];
            let votes = set.names.get(i).and_then(|n| self.face(n)).map(|f| f.votes).unwrap_or_default();
            let total: f32 = votes.iter().sum();
            let w = if total > 0.0 { weight as f32 } else { 0.0 };
            with_votes += usize::from(total > 0.0);
            for (c, value) in row.iter_mut().enumerate() {
                let one_hot = if c as i64 == label { 1.0 } else { 0.0 };
                let share = if total > 0.0 { votes[c] / total } else { 0.0 };
                *value = (1.0 - w) * one_hot + w * share;
            }
            rows.extend_from_slice(&row);
        }
        let n = labels.len() as i64;
        (Tensor::from_slice(&rows).view([n, EMOTIONS.len() as i64]).to_kind(Kind::Float), with_votes)
    }

    /// The indices of `names` that have a FER+ majority, and that majority:
    /// the faces and labels to measure accuracy against FER+.
    pub fn majority(&self, names: &[String]) -> (Vec<usize>, Vec<usize>) {
        names.iter().enumerate().filter_map(|(i, n)| self.face(n)?.majority.map(|m| (i, m))).unzip()
    }
}

/// The test faces that are near-copies of a training face (relative paths);
/// `None` when the list is absent.
pub fn near_copies(fer_dir: &Path) -> Result<Option<HashSet<String>>> {
    let path = near_copies_path(fer_dir);
    if !path.is_file() {
        return Ok(None);
    }
    let mut reader = csv::Reader::from_path(&path).with_context(|| format!("opening {}", path.display()))?;
    let column = reader
        .headers()?
        .iter()
        .position(|h| h == "test_relpath")
        .ok_or_else(|| anyhow!("{} lacks the `test_relpath` column", path.display()))?;
    let mut names = HashSet::new();
    for record in reader.records() {
        if let Some(name) = record?.get(column) {
            names.insert(name.to_string());
        }
    }
    Ok(Some(names))
}

/// The indices of `names` not in `leave_out`.
pub fn indices_without(names: &[String], leave_out: &HashSet<String>) -> Vec<usize> {
    (0..names.len()).filter(|&i| !leave_out.contains(&names[i])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "folder_relpath,folder_split,folder_class,usage,fer2013_row,ferplus_png,match_mse,second_mse,\
match_status,votes_neutral,votes_happiness,votes_surprise,votes_sadness,votes_anger,votes_disgust,votes_fear,\
votes_contempt,votes_unknown,votes_NF,ferplus_majority,ferplus_majority_7class,ferplus_plurality_7class";

    fn folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ferplus")).unwrap();
        let rows = [
            // 8 neutral, 1 sad, 1 angry: majority neutral
            "test/angry/PublicTest_1.jpg,test,angry,PublicTest,1,a.png,1,2,unique,8,0,0,1,1,0,0,0,0,0,neutral,neutral,neutral",
            // 6 angry, 1 disgust, 3 contempt
            "train/angry/Training_2.jpg,train,angry,Training,2,b.png,1,2,unique,0,0,0,0,6,1,0,3,0,0,anger,angry,angry",
            // no FER+ row
            "train/sad/Training_3.jpg,train,sad,Training,,,,,unmatched,,,,,,,,,,,,,",
        ];
        std::fs::write(votes_path(dir.path()), format!("{HEADER}\n{}\n", rows.join("\n"))).unwrap();
        std::fs::write(
            near_copies_path(dir.path()),
            "test_relpath,nearest_train_relpath,mse_mean_removed\ntest/angry/PublicTest_1.jpg,train/angry/Training_9.jpg,-0.03\n",
        )
        .unwrap();
        dir
    }

    fn set(names: &[&str], labels: &[i64]) -> FaceSet {
        let n = names.len() as i64;
        let mut set =
            FaceSet::new(Tensor::zeros([n, 1, 48, 48], (Kind::Uint8, tch::Device::Cpu)), Tensor::from_slice(labels));
        set.names = names.iter().map(|s| s.to_string()).collect();
        set
    }

    #[test]
    fn votes_are_read_in_our_class_order() {
        let dir = folder();
        let ferplus = FerPlus::load(dir.path()).unwrap().unwrap();
        let face = ferplus.face("test/angry/PublicTest_1.jpg").unwrap();
        assert_eq!(face.votes, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 8.0]);
        assert_eq!(face.majority, Some(6));
        assert_eq!(ferplus.face("train/sad/Training_3.jpg").unwrap().majority, None);
        assert!(FerPlus::load(tempfile::tempdir().unwrap().path()).unwrap().is_none());
    }

    #[test]
    fn soft_targets_mix_the_label_with_the_votes_among_the_seven() {
        let dir = folder();
        let ferplus = FerPlus::load(dir.path()).unwrap().unwrap();
        let faces = set(&["train/angry/Training_2.jpg", "train/sad/Training_3.jpg"], &[0, 4]);
        let (targets, with_votes) = ferplus.soft_targets(&faces, 0.5);
        assert_eq!(with_votes, 1);
        let rows: Vec<Vec<f32>> = (0..2).map(|i| Vec::try_from(targets.get(i)).unwrap()).collect();
        // 6 angry and 1 disgust among the 7 (contempt left out), half-weighted.
        let expected = [0.5 + 0.5 * 6.0 / 7.0, 0.5 / 7.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        for (got, want) in rows[0].iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{:?}", rows[0]);
        }
        assert_eq!(rows[1], [0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0], "no votes: the label alone");
    }

    #[test]
    fn majorities_and_near_copies_pick_the_right_faces() {
        let dir = folder();
        let ferplus = FerPlus::load(dir.path()).unwrap().unwrap();
        let faces =
            set(&["test/angry/PublicTest_1.jpg", "train/sad/Training_3.jpg", "train/angry/Training_2.jpg"], &[0, 4, 0]);
        assert_eq!(ferplus.majority(&faces.names), (vec![0, 2], vec![6, 0]));

        let copies = near_copies(dir.path()).unwrap().unwrap();
        assert_eq!(indices_without(&faces.names, &copies), vec![1, 2]);
        assert!(near_copies(tempfile::tempdir().unwrap().path()).unwrap().is_none());
    }
}
