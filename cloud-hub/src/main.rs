//! # tributary-hub
//!
//! The cloud hub (DESIGN.md §5): an MQTT broker (embedded by default), the
//! sync shell that merges node deltas durably and idempotently, and the
//! `/api/v1` HTTP API with the dashboard. This binary is a thin shell over
//! the `tributary_hub` library: it parses flags, loads the configuration,
//! sets up logging and signals, and runs the hub (`run`) or prints the
//! default configuration (`print-config`).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
use tributary_hub::config::{Config, Overrides};

#[derive(Parser)]
#[command(version, about = "Tributary cloud hub")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the hub until SIGINT or SIGTERM.
    Run {
        /// Configuration file (TOML); see `print-config` for every key.
        #[arg(short, long, env = "TRIBUTARY_HUB_CONFIG")]
        config: Option<PathBuf>,
        /// Overrides `hub.data_dir`.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Overrides `http.listen` (e.g. 127.0.0.1:8090; port 0 picks one).
        #[arg(long)]
        http_listen: Option<String>,
        /// Overrides `broker.listen`, the embedded broker's address.
        #[arg(long)]
        mqtt_listen: Option<String>,
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
            print!("{}", tributary_hub::config::DEFAULT_CONFIG);
            Ok(ExitCode::SUCCESS)
        }
        Command::Run {
            config,
            data_dir,
            http_listen,
            mqtt_listen,
            log_format,
        } => run(
            config,
            Overrides {
                data_dir,
                http_listen,
                mqtt_listen,
                log_format,
            },
        ),
    }
}

fn run(file: Option<PathBuf>, overrides: Overrides) -> Result<ExitCode> {
    let config = match Config::load(file.as_deref(), std::env::vars(), &overrides) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("tributary-hub: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    tributary_service::init_logging(config.log_format, &config.log_filter)?;
    let system = actix::System::new();
    system.block_on(async move {
        let running = match tributary_hub::daemon::start(&config).await {
            Ok(r) => r,
            // A store that cannot open or a taken port will not fix itself
            // on a restart: status 2 tells a supervisor not to retry.
            Err(e) => {
                tracing::error!(error = %e, "cannot start");
                eprintln!("tributary-hub: {e}");
                return Ok(ExitCode::from(2));
            }
        };
        // One line a script (and a person) can rely on.
        println!(
            "tributary-hub: dashboard http://{}/  api http://{}/api/v1  mqtt {}",
            running.http, running.http, running.mqtt
        );
        tributary_service::wait_for_signal().await?;
        running.shutdown().await;
        anyhow::Ok(ExitCode::SUCCESS)
    })
}
