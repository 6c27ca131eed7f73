//! NAB's scoring rules as written in `shared/datasets/nab/SCORING.md`
//! (section numbers below refer to it): per-row scores from the scaled
//! sigmoid, per-file scores at a threshold, one corpus-wide threshold per
//! profile, and normalisation against the null and perfect detectors.

use super::NabError;
use super::data::{Window, check_windows};

/// The weights of one application profile (SCORING.md §0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Costs {
    /// Reward for detecting a window at its first row (`A_TP`).
    pub tp: f64,
    /// Cost of a false positive far from any window (`A_FP`).
    pub fp: f64,
    /// Cost of a missed window (`A_FN`).
    pub fn_: f64,
}

/// The "above everything" threshold NAB uses to mean "no detections" (§5).
pub const NO_DETECTION_THRESHOLD: f64 = 1.1;

/// Scaled sigmoid `ss(x) = 2/(1+e^{5x}) − 1`, exactly −1 past `x > 3` (§2).
pub fn scaled_sigmoid(x: f64) -> f64 {
    if x > 3.0 {
        -1.0
    } else {
        2.0 / (1.0 + (5.0 * x).exp()) - 1.0
    }
}

/// Probationary rows at the start of a file of `rows` rows (§1):
/// `min(floor(0.15·N), 750)`. Computed in f64 like NAB's code, because
/// `0.15` is not exact in binary and an integer `15·N/100` could differ.
pub fn probationary_period(rows: usize) -> usize {
    let p = (0.15 * rows as f64).floor() as usize;
    p.min(750)
}

/// The score `s_i` a detection at each row would earn (§3), including
/// probationary rows. `windows` must satisfy [`check_windows`].
pub fn row_scores(rows: usize, windows: &[Window], costs: Costs) -> Vec<f64> {
    let full_tp = scaled_sigmoid(-1.0);
    let mut scores = Vec::with_capacity(rows);
    let mut upcoming = windows.iter().peekable();
    let mut last_closed: Option<Window> = None;
    for i in 0..rows {
        let inside = upcoming.peek().copied().filter(|w| w.contains(i)).copied();
        let s = match (inside, last_closed) {
            (Some(w), _) => {
                let x = -((w.end - i + 1) as f64) / w.width() as f64;
                if i == w.end {
                    last_closed = Some(w);
                    upcoming.next();
                }
                costs.tp * scaled_sigmoid(x) / full_tp
            }
            (None, Some(w)) => {
                // A one-row window would divide by zero here (NAB's Python
                // raises); it never occurs in the corpus, and a distance of
                // "infinitely many widths" gives the full penalty −A_FP.
                let x = if w.width() > 1 {
                    (i - w.end) as f64 / (w.width() - 1) as f64
                } else {
                    f64::INFINITY
                };
                costs.fp * scaled_sigmoid(x)
            }
            (None, None) => -costs.fp,
        };
        scores.push(s);
    }
    scores
}

/// One file's detector output with its windows, checked to agree.
#[derive(Debug, Clone, Copy)]
pub struct FileInput<'a> {
    key: &'a str,
    windows: &'a [Window],
    anomaly_scores: &'a [f64],
}

impl<'a> FileInput<'a> {
    /// Pairs a file's windows with one anomaly score per row; errors if a
    /// window falls outside the rows or windows overlap or are unsorted.
    pub fn new(
        key: &'a str,
        windows: &'a [Window],
        anomaly_scores: &'a [f64],
    ) -> Result<Self, NabError> {
        check_windows(anomaly_scores.len(), windows).map_err(|reason| NabError::Input {
            key: key.to_owned(),
            reason,
        })?;
        Ok(Self {
            key,
            windows,
            anomaly_scores,
        })
    }

    /// The file's key, `<category>/<file>.csv`.
    pub fn key(&self) -> &'a str {
        self.key
    }
}

/// The score of one file at one threshold (§4), with row counts that are
/// informational only (probationary rows are not counted).
#[derive(Debug, Clone, PartialEq)]
pub struct FileScore {
    /// `<category>/<file>.csv`.
    pub key: String,
    /// Raw score `S_file(θ)`.
    pub raw: f64,
    /// Windows with at least one detection.
    pub windows_detected: usize,
    /// Windows in the file.
    pub windows: usize,
    /// Detected rows inside windows.
    pub tp_rows: usize,
    /// Detected rows outside windows (each one is charged).
    pub fp_rows: usize,
    /// Undetected rows inside windows.
    pub fn_rows: usize,
    /// Undetected rows outside windows.
    pub tn_rows: usize,
}

/// Scores one file at threshold `threshold`: a detection is a scorable row
/// with `a_i ≥ θ` (a NaN score never detects).
pub fn score_file(input: &FileInput<'_>, costs: Costs, threshold: f64) -> FileScore {
    let rows = input.anomaly_scores.len();
    let s = row_scores(rows, input.windows, costs);
    let first = probationary_period(rows);
    let mut score = FileScore {
        key: input.key.to_owned(),
        raw: 0.0,
        windows_detected: 0,
        windows: input.windows.len(),
        tp_rows: 0,
        fp_rows: 0,
        fn_rows: 0,
        tn_rows: 0,
    };
    let mut best: Vec<Option<f64>> = vec![None; input.windows.len()];
    let mut window = 0;
    for (i, (&a, &s_i)) in input.anomaly_scores.iter().zip(&s).enumerate().skip(first) {
        while input.windows.get(window).is_some_and(|w| w.end < i) {
            window += 1;
        }
        let detected = a >= threshold;
        let inside = input.windows.get(window).is_some_and(|w| w.contains(i));
        match (inside, detected) {
            (true, true) => {
                score.tp_rows += 1;
                if let Some(b) = best.get_mut(window) {
                    *b = Some(b.map_or(s_i, |b| b.max(s_i)));
                }
            }
            (true, false) => score.fn_rows += 1,
            (false, true) => {
                score.fp_rows += 1;
                score.raw += s_i;
            }
            (false, false) => score.tn_rows += 1,
        }
    }
    for b in best {
        match b {
            Some(b) => {
                score.windows_detected += 1;
                score.raw += b;
            }
            None => score.raw -= costs.fn_,
        }
    }
    score
}

/// The score of the whole corpus at one threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusScore {
    /// The threshold θ.
    pub threshold: f64,
    /// Raw score `S(θ)`, the sum over files.
    pub raw: f64,
    /// Per-file scores, in input order.
    pub files: Vec<FileScore>,
}

impl CorpusScore {
    /// Windows in the corpus.
    pub fn windows(&self) -> usize {
        self.files.iter().map(|f| f.windows).sum()
    }

    /// Windows with at least one detection.
    pub fn windows_detected(&self) -> usize {
        self.files.iter().map(|f| f.windows_detected).sum()
    }

    /// Detected rows outside every window.
    pub fn fp_rows(&self) -> usize {
        self.files.iter().map(|f| f.fp_rows).sum()
    }
}

/// Scores every file at one threshold, e.g. one of NAB's stored
/// thresholds (§7), and sums.
pub fn score_corpus(files: &[FileInput<'_>], costs: Costs, threshold: f64) -> CorpusScore {
    let files: Vec<FileScore> = files
        .iter()
        .map(|f| score_file(f, costs, threshold))
        .collect();
    CorpusScore {
        threshold,
        raw: files.iter().map(|f| f.raw).sum(),
        files,
    }
}

/// A row that can be detected, for the sweep.
struct Candidate {
    anomaly: f64,
    score: f64,
    /// Global window index, or `None` outside every window.
    window: Option<usize>,
}

/// The corpus-wide threshold maximising `S(θ)` (§5): sweep the distinct
/// scores of scorable rows from the highest down, keeping a running FP sum
/// and the best detection per window. Ties keep the highest threshold.
pub fn optimize_threshold(files: &[FileInput<'_>], costs: Costs) -> f64 {
    let mut candidates = Vec::new();
    let mut window_base = 0;
    for file in files {
        let rows = file.anomaly_scores.len();
        let s = row_scores(rows, file.windows, costs);
        let mut window = 0;
        for (i, (&anomaly, &score)) in file
            .anomaly_scores
            .iter()
            .zip(&s)
            .enumerate()
            .skip(probationary_period(rows))
        {
            while file.windows.get(window).is_some_and(|w| w.end < i) {
                window += 1;
            }
            if anomaly.is_nan() {
                continue;
            }
            let inside = file.windows.get(window).is_some_and(|w| w.contains(i));
            candidates.push(Candidate {
                anomaly,
                score,
                window: inside.then_some(window_base + window),
            });
        }
        window_base += file.windows.len();
    }
    // Stable sort: equal scores keep file order, so the sums are deterministic.
    candidates.sort_by(|a, b| b.anomaly.total_cmp(&a.anomaly));

    let mut best_in_window: Vec<Option<f64>> = vec![None; window_base];
    let mut window_sum = -costs.fn_ * window_base as f64;
    let mut fp_sum = 0.0;
    // "Above everything": no detections. If a detector emits scores ≥ 1.1,
    // NAB's constant would detect them, so go above the maximum instead.
    let mut best_threshold = match candidates.first() {
        Some(c) if c.anomaly >= NO_DETECTION_THRESHOLD => f64::INFINITY,
        _ => NO_DETECTION_THRESHOLD,
    };
    let mut best_raw = window_sum;
    let mut group = candidates.iter().peekable();
    while let Some(first) = group.next() {
        let theta = first.anomaly;
        let mut add = |c: &Candidate| match c.window.and_then(|w| best_in_window.get_mut(w)) {
            Some(best) => {
                let old = best.unwrap_or(-costs.fn_);
                if c.score > old {
                    window_sum += c.score - old;
                    *best = Some(c.score);
                }
            }
            None => fp_sum += c.score,
        };
        add(first);
        // `==`, not `total_cmp`: −0.0 and 0.0 are one threshold.
        while let Some(c) = group.next_if(|c| c.anomaly == theta) {
            add(c);
        }
        let raw = fp_sum + window_sum;
        if raw > best_raw {
            best_raw = raw;
            best_threshold = theta;
        }
    }
    best_threshold
}

/// `100·(S − S_null)/(S_perfect − S_null)` with `S_perfect = windows·A_TP`
/// and `S_null = −windows·A_FN` (§6); `None` for a corpus without windows.
pub fn normalized_score(raw: f64, windows: usize, costs: Costs) -> Option<f64> {
    let w = windows as f64;
    let (perfect, null) = (costs.tp * w, -costs.fn_ * w);
    (perfect > null).then(|| 100.0 * (raw - null) / (perfect - null))
}

/// A detector's result for one profile: optimised threshold, raw and
/// normalised scores, and the per-file breakdown at that threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileScore {
    /// Profile name.
    pub profile: String,
    /// The corpus score at the optimised threshold.
    pub corpus: CorpusScore,
    /// NAB score: 0 = null detector, 100 = perfect.
    pub normalized: f64,
}

/// Optimises the threshold for `costs` and scores the corpus there. The
/// reported raw score is re-summed per file at θ*, not taken from the
/// sweep's running sums, so it does not carry their rounding.
pub fn score_profile(
    files: &[FileInput<'_>],
    profile: &str,
    costs: Costs,
) -> Result<ProfileScore, NabError> {
    score_profile_at(files, profile, costs, optimize_threshold(files, costs))
}

/// Scores the corpus at a given threshold, e.g. one of NAB's stored ones
/// (§7), and normalises.
pub fn score_profile_at(
    files: &[FileInput<'_>],
    profile: &str,
    costs: Costs,
    threshold: f64,
) -> Result<ProfileScore, NabError> {
    let corpus = score_corpus(files, costs, threshold);
    let normalized =
        normalized_score(corpus.raw, corpus.windows(), costs).ok_or(NabError::NoWindows)?;
    Ok(ProfileScore {
        profile: profile.to_owned(),
        corpus,
        normalized,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const STANDARD: Costs = Costs {
        tp: 1.0,
        fp: 0.11,
        fn_: 1.0,
    };

    #[test]
    fn a_one_row_window_gives_the_full_fp_penalty_after_it() {
        let s = row_scores(5, &[Window { start: 1, end: 1 }], STANDARD);
        assert_eq!(s.get(2).copied(), Some(-0.11));
    }

    #[test]
    fn nan_scores_never_detect() {
        let windows = [Window { start: 2, end: 3 }];
        let a = [f64::NAN; 10];
        let input = FileInput::new("k", &windows, &a).unwrap();
        assert_eq!(
            optimize_threshold(&[input], STANDARD),
            NO_DETECTION_THRESHOLD
        );
        assert!((score_file(&input, STANDARD, 0.0).raw + 1.0).abs() < 1e-12);
    }

    #[test]
    fn scores_above_the_no_detection_constant_still_allow_no_detections() {
        let windows: [Window; 0] = [];
        let a = [5.0; 10];
        let input = FileInput::new("k", &windows, &a).unwrap();
        let theta = optimize_threshold(&[input], STANDARD);
        assert!(theta > 5.0);
        assert_eq!(score_file(&input, STANDARD, theta).fp_rows, 0);
    }

    #[test]
    fn input_with_a_window_past_the_end_is_rejected() {
        let windows = [Window { start: 8, end: 12 }];
        assert!(FileInput::new("k", &windows, &[0.0; 10]).is_err());
    }
}
