//! Writes the fuzz targets' seed corpora (`fuzz/corpus/<target>/seed-*`):
//! small, valid files of every accepted format, made here or taken from the
//! repository's own fixtures, so the fuzzer starts from inputs that reach
//! deep into each decoder. Run from the repository root:
//! `cargo run --release --example make_fuzz_seeds`.

use std::path::Path;

use image::{DynamicImage, ImageFormat, Rgb, RgbImage};

fn main() -> anyhow::Result<()> {
    let images = Path::new("fuzz/corpus/image_decode_detect");
    let audio = Path::new("fuzz/corpus/audio_decode_mfcc");
    std::fs::create_dir_all(images)?;
    std::fs::create_dir_all(audio)?;

    // A gradient with a dark disc: some structure for the cascade to look at.
    let picture = RgbImage::from_fn(40, 30, |x, y| {
        let inside = (x as i32 - 20).pow(2) + (y as i32 - 15).pow(2) < 64;
        if inside {
            Rgb([20, 20, 30])
        } else {
            Rgb([(x * 6) as u8, (y * 8) as u8, 128])
        }
    });
    for (format, extension) in [
        (ImageFormat::Png, "png"),
        (ImageFormat::Jpeg, "jpg"),
        (ImageFormat::Gif, "gif"),
        (ImageFormat::Bmp, "bmp"),
        (ImageFormat::WebP, "webp"),
        (ImageFormat::Tiff, "tiff"),
    ] {
        DynamicImage::ImageRgb8(picture.clone()).save_with_format(images.join(format!("seed-{extension}")), format)?;
    }
    DynamicImage::ImageLuma8(DynamicImage::ImageRgb8(picture.clone()).to_luma8())
        .save_with_format(images.join("seed-gray.png"), ImageFormat::Png)?;
    DynamicImage::ImageRgba8(DynamicImage::ImageRgb8(picture).to_rgba8())
        .save_with_format(images.join("seed-rgba.png"), ImageFormat::Png)?;
    // A real face, so detection and cropping run.
    std::fs::copy("tests/fixtures/astronaut.jpg", images.join("seed-face.jpg"))?;

    // Half a second of a tone in each WAV sample format, and the speech
    // fixtures in the compressed containers.
    let tone: Vec<f32> = (0..8000).map(|i| (i as f32 * 0.06).sin() * 0.4).collect();
    std::fs::write(audio.join("seed-pcm16.wav"), wav(&tone, 16_000, 1, 16))?;
    std::fs::write(audio.join("seed-pcm8-stereo.wav"), wav(&tone, 8_000, 2, 8))?;
    std::fs::write(audio.join("seed-pcm24.wav"), wav(&tone, 44_100, 1, 24))?;
    std::fs::write(audio.join("seed-float.wav"), wav(&tone, 22_050, 1, 32))?;
    for extension in ["flac", "mp3", "ogg", "m4a"] {
        std::fs::copy(format!("tests/fixtures/speech.{extension}"), audio.join(format!("seed-speech.{extension}")))?;
    }
    println!("seeds written under {} and {}", images.display(), audio.display());
    Ok(())
}

/// A WAV of `samples` repeated on `channels` channels: integer PCM for 8, 16
/// and 24 bits, IEEE float for 32.
fn wav(samples: &[f32], rate: u32, channels: u16, bits: u16) -> Vec<u8> {
    let bytes_per_sample = usize::from(bits / 8);
    let data_len = (samples.len() * usize::from(channels) * bytes_per_sample) as u32;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&(if bits == 32 { 3u16 } else { 1u16 }).to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * u32::from(channels) * u32::from(bits / 8)).to_le_bytes());
    out.extend_from_slice(&(channels * bits / 8).to_le_bytes());
    out.extend_from_slice(&bits.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for &s in samples {
        for _ in 0..channels {
            match bits {
                8 => out.push(((s * 127.0) + 128.0) as u8),
                16 => out.extend_from_slice(&((s * 32767.0) as i16).to_le_bytes()),
                24 => out.extend_from_slice(&(((s * 8_388_607.0) as i32).to_le_bytes())[..3]),
                _ => out.extend_from_slice(&s.to_le_bytes()),
            }
        }
    }
    out
}
