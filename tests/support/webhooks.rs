//! A webhook receiver that is not Kiln's code: a Python server verifying
//! every delivery with the Standard Webhooks reference library (PyPI
//! `standardwebhooks`), from `tests/fixtures/webhook_receiver.py`.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{free_port, workspace};

/// How long a receiver waits for what it expects.
const LIMIT: Duration = Duration::from_secs(120);

/// The reference library, pinned.
const STANDARD_WEBHOOKS: &str = "standardwebhooks==1.1.0";

/// A Python with the Standard Webhooks library, made once (a venv under
/// target/, as the conformance run keeps Schemathesis).
pub fn python() -> PathBuf {
    static MADE: std::sync::Mutex<Option<PathBuf>> = std::sync::Mutex::new(None);
    let mut made = MADE.lock().unwrap();
    if let Some(python) = made.as_ref() {
        return python.clone();
    }
    let venv = workspace().join("target/webhook-receiver-venv");
    let python = venv.join("bin/python");
    let ready = venv.join(".standardwebhooks-1.1.0");
    if !ready.exists() {
        let status = Command::new("python3")
            .args(["-m", "venv", venv.to_str().unwrap()])
            .status()
            .expect("python3 (Debian's python3-venv)");
        assert!(status.success(), "python3 -m venv failed");
        let status = Command::new(venv.join("bin/pip"))
            .args([
                "install",
                "--quiet",
                "--disable-pip-version-check",
                STANDARD_WEBHOOKS,
            ])
            .status()
            .expect("pip");
        assert!(status.success(), "pip install {STANDARD_WEBHOOKS} failed");
        std::fs::write(&ready, "").unwrap();
    }
    *made = Some(python.clone());
    python
}

/// The receiver: answers 500 to its first `fail_first` deliveries, then
/// verifies each and writes what held to a file.
pub struct Receiver {
    child: Child,
    out: PathBuf,
    _dir: tempfile::TempDir,
}

impl Receiver {
    /// A URL on a free loopback port, for a webhook created before its
    /// receiver starts (the receiver needs the webhook's secret).
    pub fn free_url() -> (u16, String) {
        let port = free_port();
        (port, format!("http://127.0.0.1:{port}/kiln"))
    }

    pub fn start(port: u16, secret: &str, fail_first: u32) -> Self {
        let python = python();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("received.jsonl");
        let mut child = Command::new(python)
            .arg(workspace().join("tests/fixtures/webhook_receiver.py"))
            .args([
                &port.to_string(),
                secret,
                &fail_first.to_string(),
                out.to_str().unwrap(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the receiver starts");
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert_eq!(first.trim(), "ready", "the receiver did not start");
        Receiver {
            child,
            out,
            _dir: dir,
        }
    }

    /// A receiver that verifies nothing (a notifier's POSTs are not signed
    /// by Kiln) and records each body.
    pub fn start_unsigned(port: u16, fail_first: u32) -> Self {
        Self::start(port, "-", fail_first)
    }

    /// What the receiver got (verified or not), in order.
    pub fn received(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Waits until the receiver holds `count` entries.
    pub async fn wait_for(&self, count: usize) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let got = self.received();
            if got.len() >= count {
                return got;
            }
            assert!(
                started.elapsed() < LIMIT,
                "the receiver got {} of {count}: {got:#?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
