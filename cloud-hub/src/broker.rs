//! The embedded MQTT broker (rumqttd 0.20): the hub's zero set-up default
//! (DESIGN.md §5). Gateways connect to it over plain TCP, MQTT 3.1.1.
//!
//! rumqttd's `Broker::start` blocks and never reports the address it bound,
//! so [`EmbeddedBroker::start`] runs it on its own thread, resolves port 0
//! to a free port first ([`free_local_port`]), and waits until a TCP
//! connect succeeds (or the broker thread ends, which means it failed: a
//! busy port, a bad address) before returning.
//!
//! rumqttd 0.20 has no shutdown call: the broker lives until the process
//! exits. The hub runs one for its whole life, so that is acceptable; tests
//! start one per test on its own port.
//!
//! With per-node passwords configured ([`BrokerConfig::node_passwords`]),
//! rumqttd moves to a loopback port and the [`crate::mqtt_gate`]
//! takes the public address: it checks each node's login and keeps it to
//! its own topics. The hub's own client then connects to rumqttd directly
//! with a random internal account ([`EmbeddedBroker::hub_endpoint`]).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};
use tributary_core::ids::NodeId;

use crate::mqtt_gate::{self, GateConfig, RefusedFamily};

/// The username of the hub's own client when the gate is on.
const INTERNAL_USER: &str = "tributary-hub-internal";

/// Settings of the embedded broker.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    /// Where to listen (MQTT 3.1.1). Port 0 picks a free port.
    pub listen: SocketAddr,
    /// Most concurrent client connections.
    pub max_connections: usize,
    /// Largest PUBLISH payload accepted, in bytes; larger ones close the
    /// connection.
    pub max_payload_size: usize,
    /// Most unacknowledged QoS 1 messages per connection.
    pub max_inflight: usize,
    /// How long a client has to send CONNECT after opening TCP.
    pub connect_timeout: Duration,
    /// `username → password` checked by rumqttd itself; `None` accepts
    /// any client. Ignored when `node_passwords` is set (the gate's
    /// accounts replace it).
    pub credentials: Option<HashMap<String, String>>,
    /// Per-node passwords: when not empty, only these nodes may connect,
    /// each only to its own topics (the [`mqtt_gate`]).
    pub node_passwords: HashMap<NodeId, String>,
    /// Serve MQTT over TLS with this configuration (the [`mqtt_gate`]
    /// terminates it); `None`: plain TCP.
    pub tls: Option<std::sync::Arc<rustls::ServerConfig>>,
    /// How long [`EmbeddedBroker::start`] waits for the listener.
    pub ready_timeout: Duration,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            max_connections: 10_000,
            // A delta is cut at 64 KiB by the gateways; headroom for framing.
            max_payload_size: 256 * 1024,
            max_inflight: 100,
            connect_timeout: Duration::from_secs(30),
            credentials: None,
            node_passwords: HashMap::new(),
            tls: None,
            ready_timeout: Duration::from_secs(10),
        }
    }
}

/// Why the broker did not start.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// No free port could be reserved.
    #[error("cannot find a free port on {addr}: {source}")]
    NoFreePort {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The configured address cannot be bound (in use, not local…).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The broker thread could not be spawned.
    #[error("cannot spawn the broker thread: {0}")]
    Spawn(std::io::Error),
    /// The OS random number generator failed (the internal password).
    #[error("cannot draw a random password: {0}")]
    Entropy(String),
    /// The gate's thread or runtime could not start.
    #[error("cannot start the MQTT gate: {0}")]
    Gate(std::io::Error),
    /// The broker stopped before accepting connections (its log says why:
    /// typically the address is in use).
    #[error("broker on {0} stopped before accepting connections")]
    Stopped(SocketAddr),
    /// The listener did not accept a connection in time.
    #[error("broker on {addr} not ready after {waited:?}")]
    NotReady {
        /// The address.
        addr: SocketAddr,
        /// How long we waited.
        waited: Duration,
    },
}

/// A running embedded broker.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
    thread: JoinHandle<()>,
    /// With the gate: rumqttd's loopback address and the hub's account
    /// (none without node logins).
    internal: Option<(SocketAddr, Option<(String, String)>)>,
}

/// A port on `ip` that was free a moment ago (bind port 0, read it, close).
/// Another process may take it before the broker binds; the broker then
/// fails to start with [`BrokerError::Stopped`] rather than misbehaving.
pub fn free_local_port(ip: std::net::IpAddr) -> std::io::Result<u16> {
    let l = TcpListener::bind(SocketAddr::new(ip, 0))?;
    Ok(l.local_addr()?.port())
}

fn rumqttd_config(cfg: &BrokerConfig, listen: SocketAddr) -> Config {
    let connections = ConnectionSettings {
        connection_timeout_ms: u16::try_from(cfg.connect_timeout.as_millis()).unwrap_or(u16::MAX),
        max_payload_size: cfg.max_payload_size,
        max_inflight_count: cfg.max_inflight,
        auth: cfg.credentials.clone(),
        external_auth: None,
        dynamic_filters: true,
    };
    let server = ServerSettings {
        name: "v4-hub".to_owned(),
        listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: cfg.max_connections,
            max_outgoing_packet_count: 200,
            // rumqttd's commit log: 10 segments of 100 MiB at most in memory.
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("v4-hub".to_owned(), server)])),
        ..Config::default()
    }
}

impl EmbeddedBroker {
    /// Starts the broker and returns once it accepts TCP connections.
    pub fn start(cfg: &BrokerConfig) -> Result<EmbeddedBroker, BrokerError> {
        Self::start_with_metrics(cfg, RefusedFamily::default())
    }

    /// [`start`](Self::start), counting the gate's refusals in `refused`
    /// (`tributary_hub_broker_refused_total`).
    pub fn start_with_metrics(
        cfg: &BrokerConfig,
        refused: RefusedFamily,
    ) -> Result<EmbeddedBroker, BrokerError> {
        if cfg.node_passwords.is_empty() && cfg.tls.is_none() {
            return Self::start_plain(cfg);
        }
        // The public address belongs to the gate: take it now, so a busy
        // port fails the start with a clear error.
        let public =
            std::net::TcpListener::bind(cfg.listen).map_err(|source| BrokerError::Bind {
                addr: cfg.listen,
                source,
            })?;
        let addr = public.local_addr().map_err(BrokerError::Gate)?;
        // With node logins rumqttd checks them too, plus a random account
        // for the hub's own client. Without (TLS only) it stays open, as
        // the broker would be without the gate.
        let account = if cfg.node_passwords.is_empty() {
            None
        } else {
            let mut word = [0u8; 16];
            rand::TryRng::try_fill_bytes(&mut rand::rngs::SysRng, &mut word)
                .map_err(|e| BrokerError::Entropy(e.to_string()))?;
            let password: String = word.iter().map(|b| format!("{b:02x}")).collect();
            Some((INTERNAL_USER.to_owned(), password))
        };
        let credentials = account.as_ref().map(|(user, password)| {
            let mut accounts: HashMap<String, String> = cfg
                .node_passwords
                .iter()
                .map(|(n, p)| (n.to_string(), p.clone()))
                .collect();
            accounts.insert(user.clone(), password.clone());
            accounts
        });
        let inner = Self::start_plain(&BrokerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            credentials,
            node_passwords: HashMap::new(),
            tls: None,
            ..cfg.clone()
        })?;
        let gate = GateConfig {
            nodes: std::sync::Arc::new(cfg.node_passwords.clone()),
            tls: cfg.tls.clone().map(tokio_rustls::TlsAcceptor::from),
            upstream: inner.addr,
            max_packet_bytes: cfg.max_payload_size.saturating_add(1024),
            refused,
        };
        public.set_nonblocking(true).map_err(BrokerError::Gate)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(BrokerError::Gate)?;
        std::thread::Builder::new()
            .name("mqtt-gate".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(public) {
                        Ok(l) => mqtt_gate::serve(l, gate).await,
                        Err(e) => tracing::error!(error = %e, "MQTT gate failed"),
                    }
                });
            })
            .map_err(BrokerError::Gate)?;
        tracing::info!(%addr, nodes = cfg.node_passwords.len(), tls = cfg.tls.is_some(),
            "MQTT gate listening (with node logins: own topics only)");
        Ok(EmbeddedBroker {
            addr,
            internal: Some((inner.addr, account)),
            thread: inner.thread,
        })
    }

    fn start_plain(cfg: &BrokerConfig) -> Result<EmbeddedBroker, BrokerError> {
        let mut addr = cfg.listen;
        if addr.port() == 0 {
            let port = free_local_port(addr.ip())
                .map_err(|source| BrokerError::NoFreePort { addr, source })?;
            addr.set_port(port);
        } else {
            // The readiness probe cannot tell rumqttd's listener from
            // someone else's on the same port: check that it is ours to take.
            drop(TcpListener::bind(addr).map_err(|source| BrokerError::Bind { addr, source })?);
        }
        let config = rumqttd_config(cfg, addr);
        let thread = std::thread::Builder::new()
            .name("mqtt-broker".to_owned())
            .spawn(move || {
                let mut broker = Broker::new(config);
                // Returns only when every server thread has ended.
                if let Err(e) = broker.start() {
                    tracing::error!(error = %e, "embedded broker failed");
                }
            })
            .map_err(BrokerError::Spawn)?;
        let started = Instant::now();
        let probe = if addr.ip().is_unspecified() {
            SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), addr.port())
        } else {
            addr
        };
        loop {
            if thread.is_finished() {
                return Err(BrokerError::Stopped(addr));
            }
            // A connect-then-drop probe; rumqttd logs it as a closed peer.
            if TcpStream::connect_timeout(&probe, Duration::from_millis(200)).is_ok() {
                tracing::info!(%addr, "embedded MQTT broker listening");
                return Ok(EmbeddedBroker {
                    addr,
                    thread,
                    internal: None,
                });
            }
            if started.elapsed() >= cfg.ready_timeout {
                return Err(BrokerError::NotReady {
                    addr,
                    waited: started.elapsed(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The address it listens on (with the real port): the gate's, if any.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where the hub's own client connects, with the credentials to use:
    /// rumqttd behind the gate, or [`addr`](Self::addr) without one.
    pub fn hub_endpoint(&self) -> (SocketAddr, Option<(String, String)>) {
        match &self.internal {
            Some((a, creds)) => (*a, creds.clone()),
            None => (self.addr, None),
        }
    }

    /// Whether the broker thread is still running.
    pub fn is_running(&self) -> bool {
        !self.thread.is_finished()
    }
}
