//! The sources: everything that turns outside data into [`Submit`]s for the
//! ingest actor.
//!
//! | Source | Entry point | Options | Origin (idempotency key) |
//! |---|---|---|---|
//! | serial link to firmware | [`serial::run`] | [`serial::SerialOptions`] | `dev-{device:016x}-{boot}`, frame `seq` |
//! | local MQTT subscription | [`mqtt::run`] | [`mqtt::LocalMqttOptions`] | the body's `source` + `seq`, if it has them |
//! | simulator | [`simulator::run`] | [`simulator::SimulatorOptions`] | none: it never retransmits |
//! | CSV replay | [`replay::run`] | [`replay::ReplayOptions`] | `replay:<file name>`, batch index |
//!
//! Every `run` has the same shape:
//!
//! ```text
//! pub async fn run(opts, ingest: Recipient<Submit>, metrics: Metrics,
//!                  shutdown: watch::Receiver<bool>) -> Result<(), SourceError>
//! ```
//!
//! It is a plain future: spawn it on the actix system (`actix::spawn`) and
//! keep the handle. It returns `Ok(())` when `shutdown` turns `true` (or its
//! sender is dropped), when ingest answers `ShuttingDown`, or, for a finite
//! source (replay), when it is done; `Err` only for a configuration or
//! resource problem it cannot recover from (a CSV file that cannot be
//! opened). Transient failures (a serial port that disappears, a broker that
//! goes away) are retried inside with a capped backoff.
//!
//! The verdict rules every source follows ([`submit`]):
//! - `Ok(Accepted)`: the data is durable; only now is it acknowledged to its
//!   sender (a `DeviceAck` frame, an MQTT PUBACK).
//! - `Err(Rejected)`: final; counted by ingest in
//!   `tributary_readings_rejected_total{source, reason}`, logged once at
//!   warn, acknowledged so the sender drops it.
//! - `Busy`, `Store`, a mailbox error: not stored; counted in
//!   `tributary_ingest_refused_total{source, reason}` (by ingest, or here
//!   for mailbox errors) and retried with a capped backoff ([`RETRY_MIN`] doubling up to [`RETRY_MAX`]).
//! - `ShuttingDown`: the source stops. A submission in flight at shutdown is
//!   abandoned unacknowledged; its sender resends it, and the store
//!   deduplicates it by its origin.
//!
//! Submissions go through `Recipient::send(..).await`, never `do_send`,
//! so a full ingest mailbox slows the source down instead of growing.

use std::time::Duration;

use actix::{MailboxError, Recipient};
use tokio::sync::watch;

use crate::ingest::{Accepted, IngestError, Submit};
use crate::metrics::Metrics;
use crate::reading::{Rejected, SourceKind, Submission};

pub mod mqtt;
pub mod replay;
pub mod serial;
pub mod simulator;

/// First wait before resubmitting a submission ingest could not take.
pub const RETRY_MIN: Duration = Duration::from_millis(50);
/// Longest wait between resubmissions.
pub const RETRY_MAX: Duration = Duration::from_secs(5);

/// Why a source stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// An option is invalid (checked before any I/O).
    #[error("invalid {source_kind} options: {detail}")]
    Config {
        /// Which source (`serial`, `mqtt`, …).
        source_kind: &'static str,
        /// What is wrong, for the operator.
        detail: String,
    },
    /// A file the source needs could not be used.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        error: std::io::Error,
    },
    /// A CSV file is unreadable as a whole (no header, unknown column).
    #[error("{path}: {detail}")]
    Csv {
        /// The file.
        path: String,
        /// What is wrong.
        detail: String,
    },
}

/// How ingest finally answered a submission (after retrying what was not
/// final).
#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Durable: acknowledge it to the sender.
    Durable(Accepted),
    /// Refused as invalid, final: it was counted and logged; acknowledge it
    /// so the sender drops it.
    Rejected(Rejected),
    /// The gateway is stopping: stop the source, do not acknowledge.
    ShuttingDown,
}

/// A doubling delay between [`RETRY_MIN`]-like and [`RETRY_MAX`]-like
/// bounds, reset after a success.
#[derive(Clone, Debug)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    /// Starts at `min`, doubles per [`Backoff::next_delay`], never above `max`.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        let min = min.min(max);
        Backoff {
            min,
            max,
            next: min,
        }
    }

    /// The delay to wait now; the following one doubles.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        d
    }

    /// Back to the shortest delay, after a success.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

/// The metric label of a mailbox failure.
fn mailbox_reason(e: &MailboxError) -> &'static str {
    match e {
        MailboxError::Closed => "mailbox_closed",
        MailboxError::Timeout => "mailbox_timeout",
    }
}

/// Hands `submission` to ingest and waits for a final verdict, retrying
/// what is not final (`Busy`, `Store`, mailbox errors) with a capped
/// backoff. Ingest counts its own verdicts (rejections, busy, store
/// errors); this counts only mailbox failures
/// (`tributary_ingest_refused_total{reason="mailbox_closed|mailbox_timeout"}`)
/// and logs a rejection once at warn; `what` names the submission there.
///
/// Cancel-safe in the sense the sources need: dropping the future abandons
/// the submission unacknowledged (ingest may still store it; the sender's
/// retransmission is then a duplicate the store ignores).
pub async fn submit(
    ingest: &Recipient<Submit>,
    kind: SourceKind,
    submission: Submission,
    metrics: &Metrics,
    what: &str,
) -> Verdict {
    let mut backoff = Backoff::new(RETRY_MIN, RETRY_MAX);
    loop {
        let msg = Submit {
            source: kind,
            submission: submission.clone(),
        };
        match ingest.send(msg).await {
            Ok(Ok(accepted)) => return Verdict::Durable(accepted),
            // Ingest counted the rejection and refusals below (it is where
            // they are decided); the source counts only its own failures.
            Ok(Err(IngestError::Rejected(r))) => {
                tracing::warn!(source = kind.as_str(), submission = what, error = %r, "submission rejected");
                return Verdict::Rejected(r);
            }
            Ok(Err(IngestError::ShuttingDown)) => return Verdict::ShuttingDown,
            Ok(Err(e @ (IngestError::Busy | IngestError::Store(_)))) => {
                tracing::debug!(source = kind.as_str(), submission = what, error = %e, "ingest refused; retrying");
            }
            Err(e) => {
                tracing::debug!(source = kind.as_str(), submission = what, error = %e, "ingest unreachable; retrying");
                metrics
                    .ingest_refused
                    .get_or_create(&[("source", kind.as_str()), ("reason", mailbox_reason(&e))])
                    .inc();
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Completes when `shutdown` says stop: it turned `true`, or its sender is
/// gone (nobody can tell the source to stop any more, so it stops).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // `wait_for` checks the current value first, so a signal sent before
    // the source started is not missed.
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Whether `shutdown` already says stop.
pub fn is_stopped(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

/// The wall clock (one definition for the whole gateway).
pub use crate::ingest::wall_clock as wall_now;

/// Serde helpers for durations written with units (`"250ms"`, `"30s"`).
pub mod duration_str {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    /// Deserializes a humantime duration string with a readable error.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(&s).map_err(|e| {
            serde::de::Error::custom(format!(
                "invalid duration `{s}`: {e} (write it with a unit, e.g. \"250ms\", \"30s\")"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let got: Vec<_> = (0..4).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [100, 200, 350, 350]);
        b.reset();
        assert_eq!(b.next_delay().as_millis(), 100);
    }

    #[test]
    fn durations_need_units() {
        #[derive(serde::Deserialize)]
        struct T {
            #[serde(with = "duration_str")]
            d: Duration,
        }
        let ok: T = serde_json::from_str(r#"{"d":"250ms"}"#).unwrap();
        assert_eq!(ok.d, Duration::from_millis(250));
        let err = serde_json::from_str::<T>(r#"{"d":"250"}"#)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("invalid duration `250`"), "{err}");
    }
}
