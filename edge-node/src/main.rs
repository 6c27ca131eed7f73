//! # tributary-edge
//!
//! The gateway daemon that runs on a Raspberry Pi next to the sensors
//! (DESIGN.md §4). It will own: the sources (serial frames from firmware, a
//! local MQTT subscription, `POST /api/v1/readings`, a simulator, CSV
//! replay); the actors that aggregate readings into the core's aggregate
//! CRDT, run the detectors and store everything in SQLite (WAL, group
//! commit, migrations, a disk budget); the outbox and the MQTT sync agent;
//! and the local HTTP API. It must not hold domain logic of its own: CRDT,
//! codec and detector decisions belong to `tributary-core`.
//!
//! This binary is a thin shell over the `tributary_edge` library: it parses
//! flags, loads the configuration, sets up logging and signals, and runs
//! the daemon (`run`), prints the default configuration (`print-config`),
//! or scores a CSV file offline (`detect`).

use tributary_edge::score_csv;

use std::fs::File;
use std::io::{self, BufReader, BufWriter};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use score_csv::{Options, TimeFormat};
use tributary_edge::config::{Config, Overrides};

#[derive(Parser)]
#[command(version, about = "Tributary edge gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Score a CSV recording with the anomaly detector ensemble: every row
    /// comes out with `<column>_score` (0..1) and `<column>_alert` (0/1)
    /// per value column.
    Detect {
        /// Input CSV file, or `-` for standard input.
        input: PathBuf,
        /// Output CSV file; standard output if absent.
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Field separator (one character; `\t` for tab).
        #[arg(short, long, default_value = ",")]
        delimiter: String,
        /// The input has no header row: name columns by 0-based index.
        #[arg(long)]
        no_header: bool,
        /// The time column: a header name or a 0-based index.
        #[arg(short, long, default_value = "timestamp")]
        time_column: String,
        /// A value column to score (name or index); repeat for several.
        /// Default: every column but the time column.
        #[arg(short = 'c', long = "column")]
        columns: Vec<String>,
        /// How timestamps are written.
        #[arg(long, value_enum, default_value_t = TimeFormat::Auto)]
        time_format: TimeFormat,
        /// Score at or above which a row is flagged as an alert.
        #[arg(long, default_value_t = tributary_core::detect::DEFAULT_ALERT_THRESHOLD)]
        threshold: f64,
    },
    /// Run the gateway daemon until SIGINT or SIGTERM.
    Run {
        /// Configuration file (TOML); see `print-config` for every key.
        #[arg(short, long, env = "TRIBUTARY_CONFIG")]
        config: Option<PathBuf>,
        /// Overrides `node.data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Overrides `http.listen` (e.g. 127.0.0.1:8080).
        #[arg(long)]
        http_listen: Option<String>,
        /// Overrides `log.format`: human or json.
        #[arg(long)]
        log_format: Option<String>,
    },
    /// Print the default configuration, with comments, and exit.
    PrintConfig,
}

fn main() -> Result<ExitCode> {
    match Cli::parse().command {
        Command::PrintConfig => {
            print!("{}", tributary_edge::config::DEFAULT_CONFIG);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            config,
            data_dir,
            http_listen,
            log_format,
        } => run(
            config,
            Overrides {
                data_dir,
                http_listen,
                log_format,
            },
        ),
        Command::Detect {
            input,
            output,
            delimiter,
            no_header,
            time_column,
            columns,
            time_format,
            threshold,
        } => {
            let delimiter = match delimiter.as_str() {
                "\\t" | "\t" => b'\t',
                d if d.len() == 1 => d.as_bytes()[0],
                d => anyhow::bail!("--delimiter must be one ASCII character, got {d:?}"),
            };
            let stdin = input.as_os_str() == "-";
            let input_len = if stdin {
                None
            } else {
                std::fs::metadata(&input).ok().map(|m| m.len())
            };
            let reader: Box<dyn io::Read> = if stdin {
                Box::new(io::stdin().lock())
            } else {
                Box::new(
                    File::open(&input)
                        .with_context(|| format!("cannot open {}", input.display()))?,
                )
            };
            let writer: Box<dyn io::Write> = match &output {
                Some(p) => Box::new(
                    File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
                ),
                None => Box::new(io::stdout().lock()),
            };
            let opts = Options {
                delimiter,
                header: !no_header,
                time_column,
                value_columns: columns,
                time_format,
                threshold,
                input_len,
                progress_every: Some(Duration::from_secs(2)),
            };
            let report = score_csv::run(BufReader::new(reader), BufWriter::new(writer), &opts)
                .with_context(|| format!("scoring {}", input.display()))?;
            eprintln!("detect: {} rows", report.rows);
            for c in &report.columns {
                eprintln!(
                    "  {}: {} rows at or above {threshold} ({} alerts opened), {} cells not numeric (no score)",
                    c.name, c.alert_rows, c.alerts_opened, c.skipped
                );
            }
            if report.bad_timestamps > 0 {
                eprintln!(
                    "  {} rows with an unreadable timestamp (no score; see --time-format)",
                    report.bad_timestamps
                );
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn run(file: Option<PathBuf>, overrides: Overrides) -> Result<ExitCode> {
    let config = match Config::load(file.as_deref(), std::env::vars(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tributary-edge: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    tributary_service::init_logging(config.log.format, &config.log.filter)?;
    // Bound here, before any actor starts, so a taken port is a clear error
    // at start and tests can pass port 0.
    let listener = std::net::TcpListener::bind(config.http_listen)
        .with_context(|| format!("cannot listen on {}", config.http_listen))?;
    let system = actix::System::new();
    system.block_on(async move {
        let running = match tributary_edge::daemon::start(&config, listener).await {
            Ok(r) => r,
            // A store that cannot open (newer schema, another node's id,
            // no permission) will not open on a restart either: status 2
            // tells systemd not to retry (RestartPreventExitStatus=2).
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("tributary-edge: {e}");
                return Ok(ExitCode::from(2));
            }
        };
        tributary_service::wait_for_signal().await?;
        running.shutdown().await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
