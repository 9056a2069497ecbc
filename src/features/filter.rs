//! Second-order IIR filters (RBJ's audio-EQ cookbook): the speech check's
//! high-pass and the training augmentations' microphone, telephone and codec
//! models.

/// Second-order IIR section (RBJ audio-EQ cookbook), direct form I.
#[derive(Debug, Clone, Copy)]
pub struct Biquad {
    b: [f32; 3],
    a: [f32; 2],
}

impl Biquad {
    fn normalised(b: [f64; 3], a: [f64; 3]) -> Self {
        Self {
            b: [(b[0] / a[0]) as f32, (b[1] / a[0]) as f32, (b[2] / a[0]) as f32],
            a: [(a[1] / a[0]) as f32, (a[2] / a[0]) as f32],
        }
    }

    fn omega(freq: f64, rate: f64) -> (f64, f64) {
        let w = std::f64::consts::TAU * (freq / rate).clamp(1e-4, 0.499);
        (w.cos(), w.sin())
    }

    /// Low-pass at `freq` Hz.
    pub fn low_pass(freq: f64, q: f64, rate: f64) -> Self {
        let (cos, sin) = Self::omega(freq, rate);
        let alpha = sin / (2.0 * q);
        Self::normalised([(1.0 - cos) / 2.0, 1.0 - cos, (1.0 - cos) / 2.0], [1.0 + alpha, -2.0 * cos, 1.0 - alpha])
    }

    /// High-pass at `freq` Hz.
    pub fn high_pass(freq: f64, q: f64, rate: f64) -> Self {
        let (cos, sin) = Self::omega(freq, rate);
        let alpha = sin / (2.0 * q);
        Self::normalised([(1.0 + cos) / 2.0, -(1.0 + cos), (1.0 + cos) / 2.0], [1.0 + alpha, -2.0 * cos, 1.0 - alpha])
    }

    /// Peaking filter of `gain_db` at `freq` Hz.
    pub fn peaking(freq: f64, q: f64, gain_db: f64, rate: f64) -> Self {
        let (cos, sin) = Self::omega(freq, rate);
        let alpha = sin / (2.0 * q);
        let a = 10f64.powf(gain_db / 40.0);
        Self::normalised([1.0 + alpha * a, -2.0 * cos, 1.0 - alpha * a], [1.0 + alpha / a, -2.0 * cos, 1.0 - alpha / a])
    }

    /// Filters `samples` in place.
    pub fn apply(&self, samples: &mut [f32]) {
        let (mut x1, mut x2, mut y1, mut y2) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
        for s in samples.iter_mut() {
            let x = *s;
            let y = self.b[0] * x + self.b[1] * x1 + self.b[2] * x2 - self.a[0] * y1 - self.a[1] * y2;
            (x2, x1, y2, y1) = (x1, x, y1, y);
            *s = y;
        }
    }
}
