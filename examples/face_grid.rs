//! Tiles one photo COLS x ROWS times into a JPEG: a picture with many faces,
//! for the face cap's benchmark (`scripts/hostile_bench.py`) and for trying it.
//!
//! Usage: cargo run --release --example face_grid -- IN COLSxROWS TILE_WIDTH OUT.jpg [X,Y,W,H]
//!
//! The optional box crops the photo first (a tight face crop makes each tile's
//! face large enough for the detector when there are many of them).

use anyhow::{Context, Result};
use image::imageops::FilterType;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (input, shape, width, out, crop) = match args.as_slice() {
        [input, shape, width, out] => (input, shape, width, out, None),
        [input, shape, width, out, crop] => (input, shape, width, out, Some(crop)),
        _ => anyhow::bail!("usage: face_grid IN COLSxROWS TILE_WIDTH OUT.jpg [X,Y,W,H]"),
    };
    let (cols, rows) = shape.split_once('x').context("COLSxROWS")?;
    let (cols, rows): (u32, u32) = (cols.parse().context("COLS")?, rows.parse().context("ROWS")?);
    let width: u32 = width.parse().context("TILE_WIDTH")?;
    let mut photo = image::open(input).with_context(|| format!("reading {input}"))?.to_rgb8();
    if let Some(crop) = crop {
        let v: Vec<u32> = crop.split(',').map(str::parse).collect::<Result<_, _>>().context("X,Y,W,H")?;
        let [x, y, w, h] = v.as_slice() else { anyhow::bail!("the crop is X,Y,W,H") };
        photo = image::imageops::crop_imm(&photo, *x, *y, *w, *h).to_image();
    }
    let height = width * photo.height() / photo.width();
    let tile = image::imageops::resize(&photo, width, height, FilterType::Triangle);
    let mut grid = image::RgbImage::new(width * cols, height * rows);
    for row in 0..rows {
        for col in 0..cols {
            image::imageops::replace(&mut grid, &tile, i64::from(col * width), i64::from(row * height));
        }
    }
    grid.save(out).with_context(|| format!("writing {out}"))?;
    Ok(())
}
