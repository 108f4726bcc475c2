//! The `kiln` command line: `kiln serve` runs the server; the other
//! subcommands are clients of a running server ([`client`]).

pub mod client;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::ServerConfig;

/// Kiln: build container images through sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the Kiln server.
    Serve(ServeArgs),
    /// Manage organizations (needs the admin token).
    Org {
        #[command(subcommand)]
        command: OrgCommand,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Manage an organization's API tokens (needs the admin token).
    Token {
        #[command(subcommand)]
        command: TokenCommand,
        #[command(flatten)]
        server: ServerArgs,
    },
}

/// Where the server is and who is asking.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    /// The Kiln server.
    #[arg(
        long,
        env = "KILN_SERVER",
        default_value = "http://127.0.0.1:7878",
        global = true
    )]
    pub server: String,
    /// An API token (for organization management: the admin token).
    #[arg(long, env = "KILN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an organization.
    Create {
        /// Lowercase letters, digits and `-`.
        name: String,
    },
    /// List organizations.
    List,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token for an organization; it is printed once.
    Create {
        #[arg(long)]
        org: String,
    },
    /// Revoke a token by its id.
    Revoke {
        #[arg(long)]
        org: String,
        /// The `tokenId` printed when the token was created.
        token_id: String,
    },
}

/// `kiln serve` flags; each also reads an environment variable.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address the HTTP API listens on.
    #[arg(long, env = "KILN_LISTEN", default_value = "127.0.0.1:7878")]
    pub listen: SocketAddr,
    /// Directory for records, logs and workspaces.
    #[arg(long, env = "KILN_DATA_DIR", default_value = "./kiln-data")]
    pub data_dir: PathBuf,
    /// Registry images are pushed to, as host:port.
    #[arg(long, env = "KILN_REGISTRY", default_value = "127.0.0.1:5000")]
    pub registry: String,
    /// Docker Engine address (unix:///var/run/docker.sock, tcp://host:2375); the local socket when empty.
    #[arg(long, env = "KILN_DOCKER_HOST", default_value = "")]
    pub docker_host: String,
    /// Builds that run at once.
    #[arg(long, env = "KILN_MAX_CONCURRENT_BUILDS", default_value_t = 2)]
    pub max_concurrent_builds: usize,
    /// A build's time limit when its request sets none, in seconds.
    #[arg(long, env = "KILN_DEFAULT_BUILD_TIMEOUT", default_value_t = 3600)]
    pub default_build_timeout_secs: u64,
    /// The longest `timeoutSecs` a request may ask for, in seconds.
    #[arg(long, env = "KILN_MAX_BUILD_TIMEOUT", default_value_t = 6 * 3600)]
    pub max_build_timeout_secs: u64,
    /// Directory of third-party plugins (repeatable).
    #[arg(long = "plugin-dir", env = "KILN_PLUGIN_DIRS", value_delimiter = ':')]
    pub plugin_dirs: Vec<PathBuf>,
    /// The build profile when a request names none: small, medium, large or xlarge.
    #[arg(long, env = "KILN_DEFAULT_PROFILE", default_value = "medium", value_parser = ["small", "medium", "large", "xlarge"])]
    pub default_profile: String,
    /// Most bytes an uploaded context may have, packed.
    #[arg(long, env = "KILN_MAX_UPLOAD_BYTES", default_value_t = 2 << 30)]
    pub max_upload_bytes: u64,
    /// Most bytes a context may unpack to (an archive-bomb guard).
    #[arg(long, env = "KILN_MAX_CONTEXT_BYTES", default_value_t = 8 << 30)]
    pub max_context_bytes: u64,
    /// Most files and directories a context may unpack to.
    #[arg(long, env = "KILN_MAX_CONTEXT_ENTRIES", default_value_t = 200_000)]
    pub max_context_entries: u64,
    /// Write the host's own log as JSON lines.
    #[arg(long, env = "KILN_LOG_JSON")]
    pub log_json: bool,
}

impl ServeArgs {
    /// The server configuration these flags describe.
    pub fn to_config(&self) -> ServerConfig {
        let mut config = ServerConfig::new(&self.data_dir);
        config.listen = self.listen;
        config.registry = self.registry.clone();
        config.docker_host = self.docker_host.clone();
        config.max_concurrent_builds = self.max_concurrent_builds;
        config.default_build_timeout = Duration::from_secs(self.default_build_timeout_secs);
        config.max_build_timeout = Duration::from_secs(self.max_build_timeout_secs);
        config.plugin_dirs = self.plugin_dirs.clone();
        config.max_upload_bytes = self.max_upload_bytes;
        config.default_profile = self.default_profile.clone();
        config.max_context_bytes = self.max_context_bytes;
        config.max_context_entries = self.max_context_entries;
        config
    }
}
