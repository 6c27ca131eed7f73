//! Headless Chromium for tests of the hub's dashboard (Debian's
//! `chromium` package; PLATFORM.md lists the flags it needs as root in a
//! container): run a page to its settled state and dump its DOM or take a
//! screenshot, and read elements out of the dump without an HTML parser.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::ChildGuard;

/// A hung browser must not hang the test run.
pub const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);

/// One element of the dumped DOM: its attributes and, for elements that do
/// not nest (`tr`, `svg`), the markup up to its closing tag.
#[derive(Debug)]
pub struct Element<'a> {
    /// Its attributes (`&amp;` unescaped).
    pub attrs: HashMap<String, String>,
    /// The markup up to its closing tag.
    pub inner: &'a str,
}

impl Element<'_> {
    /// The attribute `name`, if present.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs.get(name).map(String::as_str)
    }
}

/// Chromium serializes attributes as `name="value"` with `"` escaped, so a
/// small scanner is enough (no HTML parser crate for one test).
pub fn parse_attrs(tag: &str) -> HashMap<String, String> {
    let mut attrs = HashMap::new();
    let mut rest = tag;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq].rsplit([' ', '\n', '\t']).next().unwrap_or("");
        let value_start = eq + 2;
        let Some(len) = rest[value_start..].find('"') else {
            break;
        };
        let value = &rest[value_start..value_start + len];
        attrs.insert(name.to_string(), value.replace("&amp;", "&"));
        rest = &rest[value_start + len + 1..];
    }
    attrs
}

/// Every `<tag …>` whose class list contains `class` (any class if empty).
pub fn elements<'a>(dom: &'a str, tag: &str, class: &str) -> Vec<Element<'a>> {
    let open = format!("<{tag} ");
    let close = format!("</{tag}>");
    let mut out = Vec::new();
    let mut rest = dom;
    while let Some(i) = rest.find(&open) {
        rest = &rest[i..];
        let Some(end) = rest.find('>') else { break };
        let attrs = parse_attrs(&rest[open.len()..end]);
        let after = &rest[end + 1..];
        let inner = &after[..after.find(&close).unwrap_or(after.len())];
        let classes = attrs.get("class").map(String::as_str).unwrap_or("");
        if class.is_empty() || classes.split(' ').any(|c| c == class) {
            out.push(Element { attrs, inner });
        }
        rest = after;
    }
    out
}

/// Runs headless Chromium on `url` with `extra` flags, its stdout to
/// `<work>/<name>.out` (read back and returned), killed if it has not
/// finished within [`CHROMIUM_TIMEOUT`]; panics (with the
/// tail of its stderr) if it fails, as a test helper should.
pub fn chromium(bin: &Path, work: &Path, name: &str, url: &str, extra: &[String]) -> String {
    // A fresh profile per run: nothing cached from an earlier run can make
    // a broken page look fine.
    let profile = tempfile::tempdir().unwrap();
    let out_path = work.join(format!("{name}.out"));
    let err_path = work.join(format!("{name}.err"));
    let mut cmd = Command::new(bin);
    cmd.args([
        "--headless=new",
        // Root in a container has no user namespace for the sandbox.
        "--no-sandbox",
        "--disable-gpu",
        // /dev/shm is small in containers; Chromium falls back to /tmp.
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        // No update checks or other calls home: the test needs no network.
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        // Runs the page's timers and fetches until they settle (10 s of
        // page time, advanced as fast as the page allows) before dumping:
        // no wall-clock sleep.
        "--virtual-time-budget=10000",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(File::create(&out_path).unwrap())
    .stderr(File::create(&err_path).unwrap());
    let mut child = ChildGuard::spawn(name, &mut cmd).unwrap();
    let status = child.wait_exit(CHROMIUM_TIMEOUT);
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let tail: Vec<&str> = stderr.lines().rev().take(30).collect();
    assert!(
        status.is_some_and(|s| s.success()),
        "chromium ({name}) did not finish within {CHROMIUM_TIMEOUT:?} or failed: {status:?}\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    );
    std::fs::read_to_string(&out_path).unwrap()
}

/// Debian's `chromium`; `None` (after printing "skipped") when it is not
/// installed outside CI; a failure under CI.
pub fn chromium_or_skip() -> Option<PathBuf> {
    match crate::find_tool("chromium") {
        Ok(Some(bin)) => Some(bin),
        Ok(None) => {
            eprintln!("skipped: chromium is not installed (scripts/setup.sh installs it)");
            None
        }
        Err(e) => panic!("{e}"),
    }
}
