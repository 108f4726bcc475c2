//! More Docker Engines for the pool's tests: the second engine
//! `scripts/setup.sh` starts (`KILN_ENGINES=1`) on tcp://127.0.0.1:2376
//! with mutual TLS, and spare engines a test starts and kills itself
//! (`scripts/engine.sh`), all real `dockerd`s.

use std::path::PathBuf;
use std::process::Command;

use kiln_server::config::{EngineConfig, EngineTls};

/// The second engine set-up started.
pub const SECOND_ENGINE: &str = "tcp://127.0.0.1:2376";

/// Where `scripts/engine.sh` keeps the engines' certificates.
pub fn engine_certs() -> PathBuf {
    let state = std::env::var_os("KILN_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| super::workspace().join(".kiln"));
    state.join("engines").join("certs")
}

/// Kiln's client files for the engines: `client` (trusted) or
/// `stranger` (another CA's certificate, which the engines refuse).
pub fn client_tls(client: &str) -> EngineTls {
    let certs = engine_certs();
    EngineTls {
        ca: certs.join("ca.pem"),
        cert: certs.join(format!("{client}-cert.pem")),
        key: certs.join(format!("{client}-key.pem")),
    }
}

/// The machine's own engine, as a pool entry.
pub fn local_engine(name: &str, slots: usize) -> EngineConfig {
    EngineConfig {
        host: "unix:///var/run/docker.sock".into(),
        ..EngineConfig::single("", slots)
    }
    .named(name)
}

/// An engine on `tcp://127.0.0.1:PORT` over mutual TLS with Kiln's
/// trusted client certificate.
pub fn tls_engine(name: &str, port: u16, slots: usize) -> EngineConfig {
    EngineConfig {
        host: format!("tcp://127.0.0.1:{port}"),
        tls: Some(client_tls("client")),
        ..EngineConfig::single("", slots)
    }
    .named(name)
}

/// `engine`, configured to build for linux/amd64 and linux/arm64 (arm64
/// under QEMU, which set-up registers with binfmt_misc).
pub fn amd64_and_arm64(engine: EngineConfig) -> EngineConfig {
    EngineConfig {
        platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
        ..engine
    }
}

/// A `dockerd` of the test's own, stopped when dropped.
pub struct SpareEngine {
    pub name: String,
    pub port: u16,
    pub pid: u32,
}

impl SpareEngine {
    /// Start engine `name` on `port` (a few seconds).
    pub fn start(name: &str, port: u16) -> Self {
        let output = Command::new("bash")
            .arg(super::workspace().join("scripts/engine.sh"))
            .args(["start", name, &port.to_string()])
            .output()
            .expect("bash runs");
        assert!(
            output.status.success(),
            "scripts/engine.sh start {name} {port} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let pid = String::from_utf8_lossy(&output.stdout)
            .trim()
            .parse()
            .expect("engine.sh prints the daemon's pid");
        SpareEngine {
            name: name.into(),
            port,
            pid,
        }
    }

    /// The engine as a pool entry.
    pub fn config(&self, slots: usize) -> EngineConfig {
        tls_engine(&self.name, self.port, slots)
    }

    /// `kill -9` the daemon: the engine is gone mid-whatever.
    pub fn kill9(&self) {
        let status = Command::new("kill")
            .args(["-9", &self.pid.to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -9 {}", self.pid);
    }
}

impl Drop for SpareEngine {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(super::workspace().join("scripts/engine.sh"))
            .args(["stop", &self.name])
            .status();
    }
}
