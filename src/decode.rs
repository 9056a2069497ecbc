//! Turning uploaded bytes into pixels ([`decode_image`]) or samples
//! ([`audio::decode_audio`]).
//!
//! The format is sniffed from the bytes, never taken from a file name or a
//! client's content type. Dimensions are read from the header and checked
//! before any pixel is decoded, so a decompression bomb (a tiny file claiming
//! 100,000 x 100,000 pixels) costs nothing. Everything happens in memory.

pub mod audio;

use std::io::Cursor;

use image::{DynamicImage, GrayImage, ImageDecoder, ImageFormat, ImageReader};

/// Image formats accepted for upload, for error messages and the upload page.
pub const ACCEPTED_IMAGE_FORMATS: &str = "JPEG, PNG, BMP, GIF, WebP, TIFF";

/// What kind of media an upload holds, judged from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaKind {
    /// A still image in a format [`decode_image`] reads.
    Image(ImageFormat),
    /// Audio in a container [`audio::decode_audio`] reads.
    Audio(AudioContainer),
    /// Audio (or video) in a container this service cannot decode, named for
    /// the error message: WebM/Matroska, which browsers record.
    UnsupportedAudio(&'static str),
    /// Anything else.
    Unknown,
}

/// Audio containers recognised by their magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AudioContainer {
    Wav,
    Flac,
    Ogg,
    /// MP3 (with or without an ID3 tag) or raw ADTS AAC: both start with an
    /// MPEG frame sync.
    Mpeg,
    /// MP4/M4A (an `ftyp` box).
    Mp4,
}

impl AudioContainer {
    /// MIME type, for the answer page's audio player.
    pub fn mime_type(self) -> &'static str {
        match self {
            Self::Wav => "audio/wav",
            Self::Flac => "audio/flac",
            Self::Ogg => "audio/ogg",
            Self::Mpeg => "audio/mpeg",
            Self::Mp4 => "audio/mp4",
        }
    }
}

/// Sniffs the media kind from magic bytes.
pub fn sniff(bytes: &[u8]) -> MediaKind {
    match image::guess_format(bytes) {
        Ok(format) if is_accepted(format) => MediaKind::Image(format),
        _ => sniff_audio(bytes),
    }
}

fn sniff_audio(bytes: &[u8]) -> MediaKind {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(b"RIFF") && bytes.get(8..12) == Some(b"WAVE") {
        MediaKind::Audio(AudioContainer::Wav)
    } else if starts(b"fLaC") {
        MediaKind::Audio(AudioContainer::Flac)
    } else if starts(b"OggS") {
        MediaKind::Audio(AudioContainer::Ogg)
    } else if starts(b"ID3") || (bytes.len() >= 2 && bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0) {
        MediaKind::Audio(AudioContainer::Mpeg)
    } else if bytes.get(4..8) == Some(b"ftyp") {
        MediaKind::Audio(AudioContainer::Mp4)
    } else if starts(&[0x1A, 0x45, 0xDF, 0xA3]) {
        MediaKind::UnsupportedAudio("WebM/Matroska (as browsers record, usually Opus)")
    } else {
        MediaKind::Unknown
    }
}

fn is_accepted(format: ImageFormat) -> bool {
    matches!(
        format,
        ImageFormat::Jpeg
            | ImageFormat::Png
            | ImageFormat::Bmp
            | ImageFormat::Gif
            | ImageFormat::WebP
            | ImageFormat::Tiff
    )
}

/// Why an upload could not be read as an image.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ImageDecodeError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is not an image in a supported format ({ACCEPTED_IMAGE_FORMATS})")]
    UnsupportedFormat,
    #[error("the image is {width}x{height} pixels; the limit is {max_pixels} pixels ({max_side} pixels a side)")]
    TooLarge { width: u32, height: u32, max_pixels: u64, max_side: u32 },
    #[error("the image has no pixels ({width}x{height})")]
    ZeroSized { width: u32, height: u32 },
    #[error("the {format} image is truncated or corrupt: {detail}")]
    Corrupt { format: &'static str, detail: String },
}

/// Size limits for decoded images.
#[derive(Debug, Clone, Copy)]
pub struct ImageLimits {
    /// Most pixels (width x height) an image may have.
    pub max_pixels: u64,
    /// Longest side allowed.
    pub max_side: u32,
}

impl Default for ImageLimits {
    /// 40 megapixels and 16,384 pixels a side: any camera photo, nothing absurd.
    fn default() -> Self {
        Self { max_pixels: 40_000_000, max_side: 16_384 }
    }
}

fn format_name(format: ImageFormat) -> &'static str {
    format.extensions_str().first().copied().unwrap_or("image")
}

/// A decoded upload: its grayscale pixels (what the detector and the networks
/// read) and its size.
#[derive(Debug, Clone)]
pub struct DecodedImage {
    pub format: ImageFormat,
    pub gray: GrayImage,
}

/// Decodes an uploaded image to grayscale, honouring EXIF orientation (phone
/// photos are often stored sideways), after checking its declared size.
pub fn decode_image(bytes: &[u8], limits: ImageLimits) -> Result<DecodedImage, ImageDecodeError> {
    if bytes.is_empty() {
        return Err(ImageDecodeError::Empty);
    }
    let MediaKind::Image(format) = sniff(bytes) else {
        return Err(ImageDecodeError::UnsupportedFormat);
    };
    // A decoder that panics on a hostile file must not turn into a 500.
    std::panic::catch_unwind(|| decode_known_format(bytes, format, limits)).unwrap_or_else(|_| {
        Err(ImageDecodeError::Corrupt { format: format_name(format), detail: "the decoder gave up on it".into() })
    })
}

fn decode_known_format(
    bytes: &[u8],
    format: ImageFormat,
    limits: ImageLimits,
) -> Result<DecodedImage, ImageDecodeError> {
    let corrupt =
        |e: image::ImageError| ImageDecodeError::Corrupt { format: format_name(format), detail: e.to_string() };

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    // Room for the largest allowed image as 16-bit RGBA, the widest buffer a decoder makes.
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    reader.limits(decoder_limits);
    let mut decoder = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Limits(_) => too_large_from_header(bytes, format, limits),
        other => corrupt(other),
    })?;
    let (width, height) = decoder.dimensions();
    if width == 0 || height == 0 {
        return Err(ImageDecodeError::ZeroSized { width, height });
    }
    if u64::from(width) * u64::from(height) > limits.max_pixels || width.max(height) > limits.max_side {
        return Err(ImageDecodeError::TooLarge {
            width,
            height,
            max_pixels: limits.max_pixels,
            max_side: limits.max_side,
        });
    }
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(ImageDecodeError::Corrupt {
            format: "jpg",
            detail: "the file ends before the image data does (no end-of-image marker)".into(),
        });
    }
    let orientation = decoder.orientation().ok();
    let mut image = DynamicImage::from_decoder(decoder).map_err(corrupt)?;
    if let Some(orientation) = orientation {
        image.apply_orientation(orientation);
    }
    Ok(DecodedImage { format, gray: image.to_luma8() })
}

/// Whether a JPEG holds its end-of-image marker (FF D9) after its first
/// start-of-scan (FF DA). The JPEG decoder fills a truncated file's missing
/// rows with grey instead of failing; this catches that. Entropy-coded data
/// escapes every FF byte, so FF D9 there is the real marker (an EXIF
/// thumbnail's own markers come before the main scan).
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let Some(scan) = bytes.windows(2).position(|w| w == [0xFF, 0xDA]) else {
        return false;
    };
    bytes[scan..].windows(2).any(|w| w == [0xFF, 0xD9])
}

/// The decoder refused the header's size: read the size without limits (header
/// only) so the error can say what it was.
fn too_large_from_header(bytes: &[u8], format: ImageFormat, limits: ImageLimits) -> ImageDecodeError {
    let (width, height) = ImageReader::with_format(Cursor::new(bytes), format).into_dimensions().unwrap_or((0, 0));
    ImageDecodeError::TooLarge { width, height, max_pixels: limits.max_pixels, max_side: limits.max_side }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let img = GrayImage::from_fn(width, height, |x, y| image::Luma([(x * 7 + y * 3) as u8]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(width, height, |x, y| image::Rgb([x as u8, y as u8, 128]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn decodes_png_and_jpeg_to_grayscale() {
        let decoded = decode_image(&png(40, 30), ImageLimits::default()).unwrap();
        assert_eq!(decoded.gray.dimensions(), (40, 30));
        assert_eq!(decoded.format, ImageFormat::Png);
        let decoded = decode_image(&jpeg(64, 32), ImageLimits::default()).unwrap();
        assert_eq!(decoded.gray.dimensions(), (64, 32));
        assert_eq!(decoded.format, ImageFormat::Jpeg);
    }

    #[test]
    fn rejects_empty_and_non_images() {
        assert_eq!(decode_image(b"", ImageLimits::default()).unwrap_err(), ImageDecodeError::Empty);
        let err = decode_image(b"hello, this is text", ImageLimits::default()).unwrap_err();
        assert_eq!(err, ImageDecodeError::UnsupportedFormat);
    }

    #[test]
    fn rejects_truncated_jpeg() {
        let bytes = jpeg(64, 64);
        let err = decode_image(&bytes[..bytes.len() / 2], ImageLimits::default()).unwrap_err();
        assert!(matches!(err, ImageDecodeError::Corrupt { format: "jpg", .. }), "{err:?}");
    }

    #[test]
    fn rejects_jpeg_cut_anywhere_in_its_data() {
        let bytes = jpeg(64, 64);
        for cut in [bytes.len() - 2, bytes.len() - 40, bytes.len() * 2 / 3] {
            let err = decode_image(&bytes[..cut], ImageLimits::default()).unwrap_err();
            assert!(matches!(err, ImageDecodeError::Corrupt { .. }), "cut at {cut}: {err:?}");
        }
        assert!(decode_image(&bytes, ImageLimits::default()).is_ok());
    }

    #[test]
    fn rejects_truncated_png() {
        let bytes = png(64, 64);
        let err = decode_image(&bytes[..bytes.len() - 30], ImageLimits::default()).unwrap_err();
        assert!(matches!(err, ImageDecodeError::Corrupt { format: "png", .. }), "{err:?}");
    }

    #[test]
    fn rejects_oversized_images_from_the_header() {
        let limits = ImageLimits { max_pixels: 1000, max_side: 100 };
        let err = decode_image(&png(50, 50), limits).unwrap_err();
        assert!(matches!(err, ImageDecodeError::TooLarge { width: 50, height: 50, .. }), "{err:?}");
        let err = decode_image(&png(200, 2), limits).unwrap_err();
        assert!(matches!(err, ImageDecodeError::TooLarge { width: 200, height: 2, .. }), "{err:?}");
    }

    #[test]
    fn decompression_bomb_header_is_refused_before_decoding() {
        // A PNG whose header claims 60000 x 60000 pixels (3.6 GB decoded) over
        // a few bytes of data.
        let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut chunk = |kind: &[u8], data: &[u8]| {
            let mut body = kind.to_vec();
            body.extend_from_slice(data);
            bytes.extend_from_slice(&(data.len() as u32).to_be_bytes());
            bytes.extend_from_slice(&body);
            bytes.extend_from_slice(&crc32(&body).to_be_bytes());
        };
        let mut ihdr = 60000u32.to_be_bytes().to_vec();
        ihdr.extend_from_slice(&60000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 0, 0, 0, 0]);
        chunk(b"IHDR", &ihdr);
        chunk(b"IDAT", &[0x78, 0x9c, 0x63, 0x00, 0x00]);
        chunk(b"IEND", &[]);
        let err = decode_image(&bytes, ImageLimits::default()).unwrap_err();
        assert!(matches!(err, ImageDecodeError::TooLarge { width: 60000, height: 60000, .. }), "{err:?}");
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xedb8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn sniffing_tells_images_audio_and_webm_apart_by_content() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
        let read = |name: &str| std::fs::read(dir.join(name)).unwrap();
        assert_eq!(sniff(&read("astronaut.jpg")), MediaKind::Image(ImageFormat::Jpeg));
        let expected = [
            ("speech.wav", AudioContainer::Wav),
            ("speech.flac", AudioContainer::Flac),
            ("speech.ogg", AudioContainer::Ogg),
            ("speech.mp3", AudioContainer::Mpeg),
            ("speech.m4a", AudioContainer::Mp4),
        ];
        for (name, container) in expected {
            assert_eq!(sniff(&read(name)), MediaKind::Audio(container), "{name}");
        }
        assert!(matches!(sniff(&read("speech.webm")), MediaKind::UnsupportedAudio(name) if name.contains("WebM")));
        assert_eq!(sniff(b"hello"), MediaKind::Unknown);
        assert_eq!(sniff(b""), MediaKind::Unknown);
    }
}
