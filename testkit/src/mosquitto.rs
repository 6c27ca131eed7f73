//! A throwaway Mosquitto broker for tests.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::{ChildGuard, find_tool, free_port, poll_for};

/// How long a starting broker may take to accept connections. Mosquitto
/// is up in milliseconds; the margin is for a loaded 2-core CI machine.
const START_DEADLINE: Duration = Duration::from_secs(15);

/// The line [`ChildGuard::spawn_logged`] writes before each start.
const START_MARKER: &str = "=== mosquitto starting ===";
/// Logged by every Mosquitto since 1.x once its listeners are bound
/// ("mosquitto version 2.0.11 running").
const RUNNING_LINE: &str = " running";

/// Fresh ports tried when the broker cannot bind the one it was given
/// (another test took it between [`free_port`] and the broker's bind).
const PORT_ATTEMPTS: usize = 5;

/// Broker settings for [`Mosquitto::start_with`]. The defaults suit sync
/// tests: nothing a test sends is refused or throttled by the broker.
#[derive(Debug, Clone)]
pub struct MosquittoOptions {
    /// Listen on this port of 127.0.0.1; `None` (the default) picks a free
    /// one (retrying if another process takes it first).
    pub port: Option<u16>,
    /// QoS 1/2 messages in flight per client (`max_inflight_messages`;
    /// 0 = unlimited). Default 1000: far above Mosquitto's 20, which would
    /// otherwise pace a sync burst. Set 1 to make the broker deliver the
    /// next message only after the previous one was acknowledged.
    pub max_inflight_messages: u32,
    /// Messages queued per offline persistent session
    /// (`max_queued_messages`; 0 = unlimited). Default 100 000, so a
    /// gateway that is down for a while loses nothing.
    pub max_queued_messages: u32,
    /// Extra configuration lines appended verbatim.
    pub extra_config: Vec<String>,
}

impl Default for MosquittoOptions {
    fn default() -> Self {
        MosquittoOptions {
            port: None,
            max_inflight_messages: 1000,
            max_queued_messages: 100_000,
            extra_config: Vec::new(),
        }
    }
}

/// A Mosquitto broker listening on 127.0.0.1 with a config in its own temp
/// dir: anonymous access, no persistence (a restart forgets sessions),
/// Mosquitto's default (unlimited) `max_packet_size`. Its output is in
/// `<dir>/mosquitto.log` ([`Mosquitto::log_tail`]) and printed when a test
/// panics while the broker is alive. Killed when dropped.
#[derive(Debug)]
pub struct Mosquitto {
    binary: PathBuf,
    options: MosquittoOptions,
    port: u16,
    // Field order: the process dies before its directory is removed.
    child: Option<ChildGuard>,
    dir: tempfile::TempDir,
}

impl Mosquitto {
    /// Starts a broker with [`MosquittoOptions::default`].
    ///
    /// `Ok(None)` when `mosquitto` is not installed and `CI` is not set:
    /// the caller prints "skipped" and returns. `Err` (with the reason and
    /// the broker's log) when it is missing under CI or fails to start.
    ///
    /// ```ignore
    /// let Some(broker) = Mosquitto::start().unwrap() else {
    ///     eprintln!("skipped: mosquitto not installed");
    ///     return;
    /// };
    /// ```
    pub fn start() -> Result<Option<Mosquitto>, String> {
        Self::start_with(MosquittoOptions::default())
    }

    /// [`Mosquitto::start`] with explicit options.
    pub fn start_with(options: MosquittoOptions) -> Result<Option<Mosquitto>, String> {
        let Some(binary) = find_tool("mosquitto")? else {
            return Ok(None);
        };
        let dir = tempfile::Builder::new()
            .prefix("tributary-mosquitto-")
            .tempdir()
            .map_err(|e| format!("mosquitto temp dir: {e}"))?;
        let mut broker = Mosquitto {
            binary,
            port: options.port.unwrap_or(0),
            options,
            child: None,
            dir,
        };
        let attempts = if broker.options.port.is_some() {
            1
        } else {
            PORT_ATTEMPTS
        };
        let mut last_err = String::new();
        for _ in 0..attempts {
            if broker.options.port.is_none() {
                broker.port = free_port();
            }
            match broker.launch() {
                Ok(()) => return Ok(Some(broker)),
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    /// The broker's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's address (127.0.0.1:port).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The broker process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(ChildGuard::pid)
    }

    /// The temp dir holding `mosquitto.conf` and `mosquitto.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Kills the broker with SIGKILL (a broker crash: sessions and queued
    /// messages are gone, clients see their connections reset). The port
    /// stays this broker's for [`Mosquitto::restart`].
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill9();
        }
    }

    /// Starts the broker again on the same port with the same config,
    /// killing it first if it still runs.
    pub fn restart(&mut self) -> Result<(), String> {
        self.kill9();
        self.launch()
    }

    /// The last `n_lines` of the broker's log (all runs of this broker).
    pub fn log_tail(&self, n_lines: usize) -> String {
        match &self.child {
            Some(child) => child.log_tail(n_lines),
            None => {
                // Not running: read the same file a new guard would.
                let path = self.dir.path().join("mosquitto.log");
                crate::child::read_tail(&path, n_lines)
                    .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
            }
        }
    }

    fn launch(&mut self) -> Result<(), String> {
        let conf = self.dir.path().join("mosquitto.conf");
        let o = &self.options;
        let mut text = format!(
            "# Written by tributary-testkit for one test.\n\
             listener {port} 127.0.0.1\n\
             allow_anonymous true\n\
             persistence false\n\
             max_inflight_messages {inflight}\n\
             max_queued_messages {queued}\n\
             log_dest stderr\n\
             log_type error\nlog_type warning\nlog_type notice\nlog_type information\n\
             connection_messages true\n",
            port = self.port,
            inflight = o.max_inflight_messages,
            queued = o.max_queued_messages,
        );
        for line in &o.extra_config {
            text.push_str(line);
            text.push('\n');
        }
        std::fs::write(&conf, text).map_err(|e| format!("{}: {e}", conf.display()))?;

        let mut cmd = Command::new(&self.binary);
        cmd.arg("-c").arg(&conf);
        let mut child = ChildGuard::spawn_logged("mosquitto", &mut cmd, self.dir.path())
            .map_err(|e| format!("cannot start {}: {e}", self.binary.display()))?;
        let port = self.port;
        let log = self.dir.path().join("mosquitto.log");
        // Ready = this run logged that it is running (after binding its
        // listener), it is still alive, and the port accepts connections.
        // A connect alone is not enough: when another process took the
        // port meanwhile, the connect reaches that process while the
        // broker is still on its way to exiting with EADDRINUSE.
        let ready = poll_for(START_DEADLINE, || {
            if !child.is_running() {
                return Some(false);
            }
            let running = crate::child::read_tail(&log, usize::MAX)
                .map(|t| {
                    t.rsplit(START_MARKER)
                        .next()
                        .is_some_and(|run| run.contains(RUNNING_LINE))
                })
                .unwrap_or(false);
            (running && TcpStream::connect(("127.0.0.1", port)).is_ok()).then(|| child.is_running())
        });
        if ready == Some(true) {
            self.child = Some(child);
            return Ok(());
        }
        let status = child.kill9().map(|s| s.to_string()).unwrap_or_default();
        Err(format!(
            "mosquitto ({}) did not accept connections on 127.0.0.1:{port} within \
             {START_DEADLINE:?} ({status}); log:\n{}",
            self.binary.display(),
            child.log_tail(30)
        ))
    }
}
