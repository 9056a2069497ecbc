//! Audio samples to MFCC time-frequency maps, the voice network's input.
//!
//! The conventions are librosa's (`librosa.feature.mfcc` over
//! `librosa.feature.melspectrogram`), so features can be checked against it
//! and reproduced in Python:
//!
//! - 16 kHz mono input; frames of 400 samples (25 ms) every 160 samples
//!   (10 ms); a periodic Hann window zero-padded in the middle of a 512-point
//!   FFT (rustfft);
//! - `center = True`: the signal is padded with `n_fft / 2` zeros on each side,
//!   so frame `t` is centred on sample `t * hop` and a clip of `n` samples has
//!   `1 + n / hop` frames;
//! - power spectrum `|X|^2`, projected on 64 Slaney-style mel filters from 0 to
//!   8 kHz with Slaney area normalisation (`htk = False, norm = "slaney"`; the
//!   filterbank comes from `mel_spec`, which mirrors librosa's);
//! - `10 log10(max(mel, 1e-10))` dB with reference 1 and **no** `top_db`
//!   clipping: `top_db` clips relative to the loudest frame of the clip, which
//!   would make a window's features depend on the rest of the upload;
//! - type-II DCT with orthonormal scaling over the mel axis, keeping the first
//!   40 coefficients ([`MfccConfig::log_mel`] keeps the dB mel bands
//!   instead).
//!
//! `tests/fixtures/mfcc_reference.json`, made by
//! `scripts/mfcc_reference.py` with librosa, pins these conventions.
//!
//! # Speed
//!
//! The arithmetic is f32 (values agree with the f64 reference to about 1e-4),
//! and frames are computed [`BLOCK`] at a time with the block's frames side
//! by side in memory, so the mel projection, logarithm and DCT are loops over
//! frames that the compiler vectorises (with AVX2 and FMA where the CPU has
//! them, chosen at run time by `multiversion`). Two real frames share one
//! complex FFT. [`MfccExtractor::with_threads`] splits long clips between
//! threads. BENCHMARKS.md compares the result with librosa.

pub mod filter;
pub mod pitch;
pub mod voice_input;

use std::sync::Arc;

use multiversion::multiversion;
use rayon::prelude::*;
use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

/// Frames computed together: their spectra, mel energies and coefficients sit
/// side by side, the innermost (vectorised) dimension of every loop.
pub const BLOCK: usize = 16;

/// Clips shorter than this many frames a thread (1.3 s) are not split between
/// threads: starting a thread would cost more than it saves.
const MIN_FRAMES_PER_THREAD: usize = 128;

/// MFCC parameters. [`MfccConfig::voice`] is what the voice model uses; the
/// values are recorded in its model card.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MfccConfig {
    pub sample_rate: u32,
    pub n_fft: usize,
    pub win_length: usize,
    pub hop_length: usize,
    pub n_mels: usize,
    pub n_mfcc: usize,
    pub f_min: f64,
    pub f_max: f64,
    /// Keep the mel energies in dB (one row per band, `n_mfcc == n_mels`)
    /// instead of their cepstrum: neighbouring rows are then neighbouring
    /// frequencies, which a convolution can exploit. Absent (false) in the
    /// cards of models trained before it existed.
    #[serde(default)]
    pub log_mel: bool,
}

impl MfccConfig {
    /// 16 kHz, 25 ms Hann frames every 10 ms, 512-point FFT, 64 mel bands
    /// over 0-8 kHz, 40 coefficients.
    pub fn voice() -> Self {
        Self {
            sample_rate: 16_000,
            n_fft: 512,
            win_length: 400,
            hop_length: 160,
            n_mels: 64,
            n_mfcc: 40,
            f_min: 0.0,
            f_max: 8_000.0,
            log_mel: false,
        }
    }

    /// The same frames as [`MfccConfig::voice`], as 40 log-mel bands over
    /// 0-8 kHz (no DCT).
    pub fn voice_log_mel() -> Self {
        Self { n_mels: 40, n_mfcc: 40, log_mel: true, ..Self::voice() }
    }

    /// Number of frames for a clip of `samples` samples.
    pub fn frames_for(&self, samples: usize) -> usize {
        1 + samples / self.hop_length
    }
}

/// An `n_mfcc x frames` map, coefficient-major (`data[c * frames + t]`), the
/// layout of a `[1, n_mfcc, frames]` tensor.
#[derive(Debug, Clone, PartialEq)]
pub struct Mfcc {
    pub n_mfcc: usize,
    pub frames: usize,
    pub data: Vec<f32>,
}

impl Mfcc {
    /// Coefficient `c` of frame `t`.
    pub fn get(&self, c: usize, t: usize) -> f32 {
        self.data[c * self.frames + t]
    }
}

/// One mel filter: its first FFT bin and its non-zero weights from there.
#[derive(Debug, Clone)]
struct MelFilter {
    first_bin: usize,
    weights: Vec<f32>,
}

/// Computes MFCCs; build once and share (it holds the FFT plan, window,
/// filterbank and DCT matrix).
pub struct MfccExtractor {
    config: MfccConfig,
    /// A complex `n_fft`-point FFT, each carrying two real frames.
    fft: Arc<dyn Fft<f32>>,
    /// The `win_length` Hann window; it sits `window_offset` samples into
    /// the `n_fft` frame, zeros around it.
    window: Vec<f32>,
    window_offset: usize,
    filters: Vec<MelFilter>,
    /// The orthonormal DCT-II matrix in groups of [`DCT_ROWS`] coefficients
    /// (`dct[(group * n_mels + m) * DCT_ROWS + row]`), zero rows padding the
    /// last group: the layout the DCT loop reads in order.
    dct: Vec<f32>,
    threads: usize,
}

impl std::fmt::Debug for MfccExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MfccExtractor")
            .field("config", &self.config)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl MfccExtractor {
    /// Prepares the FFT plan, window, mel filterbank and DCT for `config`.
    /// It computes on the calling thread; see [`MfccExtractor::with_threads`].
    ///
    /// # Panics
    /// If `win_length > n_fft`, `n_mfcc > n_mels` (or differs from it with
    /// `log_mel`), `n_fft` is odd or a size is zero: these are programming
    /// errors, not input errors.
    pub fn new(config: MfccConfig) -> Self {
        assert!(config.n_fft > 0 && config.hop_length > 0 && config.n_mels > 0 && config.n_mfcc > 0);
        assert!(config.win_length <= config.n_fft && config.n_mfcc <= config.n_mels && config.n_fft.is_multiple_of(2));
        assert!(!config.log_mel || config.n_mfcc == config.n_mels);
        let fft = FftPlanner::<f32>::new().plan_fft_forward(config.n_fft);

        // librosa: get_window("hann", win_length, fftbins=True), then pad_center.
        let window_offset = (config.n_fft - config.win_length) / 2;
        let window = (0..config.win_length)
            .map(|i| {
                let phase = 2.0 * std::f64::consts::PI * i as f64 / config.win_length as f64;
                (0.5 - 0.5 * phase.cos()) as f32
            })
            .collect();

        let dense = mel_spec::mel::mel(
            f64::from(config.sample_rate),
            config.n_fft,
            config.n_mels,
            Some(config.f_min),
            Some(config.f_max),
            false,
            true,
        );
        let filters = dense
            .rows()
            .into_iter()
            .map(|row| {
                let row: Vec<f64> = row.to_vec();
                let first = row.iter().position(|&w| w > 0.0).unwrap_or(0);
                let last = row.iter().rposition(|&w| w > 0.0).map_or(first, |i| i + 1);
                MelFilter { first_bin: first, weights: row[first..last.max(first)].iter().map(|&w| w as f32).collect() }
            })
            .collect();

        // Orthonormal DCT-II: c_k = s_k * sum_n x_n cos(pi k (2n + 1) / 2N);
        // for log-mel the identity, so the same loop copies the bands.
        let n = config.n_mels as f64;
        let mut dct = vec![0.0; config.n_mfcc.div_ceil(DCT_ROWS) * DCT_ROWS * config.n_mels];
        for k in 0..config.n_mfcc {
            let scale = if k == 0 { (1.0 / n).sqrt() } else { (2.0 / n).sqrt() };
            let (group, row) = (k / DCT_ROWS, k % DCT_ROWS);
            for m in 0..config.n_mels {
                dct[(group * config.n_mels + m) * DCT_ROWS + row] = if config.log_mel {
                    f32::from(u8::from(k == m))
                } else {
                    (scale * (std::f64::consts::PI * k as f64 * (2.0 * m as f64 + 1.0) / (2.0 * n)).cos()) as f32
                };
            }
        }
        Self { config, fft, window, window_offset, filters, dct, threads: 1 }
    }

    /// Lets [`MfccExtractor::compute`] split a long clip's frames between up
    /// to `threads` threads (of rayon's global pool). For callers that
    /// compute one clip at a time; the server already runs clips' windows
    /// side by side, so it keeps one.
    pub fn with_threads(mut self, threads: usize) -> Self {
        self.threads = threads.max(1);
        self
    }

    /// The parameters this extractor was built with.
    pub fn config(&self) -> &MfccConfig {
        &self.config
    }

    /// The MFCC map of `samples` (mono, at the configured rate, finite). Any
    /// length works, including zero (one frame of padding).
    pub fn compute(&self, samples: &[f32]) -> Mfcc {
        let n_mfcc = self.config.n_mfcc;
        let frames = self.config.frames_for(samples.len());
        let mut data = vec![0.0f32; n_mfcc * frames];
        let threads = self.threads.min(frames / MIN_FRAMES_PER_THREAD).max(1);
        // Thread i computes frames bounds[i]..bounds[i + 1], writing its part
        // of every coefficient's row. The bounds fall on whole blocks, so
        // frames share FFTs as they would on one thread: the result does not
        // depend on the thread count, to the bit.
        let bounds: Vec<usize> =
            (0..=threads).map(|i| if i == threads { frames } else { frames * i / threads / BLOCK * BLOCK }).collect();
        let mut parts: Vec<Vec<&mut [f32]>> = (0..threads).map(|_| Vec::with_capacity(n_mfcc)).collect();
        for row in data.chunks_mut(frames) {
            let mut rest = row;
            for (i, part) in parts.iter_mut().enumerate() {
                let (head, tail) = rest.split_at_mut(bounds[i + 1] - bounds[i]);
                part.push(head);
                rest = tail;
            }
        }
        if threads == 1 {
            self.compute_frames(samples, 0, &mut parts[0]);
        } else {
            // rayon's pool: waking its threads costs far less than starting new ones.
            parts
                .into_par_iter()
                .zip(bounds)
                .for_each(|(mut rows, first)| self.compute_frames(samples, first, &mut rows));
        }
        Mfcc { n_mfcc, frames, data }
    }

    /// Fills `rows[c][i]` with coefficient `c` of frame `first_frame + i`.
    fn compute_frames(&self, samples: &[f32], first_frame: usize, rows: &mut [&mut [f32]]) {
        let MfccConfig { n_fft, n_mels, n_mfcc, .. } = self.config;
        let count = rows.first().map_or(0, |r| r.len());
        let bins = n_fft / 2 + 1;
        let mut spectra = vec![Complex::new(0.0f32, 0.0); n_fft * BLOCK / 2];
        let mut scratch = vec![Complex::new(0.0f32, 0.0); self.fft.get_inplace_scratch_len()];
        let mut separated = vec![[0.0f32; 2]; padded_bins(bins) * BLOCK / 2];
        let mut power = vec![[0.0f32; 2]; padded_bins(bins) * BLOCK / 2];
        let mut mel = vec![0.0f32; n_mels * BLOCK];
        let mut coefficients = vec![0.0f32; n_mfcc.div_ceil(DCT_ROWS) * DCT_ROWS * BLOCK];
        let mut edge_frames = [vec![0.0f32; self.window.len()], vec![0.0f32; self.window.len()]];
        for block_start in (0..count).step_by(BLOCK) {
            let in_block = BLOCK.min(count - block_start);
            self.fill_frames(samples, first_frame + block_start, in_block, &mut spectra, &mut edge_frames);
            self.fft.process_with_scratch(&mut spectra, &mut scratch);
            mel_cepstrum(&spectra, &self.filters, &self.dct, &mut separated, &mut power, &mut mel, &mut coefficients);
            for (c, row) in rows.iter_mut().enumerate() {
                row[block_start..block_start + in_block]
                    .copy_from_slice(&coefficients[c * BLOCK..c * BLOCK + in_block]);
            }
        }
    }

    /// Writes frames `first..first + count` into the block's FFT buffers:
    /// frame `first + 2j` windowed into the real parts of buffer `j`, the
    /// next frame into its imaginary parts (missing frames read as silence).
    /// `edge_frames` is scratch for frames at the clip's edges, `win_length`
    /// samples each.
    fn fill_frames(
        &self,
        samples: &[f32],
        first: usize,
        count: usize,
        spectra: &mut [Complex<f32>],
        edge_frames: &mut [Vec<f32>; 2],
    ) {
        let n_fft = self.config.n_fft;
        let taps = self.window.len();
        for (j, buffer) in spectra.chunks_exact_mut(n_fft).enumerate() {
            let [even, odd] = &mut *edge_frames;
            let a = self.frame_samples(samples, first + 2 * j, 2 * j < count, even);
            let b = self.frame_samples(samples, first + 2 * j + 1, 2 * j + 1 < count, odd);
            let (head, rest) = buffer.split_at_mut(self.window_offset);
            let (body, tail) = rest.split_at_mut(taps);
            head.fill(Complex::new(0.0, 0.0));
            tail.fill(Complex::new(0.0, 0.0));
            for (((slot, &x), &y), &w) in body.iter_mut().zip(a).zip(b).zip(&self.window) {
                *slot = Complex::new(x * w, y * w);
            }
        }
    }

    /// The `win_length` samples under the window of frame `t`: borrowed from
    /// the clip where they lie inside it, else copied into `edge` with the
    /// padding (or the whole frame, when `exists` is false) as zeros.
    fn frame_samples<'a>(&self, samples: &'a [f32], t: usize, exists: bool, edge: &'a mut [f32]) -> &'a [f32] {
        let MfccConfig { n_fft, hop_length, .. } = self.config;
        // Sample index of the window's first tap in the unpadded signal
        // (`center = True` pads n_fft / 2 zeros in front).
        let start = (t * hop_length + self.window_offset) as isize - (n_fft / 2) as isize;
        let end = start + edge.len() as isize;
        if exists && start >= 0 && end as usize <= samples.len() {
            return &samples[start as usize..end as usize];
        }
        for (i, value) in edge.iter_mut().enumerate() {
            let at = start + i as isize;
            *value = if exists && at >= 0 && (at as usize) < samples.len() { samples[at as usize] } else { 0.0 };
        }
        edge
    }
}

/// From a block's FFT buffers (two real frames each) to its coefficients,
/// `coefficients[c * BLOCK + t]`: power spectra, mel energies in dB, DCT.
/// Every inner loop runs over the block's frames or over FFT bins, which is
/// what vectorises. `separated` and `power` are scratch space for
/// `padded_bins(bins) * BLOCK / 2` pairs each.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx2+fma", "x86_64+avx2+fma", "aarch64+neon"))]
fn mel_cepstrum(
    spectra: &[Complex<f32>],
    filters: &[MelFilter],
    dct: &[f32],
    separated: &mut [[f32; 2]],
    power: &mut [[f32; 2]],
    mel: &mut [f32],
    coefficients: &mut [f32],
) {
    // `a * b + c`, fused where the selected target has FMA (a library call
    // where it has not, which the constant condition compiles away).
    let fused = multiversion::target::target_cfg_f!(target_feature = "fma");
    macro_rules! mul_add {
        ($a:expr, $b:expr, $c:expr) => {
            if fused {
                $a.mul_add($b, $c)
            } else {
                $a * $b + $c
            }
        };
    }
    let n_fft = spectra.len() * 2 / BLOCK;
    let bins = n_fft / 2 + 1;
    let n_mels = filters.len();
    let pairs = BLOCK / 2;
    // Buffer j holds z = a + ib for frames 2j and 2j + 1, so with
    // Z_k = A_k + i B_k: A_k = (Z_k + conj Z_(N-k)) / 2, B_k = (Z_k - conj Z_(N-k)) / 2i.
    // separated[j * stride + k] holds both frames' power at bin k.
    let stride = padded_bins(bins);
    for (z, out) in spectra.chunks_exact(n_fft).zip(separated.chunks_exact_mut(stride)) {
        let power_of = |zk: Complex<f32>, zn: Complex<f32>| {
            let (a_re, a_im) = (zk.re + zn.re, zk.im - zn.im);
            let (b_re, b_im) = (zk.re - zn.re, zk.im + zn.im);
            [0.25 * (a_re * a_re + a_im * a_im), 0.25 * (b_re * b_re + b_im * b_im)]
        };
        out[0] = power_of(z[0], z[0]);
        // Bins 1..=n_fft/2 pair with n_fft-1 down to n_fft/2.
        for ((o, &zk), &zn) in out[1..bins].iter_mut().zip(&z[1..bins]).zip(z[n_fft / 2..].iter().rev()) {
            *o = power_of(zk, zn);
        }
    }
    // To the block's layout, bin-major with the frames side by side, moving
    // the two frames of a pair together, in square tiles the compiler
    // transposes in registers.
    for (k0, out) in (0..stride).step_by(TILE).zip(power.chunks_exact_mut(TILE * pairs)) {
        let mut tile = [[[0.0f32; 2]; TILE]; BLOCK / 2];
        for (j, row) in tile.iter_mut().enumerate() {
            row.copy_from_slice(&separated[j * stride + k0..][..TILE]);
        }
        for (kk, slots) in out.chunks_exact_mut(pairs).enumerate() {
            for (slot, row) in slots.iter_mut().zip(&tile) {
                *slot = row[kk];
            }
        }
    }
    let power = power.as_flattened();
    for (out, filter) in mel.chunks_exact_mut(BLOCK).zip(filters) {
        let out: &mut [f32; BLOCK] = out.try_into().expect("BLOCK-long chunk");
        out.fill(0.0);
        for (bin, &w) in power[filter.first_bin * BLOCK..].chunks_exact(BLOCK).zip(&filter.weights) {
            for (o, &p) in out.iter_mut().zip(bin) {
                *o = mul_add!(w, p, *o);
            }
        }
        for o in out.iter_mut() {
            *o = DB_PER_LN * ln(o.max(1e-10));
        }
    }
    // The DCT, DCT_ROWS coefficients at a time: each sum is a chain of n_mels
    // dependent multiply-adds, so one row at a time would wait on latency.
    for (out, group) in coefficients.chunks_exact_mut(DCT_ROWS * BLOCK).zip(dct.chunks_exact(DCT_ROWS * n_mels)) {
        let mut sums = [[0.0f32; BLOCK]; DCT_ROWS];
        for (m, band) in mel.chunks_exact(BLOCK).enumerate() {
            for (r, sum) in sums.iter_mut().enumerate() {
                let d = group[m * DCT_ROWS + r];
                for (s, &l) in sum.iter_mut().zip(band) {
                    *s = mul_add!(d, l, *s);
                }
            }
        }
        out.copy_from_slice(sums.as_flattened());
    }
}

/// Bins moved per tile from pair-major to bin-major order.
const TILE: usize = 8;

/// `bins` rounded up to whole tiles (the padding bins are never read).
fn padded_bins(bins: usize) -> usize {
    bins.div_ceil(TILE) * TILE
}

/// DCT rows computed together (independent sums to hide FMA latency).
const DCT_ROWS: usize = 8;

/// `10 log10(x) = DB_PER_LN * ln(x)`.
const DB_PER_LN: f32 = 10.0 / std::f32::consts::LN_10;

/// Natural logarithm of a positive, finite, normal `x`, within a few f32
/// rounding steps of `std`'s (2e-6 at most from 1e-10 to 1e12, tested):
/// `std`'s `ln` is a library call the compiler cannot vectorise,
/// and it was a third of the MFCC time. `x = 2^e m` with `m` in
/// `[sqrt(1/2), sqrt(2))`, then `ln m = 2 atanh(s)`, `s = (m - 1) / (m + 1)`,
/// `|s| < 0.172`, by its series to `s^11` (next term below 2e-10).
#[inline(always)]
fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    // Exponent and mantissa, the mantissa moved into [sqrt(1/2), sqrt(2)).
    let shifted = bits.wrapping_sub(0x3f35_04f3); // bits of sqrt(1/2)
    let exponent = (shifted as i32 >> 23) as f32;
    let m = f32::from_bits((shifted & 0x007f_ffff).wrapping_add(0x3f35_04f3));
    let s = (m - 1.0) / (m + 1.0);
    let s2 = s * s;
    let series = 1.0 + s2 * (1.0 / 3.0 + s2 * (1.0 / 5.0 + s2 * (1.0 / 7.0 + s2 * (1.0 / 9.0 + s2 * (1.0 / 11.0)))));
    exponent * std::f32::consts::LN_2 + 2.0 * s * series
}

/// `window` samples from `start`; past the clip's end the clip repeats from
/// its beginning. Only a clip shorter than the window reaches its end (see
/// [`crate::predict::voice::window_starts`]): repeating it keeps the window
/// full of speech, as every training window is, where zero padding would show
/// the network long stretches of digital silence it never trained on. The
/// voice network and the speaker encoder both read windows this way.
pub fn window_samples(samples: &[f32], start: usize, window: usize) -> Vec<f32> {
    if samples.is_empty() {
        return vec![0.0; window];
    }
    (start..start + window).map(|i| samples[i % samples.len()]).collect()
}

/// Root-mean-square level of the samples.
pub fn rms(samples: &[f32]) -> f32 {
    if samples.is_empty() {
        return 0.0;
    }
    (samples.iter().map(|s| s * s).sum::<f32>() / samples.len() as f32).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_clips_repeat_to_fill_the_window() {
        assert_eq!(window_samples(&[1.0, 2.0, 3.0], 0, 7), vec![1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0]);
        assert_eq!(window_samples(&[1.0, 2.0, 3.0, 4.0], 1, 2), vec![2.0, 3.0]);
        assert_eq!(window_samples(&[], 0, 2), vec![0.0, 0.0]);
    }

    fn sine(freq: f64, seconds: f64, rate: u32) -> Vec<f32> {
        let n = (seconds * f64::from(rate)) as usize;
        (0..n).map(|i| (0.5 * (2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(rate)).sin()) as f32).collect()
    }

    #[test]
    fn frame_count_follows_librosa_centering() {
        let extractor = MfccExtractor::new(MfccConfig::voice());
        for (len, frames) in [(0, 1), (159, 1), (160, 2), (16_000, 101), (48_000, 301)] {
            let mfcc = extractor.compute(&vec![0.1; len]);
            assert_eq!((mfcc.n_mfcc, mfcc.frames, mfcc.data.len()), (40, frames, 40 * frames), "{len} samples");
        }
    }

    #[test]
    fn silence_is_the_floor_and_louder_is_higher() {
        let extractor = MfccExtractor::new(MfccConfig::voice());
        let silent = extractor.compute(&vec![0.0; 3200]);
        // All mel bands at -100 dB: c0 = -100 * sqrt(64), the rest 0.
        assert!((silent.get(0, 5) - (-800.0)).abs() < 1e-3);
        assert!(silent.get(1, 5).abs() < 1e-3);
        // Broadband signal (a sine plus pseudo-random noise), so no band sits
        // on the floor where scaling would not show.
        let mut seed = 12345u32;
        let signal: Vec<f32> = sine(440.0, 0.2, 16_000)
            .iter()
            .map(|s| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                s + (seed >> 8) as f32 / (1 << 24) as f32 - 0.5
            })
            .collect();
        let quiet = extractor.compute(&signal.iter().map(|s| s * 0.1).collect::<Vec<_>>());
        let loud = extractor.compute(&signal);
        // 20 dB more amplitude = +20 dB in every band = +20 * 8 on c0.
        assert!((loud.get(0, 10) - quiet.get(0, 10) - 160.0).abs() < 0.01);
        assert!((loud.get(3, 10) - quiet.get(3, 10)).abs() < 0.01);
    }

    /// The same conventions computed the slow, obvious way in f64: a direct
    /// DFT of each frame, the dense filterbank, `log10`, the DCT sum.
    fn reference_mfcc(samples: &[f32], config: &MfccConfig) -> Vec<Vec<f64>> {
        let (n_fft, win) = (config.n_fft, config.win_length);
        let dense = mel_spec::mel::mel(
            f64::from(config.sample_rate),
            n_fft,
            config.n_mels,
            Some(config.f_min),
            Some(config.f_max),
            false,
            true,
        );
        let offset = (n_fft - win) / 2;
        (0..config.frames_for(samples.len()))
            .map(|t| {
                let frame: Vec<f64> = (0..n_fft)
                    .map(|i| {
                        let at = (t * config.hop_length + i) as isize - (n_fft / 2) as isize;
                        if i < offset || i >= offset + win || at < 0 || at as usize >= samples.len() {
                            return 0.0;
                        }
                        let phase = 2.0 * std::f64::consts::PI * (i - offset) as f64 / win as f64;
                        f64::from(samples[at as usize]) * (0.5 - 0.5 * phase.cos())
                    })
                    .collect();
                let power: Vec<f64> = (0..=n_fft / 2)
                    .map(|k| {
                        let (mut re, mut im) = (0.0, 0.0);
                        for (i, x) in frame.iter().enumerate() {
                            let angle = -2.0 * std::f64::consts::PI * (k * i) as f64 / n_fft as f64;
                            re += x * angle.cos();
                            im += x * angle.sin();
                        }
                        re * re + im * im
                    })
                    .collect();
                let log_mel: Vec<f64> = dense
                    .rows()
                    .into_iter()
                    .map(|row| 10.0 * row.iter().zip(&power).map(|(w, p)| w * p).sum::<f64>().max(1e-10).log10())
                    .collect();
                if config.log_mel {
                    return log_mel;
                }
                let n = config.n_mels as f64;
                (0..config.n_mfcc)
                    .map(|k| {
                        let scale = if k == 0 { (1.0 / n).sqrt() } else { (2.0 / n).sqrt() };
                        scale
                            * log_mel
                                .iter()
                                .enumerate()
                                .map(|(m, l)| {
                                    l * (std::f64::consts::PI * k as f64 * (2.0 * m as f64 + 1.0) / (2.0 * n)).cos()
                                })
                                .sum::<f64>()
                    })
                    .collect()
            })
            .collect()
    }

    fn noisy_sine(samples: usize) -> Vec<f32> {
        let mut seed = 99u32;
        sine(330.0, samples as f64 / 16_000.0, 16_000)
            .iter()
            .map(|s| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                0.6 * s + 0.2 * ((seed >> 8) as f32 / (1 << 24) as f32 - 0.5)
            })
            .collect()
    }

    /// Every frame, including both padded edges, odd frame counts (the last
    /// FFT carries one frame) and a part-filled last block, against the
    /// obvious f64 computation.
    #[test]
    fn matches_a_direct_f64_computation_frame_by_frame() {
        let config = MfccConfig::voice();
        let extractor = MfccExtractor::new(config.clone());
        for len in [100, 5_000, 5_920] {
            let samples = noisy_sine(len);
            let fast = extractor.compute(&samples);
            let slow = reference_mfcc(&samples, &config);
            assert_eq!(fast.frames, slow.len());
            let mut worst = 0.0f64;
            for (t, frame) in slow.iter().enumerate() {
                for (c, &value) in frame.iter().enumerate() {
                    worst = worst.max((f64::from(fast.get(c, t)) - value).abs());
                }
            }
            assert!(worst < 5e-4, "{len} samples: largest difference {worst}");
            eprintln!("{len} samples: largest difference from f64: {worst:.6}");
        }
    }

    /// The log-mel variant is the same computation without the DCT.
    #[test]
    fn log_mel_matches_a_direct_f64_computation() {
        let config = MfccConfig::voice_log_mel();
        let extractor = MfccExtractor::new(config.clone());
        let samples = noisy_sine(5_000);
        let (fast, slow) = (extractor.compute(&samples), reference_mfcc(&samples, &config));
        assert_eq!((fast.n_mfcc, fast.frames), (40, slow.len()));
        let worst = slow
            .iter()
            .enumerate()
            .flat_map(|(t, frame)| frame.iter().enumerate().map(move |(c, &v)| (c, t, v)))
            .map(|(c, t, v)| (f64::from(fast.get(c, t)) - v).abs())
            .fold(0.0, f64::max);
        assert!(worst < 5e-4, "largest difference {worst}");
        // Silence: every band at the -100 dB floor (an MFCC c0 would be -632).
        assert!((extractor.compute(&[0.0; 3200]).get(7, 5) + 100.0).abs() < 1e-3);
    }

    #[test]
    fn threads_change_nothing() {
        let samples = noisy_sine(16_000 * 7 + 123);
        let one = MfccExtractor::new(MfccConfig::voice()).compute(&samples);
        for threads in [2, 3, 8] {
            let many = MfccExtractor::new(MfccConfig::voice()).with_threads(threads).compute(&samples);
            assert_eq!(one, many, "{threads} threads");
        }
    }

    #[test]
    fn fast_log_matches_std() {
        let mut worst = 0.0f32;
        let mut x = 1e-10f32;
        while x < 1e12 {
            worst = worst.max((ln(x) - x.ln()).abs());
            x *= 1.0137;
        }
        assert!(worst < 2e-6, "largest error {worst}");
        assert_eq!(ln(1.0), 0.0);
    }

    #[test]
    fn filterbank_covers_the_spectrum_like_librosa() {
        let extractor = MfccExtractor::new(MfccConfig::voice());
        assert_eq!(extractor.filters.len(), 64);
        // Slaney normalisation: each filter's weights integrate to about 2 /
        // bandwidth in Hz, so peak weights fall as filters widen.
        let peak = |f: &MelFilter| f.weights.iter().cloned().fold(0.0, f32::max);
        assert!(peak(&extractor.filters[0]) > peak(&extractor.filters[63]));
        assert!(extractor.filters.iter().all(|f| !f.weights.is_empty()));
    }

    /// The whole chain against librosa 0.11 on a speech clip (see
    /// `scripts/mfcc_reference.py`). The reference is rounded to 1e-4, and the
    /// worst difference measured is recorded in the assertion message; 0.01 on
    /// values spanning -755..158 allows for float rounding, never for a
    /// different convention (a wrong window, padding, mel scale, log or DCT
    /// scaling each moves values by whole units or more).
    #[test]
    fn matches_librosa_reference() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let reference: serde_json::Value =
            serde_json::from_slice(&std::fs::read(root.join("mfcc_reference.json")).unwrap()).unwrap();
        let wav = std::fs::read(root.join("speech.wav")).unwrap();
        let audio = crate::decode::audio::decode_audio(&wav, 16_000, 60.0).unwrap();
        let mfcc = MfccExtractor::new(MfccConfig::voice()).compute(&audio.samples);
        assert_eq!(mfcc.frames as u64, reference["n_frames"].as_u64().unwrap());
        let frames: Vec<usize> =
            reference["frames"].as_array().unwrap().iter().map(|f| f.as_u64().unwrap() as usize).collect();
        let expected = reference["mfcc"].as_array().unwrap();
        assert_eq!(expected.len(), 40);
        let mut worst = 0.0f64;
        for (c, row) in expected.iter().enumerate() {
            for (i, value) in row.as_array().unwrap().iter().enumerate() {
                let diff = (f64::from(mfcc.get(c, frames[i])) - value.as_f64().unwrap()).abs();
                worst = worst.max(diff);
            }
        }
        assert!(worst < 0.01, "largest difference from librosa: {worst}");
        eprintln!("largest difference from librosa: {worst:.6}");
    }
}
