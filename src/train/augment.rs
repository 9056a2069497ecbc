//! Batch augmentation for square grayscale faces (48x48 and larger), done on tensors so a whole
//! batch costs one `grid_sampler` call.

use tch::{Device, Kind, Tensor};

/// Ranges of the random transforms applied to each training face.
#[derive(Debug, Clone, Copy)]
pub struct Augment {
    /// Probability of a horizontal mirror.
    pub flip: f64,
    /// Maximum rotation, degrees either way.
    pub rotate_deg: f64,
    /// Maximum relative zoom either way (0.1 = 90%..110%).
    pub scale: f64,
    /// Maximum shift as a fraction of the side, either way.
    pub shift: f64,
    /// Maximum relative change of contrast and of brightness.
    pub photometric: f64,
    /// Probability of blanking a random square (random erasing).
    pub erase: f64,
}

impl Default for Augment {
    fn default() -> Self {
        Self { flip: 0.5, rotate_deg: 12.0, scale: 0.12, shift: 0.1, photometric: 0.25, erase: 0.25 }
    }
}

fn uniform(n: i64, half_width: f64) -> Tensor {
    (Tensor::rand([n], (Kind::Float, Device::Cpu)) * 2.0 - 1.0) * half_width
}

impl Augment {
    /// Returns a randomly transformed copy of `faces` (`[N, 1, H, W]`, grey
    /// levels 0..255 as floats). Geometry: one affine map per face (mirror,
    /// rotation, zoom, shift) resampled bilinearly with border padding.
    pub fn apply(&self, faces: &Tensor) -> Tensor {
        let size = faces.size();
        let n = size[0];
        let faces = faces.to_kind(Kind::Float);

        let angle = uniform(n, self.rotate_deg.to_radians());
        let zoom = uniform(n, self.scale) + 1.0;
        let mirror = Tensor::rand([n], (Kind::Float, Device::Cpu)).lt(self.flip).to_kind(Kind::Float) * -2.0 + 1.0;
        let (cos, sin) = (angle.cos() / &zoom, angle.sin() / &zoom);
        let tx = uniform(n, 2.0 * self.shift);
        let ty = uniform(n, 2.0 * self.shift);
        // theta maps output to input coordinates (normalised to -1..1).
        let row0 = Tensor::stack(&[&cos * &mirror, -&sin, tx], 1);
        let row1 = Tensor::stack(&[&sin * &mirror, cos, ty], 1);
        let theta = Tensor::stack(&[row0, row1], 1);
        let grid = Tensor::affine_grid_generator(&theta, size.as_slice(), false);
        // interpolation 0 = bilinear, padding 1 = border.
        let warped = Tensor::grid_sampler(&faces, &grid, 0, 1, false);

        let contrast = (uniform(n, self.photometric) + 1.0).view([n, 1, 1, 1]);
        let brightness = (uniform(n, self.photometric) * 64.0).view([n, 1, 1, 1]);
        let mean = warped.mean_dim([1i64, 2, 3].as_slice(), true, Kind::Float);
        let adjusted = ((warped - &mean) * contrast + mean + brightness).clamp(0.0, 255.0);
        self.erase_squares(adjusted)
    }

    /// Random erasing: with probability `erase`, a square of 8..20 pixels (on
    /// a 48 px face; in proportion on larger ones) is set to mid-grey, so the
    /// network cannot rely on one facial region.
    fn erase_squares(&self, faces: Tensor) -> Tensor {
        if self.erase <= 0.0 {
            return faces;
        }
        let size = faces.size();
        let (n, h, w) = (size[0], size[2], size[3]);
        let opts = (Kind::Float, Device::Cpu);
        let side = Tensor::randint_low(8, 21, [n, 1, 1, 1], (Kind::Int64, Device::Cpu)).to_kind(Kind::Float)
            * (h.min(w) as f64 / 48.0);
        let cy = Tensor::rand([n, 1, 1, 1], opts) * h as f64;
        let cx = Tensor::rand([n, 1, 1, 1], opts) * w as f64;
        let ys = Tensor::arange(h, opts).view([1, 1, h, 1]);
        let xs = Tensor::arange(w, opts).view([1, 1, 1, w]);
        let half = &side / 2.0;
        let inside = (ys - &cy).abs().le_tensor(&half).logical_and(&(xs - &cx).abs().le_tensor(&half));
        let chosen = Tensor::rand([n, 1, 1, 1], opts).lt(self.erase);
        let mask = inside.logical_and(&chosen);
        faces.masked_fill(&mask, 128.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_shape_and_range_and_changes_pixels() {
        tch::manual_seed(7);
        let faces = Tensor::rand([4, 1, 48, 48], (Kind::Float, Device::Cpu)) * 255.0;
        let out = Augment::default().apply(&faces);
        assert_eq!(out.size(), vec![4, 1, 48, 48]);
        assert!(out.min().double_value(&[]) >= 0.0);
        assert!(out.max().double_value(&[]) <= 255.0);
        assert!(!out.allclose(&faces, 1e-3, 1e-3, false));
    }

    #[test]
    fn identity_settings_leave_faces_unchanged() {
        let none = Augment { flip: 0.0, rotate_deg: 0.0, scale: 0.0, shift: 0.0, photometric: 0.0, erase: 0.0 };
        let faces = Tensor::rand([2, 1, 48, 48], (Kind::Float, Device::Cpu)) * 255.0;
        let out = none.apply(&faces);
        assert!(out.allclose(&faces, 1e-3, 1e-2, false));
    }

    #[test]
    fn certain_flip_mirrors_the_face() {
        let flip = Augment { flip: 1.0, rotate_deg: 0.0, scale: 0.0, shift: 0.0, photometric: 0.0, erase: 0.0 };
        let faces = Tensor::rand([2, 1, 48, 48], (Kind::Float, Device::Cpu)) * 255.0;
        let out = flip.apply(&faces);
        assert!(out.allclose(&faces.flip([3]), 1e-3, 1e-2, false));
    }
}
