//! `tributary-edge detect`: runs the core's detector ensemble over a CSV
//! recording, one detector state per value column, and writes each row's
//! anomaly score and alert flag.
//!
//! It is the same code the gateway runs on live readings, so a user can try
//! thresholds on their own history before deploying them. Input is streamed
//! (memory does not grow with the file) and every row in comes out, in
//! order: a cell that is empty or not a finite number gets an empty score,
//! is counted, and does not touch the detector's state.

use std::fmt::Write as _;
use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use tributary_core::detect::{
    AlertEvent, AlertPolicy, AlertState, Detector, Ensemble, EnsembleConfig,
};
use tributary_core::ids::Timestamp;

/// How timestamps in the time column are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TimeFormat {
    /// Any of the below, decided per cell.
    Auto,
    /// RFC 3339 / ISO 8601 with an offset (`2024-05-01T12:00:00Z`).
    Rfc3339,
    /// A civil date-time taken as UTC (`2024-05-01 12:00:00`, `T` also
    /// accepted, optional fraction).
    Civil,
    /// Seconds since the Unix epoch (fractions allowed).
    UnixS,
    /// Milliseconds since the Unix epoch.
    UnixMs,
}

/// What to read and how.
#[derive(Clone, Debug)]
pub struct Options {
    /// Field separator (one byte).
    pub delimiter: u8,
    /// Whether the first row names the columns.
    pub header: bool,
    /// The time column: a header name or a 0-based index.
    pub time_column: String,
    /// The value columns; empty means every column but the time column.
    pub value_columns: Vec<String>,
    /// How to read the time column.
    pub time_format: TimeFormat,
    /// Score at or above which a row is flagged.
    pub threshold: f64,
    /// Size of the input in bytes, when known, for the progress line.
    pub input_len: Option<u64>,
    /// How often to print progress to stderr; `None` for never.
    pub progress_every: Option<Duration>,
}

/// What a run saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Data rows read (and written).
    pub rows: u64,
    /// Per value column, in output order.
    pub columns: Vec<ColumnReport>,
    /// Rows whose timestamp could not be read (scored as "no score").
    pub bad_timestamps: u64,
}

/// What one value column saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ColumnReport {
    /// The column's name (`colN` without a header).
    pub name: String,
    /// Rows flagged (score at or above the threshold).
    pub alert_rows: u64,
    /// Alerts opened: runs of flagged rows merged by the gateway's
    /// hysteresis ([`AlertPolicy`]), i.e. what an operator would be sent.
    pub alerts_opened: u64,
    /// Cells that were empty or not a finite number (no score).
    pub skipped: u64,
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum ScoreCsvError {
    /// A named column is not in the header, or an index is out of range.
    #[error("no column {0:?} in the input (columns: {1})")]
    UnknownColumn(String, String),
    /// Column names were given but the input has no header row.
    #[error("column {0:?} is a name, but --no-header was given: use a 0-based index")]
    NameWithoutHeader(String),
    /// No value column is left to score.
    #[error("no value column to score")]
    NoValueColumns,
    /// The CSV itself is broken (e.g. a row with the wrong number of fields).
    #[error("input line {line}: {source}")]
    Csv {
        /// 1-based line of the input.
        line: u64,
        /// The parser's complaint.
        source: csv::Error,
    },
    /// Reading or writing failed.
    #[error(transparent)]
    Io(#[from] io::Error),
}

/// Streams `input` to `output`, scoring every value column.
pub fn run(input: impl Read, output: impl Write, opts: &Options) -> Result<Report, ScoreCsvError> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(opts.delimiter)
        .has_headers(opts.header)
        .flexible(false)
        .from_reader(input);
    let headers: Vec<String> = if opts.header {
        reader
            .headers()
            .map_err(|source| ScoreCsvError::Csv { line: 1, source })?
            .iter()
            .map(str::to_owned)
            .collect()
    } else {
        Vec::new()
    };
    let mut records = reader.records().peekable();
    // Without a header the width comes from the first row.
    let width = if opts.header {
        headers.len()
    } else {
        match records.peek() {
            Some(Ok(r)) => r.len(),
            _ => 0,
        }
    };
    let time_idx = resolve(&opts.time_column, &headers, width, opts.header)?;
    let value_idx: Vec<usize> = if opts.value_columns.is_empty() {
        (0..width).filter(|&i| i != time_idx).collect()
    } else {
        opts.value_columns
            .iter()
            .map(|c| resolve(c, &headers, width, opts.header))
            .collect::<Result<_, _>>()?
    };
    if value_idx.is_empty() {
        return Err(ScoreCsvError::NoValueColumns);
    }
    let name_of = |i: usize| headers.get(i).cloned().unwrap_or_else(|| format!("col{i}"));

    let mut writer = csv::WriterBuilder::new()
        .delimiter(opts.delimiter)
        .from_writer(output);
    let mut out_header = vec![name_of(time_idx)];
    for &i in &value_idx {
        let n = name_of(i);
        out_header.extend([n.clone(), format!("{n}_score"), format!("{n}_alert")]);
    }
    writer.write_record(&out_header).map_err(csv_io)?;

    // Boxed: the ensemble's state is ~1.8 KB, and a wide file has many.
    let mut detectors: Vec<Box<Ensemble>> = value_idx
        .iter()
        .map(|_| Box::new(Ensemble::new(EnsembleConfig::DEFAULT)))
        .collect();
    let policy = AlertPolicy {
        open: opts.threshold,
        close: opts.threshold.min(AlertPolicy::DEFAULT.close),
        ..AlertPolicy::DEFAULT
    };
    let mut alerts = vec![AlertState::new(); value_idx.len()];
    let mut report = Report {
        columns: value_idx
            .iter()
            .map(|&i| ColumnReport {
                name: name_of(i),
                ..ColumnReport::default()
            })
            .collect(),
        ..Report::default()
    };
    let started = Instant::now();
    let mut last_progress = started;
    let mut row_out: Vec<String> = Vec::with_capacity(1 + 3 * value_idx.len());
    for record in records {
        let record = record.map_err(|source| ScoreCsvError::Csv {
            line: source.position().map_or(0, |p| p.line()),
            source,
        })?;
        report.rows += 1;
        let time_text = record.get(time_idx).unwrap_or("");
        let t = parse_time(time_text, opts.time_format);
        if t.is_none() {
            report.bad_timestamps += 1;
        }
        row_out.clear();
        row_out.push(time_text.to_owned());
        for (k, &i) in value_idx.iter().enumerate() {
            let cell = record.get(i).unwrap_or("");
            row_out.push(cell.to_owned());
            let value = cell.trim().parse::<f64>().ok().filter(|x| x.is_finite());
            match (t, value, detectors.get_mut(k), report.columns.get_mut(k)) {
                (Some(t), Some(x), Some(det), Some(col)) => {
                    let score = det.step(t, x);
                    let alert = score >= opts.threshold;
                    col.alert_rows += u64::from(alert);
                    if let Some(state) = alerts.get_mut(k)
                        && let Some(AlertEvent::Opened { .. }) = state.step(&policy, t, score)
                    {
                        col.alerts_opened += 1;
                    }
                    let mut s = String::new();
                    let _ = write!(s, "{score:.6}");
                    row_out.push(s);
                    row_out.push(if alert { "1".into() } else { "0".into() });
                }
                (_, v, _, col) => {
                    if v.is_none()
                        && let Some(col) = col
                    {
                        col.skipped += 1;
                    }
                    row_out.push(String::new());
                    row_out.push(String::new());
                }
            }
        }
        writer.write_record(&row_out).map_err(csv_io)?;
        if let Some(every) = opts.progress_every
            && last_progress.elapsed() >= every
        {
            last_progress = Instant::now();
            let byte = record.position().map(|p| p.byte());
            eprintln!("{}", progress_line(&report, byte, opts.input_len, started));
        }
    }
    writer.flush()?;
    Ok(report)
}

fn progress_line(report: &Report, byte: Option<u64>, len: Option<u64>, started: Instant) -> String {
    let rate = report.rows as f64 / started.elapsed().as_secs_f64().max(1e-9);
    let mut line = format!("detect: {} rows ({rate:.0} rows/s)", report.rows);
    if let (Some(b), Some(len)) = (byte, len.filter(|&l| l > 0)) {
        let _ = write!(line, ", {:.1}% of input", 100.0 * b as f64 / len as f64);
    }
    line
}

fn csv_io(e: csv::Error) -> ScoreCsvError {
    ScoreCsvError::Io(io::Error::other(e))
}

/// A column given by header name, or by 0-based index.
fn resolve(
    col: &str,
    headers: &[String],
    width: usize,
    header: bool,
) -> Result<usize, ScoreCsvError> {
    if let Some(i) = headers.iter().position(|h| h == col) {
        return Ok(i);
    }
    match col.parse::<usize>() {
        Ok(i) if i < width => Ok(i),
        Ok(_) => Err(ScoreCsvError::UnknownColumn(
            col.to_owned(),
            format!("{width} columns"),
        )),
        Err(_) if !header => Err(ScoreCsvError::NameWithoutHeader(col.to_owned())),
        Err(_) => Err(ScoreCsvError::UnknownColumn(
            col.to_owned(),
            headers.join(", "),
        )),
    }
}

/// Reads one timestamp as ms since the epoch; `None` if it is not one.
pub fn parse_time(text: &str, format: TimeFormat) -> Option<Timestamp> {
    let text = text.trim();
    let ms = match format {
        TimeFormat::Rfc3339 => rfc3339(text),
        TimeFormat::Civil => civil(text),
        TimeFormat::UnixS => unix(text, 1000.0),
        TimeFormat::UnixMs => unix(text, 1.0),
        // A bare number is seconds unless it is too large to be (10^11 s
        // is the year 5138; 10^11 ms is 1973): the usual epoch heuristic.
        TimeFormat::Auto => rfc3339(text).or_else(|| civil(text)).or_else(|| {
            let x: f64 = text.parse().ok()?;
            unix(text, if x.abs() < 1e11 { 1000.0 } else { 1.0 })
        }),
    }?;
    u64::try_from(ms).ok().map(Timestamp)
}

fn rfc3339(text: &str) -> Option<i64> {
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

fn civil(text: &str) -> Option<i64> {
    let dt: jiff::civil::DateTime = text.parse().ok()?;
    dt.to_zoned(jiff::tz::TimeZone::UTC)
        .ok()
        .map(|z| z.timestamp().as_millisecond())
}

fn unix(text: &str, ms_per_unit: f64) -> Option<i64> {
    let x: f64 = text.parse().ok()?;
    let ms = (x * ms_per_unit).round();
    // Beyond ±2^53 the conversion is no longer exact; such times are not
    // real recordings.
    (ms.is_finite() && ms.abs() < 9.0e15).then_some(ms as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            delimiter: b',',
            header: true,
            time_column: "timestamp".into(),
            value_columns: Vec::new(),
            time_format: TimeFormat::Auto,
            threshold: 0.5,
            input_len: None,
            progress_every: None,
        }
    }

    #[test]
    fn time_formats() {
        let want = Some(Timestamp(1_714_564_800_000)); // 2024-05-01T12:00:00Z
        assert_eq!(parse_time("2024-05-01T12:00:00Z", TimeFormat::Auto), want);
        assert_eq!(
            parse_time("2024-05-01T14:00:00+02:00", TimeFormat::Rfc3339),
            want
        );
        assert_eq!(parse_time("2024-05-01 12:00:00", TimeFormat::Auto), want);
        assert_eq!(parse_time("2024-05-01T12:00:00", TimeFormat::Civil), want);
        assert_eq!(parse_time("1714564800", TimeFormat::Auto), want);
        assert_eq!(parse_time("1714564800000", TimeFormat::Auto), want);
        assert_eq!(
            parse_time("1714564800.5", TimeFormat::UnixS),
            Some(Timestamp(1_714_564_800_500))
        );
        assert_eq!(parse_time("1714564800000", TimeFormat::UnixMs), want);
        assert_eq!(parse_time("yesterday", TimeFormat::Auto), None);
        assert_eq!(parse_time("-5", TimeFormat::UnixS), None);
        assert_eq!(parse_time("1e300", TimeFormat::UnixS), None);
        assert_eq!(parse_time("2024-02-30 00:00:00", TimeFormat::Civil), None);
    }

    #[test]
    fn every_row_comes_out_and_bad_cells_are_counted() {
        let mut input = String::from("timestamp,temp,hum\n");
        for i in 0..50 {
            let temp = if i == 40 {
                "oops".to_owned()
            } else {
                format!("{}", 20 + i % 3)
            };
            input.push_str(&format!(
                "{},{temp},{}\n",
                1_700_000_000 + i * 60,
                50 + i % 2
            ));
        }
        input.push_str("not-a-time,21,50\n");
        let mut out = Vec::new();
        let r = run(input.as_bytes(), &mut out, &opts()).unwrap();
        assert_eq!(r.rows, 51);
        assert_eq!(r.bad_timestamps, 1);
        assert_eq!(
            r.columns
                .iter()
                .map(|c| (c.name.as_str(), c.skipped))
                .collect::<Vec<_>>(),
            [("temp", 1), ("hum", 0)]
        );
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 52);
        assert_eq!(
            lines[0],
            "timestamp,temp,temp_score,temp_alert,hum,hum_score,hum_alert"
        );
        assert!(lines[41].starts_with("1700002400,oops,,,"), "{}", lines[41]);
        assert!(
            lines[51].starts_with("not-a-time,21,,,50,,"),
            "{}",
            lines[51]
        );
    }

    #[test]
    fn columns_by_index_without_header_and_other_delimiters() {
        let input = "1700000000;5\n1700000060;5\n";
        let o = Options {
            delimiter: b';',
            header: false,
            time_column: "0".into(),
            value_columns: vec!["1".into()],
            ..opts()
        };
        let mut out = Vec::new();
        let r = run(input.as_bytes(), &mut out, &o).unwrap();
        assert_eq!(r.rows, 2);
        assert!(
            String::from_utf8(out)
                .unwrap()
                .starts_with("col0;col1;col1_score;col1_alert\n")
        );
        let named = Options {
            time_column: "ts".into(),
            ..o
        };
        assert!(matches!(
            run(input.as_bytes(), Vec::new(), &named),
            Err(ScoreCsvError::NameWithoutHeader(_))
        ));
    }

    #[test]
    fn unknown_columns_and_ragged_rows_are_clear_errors() {
        let o = Options {
            value_columns: vec!["pressure".into()],
            ..opts()
        };
        let e = run("timestamp,temp\n1,2\n".as_bytes(), Vec::new(), &o).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no column \"pressure\" in the input (columns: timestamp, temp)"
        );
        let e = run("timestamp,temp\n1,2\n3\n".as_bytes(), Vec::new(), &opts()).unwrap_err();
        assert!(matches!(e, ScoreCsvError::Csv { line: 3, .. }), "{e}");
    }

    #[test]
    fn progress_line_shows_rows_and_share_of_input() {
        let report = Report {
            rows: 1234,
            ..Report::default()
        };
        let line = progress_line(&report, Some(250), Some(1000), Instant::now());
        assert!(line.starts_with("detect: 1234 rows ("), "{line}");
        assert!(line.ends_with(", 25.0% of input"), "{line}");
        assert!(!progress_line(&report, Some(250), None, Instant::now()).contains('%'));
    }

    #[test]
    fn a_spike_after_steady_data_is_flagged() {
        let mut input = String::from("timestamp,v\n");
        for i in 0..2000u64 {
            let v = if i == 1500 {
                100.0
            } else {
                10.0 + (i % 7) as f64 * 0.1
            };
            input.push_str(&format!("{},{v}\n", 1_700_000_000 + i * 60));
        }
        let mut out = Vec::new();
        let r = run(
            input.as_bytes(),
            &mut out,
            &Options {
                threshold: 0.9,
                ..opts()
            },
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        let spike = text.lines().nth(1501).unwrap();
        assert!(spike.ends_with(",1"), "{spike}");
        assert!(r.columns[0].alert_rows >= 1);
        assert_eq!(r.columns[0].alerts_opened, 1, "{:?}", r.columns);
    }
}
