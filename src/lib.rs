//! emotion-ai reads human emotion from a face photo: OpenCV's Haar cascade
//! finds every face, and a convolutional network (libtorch through `tch`)
//! gives the probabilities of the seven FER2013 emotions for each.
//!
//! # Layout
//!
//! One module per stage of the pipeline, each usable on its own:
//!
//! - [`decode`]: uploaded bytes to pixels, format sniffed from the bytes,
//!   size limits checked from the header before decoding; [`decode::audio`]
//!   turns audio into mono samples at a fixed rate (for the voice model, not
//!   served yet).
//! - [`detect`]: Haar-cascade face detection on a bounded-size copy, boxes
//!   mapped back; cropping faces to the networks' 48x48 input.
//! - [`model`]: the networks (`new(vs, config)` + `forward_t`), their
//!   safetensors weights and JSON model cards.
//! - [`predict`]: the [`predict::Analyzer`], which owns the loaded models and
//!   runs the whole pipeline for one upload; shared by the server and the CLI.
//! - [`web`]: the axum application ([`web::app`]), its one error type and its
//!   pages.
//! - [`train`]: dataset loaders, augmentation, the training loop with
//!   checkpoints, and evaluation (confusion matrices as JSON and PNG).
//!
//! The `emotion-ai` binary is a thin command line over these: `serve`,
//! `predict`, `train` and `eval`.

pub mod decode;
pub mod detect;
pub mod features;
pub mod model;
pub mod predict;
pub mod train;
pub mod web;
