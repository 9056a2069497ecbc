//! Writes a clip with its pitch moved and its formants kept, as the voice
//! training's `--pitch-shift` augmentation does, to listen to and to measure:
//!
//! `cargo run --release --example pitch_shift -- IN OCTAVES OUT.wav`
//!
//! (16 kHz mono 16-bit WAV; IN is any clip the server accepts).

use anyhow::{bail, Context, Result};
use emotion_ai::decode::audio::{decode_audio, pcm16_wav};
use emotion_ai::train::voice_augment::shift_pitch_keep_formants;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, octaves, output] = args.as_slice() else {
        bail!("usage: pitch_shift IN OCTAVES OUT.wav");
    };
    let octaves: f32 = octaves.parse().with_context(|| format!("{octaves:?} is not a number of octaves"))?;
    let bytes = std::fs::read(input).with_context(|| format!("reading {input}"))?;
    let audio = decode_audio(&bytes, 16_000, 600.0)?;
    let started = std::time::Instant::now();
    let shifted = shift_pitch_keep_formants(&audio.samples, 16_000.0, octaves);
    eprintln!("{:.1} s of audio shifted in {:.1} ms", audio.duration(), started.elapsed().as_secs_f64() * 1e3);
    std::fs::write(output, pcm16_wav(&shifted, 16_000)).with_context(|| format!("writing {output}"))?;
    Ok(())
}
