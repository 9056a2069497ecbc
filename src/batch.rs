//! The batch command line: many files and directories, images and clips
//! mixed, analysed by a bounded set of worker threads sharing one
//! [`Analyzer`], written as JSON lines or CSV with one row per face, per clip
//! and (with `timeline`) per window of a clip.
//!
//! A file that cannot be analysed becomes a row with its error; the run goes
//! on. Rows come out in input order whatever order the workers finish in.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::model::voice::SEXES;
use crate::model::EMOTIONS;
use crate::predict::{Analysis, AnalyzeError, Analyzer, Distribution, FaceSource};
use crate::web::AppError;

/// The files to analyse: files as given, directories walked recursively
/// (sorted, hidden files and folders skipped).
pub fn collect_inputs(paths: &[PathBuf]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = walkdir::WalkDir::new(path)
                .into_iter()
                .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_file())
                .map(|e| e.into_path())
                .collect();
            found.sort();
            files.extend(found);
        } else {
            // Missing files are kept: they get an error row of their own.
            files.push(path.clone());
        }
    }
    files
}

/// What a row describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RowKind {
    /// One face of an image.
    Face,
    /// A whole clip.
    Clip,
    /// One analysis window of a clip.
    Window,
    /// A file that gave no prediction (see `status` and `error`).
    File,
}

/// One output row, flat so that JSON lines and CSV carry the same fields.
/// Probabilities are named `p_<class>`; fields that do not apply are empty.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Row {
    pub path: String,
    pub kind: RowKind,
    /// `ok`, or the stable error code (`no_face`, `unsupported_media_type`,
    /// `corrupt_file`, `unreadable` ...).
    pub status: String,
    pub error: Option<String>,
    /// Face number (1 = largest) or window number (1 = first).
    pub index: Option<usize>,
    pub box_x: Option<u32>,
    pub box_y: Option<u32>,
    pub box_width: Option<u32>,
    pub box_height: Option<u32>,
    pub start_seconds: Option<f32>,
    pub end_seconds: Option<f32>,
    pub emotion: Option<String>,
    pub emotion_confidence: Option<f32>,
    pub sex: Option<String>,
    pub sex_confidence: Option<f32>,
    pub p_angry: Option<f32>,
    pub p_disgust: Option<f32>,
    pub p_fear: Option<f32>,
    pub p_happy: Option<f32>,
    pub p_sad: Option<f32>,
    pub p_surprise: Option<f32>,
    pub p_neutral: Option<f32>,
    pub p_female: Option<f32>,
    pub p_male: Option<f32>,
    /// The answer's caution, on a clip's row: the API's `note` (a clip
    /// under 2 s is read less surely). Last, so columns before it keep
    /// their places.
    pub note: Option<String>,
}

impl Row {
    fn empty(path: &Path, kind: RowKind, status: &str) -> Self {
        Self {
            path: path.display().to_string(),
            kind,
            status: status.to_string(),
            error: None,
            index: None,
            box_x: None,
            box_y: None,
            box_width: None,
            box_height: None,
            start_seconds: None,
            end_seconds: None,
            emotion: None,
            emotion_confidence: None,
            sex: None,
            sex_confidence: None,
            p_angry: None,
            p_disgust: None,
            p_fear: None,
            p_happy: None,
            p_sad: None,
            p_surprise: None,
            p_neutral: None,
            p_female: None,
            p_male: None,
            note: None,
        }
    }

    fn error(path: &Path, code: &str, message: String) -> Self {
        Self { error: Some(message), ..Self::empty(path, RowKind::File, code) }
    }

    fn with_predictions(mut self, emotion: &Distribution, sex: &Distribution) -> Self {
        let p =
            |d: &Distribution, label: &str| d.probabilities.iter().find(|c| c.label == label).map(|c| c.probability);
        self.emotion = Some(emotion.label.clone());
        self.emotion_confidence = Some(emotion.confidence);
        self.sex = Some(sex.label.clone());
        self.sex_confidence = Some(sex.confidence);
        let [angry, disgust, fear, happy, sad, surprise, neutral] = EMOTIONS;
        self.p_angry = p(emotion, angry);
        self.p_disgust = p(emotion, disgust);
        self.p_fear = p(emotion, fear);
        self.p_happy = p(emotion, happy);
        self.p_sad = p(emotion, sad);
        self.p_surprise = p(emotion, surprise);
        self.p_neutral = p(emotion, neutral);
        let [female, male] = SEXES;
        self.p_female = p(sex, female);
        self.p_male = p(sex, male);
        self
    }

    /// True when the row holds a prediction (a face, a clip or a window).
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// The rows of one file's outcome.
pub fn rows_for(path: &Path, outcome: Result<Analysis, AnalyzeError>, timeline: bool) -> Vec<Row> {
    match outcome {
        Err(e) => {
            let message = e.to_string();
            // The API's own mapping, so both name an error alike.
            vec![Row::error(path, AppError::from(e).code(), message)]
        }
        Ok(Analysis::Image(image)) => image
            .faces
            .iter()
            .enumerate()
            .map(|(i, face)| {
                Row {
                    index: Some(i + 1),
                    box_x: Some(face.bbox.x),
                    box_y: Some(face.bbox.y),
                    box_width: Some(face.bbox.width),
                    box_height: Some(face.bbox.height),
                    ..Row::empty(path, RowKind::Face, "ok")
                }
                .with_predictions(&face.emotion, &face.sex)
            })
            .collect(),
        Ok(Analysis::Audio(audio)) => {
            let clip = Row {
                start_seconds: Some(0.0),
                end_seconds: Some(audio.duration_seconds),
                note: audio.note.clone(),
                ..Row::empty(path, RowKind::Clip, "ok")
            }
            .with_predictions(&audio.emotion, &audio.sex);
            let windows = audio.timeline.iter().enumerate().filter(|_| timeline).map(|(i, w)| {
                Row {
                    index: Some(i + 1),
                    start_seconds: Some(w.start_seconds),
                    end_seconds: Some(w.end_seconds),
                    ..Row::empty(path, RowKind::Window, "ok")
                }
                .with_predictions(&w.emotion, &w.sex)
            });
            std::iter::once(clip).chain(windows).collect()
        }
    }
}

/// What a batch run reports and how it reads images.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// A row per 3 s window of each clip, besides the clip's own.
    pub timeline: bool,
    /// Detect faces, or read each image as one face.
    pub faces: FaceSource,
}

/// Reads and analyses one file.
pub fn analyze_file(analyzer: &Analyzer, path: &Path, options: Options) -> Vec<Row> {
    match std::fs::read(path) {
        Err(e) => vec![Row::error(path, "unreadable", format!("cannot read the file: {e}"))],
        Ok(bytes) => rows_for(path, analyzer.analyze_bytes_with(&bytes, options.faces), options.timeline),
    }
}

/// Output format of a batch run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    JsonLines,
    Csv,
}

/// Writes rows as they come, in one format.
pub enum RowWriter<W: Write> {
    JsonLines(W),
    // Boxed: the csv writer carries its buffer inline.
    Csv(Box<csv::Writer<W>>),
}

impl<W: Write> RowWriter<W> {
    pub fn new(out: W, format: Format) -> Self {
        match format {
            Format::JsonLines => Self::JsonLines(out),
            Format::Csv => Self::Csv(Box::new(csv::Writer::from_writer(out))),
        }
    }

    pub fn write(&mut self, row: &Row) -> Result<()> {
        match self {
            Self::JsonLines(out) => {
                serde_json::to_writer(&mut *out, row)?;
                out.write_all(b"\n")?;
            }
            Self::Csv(out) => out.serialize(row)?,
        }
        Ok(())
    }

    /// Flushes and hands back the output (for rows written to memory).
    pub fn into_inner(self) -> Result<W> {
        match self {
            Self::JsonLines(out) => Ok(out),
            Self::Csv(out) => out.into_inner().map_err(|e| anyhow::anyhow!("flushing CSV: {}", e.error())),
        }
    }

    pub fn flush(&mut self) -> Result<()> {
        match self {
            Self::JsonLines(out) => out.flush()?,
            Self::Csv(out) => out.flush()?,
        }
        Ok(())
    }
}

/// What a batch run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub files: usize,
    /// Files analysed, including images without a face and silent clips
    /// (they got an answer, just not a prediction).
    pub analysed: usize,
    pub failed: usize,
    pub rows: usize,
}

/// Analyses `files` on `workers` threads, calling `progress` after each file
/// and writing every row to `writer` in input order.
pub fn run<W: Write>(
    analyzer: &Analyzer,
    files: &[PathBuf],
    workers: usize,
    options: Options,
    writer: &mut RowWriter<W>,
    progress: impl Fn(&Path),
) -> Result<Summary> {
    let next = AtomicUsize::new(0);
    let (send, receive) = mpsc::channel::<(usize, Vec<Row>)>();
    let mut summary = Summary { files: files.len(), ..Summary::default() };
    std::thread::scope(|scope| -> Result<()> {
        for _ in 0..workers.clamp(1, files.len().max(1)) {
            let send = send.clone();
            let next = &next;
            scope.spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = files.get(i) else { break };
                if send.send((i, analyze_file(analyzer, path, options))).is_err() {
                    break;
                }
            });
        }
        drop(send);
        // Results arrive in any order; hold them until their turn.
        let mut pending = BTreeMap::new();
        let mut due = 0;
        for (i, rows) in receive {
            progress(&files[i]);
            pending.insert(i, rows);
            while let Some(rows) = pending.remove(&due) {
                let failed = rows.iter().all(|r| !r.is_ok() && !matches!(r.status.as_str(), "no_face" | "no_speech"));
                if failed {
                    summary.failed += 1;
                } else {
                    summary.analysed += 1;
                }
                for row in &rows {
                    writer.write(row).context("writing results")?;
                }
                summary.rows += rows.len();
                due += 1;
            }
        }
        Ok(())
    })?;
    writer.flush()?;
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn distribution(classes: &[&str], top: usize) -> Distribution {
        let classes: Vec<String> = classes.iter().map(|s| s.to_string()).collect();
        let mut p = vec![0.0; classes.len()];
        p[top] = 1.0;
        Distribution::new(&classes, &p)
    }

    #[test]
    fn directories_are_walked_in_order_without_hidden_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("b/.cache")).unwrap();
        for name in ["b/2.wav", "a.jpg", "b/1.png", ".hidden.jpg", "b/.cache/x.jpg"] {
            std::fs::write(dir.path().join(name), b"x").unwrap();
        }
        let listed = collect_inputs(&[dir.path().to_path_buf(), PathBuf::from("missing.jpg")]);
        let names: Vec<String> =
            listed.iter().map(|p| p.strip_prefix(dir.path()).unwrap_or(p).display().to_string()).collect();
        assert_eq!(names, ["a.jpg", "b/1.png", "b/2.wav", "missing.jpg"]);
    }

    #[test]
    fn errors_become_rows_with_the_api_codes() {
        let row = &rows_for(Path::new("x.txt"), Err(AnalyzeError::UnsupportedFormat), false)[0];
        assert_eq!((row.kind, row.status.as_str()), (RowKind::File, "unsupported_media_type"));
        assert!(row.error.is_some() && row.emotion.is_none());
        let row = &rows_for(Path::new("c.jpg"), Err(AnalyzeError::NoFace { width: 3, height: 3 }), false)[0];
        assert_eq!(row.status, "no_face");
    }

    #[test]
    fn predictions_fill_the_named_probability_columns() {
        let row = Row::empty(Path::new("a"), RowKind::Face, "ok")
            .with_predictions(&distribution(&EMOTIONS, 5), &distribution(&SEXES, 1));
        assert_eq!(row.emotion.as_deref(), Some("surprise"));
        assert_eq!(
            (row.p_surprise, row.p_angry, row.p_male, row.p_female),
            (Some(1.0), Some(0.0), Some(1.0), Some(0.0))
        );
    }

    #[test]
    fn csv_and_json_lines_carry_the_same_fields() {
        let row = Row::error(Path::new("bad.jpg"), "corrupt_file", "truncated".into());
        let mut json = RowWriter::new(Vec::new(), Format::JsonLines);
        json.write(&row).unwrap();
        let RowWriter::JsonLines(bytes) = json else { unreachable!() };
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        let mut csv = RowWriter::new(Vec::new(), Format::Csv);
        csv.write(&row).unwrap();
        let RowWriter::Csv(writer) = csv else { unreachable!() };
        let text = String::from_utf8(writer.into_inner().unwrap()).unwrap();
        let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
        let keys: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(header, keys);
        assert!(text.lines().nth(1).unwrap().starts_with("bad.jpg,file,corrupt_file,truncated,"));
    }
}
