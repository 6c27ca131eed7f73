//! CSV replay: one value column of a recording (a NAB series, a logger's
//! export) becomes the readings of one sensor, sent at the recorded pace
//! times a speed factor, or as fast as ingest takes them.
//!
//! Entry point: [`run`] with [`ReplayOptions`]. It returns when the file is
//! done (or on shutdown).
//!
//! - **Timestamps** keep the recorded event times; with `shift_to_now`,
//!   every time is shifted by the same amount so the first row maps to the
//!   moment the replay starts (useful to see a recording on live
//!   dashboards). Times are read as [`score_csv::parse_time`] reads them
//!   (`time_format`: `auto`, `rfc3339`, `civil`, `unix-s`, `unix-ms`).
//! - **Batches** are `batch_size` consecutive good rows, cut by count only,
//!   so batch *i* holds the same rows in every run. Each is a submission with
//!   origin `{source: "replay:<file name>", seq: i}`: a replay restarted
//!   after a crash or a reboot sends the same `(source, seq)` pairs again
//!   and the store drops them as duplicates instead of counting the rows
//!   twice. (Two different files with the same name share the source: give
//!   them different names.)
//! - **Pacing**: with `speed > 0`, a batch is sent once its last row is due
//!   (`first_row_time + (row_time - first_row_time) / speed` on the replay's
//!   clock), so no reading arrives before its time; choose a small
//!   `batch_size` for smooth real time. `speed = 0` sends as fast as ingest
//!   accepts.
//! - **Bad rows** (a time or value that does not parse, a NaN or infinite
//!   value, a row with the wrong number of fields) are skipped and counted
//!   in `tributary_readings_rejected_total{source="replay", reason}` with
//!   `bad_time`, `bad_value`, `non_finite` or `bad_row`; the first few are
//!   logged. They never stop the replay; only an unreadable file does.
//! - A progress line is logged at info every `progress_percent` % of the
//!   file's bytes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use actix::Recipient;
use clap::ValueEnum;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tributary_core::ids::{SensorId, Timestamp};

use super::{SourceError, Verdict, stopped, submit, wall_now};
use crate::ingest::Submit;
use crate::metrics::Metrics;
use crate::reading::{Item, Origin, Sample, SourceKind, Submission};
use crate::score_csv::{self, TimeFormat};

const KIND: SourceKind = SourceKind::Replay;

/// Bad rows logged one by one before the replay only counts them.
const LOGGED_BAD_ROWS: u64 = 10;

/// Options of a CSV replay.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReplayOptions {
    /// The CSV file (with a header row).
    pub path: PathBuf,
    /// The time column: a header name or a 0-based index.
    pub time_column: String,
    /// The value column: a header name or a 0-based index.
    pub value_column: String,
    /// How times are written: `auto`, `rfc3339`, `civil`, `unix-s`,
    /// `unix-ms`.
    pub time_format: String,
    /// The sensor the values belong to.
    pub sensor: u32,
    /// Replay speed: 1.0 is the recorded pace, 60.0 a minute per second, 0
    /// as fast as ingest accepts.
    pub speed: f64,
    /// Rows per submission (1..=10 000).
    pub batch_size: usize,
    /// Shift all times so the first row is "now".
    pub shift_to_now: bool,
    /// Log progress every this many percent of the file (0: never).
    pub progress_percent: u8,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            path: PathBuf::new(),
            time_column: "timestamp".into(),
            value_column: "value".into(),
            time_format: "auto".into(),
            sensor: 1,
            speed: 1.0,
            batch_size: 100,
            shift_to_now: false,
            progress_percent: 10,
        }
    }
}

impl ReplayOptions {
    /// Checks every option (all problems at once) and reads the time format.
    pub fn resolve(&self) -> Result<TimeFormat, SourceError> {
        let mut problems = Vec::new();
        if self.path.as_os_str().is_empty() {
            problems.push("path is required".to_owned());
        }
        if !(self.speed.is_finite() && self.speed >= 0.0) {
            problems.push(format!(
                "speed = {} (a number >= 0; 0 = as fast as possible)",
                self.speed
            ));
        }
        if !(1..=10_000).contains(&self.batch_size) {
            problems.push(format!("batch_size = {} (1..=10000)", self.batch_size));
        }
        let format = TimeFormat::from_str(&self.time_format, true);
        if format.is_err() {
            problems.push(format!(
                "time_format = `{}` (auto, rfc3339, civil, unix-s or unix-ms)",
                self.time_format
            ));
        }
        match format {
            Ok(f) if problems.is_empty() => Ok(f),
            _ => Err(SourceError::Config {
                source_kind: "replay",
                detail: problems.join("; "),
            }),
        }
    }
}

/// One row read by the reader thread.
enum Row {
    /// A good reading, and the byte offset after it.
    Good {
        ts: Timestamp,
        value: f64,
        byte: u64,
    },
    /// A skipped row: its line and why.
    Bad {
        line: u64,
        reason: &'static str,
        byte: u64,
    },
}

/// Replays the file until its end or `shutdown`; see the [module docs](self).
///
/// `Err` for invalid options or a file that cannot be read (missing, no
/// such column, an I/O error midway); bad rows never stop it.
pub async fn run(
    opts: ReplayOptions,
    ingest: Recipient<Submit>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SourceError> {
    let format = opts.resolve()?;
    let path_text = opts.path.display().to_string();
    let name = opts
        .path
        .file_name()
        .map_or_else(|| path_text.clone(), |n| n.to_string_lossy().into_owned());
    let source = format!("replay:{name}");
    let file = std::fs::File::open(&opts.path).map_err(|error| SourceError::Io {
        path: path_text.clone(),
        error,
    })?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    let (rows_tx, mut rows) = mpsc::channel::<Result<Row, SourceError>>(1024);
    let (time_col, value_col) = (opts.time_column.clone(), opts.value_column.clone());
    let reader_path = opts.path.clone();
    // Blocking file reads stay off the executor; the channel bounds how far
    // the reader runs ahead.
    std::thread::Builder::new()
        .name("replay-read".into())
        .spawn(move || read_rows(file, &reader_path, &time_col, &value_col, format, &rows_tx))
        .map_err(|error| SourceError::Io {
            path: path_text.clone(),
            error,
        })?;
    tracing::info!(file = %path_text, source = %source, speed = opts.speed, "replay started");

    let sensor = SensorId(opts.sensor);
    let started = Instant::now();
    let mut first_ts: Option<u64> = None;
    let mut shift: i128 = 0;
    let mut batch: Vec<Item> = Vec::with_capacity(opts.batch_size);
    let mut batch_due = started;
    let mut seq: u64 = 0;
    let (mut good, mut bad) = (0u64, 0u64);
    let step = u64::from(opts.progress_percent);
    let mut next_progress = step;
    loop {
        let row = tokio::select! {
            biased;
            _ = stopped(&mut shutdown) => {
                tracing::info!(file = %path_text, rows = good, "replay stopped before the end");
                return Ok(());
            }
            r = rows.recv() => r,
        };
        let (row, byte) = match row {
            None => break,
            Some(Err(e)) => return Err(e),
            Some(Ok(row)) => match row {
                Row::Good { ts, value, byte } => ((ts, value), byte),
                Row::Bad { line, reason, byte } => {
                    bad += 1;
                    metrics
                        .readings_rejected
                        .get_or_create(&[("source", KIND.as_str()), ("reason", reason)])
                        .inc();
                    if bad <= LOGGED_BAD_ROWS {
                        tracing::warn!(file = %path_text, line, reason, "replay: row skipped");
                    }
                    progress(&path_text, byte, len, step, &mut next_progress, good);
                    continue;
                }
            },
        };
        let (ts, value) = row;
        good += 1;
        let t = ts.as_millis();
        let first = *first_ts.get_or_insert_with(|| {
            if opts.shift_to_now {
                shift = i128::from(wall_now().as_millis()) - i128::from(t);
            }
            t
        });
        if opts.speed > 0.0 {
            let offset_ms = t.saturating_sub(first) as f64 / opts.speed;
            // Capped at ~30 years so the addition cannot overflow.
            batch_due = started + Duration::from_secs_f64((offset_ms / 1000.0).min(1e9));
        }
        let shifted = u64::try_from(i128::from(t) + shift).unwrap_or(0);
        batch.push(Item::Reading(Sample {
            sensor,
            ts: Timestamp::from_millis(shifted),
            value,
        }));
        if batch.len() >= opts.batch_size {
            let items = std::mem::take(&mut batch);
            if !send_batch(
                &ingest,
                &metrics,
                &source,
                seq,
                items,
                batch_due,
                &mut shutdown,
            )
            .await
            {
                return Ok(());
            }
            seq += 1;
        }
        progress(&path_text, byte, len, step, &mut next_progress, good);
    }
    if !batch.is_empty()
        && !send_batch(
            &ingest,
            &metrics,
            &source,
            seq,
            batch,
            batch_due,
            &mut shutdown,
        )
        .await
    {
        return Ok(());
    }
    tracing::info!(file = %path_text, rows = good, skipped = bad, "replay finished");
    Ok(())
}

/// Waits until the batch is due, then submits it; `false` if the replay
/// must stop (shutdown, ingest shutting down).
async fn send_batch(
    ingest: &Recipient<Submit>,
    metrics: &Metrics,
    source: &str,
    seq: u64,
    items: Vec<Item>,
    due: Instant,
    shutdown: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        biased;
        _ = stopped(shutdown) => return false,
        _ = tokio::time::sleep_until(due) => {}
    }
    let submission = Submission {
        origin: Some(Origin {
            source: source.to_owned(),
            seq,
        }),
        items,
    };
    let what = format!("{source} batch {seq}");
    let verdict = tokio::select! {
        biased;
        _ = stopped(shutdown) => return false,
        v = submit(ingest, KIND, submission, metrics, &what) => v,
    };
    verdict != Verdict::ShuttingDown
}

fn progress(path: &str, byte: u64, len: u64, step: u64, next: &mut u64, rows: u64) {
    if step == 0 || len == 0 {
        return;
    }
    let percent = byte.saturating_mul(100) / len;
    if percent >= *next {
        tracing::info!(file = %path, percent, rows, "replay progress");
        *next = (percent / step + 1) * step;
    }
}

/// The reader thread: parses rows and sends them in order.
fn read_rows(
    file: std::fs::File,
    path: &Path,
    time_col: &str,
    value_col: &str,
    format: TimeFormat,
    out: &mpsc::Sender<Result<Row, SourceError>>,
) {
    let path_text = path.display().to_string();
    let csv_error = |detail: String| SourceError::Csv {
        path: path_text.clone(),
        detail,
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(std::io::BufReader::new(file));
    let columns = match reader.headers() {
        Ok(h) => {
            let names: Vec<String> = h.iter().map(str::to_owned).collect();
            column(time_col, &names).and_then(|t| Ok((t, column(value_col, &names)?)))
        }
        Err(e) => Err(format!("cannot read the header row: {e}")),
    };
    let (time_idx, value_idx) = match columns {
        Ok(c) => c,
        Err(detail) => {
            let _ = out.blocking_send(Err(csv_error(detail)));
            return;
        }
    };
    let mut record = csv::StringRecord::new();
    loop {
        let line = reader.position().line();
        let read = reader.read_record(&mut record);
        let byte = reader.position().byte();
        let row = match read {
            Ok(false) => return,
            Ok(true) => parse_row(&record, time_idx, value_idx, format, line, byte),
            // A row with the wrong number of fields (or invalid UTF-8) is one
            // bad row; the reader carries on after it.
            Err(e) if !matches!(e.kind(), csv::ErrorKind::Io(_)) => Row::Bad {
                line,
                reason: "bad_row",
                byte,
            },
            Err(e) => {
                let _ =
                    out.blocking_send(Err(csv_error(format!("read error near line {line}: {e}"))));
                return;
            }
        };
        if out.blocking_send(Ok(row)).is_err() {
            // The replay stopped.
            return;
        }
    }
}

fn parse_row(
    record: &csv::StringRecord,
    time_idx: usize,
    value_idx: usize,
    format: TimeFormat,
    line: u64,
    byte: u64,
) -> Row {
    let bad = |reason| Row::Bad { line, reason, byte };
    let Some(ts) = record
        .get(time_idx)
        .and_then(|t| score_csv::parse_time(t, format))
    else {
        return bad("bad_time");
    };
    let Some(value) = record
        .get(value_idx)
        .and_then(|v| v.trim().parse::<f64>().ok())
    else {
        return bad("bad_value");
    };
    if !value.is_finite() || !(value * value).is_finite() {
        return bad("non_finite");
    }
    Row::Good { ts, value, byte }
}

/// A column given by header name, or by 0-based index.
fn column(col: &str, headers: &[String]) -> Result<usize, String> {
    if let Some(i) = headers.iter().position(|h| h.trim() == col) {
        return Ok(i);
    }
    match col.parse::<usize>() {
        Ok(i) if i < headers.len() => Ok(i),
        _ => Err(format!(
            "no column `{col}` (columns: {})",
            headers.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_resolve_and_report_every_problem() {
        let ok = ReplayOptions {
            path: "x.csv".into(),
            time_format: "unix-ms".into(),
            ..ReplayOptions::default()
        };
        assert_eq!(ok.resolve().unwrap(), TimeFormat::UnixMs);
        let bad = ReplayOptions {
            speed: -1.0,
            batch_size: 0,
            time_format: "julian".into(),
            ..ReplayOptions::default()
        };
        let err = bad.resolve().unwrap_err().to_string();
        for word in ["path", "speed", "batch_size", "julian"] {
            assert!(err.contains(word), "{err}");
        }
    }

    #[test]
    fn columns_by_name_or_index() {
        let h = vec!["timestamp".to_owned(), "value".to_owned()];
        assert_eq!(column("value", &h), Ok(1));
        assert_eq!(column("0", &h), Ok(0));
        assert!(column("temp", &h).unwrap_err().contains("timestamp, value"));
        assert!(column("2", &h).is_err());
    }
}
