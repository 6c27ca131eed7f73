//! A child process that cannot outlive its test.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::poll_for;

/// How many log lines a guard prints when it is dropped during a panic.
const PANIC_TAIL_LINES: usize = 40;

/// Only the end of a log is ever shown, so a chatty child's megabytes are
/// not read into memory to print forty lines.
const TAIL_READ_BYTES: u64 = 256 * 1024;

/// Owns a [`Child`]; on drop the child is SIGKILLed ([`Child::kill`]) and
/// reaped, so a test that fails halfway (a panic unwinds through the guard)
/// leaves no process behind and no zombie.
///
/// Started with [`ChildGuard::spawn_logged`], the child's stdout and stderr
/// go to `<dir>/<name>.log`; a guard dropped while its thread panics prints
/// the last lines of that log to stderr, which is usually the explanation
/// of the failure.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    name: String,
    log: Option<PathBuf>,
    /// Set once the child was reaped: after that the pid may belong to an
    /// unrelated process, so it must never be signalled again.
    status: Option<ExitStatus>,
}

impl ChildGuard {
    /// Guards an already spawned child. `name` labels messages.
    pub fn new(name: impl Into<String>, child: Child) -> Self {
        ChildGuard {
            child,
            name: name.into(),
            log: None,
            status: None,
        }
    }

    /// Spawns `cmd` as is (its stdio settings are kept) and guards it.
    pub fn spawn(name: impl Into<String>, cmd: &mut Command) -> io::Result<Self> {
        let name = name.into();
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("spawning {name}: {e}")))?;
        Ok(Self::new(name, child))
    }

    /// Spawns `cmd` with stdout and stderr appended to `<log_dir>/<name>.log`
    /// (one file, so the two streams stay in order relative to each other).
    ///
    /// Appending means a restarted process (same name, same dir) continues
    /// the same log; a `=== <name> starting ===` line marks each start.
    pub fn spawn_logged(
        name: impl Into<String>,
        cmd: &mut Command,
        log_dir: &Path,
    ) -> io::Result<Self> {
        let name = name.into();
        std::fs::create_dir_all(log_dir)?;
        let path = log_dir.join(format!("{name}.log"));
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        writeln!(out, "=== {name} starting ===")?;
        let err = out.try_clone()?;
        cmd.stdout(Stdio::from(out)).stderr(Stdio::from(err));
        let mut guard = Self::spawn(name, cmd)?;
        guard.log = Some(path);
        Ok(guard)
    }

    /// The child's process id (still valid for signals while the guard has
    /// not reaped it, e.g. for `nix::sys::signal::kill(pid, SIGTERM)`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The name given at spawn.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The child itself, e.g. to take its stdin.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The captured log, when spawned with [`ChildGuard::spawn_logged`].
    pub fn log_path(&self) -> Option<&Path> {
        self.log.as_deref()
    }

    /// Sends SIGKILL (unless the child already exited) and reaps it:
    /// a crash with no chance to clean up.
    pub fn kill9(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.try_status()? {
            return Ok(status);
        }
        // Err here means the child exited in between (ESRCH is mapped to
        // Ok by std only once reaped): the wait below settles it either way.
        let _ = self.child.kill();
        let status = self.child.wait()?;
        self.status = Some(status);
        Ok(status)
    }

    /// The exit status if the child has exited (reaping it), `None` while
    /// it runs.
    pub fn try_status(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.status.is_none() {
            self.status = self.child.try_wait()?;
        }
        Ok(self.status)
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.try_status(), Ok(None))
    }

    /// Waits up to `timeout` for the child to exit by itself (after a
    /// SIGTERM, a `stop` command, end of input...): its status, or `None`
    /// if it is still running (the guard still kills it on drop).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        poll_for(timeout, || self.try_status().ok().flatten())
    }

    /// The last `n_lines` lines of the captured log (lossy UTF-8), or a
    /// one-line note when there is no log or it cannot be read: this is
    /// meant for assert messages, which should never fail themselves.
    pub fn log_tail(&self, n_lines: usize) -> String {
        let Some(path) = &self.log else {
            return format!("({}: output not captured)", self.name);
        };
        match read_tail(path, n_lines) {
            Ok(tail) => tail,
            Err(e) => format!("({}: cannot read {}: {e})", self.name, path.display()),
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.kill9();
        if std::thread::panicking() && self.log.is_some() {
            eprintln!(
                "--- last {PANIC_TAIL_LINES} lines of {} (pid {}) ---\n{}\n--- end of {} ---",
                self.name,
                self.child.id(),
                self.log_tail(PANIC_TAIL_LINES),
                self.name
            );
        }
    }
}

/// The last `n_lines` lines of the file at `path` (lossy UTF-8).
pub(crate) fn read_tail(path: &Path, n_lines: usize) -> io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let start = len.saturating_sub(TAIL_READ_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    let first = lines.len().saturating_sub(n_lines);
    Ok(lines.get(first..).unwrap_or_default().join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn drop_kills_a_running_child() {
        let guard = ChildGuard::spawn("sleeper", &mut sh("exec sleep 1000")).unwrap();
        let pid = guard.pid();
        drop(guard);
        // Reaped by the guard: /proc no longer has it (not even as a zombie).
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn kill9_reports_the_signal_and_is_idempotent() {
        use std::os::unix::process::ExitStatusExt;
        let mut guard = ChildGuard::spawn("sleeper", &mut sh("exec sleep 1000")).unwrap();
        assert!(guard.is_running());
        let status = guard.kill9().unwrap();
        assert_eq!(status.signal(), Some(9));
        assert_eq!(guard.kill9().unwrap().signal(), Some(9));
        assert!(!guard.is_running());
    }

    #[test]
    fn wait_exit_sees_a_normal_exit() {
        let mut guard = ChildGuard::spawn("exit3", &mut sh("exit 3")).unwrap();
        let status = guard.wait_exit(Duration::from_secs(30));
        assert_eq!(status.and_then(|s| s.code()), Some(3));
    }

    #[test]
    fn wait_exit_returns_none_while_running() {
        let mut guard = ChildGuard::spawn("sleeper", &mut sh("exec sleep 1000")).unwrap();
        assert_eq!(guard.wait_exit(Duration::ZERO), None);
    }

    #[test]
    fn log_tail_has_the_last_lines_of_both_streams() {
        let dir = tempfile::tempdir().unwrap();
        let mut guard = ChildGuard::spawn_logged(
            "talker",
            &mut sh("for i in 1 2 3 4 5; do echo out$i; done; echo err6 >&2"),
            dir.path(),
        )
        .unwrap();
        assert!(guard.wait_exit(Duration::from_secs(30)).is_some());
        assert_eq!(guard.log_tail(3), "out4\nout5\nerr6");
        assert!(guard.log_tail(100).starts_with("=== talker starting ==="));
        assert_eq!(
            guard.log_path(),
            Some(dir.path().join("talker.log").as_path())
        );
    }

    #[test]
    fn log_tail_without_capture_says_so() {
        let guard = ChildGuard::spawn("quiet", &mut sh("true")).unwrap();
        assert!(guard.log_tail(5).contains("not captured"));
    }
}
