//! The whole pipeline behind one call, for either kind of upload:
//!
//! - an image: decode, detect every face, crop, run the emotion and sex
//!   networks on all faces as one batch each, side by side;
//! - a clip: decode to 16 kHz mono, MFCC windows, the voice network (the
//!   first and second halves of a long clip side by side), a timeline and a
//!   clip-level result ([`voice`]).
//!
//! Networks run libtorch on one thread each (the server and the command line
//! set it so): parallelism comes from running independent work on separate
//! threads, which keeps two concurrent requests from fighting over the cores.
//!
//! [`Analyzer::analyze_bytes`] tells the two apart by content. An
//! [`Analyzer`] is built once at start-up (models and cascades loaded then)
//! and shared by every request and by the command line.

pub mod voice;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;
use tch::Tensor;

use crate::decode::audio::{decode_audio, AudioDecodeError, DecodedAudio};
use crate::decode::{decode_image, sniff, DecodedImage, ImageDecodeError, ImageLimits, MediaKind};
use crate::detect::{crop_face, crop_face_as, CropSpec, DetectParams, DetectorChoice, DetectorPool, FaceBox};
use crate::features::voice_input::VoiceFeatureExtractor;
use crate::fusion::{fuse, Calibration, Evidence};
use crate::model::face_embedder::{blend_sex, FaceSexHeadCard, FaceSexHeadModel};
use crate::model::speaker::{SpeakerSexCard, SpeakerSexModel};
use crate::model::verifier::FaceVerifier;
use crate::model::voice::{voice_class_names, LoadedVoiceModel, VoiceModelCard};
use crate::model::{FaceClassifier, LoadedFaceModel, ModelCard};
use crate::pool::Pool;
use crate::speech::SpeechDetector;
use voice::{aggregate, apply_sex_head, emotion_marginal, predict_windows, sex_marginal, window_spans, Windowing};

/// Where an [`Analyzer`] finds its models and how it bounds its inputs.
#[derive(Debug, Clone)]
pub struct AnalyzerConfig {
    /// Face emotion weights; the card is the `.json` beside them.
    pub face_emotion_model: PathBuf,
    /// Face sex weights, card beside them.
    pub face_sex_model: PathBuf,
    /// Voice emotion x sex weights, card beside them.
    pub voice_emotion_model: PathBuf,
    /// The speech check's card (weights and threshold in one JSON file).
    pub speech_check_model: PathBuf,
    /// The voice sex head's weights, card beside them: the served sex of a
    /// voice, blended with the voice network's own as its card says. `None`
    /// serves the network's sex marginal alone.
    pub voice_sex_model: Option<PathBuf>,
    /// The speaker encoder the voice sex head reads (installed by
    /// scripts/setup.sh).
    pub speaker_encoder: PathBuf,
    /// Silero VAD's weights, which the speech check reads if its card lists
    /// them (installed by scripts/setup.sh).
    pub silero_vad: PathBuf,
    /// The face sex head's weights, card beside them: the served sex of a
    /// face, blended with the face sex network's as its card says. `None`
    /// serves the network's sex alone.
    pub face_sex_head_model: Option<PathBuf>,
    /// The face embedder the face sex head reads (its TensorFlow.js
    /// manifest, installed by scripts/setup.sh).
    pub face_embedder: PathBuf,
    /// Face verifier weights, card beside them: it removes the detectors'
    /// phantom faces. `None` keeps every candidate of the cascade (and
    /// rules CenterFace out).
    pub face_verifier_model: Option<PathBuf>,
    /// The face detector: CenterFace (default) or the Haar cascade.
    pub detector: DetectorChoice,
    /// A second detector asked only when the first finds no face (after
    /// the verifier): CenterFace after the cascade (`--detector
    /// haar-then-centerface`) finds the tight crops the cascade misses at
    /// no cost to images where the cascade finds a face. `None` (the
    /// default): never.
    pub fallback_detector: Option<DetectorChoice>,
    pub detect: DetectParams,
    pub image_limits: ImageLimits,
    /// Most faces analysed in one image (the largest); the answer says how
    /// many more were found and left out.
    pub max_faces: usize,
    /// Longest clip accepted; decoding stops as soon as a clip passes it.
    pub max_audio_seconds: f64,
    /// Copies of each network and cascade to keep loaded: the number of
    /// concurrent analyses (a clip's two halves each take a voice network).
    pub workers: usize,
}

impl AnalyzerConfig {
    /// The shipped models under `models_dir` and Debian's default cascade.
    pub fn with_models_dir(models_dir: &Path) -> Self {
        Self {
            face_emotion_model: models_dir.join("face_emotion.safetensors"),
            face_sex_model: models_dir.join("face_sex.safetensors"),
            voice_emotion_model: models_dir.join("voice_emotion.safetensors"),
            speech_check_model: models_dir.join("speech_check.json"),
            voice_sex_model: Some(models_dir.join("voice_sex.safetensors")),
            speaker_encoder: PathBuf::from(crate::model::speaker::DEFAULT_SPEAKER_ENCODER),
            silero_vad: PathBuf::from(crate::model::vad::DEFAULT_SILERO_VAD),
            face_sex_head_model: Some(models_dir.join("face_sex_head.safetensors")),
            face_embedder: PathBuf::from(crate::model::face_embedder::DEFAULT_FACE_EMBEDDER),
            face_verifier_model: Some(models_dir.join("face_verifier.safetensors")),
            detector: DetectorChoice::default(),
            fallback_detector: None,
            detect: DetectParams::default(),
            image_limits: ImageLimits::default(),
            max_faces: MAX_FACES,
            max_audio_seconds: 300.0,
            workers: 2,
        }
    }
}

/// One class and its probability; lists of these keep the model's class order.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ClassProbability {
    pub label: String,
    pub probability: f32,
}

/// A probability distribution over named classes, with its most likely class.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Distribution {
    /// The most probable class.
    pub label: String,
    /// Its probability.
    pub confidence: f32,
    /// Every class, in the model's order; the probabilities sum to 1.
    pub probabilities: Vec<ClassProbability>,
}

impl Distribution {
    /// Pairs `probabilities` with `classes`.
    pub fn new(classes: &[String], probabilities: &[f32]) -> Self {
        let probabilities: Vec<ClassProbability> = classes
            .iter()
            .zip(probabilities)
            .map(|(label, &probability)| ClassProbability { label: label.clone(), probability })
            .collect();
        let top = probabilities
            .iter()
            .max_by(|a, b| a.probability.total_cmp(&b.probability))
            .cloned()
            .unwrap_or(ClassProbability { label: String::new(), probability: 0.0 });
        Self { label: top.label, confidence: top.probability, probabilities }
    }
}

/// What the models see in one face.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FaceAnalysis {
    /// Where the face is, in the uploaded image's pixels.
    #[serde(rename = "box")]
    pub bbox: FaceBox,
    pub emotion: Distribution,
    /// The person's sex as the face model sees it.
    pub sex: Distribution,
    /// The 48x48 grey crop the emotion network reads (row-major), for the
    /// answer page to show; not part of the JSON.
    #[serde(skip)]
    pub crop: Vec<u8>,
}

/// Where an image's faces come from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum FaceSource {
    /// The server's detectors find them (the default: CenterFace).
    #[default]
    Detect,
    /// CenterFace alone finds them, whatever the server's detector: more of
    /// a group's faces than the cascade (the `detector` form field's
    /// `centerface`). Needs CenterFace loaded
    /// ([`Analyzer::has_centerface`]).
    CenterFace,
    /// The picture is one face, already cropped (a passport photo, a crop
    /// from another tool): its central square is read as the face, and no
    /// detection runs.
    WholeImage,
}

impl FaceSource {
    /// The `whole_image_face` form field's value: `true`/`1`/`on`/`yes`, or
    /// `false`/`0`/`off`/`no`/empty; `None` for anything else.
    pub fn from_form_value(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "true" | "1" | "on" | "yes" => Some(Self::WholeImage),
            "false" | "0" | "off" | "no" | "" => Some(Self::Detect),
            _ => None,
        }
    }

    /// The `detector` form field's value: `centerface`, or `default` or
    /// empty for the server's; `None` for anything else.
    pub fn from_detector_form_value(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "centerface" => Some(Self::CenterFace),
            "default" | "" => Some(Self::Detect),
            _ => None,
        }
    }
}

/// Faces analysed per image unless configured otherwise: a crowd photo's
/// faces, and a bound on the work a grid of thousands of faces could ask for.
pub const MAX_FACES: usize = 100;

/// Faces the networks read at once: bounds a request's memory however many
/// faces it has.
const FACE_BATCH: usize = 16;

/// What the models see in one image: the detected faces, largest first (at
/// most [`AnalyzerConfig::max_faces`] of them).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImageAnalysis {
    pub width: u32,
    pub height: u32,
    pub faces: Vec<FaceAnalysis>,
    /// Smaller faces found beyond the cap and not analysed (0 almost always).
    pub faces_left_out: usize,
    /// A PNG copy of the picture for the answer page, for formats browsers
    /// do not show (TIFF): grey, at most [`PREVIEW_SIDE`] pixels a side. Not
    /// part of the JSON.
    #[serde(skip)]
    pub preview_png: Option<Vec<u8>>,
}

/// Longest side of [`ImageAnalysis::preview_png`].
pub const PREVIEW_SIDE: u32 = 1600;

/// A PNG of `gray` scaled to at most [`PREVIEW_SIDE`] a side, for an upload
/// whose format browsers do not show; `None` for the formats they do.
fn preview_png(format: image::ImageFormat, gray: &image::GrayImage) -> Option<Vec<u8>> {
    if format != image::ImageFormat::Tiff {
        return None;
    }
    let (w, h) = gray.dimensions();
    let scale = (f64::from(PREVIEW_SIDE) / f64::from(w.max(h))).min(1.0);
    let small;
    let shown = if scale < 1.0 {
        let (sw, sh) = (((f64::from(w) * scale).round() as u32).max(1), ((f64::from(h) * scale).round() as u32).max(1));
        small = image::imageops::resize(gray, sw, sh, image::imageops::FilterType::Triangle);
        &small
    } else {
        gray
    };
    let mut png = Vec::new();
    shown.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png).ok()?;
    Some(png)
}

/// One window of a clip's timeline.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct TimelineWindow {
    pub start_seconds: f32,
    pub end_seconds: f32,
    /// RMS level of the window (0..1 full scale); windows more than 20 dB
    /// below the loudest do not count towards the clip-level result.
    pub rms: f32,
    /// Whether the window holds speech; windows without it do not count
    /// towards the clip-level result.
    pub speech: bool,
    /// The speech check's probability of speech for the window.
    pub speech_probability: f32,
    pub emotion: Distribution,
    pub sex: Distribution,
}

/// What the voice model hears in one clip.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AudioAnalysis {
    pub duration_seconds: f32,
    /// The upload's own sample rate and channel count (it is analysed as
    /// 16 kHz mono).
    pub source_sample_rate: u32,
    pub source_channels: usize,
    /// The 7 emotions (each the sum of its two sexes).
    pub emotion: Distribution,
    /// The speaker's sex (each the sum over emotions).
    pub sex: Distribution,
    /// The 14 joint emotion x sex probabilities the network gives.
    pub classes: Distribution,
    /// One entry per analysis window, in time order.
    pub timeline: Vec<TimelineWindow>,
    /// A caution about this answer, when there is one: a clip under
    /// [`SHORT_CLIP_SECONDS`] is answered, but less surely than a sentence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// Face and voice read together (see [`crate::fusion`] for the rule).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FusedEmotion {
    /// The 7 emotions given every modality below.
    pub emotion: Distribution,
    /// What went in: the largest face of the image and the clip, or only the
    /// one of them that could be analysed.
    pub sources: Vec<FusionSource>,
}

/// One modality's part in a fused answer.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FusionSource {
    /// `face` or `voice`.
    pub modality: String,
    /// Its weight in the log-linear pool: 1 / the temperature fitted on the
    /// model's held-out data.
    pub weight: f32,
    /// The emotion distribution that went in, as the model gave it.
    pub emotion: Distribution,
    /// For the face: which of the image's faces (1 is the largest) was fused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub face: Option<usize>,
}

/// The answer for one upload, tagged by kind in JSON (`"kind": "image"`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Analysis {
    Image(ImageAnalysis),
    Audio(AudioAnalysis),
}

/// Why an upload could not be analysed.
#[derive(Debug, thiserror::Error)]
pub enum AnalyzeError {
    #[error("the file is empty")]
    Empty,
    #[error("the file is neither an image nor audio in a supported format")]
    UnsupportedFormat,
    #[error("{0} audio cannot be decoded")]
    UnsupportedAudio(&'static str),
    #[error(transparent)]
    Decode(#[from] ImageDecodeError),
    #[error(transparent)]
    Audio(#[from] AudioDecodeError),
    #[error("no face was found in the image")]
    NoFace { width: u32, height: u32 },
    #[error("the clip is silent: {NO_SPEECH_VOICE}")]
    NoSpeech,
    #[error(
        "no human speech was found in the clip (it sounds like a tone, noise, music, clicks or a hum, not a voice){}",
        no_speech_advice(*seconds)
    )]
    NotSpeech {
        /// The clip's length: a short clip is told why it may have been refused.
        seconds: f32,
    },
    #[error("internal error: {0:#}")]
    Internal(#[from] anyhow::Error),
}

/// What a refused clip is asked for instead.
const NO_SPEECH_VOICE: &str = "upload a recording of someone speaking";

/// Clips shorter than this that the speech check refuses are told that
/// length may be the reason: a trimmed word or two gives the check little to
/// go on (on real speech it accepts about 85-95% of 1 s openings and 98-99.8%
/// of 2 s ones; models/README.md, "speech_check").
pub const SHORT_CLIP_SECONDS: f32 = 2.0;

/// The note on the answer for a clip under [`SHORT_CLIP_SECONDS`] that the
/// speech check accepts. A word or two is read less surely than a sentence:
/// the voice sex head alone gets 84.89% of held-out speakers' single spoken
/// digits (1.2-1.9 s) against 98.81% of their read sentences
/// (models/README.md, "speechsex by source").
pub fn short_answer_note(seconds: f32) -> Option<String> {
    short_clip_length(seconds).map(|shown| {
        format!(
            "The clip is only {shown:.1} s long: a word or two is read less surely than a sentence. Send at least \
             {SHORT_CLIP_SECONDS:.0} s of someone speaking for a surer answer."
        )
    })
}

/// The length to show for a clip under [`SHORT_CLIP_SECONDS`], rounded down
/// to a tenth so that 1.97 s does not read "only 2.0 s long"; `None` for a
/// longer clip.
fn short_clip_length(seconds: f32) -> Option<f32> {
    (seconds < SHORT_CLIP_SECONDS).then(|| (seconds * 10.0).floor() / 10.0)
}

/// The end of the `no speech` message: what to send instead. A clip under
/// [`SHORT_CLIP_SECONDS`] is told that its length may be the reason (one
/// that rounds down to nothing, a single sample, says "under 0.1 s", not
/// "0.0 s"); a longer one is asked for a voice.
fn no_speech_advice(seconds: f32) -> String {
    let more = format!("send at least {SHORT_CLIP_SECONDS:.0} s of someone speaking");
    match short_clip_length(seconds) {
        Some(shown) if shown < 0.1 => {
            format!("; the clip is under 0.1 s long, far too little to tell speech by: {more}")
        }
        Some(shown) => {
            format!(
                "; the clip is only {shown:.1} s long, and a word or two is often too little to tell speech by: {more}"
            )
        }
        // Music behind a voice is what the check most often takes the whole
        // clip for (models/README.md, "speech_check": 44-60% of speech under
        // music 10 dB below it is accepted).
        None => format!(": {NO_SPEECH_VOICE}, with no music or loud noise behind the voice"),
    }
}

/// Models and detectors, loaded once, shared by all requests.
pub struct Analyzer {
    /// One copy per concurrent user: a network serves one thread at a time.
    face_emotion: Pool<LoadedFaceModel>,
    face_emotion_card: ModelCard,
    face_sex: Pool<LoadedFaceModel>,
    face_sex_card: ModelCard,
    face_sex_head: Option<Pool<FaceSexHeadModel>>,
    face_sex_head_card: Option<FaceSexHeadCard>,
    voice_emotion: Pool<LoadedVoiceModel>,
    voice_emotion_card: VoiceModelCard,
    voice_sex: Option<Pool<SpeakerSexModel>>,
    voice_sex_card: Option<SpeakerSexCard>,
    features: VoiceFeatureExtractor,
    speech: SpeechDetector,
    windowing: Windowing,
    detectors: DetectorPool,
    fallback_detectors: Option<DetectorPool>,
    verifier: Option<Pool<FaceVerifier>>,
    face_verifier_card: Option<ModelCard>,
    config: AnalyzerConfig,
}

/// Clips whose RMS level is below this (-80 dBFS) hold no speech.
const SILENCE_RMS: f32 = 1e-4;

impl Analyzer {
    /// Loads every model and cascade named in `config`; fails loudly if one is
    /// missing, so a server never starts half-equipped.
    pub fn load(config: AnalyzerConfig) -> Result<Self> {
        let workers = config.workers.max(1);
        let face_emotion = face_model_pool("face emotion", &config.face_emotion_model, workers)?;
        let face_emotion_card = face_emotion.with(|m| m.card.clone())?;
        if face_emotion_card.input.crop() != CropSpec::FACE {
            anyhow::bail!("the face emotion model must read the 48x48 crop of the face box (its card says otherwise)");
        }
        // CenterFace's low heat threshold leaves the phantoms to the verifier
        // (alone, at that threshold, it puts faces on most face-free photos):
        // without the verifier it is never asked.
        let verified = config.face_verifier_model.is_some();
        config.detector.check_verified(verified)?;
        let detectors = DetectorPool::new(&config.detector, config.detect, workers)?;
        let fallback_detectors = match &config.fallback_detector {
            Some(choice) if *choice != config.detector && verified => {
                Some(DetectorPool::new(choice, config.detect, workers)?)
            }
            Some(choice) if *choice != config.detector => {
                tracing::warn!(
                    "without the face verifier, {} is not asked where the cascade finds no face",
                    choice.name()
                );
                None
            }
            _ => None,
        };
        let face_sex = face_model_pool("face sex", &config.face_sex_model, workers)?;
        let face_sex_card = face_sex.with(|m| m.card.clone())?;
        let face_sex_head = match &config.face_sex_head_model {
            Some(weights) => {
                if face_sex_card.classes != ["female", "male"] {
                    anyhow::bail!("the face sex head needs a face sex network of classes [female, male]");
                }
                let (weights, embedder) = (weights.clone(), config.face_embedder.clone());
                Some(Pool::new("face sex head", workers, move || {
                    FaceSexHeadModel::load(&weights, &embedder)
                        .with_context(|| format!("loading the face sex head {}", weights.display()))
                })?)
            }
            None => None,
        };
        let face_sex_head_card = face_sex_head.as_ref().map(|p| p.with(|m| m.card.clone())).transpose()?;
        let verifier = match &config.face_verifier_model {
            Some(weights) => {
                let weights = weights.clone();
                Some(Pool::new("face verifier", workers, move || {
                    FaceVerifier::load(&weights).with_context(|| format!("loading face verifier {}", weights.display()))
                })?)
            }
            None => None,
        };
        let face_verifier_card = verifier.as_ref().map(|v| v.with(|v| v.card().clone())).transpose()?;
        let weights = config.voice_emotion_model.clone();
        let voice_emotion = Pool::new("voice emotion model", 2 * workers, move || {
            LoadedVoiceModel::load(&weights)
                .with_context(|| format!("loading voice emotion model {}", weights.display()))
        })?;
        let voice_emotion_card = voice_emotion.with(|m| m.card.clone())?;
        let voice_sex = match &config.voice_sex_model {
            Some(weights) => {
                let (weights, encoder) = (weights.clone(), config.speaker_encoder.clone());
                Some(Pool::new("voice sex head", workers, move || {
                    SpeakerSexModel::load(&weights, &encoder)
                        .with_context(|| format!("loading the voice sex head {}", weights.display()))
                })?)
            }
            None => None,
        };
        let voice_sex_card = voice_sex.as_ref().map(|p| p.with(|m| m.card.clone())).transpose()?;
        let speech =
            SpeechDetector::load(&config.speech_check_model, &config.silero_vad).context("loading the speech check")?;
        if speech.sample_rate() != voice_emotion_card.input.features.sample_rate {
            anyhow::bail!("the speech check and the voice model expect different sample rates");
        }
        if voice_emotion_card.emotions != face_emotion_card.classes {
            anyhow::bail!(
                "the face and voice models list different emotions ({:?} and {:?}): they cannot be fused",
                face_emotion_card.classes,
                voice_emotion_card.emotions
            );
        }
        let features = &voice_emotion_card.input.features;
        let rate = f64::from(features.sample_rate);
        let windowing = Windowing {
            window: (voice_emotion_card.input.window_seconds * rate).round() as usize,
            hop: (voice_emotion_card.input.hop_seconds * rate).round() as usize,
        };
        Ok(Self {
            face_emotion,
            face_emotion_card,
            face_sex,
            face_sex_card,
            face_sex_head,
            face_sex_head_card,
            features: voice_emotion_card.input.extractor(),
            speech,
            voice_emotion,
            voice_emotion_card,
            voice_sex,
            voice_sex_card,
            windowing,
            detectors,
            fallback_detectors,
            verifier,
            face_verifier_card,
            config,
        })
    }

    /// Fuses the emotion of the image's largest face (the first) and of the
    /// clip, each weighted by its model's calibration; either may be absent
    /// (`None` when both are).
    pub fn fuse(&self, image: Option<&ImageAnalysis>, audio: Option<&AudioAnalysis>) -> Option<FusedEmotion> {
        self.fuse_face(image, audio, 0)
    }

    /// [`Self::fuse`] with the image's face number `face` (0-based, largest
    /// first) instead of the largest; a face the image does not have leaves
    /// the image out.
    pub fn fuse_face(
        &self,
        image: Option<&ImageAnalysis>,
        audio: Option<&AudioAnalysis>,
        face: usize,
    ) -> Option<FusedEmotion> {
        let temperature = |c: &Option<Calibration>| c.as_ref().map_or(1.0, |c| c.temperature);
        let mut sources = Vec::new();
        if let Some(chosen) = image.and_then(|i| i.faces.get(face)) {
            sources.push(("face", temperature(&self.face_emotion_card.calibration), &chosen.emotion, Some(face + 1)));
        }
        if let Some(audio) = audio {
            sources.push(("voice", temperature(&self.voice_emotion_card.calibration), &audio.emotion, None));
        }
        let probabilities: Vec<Vec<f32>> =
            sources.iter().map(|(_, _, d, _)| d.probabilities.iter().map(|p| p.probability).collect()).collect();
        let evidence: Vec<Evidence> = sources
            .iter()
            .zip(&probabilities)
            .map(|(&(_, temperature, _, _), probabilities)| Evidence { probabilities, temperature })
            .collect();
        // The classes agree (checked at load), so fusing can only fail on no evidence.
        let fused = fuse(&evidence).ok()?;
        Some(FusedEmotion {
            emotion: Distribution::new(&self.face_emotion_card.classes, &fused),
            sources: sources
                .into_iter()
                .map(|(modality, temperature, emotion, face)| FusionSource {
                    modality: modality.into(),
                    weight: (1.0 / temperature) as f32,
                    emotion: emotion.clone(),
                    face,
                })
                .collect(),
        })
    }

    /// The voice model's card.
    pub fn voice_emotion_card(&self) -> &VoiceModelCard {
        &self.voice_emotion_card
    }

    /// The speech check (its card carries its measured figures).
    pub fn speech_check(&self) -> &SpeechDetector {
        &self.speech
    }

    /// Analyses an upload of either kind, chosen by its content (never its
    /// name). CPU-bound: async callers run it on a blocking thread.
    pub fn analyze_bytes(&self, bytes: &[u8]) -> Result<Analysis, AnalyzeError> {
        self.analyze_bytes_with(bytes, FaceSource::Detect)
    }

    /// [`Self::analyze_bytes`], with an image's faces taken from `faces`.
    pub fn analyze_bytes_with(&self, bytes: &[u8], faces: FaceSource) -> Result<Analysis, AnalyzeError> {
        if bytes.is_empty() {
            return Err(AnalyzeError::Empty);
        }
        match sniff(bytes) {
            MediaKind::Image(_) => Ok(Analysis::Image(self.analyze_image_bytes_with(bytes, faces)?)),
            MediaKind::Audio(_) => Ok(Analysis::Audio(self.analyze_audio_bytes(bytes)?)),
            MediaKind::UnsupportedAudio(name) => Err(AnalyzeError::UnsupportedAudio(name)),
            MediaKind::Unknown => Err(AnalyzeError::UnsupportedFormat),
        }
    }

    /// Decodes and analyses an uploaded clip.
    pub fn analyze_audio_bytes(&self, bytes: &[u8]) -> Result<AudioAnalysis, AnalyzeError> {
        let rate = self.voice_emotion_card.input.features.sample_rate;
        let audio = decode_audio(bytes, rate, self.config.max_audio_seconds)?;
        self.analyze_audio(&audio)
    }

    /// Analyses decoded audio (mono at the voice model's rate).
    pub fn analyze_audio(&self, audio: &DecodedAudio) -> Result<AudioAnalysis, AnalyzeError> {
        if voice::rms(&audio.samples) < SILENCE_RMS {
            return Err(AnalyzeError::NoSpeech);
        }
        let samples = &audio.samples;
        let spans = window_spans(samples.len(), self.windowing);
        let starts: Vec<usize> = spans.iter().map(|&(start, _)| start).collect();
        let verdicts = self.speech.check_windows(samples, &spans)?;
        if !verdicts.iter().any(|v| v.is_speech) {
            return Err(AnalyzeError::NotSpeech { seconds: audio.duration() as f32 });
        }
        let mut windows = in_two_halves("voice network", &starts, |starts| {
            self.voice_emotion.with(|m| predict_windows(&m.frozen, &self.features, samples, starts, self.windowing))?
        })?;
        if let Some(pool) = &self.voice_sex {
            pool.with(|m| apply_sex_head(m, samples, self.windowing, &mut windows))??;
        }
        let speech_windows: Vec<voice::WindowPrediction> =
            windows.iter().zip(&verdicts).filter(|(_, v)| v.is_speech).map(|(w, _)| w.clone()).collect();
        let prediction = voice::ClipPrediction { joint: aggregate(&speech_windows), windows };
        let card = &self.voice_emotion_card;
        let rate = audio.sample_rate as f32;
        let timeline = prediction
            .windows
            .iter()
            .zip(&verdicts)
            .map(|(w, v)| TimelineWindow {
                start_seconds: w.start as f32 / rate,
                end_seconds: w.end as f32 / rate,
                rms: w.rms,
                speech: v.is_speech,
                speech_probability: v.probability,
                emotion: Distribution::new(&card.emotions, &emotion_marginal(&w.joint)),
                sex: Distribution::new(&card.sexes, &sex_marginal(&w.joint)),
            })
            .collect();
        Ok(AudioAnalysis {
            duration_seconds: audio.duration() as f32,
            source_sample_rate: audio.source_rate,
            source_channels: audio.source_channels,
            emotion: Distribution::new(&card.emotions, &emotion_marginal(&prediction.joint)),
            sex: Distribution::new(&card.sexes, &sex_marginal(&prediction.joint)),
            classes: Distribution::new(&voice_class_names(), &prediction.joint),
            timeline,
            note: short_answer_note(audio.duration() as f32),
        })
    }

    /// How clips are cut into windows (from the voice model's card).
    pub fn windowing(&self) -> Windowing {
        self.windowing
    }

    /// The voice sex head's card, if the server blends its sex in.
    pub fn voice_sex_card(&self) -> Option<&SpeakerSexCard> {
        self.voice_sex_card.as_ref()
    }

    /// The face emotion model's card (classes, input, measured accuracy).
    pub fn face_emotion_card(&self) -> &ModelCard {
        &self.face_emotion_card
    }

    /// The configuration the analyzer was loaded with.
    pub fn config(&self) -> &AnalyzerConfig {
        &self.config
    }

    /// Decodes and analyses an uploaded image. CPU-bound (tens of
    /// milliseconds): async callers run it on a blocking thread.
    pub fn analyze_image_bytes(&self, bytes: &[u8]) -> Result<ImageAnalysis, AnalyzeError> {
        self.analyze_image_bytes_with(bytes, FaceSource::Detect)
    }

    /// [`Self::analyze_image_bytes`], with the faces taken from `faces`.
    pub fn analyze_image_bytes_with(&self, bytes: &[u8], faces: FaceSource) -> Result<ImageAnalysis, AnalyzeError> {
        let decoded = decode_image(bytes, self.config.image_limits)?;
        self.analyze_image_with(&decoded, faces)
    }

    /// Analyses a decoded image; [`AnalyzeError::NoFace`] when nothing is found.
    pub fn analyze_image(&self, image: &DecodedImage) -> Result<ImageAnalysis, AnalyzeError> {
        self.analyze_image_with(image, FaceSource::Detect)
    }

    /// [`Self::analyze_image`], with the faces taken from `faces`.
    pub fn analyze_image_with(&self, image: &DecodedImage, faces: FaceSource) -> Result<ImageAnalysis, AnalyzeError> {
        let (width, height) = image.gray.dimensions();
        let (mut boxes, mut crops) = match faces {
            FaceSource::Detect => {
                let found = self.detect_verified(&self.detectors, &image.gray)?;
                match &self.fallback_detectors {
                    Some(fallback) if found.0.is_empty() => self.detect_verified(fallback, &image.gray)?,
                    _ => found,
                }
            }
            FaceSource::CenterFace => {
                let pool = self.centerface().ok_or_else(|| {
                    anyhow::anyhow!("CenterFace is not loaded on this server (it runs with --detector haar)")
                })?;
                self.detect_verified(pool, &image.gray)?
            }
            FaceSource::WholeImage => {
                let side = width.min(height);
                let whole = FaceBox { x: (width - side) / 2, y: (height - side) / 2, width: side, height: side };
                (vec![whole], vec![crop_face(&image.gray, whole).into_raw()])
            }
        };
        if boxes.is_empty() {
            return Err(AnalyzeError::NoFace { width, height });
        }
        let cap = self.config.max_faces.max(1);
        let faces_left_out = boxes.len().saturating_sub(cap);
        boxes.truncate(cap);
        crops.truncate(cap);
        // The sex network may read a larger crop with context around the box;
        // a whole image given as the face is read as it is, without a margin.
        let sex_spec = match faces {
            FaceSource::Detect | FaceSource::CenterFace => self.face_sex_card.input.crop(),
            FaceSource::WholeImage => CropSpec { margin: 0.0, ..self.face_sex_card.input.crop() },
        };
        let own_sex_crops = sex_spec != CropSpec::FACE;
        let sex_crops: Vec<Vec<u8>> = if own_sex_crops {
            boxes.iter().map(|&b| crop_face_as(&image.gray, b, sex_spec).into_raw()).collect()
        } else {
            Vec::new()
        };
        let sex_source = if own_sex_crops { &sex_crops } else { &crops };
        // The face sex head reads its own, larger crop of each box.
        let head_spec = self.face_sex_head_card.as_ref().map(|card| match faces {
            FaceSource::Detect | FaceSource::CenterFace => card.crop(),
            FaceSource::WholeImage => CropSpec { margin: 0.0, ..card.crop() },
        });
        // Beside the head, the sex network reads the face alone if the head's
        // card says so.
        let sex_network_mirror = self.face_sex_head_card.as_ref().is_none_or(|card| card.network_mirror);
        let (mut emotions, mut sexes) = (Vec::with_capacity(boxes.len()), Vec::with_capacity(boxes.len()));
        for ((part_crops, part_sex_crops), part_boxes) in
            crops.chunks(FACE_BATCH).zip(sex_source.chunks(FACE_BATCH)).zip(boxes.chunks(FACE_BATCH))
        {
            let batch = face_batch(part_crops, CropSpec::FACE.size);
            let sex_batch =
                if own_sex_crops { face_batch(part_sex_crops, sex_spec.size) } else { batch.shallow_clone() };
            // The networks are independent, and each worker runs libtorch on
            // one thread: side by side they use the second core when a
            // request runs alone (under load the other workers use it anyway).
            let (part_emotions, part_sexes, part_head) = std::thread::scope(|scope| {
                // Tensors are Send but not Sync: the thread gets its own tensor.
                let sexes = spawn_like_caller(scope, move || {
                    classify(&self.face_sex, &sex_batch, &self.face_sex_card.classes, sex_network_mirror)
                });
                let head = self.face_sex_head.as_ref().zip(head_spec).map(|(pool, spec)| {
                    spawn_like_caller(scope, move || {
                        // Cut in this thread, beside the other networks' work.
                        let crops: Vec<image::GrayImage> =
                            part_boxes.iter().map(|&b| crop_face_as(&image.gray, b, spec)).collect();
                        pool.with(|m| m.male_probabilities(&crops))?
                    })
                });
                let emotions = classify(&self.face_emotion, &batch, &self.face_emotion_card.classes, true);
                let sexes = sexes.join().unwrap_or_else(|_| Err(anyhow::anyhow!("face sex network panicked")));
                let head = head
                    .map(|h| h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("face sex head panicked"))))
                    .transpose();
                (emotions, sexes, head)
            });
            emotions.extend(part_emotions?);
            let part_sexes = part_sexes?;
            match (part_head?, &self.face_sex_head_card) {
                (Some(male), Some(card)) => {
                    sexes.extend(part_sexes.iter().zip(male).map(|(network, head_male)| {
                        // [female, male], checked when the head was loaded.
                        let p = |i: usize| network.probabilities.get(i).map_or(0.0, |c| c.probability);
                        let served = blend_sex([p(0), p(1)], head_male, card.head_weight);
                        Distribution::new(&self.face_sex_card.classes, &served)
                    }))
                }
                _ => sexes.extend(part_sexes),
            }
        }
        let faces = boxes
            .into_iter()
            .zip(emotions.into_iter().zip(sexes))
            .zip(crops)
            .map(|((bbox, (emotion, sex)), crop)| FaceAnalysis { bbox, emotion, sex, crop })
            .collect();
        Ok(ImageAnalysis { width, height, faces, faces_left_out, preview_png: preview_png(image.format, &image.gray) })
    }

    /// The face sex model's card.
    pub fn face_sex_card(&self) -> &ModelCard {
        &self.face_sex_card
    }

    /// The face sex head's card, when one is loaded.
    pub fn face_sex_head_card(&self) -> Option<&FaceSexHeadCard> {
        self.face_sex_head_card.as_ref()
    }

    /// The face detector in use (`--detector`).
    pub fn detector(&self) -> &DetectorChoice {
        self.detectors.choice()
    }

    /// CenterFace's detectors, when this server loaded them (as its
    /// detector or its fallback).
    fn centerface(&self) -> Option<&DetectorPool> {
        std::iter::once(&self.detectors)
            .chain(&self.fallback_detectors)
            .find(|pool| matches!(pool.choice(), DetectorChoice::CenterFace(_)))
    }

    /// Whether a request may ask for CenterFace alone
    /// ([`FaceSource::CenterFace`]).
    pub fn has_centerface(&self) -> bool {
        self.centerface().is_some()
    }

    /// The detector asked when the first finds no face, if any.
    pub fn fallback_detector(&self) -> Option<&DetectorChoice> {
        self.fallback_detectors.as_ref().map(DetectorPool::choice)
    }

    /// The face verifier's card, when one is loaded.
    pub fn face_verifier_card(&self) -> Option<&ModelCard> {
        self.face_verifier_card.as_ref()
    }

    /// The faces `detectors` find in `gray` that the verifier keeps, with
    /// their crops, one box a face ([`FaceVerifier::select`]); all of them
    /// without a verifier. Each detector's candidates are judged at its own
    /// threshold (CenterFace's stricter than the card's, which is the
    /// cascade's). Order (largest first) is kept.
    fn detect_verified(
        &self,
        detectors: &DetectorPool,
        gray: &image::GrayImage,
    ) -> Result<(Vec<FaceBox>, Vec<Vec<u8>>)> {
        let boxes = detectors.detect(gray)?;
        let crops: Vec<Vec<u8>> = boxes.iter().map(|&b| crop_face(gray, b).into_raw()).collect();
        let Some(verifier) = &self.verifier else {
            return Ok((boxes, crops));
        };
        // Detection leaves the second core idle, and a photo has several
        // candidates (four on the one-face benchmark portrait).
        let threshold = verifier.with(|v| v.threshold_for(detectors.choice()))?;
        let scores =
            in_two_halves("face verifier", &crops, |part| verifier.with(|v| v.scores_against(part, threshold))?)?;
        Ok(FaceVerifier::keep_scored(boxes, crops, &scores, threshold))
    }
}

/// Gives the calling thread the process's libtorch thread count
/// (`tch::set_num_threads`, which `serve` and `predict` set to one).
///
/// libtorch applies that count to a thread only once the thread reaches
/// one of its own parallel loops, which small tensors never do; until then
/// the convolutions of a new thread start OpenMP teams as wide as the
/// machine, whose workers then spin on the cores the other parts of the
/// request need. Threads that run networks call this first.
pub fn use_process_libtorch_threads() {
    // Reading the count is what applies it to this thread.
    let threads = tch::get_num_threads();
    tch::set_num_threads(threads);
}

/// Runs `work` on a scoped thread that uses the caller's libtorch thread
/// count ([`use_process_libtorch_threads`]): without it, the two face
/// networks and the head beside them cost a one-face request 10 ms more
/// (BENCHMARKS.md, "Threads").
pub fn spawn_like_caller<'scope, T: Send + 'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    work: impl FnOnce() -> T + Send + 'scope,
) -> std::thread::ScopedJoinHandle<'scope, T> {
    let threads = tch::get_num_threads();
    scope.spawn(move || {
        tch::set_num_threads(threads);
        work()
    })
}

/// `work` on the first half of `items` here and on the second half in a
/// thread beside it ([`spawn_like_caller`]), the results in order: a clip's
/// windows, a photo's face candidates. `what` names the work if that thread
/// panics.
pub(crate) fn in_two_halves<I: Sync, T: Send>(
    what: &str,
    items: &[I],
    work: impl Fn(&[I]) -> Result<Vec<T>> + Sync,
) -> Result<Vec<T>> {
    let (first, second) = items.split_at(items.len().div_ceil(2));
    std::thread::scope(|scope| {
        let second = (!second.is_empty()).then(|| spawn_like_caller(scope, || work(second)));
        let mut out = work(first)?;
        if let Some(second) = second {
            out.extend(second.join().map_err(|_| anyhow::anyhow!("{what} panicked"))??);
        }
        Ok(out)
    })
}

/// `side` x `side` grey crops as one `[N, 1, side, side]` batch.
fn face_batch(crops: &[Vec<u8>], side: u32) -> Tensor {
    let pixels: Vec<u8> = crops.concat();
    let side = i64::from(side);
    Tensor::from_slice(&pixels).view([crops.len() as i64, 1, side, side])
}

/// `workers` copies of the face network at `weights`.
fn face_model_pool(what: &'static str, weights: &Path, workers: usize) -> Result<Pool<LoadedFaceModel>> {
    let weights = weights.to_path_buf();
    Pool::new(what, workers, move || {
        LoadedFaceModel::load(&weights).with_context(|| format!("loading {what} model {}", weights.display()))
    })
}

/// One distribution per face of `batch` from a face model, averaged with
/// the mirror images' when `mirror`.
fn classify(
    model: &Pool<LoadedFaceModel>,
    batch: &Tensor,
    classes: &[String],
    mirror: bool,
) -> Result<Vec<Distribution>> {
    let proba = model.with(|m| m.frozen.predict_proba_with(batch, mirror))?;
    (0..batch.size()[0])
        .map(|i| {
            let row = Vec::<f32>::try_from(proba.get(i)).context("reading probabilities")?;
            Ok(Distribution::new(classes, &row))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_answers_to_clips_under_two_seconds_carry_the_short_clip_note() {
        let note = short_answer_note(1.97).expect("a note under 2 s");
        assert!(note.contains("only 1.9 s long") && note.contains("at least 2 s"), "{note}");
        assert_eq!(short_answer_note(2.0), None);
        assert_eq!(short_answer_note(30.0), None);
    }

    #[test]
    fn only_clips_under_two_seconds_get_the_short_clip_hint_rounded_down() {
        assert!(no_speech_advice(1.97).contains("only 1.9 s long"), "{}", no_speech_advice(1.97));
        assert!(!no_speech_advice(2.0).contains(" s long"), "{}", no_speech_advice(2.0));
        assert!(!no_speech_advice(30.0).contains(" s long"), "{}", no_speech_advice(30.0));
    }

    #[test]
    fn no_speech_messages_give_one_piece_of_advice_and_never_call_a_clip_zero_seconds_long() {
        let more = "send at least 2 s of someone speaking";
        let voice = "upload a recording of someone speaking";
        let quiet_voice = "upload a recording of someone speaking, with no music or loud noise behind the voice";
        for (error, length, advice) in [
            (AnalyzeError::NotSpeech { seconds: 1.5 }, Some("only 1.5 s long"), more),
            (AnalyzeError::NotSpeech { seconds: 1.0 / 16_000.0 }, Some("under 0.1 s long"), more),
            (AnalyzeError::NotSpeech { seconds: 10.0 }, None, quiet_voice),
            (AnalyzeError::NoSpeech, None, voice),
        ] {
            let message = error.to_string();
            assert_eq!(message.matches(more).count() + message.matches(voice).count(), 1, "{message}");
            assert!(message.ends_with(advice), "{message}");
            assert!(!message.contains("0.0 s"), "{message}");
            match length {
                Some(length) => assert!(message.contains(length), "{message}"),
                None => assert!(!message.contains(" s long"), "{message}"),
            }
        }
    }

    #[test]
    fn only_formats_browsers_do_not_show_get_a_preview_and_large_ones_are_scaled_down() {
        let wide = image::GrayImage::from_fn(3200, 100, |x, _| image::Luma([(x % 256) as u8]));
        assert!(preview_png(image::ImageFormat::Jpeg, &wide).is_none());
        let png = preview_png(image::ImageFormat::Tiff, &wide).expect("a TIFF gets a preview");
        let shown = image::load_from_memory_with_format(&png, image::ImageFormat::Png).unwrap();
        assert_eq!((shown.width(), shown.height()), (PREVIEW_SIDE, 50));
    }

    #[test]
    fn the_whole_image_face_field_reads_true_false_or_nothing_else() {
        for yes in ["true", "1", "on", "YES", " True "] {
            assert_eq!(FaceSource::from_form_value(yes), Some(FaceSource::WholeImage), "{yes}");
        }
        for no in ["false", "0", "off", "no", ""] {
            assert_eq!(FaceSource::from_form_value(no), Some(FaceSource::Detect), "{no}");
        }
        assert_eq!(FaceSource::from_form_value("maybe"), None);
    }

    #[test]
    fn the_detector_field_reads_centerface_default_or_nothing_else() {
        for value in ["centerface", " CenterFace "] {
            assert_eq!(FaceSource::from_detector_form_value(value), Some(FaceSource::CenterFace), "{value}");
        }
        for value in ["default", ""] {
            assert_eq!(FaceSource::from_detector_form_value(value), Some(FaceSource::Detect), "{value}");
        }
        assert_eq!(FaceSource::from_detector_form_value("haar"), None, "the cascade alone is a server setting");
    }

    #[test]
    fn distribution_picks_the_most_probable_class_in_order() {
        let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let d = Distribution::new(&classes, &[0.2, 0.5, 0.3]);
        assert_eq!(d.label, "b");
        assert_eq!(d.confidence, 0.5);
        let labels: Vec<&str> = d.probabilities.iter().map(|p| p.label.as_str()).collect();
        assert_eq!(labels, ["a", "b", "c"]);
    }
}
