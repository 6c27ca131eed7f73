//! The gateway's configuration: one commented default file
//! (`config/default.toml`, embedded and printed by `print-config`), layered
//! defaults → file → environment (`TRIBUTARY_<SECTION>__<KEY>`) → flags by
//! the `config` crate, then checked once by [`RawConfig::resolve`] into a
//! [`Config`] that nothing downstream can get wrong (STYLE.md §4).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use tributary_core::detect::AlertPolicy;
use tributary_core::ids::NodeId;

use crate::sources::mqtt::LocalMqttOptions;
use crate::sources::replay::ReplayOptions;
use crate::sources::serial::SerialOptions;
use crate::sources::simulator::SimulatorOptions;
use crate::sync::UplinkOptions;

/// The commented default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");

/// Values from the command line that override every other layer.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--http-listen`.
    pub http_listen: Option<String>,
    /// `--log-format`.
    pub log_format: Option<String>,
}

/// The configuration as written: strings and numbers, not yet checked.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    node: RawNode,
    http: RawHttp,
    ingest: RawIngest,
    store: RawStore,
    detect: RawDetect,
    log: RawLog,
    #[serde(default)]
    sources: Sources,
    /// The sync with the hub; absent: the gateway keeps everything local.
    #[serde(default)]
    uplink: Option<UplinkOptions>,
}

/// The sources to run: a section present in the configuration (even empty,
/// taking every default) turns that source on.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sources {
    /// The serial link to firmware (`[sources.serial]`).
    pub serial: Option<SerialOptions>,
    /// The local MQTT subscription (`[sources.mqtt]`).
    pub mqtt: Option<LocalMqttOptions>,
    /// The built-in simulator (`[sources.simulator]`).
    pub simulator: Option<SimulatorOptions>,
    /// CSV replay (`[sources.replay]`).
    pub replay: Option<ReplayOptions>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    data_dir: PathBuf,
    id: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: String,
    max_body_bytes: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIngest {
    batch_max_readings: usize,
    batch_interval: String,
    max_pending_readings: usize,
    max_readings_per_submission: usize,
    max_future: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    synchronous: String,
    disk_budget_bytes: u64,
    keep_raw: bool,
    cache_keys: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDetect {
    enabled: bool,
    open: f64,
    close: f64,
    clear_after: u16,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: String,
    filter: String,
}

/// The checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Database directory.
    pub data_dir: PathBuf,
    /// A pinned node id, if configured.
    pub node_id: Option<NodeId>,
    /// HTTP listen address.
    pub http_listen: SocketAddr,
    /// Largest request body.
    pub http_max_body_bytes: usize,
    /// Group commit and admission limits.
    pub ingest: IngestConfig,
    /// Store settings.
    pub store: StoreConfig,
    /// Detection settings.
    pub detect: DetectConfig,
    /// Logging.
    pub log: LogConfig,
    /// The sources to run besides HTTP.
    pub sources: Sources,
    /// The sync with the hub (`[uplink]`), if configured.
    pub uplink: Option<UplinkOptions>,
}

/// Group commit and admission limits.
#[derive(Clone, Copy, Debug)]
pub struct IngestConfig {
    /// Commit when this many readings wait.
    pub batch_max_readings: usize,
    /// Commit when the oldest waiting reading is this old.
    pub batch_interval: Duration,
    /// Readings waiting for a commit before sources are told "busy".
    pub max_pending_readings: usize,
    /// Largest submission.
    pub max_readings_per_submission: usize,
    /// Furthest an event time may be ahead of the clock.
    pub max_future: Duration,
}

/// Store settings.
#[derive(Clone, Copy, Debug)]
pub struct StoreConfig {
    /// `synchronous=FULL` (else NORMAL).
    pub synchronous_full: bool,
    /// Disk budget in bytes.
    pub disk_budget_bytes: u64,
    /// Keep raw readings.
    pub keep_raw: bool,
    /// Hot-bucket cache size.
    pub cache_keys: usize,
}

/// Detection settings.
#[derive(Clone, Copy, Debug)]
pub struct DetectConfig {
    /// Run detectors at all.
    pub enabled: bool,
    /// When alerts open and resolve.
    pub policy: AlertPolicy,
}

pub use tributary_service::LogFormat;

/// Logging.
#[derive(Clone, Debug)]
pub struct LogConfig {
    /// Output format.
    pub format: LogFormat,
    /// `tracing` filter directives.
    pub filter: String,
}

pub use tributary_service::ConfigError;

impl Config {
    /// Loads defaults, then `file` (if any), then `TRIBUTARY_*` variables
    /// from `env`, then `overrides`, and checks the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = tributary_service::load_layered(
            DEFAULT_CONFIG,
            file,
            "TRIBUTARY",
            env,
            &[
                (
                    "node.data_dir",
                    overrides
                        .data_dir
                        .as_ref()
                        .map(|p| p.to_string_lossy().into_owned()),
                ),
                ("http.listen", overrides.http_listen.clone()),
                ("log.format", overrides.log_format.clone()),
            ],
        )?;
        raw.resolve()
    }
}

impl RawConfig {
    /// The only place values are checked; collects every problem.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let mut errors = Vec::new();
        let mut check = |ok: bool, msg: String| {
            if !ok {
                errors.push(msg);
            }
        };
        let node_id = match self.node.id.trim() {
            "" => None,
            s => match NodeId::from_str(s) {
                Ok(id) if id.0 != 0 => Some(id),
                _ => {
                    check(
                        false,
                        format!("node.id `{s}`: expected 16 hex digits, not all zero"),
                    );
                    None
                }
            },
        };
        check(
            !self.node.data_dir.as_os_str().is_empty(),
            "node.data_dir must not be empty".into(),
        );
        let http_listen = match self.http.listen.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                check(false, format!("http.listen `{}`: {e}", self.http.listen));
                None
            }
        };
        check(
            self.http.max_body_bytes >= 1024,
            "http.max_body_bytes must be at least 1024".into(),
        );
        let mut duration = |key: &str, s: &str| match humantime::parse_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                errors.push(format!("{key} `{s}`: {e} (write e.g. \"20ms\", \"5m\")"));
                None
            }
        };
        let batch_interval = duration("ingest.batch_interval", &self.ingest.batch_interval);
        let max_future = duration("ingest.max_future", &self.ingest.max_future);
        let mut check = |ok: bool, msg: &str| {
            if !ok {
                errors.push(msg.to_string());
            }
        };
        check(
            self.ingest.batch_max_readings > 0,
            "ingest.batch_max_readings must be positive",
        );
        check(
            self.ingest.max_readings_per_submission > 0,
            "ingest.max_readings_per_submission must be positive",
        );
        check(
            self.ingest.max_pending_readings >= self.ingest.max_readings_per_submission,
            "ingest.max_pending_readings must be at least ingest.max_readings_per_submission \
             (or a largest submission could never be admitted)",
        );
        let synchronous_full = match self.store.synchronous.as_str() {
            "full" => true,
            "normal" => false,
            _ => {
                check(false, "store.synchronous must be \"full\" or \"normal\"");
                true
            }
        };
        check(
            self.store.disk_budget_bytes >= 1 << 20,
            "store.disk_budget_bytes must be at least 1 MiB",
        );
        check(
            self.store.cache_keys > 0,
            "store.cache_keys must be positive",
        );
        let d = &self.detect;
        check(
            (0.0..=1.0).contains(&d.open) && d.open > 0.0,
            "detect.open must be in (0, 1]",
        );
        check(
            (0.0..=1.0).contains(&d.close) && d.close <= d.open,
            "detect.close must be in [0, detect.open]",
        );
        check(d.clear_after > 0, "detect.clear_after must be positive");
        let format = tributary_service::parse_log_format(&self.log.format).unwrap_or_else(|| {
            check(false, "log.format must be \"human\" or \"json\"");
            LogFormat::Human
        });
        let src = &self.sources;
        if let Some(Err(e)) = src.mqtt.as_ref().map(LocalMqttOptions::validate) {
            errors.push(format!("sources.mqtt: {e}"));
        }
        if let Some(Err(e)) = src.simulator.as_ref().map(SimulatorOptions::validate) {
            errors.push(format!("sources.simulator: {e}"));
        }
        if let Some(Err(e)) = src.replay.as_ref().map(ReplayOptions::resolve) {
            errors.push(format!("sources.replay: {e}"));
        }
        if let Some(Err(e)) = self.uplink.as_ref().map(UplinkOptions::validate) {
            errors.push(e.to_string());
        }
        let (Some(http_listen), Some(batch_interval), Some(max_future), true) =
            (http_listen, batch_interval, max_future, errors.is_empty())
        else {
            return Err(ConfigError::Invalid(errors));
        };
        Ok(Config {
            data_dir: self.node.data_dir,
            node_id,
            http_listen,
            http_max_body_bytes: self.http.max_body_bytes,
            ingest: IngestConfig {
                batch_max_readings: self.ingest.batch_max_readings,
                batch_interval,
                max_pending_readings: self.ingest.max_pending_readings,
                max_readings_per_submission: self.ingest.max_readings_per_submission,
                max_future,
            },
            store: StoreConfig {
                synchronous_full,
                disk_budget_bytes: self.store.disk_budget_bytes,
                keep_raw: self.store.keep_raw,
                cache_keys: self.store.cache_keys,
            },
            detect: DetectConfig {
                enabled: d.enabled,
                policy: AlertPolicy {
                    open: d.open,
                    close: d.close,
                    clear_after: d.clear_after,
                },
            },
            log: LogConfig {
                format,
                filter: self.log.filter,
            },
            sources: self.sources,
            uplink: self.uplink,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(
        file: Option<&str>,
        env: &[(&str, &str)],
        o: &Overrides,
    ) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("edge.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Config::load(file.map(|_| path.as_path()), env, o)
    }

    #[test]
    fn defaults_load_and_are_sane() {
        let c = load(None, &[], &Overrides::default()).unwrap();
        assert_eq!(c.http_listen, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.ingest.batch_interval, Duration::from_millis(20));
        assert!(c.store.synchronous_full);
        assert_eq!(c.node_id, None);
        assert_eq!(c.detect.policy, AlertPolicy::DEFAULT);
    }

    #[test]
    fn precedence_is_defaults_file_env_flags() {
        let file = "[http]\nlisten = \"127.0.0.1:1\"\n[ingest]\nbatch_interval = \"5ms\"\n";
        let c = load(Some(file), &[], &Overrides::default()).unwrap();
        assert_eq!(c.http_listen.port(), 1);
        assert_eq!(c.ingest.batch_interval, Duration::from_millis(5));
        let env = [
            ("TRIBUTARY_HTTP__LISTEN", "127.0.0.1:2"),
            ("TRIBUTARY_STORE__KEEP_RAW", "false"),
        ];
        let c = load(Some(file), &env, &Overrides::default()).unwrap();
        assert_eq!(c.http_listen.port(), 2);
        assert!(!c.store.keep_raw);
        let o = Overrides {
            http_listen: Some("127.0.0.1:3".into()),
            ..Overrides::default()
        };
        let c = load(Some(file), &env, &o).unwrap();
        assert_eq!(c.http_listen.port(), 3);
        // Unrelated environment variables are ignored, and so are prefixed
        // ones that name no section (the config file's own variable).
        let others = [
            ("HOME", "/x"),
            ("TRIBUTARY_CONFIG", "/etc/x.toml"),
            ("TRIBUTARY_FOO", "1"),
        ];
        assert!(load(None, &others, &Overrides::default()).is_ok());
        // A misspelt key inside a section is still refused.
        assert!(
            load(
                None,
                &[("TRIBUTARY_HTTP__LISTN", "x")],
                &Overrides::default()
            )
            .is_err()
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let file = "[http]\nlisten = \"nowhere\"\n[ingest]\nbatch_interval = \"soon\"\n\
                    [store]\nsynchronous = \"maybe\"\n[node]\nid = \"xyz\"\n";
        let err = load(Some(file), &[], &Overrides::default())
            .unwrap_err()
            .to_string();
        for needle in [
            "http.listen",
            "ingest.batch_interval",
            "store.synchronous",
            "node.id",
        ] {
            assert!(err.contains(needle), "{needle} missing from: {err}");
        }
    }

    #[test]
    fn unknown_keys_and_wrong_types_are_refused() {
        assert!(
            load(
                Some("[http]\nlisten_on = \"x\"\n"),
                &[],
                &Overrides::default()
            )
            .is_err()
        );
        assert!(
            load(
                Some("[store]\ncache_keys = \"many\"\n"),
                &[],
                &Overrides::default()
            )
            .is_err()
        );
    }

    #[test]
    fn a_source_section_turns_it_on_with_defaults() {
        let c = load(None, &[], &Overrides::default()).unwrap();
        assert!(c.sources.simulator.is_none() && c.sources.mqtt.is_none());
        let c = load(
            Some("[sources.simulator]\nsensors = 7\n"),
            &[],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.sources.simulator.unwrap().sensors, 7);
        let err = load(
            Some("[sources.simulator]\nrate_hz = -1.0\n"),
            &[],
            &Overrides::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("sources.simulator"), "{err}");
        assert!(load(Some("[sources.teleport]\n"), &[], &Overrides::default()).is_err());
    }

    #[test]
    fn pinned_node_id_parses() {
        let c = load(
            Some("[node]\nid = \"00000000000000ab\"\n"),
            &[],
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(c.node_id, Some(NodeId(0xab)));
    }
}
