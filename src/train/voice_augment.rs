//! Training-time changes to a speech window that model other voices, rooms,
//! microphones and lines, so that the voice network learns the speaker's
//! emotion and sex rather than one corpus's recording chain.
//!
//! [`augment_window`] crops (or repeats) a clip to one window and applies, each
//! with its own probability ([`VoiceAugment`]):
//!
//! - **speed / pitch**: resampling by 0.85-1.15 moves pitch, formants and tempo
//!   together, a cheap stand-in for other vocal tracts;
//! - **pitch alone** (off in the shipped recipe): the voiced parts' F0 moved
//!   with the formants and tempo kept ([`shift_pitch_keep_formants`]), so
//!   that a man's raised voice is still heard as a man's;
//! - **microphone colour**: one to three peaking filters of +-9 dB and a
//!   first-order tilt;
//! - **reverberation**: a synthetic room impulse response (direct path plus
//!   exponentially decaying noise, RT60 0.15-0.8 s) by FFT convolution;
//! - **telephone**: 300-3400 Hz band-pass and 8-bit mu-law;
//! - **band limit**: a low-pass between 3.5 and 7 kHz, as low-bitrate codecs
//!   cut the top of the spectrum;
//! - **level and clipping**: +-10 dB, and hard clipping of a louder copy (some
//!   corpora peak at full scale);
//! - **noise**: white, pink or brown at 5-30 dB SNR.

use rand::rngs::SmallRng;
use rand::Rng;
use rustfft::num_complex::Complex;
use rustfft::FftPlanner;

pub use crate::features::filter::Biquad;
use crate::features::pitch::PitchTracker;
use crate::predict::voice::{rms, window_samples};

/// Probabilities of each change (0 turns it off).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VoiceAugment {
    /// Largest relative speed change (0.15: 0.85-1.15).
    pub speed: f64,
    pub colour: f64,
    pub reverb: f64,
    pub telephone: f64,
    pub band_limit: f64,
    pub clip: f64,
    pub noise: f64,
    /// Level change range, dB either way.
    pub gain_db: f32,
    /// Largest shift, in octaves either way, added to the log-F0 row of the
    /// voiced frames of half the windows, the spectrum left as it is (0: off;
    /// recipes from before it had none). Aroused speech raises F0 and calm
    /// speech lowers it; a network that hears sex mostly in F0 then hears
    /// angry men as women and sad women as men. See [`shift_pitch_row`].
    #[serde(default)]
    pub f0_shift: f32,
    /// Largest shift, in octaves either way, of the pitch of half the windows'
    /// audio with the formants kept ([`shift_pitch_keep_formants`]; 0: off;
    /// recipes from before it had none). Unlike `f0_shift` it moves the
    /// harmonics in the spectrum too, so the network cannot find the old F0
    /// elsewhere; only the vocal tract is left to tell the sexes apart.
    #[serde(default)]
    pub pitch_shift: f32,
    /// Most consecutive spectral rows (bands) of half the windows set to the
    /// training mean, a frequency mask (SpecAugment; 0: off; recipes from
    /// before it had none). A network that cannot count on any one band must
    /// spread what it hears over the spectrum, as another language, voice or
    /// microphone moves energy between bands. The pitch rows are never masked.
    #[serde(default)]
    pub freq_mask: usize,
    /// Mixup (Zhang et al. 2018): every training batch's rows mixed pairwise
    /// with a weight drawn from Beta(mixup, mixup), the loss mixed alike
    /// (0: off; recipes from before it had none). A network trained between
    /// the training voices, not only on them, should answer more calmly for a
    /// voice that lies between them.
    #[serde(default)]
    pub mixup: f32,
    /// Share of windows cut as a short excerpt ([`SHORT_EXCERPT_SECONDS`],
    /// inside the clip's [`loud_span`]) repeated to fill the window, the form
    /// in which the server hears every clip shorter than a window (0: off;
    /// recipes from before it had none). Without it, a corpus whose clips all
    /// fill a window never teaches emotion in that form.
    #[serde(default)]
    pub short_excerpt: f64,
}

/// Shortest and longest excerpt of [`VoiceAugment::short_excerpt`], seconds
/// (before the speed change): a word or two up to a short sentence.
pub const SHORT_EXCERPT_SECONDS: (f64, f64) = (1.0, 2.5);

/// Frames of 25 ms every 10 ms under this many dB below the clip's loudest
/// frame lie outside its [`loud_span`].
const LOUD_SPAN_DB: f32 = 30.0;

/// The samples from the first to the last 25 ms frame (every 10 ms) within
/// [`LOUD_SPAN_DB`] of the clip's loudest: the clip without its leading
/// and trailing silence (all of it if it is silent throughout).
pub fn loud_span(samples: &[f32], rate: f64) -> (usize, usize) {
    let (frame, hop) = (((0.025 * rate) as usize).max(1), ((0.010 * rate) as usize).max(1));
    if samples.len() <= frame {
        return (0, samples.len());
    }
    let levels: Vec<f32> =
        (0..=(samples.len() - frame) / hop).map(|i| rms(&samples[i * hop..i * hop + frame])).collect();
    let loudest = levels.iter().copied().fold(0.0f32, f32::max);
    if loudest <= 0.0 {
        return (0, samples.len());
    }
    let floor = loudest * 10f32.powf(-LOUD_SPAN_DB / 20.0);
    let first = levels.iter().position(|&l| l >= floor).unwrap_or(0);
    let last = levels.iter().rposition(|&l| l >= floor).unwrap_or(levels.len() - 1);
    (first * hop, (last * hop + frame).min(samples.len()))
}

impl VoiceAugment {
    /// The shipped model's recipe.
    pub fn channel_robust() -> Self {
        Self {
            speed: 0.15,
            colour: 0.5,
            reverb: 0.25,
            telephone: 0.12,
            band_limit: 0.15,
            clip: 0.12,
            noise: 0.5,
            gain_db: 10.0,
            f0_shift: 0.0,
            pitch_shift: 0.0,
            freq_mask: 0,
            mixup: 0.0,
            short_excerpt: 0.0,
        }
    }

    /// The first model's recipe: speed +-10%, gain +-6 dB, white noise.
    pub fn basic() -> Self {
        Self {
            speed: 0.1,
            colour: 0.0,
            reverb: 0.0,
            telephone: 0.0,
            band_limit: 0.0,
            clip: 0.0,
            noise: 0.5,
            gain_db: 6.0,
            f0_shift: 0.0,
            pitch_shift: 0.0,
            freq_mask: 0,
            mixup: 0.0,
            short_excerpt: 0.0,
        }
    }
}

/// Adds one random offset in `-max_octaves..=max_octaves` to the log-F0 row
/// (`rows - 2`) of a `[rows, frames]` feature map wherever the voicing row
/// (`rows - 1`) says the frame is voiced; unvoiced frames keep their 0.
pub fn shift_pitch_row(map: &mut [f32], rows: usize, frames: usize, max_octaves: f32, rng: &mut SmallRng) {
    if max_octaves <= 0.0 || rows < 2 {
        return;
    }
    let offset = rng.random_range(-max_octaves..=max_octaves);
    let (pitch, voicing) = map[(rows - 2) * frames..rows * frames].split_at_mut(frames);
    for (f0, strength) in pitch.iter_mut().zip(voicing.iter()) {
        if *strength >= crate::features::voice_input::VOICED_STRENGTH {
            *f0 += offset;
        }
    }
}

/// `samples` with the pitch of their voiced parts moved by `octaves` and
/// their spectral envelope (formants), duration and unvoiced sounds kept:
/// time-domain pitch-synchronous overlap-add (TD-PSOLA, Moulines &
/// Charpentier 1990).
///
/// The signal is cut into grains two local periods long (Hann-windowed), one
/// per period where the pitch tracker hears voicing and one per 10 ms
/// elsewhere. Each grain keeps the vocal tract's response to one glottal
/// pulse, so laying the grains of voiced parts closer together (higher
/// pitch) or further apart (lower) moves the harmonics while their envelope
/// stays. Every output sample is the window-weighted mean of the grains over
/// it, so the level is kept whatever the spacing. Shifts beyond two octaves
/// either way are clamped to two (each grain then still advances the output
/// by at least a quarter period).
pub fn shift_pitch_keep_formants(samples: &[f32], rate: f64, octaves: f32) -> Vec<f32> {
    let n = samples.len();
    if octaves == 0.0 || n < 2 || !octaves.is_finite() {
        return samples.to_vec();
    }
    let hop = ((rate * 0.01) as usize).max(1);
    let track = PitchTracker::new(rate as u32, hop).track(samples);
    let last_frame = track.f0.len().saturating_sub(1);
    let unvoiced = hop;
    // The grain spacing at sample `t`: one period where voiced.
    let period_at = |t: usize| -> (usize, bool) {
        let frame = ((t + hop / 2) / hop).min(last_frame);
        let (f0, strength) = (track.f0[frame], track.strength[frame]);
        if strength >= crate::features::voice_input::VOICED_STRENGTH && f0 > 0.0 {
            (((rate as f32 / f0).round() as usize).max(2), true)
        } else {
            (unvoiced, false)
        }
    };
    let mut marks = Vec::new();
    let mut t = 0;
    while t < n {
        let (period, voiced) = period_at(t);
        marks.push((t, period, voiced));
        t += period;
    }
    let factor = 2f64.powf(f64::from(octaves.clamp(-2.0, 2.0)));
    let mut out = vec![0.0f32; n];
    let mut weight = vec![0.0f32; n];
    let (mut at, mut k) = (0.0f64, 0usize);
    while (at as usize) < n {
        while k + 1 < marks.len() && (marks[k + 1].0 as f64) <= at {
            k += 1;
        }
        if k + 1 < marks.len() && marks[k + 1].0 as f64 - at < at - marks[k].0 as f64 {
            k += 1;
        }
        let (mark, period, voiced) = marks[k];
        let centre = at.round() as isize;
        let half = period as isize;
        for i in -half..half {
            let (src, dst) = (mark as isize + i, centre + i);
            if src < 0 || dst < 0 || src as usize >= n || dst as usize >= n {
                continue;
            }
            let w = 0.5 + 0.5 * (std::f32::consts::PI * i as f32 / half as f32).cos();
            out[dst as usize] += w * samples[src as usize];
            weight[dst as usize] += w;
        }
        at += if voiced { period as f64 / factor } else { period as f64 };
    }
    for ((o, w), s) in out.iter_mut().zip(&weight).zip(samples) {
        *o = if *w > 1e-3 { *o / w } else { *s };
    }
    out
}

/// Stretches `samples` to `len` samples by linear interpolation.
pub fn stretch(samples: &[f32], len: usize) -> Vec<f32> {
    if samples.len() < 2 || len == 0 {
        return vec![samples.first().copied().unwrap_or(0.0); len];
    }
    let step = (samples.len() - 1) as f64 / (len.max(2) - 1) as f64;
    (0..len)
        .map(|i| {
            let x = i as f64 * step;
            let j = (x as usize).min(samples.len() - 2);
            let frac = (x - j as f64) as f32;
            samples[j] * (1.0 - frac) + samples[j + 1] * frac
        })
        .collect()
}

/// `samples` convolved with `kernel`, cut to the length of `samples`.
pub fn convolve(samples: &[f32], kernel: &[f32]) -> Vec<f32> {
    if samples.is_empty() || kernel.is_empty() {
        return samples.to_vec();
    }
    let len = (samples.len() + kernel.len()).next_power_of_two();
    let fft = FftPlanner::new().plan_fft_forward(len);
    let ifft = FftPlanner::new().plan_fft_inverse(len);
    let mut a: Vec<Complex<f32>> = samples.iter().map(|&s| Complex::new(s, 0.0)).collect();
    a.resize(len, Complex::new(0.0, 0.0));
    let mut b: Vec<Complex<f32>> = kernel.iter().map(|&s| Complex::new(s, 0.0)).collect();
    b.resize(len, Complex::new(0.0, 0.0));
    fft.process(&mut a);
    fft.process(&mut b);
    for (x, y) in a.iter_mut().zip(&b) {
        *x *= y;
    }
    ifft.process(&mut a);
    a.iter().take(samples.len()).map(|c| c.re / len as f32).collect()
}

/// A synthetic room impulse response: the direct path, then noise decaying
/// by 60 dB in `rt60` seconds.
fn room_response(rt60: f64, rate: f64, rng: &mut SmallRng) -> Vec<f32> {
    let len = (rt60 * rate) as usize;
    let decay = -6.9078 / (rt60 * rate); // ln(1e-3) per sample
    let mut h: Vec<f32> = (0..len)
        .map(|n| {
            let white: f32 = rng.random_range(-1.0..1.0);
            white * ((decay * n as f64).exp() as f32) * 0.3
        })
        .collect();
    if let Some(first) = h.first_mut() {
        *first = 1.0;
    }
    let energy = h.iter().map(|v| v * v).sum::<f32>().sqrt();
    h.iter_mut().for_each(|v| *v /= energy);
    h
}

/// Noise of one colour, unit RMS.
fn coloured_noise(len: usize, colour: u8, rng: &mut SmallRng) -> Vec<f32> {
    let mut out = Vec::with_capacity(len);
    let (mut b0, mut b1, mut b2, mut brown) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
    for _ in 0..len {
        let white: f32 = rng.random_range(-1.0..1.0);
        out.push(match colour {
            0 => white,
            1 => {
                // Paul Kellet's economy pink filter.
                b0 = 0.99765 * b0 + white * 0.0990460;
                b1 = 0.96300 * b1 + white * 0.2965164;
                b2 = 0.57000 * b2 + white * 1.0526913;
                b0 + b1 + b2 + white * 0.1848
            }
            _ => {
                brown = 0.995 * brown + white * 0.1;
                brown
            }
        });
    }
    let level = rms(&out).max(1e-9);
    out.iter_mut().for_each(|v| *v /= level);
    out
}

/// mu-law (mu = 255) to 8 bits and back, as G.711 telephone lines do.
fn mu_law_8bit(samples: &mut [f32]) {
    let mu = 255.0f32;
    for s in samples.iter_mut() {
        let x = s.clamp(-1.0, 1.0);
        let y = x.signum() * (1.0 + mu * x.abs()).ln() / (1.0 + mu).ln();
        let q = (y * 127.0).round() / 127.0;
        *s = q.signum() * ((1.0 + mu).powf(q.abs()) - 1.0) / mu;
    }
}

/// One augmented training window of `window` samples at `rate` Hz.
pub fn augment_window(
    samples: &[f32],
    window: usize,
    rate: f64,
    recipe: &VoiceAugment,
    rng: &mut SmallRng,
) -> Vec<f32> {
    let speed: f64 = if recipe.speed > 0.0 { rng.random_range(1.0 - recipe.speed..1.0 + recipe.speed) } else { 1.0 };
    // Drawn only when asked for, so that recipes without it keep their
    // random stream (and their trained weights) as they were.
    let short = recipe.short_excerpt > 0.0 && rng.random_bool(recipe.short_excerpt.min(1.0));
    let (source_len, (from, to)) = if short {
        let seconds = rng.random_range(SHORT_EXCERPT_SECONDS.0..=SHORT_EXCERPT_SECONDS.1);
        (((seconds * rate * speed) as usize).clamp(1, (window as f64 * speed) as usize), loud_span(samples, rate))
    } else {
        (((window as f64 * speed) as usize).max(1), (0, samples.len()))
    };
    let start = if to - from > source_len { rng.random_range(from..=to - source_len) } else { from };
    let source = &samples[start..(start + source_len).min(to)];
    let stretched = stretch(source, ((source.len() as f64 / speed) as usize).min(window));
    // A short clip repeats to fill the window, from a random phase, as
    // serving does (see `window_samples`).
    let phase = if stretched.len() < window { rng.random_range(0..stretched.len().max(1)) } else { 0 };
    let mut out = window_samples(&stretched, phase, window);
    if recipe.pitch_shift > 0.0 && rng.random_bool(0.5) {
        let octaves = rng.random_range(-recipe.pitch_shift..=recipe.pitch_shift);
        out = shift_pitch_keep_formants(&out, rate, octaves);
    }
    let level = rms(&out);

    if rng.random_bool(recipe.colour) {
        for _ in 0..rng.random_range(1..=3) {
            let freq = 10f64.powf(rng.random_range(2.3..3.8)); // 200 Hz - 6.3 kHz
            Biquad::peaking(freq, rng.random_range(0.5..2.0), rng.random_range(-9.0..9.0), rate).apply(&mut out);
        }
        // Tilt: mix in a first difference (brighter) or a leaky sum (darker).
        let tilt: f32 = rng.random_range(-0.5..0.5);
        let mut previous = 0.0f32;
        for s in out.iter_mut() {
            let x = *s;
            *s = x + tilt * (x - previous);
            previous = x;
        }
    }
    if rng.random_bool(recipe.reverb) {
        let response = room_response(rng.random_range(0.15..0.8), rate, rng);
        let wet = convolve(&out, &response);
        let dry: f32 = rng.random_range(0.0..0.7);
        out.iter_mut().zip(&wet).for_each(|(s, w)| *s = dry * *s + (1.0 - dry) * w);
    }
    if rng.random_bool(recipe.telephone) {
        for _ in 0..2 {
            Biquad::high_pass(300.0, 0.707, rate).apply(&mut out);
            Biquad::low_pass(3400.0, 0.707, rate).apply(&mut out);
        }
        let peak = out.iter().fold(0.0f32, |m, s| m.max(s.abs())).max(1e-6);
        out.iter_mut().for_each(|s| *s /= peak * 1.05);
        mu_law_8bit(&mut out);
    } else if rng.random_bool(recipe.band_limit) {
        let cutoff = rng.random_range(3500.0..7000.0);
        for _ in 0..2 {
            Biquad::low_pass(cutoff, 0.707, rate).apply(&mut out);
        }
    }
    // Back to the clip's own level before the gain, so that the level range
    // is the recipe's whatever the filters did.
    let now = rms(&out).max(1e-9);
    let gain = level / now * 10f32.powf(rng.random_range(-recipe.gain_db..=recipe.gain_db) / 20.0);
    out.iter_mut().for_each(|s| *s *= gain);
    if rng.random_bool(recipe.clip) {
        let peak = out.iter().fold(0.0f32, |m, s| m.max(s.abs())).max(1e-6);
        let limit = peak / rng.random_range(1.5f32..4.0);
        out.iter_mut().for_each(|s| *s = s.clamp(-limit, limit));
    }
    if rng.random_bool(recipe.noise) {
        let snr_db: f32 = rng.random_range(5.0..30.0);
        let amplitude = rms(&out) / 10f32.powf(snr_db / 20.0);
        let noise = coloured_noise(out.len(), rng.random_range(0..3), rng);
        out.iter_mut().zip(&noise).for_each(|(s, n)| *s += amplitude * n);
    }
    out
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    fn tone(freq: f32, len: usize) -> Vec<f32> {
        (0..len).map(|i| (std::f32::consts::TAU * freq * i as f32 / 16_000.0).sin() * 0.3).collect()
    }

    #[test]
    fn filters_pass_and_stop_what_they_should() {
        let mut low = tone(200.0, 16_000);
        let mut high = tone(5_000.0, 16_000);
        let lp = Biquad::low_pass(1_000.0, 0.707, 16_000.0);
        lp.apply(&mut low);
        lp.apply(&mut high);
        assert!(rms(&low[1000..]) > 0.2, "200 Hz passes");
        assert!(rms(&high[1000..]) < 0.02, "5 kHz stopped");
        let mut peaked = tone(1_000.0, 16_000);
        Biquad::peaking(1_000.0, 1.0, 6.0, 16_000.0).apply(&mut peaked);
        let ratio = rms(&peaked[1000..]) / rms(&tone(1_000.0, 15_000));
        assert!((ratio - 2.0).abs() < 0.05, "+6 dB at the centre: x{ratio}");
    }

    #[test]
    fn stretch_keeps_end_points() {
        let s = stretch(&[0.0, 1.0, 2.0], 5);
        assert_eq!(s, vec![0.0, 0.5, 1.0, 1.5, 2.0]);
        assert_eq!(stretch(&[], 3), vec![0.0; 3]);
    }

    #[test]
    fn convolving_with_an_impulse_is_the_identity() {
        let x = tone(300.0, 1_000);
        let y = convolve(&x, &[1.0]);
        assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() < 1e-4));
        let delayed = convolve(&x, &[0.0, 0.0, 1.0]);
        assert!((delayed[10] - x[8]).abs() < 1e-4);
    }

    #[test]
    fn pitch_shift_moves_voiced_frames_alike_and_leaves_the_rest() {
        let (rows, frames) = (4, 6);
        let voicing = [0.9f32, 0.1, 0.7, 0.0, 0.5, 0.49];
        let pitch = [-0.5f32, 0.0, -0.4, 0.0, 0.3, 0.0];
        let mut map: Vec<f32> = (0..2 * frames).map(|i| i as f32).chain(pitch).chain(voicing).collect();
        let before = map.clone();
        let mut rng = SmallRng::seed_from_u64(3);
        shift_pitch_row(&mut map, rows, frames, 0.25, &mut rng);
        let offset = map[2 * frames] - before[2 * frames];
        assert!(offset.abs() > 0.0 && offset.abs() <= 0.25, "{offset}");
        for f in 0..frames {
            let moved = map[2 * frames + f] - before[2 * frames + f];
            let expected = if voicing[f] >= 0.5 { offset } else { 0.0 };
            assert!((moved - expected).abs() < 1e-6, "frame {f}: {moved} vs {expected}");
        }
        assert_eq!(map[..2 * frames], before[..2 * frames], "spectral rows untouched");
        assert_eq!(map[3 * frames..], before[3 * frames..], "voicing untouched");
        shift_pitch_row(&mut map, rows, frames, 0.0, &mut rng);
        assert_eq!(map[2 * frames] - before[2 * frames], offset, "0 turns it off");
    }

    /// A vowel-like sound: glottal pulses at `f0` through one resonance at
    /// `formant` Hz (100 Hz wide).
    fn vowel(f0: f32, formant: f32, len: usize) -> Vec<f32> {
        let rate = 16_000.0f32;
        let ring: Vec<f32> = (0..400)
            .map(|i| {
                let t = i as f32 / rate;
                (-std::f32::consts::PI * 100.0 * t).exp() * (std::f32::consts::TAU * formant * t).sin()
            })
            .collect();
        let mut pulses = vec![0.0f32; len];
        let mut t = 0.0f32;
        while (t as usize) < len {
            pulses[t as usize] = 1.0;
            t += rate / f0;
        }
        let out = convolve(&pulses, &ring);
        let peak = out.iter().fold(0.0f32, |m, s| m.max(s.abs()));
        out.iter().map(|s| s / peak * 0.5).collect()
    }

    /// Median F0 of the voiced frames.
    fn median_pitch(samples: &[f32]) -> f32 {
        let track = PitchTracker::new(16_000, 160).track(samples);
        let voiced: Vec<f32> = track
            .f0
            .iter()
            .zip(&track.strength)
            .filter(|(_, s)| **s >= crate::features::voice_input::VOICED_STRENGTH)
            .map(|(f, _)| *f)
            .collect();
        crate::speech::median(&voiced)
    }

    /// Power-weighted mean frequency of the 300-2,500 Hz band: where the
    /// formant sits.
    fn formant_centroid(samples: &[f32]) -> f32 {
        let len = samples.len().next_power_of_two();
        let mut spectrum: Vec<Complex<f32>> = samples.iter().map(|&s| Complex::new(s, 0.0)).collect();
        spectrum.resize(len, Complex::new(0.0, 0.0));
        FftPlanner::new().plan_fft_forward(len).process(&mut spectrum);
        let (mut sum, mut weighted) = (0.0f64, 0.0f64);
        for (bin, c) in spectrum.iter().enumerate().take(len / 2) {
            let freq = bin as f64 * 16_000.0 / len as f64;
            if (300.0..2_500.0).contains(&freq) {
                sum += f64::from(c.norm_sqr());
                weighted += freq * f64::from(c.norm_sqr());
            }
        }
        (weighted / sum) as f32
    }

    #[test]
    fn pitch_moves_and_the_formant_stays() {
        let voice = vowel(120.0, 800.0, 32_000);
        let (pitch, formant) = (median_pitch(&voice), formant_centroid(&voice));
        assert!((pitch - 120.0).abs() < 3.0, "the fixture's pitch: {pitch}");
        for octaves in [0.5f32, -0.4] {
            let shifted = shift_pitch_keep_formants(&voice, 16_000.0, octaves);
            assert_eq!(shifted.len(), voice.len(), "duration kept");
            assert!(shifted.iter().all(|s| s.is_finite()));
            let expected = 120.0 * 2f32.powf(octaves);
            let moved = median_pitch(&shifted);
            assert!((moved / expected - 1.0).abs() < 0.04, "{octaves} octaves: {moved} Hz, expected {expected}");
            let kept = formant_centroid(&shifted);
            assert!((kept / formant - 1.0).abs() < 0.08, "{octaves} octaves: formant {formant} -> {kept}");
            let level = rms(&shifted) / rms(&voice);
            assert!((0.7..1.4).contains(&level), "level kept: x{level}");
        }
        // The measure tells the two apart: resampling (the speed change)
        // moves the formant with the pitch.
        let resampled = stretch(&voice[..22_627], 32_000);
        assert!(formant_centroid(&resampled) < 0.8 * formant, "resampling moves it");
    }

    #[test]
    fn pitch_shift_leaves_unvoiced_sound_and_nothing_alone() {
        let mut rng = SmallRng::seed_from_u64(9);
        let noise = coloured_noise(16_000, 0, &mut rng);
        let shifted = shift_pitch_keep_formants(&noise, 16_000.0, 0.5);
        let diff: Vec<f32> = noise.iter().zip(&shifted).map(|(a, b)| a - b).collect();
        assert!(rms(&diff) < 0.05 * rms(&noise), "noise has no pitch to move: {}", rms(&diff));
        assert_eq!(shift_pitch_keep_formants(&noise, 16_000.0, 0.0), noise, "0 octaves: unchanged");
        assert_eq!(shift_pitch_keep_formants(&[], 16_000.0, 0.5), Vec::<f32>::new());
        assert_eq!(shift_pitch_keep_formants(&[0.3], 16_000.0, 0.5), vec![0.3]);
        assert_eq!(shift_pitch_keep_formants(&[0.0; 500], 16_000.0, -0.5), vec![0.0; 500]);
        // An absurd shift is clamped, not an endless loop.
        let voice = vowel(150.0, 700.0, 8_000);
        let far = shift_pitch_keep_formants(&voice, 16_000.0, 1e9);
        assert_eq!(far, shift_pitch_keep_formants(&voice, 16_000.0, 2.0));
    }

    #[test]
    fn the_loud_span_leaves_out_leading_and_trailing_silence() {
        let mut clip = vec![0.0f32; 8_000];
        clip.extend(tone(220.0, 16_000));
        clip.extend(vec![0.0001f32; 8_000]);
        let (from, to) = loud_span(&clip, 16_000.0);
        assert!((7_600..=8_000).contains(&from), "from {from}");
        assert!((24_000..=24_400).contains(&to), "to {to}");
        assert_eq!(loud_span(&[0.0; 1_000], 16_000.0), (0, 1_000), "silence throughout: all of it");
        assert_eq!(loud_span(&[0.5; 100], 16_000.0), (0, 100), "shorter than a frame");
        assert_eq!(loud_span(&[], 16_000.0), (0, 0));
    }

    #[test]
    fn short_excerpts_repeat_a_piece_of_the_speech() {
        // 1 s of silence, 3 s of a tone, 1 s of silence: an excerpt is cut
        // from the tone and repeated, so the window holds no silence.
        let mut clip = vec![0.0f32; 16_000];
        clip.extend(tone(220.0, 48_000));
        clip.extend(vec![0.0f32; 16_000]);
        let only = |short_excerpt| VoiceAugment { short_excerpt, ..VoiceAugment::basic() };
        let quiet = VoiceAugment { noise: 0.0, gain_db: 0.0, speed: 0.0, ..only(1.0) };
        let mut rng = SmallRng::seed_from_u64(9);
        for _ in 0..6 {
            let w = augment_window(&clip, 48_000, 16_000.0, &quiet, &mut rng);
            assert_eq!(w.len(), 48_000);
            let silent = w.chunks(400).filter(|c| rms(c) < 1e-3).count();
            assert_eq!(silent, 0, "a repeated excerpt of the tone has no silent frame");
        }
        // A window from the whole clip (off) holds its silence.
        let whole = VoiceAugment { short_excerpt: 0.0, ..quiet };
        let w = augment_window(&clip, 48_000, 16_000.0, &whole, &mut SmallRng::seed_from_u64(4));
        assert!(w.chunks(400).any(|c| rms(c) < 1e-3));
    }

    #[test]
    fn every_change_keeps_the_window_finite_and_full() {
        let clip = tone(220.0, 40_000);
        let all = VoiceAugment {
            speed: 0.15,
            colour: 1.0,
            reverb: 1.0,
            telephone: 0.5,
            band_limit: 1.0,
            clip: 1.0,
            noise: 1.0,
            gain_db: 10.0,
            f0_shift: 0.25,
            pitch_shift: 0.5,
            freq_mask: 8,
            mixup: 0.2,
            short_excerpt: 0.5,
        };
        let mut rng = SmallRng::seed_from_u64(5);
        for _ in 0..8 {
            let w = augment_window(&clip, 48_000, 16_000.0, &all, &mut rng);
            assert_eq!(w.len(), 48_000);
            assert!(w.iter().all(|s| s.is_finite() && s.abs() < 4.0));
            assert!(rms(&w) > 0.01);
        }
        let a = augment_window(&clip, 48_000, 16_000.0, &VoiceAugment::channel_robust(), &mut rng);
        let b = augment_window(&clip, 48_000, 16_000.0, &VoiceAugment::channel_robust(), &mut rng);
        assert_ne!(a, b);
    }
}
