//! Test support shared by Tributary's edge (`tributary-edge`), hub
//! (`tributary-hub`) and end-to-end (`tests/`) test suites.
//!
//! - [`free_port`], [`wait_until`], [`poll_for`]: the two primitives every
//!   multi-process test needs (STYLE.md §7: poll with a deadline, never
//!   assert on durations).
//! - [`ChildGuard`]: a child process that is SIGKILLed and reaped when the
//!   guard drops, so a failing test never leaks processes, with its output
//!   captured to a file whose tail a failing test can print.
//! - [`Mosquitto`]: a throwaway broker on a free loopback port; skipped
//!   locally when not installed, a hard error under CI.
//! - [`browser`]: headless Chromium (DOM dump, screenshot) for the
//!   dashboard tests.
//! - [`Postgres`]: a throwaway PostgreSQL cluster (initdb + pg_ctl on a free
//!   loopback port, run as the `postgres` user when we are root), with the
//!   same skip/CI policy, crash ([`Postgres::kill9`]) and restart.
//! - [`http`]: a minimal HTTP/1.1 client for the gateway's and hub's APIs.
//! - [`FaultProxy`]: a TCP proxy between clients and an upstream that can
//!   partition, black-hole, throttle and drop connections on command or on a
//!   seeded schedule ([`FaultProxy::run_schedule`]).
//!
//! Only std threads and `std::net`: the helpers work the same from plain
//! `#[test]`s, actix tests and tokio tests, and add no runtime.
//!
//! Errors are returned (`io::Result`, `Result<_, String>`) rather than
//! panicking, so the calling test decides how to fail and with which
//! message; the only panics are documented misuse.

#![warn(missing_docs)]

pub mod browser;
mod child;
pub mod http;
mod mosquitto;
mod postgres;
mod proxy;
mod schedule;
mod tls;

use std::net::TcpListener;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use child::ChildGuard;
pub use mosquitto::{Mosquitto, MosquittoOptions};
pub use postgres::{DEFAULT_DATABASE, Postgres, PostgresOptions};
pub use proxy::{FaultProxy, Mode, ProxyStats, ScheduleRunner};
pub use schedule::{SplitMix64, Step, schedule};
pub use tls::TestCa;

/// How often [`wait_until`] and [`poll_for`] re-check their condition:
/// fast enough that tests do not idle, slow enough not to steal one of the
/// two shared cores from the processes under test.
pub const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A currently free TCP port on 127.0.0.1.
///
/// The port is bound, read and released, so another process (a broker, the
/// gateway binary) can bind it itself. Another test may grab it in between;
/// [`Mosquitto`] retries on a fresh port for that reason, other callers
/// should treat a bind failure of their child as "try again".
///
/// # Panics
/// When the loopback interface cannot bind at all: no test that needs a
/// port could run anyway, and every caller would only unwrap.
pub fn free_port() -> u16 {
    match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
        Ok(addr) => addr.port(),
        Err(e) => panic!("cannot bind a free port on 127.0.0.1: {e}"),
    }
}

/// Polls `cond` every [`POLL_INTERVAL`] until it returns `true` (then
/// `true`) or `deadline` has passed (then `false`, after printing
/// "timed out ... waiting for `what`" to stderr so the test log says what
/// was being waited for even when the caller's assert message does not).
///
/// `cond` is always called at least once, and once more after the deadline
/// passed, so a condition that became true while the thread slept counts.
pub fn wait_until(deadline: Duration, what: &str, mut cond: impl FnMut() -> bool) -> bool {
    let found = poll_for(deadline, || cond().then_some(()));
    if found.is_none() {
        eprintln!("timed out after {deadline:?} waiting for {what}");
    }
    found.is_some()
}

/// Polls `f` every [`POLL_INTERVAL`] until it returns `Some` (returned) or
/// `deadline` has passed (`None`). Like [`wait_until`] for conditions that
/// also produce the value the test wants next.
pub fn poll_for<T>(deadline: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(t) = f() {
            return Some(t);
        }
        if Instant::now() >= end {
            // One last look: the condition may have become true during the
            // final sleep, which would otherwise be reported as a timeout.
            return f();
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Whether the tests run under CI: the `CI` environment variable is set to
/// anything but empty, `0` or `false` (GitHub Actions, GitLab and most
/// others set `CI=true`). Under CI a missing external tool is a failure,
/// locally it is a skip (STYLE.md §7).
pub fn is_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| !matches!(v.trim(), "" | "0" | "false" | "FALSE" | "False"))
}

/// Finds an executable by name on `PATH`, then in the sbin/bin directories
/// that are often missing from a non-root `PATH` (Debian installs
/// `mosquitto` in `/usr/sbin`).
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(
        [
            "/usr/sbin",
            "/usr/bin",
            "/usr/local/sbin",
            "/usr/local/bin",
            "/sbin",
            "/bin",
        ]
        .map(PathBuf::from),
    );
    dirs.into_iter()
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// [`find_binary`] with the CI policy: `Ok(Some(path))` when found,
/// `Ok(None)` when missing outside CI (the caller prints "skipped" and
/// returns), `Err` with an install hint when missing under CI.
pub fn find_tool(name: &str) -> Result<Option<PathBuf>, String> {
    tool_policy(name, find_binary(name), is_ci())
}

fn tool_policy(name: &str, found: Option<PathBuf>, ci: bool) -> Result<Option<PathBuf>, String> {
    match found {
        Some(path) => Ok(Some(path)),
        None if ci => Err(format!(
            "`{name}` is required under CI (CI is set) but was found neither on PATH nor in \
             /usr/sbin, /usr/bin, /usr/local/{{s,}}bin; scripts/setup.sh installs it"
        )),
        None => Ok(None),
    }
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_port_is_bindable_again() {
        let port = free_port();
        assert_ne!(port, 0);
        // Released: the caller (here the test itself) can bind it.
        assert!(TcpListener::bind(("127.0.0.1", port)).is_ok());
    }

    #[test]
    fn wait_until_returns_true_once_the_condition_holds() {
        let mut calls = 0;
        assert!(wait_until(Duration::from_secs(10), "third call", || {
            calls += 1;
            calls >= 3
        }));
        assert_eq!(calls, 3);
    }

    #[test]
    fn wait_until_gives_up_after_the_deadline() {
        let mut calls = 0;
        assert!(!wait_until(Duration::ZERO, "never", || {
            calls += 1;
            false
        }));
        // Once before the deadline check and once after it.
        assert_eq!(calls, 2);
    }

    #[test]
    fn poll_for_returns_the_value() {
        let mut n = 0;
        assert_eq!(
            poll_for(Duration::from_secs(10), || {
                n += 1;
                (n == 2).then_some("ready")
            }),
            Some("ready")
        );
    }

    #[test]
    fn a_missing_tool_skips_locally_and_fails_under_ci() {
        assert_eq!(tool_policy("x", None, false), Ok(None));
        let err = tool_policy("mosquitto", None, true).unwrap_err();
        assert!(err.contains("`mosquitto` is required under CI"), "{err}");
        let found = Some(PathBuf::from("/usr/sbin/x"));
        assert_eq!(tool_policy("x", found.clone(), true), Ok(found));
    }

    #[test]
    fn finds_sh_but_not_nonsense() {
        assert!(find_binary("sh").is_some());
        assert!(find_binary("no-such-binary-tributary-testkit").is_none());
    }
}
