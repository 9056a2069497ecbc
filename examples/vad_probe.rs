//! Probe (not served): how Silero VAD's chunk probabilities, summed up per
//! served window, separate our corpora's speech from the generated
//! non-speech. For each clip, the best window's share of speech chunks and
//! mean probability; with corpora given, their five lowest clips each
//! (the generated clips only without them).
//! `cargo run --release --example vad_probe -- ../shared/datasets/ravdess ../shared/datasets/speechsex ../shared/datasets/emodb`
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use emotion_ai::model::vad::{SileroVad, DEFAULT_SILERO_VAD};
use emotion_ai::predict::voice::window_starts;
use emotion_ai::speech::vad_statistics;
use emotion_ai::train::speech_check::negatives;
use emotion_ai::train::voice_data::load_clips;

/// Best served window's (share of chunks at 0.5 or more, mean probability):
/// the speech check's [`vad_statistics`], each window read alone.
fn score(vad: &SileroVad, x: &[f32]) -> anyhow::Result<(f32, f32)> {
    let (window, hop) = (48_000, 16_000);
    let slices: Vec<&[f32]> =
        window_starts(x.len(), window, hop).into_iter().map(|s| &x[s..(s + window).min(x.len())]).collect();
    Ok(vad
        .probabilities_of_each(&slices)?
        .iter()
        .map(|p| vad_statistics(p))
        .fold((0.0, 0.0), |a, [share, mean]| (a.0.max(share), a.1.max(mean))))
}

fn quantiles(v: &mut [f32]) -> String {
    v.sort_by(f32::total_cmp);
    let q = |f: f64| v[((v.len() - 1) as f64 * f) as usize];
    format!(
        "min {:.3} q01 {:.3} q05 {:.3} med {:.3} q95 {:.3} max {:.3}",
        q(0.0),
        q(0.01),
        q(0.05),
        q(0.5),
        q(0.95),
        q(1.0)
    )
}

fn main() -> anyhow::Result<()> {
    tch::set_num_threads(1);
    let data: Vec<PathBuf> = std::env::args().skip(1).map(PathBuf::from).collect();
    let vad = SileroVad::load(Path::new(DEFAULT_SILERO_VAD))?;
    let t = std::time::Instant::now();
    let mut groups: BTreeMap<String, Vec<(f32, f32)>> = BTreeMap::new();
    let count = if data.is_empty() { 6000 } else { 0 };
    for (family, x) in negatives(count, 16_000, 1_000_004) {
        groups.entry(format!("nonspeech/{}", family.name())).or_default().push(score(&vad, &x)?);
    }
    eprintln!("negatives in {:.1} s", t.elapsed().as_secs_f64());
    if !data.is_empty() {
        let mut lowest: BTreeMap<String, Vec<(f32, String)>> = BTreeMap::new();
        for c in load_clips(&data, 16_000)? {
            let scored = score(&vad, &c.samples)?;
            groups.entry(c.label.corpus().to_string()).or_default().push(scored);
            lowest.entry(c.label.corpus().to_string()).or_default().push((scored.0, c.path.display().to_string()));
        }
        for (corpus, mut clips) in lowest {
            clips.sort_by(|a, b| a.0.total_cmp(&b.0));
            for (share, path) in clips.iter().take(5) {
                println!("lowest {corpus}: {share:.3} {path}");
            }
        }
    }
    for (name, v) in &groups {
        let mut share: Vec<f32> = v.iter().map(|s| s.0).collect();
        let mut mean: Vec<f32> = v.iter().map(|s| s.1).collect();
        println!("{name:28} n={:5} share {}", v.len(), quantiles(&mut share));
        println!("{:28}         mean  {}", "", quantiles(&mut mean));
    }
    Ok(())
}
