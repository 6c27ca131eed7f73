//! Loading the NAB corpus: the 58 series, their anomaly windows and the cost
//! profiles, validated once so that scoring can index without checks failing.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};

use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};

use super::NabError;

/// Timestamp layout of NAB's data files (no time zone; read as UTC).
const TIMESTAMP_FORMAT: &str = "%Y-%m-%d %H:%M:%S";

/// Parses a NAB timestamp (`YYYY-MM-DD HH:MM:SS`) to milliseconds since the
/// Unix epoch, reading it as UTC; `None` if it is not exactly that layout or
/// not a real date and time.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    // The fixed layout is split by hand because jiff's general `strptime`
    // dominated corpus loading in debug builds (3 s of `cargo test`); jiff
    // still validates the calendar and converts to the epoch.
    let b = text.as_bytes();
    if b.len() != 19
        || b.get(4) != Some(&b'-')
        || b.get(7) != Some(&b'-')
        || b.get(10) != Some(&b' ')
        || b.get(13) != Some(&b':')
        || b.get(16) != Some(&b':')
    {
        return None;
    }
    let field = |range: std::ops::Range<usize>| -> Option<i16> {
        let digits = text.get(range)?;
        if !digits.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    let (year, month, day) = (field(0..4)?, field(5..7)?, field(8..10)?);
    let (hour, minute, second) = (field(11..13)?, field(14..16)?, field(17..19)?);
    let datetime = DateTime::new(
        year,
        i8::try_from(month).ok()?,
        i8::try_from(day).ok()?,
        i8::try_from(hour).ok()?,
        i8::try_from(minute).ok()?,
        i8::try_from(second).ok()?,
        0,
    )
    .ok()?;
    let instant = Offset::UTC.to_timestamp(datetime).ok()?;
    Some(instant.as_millisecond())
}

/// Formats milliseconds since the epoch back to NAB's timestamp layout.
pub fn format_timestamp(ms: i64) -> Option<String> {
    let instant = jiff::Timestamp::from_millisecond(ms).ok()?;
    Some(
        instant
            .to_zoned(TimeZone::UTC)
            .strftime(TIMESTAMP_FORMAT)
            .to_string(),
    )
}

/// One anomaly window as inclusive row indices (`start ≤ end`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First row inside the window.
    pub start: usize,
    /// Last row inside the window (inclusive).
    pub end: usize,
}

impl Window {
    /// Number of rows in the window, `end − start + 1`.
    pub fn width(&self) -> usize {
        // Saturating so that an unchecked, inverted window cannot panic;
        // `check_windows` rejects those before scoring.
        self.end.saturating_sub(self.start).saturating_add(1)
    }

    /// Whether row `i` lies inside the window.
    pub fn contains(&self, i: usize) -> bool {
        self.start <= i && i <= self.end
    }
}

/// Checks the invariants the scorer relies on: every window inside the
/// file, `start ≤ end`, sorted and non-overlapping. Returns a reason.
pub fn check_windows(rows: usize, windows: &[Window]) -> Result<(), String> {
    let mut next_free = 0;
    for (k, w) in windows.iter().enumerate() {
        if w.start > w.end {
            return Err(format!(
                "window {k} ends (row {}) before it starts (row {})",
                w.end, w.start
            ));
        }
        if w.end >= rows {
            return Err(format!(
                "window {k} ends at row {} but the file has {rows} rows",
                w.end
            ));
        }
        if w.start < next_free {
            return Err(format!(
                "window {k} (rows {}..={}) overlaps or precedes the previous one",
                w.start, w.end
            ));
        }
        next_free = w.end + 1;
    }
    Ok(())
}

/// One NAB data file: rows in file order.
#[derive(Debug, Clone)]
pub struct Series {
    /// `<category>/<file>.csv`, the key used by NAB's label files.
    pub key: String,
    /// Row timestamps, ms since the epoch (UTC).
    pub timestamps: Vec<i64>,
    /// Row values.
    pub values: Vec<f64>,
}

impl Series {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether the file has no rows.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Category folder, e.g. `realTweets`.
    pub fn category(&self) -> &str {
        self.key
            .split_once('/')
            .map_or("", |(category, _)| category)
    }

    /// File name inside the category, e.g. `Twitter_volume_AAPL.csv`.
    pub fn file_name(&self) -> &str {
        self.key
            .split_once('/')
            .map_or(self.key.as_str(), |(_, file)| file)
    }

    /// Reads a `timestamp,value` CSV file.
    pub fn load(path: &Path, key: &str) -> Result<Self, NabError> {
        let malformed = |line: u64, reason: String| NabError::Malformed {
            path: path.to_path_buf(),
            line,
            reason,
        };
        let mut reader = csv::Reader::from_path(path).map_err(|cause| NabError::Csv {
            path: path.to_path_buf(),
            cause,
        })?;
        let headers = reader.headers().map_err(|cause| NabError::Csv {
            path: path.to_path_buf(),
            cause,
        })?;
        if headers != vec!["timestamp", "value"] {
            return Err(malformed(
                1,
                format!(
                    "header is {:?}, expected \"timestamp,value\"",
                    headers.as_slice()
                ),
            ));
        }
        let mut series = Self {
            key: key.to_owned(),
            timestamps: Vec::new(),
            values: Vec::new(),
        };
        for record in reader.records() {
            let record = record.map_err(|cause| NabError::Csv {
                path: path.to_path_buf(),
                cause,
            })?;
            let line = record.position().map_or(0, csv::Position::line);
            let (Some(ts), Some(value), None) = (record.get(0), record.get(1), record.get(2))
            else {
                return Err(malformed(
                    line,
                    format!("expected 2 fields, found {}", record.len()),
                ));
            };
            let ts = parse_timestamp(ts).ok_or_else(|| {
                malformed(line, format!("timestamp {ts:?} is not YYYY-MM-DD HH:MM:SS"))
            })?;
            let value: f64 = value
                .trim()
                .parse()
                .map_err(|_| malformed(line, format!("value {value:?} is not a number")))?;
            if !value.is_finite() {
                return Err(malformed(line, format!("value {value} is not finite")));
            }
            series.timestamps.push(ts);
            series.values.push(value);
        }
        Ok(series)
    }

    /// Row index of each timestamp; with duplicates, the first row wins.
    fn row_index(&self) -> HashMap<i64, usize> {
        let mut index = HashMap::with_capacity(self.len());
        for (i, &ts) in self.timestamps.iter().enumerate() {
            index.entry(ts).or_insert(i);
        }
        index
    }
}

/// A series with its anomaly windows, validated by [`check_windows`].
#[derive(Debug, Clone)]
pub struct LabeledSeries {
    /// The rows.
    pub series: Series,
    /// Windows as row indices, sorted, non-overlapping, inside the file.
    pub windows: Vec<Window>,
}

/// The whole NAB corpus.
#[derive(Debug, Clone)]
pub struct Corpus {
    /// Files in label-file key order (category, then name).
    pub files: Vec<LabeledSeries>,
}

impl Corpus {
    /// Loads every file listed in `labels/combined_windows.json` from
    /// `<dir>/data/`, mapping window timestamps to rows. A CSV under `data/`
    /// with no label entry is an error too: it would silently drop out of
    /// the corpus score.
    pub fn load(dir: &Path) -> Result<Self, NabError> {
        let labels_path = dir.join("labels/combined_windows.json");
        let labels: BTreeMap<String, Vec<(String, String)>> = read_json(&labels_path)?;
        check_no_unlabelled_files(&dir.join("data"), &labels, &labels_path)?;
        let mut files = Vec::with_capacity(labels.len());
        for (key, raw_windows) in &labels {
            let series = Series::load(&dir.join("data").join(key), key)?;
            let windows = map_windows(&series, raw_windows, &labels_path)?;
            files.push(LabeledSeries { series, windows });
        }
        Ok(Self { files })
    }

    /// Number of anomaly windows over all files (116 for NAB v1.1).
    pub fn window_count(&self) -> usize {
        self.files.iter().map(|f| f.windows.len()).sum()
    }

    /// Number of rows over all files (365,558 for NAB v1.1).
    pub fn row_count(&self) -> usize {
        self.files.iter().map(|f| f.series.len()).sum()
    }
}

fn check_no_unlabelled_files(
    data: &Path,
    labels: &BTreeMap<String, Vec<(String, String)>>,
    labels_path: &Path,
) -> Result<(), NabError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |cause| NabError::Io { path, cause }
    };
    for category in fs::read_dir(data).map_err(io(data))? {
        let category = category.map_err(io(data))?.path();
        if !category.is_dir() {
            continue;
        }
        for file in fs::read_dir(&category).map_err(io(&category))? {
            let file = file.map_err(io(&category))?.path();
            if file.extension().is_none_or(|e| e != "csv") {
                continue;
            }
            let key = match (category.file_name(), file.file_name()) {
                (Some(c), Some(f)) => format!("{}/{}", c.to_string_lossy(), f.to_string_lossy()),
                _ => continue,
            };
            if !labels.contains_key(&key) {
                return Err(NabError::Invalid {
                    path: labels_path.to_path_buf(),
                    reason: format!("no entry for data file {key}"),
                });
            }
        }
    }
    Ok(())
}

fn map_windows(
    series: &Series,
    raw: &[(String, String)],
    labels_path: &Path,
) -> Result<Vec<Window>, NabError> {
    let index = series.row_index();
    let labels_error = |reason: String| NabError::Invalid {
        path: labels_path.to_path_buf(),
        reason: format!("{}: {reason}", series.key),
    };
    let row = |text: &str, k: usize| -> Result<usize, NabError> {
        // The JSON carries a microsecond fraction that is always zero;
        // anything else could not match a whole-second data row.
        let trimmed = text.strip_suffix(".000000").unwrap_or(text);
        let ms = parse_timestamp(trimmed).ok_or_else(|| {
            labels_error(format!(
                "window {k}: timestamp {text:?} is not YYYY-MM-DD HH:MM:SS[.000000]"
            ))
        })?;
        index
            .get(&ms)
            .copied()
            .ok_or_else(|| labels_error(format!("window {k}: timestamp {text:?} matches no row")))
    };
    let mut windows = Vec::with_capacity(raw.len());
    for (k, (start, end)) in raw.iter().enumerate() {
        windows.push(Window {
            start: row(start, k)?,
            end: row(end, k)?,
        });
    }
    check_windows(series.len(), &windows).map_err(labels_error)?;
    Ok(windows)
}

/// Reads a JSON file into `T`; parse errors carry line and column.
pub(super) fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, NabError> {
    let text = fs::read_to_string(path).map_err(|cause| NabError::Io {
        path: path.to_path_buf(),
        cause,
    })?;
    serde_json::from_str(&text).map_err(|cause| NabError::Json {
        path: PathBuf::from(path),
        cause,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_as_utc_ms_and_round_trip() {
        assert_eq!(parse_timestamp("1970-01-01 00:00:01"), Some(1000));
        assert_eq!(
            parse_timestamp("2014-04-10 07:15:00"),
            Some(1_397_114_100_000)
        );
        assert_eq!(
            format_timestamp(1_397_114_100_000).as_deref(),
            Some("2014-04-10 07:15:00")
        );
        assert_eq!(parse_timestamp("2014-04-10T07:15:00"), None);
        assert_eq!(parse_timestamp("2014-04-10 07:15:00.000000"), None);
        assert_eq!(parse_timestamp("2014-02-30 00:00:00"), None);
    }

    #[test]
    fn window_checks_reject_overlap_order_and_range() {
        let w = |start, end| Window { start, end };
        assert!(check_windows(10, &[w(1, 2), w(3, 9)]).is_ok());
        assert!(check_windows(10, &[w(1, 3), w(3, 4)]).is_err());
        assert!(check_windows(10, &[w(5, 6), w(1, 2)]).is_err());
        assert!(check_windows(10, &[w(5, 10)]).is_err());
        assert!(check_windows(10, &[w(5, 4)]).is_err());
    }

    #[test]
    fn malformed_csv_names_file_and_line() {
        let dir = std::env::temp_dir().join(format!("nab-data-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.csv");
        fs::write(
            &path,
            "timestamp,value\n2014-04-10 07:15:00,1\n2014-04-10 07:20:00,x\n",
        )
        .unwrap();
        let err = Series::load(&path, "c/bad.csv").unwrap_err().to_string();
        assert!(err.contains("bad.csv:3:"), "{err}");
        fs::write(&path, "timestamp,value\n2014-04-10 7:15,1\n").unwrap();
        let err = Series::load(&path, "c/bad.csv").unwrap_err().to_string();
        assert!(err.contains("bad.csv:2:"), "{err}");
        fs::write(&path, "time,value\n").unwrap();
        assert!(Series::load(&path, "c/bad.csv").is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
