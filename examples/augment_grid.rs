//! Writes a grid of FER2013 faces before (top row) and after augmentation, to
//! check by eye that the transforms keep faces recognisable.
use emotion_ai::train::{augment::Augment, fer2013};
use tch::Kind;
fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let sets = fer2013::load(std::path::Path::new(&args[1]))?;
    let set = &sets[&fer2013::Split::PublicTest];
    let faces = set.images.narrow(0, 0, 8).to_kind(Kind::Float);
    let mut rows = vec![faces.shallow_clone()];
    for _ in 0..3 {
        rows.push(Augment::default().apply(&faces));
    }
    let grid = tch::Tensor::stack(&rows, 0).to_kind(Kind::Uint8); // [4, 8, 1, 48, 48]
    let grid = grid.squeeze_dim(2).permute([0, 2, 1, 3]).reshape([4 * 48, 8 * 48]);
    let px: Vec<u8> = Vec::try_from(grid.flatten(0, -1))?;
    image::GrayImage::from_raw(8 * 48, 4 * 48, px).unwrap().save(&args[2])?;
    Ok(())
}
