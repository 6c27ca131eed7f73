//! A throwaway PostgreSQL server for tests.
//!
//! `initdb` refuses to run as root, so when the tests run as root (CI, the
//! developer containers) the cluster directory is handed to the `postgres`
//! user and every server binary runs through `runuser -u postgres --`
//! (docs/hub-storage.md, PLATFORM.md "Other real services in tests").

use std::net::TcpStream;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::{find_binary, free_port, is_ci, poll_for};

/// How long `pg_ctl start -w` may wait for the server to accept
/// connections (seconds, its `-t`). A fresh cluster starts in well under a
/// second; crash recovery after [`Postgres::kill9`] and a loaded 2-core CI
/// machine need the margin.
const START_TIMEOUT_S: u32 = 60;

/// Fresh ports tried when the server cannot bind the one it was given
/// (another test took it between [`free_port`] and the postmaster's bind).
const PORT_ATTEMPTS: usize = 5;

/// How long [`Postgres::kill9`] waits for the killed processes to be gone
/// (their shared memory must be released before a restart can attach).
const KILL_DEADLINE: Duration = Duration::from_secs(15);

/// The database [`Postgres::url`] names, created by [`Postgres::start`].
pub const DEFAULT_DATABASE: &str = "tributary";

/// Server settings for [`Postgres::start_with`].
#[derive(Debug, Clone, Default)]
pub struct PostgresOptions {
    /// Keep PostgreSQL's durable defaults (`fsync = on`). Off by default:
    /// tests need correct transactions and crash recovery after a process
    /// kill, not power-loss safety, and fsync per commit would make the 2
    /// shared cores wait on the disk. Benches that compare with a durable
    /// SQLite turn it on.
    pub durable: bool,
    /// Extra server settings, each `name=value`, passed as `-c name=value`.
    pub settings: Vec<String>,
}

/// A PostgreSQL cluster in its own temp dir, listening on 127.0.0.1 and a
/// free port (unix socket inside the temp dir), trusting every loopback
/// connection as user `postgres`, with a database [`DEFAULT_DATABASE`].
/// Its log is `<dir>/postgres.log` ([`Postgres::log_tail`]). Stopped with
/// `pg_ctl stop -m immediate` and removed when dropped.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    /// `runuser` when running as root (see the module docs).
    runuser: Option<PathBuf>,
    options: PostgresOptions,
    port: u16,
    running: bool,
    dir: tempfile::TempDir,
}

impl Postgres {
    /// Starts a server with [`PostgresOptions::default`].
    ///
    /// `Ok(None)` when the PostgreSQL server binaries are not installed and
    /// `CI` is not set: the caller prints "skipped" and returns. `Err` (with
    /// the reason and the server's log) when they are missing under CI or
    /// the server fails to start.
    ///
    /// ```ignore
    /// let Some(pg) = Postgres::start().unwrap() else {
    ///     eprintln!("skipped: postgresql not installed");
    ///     return;
    /// };
    /// let url = pg.url();
    /// ```
    pub fn start() -> Result<Option<Postgres>, String> {
        Self::start_with(PostgresOptions::default())
    }

    /// [`Postgres::start`] with explicit options.
    pub fn start_with(options: PostgresOptions) -> Result<Option<Postgres>, String> {
        let Some(bin) = find_server_bin() else {
            if is_ci() {
                return Err(
                    "PostgreSQL (initdb, pg_ctl) is required under CI (CI is set) but \
                            was found neither in /usr/lib/postgresql/*/bin nor on PATH; \
                            scripts/setup.sh installs it (apt `postgresql`)"
                        .to_string(),
                );
            }
            return Ok(None);
        };
        let dir = tempfile::Builder::new()
            .prefix("tributary-pg-")
            .tempdir()
            .map_err(|e| format!("postgres temp dir: {e}"))?;
        let runuser = hand_to_postgres_user(dir.path())?;
        let mut pg = Postgres {
            bin,
            runuser,
            options,
            port: 0,
            running: false,
            dir,
        };
        pg.initdb()?;
        let mut last_err = String::new();
        for _ in 0..PORT_ATTEMPTS {
            pg.port = free_port();
            match pg.launch() {
                Ok(()) => {
                    pg.create_database(DEFAULT_DATABASE)?;
                    return Ok(Some(pg));
                }
                Err(e) => last_err = e,
            }
        }
        Err(last_err)
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The connection URL of [`DEFAULT_DATABASE`] (user `postgres`, no
    /// password: loopback is trusted).
    pub fn url(&self) -> String {
        self.url_for(DEFAULT_DATABASE)
    }

    /// The connection URL of database `db` on this server.
    pub fn url_for(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// The temp dir holding the cluster (`data/`), the socket and the log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Creates database `name` (a fresh, empty one per test case is
    /// cheaper than a server per case) and returns its URL.
    pub fn create_database(&self, name: &str) -> Result<String, String> {
        let createdb = self.bin.join("createdb");
        let out = self.run(
            &createdb,
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                name,
            ],
        )?;
        if !out.status.success() {
            return Err(format!(
                "createdb {name}: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        Ok(self.url_for(name))
    }

    /// Kills the postmaster and every server process with SIGKILL (a crash
    /// of the database machine: uncommitted transactions are lost, clients
    /// see their connections reset) and waits until they are gone. The
    /// port stays this server's for [`Postgres::restart`], which runs crash
    /// recovery.
    pub fn kill9(&mut self) -> Result<(), String> {
        let Some(pid) = self.postmaster_pid() else {
            self.running = false;
            return Ok(());
        };
        // Children first: a backend whose postmaster died would otherwise
        // keep running (and holding shared memory) for a moment.
        let mut pids = children_of(pid);
        pids.push(pid);
        for p in &pids {
            // Exit status ignored: a process may already have exited.
            let _ = Command::new("kill").args(["-9", &p.to_string()]).output();
        }
        self.running = false;
        let gone = poll_for(KILL_DEADLINE, || {
            pids.iter()
                .all(|p| !Path::new(&format!("/proc/{p}")).exists())
                .then_some(())
        });
        gone.ok_or_else(|| format!("postgres processes {pids:?} still alive after SIGKILL"))
    }

    /// Starts the server again on the same port and data (after
    /// [`Postgres::kill9`]: with crash recovery), stopping it first if it
    /// runs.
    pub fn restart(&mut self) -> Result<(), String> {
        if self.running {
            self.stop()?;
        }
        self.launch()
    }

    /// Stops the server (`pg_ctl stop -m fast`: clients are disconnected,
    /// a checkpoint is written).
    pub fn stop(&mut self) -> Result<(), String> {
        let out = self.pg_ctl(&["stop", "-m", "fast", "-w"])?;
        self.running = false;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl stop: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// The last `n_lines` of the server's log (all runs of this server).
    pub fn log_tail(&self, n_lines: usize) -> String {
        let path = self.log_path();
        crate::child::read_tail(&path, n_lines)
            .unwrap_or_else(|e| format!("(cannot read {}: {e})", path.display()))
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn postmaster_pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data_dir().join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }

    fn initdb(&self) -> Result<(), String> {
        let data = self.data_dir();
        let out = self.run(
            &self.bin.join("initdb"),
            &[
                "-D",
                &data.to_string_lossy(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                // The cluster is thrown away with the test.
                "--no-sync",
            ],
        )?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "initdb: {}: {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    fn launch(&mut self) -> Result<(), String> {
        let mut server = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {}",
            self.port,
            self.dir.path().display()
        );
        if !self.options.durable {
            // Commits still reach the OS before they are acknowledged
            // (`synchronous_commit` stays on), so a [`Postgres::kill9`]
            // loses nothing committed: only an OS crash would.
            server.push_str(" -c fsync=off -c full_page_writes=off");
        }
        for s in &self.options.settings {
            server.push_str(" -c ");
            server.push_str(s);
        }
        let out = self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            &START_TIMEOUT_S.to_string(),
            "-l",
            &self.log_path().to_string_lossy(),
            "-o",
            &server,
        ])?;
        // `-w` returns once the server accepts connections; the TCP check
        // guards against another process having taken the port.
        if out.status.success() && TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            self.running = true;
            return Ok(());
        }
        // A failed start may leave a postmaster behind (e.g. still in
        // recovery when -t expired): stop it before trying another port.
        let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
        Err(format!(
            "postgres did not start on 127.0.0.1:{} ({}): {}\nlog:\n{}",
            self.port,
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log_tail(30)
        ))
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<Output, String> {
        let data = self.data_dir();
        let mut all = vec!["-D", data.to_str().unwrap_or_default()];
        all.extend_from_slice(args);
        self.run(&self.bin.join("pg_ctl"), &all)
    }

    /// Runs a server binary, as the `postgres` user when we are root.
    fn run(&self, program: &Path, args: &[&str]) -> Result<Output, String> {
        let mut cmd = match &self.runuser {
            Some(runuser) => {
                let mut c = Command::new(runuser);
                c.args(["-u", "postgres", "--"]).arg(program);
                c
            }
            None => Command::new(program),
        };
        // The test's working directory may not be readable by `postgres`.
        cmd.args(args).current_dir(self.dir.path());
        cmd.output()
            .map_err(|e| format!("cannot run {}: {e}", program.display()))
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            // Immediate: the data is thrown away, no checkpoint needed.
            let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w"]);
        }
    }
}

/// The newest `/usr/lib/postgresql/<version>/bin` with `initdb` and
/// `pg_ctl` (Debian's layout, not on `PATH`), else the directory of an
/// `initdb` on `PATH` (other distributions, a source build).
fn find_server_bin() -> Option<PathBuf> {
    let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_tools(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    find_binary("initdb")
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .filter(|d| has_tools(d))
}

/// When we are root (the owner of the fresh `dir`), gives `dir` to the
/// `postgres` user and returns the `runuser` to run server binaries with;
/// otherwise `None` (they run as ourselves).
fn hand_to_postgres_user(dir: &Path) -> Result<Option<PathBuf>, String> {
    let meta = std::fs::metadata(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if meta.uid() != 0 {
        return Ok(None);
    }
    let (uid, gid) = postgres_user()?;
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .map_err(|e| format!("chown {} to postgres: {e}", dir.display()))?;
    let runuser = find_binary("runuser")
        .ok_or("running as root needs `runuser` (util-linux) to start PostgreSQL")?;
    Ok(Some(runuser))
}

/// The `postgres` user's uid and gid from `/etc/passwd` (the Debian package
/// creates it).
fn postgres_user() -> Result<(u32, u32), String> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .find_map(|line| {
            let mut f = line.split(':');
            if f.next()? != "postgres" {
                return None;
            }
            let uid = f.nth(1)?.parse().ok()?;
            let gid = f.next()?.parse().ok()?;
            Some((uid, gid))
        })
        .ok_or_else(|| "no `postgres` user in /etc/passwd (apt `postgresql` creates it)".into())
}

/// The direct children of process `pid` (the server's backends and
/// auxiliary processes), read from `/proc/<pid>/stat`.
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let child: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // "pid (comm) state ppid ...": comm may contain spaces and
            // parentheses, so parse after the last ')'.
            let after = stat.rsplit_once(')')?.1;
            let ppid: u32 = after.split_whitespace().nth(1)?.parse().ok()?;
            (ppid == pid).then_some(child)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_accepts_connections_survives_kill9_and_cleans_up() {
        let mut pg = match Postgres::start() {
            Ok(Some(pg)) => pg,
            Ok(None) => {
                eprintln!("skipped: postgresql not installed");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let port = pg.port();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
        assert!(pg.url().ends_with(&format!(":{port}/tributary")));
        let url = pg.create_database("second").unwrap();
        assert!(url.ends_with("/second"));
        // A database that exists cannot be created again: createdb's error
        // comes back, no panic.
        assert!(pg.create_database("second").is_err());

        pg.kill9().unwrap();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
        pg.restart().unwrap();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_ok());
        // The databases survived the crash.
        assert!(pg.create_database("second").is_err());

        let dir = pg.dir().to_path_buf();
        drop(pg);
        assert!(!dir.exists(), "temp dir removed");
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
