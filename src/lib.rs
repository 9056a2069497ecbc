//! emotion-ai reads human emotion from a face photo or a voice clip. For an
//! image, a face detector (CenterFace, a small network run by OpenCV, or
//! OpenCV's Haar cascade) finds every face and a convolutional network
//! (libtorch through `tch`) gives the probabilities of the seven FER2013
//! emotions for each, and a second one the person's sex. For a clip, a network on MFCC windows gives the
//! probabilities of the 14 emotion x sex classes, per window and for the clip.
//!
//! # Layout
//!
//! One module per stage of the pipeline, each usable on its own:
//!
//! - [`decode`]: uploaded bytes to pixels or samples, the kind and format
//!   sniffed from the bytes; image size limits checked from the header before
//!   decoding; [`decode::audio`] turns WAV, FLAC, MP3, Ogg Vorbis and M4A/AAC
//!   into mono samples at a fixed rate, packet by packet, refusing clips
//!   over the duration or the decoded-sample budget while decoding; PNGs are
//!   decoded row by row to grey, and TIFFs the `image` crate refuses go to
//!   OpenCV.
//! - [`detect`]: face detection on a bounded-size copy, boxes mapped back:
//!   [`detect::centerface`], a small detector network (the default), or the
//!   Haar cascade (alone, or with CenterFace where it finds no face);
//!   cropping faces to the networks' 48x48 input.
//! - [`features`]: MFCCs of a clip (rustfft + `mel_spec`'s filterbank),
//!   checked against librosa; [`features::pitch`] tracks F0 and voicing;
//!   [`features::voice_input`] is the voice network's input (MFCCs with each
//!   window's cepstral mean removed, and pitch rows).
//! - [`speech`]: the speech check asked before any emotion (is there a human
//!   voice in this clip, in this window?), a small network over voicing,
//!   pitch-movement, spectral-change and rhythm statistics.
//! - [`model`]: the networks (`new(vs, config)` + `forward_t`), their
//!   safetensors weights and JSON model cards; loaded networks are served
//!   frozen ([`model::FrozenFaceNet`], [`model::voice::FrozenVoiceNet`]:
//!   batch norms folded into the convolutions, the same function, faster);
//!   [`model::voice`] is the
//!   emotion x sex voice network, served as an ensemble of networks trained
//!   from different seeds (the mean of their probabilities);
//!   [`model::verifier`] tells the detectors' faces from their phantoms, so
//!   they can run at a lower threshold; [`model::speaker`] is a pretrained
//!   speaker encoder (Resemblyzer's, installed by the setup script) and the
//!   voice sex head on its embedding, whose sex the server blends with the
//!   voice network's; [`model::face_embedder`] is its counterpart for faces
//!   (dlib's face recognition network, installed by the setup script, and a
//!   sex head on its descriptor, blended with the face sex network's);
//!   [`model::vad`] is Silero VAD, a pretrained voice-activity network a
//!   speech-check card may read (the shipped one does not).
//! - [`fusion`]: face and voice emotion distributions combined into one,
//!   each weighted by its calibration (a temperature fitted on held-out data).
//! - [`predict`]: the [`predict::Analyzer`], which owns the loaded models and
//!   runs the whole pipeline for one upload; shared by the server and the CLI.
//!   [`pool`] lends each concurrent user its own copy of a network or cascade
//!   (neither can be shared between threads).
//!   [`predict::voice`] splits long clips into overlapping windows and
//!   combines them.
//! - [`web`]: the axum application ([`web::app`]), its one error type, its
//!   pages and the cross-modal samples they offer ([`web::samples`]); uploads
//!   are admitted from their headers before their bodies are read, read
//!   within their own timeout and analysed within another, and its own
//!   connection loop ([`web::serve`]) closes slow and idle connections, caps
//!   how many are open, and lingers on close so an early answer arrives.
//! - [`train`]: dataset loaders (FER2013 with its FER+ votes and near-copy
//!   list, RAVDESS, EmoDB, speechsex and kin, UTKFace), synthetic scenes and
//!   face-free photos for the face verifier, generated non-speech for the
//!   speech check,
//!   augmentation, the training loops with checkpoints, and evaluation
//!   (confusion matrices as JSON and PNG, calibration), and the pseudo-pair
//!   evaluation of fusion.
//! - [`batch`]: many files at once for the command line: directories walked,
//!   bounded workers, one JSON line or CSV row per face, clip or window.
//!
//! - [`fuzzing`]: the upload paths as the fuzz targets in `fuzz/` drive
//!   them, with the invariants they check; the tests replay the corpora.
//!
//! The `emotion-ai` binary is a thin command line over these: `serve`,
//! `predict`, `train` and `eval`.

pub mod batch;
pub mod decode;
pub mod detect;
pub mod features;
pub mod fusion;
pub mod fuzzing;
pub mod model;
pub mod pool;
pub mod predict;
pub mod speech;
pub mod train;
pub mod web;
