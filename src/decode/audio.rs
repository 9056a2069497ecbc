//! Uploaded audio to mono samples at one fixed rate.
//!
//! symphonia probes the container from the bytes (never the file name) and
//! decodes WAV (8/16/24/32-bit integer, 32-bit float), FLAC, MP3, Ogg Vorbis
//! and MP4/M4A with AAC. Each decoded packet's channels are averaged to mono
//! and resampled at once with rubato's FFT resampler (band-limited, not
//! nearest-sample), so memory holds only the clip at the target rate, never
//! the source's channels at the source's rate.
//!
//! The cost of decoding is bounded by work, not by seconds: a clip may hold
//! at most [`max_decoded_samples`] samples (rate x channels x seconds), and
//! decoding stops as soon as it passes that or the duration limit, so a tiny
//! file declaring 300 s of 8-channel 384 kHz sound, or an hour of anything,
//! costs only the limit's worth of work.

use std::io::Cursor;

use rubato::{FftFixedIn, Resampler};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Audio formats accepted for upload, for error messages.
pub const ACCEPTED_AUDIO_FORMATS: &str = "WAV, FLAC, MP3, Ogg Vorbis, M4A/AAC";

/// Why an upload could not be read as audio.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AudioDecodeError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is not audio in a supported format ({ACCEPTED_AUDIO_FORMATS})")]
    UnsupportedFormat,
    /// The container is readable but its codec is not (e.g. ADPCM in WAV).
    #[error("the clip's codec ({0}) cannot be decoded")]
    UnsupportedCodec(String),
    #[error("the audio is truncated or corrupt: {0}")]
    Corrupt(String),
    #[error("the file holds no audio samples")]
    NoSamples,
    #[error("the audio holds NaN or infinite samples")]
    NonFinite,
    #[error("the clip is longer than the {max_seconds} s limit")]
    TooLong { max_seconds: f64 },
    /// More samples (rate x channels x seconds) than one clip may cost.
    #[error(
        "the clip holds too many samples to decode: {detail}, over the limit of {limit_millions:.1} million \
         ({max_seconds} s of 96 kHz stereo); send it with fewer channels or at a lower sample rate"
    )]
    TooManySamples { detail: String, limit_millions: f64, max_seconds: f64 },
    #[error("the clip has {channels} channels; at most {MAX_CHANNELS} are decoded (mix it down to stereo or mono)")]
    TooManyChannels { channels: usize },
}

/// Most channels a clip may have: the most symphonia's WAV reader maps (26
/// speaker positions); FLAC holds at most 8.
pub const MAX_CHANNELS: usize = 26;

/// Most chunks a WAV file may hold before its audio: real files have a few.
const MAX_WAV_CHUNKS: usize = 10_000;

/// Samples (all channels) a clip of at most `max_seconds` may cost to decode:
/// as many as `max_seconds` of 96 kHz stereo.
pub fn max_decoded_samples(max_seconds: f64) -> u64 {
    (max_seconds.max(0.0) * 192_000.0).ceil() as u64
}

/// A decoded clip: mono samples in `[-1, 1]` at `sample_rate`.
#[derive(Debug, Clone)]
pub struct DecodedAudio {
    pub samples: Vec<f32>,
    pub sample_rate: u32,
    /// The source's rate and channel count, for reports.
    pub source_rate: u32,
    pub source_channels: usize,
}

impl DecodedAudio {
    /// Length in seconds.
    pub fn duration(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }
}

/// Sample rates a clip may declare.
const SOURCE_RATES: std::ops::RangeInclusive<u32> = 1_000..=384_000;

/// Largest sample magnitude accepted (full scale is 1).
const MAX_SAMPLE_MAGNITUDE: f32 = 1000.0;

/// Decodes `bytes` to mono at `target_rate`, refusing clips longer than
/// `max_seconds`.
pub fn decode_audio(bytes: &[u8], target_rate: u32, max_seconds: f64) -> Result<DecodedAudio, AudioDecodeError> {
    if bytes.is_empty() {
        return Err(AudioDecodeError::Empty);
    }
    use crate::decode::{sniff, AudioContainer, MediaKind};
    let container = match sniff(bytes) {
        MediaKind::Audio(container) => Some(container),
        _ => None,
    };
    if container == Some(AudioContainer::Mp4) {
        check_mp4_tables(bytes).map_err(AudioDecodeError::Corrupt)?;
    }
    if container == Some(AudioContainer::Wav) {
        check_wav_header(bytes)?;
    }
    // symphonia panics on some hostile headers (a WAV declaring 0 Hz makes a
    // zero time base), and rubato unwraps its FFT's results: contain both
    // and call the file what it is.
    let decoded = std::panic::catch_unwind(|| decode_mono(bytes, target_rate, max_seconds)).unwrap_or_else(|_| {
        Err(AudioDecodeError::Corrupt("its headers are invalid (the decoder gave up on them)".into()))
    });
    let decoded = match decoded {
        // A file whose magic bytes name a container we read, but which no
        // reader can open, is a damaged file of that kind, not an unknown one
        // (a codec symphonia lacks is `UnsupportedCodec`, from the decoder).
        Err(AudioDecodeError::UnsupportedFormat) if container.is_some() => {
            return Err(AudioDecodeError::Corrupt("the container's headers are missing or damaged".into()))
        }
        other => other?,
    };
    if decoded.samples.iter().any(|s| !s.is_finite()) {
        return Err(AudioDecodeError::NonFinite);
    }
    Ok(decoded)
}

/// Reads a WAV file's chunk list up to its audio: the channel count against
/// [`MAX_CHANNELS`] (symphonia calls 64 channels "invalid", or with an
/// extensible header names the codec as unsupported), no 0 channels or 0 Hz,
/// and no more than [`MAX_WAV_CHUNKS`] chunks. Anything else is left to symphonia.
fn check_wav_header(bytes: &[u8]) -> Result<(), AudioDecodeError> {
    let mut at = 12usize;
    let mut chunks = 0usize;
    while let Some(head) = bytes.get(at..at + 8) {
        chunks += 1;
        if chunks > MAX_WAV_CHUNKS {
            return Err(AudioDecodeError::Corrupt(format!(
                "its header holds more than {MAX_WAV_CHUNKS} chunks before the audio"
            )));
        }
        let size = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
        match &head[..4] {
            b"fmt " => {
                if let Some(channels) = bytes.get(at + 10..at + 12) {
                    let channels = usize::from(u16::from_le_bytes([channels[0], channels[1]]));
                    if channels > MAX_CHANNELS {
                        return Err(AudioDecodeError::TooManyChannels { channels });
                    }
                    if channels == 0 {
                        return Err(AudioDecodeError::Corrupt("its header declares 0 channels".into()));
                    }
                }
                // A 0 Hz rate makes symphonia panic (a zero time base).
                if let Some(rate) = bytes.get(at + 12..at + 16) {
                    if u32::from_le_bytes([rate[0], rate[1], rate[2], rate[3]]) == 0 {
                        return Err(AudioDecodeError::Corrupt("its header declares a sample rate of 0 Hz".into()));
                    }
                }
            }
            b"data" => return Ok(()),
            _ => {}
        }
        // Chunks are padded to an even length.
        at = at.saturating_add(8).saturating_add(size).saturating_add(size & 1);
    }
    Ok(())
}

/// Boxes whose children lead to the sample tables (`meta` is a full box:
/// version and flags come before its children).
const MP4_CONTAINERS: [&[u8; 4]; 11] =
    [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"edts", b"dinf", b"udta", b"moof", b"traf", b"mvex"];

/// Checks every MP4 sample table against the bytes it occupies before
/// symphonia sees the file: its reader reserves memory for the number of
/// entries a table *claims* (an `stts` claiming 4 billion entries asks for
/// 32 GiB, and a failed allocation aborts the process; found by fuzzing).
/// Also refuses boxes that claim more bytes than their parent holds.
fn check_mp4_tables(bytes: &[u8]) -> Result<(), String> {
    fn walk(data: &[u8], depth: usize) -> Result<(), String> {
        if depth > 12 {
            return Err("its boxes are nested too deep".into());
        }
        let mut at = 0usize;
        while data.len() - at >= 8 {
            let kind: [u8; 4] = data[at + 4..at + 8].try_into().unwrap_or_default();
            let name = String::from_utf8_lossy(&kind).into_owned();
            let (header, size) = match u32::from_be_bytes(data[at..at + 4].try_into().unwrap_or_default()) {
                0 => (8, (data.len() - at) as u64),
                1 if data.len() - at >= 16 => {
                    (16, u64::from_be_bytes(data[at + 8..at + 16].try_into().unwrap_or_default()))
                }
                1 => return Err(format!("its `{name}` box is cut short")),
                n => (8, u64::from(n)),
            };
            if size < header as u64 {
                return Err(format!("its `{name}` box has an impossible size ({size} bytes)"));
            }
            let available = (data.len() - at) as u64;
            if size > available {
                // Sample data cut off at the end is judged by the decoder
                // (against the declared length); a cut header box is damage.
                if &kind == b"mdat" || &kind == b"free" || &kind == b"skip" {
                    return Ok(());
                }
                return Err(format!("its `{name}` box claims {size} bytes but only {available} remain"));
            }
            let payload = &data[at + header..at + size as usize];
            if MP4_CONTAINERS.contains(&&kind) {
                walk(payload, depth + 1)?;
            } else if &kind == b"meta" && payload.len() >= 4 {
                walk(&payload[4..], depth + 1)?;
            } else {
                check_table(&kind, payload).map_err(|e| format!("its `{name}` table {e}"))?;
            }
            at += size as usize;
        }
        Ok(())
    }
    fn check_table(kind: &[u8; 4], payload: &[u8]) -> Result<(), String> {
        let read_u32 =
            |at: usize| payload.get(at..at + 4).map(|b| u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]])));
        // (where the count is, bytes per entry, where the entries start)
        let (count, entry, start) = match kind {
            b"stts" | b"ctts" | b"co64" => (read_u32(4), 8, 8),
            b"stss" | b"stco" => (read_u32(4), 4, 8),
            b"stsc" => (read_u32(4), 12, 8),
            // Entries only when every sample's size is not the same.
            b"stsz" if read_u32(4) == Some(0) => (read_u32(8), 4, 12),
            _ => return Ok(()),
        };
        let count = count.ok_or("is cut short")?;
        let room = (payload.len().saturating_sub(start) / entry) as u64;
        if count > room {
            return Err(format!("claims {count} entries but has room for {room}"));
        }
        Ok(())
    }
    walk(bytes, 0)
}

/// Decodes every packet of the first audio track, averaging its channels to
/// mono and resampling each packet's samples to `target_rate` as they come.
fn decode_mono(bytes: &[u8], target_rate: u32, max_seconds: f64) -> Result<DecodedAudio, AudioDecodeError> {
    let source = MediaSourceStream::new(Box::new(Cursor::new(bytes.to_vec())), Default::default());
    let probed = symphonia::default::get_probe()
        .format(&Hint::new(), source, &FormatOptions::default(), &MetadataOptions::default())
        .map_err(|e| match e {
            SymphoniaError::Unsupported(_) => AudioDecodeError::UnsupportedFormat,
            SymphoniaError::IoError(_) => AudioDecodeError::UnsupportedFormat,
            other => AudioDecodeError::Corrupt(other.to_string()),
        })?;
    let mut format = probed.format;
    let track =
        format.tracks().iter().find(|t| t.codec_params.codec != CODEC_TYPE_NULL).ok_or(AudioDecodeError::NoSamples)?;
    let mut track_id = track.id;
    let source_rate = track
        .codec_params
        .sample_rate
        .filter(|&r| r > 0)
        .ok_or_else(|| AudioDecodeError::Corrupt("the stream does not declare a sample rate".into()))?;
    // A header claiming 4 GHz makes the resampler plan enormous FFTs (ten
    // seconds and more for a 20 kB file; found by fuzzing).
    if !SOURCE_RATES.contains(&source_rate) {
        return Err(AudioDecodeError::Corrupt(format!(
            "it declares a sample rate of {source_rate} Hz (audio files use {} to {} Hz)",
            SOURCE_RATES.start(),
            SOURCE_RATES.end()
        )));
    }
    let declared_channels = track.codec_params.channels.map_or(1, |c| c.count());
    if declared_channels > MAX_CHANNELS {
        return Err(AudioDecodeError::TooManyChannels { channels: declared_channels });
    }
    let max_frames = (max_seconds * f64::from(source_rate)).ceil() as u64;
    let budget = max_decoded_samples(max_seconds);
    let declared_frames = track.codec_params.n_frames;
    // `so_far`: found while decoding, so the clip holds at least that much.
    let too_many_samples = |frames: u64, channels: usize, so_far: bool| AudioDecodeError::TooManySamples {
        detail: format!(
            "{}{:.0} s at {source_rate} Hz x {channels} channels is {:.1} million samples",
            if so_far { "it holds more than " } else { "" },
            frames as f64 / f64::from(source_rate),
            (frames * channels as u64) as f64 / 1e6
        ),
        limit_millions: budget as f64 / 1e6,
        max_seconds,
    };
    // Refuse at once what the header says is too long or too costly.
    if let Some(frames) = declared_frames {
        if frames > max_frames + u64::from(source_rate) {
            return Err(AudioDecodeError::TooLong { max_seconds });
        }
        if frames * declared_channels as u64 > budget {
            return Err(too_many_samples(frames, declared_channels, false));
        }
    }
    let codecs = symphonia::default::get_codecs();
    let make_decoder = |params: &symphonia::core::codecs::CodecParameters| {
        codecs.make(params, &DecoderOptions::default()).map_err(|_| {
            let name = codecs.get_codec(params.codec).map_or("unknown", |d| d.short_name);
            AudioDecodeError::UnsupportedCodec(name.to_string())
        })
    };
    let mut decoder = make_decoder(&track.codec_params)?;

    let mut resampler = StreamResampler::new(source_rate, target_rate)?;
    let mut frames = 0u64;
    let mut samples_decoded = 0u64;
    let mut channels = declared_channels;
    let mut buffer: Option<SampleBuffer<f32>> = None;
    let mut mono = Vec::new();
    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            // The normal end of a stream, or its cut-off end: keep what decoded.
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            // A chained Ogg file: the next link is a new stream, and its track
            // replaces the last one. The clip is every link, within the limits.
            Err(SymphoniaError::ResetRequired) => {
                let Some(next) = format.tracks().iter().find(|t| t.codec_params.codec != CODEC_TYPE_NULL) else {
                    break;
                };
                if next.codec_params.sample_rate != Some(source_rate) {
                    return Err(AudioDecodeError::Corrupt(format!(
                        "its chained streams change sample rate ({source_rate} Hz, then {} Hz)",
                        next.codec_params.sample_rate.unwrap_or(0)
                    )));
                }
                track_id = next.id;
                decoder = make_decoder(&next.codec_params)?;
                continue;
            }
            Err(e) => return Err(AudioDecodeError::Corrupt(e.to_string())),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(decoded) => decoded,
            // One damaged frame in a lossy stream: skip it, as players do.
            Err(SymphoniaError::DecodeError(_)) => continue,
            Err(e) => return Err(AudioDecodeError::Corrupt(e.to_string())),
        };
        let spec = *decoded.spec();
        channels = spec.channels.count().max(1);
        if channels > MAX_CHANNELS {
            return Err(AudioDecodeError::TooManyChannels { channels });
        }
        let needed = decoded.capacity() as u64;
        let buf = match &mut buffer {
            Some(b) if b.capacity() as u64 >= needed * channels as u64 => b,
            _ => buffer.insert(SampleBuffer::new(needed, spec)),
        };
        buf.copy_interleaved_ref(decoded);
        mono.clear();
        mono.extend(buf.samples().chunks_exact(channels).map(|frame| frame.iter().sum::<f32>() / channels as f32));
        frames += mono.len() as u64;
        samples_decoded += (mono.len() * channels) as u64;
        if frames > max_frames {
            return Err(AudioDecodeError::TooLong { max_seconds });
        }
        if samples_decoded > budget {
            return Err(too_many_samples(frames, channels, true));
        }
        if mono.iter().any(|s| !s.is_finite()) {
            return Err(AudioDecodeError::NonFinite);
        }
        // Float formats can hold any value; audio lives in -1..1 (a little
        // over is headroom). Values a thousand times full scale are not
        // sound, and overflow the resampler to infinity (found by fuzzing).
        if mono.iter().any(|s| s.abs() > MAX_SAMPLE_MAGNITUDE) {
            return Err(AudioDecodeError::Corrupt(format!(
                "its samples reach far beyond full scale (more than {MAX_SAMPLE_MAGNITUDE} times)"
            )));
        }
        resampler.push(&mono)?;
    }
    // A container that declares its length (WAV, FLAC, MP4) but ends well
    // short of it was cut off: say so rather than analyse a fragment. Lossy
    // codecs may differ from the declared count by their padding, hence the
    // slack of 0.1 s.
    if let Some(declared) = declared_frames {
        let slack = u64::from(source_rate) / 10;
        if frames + slack < declared {
            let rate = f64::from(source_rate);
            return Err(AudioDecodeError::Corrupt(format!(
                "the file is truncated: it declares {:.2} s of audio but ends after {:.2} s",
                declared as f64 / rate,
                frames as f64 / rate
            )));
        }
    }
    if frames == 0 {
        return Err(AudioDecodeError::NoSamples);
    }
    Ok(DecodedAudio { samples: resampler.finish()?, sample_rate: target_rate, source_rate, source_channels: channels })
}

/// Encodes mono samples (-1..1, clipped) as a 16-bit PCM WAV file: test
/// fixtures, benchmark inputs and examples make their clips with it.
pub fn pcm16_wav(samples: &[f32], rate: u32) -> Vec<u8> {
    let data_len = (samples.len() * 2) as u32;
    let mut out = Vec::with_capacity(44 + samples.len() * 2);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&1u16.to_le_bytes()); // PCM
    out.extend_from_slice(&1u16.to_le_bytes()); // mono
    out.extend_from_slice(&rate.to_le_bytes());
    out.extend_from_slice(&(rate * 2).to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    for &s in samples {
        out.extend_from_slice(&((s.clamp(-1.0, 1.0) * 32767.0).round() as i16).to_le_bytes());
    }
    out
}

/// Resamples mono audio with rubato's FFT resampler, compensating its delay so
/// the output lines up with the input and has `len * to / from` samples.
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>, AudioDecodeError> {
    let mut resampler = StreamResampler::new(from, to)?;
    resampler.push(samples)?;
    resampler.finish()
}

/// [`resample`] fed piece by piece: holds less than one chunk of input and
/// the output so far.
pub struct StreamResampler {
    inner: Option<FftFixedIn<f32>>,
    from: u32,
    to: u32,
    pending: Vec<f32>,
    consumed: u64,
    out: Vec<f32>,
}

impl StreamResampler {
    /// A resampler from `from` Hz to `to` Hz (a plain copy when they are equal).
    pub fn new(from: u32, to: u32) -> Result<Self, AudioDecodeError> {
        let inner = if from == to {
            None
        } else {
            Some(FftFixedIn::<f32>::new(from as usize, to as usize, 1024, 2, 1).map_err(|e| Self::fail(from, to, &e))?)
        };
        Ok(Self { inner, from, to, pending: Vec::new(), consumed: 0, out: Vec::new() })
    }

    fn fail(from: u32, to: u32, e: &dyn std::fmt::Display) -> AudioDecodeError {
        AudioDecodeError::Corrupt(format!("resampling {from} Hz to {to} Hz: {e}"))
    }

    /// Feeds the next samples.
    pub fn push(&mut self, samples: &[f32]) -> Result<(), AudioDecodeError> {
        self.consumed += samples.len() as u64;
        let Some(resampler) = &mut self.inner else {
            self.out.extend_from_slice(samples);
            return Ok(());
        };
        self.pending.extend_from_slice(samples);
        let mut start = 0;
        while self.pending.len() - start >= resampler.input_frames_next() {
            let end = start + resampler.input_frames_next();
            let chunk = resampler
                .process(&[&self.pending[start..end]], None)
                .map_err(|e| Self::fail(self.from, self.to, &e))?;
            self.out.extend_from_slice(&chunk[0]);
            start = end;
        }
        self.pending.drain(..start);
        Ok(())
    }

    /// The resampled clip: `consumed * to / from` samples, aligned with the input.
    pub fn finish(mut self) -> Result<Vec<f32>, AudioDecodeError> {
        let Some(resampler) = &mut self.inner else { return Ok(self.out) };
        let (from, to) = (self.from, self.to);
        let fail = |e: &dyn std::fmt::Display| Self::fail(from, to, e);
        let expected = (self.consumed * u64::from(to) / u64::from(from)) as usize;
        let delay = resampler.output_delay();
        // The partial last chunk, then silence until the delayed output is out.
        if !self.pending.is_empty() {
            let chunk = resampler.process_partial(Some(&[&self.pending[..]]), None).map_err(|e| fail(&e))?;
            self.out.extend_from_slice(&chunk[0]);
        }
        while self.out.len() < expected + delay {
            let chunk = resampler.process_partial::<&[f32]>(None, None).map_err(|e| fail(&e))?;
            self.out.extend_from_slice(&chunk[0]);
        }
        self.out.drain(..delay);
        self.out.truncate(expected);
        self.out.shrink_to_fit();
        Ok(self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A WAV file of a 440 Hz sine on every channel (`bits` 8/16/24 integer,
    /// or 32 float).
    fn wav(rate: u32, channels: u16, bits: u16, float: bool, seconds: f64) -> Vec<u8> {
        let frames = (f64::from(rate) * seconds) as u32;
        let bytes_per_sample = u32::from(bits / 8);
        let data_len = frames * u32::from(channels) * bytes_per_sample;
        let mut out = Vec::new();
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data_len).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&(if float { 3u16 } else { 1u16 }).to_le_bytes());
        out.extend_from_slice(&channels.to_le_bytes());
        out.extend_from_slice(&rate.to_le_bytes());
        out.extend_from_slice(&(rate * u32::from(channels) * bytes_per_sample).to_le_bytes());
        out.extend_from_slice(&(channels * bits / 8).to_le_bytes());
        out.extend_from_slice(&bits.to_le_bytes());
        out.extend_from_slice(b"data");
        out.extend_from_slice(&data_len.to_le_bytes());
        for i in 0..frames {
            let v = 0.5 * (2.0 * std::f64::consts::PI * 440.0 * f64::from(i) / f64::from(rate)).sin();
            for _ in 0..channels {
                match (bits, float) {
                    (8, _) => out.push((128.0 + v * 127.0).round() as u8),
                    (16, _) => out.extend_from_slice(&((v * 32767.0).round() as i16).to_le_bytes()),
                    (24, _) => out.extend_from_slice(&((v * 8_388_607.0).round() as i32).to_le_bytes()[..3]),
                    (32, true) => out.extend_from_slice(&(v as f32).to_le_bytes()),
                    _ => unreachable!(),
                }
            }
        }
        out
    }

    /// Frequency estimate: upward crossings from below -0.1 to above +0.1
    /// (hysteresis, so dither in near-silence does not count) over the middle
    /// half of the clip (lossy encoders pad both ends with silence).
    fn frequency(samples: &[f32], rate: u32) -> f64 {
        let middle = &samples[samples.len() / 4..samples.len() * 3 / 4];
        let (mut below, mut crossings) = (false, 0);
        for &s in middle {
            if s < -0.1 {
                below = true;
            } else if s > 0.1 && below {
                below = false;
                crossings += 1;
            }
        }
        crossings as f64 * f64::from(rate) / middle.len() as f64
    }

    #[test]
    fn wav_of_every_sample_format_rate_and_channel_count_decodes_to_16k_mono() {
        for (bits, float) in [(8, false), (16, false), (24, false), (32, true)] {
            for rate in [8000, 22050, 44100, 48000] {
                for channels in [1, 2, 6] {
                    let clip = decode_audio(&wav(rate, channels, bits, float, 0.5), 16000, 60.0)
                        .unwrap_or_else(|e| panic!("{bits}-bit {rate} Hz x{channels}: {e}"));
                    let what = format!("{bits}-bit {rate} Hz x{channels}");
                    assert_eq!((clip.source_rate, clip.source_channels), (rate, channels as usize), "{what}");
                    assert_eq!(clip.samples.len(), 8000, "{what}");
                    let f = frequency(&clip.samples, 16000);
                    assert!((f - 440.0).abs() < 10.0, "{what}: {f} Hz");
                    let peak = clip.samples.iter().fold(0f32, |m, s| m.max(s.abs()));
                    assert!((0.45..0.56).contains(&peak), "{what}: peak {peak}");
                }
            }
        }
    }

    /// FLAC, Ogg Vorbis and MP3 made by sox (installed by scripts/setup.sh).
    #[test]
    fn compressed_formats_made_by_sox_decode() {
        let dir = tempfile::tempdir().unwrap();
        for ext in ["flac", "ogg", "mp3"] {
            let path = dir.path().join(format!("tone.{ext}"));
            let status = std::process::Command::new("sox")
                .args(["-n", "-r", "44100", "-c", "2"])
                .arg(&path)
                .args(["synth", "1", "sine", "440", "vol", "0.5"])
                .status()
                .expect("sox (run scripts/setup.sh)");
            assert!(status.success(), "sox could not write {ext}");
            let clip =
                decode_audio(&std::fs::read(&path).unwrap(), 16000, 60.0).unwrap_or_else(|e| panic!("{ext}: {e}"));
            assert!((clip.duration() - 1.0).abs() < 0.1, "{ext}: {} s", clip.duration());
            let f = frequency(&clip.samples, 16000);
            assert!((f - 440.0).abs() < 10.0, "{ext}: {f} Hz");
        }
    }

    #[test]
    fn pcm16_wav_round_trips_through_the_decoder() {
        let tone: Vec<f32> = (0..8000).map(|i| (i as f32 * 0.05).sin() * 0.5).collect();
        let decoded = decode_audio(&pcm16_wav(&tone, 16_000), 16_000, 60.0).unwrap();
        assert_eq!(decoded.samples.len(), tone.len());
        assert!(decoded.samples.iter().zip(&tone).all(|(a, b)| (a - b).abs() < 1e-3));
    }

    #[test]
    fn bad_audio_gets_specific_errors() {
        assert_eq!(decode_audio(b"", 16000, 60.0).unwrap_err(), AudioDecodeError::Empty);
        assert_eq!(
            decode_audio(b"plain text, no audio", 16000, 60.0).unwrap_err(),
            AudioDecodeError::UnsupportedFormat
        );
        // Known containers that no reader can open are damaged, not unknown.
        assert!(matches!(decode_audio(b"fLaC", 16000, 60.0), Err(AudioDecodeError::Corrupt(_))));
        // A WAV declaring 0 Hz (symphonia panics on it; found by the bad-input suite).
        let mut zero_hz = wav(16000, 1, 16, false, 0.5);
        zero_hz[24..28].copy_from_slice(&0u32.to_le_bytes());
        match decode_audio(&zero_hz, 16000, 60.0) {
            Err(AudioDecodeError::Corrupt(why)) => assert!(why.contains("0 Hz"), "{why}"),
            other => panic!("expected a corrupt file naming its 0 Hz rate, got {other:?}"),
        }
        let mut no_channels = wav(16000, 1, 16, false, 0.5);
        no_channels[22..24].copy_from_slice(&0u16.to_le_bytes());
        assert!(matches!(decode_audio(&no_channels, 16000, 60.0), Err(AudioDecodeError::Corrupt(_))));
        // An MP4 sample table claiming 4 billion entries (symphonia would
        // reserve 32 GiB for it; found by fuzzing).
        let mut m4a = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/speech.m4a")).unwrap();
        assert!(decode_audio(&m4a, 16000, 60.0).is_ok());
        let stts = m4a.windows(4).position(|w| w == b"stts").unwrap();
        m4a[stts + 8..stts + 12].copy_from_slice(&u32::MAX.to_be_bytes());
        match decode_audio(&m4a, 16000, 60.0) {
            Err(AudioDecodeError::Corrupt(message)) => assert!(message.contains("`stts` table claims"), "{message}"),
            other => panic!("expected a corrupt-file error, got {other:?}"),
        }
        // A WAV declaring 4.29 GHz (the resampler would plan for minutes).
        let mut fast = wav(16000, 1, 16, false, 0.5);
        fast[24..28].copy_from_slice(&0xFFFF_DD44u32.to_le_bytes());
        assert!(
            matches!(decode_audio(&fast, 16000, 60.0), Err(AudioDecodeError::Corrupt(m)) if m.contains("4294958404 Hz"))
        );
        // Finite float samples far beyond full scale (they overflowed the
        // resampler to infinity; found by fuzzing).
        let mut huge = wav(16000, 1, 32, true, 0.5);
        for (i, v) in [1e30f32, -1e30, 3e38].iter().enumerate() {
            huge[44 + 4 * i..48 + 4 * i].copy_from_slice(&v.to_le_bytes());
        }
        assert!(
            matches!(decode_audio(&huge, 16000, 60.0), Err(AudioDecodeError::Corrupt(m)) if m.contains("full scale"))
        );
        // A stream of zero length.
        let zero_length = wav(16000, 1, 16, false, 0.0);
        assert_eq!(decode_audio(&zero_length, 16000, 60.0).unwrap_err(), AudioDecodeError::NoSamples);
        // A header that promises a second of data and holds none, or half of it:
        // truncated, not a shorter clip.
        let full = wav(16000, 1, 16, false, 1.0);
        for cut in [44, 44 + 16000] {
            match decode_audio(&full[..cut], 16000, 60.0).unwrap_err() {
                AudioDecodeError::Corrupt(m) => {
                    assert!(m.contains("truncated") && m.contains("declares 1.00 s"), "{m}")
                }
                other => panic!("cut at {cut}: {other:?}"),
            }
        }
        let flac =
            std::fs::read(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/speech.flac")).unwrap();
        assert!(matches!(decode_audio(&flac[..flac.len() / 2], 16000, 60.0), Err(AudioDecodeError::Corrupt(_))));
        let long = wav(8000, 1, 16, false, 3.0);
        assert_eq!(decode_audio(&long, 16000, 2.0).unwrap_err(), AudioDecodeError::TooLong { max_seconds: 2.0 });
        let mut nan = wav(8000, 1, 32, true, 0.1);
        nan[44..48].copy_from_slice(&f32::NAN.to_le_bytes());
        assert_eq!(decode_audio(&nan, 16000, 60.0).unwrap_err(), AudioDecodeError::NonFinite);
    }

    #[test]
    fn resampling_a_whole_number_of_chunks() {
        let resampler = FftFixedIn::<f32>::new(44100, 16000, 1024, 2, 1).unwrap();
        let n = resampler.input_frames_next() * 3;
        assert_eq!(resample(&vec![0.1; n], 44100, 16000).unwrap().len(), n * 16000 / 44100);
    }

    #[test]
    fn resampling_keeps_length_and_timing() {
        let rate = 44100;
        let samples: Vec<f32> = (0..rate).map(|i| if i == rate / 2 { 1.0 } else { 0.0 }).collect();
        let out = resample(&samples, rate as u32, 16000).unwrap();
        assert_eq!(out.len(), 16000);
        let peak = out.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0;
        assert!((peak as i64 - 8000).abs() <= 2, "impulse moved to {peak}");
    }

    /// The committed speech fixtures (scripts/make_audio_fixtures.sh): the
    /// same sentence in every accepted container, at 16, 22.05, 44.1 and
    /// 48 kHz, mono and stereo, all decode to the same length at 16 kHz.
    #[test]
    fn speech_fixture_decodes_from_every_container() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let reference = decode_audio(&std::fs::read(dir.join("speech.wav")).unwrap(), 16_000, 60.0).unwrap();
        for ext in ["flac", "mp3", "ogg", "m4a"] {
            let audio = decode_audio(&std::fs::read(dir.join(format!("speech.{ext}"))).unwrap(), 16_000, 60.0)
                .unwrap_or_else(|e| panic!("speech.{ext}: {e}"));
            assert_eq!(audio.sample_rate, 16_000);
            // Lossy encoders add up to a few frames of priming and padding.
            assert!((audio.duration() - reference.duration()).abs() < 0.1, "{ext}: {} s", audio.duration());
            let rms = (audio.samples.iter().map(|s| s * s).sum::<f32>() / audio.samples.len() as f32).sqrt();
            assert!(rms > 0.01, "{ext} decoded to near silence");
        }
        // Browsers record WebM/Opus, which symphonia cannot decode.
        let webm = std::fs::read(dir.join("speech.webm")).unwrap();
        assert_eq!(decode_audio(&webm, 16_000, 60.0).unwrap_err(), AudioDecodeError::UnsupportedFormat);
    }

    /// `wav` with `extra` chunks inserted between its fmt chunk and its data.
    fn wav_with(rate: u32, channels: u16, seconds: f64, extra: &[u8]) -> Vec<u8> {
        let mut out = wav(rate, channels, 16, false, seconds);
        out.splice(36..36, extra.iter().copied());
        let riff = (out.len() - 8) as u32;
        out[4..8].copy_from_slice(&riff.to_le_bytes());
        out
    }

    #[test]
    fn decoding_cost_is_bounded_by_samples_not_seconds() {
        // 0.5 s is under the 1 s limit, but 0.5 s of 8 channels at 96 kHz is
        // 384,000 samples, twice what 1 s of 96 kHz stereo costs.
        let costly = wav(96_000, 8, 16, false, 0.5);
        match decode_audio(&costly, 16000, 1.0).unwrap_err() {
            AudioDecodeError::TooManySamples { detail, .. } => {
                assert!(detail.contains("96000 Hz x 8 channels"), "{detail}")
            }
            other => panic!("expected too many samples, got {other:?}"),
        }
        assert_eq!(max_decoded_samples(300.0), 57_600_000);
        // The same clip is fine where the budget allows it.
        assert_eq!(decode_audio(&costly, 16000, 2.0).unwrap().samples.len(), 8000);
    }

    #[test]
    fn channel_counts_over_the_limit_are_refused_by_name() {
        let ok = decode_audio(&wav(16000, MAX_CHANNELS as u16, 16, false, 0.1), 16000, 60.0).unwrap();
        assert_eq!(ok.source_channels, MAX_CHANNELS);
        for channels in [27u16, 64, 65535] {
            let mut many = wav(16000, 1, 16, false, 0.1);
            many[22..24].copy_from_slice(&channels.to_le_bytes());
            assert_eq!(
                decode_audio(&many, 16000, 60.0).unwrap_err(),
                AudioDecodeError::TooManyChannels { channels: usize::from(channels) }
            );
        }
        // WAVE_FORMAT_EXTENSIBLE, 64 channels, channel mask 0 (symphonia
        // called it an unsupported pcm_s16le codec).
        let mut ext = wav(48000, 64, 16, false, 0.01);
        let mut fmt = ext[20..36].to_vec();
        fmt[0..2].copy_from_slice(&0xFFFEu16.to_le_bytes());
        fmt.extend_from_slice(&22u16.to_le_bytes());
        fmt.extend_from_slice(&16u16.to_le_bytes());
        fmt.extend_from_slice(&0u32.to_le_bytes());
        fmt.extend_from_slice(&[1, 0, 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71]);
        ext.splice(16..36, [&40u32.to_le_bytes()[..], &fmt].concat());
        let message = decode_audio(&ext, 16000, 60.0).unwrap_err().to_string();
        assert!(message.contains("64 channels") && message.contains("at most 26"), "{message}");
    }

    #[test]
    fn wav_files_with_endless_chunk_lists_are_refused() {
        let few = wav_with(16000, 1, 0.5, &b"junk\0\0\0\0".repeat(100));
        assert_eq!(decode_audio(&few, 16000, 60.0).unwrap().samples.len(), 8000);
        let many = wav_with(16000, 1, 0.5, &b"junk\0\0\0\0".repeat(2_000_000));
        match decode_audio(&many, 16000, 60.0).unwrap_err() {
            AudioDecodeError::Corrupt(m) => assert!(m.contains("10000 chunks"), "{m}"),
            other => panic!("expected corrupt, got {other:?}"),
        }
    }

    #[test]
    fn resampling_in_pieces_gives_what_resampling_at_once_gives() {
        let input: Vec<f32> = (0..44_100).map(|i| (i as f32 * 0.031).sin() * 0.5).collect();
        let whole = resample(&input, 44_100, 16_000).unwrap();
        let mut pieces = StreamResampler::new(44_100, 16_000).unwrap();
        let mut at = 0;
        for size in [1usize, 7, 1024, 333, 4096, 10_000].iter().cycle() {
            let end = (at + size).min(input.len());
            pieces.push(&input[at..end]).unwrap();
            at = end;
            if at == input.len() {
                break;
            }
        }
        assert_eq!(pieces.finish().unwrap(), whole);
        assert_eq!(whole.len(), 16_000);
    }

    #[test]
    fn every_link_of_a_chained_ogg_file_counts() {
        let ogg = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/speech.ogg")).unwrap();
        let one = decode_audio(&ogg, 16000, 60.0).unwrap().duration();
        let three = decode_audio(&ogg.repeat(3), 16000, 60.0).unwrap().duration();
        assert!((three - 3.0 * one).abs() < 0.05, "one link {one} s, three links {three} s");
        // 300 links of 2.2 s are over a 300 s limit (only the first link was read).
        assert_eq!(
            decode_audio(&ogg.repeat(300), 16000, 300.0).unwrap_err(),
            AudioDecodeError::TooLong { max_seconds: 300.0 }
        );
    }
}
