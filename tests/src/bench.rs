//! Support of `tributary-bench all` (issue #9): running the component
//! benchmarks as subprocesses and collecting their JSON lines, the
//! firmware's sizes, the summary table, and the generated section of
//! docs/benchmarks.md.
//!
//! Every figure is one JSON object `{"name", "unit", "value", "baseline",
//! "baseline_value", "ratio", …}` (extra fields allowed); a benchmark's
//! other output lines are passed through to stderr.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

/// The markers around the generated part of docs/benchmarks.md.
pub const DOCS_BEGIN: &str = "<!-- tributary-bench:begin -->";
/// See [`DOCS_BEGIN`].
pub const DOCS_END: &str = "<!-- tributary-bench:end -->";

/// `value / baseline`, 4 decimals; `None` without a positive baseline.
pub fn ratio(value: f64, baseline: f64) -> Option<f64> {
    (baseline > 0.0).then(|| (value / baseline * 1e4).round() / 1e4)
}

/// The JSON lines of `stdout` that are figures (objects with a `name` and
/// a numeric `value`); a `ratio` is added where a baseline has a value and
/// none was given.
pub fn figures_in(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
        .filter(|v| v["name"].is_string() && v["value"].is_number())
        .map(|mut v| {
            if v.get("ratio").is_none()
                && let (Some(a), Some(b)) = (v["value"].as_f64(), v["baseline_value"].as_f64())
                && let Some(r) = ratio(a, b)
            {
                v["ratio"] = json!(r);
            }
            v
        })
        .collect()
}

/// Runs `cargo bench -p {package} --bench {bench}` with `profile`
/// (`release`, or `dev` for a quick pass on the debug build) and `env`,
/// and returns its figures. Its stderr (progress, criterion's report) goes
/// to ours.
pub fn cargo_bench(
    package: &str,
    bench: &str,
    profile: &str,
    env: &[(&str, String)],
) -> Result<Vec<Value>> {
    eprintln!("bench: cargo bench -p {package} --bench {bench} ({profile})");
    let mut cmd = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cmd.args(["bench", "--locked", "--profile", profile, "-p", package])
        .args(["--bench", bench])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // The workspace: this crate's parent directory.
    cmd.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().context("cannot run cargo bench")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    for l in stdout.lines() {
        eprintln!("  {l}");
    }
    if !out.status.success() {
        bail!("cargo bench -p {package} --bench {bench}: {}", out.status);
    }
    Ok(figures_in(&stdout))
}

/// Flash and static RAM of the firmware's release builds (the QEMU board
/// and the Raspberry Pi Pico), from `arm-none-eabi-size`, where the builds
/// are found below `target_dirs`. A missing build or tool is skipped with a
/// line on stderr.
pub fn firmware_sizes(target_dirs: &[PathBuf]) -> Vec<Value> {
    let boards = [
        (
            "firmware_mps2_an386",
            "thumbv7em-none-eabihf/release/tributary-fw-mps2",
        ),
        (
            "firmware_rp2040",
            "thumbv6m-none-eabi/release/tributary-fw-rp2040",
        ),
    ];
    let mut out = Vec::new();
    for (name, rel) in boards {
        let Some(elf) = target_dirs
            .iter()
            .map(|d| d.join(rel))
            .find(|p| p.is_file())
        else {
            eprintln!(
                "bench: {name} skipped: no release build (scripts/test.sh builds it; \
                 or cd firmware && cargo build --release)"
            );
            continue;
        };
        match elf_size(&elf) {
            Ok((text, data, bss)) => {
                out.push(json!({"name": format!("{name}_flash"), "unit": "bytes",
                    "value": text + data, "elf": elf.display().to_string()}));
                out.push(
                    json!({"name": format!("{name}_static_ram"), "unit": "bytes",
                    "value": data + bss, "elf": elf.display().to_string()}),
                );
            }
            Err(e) => eprintln!("bench: {name} skipped: {e:#}"),
        }
    }
    out
}

/// `(text, data, bss)` of an ELF, from `arm-none-eabi-size` (Berkeley
/// format: a header line, then `text data bss dec hex file`).
fn elf_size(elf: &Path) -> Result<(u64, u64, u64)> {
    let out = Command::new("arm-none-eabi-size")
        .arg(elf)
        .output()
        .context("arm-none-eabi-size (binutils-arm-none-eabi) is not installed")?;
    let text = String::from_utf8_lossy(&out.stdout);
    parse_size(&text).with_context(|| format!("unexpected arm-none-eabi-size output: {text}"))
}

/// Parses the Berkeley output of `size`.
pub fn parse_size(text: &str) -> Option<(u64, u64, u64)> {
    let line = text.lines().nth(1)?;
    let mut f = line.split_whitespace().map(str::parse::<u64>);
    Some((f.next()?.ok()?, f.next()?.ok()?, f.next()?.ok()?))
}

/// A number for a table cell: integers as such, others with 3 significant
/// digits after the point at most.
fn cell(v: &Value) -> String {
    match v.as_f64() {
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => format!("{x:.0}"),
        Some(x) if x.abs() >= 100.0 => format!("{x:.1}"),
        Some(x) => format!("{x:.4}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_owned(),
        None => "–".to_owned(),
    }
}

/// The figures as a Markdown table.
pub fn table(figures: &[Value]) -> String {
    let mut t = String::from(
        "| figure | value | unit | baseline | baseline value | ratio |\n|---|---|---|---|---|---|\n",
    );
    for f in figures {
        t.push_str(&format!(
            "| `{}` | {} | {} | {} | {} | {} |\n",
            f["name"].as_str().unwrap_or("?"),
            cell(&f["value"]),
            f["unit"].as_str().unwrap_or(""),
            f["baseline"]
                .as_str()
                .map_or("–".to_owned(), |b| format!("`{b}`")),
            cell(&f["baseline_value"]),
            cell(&f["ratio"]),
        ));
    }
    t
}

/// The machine, for the record: CPU model and count, kernel, rustc, git
/// revision.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let run = |cmd: &str, args: &[&str]| {
        Command::new(cmd)
            .args(args)
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default()
    };
    format!(
        "{cpu}, {cores} cores; Linux {}; {}; git {}",
        run("uname", &["-r"]),
        run("rustc", &["--version"]),
        run("git", &["rev-parse", "--short", "HEAD"]),
    )
}

/// Replaces the generated section of `doc` (between [`DOCS_BEGIN`] and
/// [`DOCS_END`]) by `section`, or puts it after the first heading if the
/// markers are not there yet.
pub fn splice_docs(doc: &str, section: &str) -> String {
    let block = format!("{DOCS_BEGIN}\n{section}\n{DOCS_END}");
    if let (Some(b), Some(e)) = (doc.find(DOCS_BEGIN), doc.find(DOCS_END))
        && b < e
    {
        return format!("{}{block}{}", &doc[..b], &doc[e + DOCS_END.len()..]);
    }
    match doc.find("\n\n") {
        Some(i) => format!("{}\n\n{block}\n{}", &doc[..i], &doc[i..]),
        None => format!("{doc}\n\n{block}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_are_the_json_lines_with_a_name_and_a_value() {
        let out = "warming up\n{\"name\":\"a\",\"unit\":\"x/s\",\"value\":10,\"baseline\":\"b\",\"baseline_value\":4}\n\
                   {\"not\":\"a figure\"}\n{\"name\":\"c\",\"unit\":\"s\",\"value\":1.5,\"ratio\":9}\n";
        let f = figures_in(out);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0]["ratio"], json!(2.5));
        assert_eq!(f[1]["ratio"], json!(9), "a given ratio is kept");
    }

    #[test]
    fn berkeley_size_output_parses() {
        let out = "   text\t   data\t    bss\t    dec\t    hex\tfilename\n  41234\t    120\t   3400\t  44754\t   aed2\tfw\n";
        assert_eq!(parse_size(out), Some((41234, 120, 3400)));
        assert_eq!(parse_size("garbage"), None);
    }

    #[test]
    fn the_generated_section_is_replaced_and_the_rest_kept() {
        let doc = "# Benchmarks\n\nIntro.\n\n## Core\n\nHand-written.\n";
        let once = splice_docs(doc, "table 1");
        assert!(once.starts_with("# Benchmarks\n\n<!-- tributary-bench:begin -->\ntable 1\n"));
        assert!(once.contains("Hand-written."));
        let twice = splice_docs(&once, "table 2");
        assert!(twice.contains("table 2") && !twice.contains("table 1"));
        assert_eq!(twice.matches(DOCS_BEGIN).count(), 1);
        assert!(twice.ends_with("Hand-written.\n"));
    }

    #[test]
    fn the_table_has_a_row_per_figure() {
        let t = table(&[
            json!({"name": "x", "unit": "s", "value": 0.25, "baseline": "y",
                               "baseline_value": 2, "ratio": 0.125}),
        ]);
        assert!(t.contains("| `x` | 0.25 | s | `y` | 2 | 0.125 |"), "{t}");
    }
}
