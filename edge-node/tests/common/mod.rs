//! A fake ingest actor for the source tests: records every submission it
//! is sent and answers like the real one would for a store that always
//! commits (validation with generous limits, then `Accepted`), unless the
//! test scripted other answers first.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix::{Actor, Context, Handler, MessageResult, Recipient};
use tributary_edge::ingest::{Accepted, IngestError, Submit};
use tributary_edge::reading::{Limits, SourceKind, Submission};

/// What the fake ingest saw, shared with the test.
#[derive(Clone, Default)]
pub struct Recorded {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    submissions: Vec<(SourceKind, Submission)>,
    answers: VecDeque<Result<Accepted, IngestError>>,
}

impl Recorded {
    /// Every submission so far, in arrival order (refused ones included).
    pub fn submissions(&self) -> Vec<Submission> {
        self.lock()
            .submissions
            .iter()
            .map(|(_, s)| s.clone())
            .collect()
    }

    /// The source kinds submissions arrived with.
    pub fn kinds(&self) -> Vec<SourceKind> {
        self.lock().submissions.iter().map(|(k, _)| *k).collect()
    }

    /// Answers the next submissions with these, in order, before returning
    /// to the default.
    pub fn script(&self, answers: impl IntoIterator<Item = Result<Accepted, IngestError>>) {
        self.lock().answers.extend(answers);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A test thread that panicked while holding the lock already failed
        // the test; keep going to report that failure.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct FakeIngest {
    recorded: Recorded,
}

impl Actor for FakeIngest {
    type Context = Context<Self>;
}

impl Handler<Submit> for FakeIngest {
    type Result = MessageResult<Submit>;

    fn handle(&mut self, msg: Submit, _: &mut Context<Self>) -> Self::Result {
        let mut state = self.recorded.lock();
        state.submissions.push((msg.source, msg.submission.clone()));
        if let Some(answer) = state.answers.pop_front() {
            return MessageResult(answer);
        }
        let limits = Limits {
            now: tributary_edge::sources::wall_now(),
            max_future_ms: 86_400_000,
            max_items: 10_000,
        };
        MessageResult(match msg.submission.validate(&limits) {
            Ok(()) => Ok(Accepted {
                readings: msg.submission.items.iter().map(|i| i.readings()).sum(),
                duplicate: false,
            }),
            Err(r) => Err(IngestError::Rejected(r)),
        })
    }
}

/// Starts a fake ingest actor on the current actix system.
pub fn start() -> (Recipient<Submit>, Recorded) {
    let recorded = Recorded::default();
    let addr = FakeIngest {
        recorded: recorded.clone(),
    }
    .start();
    (addr.recipient(), recorded)
}

/// Polls `cond` every 10 ms until it holds or `within` passes; returns
/// whether it held. Never a timing assertion: the deadline is generous and
/// only bounds how long a broken test hangs.
pub async fn eventually(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The value of a counter in the Prometheus text, 0 if absent.
pub fn counter(metrics: &tributary_edge::metrics::Metrics, line_prefix: &str) -> u64 {
    metrics
        .encode()
        .lines()
        .find_map(|l| l.strip_prefix(line_prefix)?.trim().parse().ok())
        .unwrap_or(0)
}

/// The generous deadline every test waits with.
pub const DEADLINE: Duration = Duration::from_secs(20);
