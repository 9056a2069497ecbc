//! The `emotion-ai` command: a thin layer of argument parsing over the library.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use emotion_ai::batch;
use emotion_ai::detect::{DetectParams, DetectorChoice};
use emotion_ai::features::MfccConfig;
use emotion_ai::model::voice::VoiceNetConfig;
use emotion_ai::predict::{Analyzer, AnalyzerConfig, FaceSource};
use emotion_ai::train::utkface::Part;
use emotion_ai::train::{face_emotion, face_sex, face_verifier, fusion_eval, voice_emotion, TrainOptions};
use emotion_ai::web::{self, AppState, ServerLimits};

#[derive(Parser)]
#[command(version, about = "Reads human emotion from a face photo or a voice clip")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the web service (upload page and JSON API).
    Serve(ServeArgs),
    /// Analyse image and audio files and print one JSON line per file.
    Predict(PredictArgs),
    /// Train a model on a dataset.
    #[command(subcommand)]
    Train(TrainCommand),
    /// Measure a model on a dataset's test split.
    #[command(subcommand)]
    Eval(EvalCommand),
}

/// Where the models are; shared by `serve` and `predict`.
#[derive(Args)]
struct ModelArgs {
    /// Directory holding the shipped models (face_emotion, face_sex, voice_emotion: .safetensors + .json; speech_check.json).
    #[arg(long, env = "EMOTION_AI_MODELS", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/models"))]
    models: PathBuf,
    /// Face emotion weights (default: MODELS/face_emotion.safetensors).
    #[arg(long, env = "EMOTION_AI_FACE_EMOTION_MODEL")]
    face_emotion_model: Option<PathBuf>,
    /// Face sex weights (default: MODELS/face_sex.safetensors).
    #[arg(long, env = "EMOTION_AI_FACE_SEX_MODEL")]
    face_sex_model: Option<PathBuf>,
    /// Voice emotion x sex weights (default: MODELS/voice_emotion.safetensors).
    #[arg(long, env = "EMOTION_AI_VOICE_EMOTION_MODEL")]
    voice_emotion_model: Option<PathBuf>,
    /// The speech check's card (default: MODELS/speech_check.json).
    #[arg(long, env = "EMOTION_AI_SPEECH_CHECK_MODEL")]
    speech_check_model: Option<PathBuf>,
    /// The voice sex head, whose sex (from the speaker encoder) is blended with the voice network's
    /// (default: MODELS/voice_sex.safetensors); "none" serves the voice network's sex alone.
    #[arg(long, env = "EMOTION_AI_VOICE_SEX_MODEL")]
    voice_sex_model: Option<String>,
    /// The speaker encoder under the voice sex head (scripts/setup.sh installs it).
    #[arg(long, env = "EMOTION_AI_SPEAKER_ENCODER", default_value = emotion_ai::model::speaker::DEFAULT_SPEAKER_ENCODER)]
    speaker_encoder: PathBuf,
    /// Silero VAD's weights, which the speech check reads if its card lists them (scripts/setup.sh installs them).
    #[arg(long, env = "EMOTION_AI_SILERO_VAD", default_value = emotion_ai::model::vad::DEFAULT_SILERO_VAD)]
    silero_vad: PathBuf,
    /// The face sex head, whose sex (from the face embedder) is blended with the face sex network's
    /// (default: MODELS/face_sex_head.safetensors); "none" serves the network's sex alone.
    #[arg(long, env = "EMOTION_AI_FACE_SEX_HEAD_MODEL")]
    face_sex_head_model: Option<String>,
    /// The face embedder under the face sex head: its TensorFlow.js manifest (scripts/setup.sh installs it).
    #[arg(long, env = "EMOTION_AI_FACE_EMBEDDER", default_value = emotion_ai::model::face_embedder::DEFAULT_FACE_EMBEDDER)]
    face_embedder: PathBuf,
    /// Face verifier weights, which remove the cascade's phantom faces
    /// (default: MODELS/face_verifier.safetensors); "none" keeps every face the cascade finds (CenterFace, which needs the verifier, is then not asked).
    #[arg(long, env = "EMOTION_AI_FACE_VERIFIER_MODEL")]
    face_verifier_model: Option<String>,
    /// Longest audio clip accepted, in seconds.
    #[arg(long, env = "EMOTION_AI_MAX_AUDIO_SECONDS", default_value_t = 300.0)]
    max_audio_seconds: f64,
    /// Face detector: "centerface" (the default: more faces found and fewer phantoms than the cascade, at its cost), "haar-then-centerface" (the cascade, then CenterFace only where the cascade finds no face) or "haar" (the cascade alone, the default with --face-verifier-model none). README, "Face detection".
    #[arg(long, env = "EMOTION_AI_DETECTOR", value_enum)]
    detector: Option<DetectorName>,
    /// Haar cascade for face detection (with --detector haar).
    #[arg(long, env = "EMOTION_AI_CASCADE", default_value = emotion_ai::detect::DEFAULT_CASCADE)]
    cascade: PathBuf,
    /// CenterFace's ONNX network (scripts/setup.sh installs it).
    #[arg(long, env = "EMOTION_AI_CENTERFACE", default_value = emotion_ai::detect::centerface::DEFAULT_CENTERFACE)]
    centerface: PathBuf,
    /// Raw detections a face needs to be kept (higher: fewer false positives).
    #[arg(long, env = "EMOTION_AI_MIN_NEIGHBORS", default_value_t = DetectParams::default().min_neighbors)]
    min_neighbors: i32,
    /// Step between the cascade's scales: larger is faster and finds fewer faces (see BENCHMARKS.md).
    #[arg(long, env = "EMOTION_AI_SCALE_FACTOR", default_value_t = DetectParams::default().scale_factor)]
    scale_factor: f64,
    /// Smallest face searched for, as a fraction of the image's shorter side: larger is faster.
    #[arg(long, env = "EMOTION_AI_MIN_FACE_FRACTION", default_value_t = DetectParams::default().min_face_fraction)]
    min_face_fraction: f64,
    /// Also run the cascade on the mirror image of a half-size copy (finds more faces of 60 px and up; costs about 45% of a pass).
    #[arg(long, env = "EMOTION_AI_MIRROR_PASS", default_value_t = DetectParams::default().mirror_pass, action = clap::ArgAction::Set)]
    mirror_pass: bool,
    /// Most faces analysed in one image (the largest); the answer counts the rest.
    #[arg(long, env = "EMOTION_AI_MAX_FACES", default_value_t = emotion_ai::predict::MAX_FACES)]
    max_faces: usize,
}

impl ModelArgs {
    fn analyzer_config(&self, workers: usize) -> AnalyzerConfig {
        let mut config = AnalyzerConfig::with_models_dir(&self.models);
        if let Some(path) = &self.face_emotion_model {
            config.face_emotion_model = path.clone();
        }
        if let Some(path) = &self.face_sex_model {
            config.face_sex_model = path.clone();
        }
        if let Some(path) = &self.voice_emotion_model {
            config.voice_emotion_model = path.clone();
        }
        if let Some(path) = &self.speech_check_model {
            config.speech_check_model = path.clone();
        }
        if let Some(arg) = &self.voice_sex_model {
            config.voice_sex_model = model_or_none(arg);
        }
        config.speaker_encoder = self.speaker_encoder.clone();
        config.silero_vad = self.silero_vad.clone();
        if let Some(arg) = &self.face_sex_head_model {
            config.face_sex_head_model = model_or_none(arg);
        }
        config.face_embedder = self.face_embedder.clone();
        if let Some(arg) = &self.face_verifier_model {
            config.face_verifier_model = model_or_none(arg);
        }
        config.max_audio_seconds = self.max_audio_seconds;
        let (haar, centerface) =
            (DetectorChoice::Haar(self.cascade.clone()), DetectorChoice::CenterFace(self.centerface.clone()));
        // CenterFace needs the verifier (Analyzer::load says so when asked
        // for by name); without it the default is the cascade.
        let detector = self.detector.unwrap_or_else(|| {
            if config.face_verifier_model.is_some() {
                DetectorName::CenterFace
            } else {
                tracing::warn!(
                    "without the face verifier the face detector is the Haar cascade (CenterFace needs the verifier)"
                );
                DetectorName::Haar
            }
        });
        (config.detector, config.fallback_detector) = match detector {
            DetectorName::HaarThenCenterFace => (haar, Some(centerface)),
            DetectorName::Haar => (haar, None),
            DetectorName::CenterFace => (centerface, None),
        };
        config.detect.min_neighbors = self.min_neighbors;
        config.detect.scale_factor = self.scale_factor.max(1.01);
        config.detect.min_face_fraction = self.min_face_fraction.clamp(0.0, 1.0);
        config.detect.mirror_pass = self.mirror_pass;
        config.max_faces = self.max_faces.max(1);
        config.workers = workers;
        config
    }
}

#[derive(Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "EMOTION_AI_ADDR", default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    #[command(flatten)]
    models: ModelArgs,
    /// Analyses run at once (default: number of cores).
    #[arg(long, env = "EMOTION_AI_WORKERS")]
    workers: Option<usize>,
    /// Requests that may wait for a worker before the server answers 503.
    #[arg(long, env = "EMOTION_AI_QUEUE", default_value_t = ServerLimits::default().queue)]
    queue: usize,
    /// Largest upload accepted, in MiB.
    #[arg(long, env = "EMOTION_AI_MAX_UPLOAD_MIB", default_value_t = 20)]
    max_upload_mib: usize,
    /// Longest the analysis of an upload may take, once it has arrived, before a 408.
    #[arg(long, env = "EMOTION_AI_REQUEST_TIMEOUT_SECS", default_value_t = ServerLimits::default().request_timeout.as_secs())]
    request_timeout_secs: u64,
    /// Longest reading an upload may take before a 408 (slow links need time: 2 MB at 25 KB/s is 80 s).
    #[arg(long, env = "EMOTION_AI_UPLOAD_TIMEOUT_SECS", default_value_t = ServerLimits::default().upload_timeout.as_secs())]
    upload_timeout_secs: u64,
    /// Longest a client may take to send a request's headers, and a
    /// kept-alive connection may sit idle, before it is closed.
    #[arg(long, env = "EMOTION_AI_HEADER_TIMEOUT_SECS", default_value_t = ServerLimits::default().header_timeout.as_secs())]
    header_timeout_secs: u64,
    /// Connections open at once; more wait in the listen backlog (default and
    /// ceiling: the open-file limit less 64, at most 10,000).
    #[arg(long, env = "EMOTION_AI_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// MiB of uploads held in memory at once, all requests together; an
    /// upload that does not fit gets 503 before its body is read.
    #[arg(long, env = "EMOTION_AI_UPLOAD_BUDGET_MIB", default_value_t = ServerLimits::default().upload_budget_bytes / (1024 * 1024))]
    upload_budget_mib: usize,
    /// Directory of the page's CSS and JS.
    #[arg(long, env = "EMOTION_AI_STATIC", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/static"))]
    static_dir: PathBuf,
    /// Directory of the cross-modal samples (voices/, faces/).
    #[arg(long, env = "EMOTION_AI_ASSETS", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/assets"))]
    assets_dir: PathBuf,
}

#[derive(Args)]
struct PredictArgs {
    /// Image or audio files, or directories (searched recursively; hidden files skipped).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    /// Output format: one JSON object per line, or CSV with a header.
    #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv"])]
    format: String,
    /// Also write one row per analysis window of each clip.
    #[arg(long)]
    timeline: bool,
    /// Read each image as one face, already cropped (its central square),
    /// instead of detecting faces.
    #[arg(long)]
    whole_image_face: bool,
    /// Files analysed at once (default: the number of cores).
    #[arg(long, short = 'j')]
    jobs: Option<usize>,
    /// Write the rows to this file instead of standard output.
    #[arg(long, short = 'o')]
    output: Option<PathBuf>,
    #[command(flatten)]
    models: ModelArgs,
}

#[derive(Subcommand)]
enum TrainCommand {
    /// The face emotion network, on FER2013 (folder release or fer2013.csv).
    FaceEmotion(TrainFaceEmotion),
    /// The voice emotion x sex network, on RAVDESS, EmoDB and speechsex (plus CREMA-D, TESS, SAVEE if given).
    VoiceEmotion(TrainVoiceEmotion),
    /// The face sex network, on UTKFace, fine-tuned from the face emotion weights.
    FaceSex(TrainFaceSex),
    /// The speech check (speech or not), on speech corpora against generated non-speech.
    SpeechCheck(TrainSpeechCheck),
    /// The voice sex head: a logistic regression on the speaker encoder's embedding, on RAVDESS, EmoDB and speechsex.
    VoiceSex(TrainVoiceSex),
    /// The face sex head: a logistic regression on the face embedder's descriptor, on UTKFace.
    FaceSexHead(TrainFaceSexHead),
    /// Joins trained voice networks (e.g. seeds of one recipe) into one ensemble file that answers with their mean.
    VoiceEnsemble(TrainVoiceEnsemble),
    /// A face-emotion network between two trainings of it, weight by weight
    /// (e.g. the shipped weights and a FER+ fine-tune of them).
    FaceEmotionInterpolate(TrainFaceEmotionInterpolate),
    /// The face verifier (face or phantom), on FER2013 and UTKFace faces against face-free photos.
    FaceVerifier(TrainFaceVerifier),
}

#[derive(Args)]
struct TrainFaceVerifier {
    /// FER2013 (faces; folder release or fer2013.csv).
    #[arg(long, env = "EMOTION_AI_FER2013")]
    fer2013: PathBuf,
    /// UTKFace (faces pasted into synthetic scenes; its train part only).
    #[arg(long, env = "EMOTION_AI_UTKFACE")]
    utkface: PathBuf,
    /// A folder of face-free photos (JPEG, PNG; repeatable).
    #[arg(long, required = true)]
    negatives: Vec<PathBuf>,
    /// The Haar cascade whose candidates it checks (the server's).
    #[arg(long, env = "EMOTION_AI_CASCADE", default_value = emotion_ai::detect::DEFAULT_CASCADE)]
    cascade: PathBuf,
    /// Directory for checkpoints and the run's state.
    #[arg(long, default_value = "runs/face-verifier")]
    run_dir: PathBuf,
    /// Continue the run in --run-dir after its last finished epoch.
    #[arg(long)]
    resume: bool,
    /// Where to write the best weights (the card goes beside them).
    #[arg(long, default_value = "models/face_verifier.safetensors")]
    export: PathBuf,
    #[arg(long, default_value_t = face_verifier::default_options().epochs)]
    epochs: usize,
    #[arg(long, default_value_t = face_verifier::default_options().batch_size)]
    batch_size: i64,
    /// Peak learning rate.
    #[arg(long, default_value_t = face_verifier::default_options().lr)]
    lr: f64,
    #[arg(long, default_value_t = face_verifier::default_options().seed)]
    seed: i64,
    /// Intra-op threads for libtorch (default: all cores).
    #[arg(long)]
    threads: Option<i32>,
}

#[derive(Args)]
struct TrainFaceSexHead {
    /// UTKFace: a folder of its `[age]_[sex]_[race]_[datetime].jpg.chip.jpg` files (searched recursively).
    #[arg(long, env = "EMOTION_AI_UTKFACE")]
    data: PathBuf,
    /// The face sex network the head is blended with.
    #[arg(long, default_value = "models/face_sex.safetensors")]
    network: PathBuf,
    /// The face embedder's TensorFlow.js manifest (scripts/setup.sh installs it).
    #[arg(long, env = "EMOTION_AI_FACE_EMBEDDER", default_value = emotion_ai::model::face_embedder::DEFAULT_FACE_EMBEDDER)]
    face_embedder: PathBuf,
    /// Context around the detected box of the embedder's crop, as a fraction of its side (0 to 1).
    #[arg(long, default_value_t = 0.0)]
    margin: f64,
    /// Share of the head in the served sex, 0-1 (the rest: the face sex network's).
    #[arg(long, default_value_t = 0.5, value_parser = head_share)]
    head_weight: f64,
    /// Describe each face with its mirror image too: two passes of the embedder, far dearer
    /// (BENCHMARKS.md); the served head describes the face alone.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    mirror: bool,
    /// Whether the face sex network beside the head reads the face's mirror image too (its
    /// own test-time augmentation); without it, half the network's work (BENCHMARKS.md).
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    network_mirror: bool,
    /// Side of the embedder's square crop: 150 is the network's own; smaller is less work
    /// (64 at least; the network is fully convolutional).
    #[arg(long, default_value_t = emotion_ai::model::face_embedder::EMBEDDER_INPUT as u32)]
    input_size: u32,
    /// Youngest age whose train-part faces fit the head (0: all ages; the validation
    /// part's adults choose the penalty either way).
    #[arg(long, default_value_t = 0)]
    min_age: u32,
    /// Fine-tune the embedder's last this many residual blocks (1-14) and its final map with
    /// the head, on nine tenths of the train part, the other tenth choosing the epoch
    /// (0: a logistic fit on the embedder as installed).
    #[arg(long, default_value_t = 0)]
    tune_blocks: usize,
    /// Epochs of that fine-tuning.
    #[arg(long, default_value_t = emotion_ai::train::face_sex_head::TailTuning::NONE.epochs)]
    tune_epochs: usize,
    /// Adam's peak learning rate for it (cosine decay).
    #[arg(long, default_value_t = emotion_ai::train::face_sex_head::TailTuning::NONE.lr)]
    tune_lr: f64,
    /// Seed of its shuffling.
    #[arg(long, default_value_t = emotion_ai::train::face_sex_head::TailTuning::NONE.seed)]
    seed: i64,
    #[command(flatten)]
    finder: FaceFinderArgs,
    /// Where to write the head's weights (its card goes beside them).
    #[arg(long, default_value = "models/face_sex_head.safetensors")]
    export: PathBuf,
}

#[derive(Args)]
struct TrainVoiceSex {
    /// Speech corpus directory with sex labels (repeatable): RAVDESS, EmoDB, speechsex.
    #[arg(long, required = true)]
    data: Vec<PathBuf>,
    /// The speaker encoder's weights (scripts/setup.sh installs them).
    #[arg(long, env = "EMOTION_AI_SPEAKER_ENCODER", default_value = emotion_ai::model::speaker::DEFAULT_SPEAKER_ENCODER)]
    speaker_encoder: PathBuf,
    /// Where to write the head's weights (its card goes beside them).
    #[arg(long, default_value = "models/voice_sex.safetensors")]
    export: PathBuf,
    /// Share of the head in the served sex, 0-1 (the rest: the voice network's own sex marginal).
    #[arg(long, default_value_t = 1.0, value_parser = head_share)]
    head_weight: f64,
    /// Random excerpts (0.8-2 s) of each training clip added to the fit, each embedded as a clip that short is served (repeated to fill a window): teaches the head the form single words arrive in.
    #[arg(long, default_value_t = 0)]
    short_copies: usize,
    /// Seed of those excerpts.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The head also reads 4 pitch statistics of each window (quartiles of log F0 over voiced frames, voiced share) beside the speaker embedding.
    #[arg(long)]
    pitch_summary: bool,
}

#[derive(Args)]
struct TrainVoiceEnsemble {
    /// A trained voice network's weights, its card beside it (repeat: two or more).
    #[arg(long = "member", required = true)]
    members: Vec<PathBuf>,
    /// Where to write the ensemble's weights (its card goes beside them).
    #[arg(long, default_value = "models/voice_emotion.safetensors")]
    out: PathBuf,
}

#[derive(Args)]
struct TrainFaceEmotionInterpolate {
    /// One end: a trained face-emotion network's weights, its card beside it.
    #[arg(long)]
    base: PathBuf,
    /// The other end: the same architecture trained further (e.g. fine-tuned on FER+ votes).
    #[arg(long)]
    tuned: PathBuf,
    /// Where on the line between them: 0 = base, 1 = tuned. Choose it on PublicTest.
    #[arg(long, value_parser = point_on_the_line)]
    weight: f64,
    /// Where to write the interpolated weights (their card goes beside them).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args)]
struct TrainSpeechCheck {
    /// Speech corpus directory (repeatable): RAVDESS, speechsex (train), EmoDB (measured only).
    #[arg(long, required = true)]
    data: Vec<PathBuf>,
    /// Where to write the card (weights, threshold, measured figures).
    #[arg(long, default_value = "models/speech_check.json")]
    export: PathBuf,
    /// Generated non-speech clips to train on, and half as many again of the four families nearest to speech (6,000 from another seed measure).
    #[arg(long, default_value_t = emotion_ai::train::speech_check::DEFAULT_NEGATIVES)]
    negatives: usize,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Units of the network's hidden layer (at least 1).
    #[arg(long, default_value_t = emotion_ai::train::speech_check::DEFAULT_HIDDEN,
          value_parser = at_least_one)]
    hidden: usize,
    /// Also read Silero VAD's statistics, from these weights (scripts/setup.sh installs them at
    /// /opt/emotion-ai/models/silero_vad_16k.safetensors); tried, not shipped (models/README.md, speech_check).
    #[arg(long)]
    silero_vad: Option<PathBuf>,
    /// With --silero-vad: the network reads its own statistics alone, and the VAD only lets through
    /// stretches the network doubts (a gate fitted on the training data; src/speech.rs, VadGate).
    #[arg(long, requires = "silero_vad")]
    vad_gate: bool,
    /// With --vad-gate: this many more generated non-speech clips (from a seed of their own) that the gate
    /// must refuse, beside the training ones.
    #[arg(long, default_value_t = 0, requires = "vad_gate")]
    gate_negatives: usize,
    /// Seed of the 6,000 generated non-speech clips the card's refusal rate is measured on (default: the
    /// training seed + 1,000,003).
    #[arg(long)]
    measure_seed: Option<u64>,
    /// Largest share of the training speech windows the threshold may refuse (0-1; 1: the threshold is always
    /// just above every training non-speech clip).
    #[arg(long, default_value_t = emotion_ai::train::speech_check::MAX_SPEECH_REFUSED)]
    max_speech_refused: f64,
    /// More copies of each training speech window, each with generated music, a melody or noise under it at
    /// 5-20 dB: speech with sound behind it (0: none).
    #[arg(long, default_value_t = 0)]
    background_copies: usize,
}

#[derive(Subcommand)]
enum EvalCommand {
    /// The face emotion network, on FER2013 PrivateTest.
    FaceEmotion(EvalFaceEmotion),
    /// The voice network, corpus by corpus: held-out speakers, or whole corpora it never heard.
    VoiceEmotion(EvalVoiceEmotion),
    /// The face sex network, on the held-out part of UTKFace (overall and adults).
    FaceSex(EvalFaceSex),
    /// Face + voice fusion on pseudo-pairs (a held-out face and a held-out
    /// clip with the same true emotion); needs the cards' calibration.
    Fusion(EvalFusion),
    /// The gap between the two likeliest emotions under which the page says "mixed: A or B", chosen on
    /// validation data (PublicTest, RAVDESS actors 19-20).
    Mixed(EvalMixed),
}

#[derive(Args)]
struct EvalMixed {
    /// FER2013 (its PublicTest faces).
    #[arg(long, env = "EMOTION_AI_FER2013")]
    fer2013: PathBuf,
    /// RAVDESS (its validation actors 19-20); repeatable.
    #[arg(long, env = "EMOTION_AI_RAVDESS", required = true)]
    ravdess: Vec<PathBuf>,
    #[arg(long, default_value = "models/face_emotion.safetensors")]
    face_weights: PathBuf,
    #[arg(long, default_value = "models/voice_emotion.safetensors")]
    voice_weights: PathBuf,
    /// Record the chosen margins in the two cards.
    #[arg(long)]
    write_card: bool,
}

#[derive(Args)]
struct EvalFusion {
    /// FER2013 (faces of PrivateTest, or PublicTest with --part validation).
    #[arg(long, env = "EMOTION_AI_FER2013")]
    fer2013: PathBuf,
    /// RAVDESS (actors 21-24, or 19-20 with --part validation); repeatable.
    #[arg(long, env = "EMOTION_AI_RAVDESS", required = true)]
    ravdess: Vec<PathBuf>,
    #[arg(long, default_value = "models/face_emotion.safetensors")]
    face_weights: PathBuf,
    #[arg(long, default_value = "models/voice_emotion.safetensors")]
    voice_weights: PathBuf,
    /// `test` (the reported figures) or `validation` (for development).
    #[arg(long, default_value = "test", value_parser = ["test", "validation"])]
    part: String,
    /// Clips drawn for every face.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    #[arg(long, default_value_t = 2017)]
    seed: u64,
    /// Where fusion_eval.json is written.
    #[arg(long, default_value = "target/eval")]
    out: PathBuf,
}

#[derive(Args)]
struct TrainFaceSex {
    /// UTKFace: a folder of its `[age]_[sex]_[race]_[datetime].jpg.chip.jpg` files (searched recursively).
    #[arg(long, env = "EMOTION_AI_UTKFACE")]
    data: PathBuf,
    /// Directory for checkpoints and the run's state.
    #[arg(long, default_value = "runs/face-sex")]
    run_dir: PathBuf,
    /// Continue the run in --run-dir after its last finished epoch.
    #[arg(long)]
    resume: bool,
    /// Where to write the best weights (the card goes beside them).
    #[arg(long, default_value = "models/face_sex.safetensors")]
    export: PathBuf,
    /// Weights a new run starts from (every variable whose name and shape
    /// match: the emotion network's for --input-size 48); "none" for a random start.
    #[arg(long, default_value = "models/face_emotion.safetensors")]
    init_from: String,
    /// Side of the input crop: 48 (the face-emotion architecture, shipped) or a multiple of 32 (the context network: give --init-from none).
    #[arg(long, default_value_t = face_sex::DEFAULT_INPUT_SIZE)]
    input_size: i64,
    /// Context around the detected box, as a fraction of its side added on every side (0 to 1).
    #[arg(long, default_value_t = face_sex::DEFAULT_MARGIN)]
    margin: f64,
    #[command(flatten)]
    finder: FaceFinderArgs,
    #[arg(long, default_value_t = face_sex::default_options().epochs)]
    epochs: usize,
    #[arg(long, default_value_t = face_sex::default_options().batch_size)]
    batch_size: i64,
    /// Peak learning rate.
    #[arg(long, default_value_t = face_sex::default_options().lr)]
    lr: f64,
    #[arg(long, default_value_t = face_sex::default_options().seed)]
    seed: i64,
    /// Intra-op threads for libtorch (default: all cores).
    #[arg(long)]
    threads: Option<i32>,
}

#[derive(Args)]
struct EvalFaceSex {
    #[arg(long, env = "EMOTION_AI_UTKFACE")]
    data: PathBuf,
    #[arg(long, default_value = "models/face_sex.safetensors")]
    weights: PathBuf,
    /// The face sex head blended with the network, as served; "none" measures the network alone.
    #[arg(long, default_value = "models/face_sex_head.safetensors")]
    face_sex_head_model: String,
    /// The face embedder's TensorFlow.js manifest (scripts/setup.sh installs it).
    #[arg(long, env = "EMOTION_AI_FACE_EMBEDDER", default_value = emotion_ai::model::face_embedder::DEFAULT_FACE_EMBEDDER)]
    face_embedder: PathBuf,
    #[command(flatten)]
    finder: FaceFinderArgs,
    /// Where the confusion matrix (JSON and PNG) is written.
    #[arg(long, default_value = "target/eval")]
    out: PathBuf,
    /// Record the measured metrics in the model card.
    #[arg(long)]
    write_card: bool,
    /// Which part of the split: `test` (the reported figures) or `validation` (for development).
    #[arg(long, default_value = "test", value_parser = ["test", "validation"])]
    part: String,
}

/// A count that must not be 0 (`train speech-check --hidden`).
fn at_least_one(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("{text:?} is not a whole number")),
    }
}

/// `text` as a number within `range`; else `rule`, and the number given.
/// NaN lies in no range.
fn number_within<T>(text: &str, range: std::ops::RangeInclusive<T>, rule: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    match text.parse::<T>() {
        Ok(value) if range.contains(&value) => Ok(value),
        Ok(value) => Err(format!("{rule}, not {value}")),
        Err(_) => Err(format!("{text:?} is not a number")),
    }
}

/// `--f0-shift` and `--pitch-shift`: octaves from 0 to 1.
fn octaves_up_to_one(text: &str) -> Result<f32, String> {
    number_within(text, 0.0..=1.0, "the shift must lie between 0 and 1 octave (e.g. 0.25)")
}

/// `--weight-average`: a decay strictly between 0 and 1.
fn decay_in_unit_interval(text: &str) -> Result<f64, String> {
    let decay: f64 = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
    if decay > 0.0 && decay < 1.0 {
        Ok(decay)
    } else {
        Err(format!("the decay must lie strictly between 0 and 1 (e.g. 0.995), not {decay}"))
    }
}

/// `train voice-emotion --mixup`: Beta's parameter, 0 (off) to 1.
fn mixup_alpha(text: &str) -> Result<f32, String> {
    number_within(text, 0.0..=1.0, "mixup's alpha must lie between 0 (off) and 1 (e.g. 0.2)")
}

/// `train voice-emotion --short-excerpts`: a share of the windows, 0 to 1.
fn share_of_windows(text: &str) -> Result<f64, String> {
    number_within(text, 0.0..=1.0, "the share of windows must lie between 0 (off) and 1 (e.g. 0.3)")
}

/// A model path argument where "none" means running without that model.
fn model_or_none(arg: &str) -> Option<PathBuf> {
    (arg != "none").then(|| PathBuf::from(arg))
}

/// `train voice-emotion --speed`: a relative speed change from 0 to 0.5.
fn speed_range(text: &str) -> Result<f64, String> {
    number_within(text, 0.0..=0.5, "the speed change must lie between 0 and 0.5 (e.g. 0.15 for 0.85-1.15)")
}

/// `train voice-sex --head-weight`: the head's share of the served sex.
fn head_share(text: &str) -> Result<f64, String> {
    number_within(text, 0.0..=1.0, "the head's share must lie from 0 (the network's sex alone) to 1 (the head's alone)")
}

/// `train face-emotion-interpolate --weight`: a point on the line from the
/// base (0) to the tuned network (1), checked before any file is read.
fn point_on_the_line(text: &str) -> Result<f64, String> {
    number_within(text, 0.0..=1.0, "the weight must lie from 0 (the base) to 1 (the tuned network)")
}

/// How `train face-sex` and `eval face-sex` find the faces they crop: by
/// default as the server does.
#[derive(Args)]
struct FaceFinderArgs {
    /// Detector whose boxes are cropped: "centerface" (the server's default) or "haar" (the cascade; the shipped sex model learned on its crops, without the verifier).
    #[arg(long, value_enum, default_value = "centerface")]
    detector: CropDetector,
    /// Haar cascade (with --detector haar).
    #[arg(long, env = "EMOTION_AI_CASCADE", default_value = emotion_ai::detect::DEFAULT_CASCADE)]
    cascade: PathBuf,
    /// CenterFace's ONNX network (with --detector centerface).
    #[arg(long, env = "EMOTION_AI_CENTERFACE", default_value = emotion_ai::detect::centerface::DEFAULT_CENTERFACE)]
    centerface: PathBuf,
    /// Face verifier judging the detector's candidates, as the server does; "none" keeps them all (not with centerface).
    #[arg(long, default_value = "models/face_verifier.safetensors")]
    face_verifier_model: String,
}

impl FaceFinderArgs {
    fn finder(&self) -> Result<emotion_ai::train::utkface::FaceFinder> {
        let verifier = model_or_none(&self.face_verifier_model);
        let detector = match self.detector {
            CropDetector::Haar => DetectorChoice::Haar(self.cascade.clone()),
            CropDetector::CenterFace => DetectorChoice::CenterFace(self.centerface.clone()),
        };
        detector.check_verified(verifier.is_some())?;
        Ok(emotion_ai::train::utkface::FaceFinder { detector, verifier })
    }
}

/// `--detector` of `train face-sex` and `eval face-sex`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum CropDetector {
    Haar,
    #[value(name = "centerface")]
    CenterFace,
}

/// `--detector`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum DetectorName {
    #[value(name = "haar-then-centerface")]
    HaarThenCenterFace,
    Haar,
    #[value(name = "centerface")]
    CenterFace,
}

/// `train voice-emotion --features`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum VoiceFeatures {
    Mfcc,
    LogMel,
}

/// `train voice-emotion --window-mean`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum WindowMean {
    Remove,
    Keep,
}

#[derive(Args)]
struct TrainVoiceEmotion {
    /// Corpus directory (repeatable): RAVDESS, EmoDB, speechsex, CREMA-D, TESS, SAVEE.
    #[arg(long, env = "EMOTION_AI_RAVDESS", required = true)]
    data: Vec<PathBuf>,
    /// Corpus to keep out of training and epoch choice (repeatable): `emodb`, `speechsex`, `ravdess`, ...
    #[arg(long)]
    leave_out: Vec<String>,
    /// Clips without an emotion (speechsex, EmoDB boredom) drawn each epoch.
    #[arg(long, default_value_t = voice_emotion::DEFAULT_SEX_ONLY_PER_EPOCH)]
    sex_only_per_epoch: usize,
    /// Random windows of every clip with an emotion in each epoch (each its own augmentation): 2 keeps their
    /// share of an epoch with twice the sex-only clips.
    #[arg(long, default_value_t = 1)]
    emotion_windows_per_epoch: usize,
    /// Spectral rows of the input: 40 log-mel bands (the shipped model) or 40 MFCCs (the model before it).
    #[arg(long, value_enum, default_value_t = VoiceFeatures::LogMel)]
    features: VoiceFeatures,
    /// Each 3 s window's mean of every spectral row: removed (the shipped model: the microphone, line and level
    /// drop out) or kept (the speaker's long-term spectrum, and the channel's, stay in).
    #[arg(long, value_enum, default_value_t = WindowMean::Remove)]
    window_mean: WindowMean,
    /// Measure, choose and export a moving average of the weights with this decay per step (e.g. 0.995)
    /// rather than the raw weights: its validation score moves less from epoch to epoch.
    #[arg(long, value_parser = decay_in_unit_interval)]
    weight_average: Option<f64>,
    /// Largest shift, in octaves either way, of the pitch row of half the training windows (the spectrum
    /// left alone), so that sex rests on more than F0; 0 (the shipped model) turns it off.
    #[arg(long, default_value_t = 0.0, value_parser = octaves_up_to_one)]
    f0_shift: f32,
    /// Largest shift, in octaves either way, of the pitch of half the training windows' audio, formants and
    /// tempo kept (TD-PSOLA), so that sex rests on the vocal tract rather than F0; 0 (the shipped model) turns
    /// it off.
    #[arg(long, default_value_t = 0.0, value_parser = octaves_up_to_one)]
    pitch_shift: f32,
    /// Largest relative speed change of the training windows (0.15: 0.85-1.15, the shipped model), which moves
    /// pitch, formants and tempo together; 0 turns it off.
    #[arg(long, default_value_t = 0.15, value_parser = speed_range)]
    speed: f64,
    /// Most consecutive spectral bands of half the training windows masked (set to the training mean), so the
    /// network spreads what it hears over the spectrum; 0 (the shipped model) turns it off. At most 20.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u16).range(0..=20))]
    freq_mask: u16,
    /// Mixup of every training batch's rows in pairs, weights from Beta(ALPHA, ALPHA) (e.g. 0.2); 0 (the
    /// shipped model) turns it off. At most 1.
    #[arg(long, default_value_t = 0.0, value_parser = mixup_alpha)]
    mixup: f32,
    /// Share of training windows cut as a short excerpt (1-2.5 s of the clip's speech) repeated to fill the
    /// window, as a clip that short is served; 0 (the shipped model) turns it off. At most 1.
    #[arg(long, default_value_t = 0.0, value_parser = share_of_windows)]
    short_excerpts: f64,
    /// Directory for checkpoints and the run's state.
    #[arg(long, default_value = "runs/voice-emotion")]
    run_dir: PathBuf,
    /// Continue the run in --run-dir after its last finished epoch.
    #[arg(long)]
    resume: bool,
    /// Where to write the best weights (the card goes beside them).
    #[arg(long, default_value = "models/voice_emotion.safetensors")]
    export: PathBuf,
    #[arg(long, default_value_t = voice_emotion::default_options().epochs)]
    epochs: usize,
    #[arg(long, default_value_t = voice_emotion::default_options().batch_size)]
    batch_size: i64,
    /// Peak learning rate (AdamW).
    #[arg(long, default_value_t = voice_emotion::default_options().lr)]
    lr: f64,
    #[arg(long, default_value_t = voice_emotion::default_options().seed)]
    seed: i64,
    /// Intra-op threads for libtorch (default: all cores).
    #[arg(long)]
    threads: Option<i32>,
}

#[derive(Args)]
struct EvalVoiceEmotion {
    /// Corpus directory (repeatable): RAVDESS, EmoDB, speechsex, ...
    #[arg(long, env = "EMOTION_AI_RAVDESS", required = true)]
    data: Vec<PathBuf>,
    /// Corpus to measure whole, as one the model never heard (repeatable);
    /// refused if the model trained on it. Corpora absent from the card's
    /// `training_corpora` are always measured whole.
    #[arg(long)]
    leave_out: Vec<String>,
    #[arg(long, default_value = "models/voice_emotion.safetensors")]
    weights: PathBuf,
    /// The voice sex head whose sex the server serves (as its card blends it with the network's); "none" measures the network's own sex marginal.
    #[arg(long, default_value = "models/voice_sex.safetensors")]
    voice_sex_model: String,
    /// The speaker encoder under the voice sex head (scripts/setup.sh installs it).
    #[arg(long, env = "EMOTION_AI_SPEAKER_ENCODER", default_value = emotion_ai::model::speaker::DEFAULT_SPEAKER_ENCODER)]
    speaker_encoder: PathBuf,
    /// Where the confusion matrices (JSON and PNG) are written.
    #[arg(long, default_value = "target/eval")]
    out: PathBuf,
    /// Record the measured metrics in the model card.
    #[arg(long)]
    write_card: bool,
    /// Also record the figures of the --leave-out corpora in this card (the
    /// shipped model's `models/voice_emotion.json`), under
    /// `metrics.never_heard`, with this command: what the recipe does on a
    /// corpus it never heard, beside the shipped figures.
    #[arg(long, requires = "leave_out")]
    record_never_heard: Option<PathBuf>,
}

#[derive(Args)]
struct TrainFaceEmotion {
    /// FER2013: the image-folder release (train/, test/) or a directory holding fer2013.csv.
    #[arg(long, env = "EMOTION_AI_FER2013")]
    data: PathBuf,
    /// Directory for checkpoints and the run's state.
    #[arg(long, default_value = "runs/face-emotion")]
    run_dir: PathBuf,
    /// Continue the run in --run-dir after its last finished epoch.
    #[arg(long)]
    resume: bool,
    /// Where to write the best weights (the card goes beside them).
    #[arg(long, default_value = "models/face_emotion.safetensors")]
    export: PathBuf,
    /// Share of each training target given to the FER+ votes
    /// (<data>/ferplus/votes.csv); the rest stays on FER2013's label. 0 = labels only.
    #[arg(long, default_value_t = 0.0)]
    ferplus_weight: f64,
    /// Start from these weights (fine-tuning), e.g. models/face_emotion.safetensors.
    #[arg(long)]
    init_from: Option<PathBuf>,
    #[arg(long, default_value_t = TrainOptions::default().epochs)]
    epochs: usize,
    #[arg(long, default_value_t = TrainOptions::default().batch_size)]
    batch_size: i64,
    /// Peak learning rate.
    #[arg(long, default_value_t = TrainOptions::default().lr)]
    lr: f64,
    #[arg(long, default_value_t = TrainOptions::default().seed)]
    seed: i64,
    /// Intra-op threads for libtorch (default: all cores).
    #[arg(long)]
    threads: Option<i32>,
}

#[derive(Args)]
struct EvalFaceEmotion {
    #[arg(long, env = "EMOTION_AI_FER2013")]
    data: PathBuf,
    #[arg(long, default_value = "models/face_emotion.safetensors")]
    weights: PathBuf,
    /// Where the confusion matrix (JSON and PNG) is written.
    #[arg(long, default_value = "target/eval")]
    out: PathBuf,
    /// Record the measured metrics in the model card.
    #[arg(long)]
    write_card: bool,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tower_http=info,symphonia=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args)?,
        Command::Predict(args) => predict(args)?,
        Command::Train(TrainCommand::FaceEmotion(args)) => {
            let options =
                train_options(TrainOptions::default(), args.epochs, args.batch_size, args.lr, args.seed, args.threads);
            let request = face_emotion::TrainRequest {
                data: args.data,
                run_dir: args.run_dir,
                resume: args.resume,
                export: args.export,
                options,
                ferplus_weight: args.ferplus_weight,
                init_from: args.init_from,
            };
            let card = face_emotion::run_train(&request)?;
            println!("{}", serde_json::to_string_pretty(&card.metrics)?);
        }
        Command::Train(TrainCommand::VoiceEmotion(args)) => {
            let options = train_options(
                voice_emotion::default_options(),
                args.epochs,
                args.batch_size,
                args.lr,
                args.seed,
                args.threads,
            );
            let request = voice_emotion::VoiceTrainRequest {
                data: args.data,
                leave_out: args.leave_out,
                run_dir: args.run_dir,
                resume: args.resume,
                export: args.export,
                options,
                augment: emotion_ai::train::voice_augment::VoiceAugment {
                    f0_shift: args.f0_shift,
                    pitch_shift: args.pitch_shift,
                    speed: args.speed,
                    freq_mask: usize::from(args.freq_mask),
                    mixup: args.mixup,
                    short_excerpt: args.short_excerpts,
                    ..emotion_ai::train::voice_augment::VoiceAugment::channel_robust()
                },
                input: voice_emotion::RunInput {
                    features: match args.features {
                        VoiceFeatures::Mfcc => MfccConfig::voice(),
                        VoiceFeatures::LogMel => MfccConfig::voice_log_mel(),
                    },
                    cmn: matches!(args.window_mean, WindowMean::Remove),
                },
                sex_only_per_epoch: args.sex_only_per_epoch,
                emotion_windows_per_epoch: args.emotion_windows_per_epoch,
                weight_average: args.weight_average,
            };
            let card = voice_emotion::run_train(&request, &VoiceNetConfig::emotion_sex_pitch())?;
            println!("{}", serde_json::to_string_pretty(&card.metrics)?);
        }
        Command::Train(TrainCommand::SpeechCheck(args)) => {
            let card =
                emotion_ai::train::speech_check::run_train(&emotion_ai::train::speech_check::SpeechCheckRequest {
                    data: args.data,
                    export: args.export,
                    negatives: args.negatives,
                    seed: args.seed,
                    hidden: args.hidden,
                    vad: args.silero_vad,
                    vad_gate: args.vad_gate,
                    gate_negatives: args.gate_negatives,
                    measure_seed: args.measure_seed,
                    max_speech_refused: args.max_speech_refused,
                    background_copies: args.background_copies,
                })?;
            println!("threshold {:.4}", card.threshold);
            println!("{}", serde_json::to_string_pretty(&card.metrics)?);
        }
        Command::Train(TrainCommand::VoiceSex(args)) => {
            let card = emotion_ai::train::voice_sex::run_train(&emotion_ai::train::voice_sex::VoiceSexRequest {
                data: args.data,
                encoder: args.speaker_encoder,
                export: args.export,
                head_weight: args.head_weight as f32,
                short_copies: args.short_copies,
                seed: args.seed,
                pitch_summary: args.pitch_summary,
            })?;
            println!("{}", serde_json::to_string_pretty(&card.metrics)?);
        }
        Command::Train(TrainCommand::FaceSexHead(args)) => {
            let request = emotion_ai::train::face_sex_head::FaceSexHeadRequest {
                data: args.data,
                finder: args.finder.finder()?,
                network: args.network,
                embedder: args.face_embedder,
                margin: args.margin,
                head_weight: args.head_weight as f32,
                mirror: args.mirror,
                network_mirror: args.network_mirror,
                input_size: args.input_size,
                min_age: args.min_age,
                tune: emotion_ai::train::face_sex_head::TailTuning {
                    blocks: args.tune_blocks,
                    epochs: args.tune_epochs,
                    lr: args.tune_lr,
                    seed: args.seed,
                },
                export: args.export,
            };
            let card = emotion_ai::train::face_sex_head::run_train(&request)?;
            println!("{}", serde_json::to_string_pretty(&card.metrics)?);
        }
        Command::Train(TrainCommand::VoiceEnsemble(args)) => {
            let card = emotion_ai::train::voice_emotion::merge_ensemble(&args.members, &args.out)?;
            println!(
                "wrote {} ({} members, {} parameters); measure it with: {}",
                args.out.display(),
                card.ensemble.len() + 1,
                card.params,
                card.eval_command
            );
        }
        Command::Train(TrainCommand::FaceEmotionInterpolate(args)) => {
            face_emotion::interpolate(&args.base, &args.tuned, args.weight, &args.out)?;
            println!(
                "wrote {}; measure it with: emotion-ai eval face-emotion --data <FER2013> --weights {}",
                args.out.display(),
                args.out.display()
            );
        }
        Command::Train(TrainCommand::FaceSex(args)) => {
            let options = train_options(
                face_sex::default_options(),
                args.epochs,
                args.batch_size,
                args.lr,
                args.seed,
                args.threads,
            );
            let request = face_sex::FaceSexTrainRequest {
                data: args.data,
                finder: args.finder.finder()?,
                run_dir: args.run_dir,
                resume: args.resume,
                export: args.export,
                init_from: model_or_none(&args.init_from),
                input_size: args.input_size,
                margin: args.margin,
                options,
            };
            let card = face_sex::run_train(&request)?;
            println!("{}", serde_json::to_string_pretty(&card.metrics)?);
        }
        Command::Train(TrainCommand::FaceVerifier(args)) => {
            let options = train_options(
                face_verifier::default_options(),
                args.epochs,
                args.batch_size,
                args.lr,
                args.seed,
                args.threads,
            );
            let request = face_verifier::VerifierTrainRequest {
                fer2013: args.fer2013,
                utkface: args.utkface,
                negatives: args.negatives,
                cascade: args.cascade,
                run_dir: args.run_dir,
                resume: args.resume,
                export: args.export,
                options,
            };
            let card = face_verifier::run_train(&request)?;
            println!("{}", serde_json::to_string_pretty(&card.metrics)?);
        }
        Command::Eval(EvalCommand::FaceSex(args)) => {
            let part = if args.part == "test" { Part::Test } else { Part::Validation };
            let finder = args.finder.finder()?;
            let head = model_or_none(&args.face_sex_head_model)
                .map(|weights| emotion_ai::model::face_embedder::FaceSexHeadModel::load(&weights, &args.face_embedder))
                .transpose()?;
            let r = face_sex::run_eval(
                &args.data,
                &finder,
                &args.weights,
                head.as_ref(),
                &args.out,
                part,
                args.write_card,
            )?;
            println!("UTKFace {} part (split seed {}): {} faces", args.part, face_sex::SPLIT_SEED, r.faces);
            println!("accuracy: {:.2}%", r.accuracy * 100.0);
            println!("adults (18+, {} faces): {:.2}%", r.adults, r.adult_accuracy * 100.0);
            println!("faces {} found: {:.2}%", finder.describe(), r.detected_accuracy * 100.0);
            println!("recall: {}", serde_json::Value::Object(r.recall));
            println!("adults' recall: {}", serde_json::Value::Object(r.adult_recall));
            for race in &r.adults_by_race {
                println!("adults, {}: {:.2}% of {}", race.race, race.accuracy * 100.0, race.faces);
            }
            print_calibration(&r.calibration);
            println!("confusion matrix: {} and {}", r.json_path.display(), r.png_path.display());
        }
        Command::Eval(EvalCommand::VoiceEmotion(args)) => {
            let sex_head = model_or_none(&args.voice_sex_model)
                .map(|weights| emotion_ai::model::speaker::SpeakerSexModel::load(&weights, &args.speaker_encoder))
                .transpose()?;
            if let Some(card) = &args.record_never_heard {
                // Fail before the long measurement, not after it.
                emotion_ai::model::voice::VoiceModelCard::load(card)?;
            }
            let report = voice_emotion::run_eval(
                &args.data,
                &args.weights,
                sex_head.as_ref(),
                &args.leave_out,
                &args.out,
                args.write_card,
            )?;
            if let Some(card) = &args.record_never_heard {
                let command: Vec<String> =
                    std::iter::once("emotion-ai".to_string()).chain(std::env::args().skip(1)).collect();
                voice_emotion::record_never_heard(card, &report, &args.leave_out, &command.join(" "))?;
                println!("recorded {} never heard in {}", args.leave_out.join(", "), card.display());
            }
            let percent = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{:.2}%", v * 100.0));
            println!("| corpus | test clips | speakers | emotion accuracy | balanced | sex accuracy | women | men |");
            println!("|---|---|---|---|---|---|---|---|");
            for c in &report.corpora {
                let what = if c.seen_in_training { "held-out speakers" } else { "never heard" };
                println!(
                    "| {} ({what}) | {} ({} with emotions) | {} | {} | {} | {} | {} | {} |",
                    c.corpus,
                    c.clips,
                    c.emotion_clips,
                    c.speakers,
                    percent(c.emotion7_accuracy),
                    percent(c.emotion7_balanced_accuracy),
                    percent(Some(c.sex_accuracy)),
                    percent(Some(c.female_accuracy)),
                    percent(Some(c.male_accuracy)),
                );
            }
            for c in &report.corpora {
                if let Some(m) = &c.confusion_emotion7 {
                    println!(
                        "\n{} emotion confusion (rows true, columns predicted: {}):",
                        c.corpus,
                        m.classes.join(" ")
                    );
                    for (class, row) in m.classes.iter().zip(&m.counts) {
                        if row.iter().sum::<u64>() > 0 {
                            println!("  {class:>8}: {row:?}");
                        }
                    }
                }
                if !c.unlabelled_heard_as.is_empty() {
                    println!("  clips without a FER emotion heard as: {:?}", c.unlabelled_heard_as);
                }
            }
            if let Some(a) = report.ravdess_class14_accuracy {
                println!("\nRAVDESS 14-class accuracy: {:.2}%", a * 100.0);
            }
            if let Some(c) = &report.emotion7_calibration {
                print_calibration(c);
            }
            let pngs: Vec<String> = report.png_paths.iter().map(|p| p.display().to_string()).collect();
            println!("confusion matrices: {} and {}", report.json_path.display(), pngs.join(", "));
        }
        Command::Eval(EvalCommand::Mixed(args)) => {
            let report = emotion_ai::train::mixed_eval::run(&emotion_ai::train::mixed_eval::MixedEvalRequest {
                fer2013: args.fer2013,
                ravdess: args.ravdess,
                face_weights: args.face_weights,
                voice_weights: args.voice_weights,
                write_card: args.write_card,
            })?;
            for (model, rows, chosen) in
                [("face", &report.face, &report.face_margin), ("voice", &report.voice, &report.voice_margin)]
            {
                println!("{model}: gap below   answers   first right   one of two right");
                for r in rows.iter().filter(|r| ((r.margin * 100.0).round() as u32).is_multiple_of(5)) {
                    println!(
                        "      {:>9.2} {:>9} {:>12.1}% {:>17.1}%",
                        r.margin,
                        r.within,
                        100.0 * r.top1_accuracy,
                        100.0 * r.top2_accuracy
                    );
                }
                println!("{model}: chosen margin {}", serde_json::to_string(chosen)?);
            }
        }
        Command::Eval(EvalCommand::Fusion(args)) => {
            let report = fusion_eval::run_eval(&fusion_eval::FusionEvalRequest {
                fer2013: args.fer2013,
                ravdess: args.ravdess,
                face_weights: args.face_weights,
                voice_weights: args.voice_weights,
                validation: args.part == "validation",
                rounds: args.rounds,
                seed: args.seed,
                out_dir: args.out,
            })?;
            println!(
                "{} pseudo-pairs: {} faces of {} x {} clips of {} (temperatures: face {:.3}, voice {:.3})",
                report.pairs,
                report.faces,
                report.face_split,
                report.clips,
                report.voice_split,
                report.face_temperature,
                report.voice_temperature
            );
            println!("{:<52} {:>9} {:>9} {:>7} {:>7}", "rule", "accuracy", "balanced", "ECE", "NLL");
            for r in &report.rules {
                println!(
                    "{:<52} {:>8.2}% {:>8.2}% {:>6.2}% {:>7.4}",
                    r.rule,
                    r.accuracy * 100.0,
                    r.balanced_accuracy * 100.0,
                    r.ece * 100.0,
                    r.nll
                );
            }
            println!("report: {}", report.json_path.display());
        }
        Command::Eval(EvalCommand::FaceEmotion(args)) => {
            let report = face_emotion::run_eval(&args.data, &args.weights, &args.out, args.write_card)?;
            println!("FER2013 PrivateTest accuracy: {:.2}%", report.accuracy * 100.0);
            println!("balanced accuracy (mean recall): {:.2}%", report.balanced_accuracy * 100.0);
            println!("per-class recall: {}", serde_json::Value::Object(report.per_class_recall));
            if let Some(score) = &report.without_near_copies {
                println!(
                    "without the near-copies of training faces ({} faces): {:.2}%",
                    score.faces,
                    score.accuracy * 100.0
                );
            }
            if let Some(score) = report.ferplus_majority {
                println!(
                    "against the FER+ majority ({} faces): {:.2}% (balanced {:.2}%), per-class recall {}",
                    score.faces,
                    score.accuracy * 100.0,
                    score.balanced_accuracy * 100.0,
                    serde_json::Value::Object(score.per_class_recall)
                );
            }
            print_calibration(&report.calibration);
            print!("PublicTest (chooses; not a test figure): {:.2}%", report.public_test.accuracy * 100.0);
            match &report.public_test_ferplus_majority {
                Some(score) => println!(", {:.2}% against the FER+ majority", score.accuracy * 100.0),
                None => println!(),
            }
            println!("confusion matrix: {} and {}", report.json_path.display(), report.png_path.display());
        }
    }
    Ok(())
}

/// A task's default options with the command line's overrides; sets
/// libtorch's thread count when asked.
fn train_options(
    defaults: TrainOptions,
    epochs: usize,
    batch_size: i64,
    lr: f64,
    seed: i64,
    threads: Option<i32>,
) -> TrainOptions {
    if let Some(n) = threads {
        tch::set_num_threads(n);
    }
    TrainOptions { epochs, batch_size, lr, seed, ..defaults }
}

fn serve(args: ServeArgs) -> Result<()> {
    let started = Instant::now();
    // One libtorch thread per network call: requests, and the independent
    // parts of one request, run side by side instead of each splitting every
    // convolution over both cores (measured in BENCHMARKS.md).
    tch::set_num_threads(1);
    let workers = args.workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).max(1);
    let analyzer = Arc::new(Analyzer::load(args.models.analyzer_config(workers))?);
    let limits = ServerLimits {
        max_upload_bytes: args.max_upload_mib * 1024 * 1024,
        workers,
        queue: args.queue,
        queue_timeout: ServerLimits::default().queue_timeout,
        request_timeout: Duration::from_secs(args.request_timeout_secs.max(1)),
        upload_timeout: Duration::from_secs(args.upload_timeout_secs.max(1)),
        header_timeout: Duration::from_secs(args.header_timeout_secs.max(1)),
        max_connections: web::connection_cap(args.max_connections),
        upload_budget_bytes: args.upload_budget_mib.max(args.max_upload_mib) * 1024 * 1024,
    };
    let missing = emotion_ai::web::samples::missing_samples(&args.assets_dir);
    if !missing.is_empty() {
        anyhow::bail!(
            "{} lacks {} cross-modal samples ({}, ...): run python3 scripts/make_samples.py",
            args.assets_dir.display(),
            missing.len(),
            missing[0]
        );
    }
    let state = AppState::new(analyzer, limits, args.static_dir, args.assets_dir);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener =
            tokio::net::TcpListener::bind(args.addr).await.with_context(|| format!("binding {}", args.addr))?;
        tracing::info!(
            addr = %listener.local_addr()?,
            workers,
            ready_ms = started.elapsed().as_millis() as u64,
            "emotion-ai listening: open http://{}/",
            listener.local_addr()?
        );
        web::serve(listener, state, web::shutdown_signal()).await?;
        Ok(())
    })
}

fn predict(args: PredictArgs) -> Result<()> {
    let files = batch::collect_inputs(&args.paths);
    if files.is_empty() {
        anyhow::bail!("no files found under {:?}", args.paths);
    }
    let jobs = args.jobs.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get())).max(1);
    let analyzer = Analyzer::load(args.models.analyzer_config(jobs))?;
    // Each worker runs libtorch single-threaded: parallelism comes from files.
    tch::set_num_threads(1);
    let format = if args.format == "csv" { batch::Format::Csv } else { batch::Format::JsonLines };
    let out: Box<dyn std::io::Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut writer = batch::RowWriter::new(out, format);
    // indicatif draws only when standard error is a terminal.
    let bar = indicatif::ProgressBar::new(files.len() as u64).with_style(indicatif::ProgressStyle::with_template(
        "{bar:30} {pos}/{len} files, {elapsed_precise}, eta {eta_precise} {msg}",
    )?);
    let options = batch::Options {
        timeline: args.timeline,
        faces: if args.whole_image_face { FaceSource::WholeImage } else { FaceSource::Detect },
    };
    let summary = batch::run(&analyzer, &files, jobs, options, &mut writer, |path| {
        bar.set_message(path.display().to_string());
        bar.inc(1);
    })?;
    bar.finish_and_clear();
    tracing::info!(
        files = summary.files,
        analysed = summary.analysed,
        failed = summary.failed,
        rows = summary.rows,
        "batch done"
    );
    if summary.analysed == 0 {
        anyhow::bail!("none of the {} files could be analysed (see the error rows)", summary.files);
    }
    Ok(())
}

/// One line on a model's calibration.
fn print_calibration(c: &emotion_ai::train::metrics::CalibrationSummary) {
    println!(
        "expected calibration error ({} bins): {:.2}% as given, {:.2}% after temperature {:.3} (fitted on {}); \
         NLL {:.4} -> {:.4}",
        emotion_ai::train::metrics::ECE_BINS,
        c.raw.ece * 100.0,
        c.calibrated.ece * 100.0,
        c.temperature,
        c.fitted_on,
        c.raw.nll,
        c.calibrated.nll
    );
}
