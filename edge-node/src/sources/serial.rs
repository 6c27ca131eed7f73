//! The serial link to firmware: COBS + CRC-32 frames
//! ([`tributary_core::codec::frame`]) carrying v1 device messages
//! ([`tributary_core::codec::v1::device`]).
//!
//! Entry point: [`run`] with [`SerialOptions`].
//!
//! # Protocol, gateway side
//!
//! - **`DeviceHello {device, boot}`** opens a link session: the gateway
//!   remembers who is at the other end and answers with a `TimeSync {now}`
//!   (the device's clock stamps its readings).
//! - **`Readings` / `Window`** become one [`Submission`] each, with origin
//!   `{source: "dev-{device:016x}-{boot}", seq}`, so a retransmitted frame
//!   is a duplicate the store ignores. A `Readings` frame gives one
//!   [`Item::Reading`] per sample at `base + offset_ms`; a `Window` gives one
//!   [`Item::Window`].
//! - **`DeviceAck {boot, upto}`** is written once a frame's verdict is final
//!   (durable, or rejected as invalid, which the device must drop too). It is
//!   cumulative (docs/protocol.md, "DeviceAck"): `upto` is the highest `seq`
//!   such that every frame from the session's first one up to it is final, so
//!   a frame lost on the wire (a gap) holds the acknowledgement back until
//!   the device resends it. A retransmission of an already acknowledged
//!   frame is submitted again (dedup is the store's job) and answered with
//!   the current `upto` again.
//! - **Where the count starts.** The gateway cannot know which frames a
//!   previous gateway run acknowledged, so it takes the first data frame
//!   after a `DeviceHello` as the device's oldest unacknowledged frame (a
//!   device resends its unacknowledged ring oldest first after a hello). If
//!   a frame was rejected (CRC, COBS, decode) between the hello and that
//!   first frame, the first frame might not be the oldest: the gateway then
//!   submits frames but acknowledges nothing and asks for a new hello with a
//!   `TimeSync` (the protocol's "hello whenever the gateway asks").
//! - **Data frames before any hello** (the gateway restarted while the
//!   device kept sending) are dropped and counted as
//!   `tributary_frames_rejected_total{reason="no_hello"}`; the gateway
//!   answers with a `TimeSync` (at most one per second), which makes the
//!   device say hello and then resend them.
//! - Frames the device should never send (`DeviceAck`, `TimeSync`) are
//!   counted as `unexpected_message`. Framing and decoding errors are counted
//!   with the core error's `reason()`; the decoder resynchronises at the
//!   next delimiter.
//!
//! # I/O
//!
//! The port is opened read/write; a tty is put in raw mode at the configured
//! baud rate with a 100 ms read timeout (`VMIN = 0, VTIME = 1`), so the
//! blocking reader thread notices a shutdown promptly. Writes go through a
//! writer thread. When the port fails (a USB adapter unplugged), the session
//! ends and the port is reopened with a capped backoff.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix::Recipient;
use tokio::sync::{mpsc, watch};
use tributary_core::codec::frame::{self, FrameDecoder};
use tributary_core::codec::v1::{self, DeviceAck, DeviceMessage, TimeSync};
use tributary_core::ids::{DeviceId, Timestamp};

use super::{Backoff, SourceError, Verdict, duration_str, is_stopped, stopped, submit, wall_now};
use crate::ingest::Submit;
use crate::metrics::Metrics;
use crate::reading::{Item, Origin, Sample, SourceKind, Submission};

mod acks;
mod port;

use acks::AckWindow;
use port::{Port, baud_rate, open_port, read_loop, write_loop};

const KIND: SourceKind = SourceKind::Serial;

/// Least time between two `TimeSync`s sent to ask for a hello.
const HELLO_PROMPT_EVERY: Duration = Duration::from_secs(1);

/// Options of the serial source (config section of one serial port).
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SerialOptions {
    /// The port: a tty such as `/dev/ttyACM0` (or a PTY in tests).
    pub path: PathBuf,
    /// Line speed in baud (ignored for a non-tty path). One of 9600, 19200,
    /// 38400, 57600, 115200, 230400, 460800, 921600.
    pub baud: u32,
    /// First wait before reopening a port that failed or is missing.
    #[serde(with = "duration_str")]
    pub reopen_min: Duration,
    /// Longest wait between reopen attempts.
    #[serde(with = "duration_str")]
    pub reopen_max: Duration,
}

impl Default for SerialOptions {
    fn default() -> Self {
        SerialOptions {
            path: PathBuf::from("/dev/ttyACM0"),
            baud: 115_200,
            reopen_min: Duration::from_millis(500),
            reopen_max: Duration::from_secs(30),
        }
    }
}

/// Reads frames from the port until `shutdown`; see the [module docs](self).
///
/// Returns `Ok(())` on shutdown (or when ingest is shutting down), `Err`
/// only for invalid options. A missing or failing port is retried.
pub async fn run(
    opts: SerialOptions,
    ingest: Recipient<Submit>,
    metrics: Metrics,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SourceError> {
    let Some(baud) = baud_rate(opts.baud) else {
        return Err(SourceError::Config {
            source_kind: "serial",
            detail: format!(
                "baud {} is not supported (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)",
                opts.baud
            ),
        });
    };
    let path = opts.path.display().to_string();
    let mut reopen = Backoff::new(opts.reopen_min, opts.reopen_max);
    let mut link = Link::new(ingest, metrics);
    while !is_stopped(&shutdown) {
        let open_path = opts.path.clone();
        let opened = tokio::task::spawn_blocking(move || open_port(&open_path, baud)).await;
        let port = match opened {
            Ok(Ok(port)) => port,
            Ok(Err(e)) => {
                let delay = reopen.next_delay();
                tracing::warn!(port = %path, error = %e, retry_in = ?delay, "cannot open serial port");
                tokio::select! {
                    _ = stopped(&mut shutdown) => break,
                    _ = tokio::time::sleep(delay) => continue,
                }
            }
            Err(e) => {
                tracing::error!(port = %path, error = %e, "serial open task failed");
                tokio::select! {
                    _ = stopped(&mut shutdown) => break,
                    _ = tokio::time::sleep(reopen.next_delay()) => continue,
                }
            }
        };
        tracing::info!(port = %path, baud = opts.baud, tty = port.is_tty, "serial port open");
        match link.session(port, &mut shutdown, &mut reopen).await {
            SessionEnd::Stop => break,
            SessionEnd::Failed(e) => {
                let delay = reopen.next_delay();
                tracing::warn!(port = %path, error = %e, retry_in = ?delay, "serial link lost");
                tokio::select! {
                    _ = stopped(&mut shutdown) => break,
                    _ = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    tracing::info!(port = %path, "serial source stopped");
    Ok(())
}

enum SessionEnd {
    Stop,
    Failed(std::io::Error),
}

/// Who is at the other end of the link.
#[derive(Debug)]
struct Peer {
    device: DeviceId,
    boot: u32,
    source: String,
    acks: AckWindow,
}

/// State of the serial link across port reopenings.
struct Link {
    ingest: Recipient<Submit>,
    metrics: Metrics,
    peer: Option<Peer>,
    last_prompt: Option<Instant>,
    warned_no_hello: bool,
}

impl Link {
    fn new(ingest: Recipient<Submit>, metrics: Metrics) -> Link {
        Link {
            ingest,
            metrics,
            peer: None,
            last_prompt: None,
            warned_no_hello: false,
        }
    }

    async fn session(
        &mut self,
        port: Port,
        shutdown: &mut watch::Receiver<bool>,
        reopen: &mut Backoff,
    ) -> SessionEnd {
        // A reopened port may lead to another device (or a rebooted one):
        // it must say hello again.
        self.peer = None;
        self.warned_no_hello = false;
        let writer_file = match port.file.try_clone() {
            Ok(f) => f,
            Err(e) => return SessionEnd::Failed(e),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let (chunks_tx, mut chunks) = mpsc::channel(16);
        let reader = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("serial-read".into())
                .spawn(move || read_loop(port.file, port.is_tty, &stop, &chunks_tx))
        };
        if let Err(e) = reader {
            return SessionEnd::Failed(e);
        }
        let (out_tx, out_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(32);
        if let Err(e) = std::thread::Builder::new()
            .name("serial-write".into())
            .spawn(move || write_loop(writer_file, &out_rx))
        {
            stop.store(true, Ordering::Relaxed);
            return SessionEnd::Failed(e);
        }
        let mut out = Outgoing { tx: out_tx };
        let end = self.pump(&mut chunks, &mut out, shutdown, reopen).await;
        // The reader sees the flag within its 100 ms read timeout (or its
        // next failed send); the writer ends when `out` is dropped.
        stop.store(true, Ordering::Relaxed);
        end
    }

    async fn pump(
        &mut self,
        chunks: &mut mpsc::Receiver<std::io::Result<Vec<u8>>>,
        out: &mut Outgoing,
        shutdown: &mut watch::Receiver<bool>,
        reopen: &mut Backoff,
    ) -> SessionEnd {
        let mut decoder = Box::new(FrameDecoder::<{ frame::MAX_FRAME_PAYLOAD }>::new());
        loop {
            let chunk = tokio::select! {
                biased;
                _ = stopped(shutdown) => return SessionEnd::Stop,
                c = chunks.recv() => c,
            };
            let bytes = match chunk {
                Some(Ok(bytes)) => bytes,
                Some(Err(e)) => return SessionEnd::Failed(e),
                None => {
                    return SessionEnd::Failed(std::io::Error::other("serial reader stopped"));
                }
            };
            // Data flows: the port works, so the next failure starts the
            // reopen backoff from its shortest delay.
            reopen.reset();
            let mut input = bytes.as_slice();
            while let Some(result) = decoder.feed(&mut input) {
                let payload = match result {
                    Ok(p) => p.to_vec(),
                    Err(e) => {
                        self.reject_frame(e.reason(), &e);
                        continue;
                    }
                };
                let msg = match v1::decode_device(&payload) {
                    Ok(msg) => msg,
                    Err(e) => {
                        self.reject_frame(e.reason(), &e);
                        continue;
                    }
                };
                let handled = tokio::select! {
                    biased;
                    _ = stopped(shutdown) => return SessionEnd::Stop,
                    h = self.handle(msg, out) => h,
                };
                if handled.is_break() {
                    return SessionEnd::Stop;
                }
            }
        }
    }

    fn reject_frame(&mut self, reason: &'static str, error: &dyn std::fmt::Display) {
        self.metrics
            .frames_rejected
            .get_or_create(&[("reason", reason)])
            .inc();
        tracing::warn!(reason, %error, "serial frame rejected");
        if let Some(peer) = &mut self.peer {
            peer.acks.frame_lost();
        }
    }

    /// Handles one decoded frame; `Break` when ingest is shutting down.
    async fn handle(
        &mut self,
        msg: DeviceMessage,
        out: &mut Outgoing,
    ) -> std::ops::ControlFlow<()> {
        use std::ops::ControlFlow::Continue;
        let (seq, items) = match msg {
            DeviceMessage::Hello(h) => {
                let same = self
                    .peer
                    .as_ref()
                    .is_some_and(|p| p.device == h.device && p.boot == h.boot);
                match &mut self.peer {
                    Some(peer) if same => peer.acks.hello(),
                    _ => {
                        tracing::info!(device = %h.device, boot = h.boot, firmware = h.firmware, "device hello");
                        self.peer = Some(Peer {
                            device: h.device,
                            boot: h.boot,
                            source: format!("dev-{}-{}", h.device, h.boot),
                            acks: AckWindow::default(),
                        });
                    }
                }
                self.warned_no_hello = false;
                out.send(&DeviceMessage::TimeSync(TimeSync { now: wall_now() }));
                return Continue(());
            }
            DeviceMessage::Readings(r) => {
                let base = r.base.as_millis();
                let items = r
                    .samples
                    .0
                    .iter()
                    .map(|s| {
                        Item::Reading(Sample {
                            sensor: r.sensor,
                            // decode_device checked that base + offset fits.
                            ts: Timestamp::from_millis(base.saturating_add(u64::from(s.offset_ms))),
                            value: f64::from(s.value),
                        })
                    })
                    .collect();
                (r.seq, items)
            }
            DeviceMessage::Window(w) => (
                w.seq,
                vec![Item::Window {
                    sensor: w.sensor,
                    summary: w.summary,
                }],
            ),
            DeviceMessage::Ack(_) | DeviceMessage::TimeSync(_) => {
                // A readable frame, not a lost data frame: no taint.
                self.metrics
                    .frames_rejected
                    .get_or_create(&[("reason", "unexpected_message")])
                    .inc();
                tracing::warn!(
                    reason = "unexpected_message",
                    "serial frame rejected: gateway-to-device message from the device"
                );
                return Continue(());
            }
        };
        let Some(peer) = &mut self.peer else {
            self.metrics
                .frames_rejected
                .get_or_create(&[("reason", "no_hello")])
                .inc();
            if !self.warned_no_hello {
                self.warned_no_hello = true;
                tracing::warn!(
                    seq,
                    "data frame before any device hello: dropped, asking for a hello"
                );
            }
            self.prompt_hello(out);
            return Continue(());
        };
        if !peer.acks.arrived(seq) {
            tracing::debug!(device = %peer.device, seq, "first frame after a lost one: asking for a hello");
            self.prompt_hello(out);
        }
        let Some(peer) = &self.peer else {
            return Continue(());
        };
        let submission = Submission {
            origin: Some(Origin {
                source: peer.source.clone(),
                seq: u64::from(seq),
            }),
            items,
        };
        let what = format!("{} seq {seq}", peer.source);
        let verdict = submit(&self.ingest, KIND, submission, &self.metrics, &what).await;
        if verdict == Verdict::ShuttingDown {
            return std::ops::ControlFlow::Break(());
        }
        if let Some(peer) = &mut self.peer
            && let Some(upto) = peer.acks.finished(seq)
        {
            let boot = peer.boot;
            out.send(&DeviceMessage::Ack(DeviceAck { boot, upto }));
        }
        Continue(())
    }

    fn prompt_hello(&mut self, out: &mut Outgoing) {
        let now = Instant::now();
        if self
            .last_prompt
            .is_some_and(|t| now.duration_since(t) < HELLO_PROMPT_EVERY)
        {
            return;
        }
        self.last_prompt = Some(now);
        out.send(&DeviceMessage::TimeSync(TimeSync { now: wall_now() }));
    }
}

/// Frames on their way to the writer thread.
struct Outgoing {
    tx: std::sync::mpsc::SyncSender<Vec<u8>>,
}

impl Outgoing {
    /// Queues one frame without blocking. A frame that does not fit is
    /// dropped: acks are cumulative and time syncs periodic, so the next
    /// one makes up for it.
    fn send(&mut self, msg: &DeviceMessage) {
        let payload = v1::encode_device_vec(msg);
        let Ok(wire) = frame::encode_to_vec(&payload) else {
            // Only an empty payload fails, and a message has a version byte.
            return;
        };
        if self.tx.try_send(wire).is_err() {
            tracing::debug!("serial write queue full: frame to the device dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_have_defaults_and_refuse_unknown_keys() {
        let o: SerialOptions = serde_json::from_str(r#"{"path":"/dev/ttyUSB1"}"#).unwrap();
        assert_eq!(o.baud, 115_200);
        assert_eq!(o.reopen_max, Duration::from_secs(30));
        assert!(serde_json::from_str::<SerialOptions>(r#"{"bud":9600}"#).is_err());
        assert!(baud_rate(12_345).is_none());
    }
}
