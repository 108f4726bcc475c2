//! The settings `kiln serve` runs with.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the server needs to start. [`crate::cli`] fills it from flags
/// and environment variables; tests build it directly.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where the API listens. Port 0 picks a free one.
    pub listen: SocketAddr,
    /// Records, logs, staged contexts and workspaces live here.
    pub data_dir: PathBuf,
    /// `host:port` of the registry images are pushed to.
    pub registry: String,
    /// The Docker Engine: `unix:///path`, `tcp://host:port`, or empty for
    /// the local default socket.
    pub docker_host: String,
    /// Builds that run at once.
    pub max_concurrent_builds: usize,
    /// A build's time limit when its request gives none.
    pub default_build_timeout: Duration,
    /// The longest time limit a request may ask for.
    pub max_build_timeout: Duration,
    /// Extra directories holding third-party plugins (one sub-directory per
    /// plugin, each with a `plugin.toml`).
    pub plugin_dirs: Vec<PathBuf>,
    /// The profile a build gets when its request names none.
    pub default_profile: String,
    /// Most bytes an uploaded context (POST /v1/contexts) may have, packed.
    pub max_upload_bytes: u64,
    /// Most bytes an unpacked context may hold.
    pub max_context_bytes: u64,
    /// Most files and directories an unpacked context may hold.
    pub max_context_entries: u64,
}

/// A build profile: the resources one build may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Profile {
    pub name: &'static str,
    pub memory_bytes: u64,
    pub nano_cpus: u64,
}

/// The profiles a request may name.
pub const PROFILES: &[Profile] = &[
    Profile {
        name: "small",
        memory_bytes: 2 << 30,
        nano_cpus: 1_000_000_000,
    },
    Profile {
        name: "medium",
        memory_bytes: 4 << 30,
        nano_cpus: 2_000_000_000,
    },
    Profile {
        name: "large",
        memory_bytes: 8 << 30,
        nano_cpus: 4_000_000_000,
    },
    Profile {
        name: "xlarge",
        memory_bytes: 16 << 30,
        nano_cpus: 8_000_000_000,
    },
];

/// The profile called `name`.
pub fn profile(name: &str) -> Option<Profile> {
    PROFILES.iter().copied().find(|p| p.name == name)
}

impl ServerConfig {
    /// The defaults the README documents, with data under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        ServerConfig {
            listen: "127.0.0.1:7878".parse().unwrap(),
            data_dir: data_dir.into(),
            registry: "127.0.0.1:5000".into(),
            docker_host: String::new(),
            max_concurrent_builds: 2,
            default_build_timeout: Duration::from_secs(60 * 60),
            max_build_timeout: Duration::from_secs(6 * 60 * 60),
            plugin_dirs: Vec::new(),
            default_profile: "medium".into(),
            max_upload_bytes: 2 << 30,
            max_context_bytes: 8 << 30,
            max_context_entries: 200_000,
        }
    }
}
