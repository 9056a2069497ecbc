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
    #[error(
        "the image is {width} x {height} pixels ({:.1} megapixels); at most {:.0} megapixels and {max_side} pixels a \
         side are read: scale it down",
        f64::from(*.width) * f64::from(*.height) / 1e6,
        *.max_pixels as f64 / 1e6
    )]
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
    if format == ImageFormat::Png {
        return decode_png_gray(bytes, limits);
    }

    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_image_width = Some(limits.max_side);
    decoder_limits.max_image_height = Some(limits.max_side);
    // Room for the largest allowed image as 16-bit RGBA, the widest buffer a decoder makes.
    decoder_limits.max_alloc = Some(limits.max_pixels.saturating_mul(8));
    reader.limits(decoder_limits);
    let mut decoder = match reader.into_decoder() {
        Ok(decoder) => decoder,
        Err(e @ image::ImageError::Limits(_)) => return Err(too_large_from_header(bytes, format, limits, e)),
        // A valid TIFF the `image` crate cannot read (a palette image, say):
        // its size from the header, then OpenCV's decoder (libtiff).
        Err(image::ImageError::Unsupported(e)) if format == ImageFormat::Tiff => {
            let unsupported = || ImageDecodeError::Corrupt { format: "tiff", detail: e.to_string() };
            let (width, height) = tiff::decoder::Decoder::new(Cursor::new(bytes))
                .and_then(|mut d| d.dimensions())
                .map_err(|_| unsupported())?;
            check_size(width, height, limits)?;
            let gray = opencv_gray(bytes, true).map_err(|_| unsupported())?;
            return Ok(DecodedImage { format, gray });
        }
        Err(other) => return Err(corrupt(other)),
    };
    let (width, height) = decoder.dimensions();
    check_size(width, height, limits)?;
    if format == ImageFormat::Jpeg && !jpeg_is_complete(bytes) {
        return Err(ImageDecodeError::Corrupt {
            format: "jpg",
            detail: "the file ends before the image data does (no end-of-image marker)".into(),
        });
    }
    let orientation = decoder.orientation().ok();
    // Grey first, then rotate: the decoder's own buffer (up to 8 bytes a
    // pixel) is dropped before the rotation makes its copy.
    let gray = match DynamicImage::from_decoder(decoder) {
        Ok(image) => to_gray(image),
        // The header was read (and its size checked) but the pixels' layout
        // is one the crate lacks: OpenCV's decoder reads most of those.
        Err(image::ImageError::Unsupported(e)) => opencv_gray(bytes, false)
            .map_err(|_| ImageDecodeError::Corrupt { format: format_name(format), detail: e.to_string() })?,
        Err(e) => return Err(corrupt(e)),
    };
    Ok(DecodedImage { format, gray: oriented(gray, orientation) })
}

/// `image` in grey, as `into_luma8` gives it. Colour JPEGs decode to 8-bit
/// RGB, which the crate turns grey pixel by pixel through a generic
/// colour-management path: about as long as decoding the 640x480 portrait
/// (1.2 of its 2.7 ms). The same arithmetic, 16 pixels at a time so that it
/// vectorises, takes half of that; the test checks every colour against the
/// crate.
fn to_gray(image: DynamicImage) -> GrayImage {
    match image {
        DynamicImage::ImageRgb8(rgb) if rgb.color_space() == image::metadata::Cicp::SRGB => {
            let (width, height) = rgb.dimensions();
            let pixels = lumas_of_srgb8(rgb.as_raw());
            GrayImage::from_raw(width, height, pixels).unwrap_or_else(|| DynamicImage::ImageRgb8(rgb).into_luma8())
        }
        other => other.into_luma8(),
    }
}

/// The `image` crate's (0.25) luma of 8-bit sRGB pixels, operation for
/// operation: each component over 255, weighted by the Y row of BT.709's
/// RGB-to-XYZ matrix for D65 (as its `moxcms` derives it, to the bit),
/// summed red, green, blue without fused multiply-adds, then times 255,
/// rounded half away from zero and saturated.
fn lumas_of_srgb8(rgb: &[u8]) -> Vec<u8> {
    const TO_UNIT: f32 = 1.0 / 255.0;
    const RED: f32 = f32::from_bits(0x3e59_c05b); // 0.21264784
    const GREEN: f32 = f32::from_bits(0x3f37_15fc); // 0.7151792
    const BLUE: f32 = f32::from_bits(0x3d93_cf75); // 0.07217304
    let scaled = |p: &[u8]| {
        let luma = f32::from(p[0]) * TO_UNIT * RED;
        let luma = luma + f32::from(p[1]) * TO_UNIT * GREEN;
        (luma + f32::from(p[2]) * TO_UNIT * BLUE) * 255.0
    };
    // `f32::round` does not vectorise; for x >= 0 it is the whole part, plus
    // one if what is left is at least a half (both exact in f32).
    let rounded = |x: f32| {
        let whole = x as i32;
        (whole + i32::from(x - whole as f32 >= 0.5)).min(255) as u8
    };
    const LANES: usize = 16;
    let mut grey = vec![0u8; rgb.len() / 3];
    let mut pixels = rgb.chunks_exact(3 * LANES);
    let mut out = grey.chunks_exact_mut(LANES);
    for (pixels, out) in (&mut pixels).zip(&mut out) {
        let mut x = [0f32; LANES];
        for (x, p) in x.iter_mut().zip(pixels.chunks_exact(3)) {
            *x = scaled(p);
        }
        for (out, &x) in out.iter_mut().zip(&x) {
            *out = rounded(x);
        }
    }
    for (out, p) in out.into_remainder().iter_mut().zip(pixels.remainder().chunks_exact(3)) {
        *out = rounded(scaled(p));
    }
    grey
}

/// Decodes `bytes` to grey with OpenCV (the fallback for valid files the
/// `image` crate refuses; the caller has checked the size). OpenCV turns the
/// image upright itself when `apply_orientation`.
fn opencv_gray(bytes: &[u8], apply_orientation: bool) -> Result<GrayImage, String> {
    use opencv::core::{MatTraitConst, MatTraitConstManual};
    let flags = opencv::imgcodecs::IMREAD_GRAYSCALE
        | if apply_orientation { 0 } else { opencv::imgcodecs::IMREAD_IGNORE_ORIENTATION };
    let mat = opencv::imgcodecs::imdecode(&opencv::core::Vector::<u8>::from_slice(bytes), flags)
        .map_err(|e| e.to_string())?;
    if mat.empty() || mat.typ() != opencv::core::CV_8UC1 {
        return Err("OpenCV could not decode it".into());
    }
    let (width, height) = (mat.cols() as u32, mat.rows() as u32);
    let pixels = mat.data_bytes().map_err(|e| e.to_string())?.to_vec();
    GrayImage::from_raw(width, height, pixels).ok_or_else(|| "OpenCV gave a buffer of the wrong size".into())
}

/// Refuses sizes with no pixels or over the limits.
fn check_size(width: u32, height: u32, limits: ImageLimits) -> Result<(), ImageDecodeError> {
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
    Ok(())
}

/// `gray` turned upright as its EXIF orientation says.
fn oriented(gray: GrayImage, orientation: Option<image::metadata::Orientation>) -> GrayImage {
    match orientation {
        None | Some(image::metadata::Orientation::NoTransforms) => gray,
        Some(orientation) => {
            let mut image = DynamicImage::ImageLuma8(gray);
            image.apply_orientation(orientation);
            image.into_luma8()
        }
    }
}

/// Bytes the PNG reader may allocate besides the image itself (its row
/// buffers and the chunks it keeps); colour profiles and text, where zlib
/// bombs hide, are skipped unread.
const PNG_WORKING_BYTES: usize = 64 * 1024 * 1024;

/// Decodes a PNG row by row straight to 8-bit grey (the same grey the
/// `image` crate gives), so a 40-megapixel 16-bit RGBA file costs its grey pixels
/// (40 MB), not its native ones (320 MB) and a rotated copy of them.
fn decode_png_gray(bytes: &[u8], limits: ImageLimits) -> Result<DecodedImage, ImageDecodeError> {
    let corrupt = |e: &dyn std::fmt::Display| ImageDecodeError::Corrupt { format: "png", detail: e.to_string() };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(bytes), png::Limits { bytes: PNG_WORKING_BYTES });
    decoder.set_ignore_iccp_chunk(true);
    decoder.set_ignore_text_chunk(true);
    decoder.set_transformations(png::Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(|e| corrupt(&e))?;
    let info = reader.info();
    let (width, height, interlaced) = (info.width, info.height, info.interlaced);
    check_size(width, height, limits)?;
    let orientation = info.exif_metadata.as_deref().and_then(image::metadata::Orientation::from_exif_chunk);
    let (color, depth) = reader.output_color_type();
    let wide = depth == png::BitDepth::Sixteen;
    let channels = color.samples() * if wide { 2 } else { 1 };
    // The `image` crate's conversion: luma at the source's depth, then
    // 16-bit values to 8-bit by rounding.
    let luma = |px: &[u8]| -> u8 {
        let sample =
            |i: usize| if wide { u32::from(u16::from_be_bytes([px[2 * i], px[2 * i + 1]])) } else { u32::from(px[i]) };
        let value = if color.samples() < 3 {
            sample(0)
        } else {
            (2126 * sample(0) + 7152 * sample(1) + 722 * sample(2)) / 10000
        };
        if wide {
            ((value + 128) / 257) as u8
        } else {
            value as u8
        }
    };
    let mut gray = GrayImage::new(width, height);
    if interlaced {
        // Adam7 rows come pass by pass; decode the frame whole.
        let mut frame = vec![0u8; reader.output_buffer_size().ok_or_else(|| corrupt(&"its size overflows"))?];
        reader.next_frame(&mut frame).map_err(|e| corrupt(&e))?;
        for (out, px) in gray.iter_mut().zip(frame.chunks_exact(channels)) {
            *out = luma(px);
        }
    } else {
        for y in 0..height {
            let row =
                reader.next_row().map_err(|e| corrupt(&e))?.ok_or_else(|| corrupt(&"its image data ends early"))?;
            for (x, px) in row.data().chunks_exact(channels).take(width as usize).enumerate() {
                gray.put_pixel(x as u32, y, image::Luma([luma(px)]));
            }
        }
    }
    Ok(DecodedImage { format: ImageFormat::Png, gray: oriented(gray, orientation) })
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

/// The decoder refused the header on a limit: read the size without limits
/// (header only) so the error can say what it was. A size within our limits,
/// or none at all, means the limit was hit by a malformed header (a tag
/// claiming a billion values, say): the file is corrupt, not large.
fn too_large_from_header(
    bytes: &[u8],
    format: ImageFormat,
    limits: ImageLimits,
    error: image::ImageError,
) -> ImageDecodeError {
    let size = ImageReader::with_format(Cursor::new(bytes), format).into_dimensions().ok();
    match size.map(|(w, h)| (w, h, check_size(w, h, limits))) {
        Some((_, _, Err(e @ ImageDecodeError::TooLarge { .. }))) => e,
        _ => ImageDecodeError::Corrupt {
            format: format_name(format),
            detail: format!("its header is malformed (the decoder refused it: {error})"),
        },
    }
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

    /// A PNG chunk: length, type, data, CRC-32 of type and data.
    fn chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut crc = flate2::Crc::new();
        crc.update(kind);
        crc.update(data);
        [&(data.len() as u32).to_be_bytes()[..], kind, data, &crc.sum().to_be_bytes()].concat()
    }

    /// `png` with `extra` chunks inserted after its IHDR.
    fn with_chunks(png: &[u8], extra: &[u8]) -> Vec<u8> {
        let ihdr_end = 8 + 8 + 13 + 4;
        [&png[..ihdr_end], extra, &png[ihdr_end..]].concat()
    }

    fn encode(image: DynamicImage) -> Vec<u8> {
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn rgb_turns_grey_as_the_image_crate_turns_it_for_every_colour() {
        // All 2^24 colours, one per pixel.
        let every = image::RgbImage::from_fn(4096, 4096, |x, y| {
            let i = y * 4096 + x;
            image::Rgb([(i >> 16) as u8, (i >> 8) as u8, i as u8])
        });
        let expected = DynamicImage::ImageRgb8(every.clone()).into_luma8();
        assert!(to_gray(DynamicImage::ImageRgb8(every)) == expected);
    }

    #[test]
    fn pngs_of_every_colour_type_decode_to_the_grey_the_image_crate_gives() {
        let rgb = image::RgbImage::from_fn(37, 23, |x, y| image::Rgb([(x * 7) as u8, (y * 11) as u8, (x * y) as u8]));
        let rgba16 = image::ImageBuffer::<image::Rgba<u16>, _>::from_fn(37, 23, |x, y| {
            image::Rgba([(x * 1700) as u16, (y * 2800) as u16, (x * y * 70) as u16, 40_000])
        });
        let la = image::GrayAlphaImage::from_fn(37, 23, |x, y| image::LumaA([(x * 5 + y) as u8, 200]));
        for image in [DynamicImage::ImageRgb8(rgb), DynamicImage::ImageRgba16(rgba16), DynamicImage::ImageLumaA8(la)] {
            let what = format!("{:?}", image.color());
            let bytes = encode(image);
            let expected = image::load_from_memory(&bytes).unwrap().to_luma8();
            let got = decode_image(&bytes, ImageLimits::default()).unwrap().gray;
            assert_eq!(got.dimensions(), expected.dimensions(), "{what}");
            let worst = got.iter().zip(expected.iter()).map(|(a, b)| a.abs_diff(*b)).max().unwrap();
            // The crates round differently: at most one grey level apart.
            assert!(worst <= 1, "{what}: grey differs by {worst}");
        }
    }

    #[test]
    fn a_png_with_an_exif_rotation_is_turned_upright() {
        // 16-bit RGBA, 30 wide and 20 high, white on the left third; EXIF
        // orientation 6 (rotate 90 degrees clockwise to view).
        let image = image::ImageBuffer::<image::Rgba<u16>, _>::from_fn(30, 20, |x, _| {
            let v = if x < 10 { 65535 } else { 0 };
            image::Rgba([v, v, v, 65535])
        });
        let exif = [&b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01\0\x06\0\0"[..], &[0; 4]].concat();
        let bytes = with_chunks(&encode(DynamicImage::ImageRgba16(image)), &chunk(b"eXIf", &exif));
        let gray = decode_image(&bytes, ImageLimits::default()).unwrap().gray;
        assert_eq!(gray.dimensions(), (20, 30));
        // The left third is now the top third.
        assert_eq!(gray.get_pixel(10, 2).0[0], 255);
        assert_eq!(gray.get_pixel(10, 25).0[0], 0);
    }

    #[test]
    fn a_zlib_bomb_in_a_png_colour_profile_is_skipped_unread() {
        use std::io::Write;
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..256 {
            z.write_all(&zeros).unwrap(); // 256 MiB of zeros, about 250 kB packed
        }
        let bomb = [&b"icc\0\0"[..], &z.finish().unwrap()].concat();
        let bytes = with_chunks(&png(64, 48), &chunk(b"iCCP", &bomb));
        assert_eq!(decode_image(&bytes, ImageLimits::default()).unwrap().gray.dimensions(), (64, 48));
    }

    #[test]
    fn a_tiff_tag_claiming_a_billion_values_is_corrupt_not_too_large() {
        let mut out = Cursor::new(Vec::new());
        GrayImage::from_pixel(8, 8, image::Luma([50])).write_to(&mut out, ImageFormat::Tiff).unwrap();
        let mut tiff = out.into_inner();
        let ifd = u32::from_le_bytes(tiff[4..8].try_into().unwrap()) as usize;
        tiff[ifd + 2 + 4..ifd + 2 + 8].copy_from_slice(&0x3FFF_FFFFu32.to_le_bytes());
        match decode_image(&tiff, ImageLimits::default()).unwrap_err() {
            ImageDecodeError::Corrupt { format: "tiff", detail } => assert!(detail.contains("malformed"), "{detail}"),
            other => panic!("expected corrupt, got {other:?}"),
        }
    }

    /// A TIFF of `pixels` (8-bit samples, `samples` a pixel) with the given
    /// photometric interpretation and, for palettes, a colour map.
    fn tiff(
        width: u16,
        height: u16,
        samples: u16,
        photometric: u16,
        pixels: &[u8],
        colormap: Option<&[u16]>,
    ) -> Vec<u8> {
        let mut entries: Vec<(u16, u16, u32, Vec<u8>)> = vec![
            (256, 3, 1, width.to_le_bytes().to_vec()),
            (257, 3, 1, height.to_le_bytes().to_vec()),
            (
                258,
                3,
                u32::from(samples),
                [8u16].repeat(samples as usize).iter().flat_map(|v| v.to_le_bytes()).collect(),
            ),
            (259, 3, 1, 1u16.to_le_bytes().to_vec()),
            (262, 3, 1, photometric.to_le_bytes().to_vec()),
            (273, 4, 1, vec![]), // strip offset, filled below
            (277, 3, 1, samples.to_le_bytes().to_vec()),
            (278, 3, 1, height.to_le_bytes().to_vec()),
            (279, 4, 1, (pixels.len() as u32).to_le_bytes().to_vec()),
        ];
        if let Some(map) = colormap {
            entries.push((320, 3, map.len() as u32, map.iter().flat_map(|v| v.to_le_bytes()).collect()));
        }
        if samples == 2 {
            entries.push((338, 3, 1, 2u16.to_le_bytes().to_vec())); // unassociated alpha
        }
        let ifd_at = 8u32;
        let ifd_len = 2 + 12 * entries.len() as u32 + 4;
        let mut extra = Vec::new();
        let mut ifd = (entries.len() as u16).to_le_bytes().to_vec();
        let extra_at = ifd_at + ifd_len;
        // Values longer than 4 bytes go after the IFD; the pixels after them.
        let mut at = extra_at;
        let mut fields = Vec::new();
        for (tag, kind, count, value) in &entries {
            let field = if *tag == 273 {
                None
            } else if value.len() > 4 {
                let offset = at;
                extra.extend_from_slice(value);
                at += value.len() as u32;
                Some(offset.to_le_bytes().to_vec())
            } else {
                let mut v = value.clone();
                v.resize(4, 0);
                Some(v)
            };
            fields.push((*tag, *kind, *count, field));
        }
        let pixels_at = at;
        for (tag, kind, count, field) in fields {
            ifd.extend_from_slice(&tag.to_le_bytes());
            ifd.extend_from_slice(&kind.to_le_bytes());
            ifd.extend_from_slice(&count.to_le_bytes());
            ifd.extend_from_slice(&field.unwrap_or_else(|| pixels_at.to_le_bytes().to_vec()));
        }
        ifd.extend_from_slice(&0u32.to_le_bytes());
        [&b"II*\0"[..], &ifd_at.to_le_bytes(), &ifd, &extra, pixels].concat()
    }

    #[test]
    fn palette_grey_alpha_and_cmyk_tiffs_decode() {
        // A palette of 4 greys (16-bit entries: all reds, all greens, all blues).
        let mut map = vec![0u16; 3 * 256];
        for (i, level) in [0u16, 80, 160, 255].iter().enumerate() {
            for channel in 0..3 {
                map[channel * 256 + i] = level * 257;
            }
        }
        let indices: Vec<u8> = (0..64).map(|i| (i % 4) as u8).collect();
        let palette = decode_image(&tiff(8, 8, 1, 3, &indices, Some(&map)), ImageLimits::default()).expect("palette");
        assert_eq!(palette.gray.dimensions(), (8, 8));
        let levels: Vec<u8> = palette.gray.as_raw()[..4].to_vec();
        for (got, want) in levels.iter().zip([0u8, 80, 160, 255]) {
            assert!(got.abs_diff(want) <= 1, "palette grey {levels:?}");
        }
        let grey_alpha: Vec<u8> = (0..64).flat_map(|i| [(i * 4) as u8, 255]).collect();
        let decoded = decode_image(&tiff(8, 8, 2, 1, &grey_alpha, None), ImageLimits::default()).expect("grey + alpha");
        assert!(decoded.gray.get_pixel(7, 7).0[0].abs_diff(252) <= 1);
        // CMYK: no ink is white, full black ink is black.
        let cmyk: Vec<u8> = (0..64).flat_map(|i| if i < 32 { [0, 0, 0, 0] } else { [0, 0, 0, 255] }).collect();
        let decoded = decode_image(&tiff(8, 8, 4, 5, &cmyk, None), ImageLimits::default()).expect("cmyk");
        assert!(decoded.gray.get_pixel(0, 0).0[0] > 240 && decoded.gray.get_pixel(0, 7).0[0] < 15);
    }
}
