//! The Numenta Anomaly Benchmark (NAB v1.1): loading the corpus, running a
//! detector over it in NAB's results layout, and scoring results exactly as
//! `shared/datasets/nab/SCORING.md` specifies. The data stays in
//! `shared/datasets/nab/` beside the repository and is never copied in.

pub mod data;
pub mod gaussian;
pub mod profiles;
pub mod registry;
pub mod results;
pub mod scoring;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub use data::{Corpus, LabeledSeries, Series, Window};
pub use profiles::{PROFILE_NAMES, Profile, load_profiles};
pub use registry::{Detector, DetectorFactory, registry};
pub use scoring::{Costs, FileInput, ProfileScore, score_profile};

/// The corpus as checked out beside the repository (CI clones the repo with
/// `shared/` next to it).
pub const DEFAULT_NAB_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/datasets/nab");

/// Everything that can go wrong reading NAB files or scoring. Messages name
/// the file and, where there is one, the line. Causes are part of the
/// message rather than `source()`, so one `Display` says it all (the CSV
/// line number lives in the cause) and `anyhow` does not print it twice.
#[derive(Debug, thiserror::Error)]
pub enum NabError {
    /// A file could not be read or written.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
    /// The CSV layer rejected a file (its message carries the line).
    #[error("{}: {cause}", path.display())]
    Csv {
        /// The file.
        path: PathBuf,
        /// The cause.
        cause: csv::Error,
    },
    /// A JSON file did not parse into the expected shape.
    #[error("{}: {cause}", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause, with line and column.
        cause: serde_json::Error,
    },
    /// A CSV row that parsed but makes no sense.
    #[error("{}:{line}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file that parsed but contradicts another (labels vs data, row counts).
    #[error("{}: {reason}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Scores and windows of a file that do not fit together.
    #[error("{key}: {reason}")]
    Input {
        /// `<category>/<file>.csv`.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// Normalisation needs at least one window in the corpus.
    #[error("the corpus has no anomaly windows: scores cannot be normalised")]
    NoWindows,
}

impl NabError {
    /// A stable label for counting rejections (STYLE.md §3).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Csv { .. } => "csv",
            Self::Json { .. } => "json",
            Self::Malformed { .. } => "malformed",
            Self::Invalid { .. } => "invalid",
            Self::Input { .. } => "input",
            Self::NoWindows => "no_windows",
        }
    }
}

/// The corpus directory: `NAB_DIR` if set, else [`DEFAULT_NAB_DIR`].
pub fn nab_dir() -> PathBuf {
    std::env::var_os("NAB_DIR").map_or_else(|| PathBuf::from(DEFAULT_NAB_DIR), PathBuf::from)
}

/// Runs a fresh detector over one file, row by row, returning its scores and
/// the time spent inside the detector alone.
pub fn run_file(factory: DetectorFactory, file: &LabeledSeries) -> (Vec<f64>, Duration) {
    let mut detector = factory();
    let series = &file.series;
    let start = Instant::now();
    let scores = series
        .timestamps
        .iter()
        .zip(&series.values)
        .map(|(&ts, &x)| detector(ts, x))
        .collect();
    (scores, start.elapsed())
}

/// Reads a detector's results tree for every file of the corpus.
pub fn load_results(
    root: &Path,
    detector: &str,
    corpus: &Corpus,
) -> Result<Vec<Vec<f64>>, NabError> {
    corpus
        .files
        .iter()
        .map(|f| results::read_results(&results::results_path(root, detector, &f.series.key), f))
        .collect()
}

/// Scores one anomaly-score vector per corpus file on every profile, each
/// at its own optimised threshold, or at `threshold` for all if given.
pub fn score_all(
    corpus: &Corpus,
    scores: &[Vec<f64>],
    profiles: &[Profile],
    threshold: Option<f64>,
) -> Result<Vec<ProfileScore>, NabError> {
    if scores.len() != corpus.files.len() {
        return Err(NabError::Input {
            key: "corpus".to_owned(),
            reason: format!(
                "{} score vectors for {} files",
                scores.len(),
                corpus.files.len()
            ),
        });
    }
    let inputs = corpus
        .files
        .iter()
        .zip(scores)
        .map(|(f, s)| {
            if s.len() != f.series.len() {
                return Err(NabError::Input {
                    key: f.series.key.clone(),
                    reason: format!("{} scores for {} rows", s.len(), f.series.len()),
                });
            }
            FileInput::new(&f.series.key, &f.windows, s)
        })
        .collect::<Result<Vec<_>, _>>()?;
    profiles
        .iter()
        .map(|p| match threshold {
            Some(theta) => scoring::score_profile_at(&inputs, &p.name, p.costs, theta),
            None => score_profile(&inputs, &p.name, p.costs),
        })
        .collect()
}
