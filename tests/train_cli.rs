//! The training and evaluation commands, and the script that measures a
//! corpus never heard, refuse settings that make no sense before they load
//! any data or train anything.

use std::process::Command;

fn emotion_ai(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_emotion-ai")).args(args).output().expect("runs");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_speech_check_without_hidden_units_is_refused() {
    let (code, stderr) = emotion_ai(&["train", "speech-check", "--data", "no-such-dir", "--hidden", "0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--hidden") && stderr.contains("at least 1"), "{stderr}");
}

#[test]
fn a_weight_average_decay_outside_zero_to_one_is_refused() {
    for decay in ["1", "0", "-0.5", "1.5", "fast"] {
        // `=` so that clap reads "-0.5" as the value, not as a flag.
        let flag = format!("--weight-average={decay}");
        let (code, stderr) = emotion_ai(&["train", "voice-emotion", "--data", "no-such-dir", &flag]);
        assert_eq!(code, 2, "{decay}: {stderr}");
        assert!(stderr.contains("--weight-average"), "{decay}: {stderr}");
    }
}

#[test]
fn an_interpolation_weight_off_the_line_is_refused() {
    for weight in ["1.5", "-0.5", "NaN", "half"] {
        let flag = format!("--weight={weight}");
        let args = ["train", "face-emotion-interpolate", "--base", "a.safetensors", "--tuned", "b.safetensors", &flag];
        let (code, stderr) = emotion_ai(&[&args[..], &["--out", "c.safetensors"]].concat());
        assert_eq!(code, 2, "{weight}: {stderr}");
        assert!(stderr.contains("--weight"), "{weight}: {stderr}");
    }
    assert!(!std::path::Path::new("c.safetensors").exists());
}

#[test]
fn voice_augmentation_ranges_are_checked() {
    for (flag, values) in [
        ("--speed", &["0.7", "-0.1", "NaN", "fast"][..]),
        ("--pitch-shift", &["1.5", "-0.5", "NaN", "high"][..]),
        ("--f0-shift", &["2", "-1", "NaN", "up"][..]),
        ("--freq-mask", &["21", "-1", "2.5", "wide"][..]),
        ("--mixup", &["1.5", "-0.2", "NaN", "some"][..]),
    ] {
        for value in values {
            let arg = format!("{flag}={value}");
            let (code, stderr) = emotion_ai(&["train", "voice-emotion", "--data", "no-such-dir", &arg]);
            assert_eq!(code, 2, "{arg}: {stderr}");
            assert!(stderr.contains(flag), "{arg}: {stderr}");
        }
    }
}

#[test]
fn recording_never_heard_figures_needs_a_left_out_corpus_and_a_card() {
    let eval = ["eval", "voice-emotion", "--data", "no-such-dir"];
    let (code, stderr) = emotion_ai(&[&eval[..], &["--record-never-heard", "models/voice_emotion.json"]].concat());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--leave-out"), "{stderr}");
    // A card that is not there is refused before any clip is read.
    let (code, stderr) =
        emotion_ai(&[&eval[..], &["--leave-out", "emodb", "--record-never-heard", "no-such-card.json"]].concat());
    assert_ne!(code, 0, "{stderr}");
    assert!(stderr.contains("no-such-card.json"), "{stderr}");
}

/// `scripts/voice_never_heard.sh` with `env`, from the crate root.
fn never_heard_script(args: &[&str], env: &[(&str, &str)]) -> (i32, String) {
    let out = Command::new("bash")
        .arg("scripts/voice_never_heard.sh")
        .args(args)
        .envs(env.iter().copied())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("runs bash");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn the_never_heard_script_says_what_is_missing_before_training() {
    let (code, stderr) = never_heard_script(&["crema"], &[]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("usage") && stderr.contains("ravdess|speechsex|emodb"), "{stderr}");

    let (code, stderr) = never_heard_script(&["emodb"], &[("EMOTION_AI_DATASETS", "no-such-dir")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no-such-dir/ravdess is missing") && stderr.contains("EMOTION_AI_DATASETS"), "{stderr}");

    let datasets = tempfile::tempdir().expect("temp dir");
    for corpus in ["ravdess", "speechsex", "emodb"] {
        std::fs::create_dir(datasets.path().join(corpus)).expect("corpus dir");
    }
    let root = datasets.path().to_string_lossy().into_owned();
    let (code, stderr) =
        never_heard_script(&["emodb"], &[("EMOTION_AI_DATASETS", root.as_str()), ("EMOTION_AI_BIN", "no-such-binary")]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no-such-binary is missing") && stderr.contains("cargo build --release"), "{stderr}");
}
