//! Probe (not served): what more views of a face, or a second network, would
//! buy the face emotion answer, and what they would cost. For each network
//! given (and for the mean of all of them) it scores FER2013 PublicTest and
//! PrivateTest, on FER2013's labels, without the near-copies and against the
//! FER+ majority, reading each face as served (the face and its mirror
//! image, 2 passes) and as 10 views (the face shifted by 2 px in each of
//! four directions, and all five mirrored). Serving pays one pass of one
//! network per view: 10 views of 2 networks is 10 times the served work.
//!
//! `cargo run --release --example face_emotion_tta_probe -- ../shared/datasets/fer2013 A.safetensors [B.safetensors ...]`
use std::path::{Path, PathBuf};

use emotion_ai::model::{FaceClassifier, LoadedFaceModel, EMOTIONS};
use emotion_ai::train::fer2013::{self, FaceSet, Split};
use emotion_ai::train::ferplus::{self, FerPlus};
use tch::{Kind, Tensor};

const SHIFT: i64 = 2;

/// Class probabilities of `set` under `model`, averaged over the views.
fn views(model: &LoadedFaceModel, set: &FaceSet, shifted: bool) -> Tensor {
    let n = set.len() as i64;
    let mut parts = Vec::new();
    let mut start = 0;
    while start < n {
        let len = (n - start).min(512);
        let faces = set.images.narrow(0, start, len).to_kind(Kind::Float);
        let mut p = model.frozen.predict_proba_with(&faces, true);
        if shifted {
            // Edge pixels repeated, so a shift brings in no black border.
            let padded = faces.replication_pad2d([SHIFT, SHIFT, SHIFT, SHIFT]);
            for (dy, dx) in [(0, 0), (0, 2 * SHIFT), (2 * SHIFT, 0), (2 * SHIFT, 2 * SHIFT)] {
                let view = padded.narrow(2, dy, 48).narrow(3, dx, 48);
                p += model.frozen.predict_proba_with(&view, true);
            }
            p /= 5.0;
        }
        parts.push(p);
        start += len;
    }
    Tensor::cat(&parts, 0)
}

fn accuracy(p: &Tensor, indices: &[usize], truth: &[usize]) -> f64 {
    let top = Vec::<i64>::try_from(&p.argmax(-1, false)).unwrap_or_default();
    let right = indices.iter().zip(truth).filter(|(&i, &t)| top[i] as usize == t).count();
    100.0 * right as f64 / indices.len().max(1) as f64
}

struct Scoring {
    all: (Vec<usize>, Vec<usize>),
    kept: (Vec<usize>, Vec<usize>),
    majority: (Vec<usize>, Vec<usize>),
}

fn scoring(set: &FaceSet, votes: &FerPlus, copies: &std::collections::HashSet<String>) -> Scoring {
    let truth: Vec<usize> =
        Vec::<i64>::try_from(&set.labels).unwrap_or_default().into_iter().map(|t| t as usize).collect();
    let all: Vec<usize> = (0..set.len()).collect();
    let kept = ferplus::indices_without(&set.names, copies);
    let kept_truth = kept.iter().map(|&i| truth[i]).collect();
    Scoring { all: (all, truth), kept: (kept, kept_truth), majority: votes.majority(&set.names) }
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (data, weights) = match args.split_first() {
        Some((data, weights)) if !weights.is_empty() => (PathBuf::from(data), weights),
        _ => anyhow::bail!("usage: face_emotion_tta_probe FER2013_DIR WEIGHTS..."),
    };
    let sets = fer2013::load(&data)?;
    let votes = FerPlus::load(&data)?.ok_or_else(|| anyhow::anyhow!("no FER+ votes under {}", data.display()))?;
    let copies = ferplus::near_copies(&data)?.unwrap_or_default();
    let models: Vec<LoadedFaceModel> =
        weights.iter().map(|w| LoadedFaceModel::load(Path::new(w))).collect::<Result<_, _>>()?;
    assert_eq!(EMOTIONS.len(), 7);
    println!("network\tviews\tpublic\tpublic_ferplus\tprivate\tprivate_without_copies\tprivate_ferplus");
    for shifted in [false, true] {
        let label = if shifted { "10" } else { "2 (served)" };
        let mut sums: Vec<Tensor> = Vec::new();
        for (w, model) in weights.iter().zip(&models) {
            let mut row = format!("{w}\t{label}");
            for (k, split) in [Split::PublicTest, Split::PrivateTest].into_iter().enumerate() {
                let set = sets.get(&split).ok_or_else(|| anyhow::anyhow!("no {split:?}"))?;
                let s = scoring(set, &votes, &copies);
                let p = views(model, set, shifted);
                row += &format!("\t{:.2}", accuracy(&p, &s.all.0, &s.all.1));
                if split == Split::PrivateTest {
                    row += &format!("\t{:.2}", accuracy(&p, &s.kept.0, &s.kept.1));
                }
                row += &format!("\t{:.2}", accuracy(&p, &s.majority.0, &s.majority.1));
                match sums.get_mut(k) {
                    Some(sum) => *sum += &p,
                    None => sums.push(p),
                }
            }
            println!("{row}");
        }
        if models.len() > 1 {
            let mut row = format!("mean of {}\t{label}", models.len());
            for (sum, split) in sums.iter().zip([Split::PublicTest, Split::PrivateTest]) {
                let set = sets.get(&split).ok_or_else(|| anyhow::anyhow!("no {split:?}"))?;
                let s = scoring(set, &votes, &copies);
                row += &format!("\t{:.2}", accuracy(sum, &s.all.0, &s.all.1));
                if split == Split::PrivateTest {
                    row += &format!("\t{:.2}", accuracy(sum, &s.kept.0, &s.kept.1));
                }
                row += &format!("\t{:.2}", accuracy(sum, &s.majority.0, &s.majority.1));
            }
            println!("{row}");
        }
    }
    Ok(())
}
