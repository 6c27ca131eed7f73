//! The hub's configuration: one commented default file
//! (`config/default.toml`, embedded and printed by `print-config`), layered
//! defaults → file → environment (`TRIBUTARY_HUB_<SECTION>__<KEY>`) → flags
//! by the `config` crate, then checked once by [`RawConfig::resolve`]
//! (STYLE.md §4). The hub's variables carry their own prefix so that a hub
//! and a gateway on one machine never read each other's settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use tributary_core::sync::HubConfig;

use crate::sync::SyncOptions;

/// The commented default configuration.
pub const DEFAULT_CONFIG: &str = include_str!("../config/default.toml");

/// Values from the command line that override every other layer.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--http-listen`.
    pub http_listen: Option<String>,
    /// `--mqtt-listen` (the embedded broker).
    pub mqtt_listen: Option<String>,
    /// `--log-format`.
    pub log_format: Option<String>,
}

/// The configuration as written, not yet checked.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    hub: RawHub,
    http: RawHttp,
    broker: RawBroker,
    sync: RawSync,
    store: RawStore,
    log: RawLog,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHub {
    data_dir: PathBuf,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    listen: String,
    readers: usize,
    online_window: String,
    #[serde(default)]
    reader_tokens: Vec<String>,
    #[serde(default)]
    admin_tokens: Vec<String>,
    #[serde(default)]
    tls_cert: String,
    #[serde(default)]
    tls_key: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBroker {
    mode: String,
    listen: String,
    host: String,
    port: u16,
    client_id: String,
    username: String,
    password: String,
    keep_alive: String,
    max_packet_bytes: usize,
    shared_group: String,
    #[serde(default)]
    node_passwords: std::collections::HashMap<String, String>,
    #[serde(default)]
    tls_ca: String,
    #[serde(default)]
    tls_cert: String,
    #[serde(default)]
    tls_key: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSync {
    group_interval: String,
    group_max_deltas: usize,
    credit_bytes: u32,
    max_ranges: usize,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    backend: String,
    url: String,
    synchronous: String,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLog {
    format: String,
    filter: String,
}

/// Which broker the hub uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BrokerMode {
    /// Run rumqttd in-process, listening here.
    Embedded(SocketAddr),
    /// Connect to an external broker (host and port are in the sync options).
    External,
}

pub use tributary_service::LogFormat;

/// The checked configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Database directory.
    pub data_dir: PathBuf,
    /// HTTP listen address.
    pub http_listen: SocketAddr,
    /// Query threads.
    pub readers: usize,
    /// "Online" window for nodes.
    pub online_window: Duration,
    /// Bearer tokens of `/api/v1` (none: open).
    pub api_tokens: crate::api::auth::Tokens,
    /// Per-node MQTT passwords for the embedded broker (none: open).
    pub node_passwords: std::collections::HashMap<tributary_core::ids::NodeId, String>,
    /// HTTPS for the API and dashboard (none: plain HTTP).
    pub http_tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// MQTT over TLS for the embedded broker (none: plain TCP).
    pub broker_tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// Embedded or external broker.
    pub broker: BrokerMode,
    /// The MQTT client and merge settings.
    pub sync: SyncOptions,
    /// `synchronous=FULL` (SQLite).
    pub synchronous_full: bool,
    /// Which store: SQLite in `data_dir`, or PostgreSQL at this URL.
    pub postgres_url: Option<String>,
    /// Log format.
    pub log_format: LogFormat,
    /// `tracing` filter directives.
    pub log_filter: String,
}

pub use tributary_service::ConfigError;

impl Config {
    /// Loads defaults, then `file` (if any), then `TRIBUTARY_HUB_*`
    /// variables from `env`, then `overrides`, and checks the result.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = tributary_service::load_layered(
            DEFAULT_CONFIG,
            file,
            "TRIBUTARY_HUB",
            env,
            &[
                (
                    "hub.data_dir",
                    overrides
                        .data_dir
                        .as_ref()
                        .map(|p| p.to_string_lossy().into_owned()),
                ),
                ("http.listen", overrides.http_listen.clone()),
                ("broker.listen", overrides.mqtt_listen.clone()),
                ("log.format", overrides.log_format.clone()),
            ],
        )?;
        raw.resolve()
    }
}

impl RawConfig {
    /// The only place values are checked; collects every problem.
    pub fn resolve(self) -> Result<Config, ConfigError> {
        let mut errors: Vec<String> = Vec::new();
        let mut addr = |what: &str, s: &str| match s.parse::<SocketAddr>() {
            Ok(a) => Some(a),
            Err(e) => {
                errors.push(format!("{what} `{s}`: {e}"));
                None
            }
        };
        let http_listen = addr("http.listen", &self.http.listen);
        let broker_listen = addr("broker.listen", &self.broker.listen);
        let mut duration = |what: &str, s: &str| match humantime::parse_duration(s) {
            Ok(d) => Some(d),
            Err(e) => {
                errors.push(format!(
                    "{what} `{s}`: {e} (write it with a unit, e.g. \"5s\")"
                ));
                None
            }
        };
        let online_window = duration("http.online_window", &self.http.online_window);
        let keep_alive = duration("broker.keep_alive", &self.broker.keep_alive);
        let group_interval = duration("sync.group_interval", &self.sync.group_interval);
        let mut check = |ok: bool, msg: &str| {
            if !ok {
                errors.push(msg.to_owned());
            }
        };
        check(
            !self.hub.data_dir.as_os_str().is_empty(),
            "hub.data_dir must not be empty",
        );
        check(
            (1..=64).contains(&self.http.readers),
            "http.readers must be in 1..=64",
        );
        check(
            keep_alive.is_none_or(|k| k >= Duration::from_secs(1)),
            "broker.keep_alive must be at least 1s",
        );
        check(
            self.broker.max_packet_bytes >= 64 * 1024,
            "broker.max_packet_bytes must be at least 65536 (a delta is up to 64 KiB)",
        );
        check(
            !self.broker.client_id.is_empty(),
            "broker.client_id must not be empty",
        );
        check(
            !self.broker.host.is_empty(),
            "broker.host must not be empty",
        );
        check(
            !self.broker.shared_group.contains(['/', '+', '#']),
            "broker.shared_group must not contain '/', '+' or '#'",
        );
        check(
            self.broker.shared_group.is_empty() || self.store.backend == "postgres",
            "broker.shared_group needs store.backend = \"postgres\" (replicas must share one store)",
        );
        check(
            self.sync.group_max_deltas > 0,
            "sync.group_max_deltas must be positive",
        );
        check(self.sync.max_ranges > 0, "sync.max_ranges must be positive");
        let mut node_passwords = std::collections::HashMap::new();
        for (id, password) in &self.broker.node_passwords {
            match id.parse::<tributary_core::ids::NodeId>() {
                Ok(n) if n.0 != 0 => {
                    node_passwords.insert(n, password.clone());
                }
                _ => check(
                    false,
                    &format!("broker.node_passwords: `{id}` is not a node id (16 hex digits)"),
                ),
            }
            check(
                password.len() >= 16,
                &format!(
                    "broker.node_passwords: the password of {id} is shorter than 16 characters"
                ),
            );
        }
        check(
            node_passwords.is_empty() || self.broker.mode == "embedded",
            "broker.node_passwords is for the embedded broker; give an external broker its own accounts and ACL (docs/security.md)",
        );
        // Loaded now: a bad file fails the start, naming it.
        let tls = |section: &str, cert: &str, key: &str| match (cert.is_empty(), key.is_empty()) {
            (true, true) => Ok(None),
            (false, false) => tributary_service::tls::server_config(cert.as_ref(), key.as_ref())
                .map(Some)
                .map_err(|e| format!("{section}.tls_cert / tls_key: {e}")),
            _ => Err(format!(
                "{section}.tls_cert and {section}.tls_key go together"
            )),
        };
        let mut tls_or_report = |r: Result<_, String>| {
            r.unwrap_or_else(|e| {
                check(false, &e);
                None
            })
        };
        let http_tls = tls_or_report(tls("http", &self.http.tls_cert, &self.http.tls_key));
        let broker_tls = tls_or_report(tls("broker", &self.broker.tls_cert, &self.broker.tls_key));
        check(
            broker_tls.is_none() || self.broker.mode == "embedded",
            "broker.tls_cert is for the embedded broker; for an external broker's TLS set broker.tls_ca",
        );
        let client_tls = if self.broker.tls_ca.is_empty() {
            None
        } else {
            check(
                self.broker.mode == "external",
                "broker.tls_ca is for an external broker (the embedded one is reached over loopback)",
            );
            match tributary_service::tls::client_config(self.broker.tls_ca.as_ref()) {
                Ok(c) => Some(std::sync::Arc::new(c)),
                Err(e) => {
                    check(false, &format!("broker.tls_ca: {e}"));
                    None
                }
            }
        };
        let all_tokens: Vec<&String> = self
            .http
            .reader_tokens
            .iter()
            .chain(&self.http.admin_tokens)
            .collect();
        check(
            all_tokens
                .iter()
                .all(|t| t.len() >= 16 && t.is_ascii() && !t.contains(char::is_whitespace)),
            "http.reader_tokens and http.admin_tokens must be at least 16 printable ASCII characters without spaces (e.g. `openssl rand -hex 16`)",
        );
        check(
            all_tokens
                .iter()
                .enumerate()
                .all(|(i, t)| !all_tokens[..i].contains(t)),
            "a token appears twice in http.reader_tokens / http.admin_tokens",
        );
        let postgres_url = match self.store.backend.as_str() {
            "sqlite" => None,
            "postgres" => {
                check(
                    !self.store.url.trim().is_empty(),
                    "store.url is required when store.backend = \"postgres\"",
                );
                Some(self.store.url.clone())
            }
            _ => {
                check(false, "store.backend must be \"sqlite\" or \"postgres\"");
                None
            }
        };
        let synchronous_full = match self.store.synchronous.as_str() {
            "full" => true,
            "normal" => false,
            _ => {
                check(false, "store.synchronous must be \"full\" or \"normal\"");
                true
            }
        };
        let log_format =
            tributary_service::parse_log_format(&self.log.format).unwrap_or_else(|| {
                check(false, "log.format must be \"human\" or \"json\"");
                LogFormat::Human
            });
        let mode = match self.broker.mode.as_str() {
            "embedded" => broker_listen.map(BrokerMode::Embedded),
            "external" => Some(BrokerMode::External),
            other => {
                check(
                    false,
                    &format!("broker.mode `{other}`: expected \"embedded\" or \"external\""),
                );
                None
            }
        };
        let (
            Some(http_listen),
            Some(online_window),
            Some(keep_alive),
            Some(group_interval),
            Some(broker),
            true,
        ) = (
            http_listen,
            online_window,
            keep_alive,
            group_interval,
            mode,
            errors.is_empty(),
        )
        else {
            return Err(ConfigError::Invalid(errors));
        };
        // The embedded broker is reached over loopback on its own port.
        let (host, port) = match &broker {
            BrokerMode::Embedded(a) => {
                let ip = if a.ip().is_unspecified() {
                    std::net::IpAddr::from([127, 0, 0, 1])
                } else {
                    a.ip()
                };
                (ip.to_string(), a.port())
            }
            BrokerMode::External => (self.broker.host.clone(), self.broker.port),
        };
        let credentials = (!self.broker.username.is_empty())
            .then(|| (self.broker.username.clone(), self.broker.password.clone()));
        Ok(Config {
            data_dir: self.hub.data_dir,
            http_listen,
            readers: self.http.readers,
            online_window,
            node_passwords,
            http_tls,
            broker_tls,
            api_tokens: crate::api::auth::Tokens::new(
                &self.http.reader_tokens,
                &self.http.admin_tokens,
            ),
            broker,
            sync: SyncOptions {
                host,
                port,
                client_id: self.broker.client_id,
                credentials,
                keep_alive,
                max_packet_bytes: self.broker.max_packet_bytes,
                group_interval,
                group_max_deltas: self.sync.group_max_deltas,
                shared_group: (!self.broker.shared_group.is_empty())
                    .then(|| self.broker.shared_group.clone()),
                tls: client_tls,
                hub: HubConfig {
                    credit: (self.sync.credit_bytes > 0).then_some(self.sync.credit_bytes),
                    max_ranges: self.sync.max_ranges,
                    ..HubConfig::default()
                },
                ..SyncOptions::default()
            },
            synchronous_full,
            postgres_url,
            log_format,
            log_filter: self.log.filter,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(file: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.toml");
        std::fs::write(&path, file).unwrap();
        Config::load(
            Some(&path),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
            &Overrides::default(),
        )
    }

    #[test]
    fn defaults_give_an_embedded_broker_on_loopback() {
        let c = load("", &[]).unwrap();
        assert_eq!(
            c.broker,
            BrokerMode::Embedded("127.0.0.1:1883".parse().unwrap())
        );
        assert_eq!((c.sync.host.as_str(), c.sync.port), ("127.0.0.1", 1883));
        assert_eq!(c.sync.hub.credit, None);
        assert!(c.synchronous_full);
    }

    #[test]
    fn environment_and_file_layer_and_other_variables_are_ignored() {
        let c = load(
            "[broker]\nmode = \"external\"\nhost = \"mq.example\"\nport = 1884\n",
            &[
                ("TRIBUTARY_HUB_BROKER__PORT", "1999"),
                ("TRIBUTARY_HTTP__LISTEN", "not an address"),
                ("TRIBUTARY_HUB_CONFIG", "x"),
            ],
        )
        .unwrap();
        assert_eq!(c.broker, BrokerMode::External);
        assert_eq!((c.sync.host.as_str(), c.sync.port), ("mq.example", 1999));
    }

    #[test]
    fn the_postgres_backend_needs_a_url() {
        let e = load("[store]\nbackend = \"postgres\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("store.url"), "{e}");
        let c = load(
            "[store]\nbackend = \"postgres\"\n",
            &[("TRIBUTARY_HUB_STORE__URL", "postgres://h/db")],
        )
        .unwrap();
        assert_eq!(c.postgres_url.as_deref(), Some("postgres://h/db"));
        assert_eq!(load("", &[]).unwrap().postgres_url, None);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let e = load(
            "[broker]\nmode = \"cloud\"\nkeep_alive = \"0s\"\n[http]\nlisten = \"x\"\n\
             [sync]\ngroup_interval = \"soon\"\n",
            &[],
        )
        .unwrap_err()
        .to_string();
        for what in [
            "broker.mode",
            "broker.keep_alive",
            "http.listen",
            "sync.group_interval",
        ] {
            assert!(e.contains(what), "{what} missing from: {e}");
        }
    }
}
