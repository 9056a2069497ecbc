//! Speech corpora by their standard file names: RAVDESS, Berlin EmoDB and
//! the speechsex read-speech collection, and for users who have them
//! CREMA-D, TESS and SAVEE.
//!
//! Labels are mapped onto the 7 FER emotions (RAVDESS's calm is merged into
//! neutral; TESS's "pleasant surprise" is surprise) and a speaker sex. A clip
//! may carry a sex only (speechsex has no emotions; EmoDB's boredom has no
//! FER-style class): it then trains the sex part of the network alone and is
//! left out of emotion scores.
//!
//! | corpus | file name | sex from |
//! |---|---|---|
//! | RAVDESS | `03-01-EE-II-SS-RR-AA.wav` (audio-only speech) | actor parity: odd male |
//! | EmoDB | `SSTTTEV.wav`, e.g. `03a01Wa` (speaker, text, emotion letter, version) | the speaker list |
//! | speechsex | `<corpus>/<speaker>/<utterance>.ogg` beside a `speakers.tsv` | `speakers.tsv` (`corpus, speaker, sex, age`) |
//! | CREMA-D | `1001_DFA_ANG_XX.wav` | `VideoDemographics.csv` (`ActorID`, `Sex`) |
//! | TESS | `OAF_back_angry.wav`, `YAF_dog_ps.wav` | female (both speakers) |
//! | SAVEE | `DC_a01.wav`, or `a01.wav` in a speaker folder `DC/` | male (all four) |
//!
//! Speaker ids carry the corpus (`ravdess:12`) so splits by speaker never
//! mix corpora up.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::decode::audio::decode_audio;
use crate::model::voice::{joint_class, SEXES};
use crate::model::EMOTIONS;

/// Index of an emotion name in [`EMOTIONS`].
fn emotion(name: &str) -> usize {
    EMOTIONS.iter().position(|e| *e == name).unwrap_or_else(|| panic!("unknown emotion {name}"))
}

const FEMALE: usize = 0;
const MALE: usize = 1;

/// What a file name says about a clip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoiceLabel {
    /// Index into [`EMOTIONS`]; `None` where the corpus has no emotion for
    /// the clip (sex-only labels).
    pub emotion: Option<usize>,
    /// Index into [`SEXES`].
    pub sex: usize,
    /// Corpus-qualified speaker id, e.g. `ravdess:12`.
    pub speaker: String,
}

impl VoiceLabel {
    /// The joint emotion x sex class, when the emotion is known.
    pub fn class(&self) -> Option<usize> {
        self.emotion.map(|e| joint_class(e, self.sex))
    }

    /// The corpus, the part of the speaker id before `:` (`ravdess`, `emodb`,
    /// `speechsex`, ...).
    pub fn corpus(&self) -> &str {
        self.speaker.split_once(':').map_or(self.speaker.as_str(), |(corpus, _)| corpus)
    }

    /// Where the recording comes from: for a corpus gathered from several
    /// (speechsex), the corpus and the source (`speechsex:audiomnist_az`),
    /// whose recordings can differ far more than the corpus's speakers do;
    /// otherwise the corpus.
    pub fn source(&self) -> &str {
        self.speaker.split_once('/').map_or(self.corpus(), |(source, _)| source)
    }
}

/// RAVDESS `MM-VV-EE-II-SS-RR-AA.ext`; only audio-only (03) speech (01).
pub fn parse_ravdess(stem: &str) -> Option<VoiceLabel> {
    let fields: Vec<u32> = stem.split('-').map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let [modality, channel, code, _, _, _, actor] = fields[..] else { return None };
    if modality != 3 || channel != 1 || !(1..=24).contains(&actor) {
        return None;
    }
    let name = match code {
        1 | 2 => "neutral", // calm merged into neutral
        3 => "happy",
        4 => "sad",
        5 => "angry",
        6 => "fear",
        7 => "disgust",
        8 => "surprise",
        _ => return None,
    };
    let sex = if actor % 2 == 1 { MALE } else { FEMALE };
    Some(VoiceLabel { emotion: Some(emotion(name)), sex, speaker: format!("ravdess:{actor}") })
}

/// CREMA-D `AAAA_SSS_EEE_II`; the actor's sex comes from `VideoDemographics.csv`.
pub fn parse_crema(stem: &str, sexes: &HashMap<String, usize>) -> Option<VoiceLabel> {
    let parts: Vec<&str> = stem.split('_').collect();
    let [actor, _sentence, code, _level] = parts[..] else { return None };
    if actor.len() != 4 || !actor.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let name = match code {
        "ANG" => "angry",
        "DIS" => "disgust",
        "FEA" => "fear",
        "HAP" => "happy",
        "NEU" => "neutral",
        "SAD" => "sad",
        _ => return None,
    };
    let sex = *sexes.get(actor)?;
    Some(VoiceLabel { emotion: Some(emotion(name)), sex, speaker: format!("crema:{actor}") })
}

/// Reads CREMA-D's `VideoDemographics.csv` (`ActorID,Age,Sex,Race,Ethnicity`).
pub fn parse_crema_demographics(csv: &str) -> Result<HashMap<String, usize>> {
    let mut lines = csv.lines();
    let header: Vec<String> =
        lines.next().unwrap_or_default().split(',').map(|h| h.trim().trim_matches('"').to_string()).collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (Some(id_col), Some(sex_col)) = (col("ActorID"), col("Sex")) else {
        bail!("VideoDemographics.csv has no ActorID and Sex columns");
    };
    let mut sexes = HashMap::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split(',').map(|c| c.trim().trim_matches('"')).collect();
        let (Some(id), Some(sex)) = (cells.get(id_col), cells.get(sex_col)) else { continue };
        let sex = match sex.to_ascii_lowercase().as_str() {
            "male" => MALE,
            "female" => FEMALE,
            _ => continue,
        };
        sexes.insert(id.to_string(), sex);
    }
    Ok(sexes)
}

/// TESS `OAF_word_emotion` / `YAF_word_emotion` (both speakers are women).
pub fn parse_tess(stem: &str) -> Option<VoiceLabel> {
    let lower = stem.to_ascii_lowercase();
    let (speaker, rest) = lower.split_once('_')?;
    if speaker != "oaf" && speaker != "yaf" {
        return None;
    }
    // `word_emotion`: a bare `OAF_Fear` is a folder name, not a clip.
    let (_word, code) = rest.rsplit_once('_')?;
    let name = match code {
        "angry" => "angry",
        "disgust" => "disgust",
        "fear" => "fear",
        "happy" => "happy",
        "neutral" => "neutral",
        "ps" | "surprise" => "surprise",
        "sad" => "sad",
        _ => return None,
    };
    Some(VoiceLabel { emotion: Some(emotion(name)), sex: FEMALE, speaker: format!("tess:{}", speaker.to_uppercase()) })
}

/// SAVEE `DC_a01` (or `a01` inside a folder named after the speaker); all
/// four speakers are men.
pub fn parse_savee(stem: &str, folder: &str) -> Option<VoiceLabel> {
    let (speaker, code) = match stem.split_once('_') {
        Some((speaker, code)) => (speaker, code),
        None => (folder, stem),
    };
    if !matches!(speaker, "DC" | "JE" | "JK" | "KL") {
        return None;
    }
    let letters: String = code.chars().take_while(|c| c.is_ascii_alphabetic()).collect();
    let digits = &code[letters.len()..];
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let name = match letters.as_str() {
        "a" => "angry",
        "d" => "disgust",
        "f" => "fear",
        "h" => "happy",
        "n" => "neutral",
        "sa" => "sad",
        "su" => "surprise",
        _ => return None,
    };
    Some(VoiceLabel { emotion: Some(emotion(name)), sex: MALE, speaker: format!("savee:{speaker}") })
}

/// EmoDB's male speakers (the others, 08 09 13 14 16, are women).
pub const EMODB_MALE_SPEAKERS: [u32; 5] = [3, 10, 11, 12, 15];
/// EmoDB's ten speakers.
pub const EMODB_SPEAKERS: [u32; 10] = [3, 8, 9, 10, 11, 12, 13, 14, 15, 16];

/// EmoDB `SSTTTEV`: speaker (2 digits), text (`a01`..`b10`), emotion letter,
/// version letter. Boredom (`L`) has no FER-style class: a sex-only label.
pub fn parse_emodb(stem: &str) -> Option<VoiceLabel> {
    let bytes = stem.as_bytes();
    if bytes.len() != 7
        || !bytes[..2].iter().all(u8::is_ascii_digit)
        || !matches!(bytes[2], b'a' | b'b')
        || !bytes[3..5].iter().all(u8::is_ascii_digit)
        || !bytes[6].is_ascii_lowercase()
    {
        return None;
    }
    let speaker: u32 = stem[..2].parse().ok()?;
    if !EMODB_SPEAKERS.contains(&speaker) {
        return None;
    }
    let name = match bytes[5] {
        b'W' => Some("angry"),
        b'E' => Some("disgust"),
        b'A' => Some("fear"),
        b'F' => Some("happy"),
        b'T' => Some("sad"),
        b'N' => Some("neutral"),
        b'L' => None, // boredom
        _ => return None,
    };
    let sex = if EMODB_MALE_SPEAKERS.contains(&speaker) { MALE } else { FEMALE };
    Some(VoiceLabel { emotion: name.map(emotion), sex, speaker: format!("emodb:{speaker:02}") })
}

/// Speaker sexes of the speechsex collection, keyed by `(corpus, speaker)`,
/// from its `speakers.tsv` (`corpus<TAB>speaker<TAB>sex<TAB>age`, sex `F`/`M`).
pub fn parse_speechsex_speakers(tsv: &str) -> Result<HashMap<(String, String), usize>> {
    let mut lines = tsv.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split('\t').map(str::trim).collect();
    let col = |name: &str| header.iter().position(|h| *h == name);
    let (Some(corpus_col), Some(speaker_col), Some(sex_col)) = (col("corpus"), col("speaker"), col("sex")) else {
        bail!("speakers.tsv has no corpus, speaker and sex columns");
    };
    let mut sexes = HashMap::new();
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let cells: Vec<&str> = line.split('\t').map(str::trim).collect();
        let (Some(corpus), Some(speaker), Some(sex)) =
            (cells.get(corpus_col), cells.get(speaker_col), cells.get(sex_col))
        else {
            continue;
        };
        let sex = match *sex {
            "M" | "m" => MALE,
            "F" | "f" => FEMALE,
            _ => continue,
        };
        sexes.insert((corpus.to_string(), speaker.to_string()), sex);
    }
    Ok(sexes)
}

/// A speechsex clip `<corpus>/<speaker>/<utterance>`: a sex-only label,
/// speaker `speechsex:<corpus>/<speaker>`.
pub fn parse_speechsex(path: &Path, sexes: &HashMap<(String, String), usize>) -> Option<VoiceLabel> {
    let speaker = path.parent()?;
    let corpus = speaker.parent()?.file_name()?.to_str()?;
    let speaker = speaker.file_name()?.to_str()?;
    let sex = *sexes.get(&(corpus.to_string(), speaker.to_string()))?;
    Some(VoiceLabel { emotion: None, sex, speaker: format!("speechsex:{corpus}/{speaker}") })
}

/// Labels a file by whichever corpus its name fits.
pub fn label_for(path: &Path, tables: &SpeakerTables) -> Option<VoiceLabel> {
    let stem = path.file_stem()?.to_str()?;
    let folder = path.parent().and_then(|p| p.file_name()).and_then(|f| f.to_str()).unwrap_or("");
    parse_ravdess(stem)
        .or_else(|| parse_speechsex(path, &tables.speechsex))
        .or_else(|| parse_emodb(stem))
        .or_else(|| parse_crema(stem, &tables.crema))
        .or_else(|| parse_tess(stem))
        .or_else(|| parse_savee(stem, folder))
}

/// Speaker tables found beside the clips: CREMA-D's demographics and
/// speechsex's speaker list.
#[derive(Debug, Clone, Default)]
pub struct SpeakerTables {
    pub crema: HashMap<String, usize>,
    pub speechsex: HashMap<(String, String), usize>,
}

/// One decoded, labelled clip.
#[derive(Debug, Clone)]
pub struct VoiceClip {
    /// Mono samples at the model's rate.
    pub samples: Vec<f32>,
    pub label: VoiceLabel,
    pub path: PathBuf,
}

const AUDIO_EXTENSIONS: [&str; 6] = ["wav", "flac", "mp3", "ogg", "m4a", "aac"];

/// Every labelled clip under `dirs` (recursively), decoded to mono at
/// `sample_rate`. A `VideoDemographics.csv` anywhere under them enables
/// CREMA-D, a `speakers.tsv` the speechsex layout. Files whose names fit no
/// corpus are counted and skipped; files that fail to decode are an error (a
/// damaged dataset should be noticed).
pub fn load_clips(dirs: &[PathBuf], sample_rate: u32) -> Result<Vec<VoiceClip>> {
    let mut files = Vec::new();
    let mut tables = SpeakerTables::default();
    for dir in dirs {
        if !dir.is_dir() {
            bail!("{} is not a directory", dir.display());
        }
        for entry in walkdir::WalkDir::new(dir).follow_links(true).sort_by_file_name() {
            let entry = entry.with_context(|| format!("walking {}", dir.display()))?;
            let path = entry.into_path();
            let ext = path.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase());
            if path.file_name().is_some_and(|n| n == "VideoDemographics.csv") {
                tables.crema.extend(parse_crema_demographics(&std::fs::read_to_string(&path)?)?);
            } else if path.file_name().is_some_and(|n| n == "speakers.tsv") {
                tables.speechsex.extend(parse_speechsex_speakers(&std::fs::read_to_string(&path)?)?);
            } else if ext.is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.as_str())) {
                files.push(path);
            }
        }
    }
    let labelled: Vec<(PathBuf, VoiceLabel)> =
        files.iter().filter_map(|path| Some((path.clone(), label_for(path, &tables)?))).collect();
    let skipped = files.len() - labelled.len();
    // Decoding dominates loading (thousands of clips): both cores.
    let clips = std::thread::scope(|scope| -> Result<Vec<VoiceClip>> {
        let half = labelled.len().div_ceil(2).max(1);
        let parts: Vec<_> = labelled
            .chunks(half)
            .map(|part| {
                scope.spawn(move || -> Result<Vec<VoiceClip>> {
                    part.iter()
                        .map(|(path, label)| {
                            let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
                            let audio = decode_audio(&bytes, sample_rate, 60.0)
                                .with_context(|| format!("decoding {}", path.display()))?;
                            Ok(VoiceClip { samples: audio.samples, label: label.clone(), path: path.clone() })
                        })
                        .collect()
                })
            })
            .collect();
        let mut clips = Vec::with_capacity(labelled.len());
        for part in parts {
            clips.extend(part.join().map_err(|_| anyhow::anyhow!("a clip loader panicked"))??);
        }
        Ok(clips)
    })?;
    if skipped > 0 {
        tracing::warn!(skipped, "audio files whose names fit no known corpus were skipped");
    }
    if clips.is_empty() {
        bail!("no RAVDESS, EmoDB, speechsex, CREMA-D, TESS or SAVEE clips found under {dirs:?}");
    }
    Ok(clips)
}

/// Clips per joint class (of the clips with an emotion), for class weights.
pub fn class_counts(clips: &[VoiceClip]) -> Vec<i64> {
    let mut counts = vec![0i64; EMOTIONS.len() * SEXES.len()];
    for class in clips.iter().filter_map(|c| c.label.class()) {
        counts[class] += 1;
    }
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label(emotion_name: &str, sex: usize, speaker: &str) -> Option<VoiceLabel> {
        Some(VoiceLabel { emotion: Some(emotion(emotion_name)), sex, speaker: speaker.into() })
    }

    #[test]
    fn emodb_names() {
        assert_eq!(parse_emodb("03a01Wa"), label("angry", MALE, "emodb:03"));
        assert_eq!(parse_emodb("08b10Tc"), label("sad", FEMALE, "emodb:08"));
        assert_eq!(parse_emodb("16a02Ea"), label("disgust", FEMALE, "emodb:16"));
        let one_source = parse_emodb("03a01Wa").unwrap();
        assert_eq!((one_source.corpus(), one_source.source()), ("emodb", "emodb"), "one source: the corpus");
        assert_eq!(parse_emodb("11b03Ab"), label("fear", MALE, "emodb:11"));
        assert_eq!(parse_emodb("13a05Fb"), label("happy", FEMALE, "emodb:13"));
        assert_eq!(parse_emodb("15a07Nc"), label("neutral", MALE, "emodb:15"));
        let bored = parse_emodb("09a01La").unwrap();
        assert_eq!((bored.emotion, bored.sex, bored.corpus()), (None, FEMALE, "emodb"), "boredom: sex only");
        assert_eq!(parse_emodb("04a01Wa"), None, "no speaker 04");
        assert_eq!(parse_emodb("03a01Xa"), None);
        assert_eq!(parse_emodb("03a01W"), None);
        assert_eq!(parse_emodb("03-01-05-01-01-01-12"), None);
    }

    #[test]
    fn speechsex_layout() {
        let tsv = "corpus\tspeaker\tsex\tage\nspeechocean762\t0024\tF\t25\naudiomnist_az\t07\tM\t30\n";
        let sexes = parse_speechsex_speakers(tsv).unwrap();
        let p = |s: &str| PathBuf::from(s);
        let clip = parse_speechsex(&p("/d/speechsex/speechocean762/0024/000240010.ogg"), &sexes).unwrap();
        assert_eq!((clip.emotion, clip.sex, clip.speaker.as_str()), (None, FEMALE, "speechsex:speechocean762/0024"));
        assert_eq!(clip.corpus(), "speechsex");
        assert_eq!(clip.source(), "speechsex:speechocean762");
        assert_eq!(parse_speechsex(&p("audiomnist_az/07/3_07_1.ogg"), &sexes).unwrap().sex, MALE);
        assert_eq!(parse_speechsex(&p("audiomnist_az/08/3_08_1.ogg"), &sexes), None, "speaker not listed");
        assert!(parse_speechsex_speakers("a\tb\n").is_err());
    }

    #[test]
    fn ravdess_names() {
        assert_eq!(parse_ravdess("03-01-05-02-01-01-12"), label("angry", FEMALE, "ravdess:12"));
        assert_eq!(parse_ravdess("03-01-02-01-01-01-01"), label("neutral", MALE, "ravdess:1"), "calm is neutral");
        assert_eq!(parse_ravdess("03-01-08-01-01-01-23"), label("surprise", MALE, "ravdess:23"));
        assert_eq!(parse_ravdess("03-01-07-01-01-01-24"), label("disgust", FEMALE, "ravdess:24"));
        assert_eq!(parse_ravdess("03-02-05-01-01-01-01"), None, "song, not speech");
        assert_eq!(parse_ravdess("01-01-05-01-01-01-01"), None, "video file");
        assert_eq!(parse_ravdess("03-01-09-01-01-01-01"), None);
        assert_eq!(parse_ravdess("03-01-05-01-01-01"), None);
    }

    #[test]
    fn crema_names_and_demographics() {
        let csv = "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n1002,21,Female,Caucasian,Not Hispanic\n";
        let sexes = parse_crema_demographics(csv).unwrap();
        assert_eq!(parse_crema("1001_DFA_ANG_XX", &sexes), label("angry", MALE, "crema:1001"));
        assert_eq!(parse_crema("1002_IEO_FEA_HI", &sexes), label("fear", FEMALE, "crema:1002"));
        assert_eq!(parse_crema("1003_DFA_SAD_XX", &sexes), None, "actor missing from demographics");
        assert_eq!(parse_crema("1001_DFA_XYZ_XX", &sexes), None);
        assert!(parse_crema_demographics("a,b\n1,2\n").is_err());
    }

    #[test]
    fn tess_names() {
        assert_eq!(parse_tess("OAF_back_angry"), label("angry", FEMALE, "tess:OAF"));
        assert_eq!(parse_tess("YAF_dog_ps"), label("surprise", FEMALE, "tess:YAF"));
        assert_eq!(parse_tess("YAF_date_neutral"), label("neutral", FEMALE, "tess:YAF"));
        assert_eq!(parse_tess("OAF_Fear"), None, "a folder name, not a clip");
        assert_eq!(parse_tess("XAF_back_angry"), None);
    }

    #[test]
    fn savee_names() {
        assert_eq!(parse_savee("DC_a01", ""), label("angry", MALE, "savee:DC"));
        assert_eq!(parse_savee("su15", "KL"), label("surprise", MALE, "savee:KL"));
        assert_eq!(parse_savee("JE_sa03", "ALL"), label("sad", MALE, "savee:JE"));
        assert_eq!(parse_savee("a01", "other"), None);
        assert_eq!(parse_savee("DC_x01", ""), None);
    }

    #[test]
    fn label_for_picks_the_corpus_from_the_path() {
        let none = SpeakerTables::default();
        let p = |s: &str| PathBuf::from(s);
        assert_eq!(label_for(&p("ravdess/Actor_03/03-01-03-01-01-01-03.flac"), &none).unwrap().speaker, "ravdess:3");
        assert_eq!(label_for(&p("TESS/OAF_happy/OAF_back_happy.wav"), &none).unwrap().speaker, "tess:OAF");
        assert_eq!(label_for(&p("SAVEE/AudioData/JK/n07.wav"), &none).unwrap().speaker, "savee:JK");
        assert_eq!(label_for(&p("emodb/wav/12b02Wa.flac"), &none).unwrap().speaker, "emodb:12");
        assert_eq!(label_for(&p("music/song.mp3"), &none), None);
    }

    /// Generated files in a RAVDESS-like tree load with the right labels, and
    /// unknown names are skipped.
    #[test]
    fn loads_a_generated_tree() {
        let dir = tempfile::tempdir().unwrap();
        let actor = dir.path().join("Actor_02");
        std::fs::create_dir_all(&actor).unwrap();
        let wav = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/speech.wav")).unwrap();
        std::fs::write(actor.join("03-01-04-01-01-01-02.wav"), &wav).unwrap();
        std::fs::write(actor.join("03-01-01-01-01-01-02.wav"), &wav).unwrap();
        std::fs::write(actor.join("notes.wav"), &wav).unwrap();
        let clips = load_clips(&[dir.path().to_path_buf()], 16_000).unwrap();
        assert_eq!(clips.len(), 2);
        assert_eq!(clips[0].label, label("neutral", FEMALE, "ravdess:2").unwrap());
        assert_eq!(clips[1].label, label("sad", FEMALE, "ravdess:2").unwrap());
        assert!(clips[0].samples.len() > 16_000);
        let counts = class_counts(&clips);
        assert_eq!(counts.iter().sum::<i64>(), 2);
        assert!(load_clips(&[dir.path().join("missing")], 16_000).is_err());
    }
}
