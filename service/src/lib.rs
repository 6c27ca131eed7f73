//! Process plumbing shared by `tributary-edge` and `tributary-hub`: the
//! parts of a daemon that are the same whatever it does (STYLE.md §4).
//!
//! - [`load_layered`]: defaults → file → environment → flags, with the
//!   `config` crate, where only `<PREFIX>_<SECTION>__<KEY>` variables count.
//! - [`LogFormat`], [`parse_log_format`], [`init_logging`]: human or JSON
//!   logs on stderr, colours only on a terminal.
//! - [`wait_for_signal`]: SIGINT or SIGTERM.
//! - [`mqtt_disconnect`]: leave an MQTT broker politely on shutdown.
//! - [`tls`]: rustls configurations from PEM files.

pub mod tls;

/// Why a daemon's configuration could not be loaded (both daemons).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file, environment or flags could not be read or parsed.
    #[error("{0}")]
    Load(#[from] config::ConfigError),
    /// Values that parse but make no sense; every problem, one per line.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

use std::io;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;

/// Loads `T` from the embedded `defaults` (TOML), then `file` (if any),
/// then the variables of `env` named `<prefix>_<SECTION>__<KEY>`, then
/// `overrides` (`("section.key", value)`, `None` skipped).
///
/// Variables with the prefix but without `__` (such as `<prefix>_CONFIG`,
/// the path of the file itself, or a test's own variables) are not
/// configuration: were they passed on, `deny_unknown_fields` would refuse
/// them as unknown keys.
pub fn load_layered<T: DeserializeOwned>(
    defaults: &str,
    file: Option<&Path>,
    prefix: &str,
    env: impl IntoIterator<Item = (String, String)>,
    overrides: &[(&str, Option<String>)],
) -> Result<T, config::ConfigError> {
    let head = format!("{prefix}_");
    let env: config::Map<String, String> = env
        .into_iter()
        .filter(|(k, _)| {
            k.strip_prefix(&head)
                .is_some_and(|rest| rest.contains("__"))
        })
        .collect();
    let mut b = config::Config::builder()
        .add_source(config::File::from_str(defaults, config::FileFormat::Toml));
    if let Some(path) = file {
        b = b.add_source(config::File::from(path).format(config::FileFormat::Toml));
    }
    b = b.add_source(
        config::Environment::with_prefix(prefix)
            .prefix_separator("_")
            .separator("__")
            .try_parsing(true)
            .source(Some(env)),
    );
    for (key, value) in overrides {
        b = b.set_override_option(*key, value.clone())?;
    }
    b.build()?.try_deserialize()
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// `"human"` or `"json"`.
pub fn parse_log_format(s: &str) -> Option<LogFormat> {
    match s {
        "human" => Some(LogFormat::Human),
        "json" => Some(LogFormat::Json),
        _ => None,
    }
}

/// Installs the global `tracing` subscriber: `filter` directives, logs on
/// stderr, ANSI colours only when stderr is a terminal (not the journal or
/// a file).
pub fn init_logging(format: LogFormat, filter: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .with_context(|| format!("log.filter `{filter}`"))?;
    let ansi = io::IsTerminal::is_terminal(&io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Human => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    Ok(())
}

/// Returns on SIGTERM or SIGINT (logged).
pub async fn wait_for_signal() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM"),
        _ = int.recv() => tracing::info!("SIGINT"),
    }
    Ok(())
}

/// Sends DISCONNECT and drives `eventloop` until it is written (at most
/// 500 ms): the broker then ends the session at once instead of waiting for
/// the keep-alive to expire (and does not publish a will).
pub async fn mqtt_disconnect(client: &rumqttc::AsyncClient, eventloop: &mut rumqttc::EventLoop) {
    if client.try_disconnect().is_err() {
        return;
    }
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        while let Ok(ev) = eventloop.poll().await {
            if matches!(ev, rumqttc::Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                break;
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Cfg {
        a: A,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct A {
        x: u32,
        y: String,
    }

    #[test]
    fn layers_apply_in_order_and_foreign_variables_are_ignored() {
        let dir = std::env::temp_dir().join(format!("tributary-service-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "[a]\nx = 2\n").unwrap();
        let env = [
            ("APP_A__Y".to_owned(), "from-env".to_owned()),
            ("APP_CONFIG".to_owned(), "ignored".to_owned()),
            ("OTHER_A__X".to_owned(), "9".to_owned()),
        ];
        let c: Cfg = load_layered(
            "[a]\nx = 1\ny = \"default\"\n",
            Some(&file),
            "APP",
            env,
            &[("a.x", Some("3".into())), ("a.y", None)],
        )
        .unwrap();
        assert_eq!((c.a.x, c.a.y.as_str()), (3, "from-env"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn log_formats_parse() {
        assert_eq!(parse_log_format("json"), Some(LogFormat::Json));
        assert_eq!(parse_log_format("human"), Some(LogFormat::Human));
        assert_eq!(parse_log_format("xml"), None);
    }
}
