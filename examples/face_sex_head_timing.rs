//! Timing (not a test): the one-face 640x480 photo analysed with and without
//! the face sex head, the two analyzers taking turns so that the machine's
//! drift falls on both alike. Prints each one's median and quartiles.
//! `cargo run --release --example face_sex_head_timing -- [rounds] [head weights]`
//! (the head: models/face_sex_head.safetensors unless given).
use std::path::Path;
use std::time::Instant;

use emotion_ai::predict::{Analyzer, AnalyzerConfig};

fn main() -> anyhow::Result<()> {
    tch::set_num_threads(1);
    let rounds: usize = std::env::args().nth(1).map_or(Ok(100), |a| a.parse())?;
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let bytes = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/portrait_640x480.jpg"))?;
    let mut config = AnalyzerConfig::with_models_dir(&models);
    if let Some(head) = std::env::args().nth(2) {
        config.face_sex_head_model = Some(head.into());
    }
    let with_head = Analyzer::load(config)?;
    let mut config = AnalyzerConfig::with_models_dir(&models);
    config.face_sex_head_model = None;
    let without = Analyzer::load(config)?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for round in 0..rounds + 5 {
        for (analyzer, times) in [(&with_head, &mut a), (&without, &mut b)] {
            let started = Instant::now();
            analyzer.analyze_image_bytes(&bytes)?;
            if round >= 5 {
                times.push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    for (name, times) in [("with the face sex head", &mut a), ("without it", &mut b)] {
        times.sort_by(f64::total_cmp);
        let q = |f: f64| times[((times.len() - 1) as f64 * f).round() as usize];
        println!("{name}: median {:.1} ms (quartiles {:.1}-{:.1}) over {rounds}", q(0.5), q(0.25), q(0.75));
    }
    Ok(())
}
