//! Results files in NAB's own layout,
//! `<out>/<detector>/<category>/<detector>_<file>.csv`, so they can be
//! compared with (or scored by) NAB's tools.

use std::fs;
use std::path::{Path, PathBuf};

use super::NabError;
use super::data::{LabeledSeries, format_timestamp, parse_timestamp};

/// Where the results of `detector` for the file `key`
/// (`<category>/<file>.csv`) live under `root`.
pub fn results_path(root: &Path, detector: &str, key: &str) -> PathBuf {
    let (category, file) = key.split_once('/').unwrap_or(("", key));
    root.join(detector)
        .join(category)
        .join(format!("{detector}_{file}"))
}

/// Writes `timestamp,value,anomaly_score,label` (NAB's results columns; the
/// label is 1 inside a window), one row per input row, in order. Floats
/// use Rust's shortest round-trip form, so reading back is exact.
pub fn write_results(
    path: &Path,
    file: &LabeledSeries,
    anomaly_scores: &[f64],
) -> Result<(), NabError> {
    let io = |cause| NabError::Io {
        path: path.to_path_buf(),
        cause,
    };
    let csv_error = |cause| NabError::Csv {
        path: path.to_path_buf(),
        cause,
    };
    if anomaly_scores.len() != file.series.len() {
        return Err(NabError::Input {
            key: file.series.key.clone(),
            reason: format!(
                "{} scores for {} rows",
                anomaly_scores.len(),
                file.series.len()
            ),
        });
    }
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let mut writer = csv::Writer::from_path(path).map_err(csv_error)?;
    writer
        .write_record(["timestamp", "value", "anomaly_score", "label"])
        .map_err(csv_error)?;
    let mut windows = file.windows.iter().peekable();
    for (i, ((&ts, &value), &score)) in file
        .series
        .timestamps
        .iter()
        .zip(&file.series.values)
        .zip(anomaly_scores)
        .enumerate()
    {
        while windows.next_if(|w| w.end < i).is_some() {}
        let label = windows.peek().is_some_and(|w| w.contains(i));
        let ts = format_timestamp(ts).ok_or_else(|| NabError::Input {
            key: file.series.key.clone(),
            reason: format!("row {i}: timestamp {ts} ms out of range"),
        })?;
        writer
            .write_record([
                ts,
                value.to_string(),
                score.to_string(),
                u8::from(label).to_string(),
            ])
            .map_err(csv_error)?;
    }
    writer.flush().map_err(io)
}

/// Reads the `anomaly_score` column of a results file, checking that it has
/// one row per data row with the same timestamps, in order. Other columns
/// (NAB adds `label` and per-profile scores) are ignored.
pub fn read_results(path: &Path, file: &LabeledSeries) -> Result<Vec<f64>, NabError> {
    let csv_error = |cause| NabError::Csv {
        path: path.to_path_buf(),
        cause,
    };
    let malformed = |line: u64, reason: String| NabError::Malformed {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut reader = csv::Reader::from_path(path).map_err(csv_error)?;
    let headers = reader.headers().map_err(csv_error)?;
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| malformed(1, format!("no {name:?} column")))
    };
    let (ts_col, score_col) = (column("timestamp")?, column("anomaly_score")?);
    let rows = file.series.len();
    let mut scores = Vec::with_capacity(rows);
    for record in reader.records() {
        let record = record.map_err(csv_error)?;
        let line = record.position().map_or(0, csv::Position::line);
        let i = scores.len();
        let (Some(ts), Some(score)) = (record.get(ts_col), record.get(score_col)) else {
            return Err(malformed(line, "missing field".to_owned()));
        };
        let expected = file.series.timestamps.get(i).copied().ok_or_else(|| {
            malformed(line, format!("more rows than the {rows} of the data file"))
        })?;
        if parse_timestamp(ts) != Some(expected) {
            return Err(malformed(
                line,
                format!("timestamp {ts:?} differs from data row {i}"),
            ));
        }
        let score: f64 = score
            .trim()
            .parse()
            .map_err(|_| malformed(line, format!("anomaly_score {score:?} is not a number")))?;
        if score.is_nan() {
            return Err(malformed(line, "anomaly_score is NaN".to_owned()));
        }
        scores.push(score);
    }
    if scores.len() != rows {
        return Err(NabError::Invalid {
            path: path.to_path_buf(),
            reason: format!("{} rows, the data file has {rows}", scores.len()),
        });
    }
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nab::data::{Series, Window};

    #[test]
    fn results_round_trip_and_follow_nab_layout() {
        let root = std::env::temp_dir().join(format!("nab-results-test-{}", std::process::id()));
        let series = Series {
            key: "cat/f.csv".to_owned(),
            timestamps: vec![0, 300_000, 600_000, 900_000],
            values: vec![1.0, 2.5, -3.0, 1e-7],
        };
        let file = LabeledSeries {
            series,
            windows: vec![Window { start: 1, end: 2 }],
        };
        let scores = [0.0, 0.1, 1.0 / 3.0, 0.999_999_999_999_9];
        let path = results_path(&root, "det", "cat/f.csv");
        assert_eq!(path, root.join("det/cat/det_f.csv"));
        write_results(&path, &file, &scores).unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("timestamp,value,anomaly_score,label\n1970-01-01 00:00:00,1,0,0\n1970-01-01 00:05:00,2.5,0.1,1\n"), "{text}");
        assert_eq!(read_results(&path, &file).unwrap(), scores);

        let mut short = file.clone();
        short.series.timestamps.pop();
        short.series.values.pop();
        assert!(
            read_results(&path, &short)
                .unwrap_err()
                .to_string()
                .contains("more rows")
        );
        fs::write(
            &path,
            "timestamp,anomaly_score\n1970-01-01 00:00:00,0\n1970-01-01 00:06:00,0\n",
        )
        .unwrap();
        assert!(
            read_results(&path, &file)
                .unwrap_err()
                .to_string()
                .contains(":3:")
        );
        fs::remove_dir_all(&root).unwrap();
    }
}
