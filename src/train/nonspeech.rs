//! Sounds that are not speech, generated: the negatives the speech check
//! ([`crate::speech`]) learns to refuse and is measured on.
//!
//! Every [`Family`] draws its parameters at random (pitch, length, level,
//! rhythm, timbre), and half the clips then pass through a random "channel"
//! (a little noise, a microphone colour, a level change), so the check cannot
//! learn "perfectly clean means not speech".

use rand::rngs::SmallRng;
use rand::Rng;

use super::voice_augment::Biquad;

/// The kinds of non-speech generated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Family {
    /// A sine (50 Hz to just under Nyquist), steady or slowly gliding.
    Sine,
    /// Square, sawtooth, triangle or pulse waves.
    Waveform,
    /// Two to five harmonic notes at once.
    Chord,
    /// Notes one after another (and sometimes chords), with envelopes and vibrato.
    Melody,
    /// White, pink or brown noise, steady.
    Noise,
    /// Noise whose level rises and falls (bursts, wind, rain).
    ModulatedNoise,
    /// Clicks: regular or random impulses.
    Clicks,
    /// Beeps: tone bursts and dual tones (DTMF) with gaps.
    Beeps,
    /// A DC offset, with or without a little noise.
    Dc,
    /// Sweeps (linear or exponential chirps).
    Sweep,
    /// FM and AM tones.
    Modulated,
    /// Drum patterns: kicks, snares, hats.
    Drums,
    /// Music-like: a melody with a bass line and drums.
    Music,
    /// Mains hum (50/60 Hz and harmonics).
    Hum,
    /// One to a few hundred samples of anything.
    Tiny,
}

impl Family {
    /// Every family, in a fixed order.
    pub const ALL: [Family; 15] = [
        Family::Sine,
        Family::Waveform,
        Family::Chord,
        Family::Melody,
        Family::Noise,
        Family::ModulatedNoise,
        Family::Clicks,
        Family::Beeps,
        Family::Dc,
        Family::Sweep,
        Family::Modulated,
        Family::Drums,
        Family::Music,
        Family::Hum,
        Family::Tiny,
    ];

    /// The name used in cards and reports.
    pub fn name(self) -> &'static str {
        match self {
            Family::Sine => "sine",
            Family::Waveform => "waveform",
            Family::Chord => "chord",
            Family::Melody => "melody",
            Family::Noise => "noise",
            Family::ModulatedNoise => "modulated_noise",
            Family::Clicks => "clicks",
            Family::Beeps => "beeps",
            Family::Dc => "dc",
            Family::Sweep => "sweep",
            Family::Modulated => "modulated",
            Family::Drums => "drums",
            Family::Music => "music",
            Family::Hum => "hum",
            Family::Tiny => "tiny",
        }
    }
}

const TAU: f32 = std::f32::consts::TAU;

/// A periodic waveform of phase `p` (cycles): 0 sine, 1 square, 2 saw, 3 triangle, 4 pulse.
fn wave(kind: u8, p: f32) -> f32 {
    let frac = p - p.floor();
    match kind {
        0 => (TAU * frac).sin(),
        1 => {
            if frac < 0.5 {
                1.0
            } else {
                -1.0
            }
        }
        2 => 2.0 * frac - 1.0,
        3 => 1.0 - 4.0 * (frac - 0.5).abs(),
        _ => {
            if frac < 0.2 {
                1.0
            } else {
                -0.25
            }
        }
    }
}

/// A harmonic note: `harmonics` partials with 1/k^tilt amplitudes.
#[allow(clippy::too_many_arguments)] // a synthesiser's knobs, each used once
fn note(f0: f32, len: usize, rate: f32, harmonics: usize, tilt: f32, vibrato: (f32, f32), out: &mut [f32], gain: f32) {
    let nyquist = rate / 2.0;
    let (vib_rate, vib_depth) = vibrato;
    let mut phase = vec![0.0f32; harmonics];
    for (i, o) in out.iter_mut().take(len).enumerate() {
        let t = i as f32 / rate;
        let f = f0 * 2f32.powf(vib_depth / 12.0 * (TAU * vib_rate * t).sin());
        let mut s = 0.0;
        for (k, ph) in phase.iter_mut().enumerate() {
            let fk = f * (k + 1) as f32;
            if fk >= nyquist {
                break;
            }
            *ph += fk / rate;
            s += (TAU * *ph).sin() / ((k + 1) as f32).powf(tilt);
        }
        *o += gain * s;
    }
}

/// Attack-decay-sustain-release envelope over `len` samples.
fn adsr(len: usize, rate: f32, rng: &mut SmallRng) -> Vec<f32> {
    let attack = (rng.random_range(0.002..0.08) * rate) as usize;
    let decay = (rng.random_range(0.02..0.3) * rate) as usize;
    let sustain: f32 = rng.random_range(0.2..1.0);
    let release = (rng.random_range(0.01..0.3) * rate) as usize;
    (0..len)
        .map(|i| {
            let a = if i < attack {
                i as f32 / attack.max(1) as f32
            } else if i < attack + decay {
                1.0 - (1.0 - sustain) * (i - attack) as f32 / decay.max(1) as f32
            } else {
                sustain
            };
            let tail = len.saturating_sub(i);
            a * if tail < release { tail as f32 / release.max(1) as f32 } else { 1.0 }
        })
        .collect()
}

fn white(len: usize, rng: &mut SmallRng) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

fn noise(len: usize, colour: u8, rng: &mut SmallRng) -> Vec<f32> {
    let w = white(len, rng);
    match colour {
        0 => w,
        1 => {
            let (mut b0, mut b1, mut b2) = (0.0f32, 0.0f32, 0.0f32);
            w.iter()
                .map(|&x| {
                    b0 = 0.99765 * b0 + x * 0.0990460;
                    b1 = 0.96300 * b1 + x * 0.2965164;
                    b2 = 0.57000 * b2 + x * 1.0526913;
                    (b0 + b1 + b2 + x * 0.1848) * 0.2
                })
                .collect()
        }
        _ => {
            let mut b = 0.0f32;
            w.iter()
                .map(|&x| {
                    b = 0.997 * b + 0.05 * x;
                    b
                })
                .collect()
        }
    }
}

fn peak_normalise(x: &mut [f32], peak: f32) {
    let m = x.iter().fold(0.0f32, |a, s| a.max(s.abs()));
    if m > 0.0 {
        x.iter_mut().for_each(|s| *s *= peak / m);
    }
}

/// A melody of notes (with rests) over `len` samples, added into `out`.
fn melody(out: &mut [f32], rate: f32, low: f32, high: f32, rng: &mut SmallRng) {
    let harmonics = rng.random_range(1..12);
    let tilt = rng.random_range(0.5..2.5);
    let vibrato =
        if rng.random_bool(0.5) { (rng.random_range(4.0..7.5), rng.random_range(0.1..1.0)) } else { (0.0, 0.0) };
    let legato = rng.random_bool(0.5);
    let mut at = 0usize;
    while at < out.len() {
        let len = ((rng.random_range(0.08..0.7) * rate) as usize).min(out.len() - at);
        if rng.random_bool(0.85) {
            let voices = if rng.random_bool(0.2) { rng.random_range(2..4) } else { 1 };
            let mut buf = vec![0.0f32; len];
            for _ in 0..voices {
                let f0 = low * (high / low).powf(rng.random::<f32>());
                let f0 = 440.0 * 2f32.powf(((12.0 * (f0 / 440.0).log2()).round()) / 12.0); // on the scale
                note(f0, len, rate, harmonics, tilt, vibrato, &mut buf, 1.0 / voices as f32);
            }
            let env = if legato { vec![1.0; len] } else { adsr(len, rate, rng) };
            for (o, (b, e)) in out[at..at + len].iter_mut().zip(buf.iter().zip(&env)) {
                *o += b * e;
            }
        }
        at += len;
    }
}

/// A drum pattern over `out`, added in.
fn drums(out: &mut [f32], rate: f32, rng: &mut SmallRng) {
    let bpm: f32 = rng.random_range(60.0..180.0);
    let step = (rate * 60.0 / bpm / 2.0) as usize; // eighth notes
    let pattern: Vec<u8> = (0..8).map(|_| rng.random_range(0..4)).collect();
    let mut at = 0;
    let mut i = 0;
    while at < out.len() {
        let hit = pattern[i % 8];
        let len = (step * 2).min(out.len() - at);
        match hit {
            1 => {
                // Kick: a sine falling from 150 to 50 Hz, decaying.
                let mut phase = 0.0f32;
                for (k, o) in out[at..at + len].iter_mut().enumerate() {
                    let t = k as f32 / rate;
                    phase += (50.0 + 100.0 * (-t * 30.0).exp()) / rate;
                    *o += (TAU * phase).sin() * (-t * 12.0).exp();
                }
            }
            2 => {
                for (k, o) in out[at..at + len].iter_mut().enumerate() {
                    let t = k as f32 / rate;
                    *o += rng.random_range(-0.7f32..0.7) * (-t * 25.0).exp();
                }
            }
            3 => {
                let hat = len.min((0.05 * rate) as usize);
                let mut previous = 0.0f32;
                for (k, o) in out[at..at + hat].iter_mut().enumerate() {
                    let x: f32 = rng.random_range(-0.4..0.4);
                    *o += (x - previous) * (-(k as f32) / rate * 60.0).exp();
                    previous = x;
                }
            }
            _ => {}
        }
        at += step;
        i += 1;
    }
}

/// One clip of `family` at `rate` Hz.
pub fn generate(family: Family, rate: u32, rng: &mut SmallRng) -> Vec<f32> {
    let r = rate as f32;
    let nyquist = r / 2.0;
    let seconds: f32 = if rng.random_bool(0.2) { rng.random_range(0.2..1.0) } else { rng.random_range(1.0..6.0) };
    let len = (seconds * r) as usize;
    let mut x = vec![0.0f32; len];
    match family {
        Family::Sine => {
            let f = if rng.random_bool(0.1) {
                nyquist * rng.random_range(0.97..1.0)
            } else {
                50.0 * (nyquist * 0.98 / 50.0).powf(rng.random::<f32>())
            };
            let glide: f32 = if rng.random_bool(0.3) { rng.random_range(-0.3..0.3) } else { 0.0 };
            let mut phase = 0.0f32;
            for (i, s) in x.iter_mut().enumerate() {
                let t = i as f32 / r;
                phase += (f * 2f32.powf(glide * t)).min(nyquist) / r;
                *s = (TAU * phase).sin();
            }
        }
        Family::Waveform => {
            let kind = rng.random_range(1..5);
            let f = 40.0 * (2000.0f32 / 40.0).powf(rng.random::<f32>());
            for (i, s) in x.iter_mut().enumerate() {
                *s = wave(kind, f * i as f32 / r);
            }
        }
        Family::Chord => {
            let root = 80.0 * (1000.0f32 / 80.0).powf(rng.random::<f32>());
            let intervals = [0, 3, 4, 5, 7, 9, 10, 12, 14, 16, 19];
            let voices = rng.random_range(2..6);
            let (harmonics, tilt) = (rng.random_range(1..10), rng.random_range(0.5..2.5));
            for _ in 0..voices {
                let f = root * 2f32.powf(intervals[rng.random_range(0..intervals.len())] as f32 / 12.0);
                note(f, len, r, harmonics, tilt, (0.0, 0.0), &mut x, 1.0 / voices as f32);
            }
            if rng.random_bool(0.5) {
                let env = adsr(len, r, rng);
                x.iter_mut().zip(&env).for_each(|(s, e)| *s *= e);
            }
        }
        Family::Melody => {
            let low = rng.random_range(80.0..400.0);
            melody(&mut x, r, low, low * rng.random_range(1.5..4.0), rng);
        }
        Family::Noise => x = noise(len, rng.random_range(0..3), rng),
        Family::ModulatedNoise => {
            x = noise(len, rng.random_range(0..3), rng);
            let rate_hz: f32 = rng.random_range(0.5..12.0);
            let depth: f32 = rng.random_range(0.5..1.0);
            let bursts = rng.random_bool(0.4);
            let mut on = true;
            let mut next = 0usize;
            for (i, s) in x.iter_mut().enumerate() {
                if bursts {
                    if i >= next {
                        on = !on;
                        next = i + (rng.random_range(0.05..0.5) * r) as usize;
                    }
                    if !on {
                        *s *= 0.02;
                    }
                } else {
                    *s *= 1.0 - depth * 0.5 * (1.0 + (TAU * rate_hz * i as f32 / r).sin());
                }
            }
            if rng.random_bool(0.5) {
                let f = rng.random_range(300.0..4000.0);
                Biquad::peaking(f, 2.0, 12.0, f64::from(rate)).apply(&mut x);
            }
        }
        Family::Clicks => {
            let regular = rng.random_bool(0.5);
            let per_second: f32 = rng.random_range(0.5..60.0);
            let mut at = 0.0f32;
            while (at as usize) < len {
                let i = at as usize;
                let width = rng.random_range(1..30usize);
                for k in 0..width.min(len - i) {
                    x[i + k] += if k % 2 == 0 { 1.0 } else { -0.8 } * (1.0 - k as f32 / width as f32);
                }
                at += if regular { r / per_second } else { rng.random_range(0.2..2.0) * r / per_second };
            }
        }
        Family::Beeps => {
            let dtmf = rng.random_bool(0.4);
            let f = rng.random_range(300.0..4000.0);
            let (on, off) = (rng.random_range(0.03..0.6), rng.random_range(0.03..0.6));
            let (low, high) = ([697.0, 770.0, 852.0, 941.0], [1209.0, 1336.0, 1477.0]);
            let mut at = 0usize;
            while at < len {
                let n = ((on * r) as usize).min(len - at);
                let (f1, f2) =
                    if dtmf { (low[rng.random_range(0..4)], high[rng.random_range(0..3)]) } else { (f, 0.0) };
                for k in 0..n {
                    let t = (at + k) as f32 / r;
                    x[at + k] = (TAU * f1 * t).sin() + if f2 > 0.0 { (TAU * f2 * t).sin() } else { 0.0 };
                }
                at += n + (off * r) as usize;
            }
        }
        Family::Dc => {
            let offset: f32 = rng.random_range(-0.9..0.9);
            let hiss: f32 = if rng.random_bool(0.5) { rng.random_range(0.0..0.0005) } else { 0.0 };
            for s in x.iter_mut() {
                *s = offset + hiss * rng.random_range(-1.0f32..1.0);
            }
            return x; // no channel: the offset is the point
        }
        Family::Sweep => {
            let (f1, f2) = (rng.random_range(50.0..nyquist * 0.9), rng.random_range(50.0..nyquist * 0.9));
            let exponential = rng.random_bool(0.5);
            let mut phase = 0.0f32;
            for (i, s) in x.iter_mut().enumerate() {
                let u = i as f32 / len.max(1) as f32;
                let f = if exponential { f1 * (f2 / f1).powf(u) } else { f1 + (f2 - f1) * u };
                phase += f / r;
                *s = (TAU * phase).sin();
            }
        }
        Family::Modulated => {
            let carrier = rng.random_range(100.0..4000.0);
            let modulator = rng.random_range(0.5..300.0);
            let index: f32 = rng.random_range(0.5..8.0);
            let am = rng.random_bool(0.4);
            for (i, s) in x.iter_mut().enumerate() {
                let t = i as f32 / r;
                *s = if am {
                    (TAU * carrier * t).sin() * (0.5 + 0.5 * (TAU * modulator * t).sin())
                } else {
                    (TAU * carrier * t + index * (TAU * modulator * t).sin()).sin()
                };
            }
        }
        Family::Drums => drums(&mut x, r, rng),
        Family::Music => {
            let low = rng.random_range(150.0..500.0);
            melody(&mut x, r, low, low * 2.5, rng);
            let mut bass = vec![0.0f32; len];
            melody(&mut bass, r, 40.0, 120.0, rng);
            let mut beat = vec![0.0f32; len];
            if rng.random_bool(0.7) {
                drums(&mut beat, r, rng);
            }
            for ((s, b), d) in x.iter_mut().zip(&bass).zip(&beat) {
                *s += 0.6 * b + 0.5 * d;
            }
        }
        Family::Hum => {
            let mains = if rng.random_bool(0.5) { 50.0 } else { 60.0 };
            let harmonics = rng.random_range(1..8);
            note(mains, len, r, harmonics, rng.random_range(0.3..1.5), (0.0, 0.0), &mut x, 1.0);
        }
        Family::Tiny => {
            let n = rng.random_range(1..400);
            return (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect();
        }
    }
    peak_normalise(&mut x, 10f32.powf(rng.random_range(-40.0..0.0) / 20.0));
    if rng.random_bool(0.5) {
        channel(&mut x, rate, rng);
        // A boost of the colour can push peaks past full scale.
        if x.iter().any(|s| s.abs() > 1.0) {
            peak_normalise(&mut x, 1.0);
        }
    }
    x
}

/// A random recording chain: a microphone colour and a little noise.
pub fn channel(x: &mut [f32], rate: u32, rng: &mut SmallRng) {
    let f = 10f64.powf(rng.random_range(2.3..3.8));
    Biquad::peaking(f, rng.random_range(0.5..2.0), rng.random_range(-9.0..9.0), f64::from(rate)).apply(x);
    let level = crate::predict::voice::rms(x);
    let snr: f32 = rng.random_range(15.0..50.0);
    let amplitude = level / 10f32.powf(snr / 20.0) * 3f32.sqrt();
    let hiss = noise(x.len(), rng.random_range(0..3), rng);
    let hiss_level = crate::predict::voice::rms(&hiss).max(1e-9);
    for (s, h) in x.iter_mut().zip(&hiss) {
        *s += amplitude * h / hiss_level / 3f32.sqrt();
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    #[test]
    fn every_family_makes_finite_bounded_sound() {
        let mut rng = SmallRng::seed_from_u64(11);
        for family in Family::ALL {
            for _ in 0..4 {
                let x = generate(family, 16_000, &mut rng);
                assert!(!x.is_empty(), "{family:?}");
                assert!(x.iter().all(|s| s.is_finite() && s.abs() <= 1.5), "{family:?}");
                assert!(x.len() <= 6 * 16_000, "{family:?}");
            }
        }
    }
}
