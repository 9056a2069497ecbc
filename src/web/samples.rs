//! Cross-modal samples: the answer for a face carries a voice expressing the
//! same emotion (in the predicted sex's voice), the answer for a clip a drawn
//! face expressing it. All 14 emotion x sex pairs have both, in `assets/`,
//! made by `scripts/make_samples.py` (espeak-ng voices with prosody per
//! emotion, SVG drawings): the project's own work, not dataset files.

use std::path::{Path, PathBuf};

use crate::model::voice::SEXES;
use crate::model::EMOTIONS;

/// The URL prefix `assets/` is served under.
pub const ASSETS_ROUTE: &str = "/assets";

/// Where the shipped samples are.
pub fn default_assets_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets")
}

/// A sample for one (emotion, sex) pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Path under the assets directory.
    pub file: String,
    /// Where the server serves it.
    pub url: String,
    /// What the page says it is.
    pub caption: String,
}

/// Both labels must be among the models' classes: a sample is never guessed
/// for a label the models do not produce.
fn known(emotion: &str, sex: &str) -> bool {
    EMOTIONS.contains(&emotion) && SEXES.contains(&sex)
}

fn sample(dir: &str, emotion: &str, sex: &str, ext: &str, caption: String) -> Option<Sample> {
    known(emotion, sex).then(|| {
        let file = format!("{dir}/{emotion}_{sex}.{ext}");
        Sample { url: format!("{ASSETS_ROUTE}/{file}"), file, caption }
    })
}

/// The voice clip for a face predicted `emotion` and `sex`.
pub fn voice_sample(emotion: &str, sex: &str) -> Option<Sample> {
    sample("voices", emotion, sex, "mp3", format!("how {emotion} can sound in a {sex} voice (synthesized)"))
}

/// The drawn face for a clip predicted `emotion` and `sex`.
pub fn face_sample(emotion: &str, sex: &str) -> Option<Sample> {
    sample("faces", emotion, sex, "svg", format!("how {emotion} can look on a {sex} face (drawn)"))
}

/// Every sample the answers can refer to, for checks at start-up and in tests.
pub fn all_samples() -> Vec<Sample> {
    EMOTIONS
        .iter()
        .flat_map(|e| SEXES.iter().map(move |s| (*e, *s)))
        .flat_map(|(e, s)| [voice_sample(e, s), face_sample(e, s)])
        .flatten()
        .collect()
}

/// The samples missing under `assets_dir` (empty when all are there).
pub fn missing_samples(assets_dir: &Path) -> Vec<String> {
    all_samples().into_iter().filter(|s| !assets_dir.join(&s.file).is_file()).map(|s| s.file).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_emotion_and_sex_has_a_voice_and_a_face_on_disk() {
        assert_eq!(all_samples().len(), 2 * 7 * 2);
        assert_eq!(missing_samples(&default_assets_dir()), Vec::<String>::new());
        for sample in all_samples() {
            let bytes = std::fs::read(default_assets_dir().join(&sample.file)).unwrap();
            if sample.file.ends_with(".svg") {
                assert!(String::from_utf8(bytes).unwrap().starts_with("<svg"), "{}", sample.file);
            } else {
                // An MP3 frame sync (or an ID3 tag) opens a playable file.
                assert!(bytes.starts_with(b"ID3") || (bytes[0] == 0xFF && bytes[1] & 0xE0 == 0xE0), "{}", sample.file);
                assert!(bytes.len() > 8_000, "{} is too short to hold a sentence", sample.file);
            }
        }
    }

    #[test]
    fn samples_follow_the_predicted_labels_and_refuse_unknown_ones() {
        let voice = voice_sample("surprise", "female").unwrap();
        assert_eq!(voice.url, "/assets/voices/surprise_female.mp3");
        assert_eq!(face_sample("sad", "male").unwrap().url, "/assets/faces/sad_male.svg");
        assert_eq!(voice_sample("calm", "male"), None);
        assert_eq!(face_sample("happy", "../../etc"), None);
    }
}
