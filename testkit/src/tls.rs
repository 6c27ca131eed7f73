//! A throwaway certificate authority for TLS tests, made with the
//! `openssl` command (scripts/setup.sh installs it): a CA, and a server
//! certificate it signed for `127.0.0.1` and `localhost`. Keys are P-256,
//! valid for two days, and live in a temp dir removed on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::find_tool;

/// The CA and one server certificate signed by it (PEM files).
#[derive(Debug)]
pub struct TestCa {
    /// The CA certificate: what clients trust.
    pub ca: PathBuf,
    /// The server's certificate (signed by `ca`).
    pub cert: PathBuf,
    /// The server's private key (PKCS#8).
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

fn run(openssl: &Path, dir: &Path, args: &[&str]) -> Result<(), String> {
    let out = Command::new(openssl)
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "openssl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl TestCa {
    /// A fresh CA and server certificate; `Ok(None)` without `openssl`
    /// (an error under CI, like every tool the tests need).
    pub fn generate(name: &str) -> Result<Option<TestCa>, String> {
        let Some(openssl) = find_tool("openssl")? else {
            return Ok(None);
        };
        let dir = tempfile::Builder::new()
            .prefix("tributary-ca-")
            .tempdir()
            .map_err(|e| format!("CA temp dir: {e}"))?;
        let d = dir.path();
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let subject = format!("/CN={name} test CA");
        let mut ca_args = vec!["req", "-x509"];
        ca_args.extend(ec);
        ca_args.extend([
            "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", &subject,
        ]);
        run(&openssl, d, &ca_args)?;
        let mut csr_args = vec!["req"];
        csr_args.extend(ec);
        csr_args.extend([
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ]);
        run(&openssl, d, &csr_args)?;
        std::fs::write(
            d.join("server.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .map_err(|e| format!("server.ext: {e}"))?;
        run(
            &openssl,
            d,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "2",
                "-extfile",
                "server.ext",
            ],
        )?;
        // World-readable: a broker started as root (Mosquitto) drops to its
        // own user before it reads the key. A throwaway key, so no harm.
        use std::os::unix::fs::PermissionsExt;
        for (path, mode) in [(d.to_path_buf(), 0o755), (d.join("server.key"), 0o644)] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(Some(TestCa {
            ca: d.join("ca.pem"),
            cert: d.join("server.pem"),
            key: d.join("server.key"),
            _dir: dir,
        }))
    }
}
