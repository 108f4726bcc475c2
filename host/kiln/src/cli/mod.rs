//! The `kiln` command line: `kiln serve` runs the server; the other
//! subcommands are clients of a running server (`kiln_api::ApiClient`).

pub mod commands;
pub mod config;
pub mod pack;
pub mod scaffold;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[cfg(feature = "server")]
use kiln_server::config::ServerConfig;

/// Kiln: build container images through sandboxed WebAssembly plugins.
#[derive(Debug, Parser)]
#[command(name = "kiln", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// `kiln init [DIR]`.
#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// The directory to look at and write into.
    #[arg(default_value = ".")]
    pub dir: PathBuf,
    /// Overwrite an existing Dockerfile or .dockerignore.
    #[arg(long)]
    pub force: bool,
    /// A base image for a stack, e.g. `python=mirror.example.com/python:3.12-slim` (repeatable).
    #[arg(long = "base-image", value_name = "STACK=IMAGE")]
    pub base_images: Vec<String>,
    /// Only show what would be written (and the sub-projects of a monorepo).
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the Kiln server.
    Serve(ServeArgs),
    /// Build a directory (or a git repository) on a Kiln server, like `docker build`.
    Build(BuildArgs),
    /// List, inspect, follow and cancel builds.
    Builds {
        #[command(subcommand)]
        command: BuildsCommand,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Upload build contexts.
    Context {
        #[command(subcommand)]
        command: ContextCommand,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Save, list and delete the organization's secrets (values are never shown).
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Projects: saved build recipes that build on a git push.
    Projects {
        #[command(subcommand)]
        command: ProjectsCommand,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Completion webhooks: build events POSTed to your endpoints.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Show the server's plugins.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Write a Dockerfile and .dockerignore for a directory, as the Dockerfile wizard would (runs locally).
    Init(InitArgs),
    /// Check an image's signature and provenance (and summarize its SBOM), as pushed by a Kiln server.
    Verify(VerifyArgs),
    /// Save a server and token to ~/.config/kiln/config.toml (mode 0600).
    Login(LoginArgs),
    /// Write and check plugins.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
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
    /// Operate the server (needs the admin token).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// Print a shell completion script: `kiln completions bash > /etc/bash_completion.d/kiln`.
    Completions { shell: clap_complete::Shell },
}

/// Where the server is and who is asking. Flags win over the environment,
/// which wins over `kiln login`'s saved config.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// The Kiln server [default: saved by `kiln login`, else http://127.0.0.1:7878].
    #[arg(long, env = "KILN_SERVER", global = true)]
    pub server: Option<String>,
    /// An API token [default: saved by `kiln login`].
    #[arg(long, env = "KILN_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub transport: TransportArgs,
}

/// How the client reaches an https:// server, or a plain http:// one.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TransportArgs {
    /// PEM certificates to trust besides the system's (a private CA, or the server's self-signed certificate) [default: saved by `kiln login`].
    #[arg(long, env = "KILN_CA_CERT", value_name = "PATH", global = true)]
    pub ca_cert: Option<PathBuf>,
    /// Send the token over plain http:// to a server that is not this machine (only on a network you trust).
    #[arg(long, env = "KILN_INSECURE", global = true)]
    pub insecure: bool,
}

/// How a listing is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Aligned columns for people.
    Table,
    /// The server's JSON, for scripts.
    Json,
}

/// `kiln build` flags, named as `docker build` names them.
#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// The context directory.
    #[arg(default_value = ".", conflicts_with = "git")]
    pub dir: std::path::PathBuf,
    /// Name and tag, `name:tag` (repeatable; every tag must share the name).
    #[arg(short = 't', long = "tag", required = true)]
    pub tags: Vec<String>,
    /// The Dockerfile, relative to the context.
    #[arg(short = 'f', long = "file", default_value = "Dockerfile")]
    pub file: String,
    /// `KEY=VALUE`, or `KEY` alone to take the value from the environment (repeatable).
    #[arg(long = "build-arg")]
    pub build_args: Vec<String>,
    /// The stage to build.
    #[arg(long)]
    pub target: Option<String>,
    /// `os/arch[/variant]`; several, comma-separated (`linux/amd64,linux/arm64`),
    /// build one multi-platform image (an index under every tag).
    #[arg(long)]
    pub platform: Option<String>,
    /// Do not use the build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// buildkit, kaniko, wizard, or a plugin's builder name.
    #[arg(long)]
    pub builder: Option<String>,
    /// The build's time limit in seconds (0: the server's default).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// auto (the default: sized by the build's history), small, medium,
    /// large, extra-large, 2x-large or 4x-large.
    #[arg(long)]
    pub profile: Option<String>,
    /// A build secret to mount, by name (repeatable).
    #[arg(long = "secret")]
    pub secrets: Vec<String>,
    /// A build secret passed as the build arg of the same name; masked in the log (repeatable).
    #[arg(long = "secret-build-arg")]
    pub secret_build_args: Vec<String>,
    /// Build from git instead of a directory: `URL#REF:DIR`.
    #[arg(long)]
    pub git: Option<String>,
    /// Pack `.git` too (left out by default).
    #[arg(long)]
    pub include_git: bool,
    /// Print the build id and return without following the build.
    #[arg(short = 'd', long)]
    pub detach: bool,
    /// On Ctrl-C, cancel the build without asking.
    #[arg(long)]
    pub cancel_on_interrupt: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

#[derive(Debug, Subcommand)]
pub enum BuildsCommand {
    /// List builds, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        name: Option<String>,
        /// Only git builds of this branch.
        #[arg(long)]
        branch: Option<String>,
        /// Only builds of this project.
        #[arg(long)]
        project: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Show one build.
    Get {
        id: String,
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Print a build's log.
    Logs {
        id: String,
        /// Keep printing until the build ends.
        #[arg(long, short = 'f')]
        follow: bool,
        /// Start at the first line (default: with --follow, from now; else the whole log).
        #[arg(long)]
        from_start: bool,
    },
    /// Cancel a pending or running build.
    Cancel { id: String },
}

#[derive(Debug, Subcommand)]
pub enum ProjectsCommand {
    /// Create a project; prints its webhook URL and secret (shown once).
    Create {
        /// The image name.
        name: String,
        /// The repository URL.
        #[arg(long)]
        git: String,
        /// A directory of the repository to build.
        #[arg(long)]
        context_dir: Option<String>,
        #[arg(long, short = 'f')]
        dockerfile: Option<String>,
        #[arg(long)]
        builder: Option<String>,
        /// A tag template ({branch}, {tag}, {sha}, {sha7}, {number}); repeatable.
        #[arg(long = "tag", short = 't')]
        tags: Vec<String>,
        /// A glob of branches that build (e.g. main, release/*); repeatable.
        #[arg(long = "branch")]
        branches: Vec<String>,
        /// A glob of tags that build (e.g. v*).
        #[arg(long)]
        tags_pattern: Option<String>,
        /// A glob of repository paths a push must touch to build; repeatable.
        #[arg(long = "path")]
        paths: Vec<String>,
        /// A newer push to a branch cancels the older build of it.
        #[arg(long)]
        auto_cancel_superseded: bool,
        /// Check the repository this often (seconds) and build new commits.
        #[arg(long)]
        poll_interval_secs: Option<u64>,
        /// Sign and attest its images (`on`) or not (`off`) whatever the organization's setting [default: the organization's].
        #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
        signing: Option<bool>,
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// List the organization's projects.
    List {
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
    /// Show one project.
    Get { id: String },
    /// Delete a project (its builds stay).
    Delete { id: String },
    /// Build a project now, as a push of the reference would.
    Build {
        id: String,
        /// A branch, a tag or a commit id; default: the project's default branch.
        #[arg(long = "ref")]
        reference: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Subscribe a URL to build events (prints the signing secret, shown
    /// once), or have a notifier plugin deliver them (`--notifier`).
    Create {
        #[arg(required_unless_present = "notifier", conflicts_with = "notifier")]
        url: Option<String>,
        /// A notifier plugin that delivers the events instead, e.g. http-post.
        #[arg(long)]
        notifier: Option<String>,
        /// One of the notifier's options, KEY=VALUE (http-post: url=…, template=…); repeatable.
        #[arg(long = "option", requires = "notifier", value_parser = parse_option)]
        options: Vec<(String, String)>,
        /// A build secret the notifier may send as @@secret:NAME@@ (written in by the host); repeatable.
        #[arg(long = "secret", requires = "notifier")]
        secrets: Vec<String>,
        /// An event (build.queued, build.started, build.succeeded, build.failed, build.cancelled); repeatable; default all.
        #[arg(long = "event")]
        events: Vec<String>,
        /// Only this project's builds.
        #[arg(long)]
        project: Option<String>,
    },
    /// List the organization's webhooks.
    List,
    /// Delete a webhook.
    Delete { id: String },
    /// A webhook's deliveries, newest first.
    Deliveries { id: String },
    /// Send a delivery again.
    Redeliver { id: String, delivery_id: String },
}

/// `KEY=VALUE`, split at the first `=`.
fn parse_option(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE"))
}

#[derive(Debug, Subcommand)]
pub enum ContextCommand {
    /// Upload a directory (packed, honoring .dockerignore) or a tar/tar.gz/zip file; prints the context id.
    Upload {
        path: std::path::PathBuf,
        /// Pack `.git` too.
        #[arg(long)]
        include_git: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// List the server's plugins.
    List {
        #[arg(long, short = 'o', value_enum, default_value_t = Output::Table)]
        output: Output,
    },
}

/// `kiln verify` flags.
#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The image: host[:port]/repository[:tag], or …@sha256:<digest>.
    pub image: String,
    /// Check with this public key (PEM: `GET /v1/orgs/{org}/signing-key`, or a cosign.pub) and ask no server [default: the server's key for the organization that built the image, and the server confirms the build].
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// The registry's username, if reading the image needs one (its password from KILN_REGISTRY_PASSWORD).
    #[arg(long, env = "KILN_REGISTRY_USERNAME", value_name = "USER")]
    pub registry_username: Option<String>,
    /// How to print what was verified.
    #[arg(long, value_enum, default_value = "table")]
    pub output: Output,
    #[command(flatten)]
    pub server: ServerArgs,
}

/// `kiln login` flags.
#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The Kiln server.
    #[arg(long, env = "KILN_SERVER", default_value = "http://127.0.0.1:7878")]
    pub server: String,
    /// The token; read from standard input when not given.
    #[arg(long, env = "KILN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    #[command(flatten)]
    pub transport: TransportArgs,
}

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Save a secret. Values not given on the command line are read from
    /// standard input (so they stay out of shell history).
    Set {
        #[command(subcommand)]
        secret: SecretValue,
    },
    /// List the organization's secrets: kinds and names, values as ***.
    List,
    /// Delete a secret: `kiln secrets delete build NPM_TOKEN`.
    Delete {
        /// registry, git or build.
        kind: String,
        /// The host (registry, git) or the name (build).
        name: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SecretValue {
    /// A build secret: `kiln secrets set build NPM_TOKEN` (value on stdin).
    Build { name: String, value: Option<String> },
    /// Registry credentials, used to push and to pull private bases.
    Registry {
        host: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        password: Option<String>,
    },
    /// Git credentials for a host (`*` for every host).
    Git {
        host: String,
        #[arg(long)]
        username: String,
        #[arg(long)]
        token: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Scaffold a plugin crate in ./NAME that builds as it is.
    New {
        /// The world the plugin implements.
        #[arg(long, value_enum)]
        kind: PluginKind,
        /// The plugin id and crate name.
        name: String,
        /// Where to create it.
        #[arg(long, default_value = ".")]
        dir: std::path::PathBuf,
        /// Depend on the SDK at this path, a checkout's `sdk/` (default: kiln-sdk 0.1 from crates.io).
        #[arg(long)]
        sdk_path: Option<std::path::PathBuf>,
    },
    /// Publish a built plugin (plugin.toml and its component) to a registry
    /// as a Wasm OCI artifact (`wkg oci pull` reads it), signed with your key.
    Push {
        /// The plugin's directory (holding plugin.toml).
        path: std::path::PathBuf,
        /// Where: host[:port]/repository:tag.
        reference: String,
        /// The publisher's private key, ECDSA P-256 PEM (`openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out publisher.pem`); operators trust its public half (`openssl pkey -in publisher.pem -pubout -out publisher.pub`).
        #[arg(long, value_name = "FILE", required_unless_present = "unsigned")]
        key: Option<std::path::PathBuf>,
        /// Publish without a signature: operators can then trust it only by its sha256.
        #[arg(long, conflicts_with = "key")]
        unsigned: bool,
        /// The registry's username, if pushing needs one (its password from KILN_REGISTRY_PASSWORD).
        #[arg(long, env = "KILN_REGISTRY_USERNAME", value_name = "USER")]
        registry_username: Option<String>,
    },
    /// Fetch a plugin from a registry into a directory, checked against a
    /// sha256 pin and/or trusted publisher keys.
    Pull {
        /// host[:port]/repository:tag, or …@sha256:<digest>.
        reference: String,
        /// Where to write it [default: ./<plugin id>].
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
        /// The artifact's digest it must have (the manifest's sha256, as `kiln plugin push` or `wkg oci push` printed).
        #[arg(long)]
        sha256: Option<String>,
        /// A trusted publisher's public key (PEM); repeatable: one of them must have signed it.
        #[arg(long = "key", value_name = "FILE")]
        keys: Vec<std::path::PathBuf>,
        /// The registry's username, if pulling needs one (its password from KILN_REGISTRY_PASSWORD).
        #[arg(long, env = "KILN_REGISTRY_USERNAME", value_name = "USER")]
        registry_username: Option<String>,
    },
    /// Validate a built plugin against its manifest and show what it would be granted.
    Check {
        /// The plugin's directory (holding plugin.toml).
        #[arg(default_value = ".")]
        path: std::path::PathBuf,
        /// The host config whose grants apply.
        #[arg(long, env = "KILN_CONFIG")]
        config: Option<std::path::PathBuf>,
    },
}

/// The plugin worlds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PluginKind {
    Builder,
    ContextSource,
    CredentialStore,
    Detector,
    /// Contract 0.2.0: tells someone a build finished.
    Notifier,
    /// Contract 0.3.0: says what is in a pushed image (an SBOM).
    Attestor,
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
    /// Show where an organization's images go, or (with --host and
    /// --namespace) give it its own registry, or (--reset) send them to
    /// the server's registry again.
    Registry {
        org: String,
        /// `host` or `host:port` of its registry.
        #[arg(long, requires = "namespace", conflicts_with = "reset")]
        host: Option<String>,
        /// The repository path under it, e.g. team-a.
        #[arg(long, requires = "host")]
        namespace: Option<String>,
        #[arg(long)]
        reset: bool,
    },
    /// Show whether an organization's images are signed and get their
    /// provenance attached, or turn that on (--on) or off (--off). The
    /// public key: GET /v1/orgs/{org}/signing-key.
    Signing {
        org: String,
        #[arg(long, conflicts_with = "off")]
        on: bool,
        #[arg(long)]
        off: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Collect garbage now by the server's `[retention]` rules: old records
    /// and logs, unreferenced uploads, idle git mirrors, stale plugin
    /// artifacts, leftovers of interrupted builds.
    Gc {
        /// Say what would be removed, and remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// List each thing removed (or that would be), with the rule.
        #[arg(long)]
        list: bool,
    },
    /// The engines builds run on: health, load, platforms.
    Engines,
    /// Drain an engine: it finishes its builds and takes no new ones.
    Drain { engine: String },
    /// Resume a drained engine.
    Resume { engine: String },
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
    /// The key sealing organization secrets (32 bytes or 64 hex characters; created if missing) [default: <data-dir>/secret.key].
    #[arg(long, env = "KILN_SECRET_KEY_FILE")]
    pub secret_key_file: Option<std::path::PathBuf>,
    /// The host's config file (plugin grants and limits: `[plugins.<id>]`).
    #[arg(long, env = "KILN_CONFIG")]
    pub config: Option<std::path::PathBuf>,
    /// Directory of third-party plugins (repeatable).
    #[arg(long = "plugin-dir", env = "KILN_PLUGIN_DIRS", value_delimiter = ':')]
    pub plugin_dirs: Vec<PathBuf>,
    /// The build profile when a request names none: auto (by the build's
    /// history), small, medium, large, extra-large, 2x-large or 4x-large.
    #[arg(long, env = "KILN_DEFAULT_PROFILE", default_value = "auto", value_parser = clap::builder::PossibleValuesParser::new(kiln_api::validate::profile_names()))]
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
    /// Most builds of one organization running at once (0: only --max-concurrent-builds); organizations take turns either way.
    #[arg(long, env = "KILN_MAX_RUNNING_BUILDS_PER_ORG", default_value_t = 0)]
    pub max_running_builds_per_org: usize,
    /// Most builds of one organization waiting in the queue; past it CreateBuild is 429 with Retry-After (0: no limit).
    #[arg(long, env = "KILN_MAX_QUEUED_BUILDS_PER_ORG", default_value_t = 1000)]
    pub max_queued_builds_per_org: usize,
    /// Refuse new builds and uploads (507) while the data directory's filesystem has less free space than this, in MiB (0: never).
    #[arg(long, env = "KILN_MIN_FREE_DISK_MIB", default_value_t = 256)]
    pub min_free_disk_mib: u64,
    /// Seconds a client may take to send a request's headers, or pause within its body, before the connection is closed (headers) or the request is answered 408 (body); idle keep-alive connections close after it too.
    #[arg(long, env = "KILN_REQUEST_READ_TIMEOUT", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    pub request_read_timeout_secs: u64,
    /// Write the host's own log as JSON lines.
    #[arg(long, env = "KILN_LOG_JSON")]
    pub log_json: bool,
    /// The Kaniko executor image the `kaniko` builder runs (it must be in the Docker Engine) [default: ghcr.io/osscontainertools/kaniko:v1.28.0, or `kaniko_image` in the config file].
    #[arg(long, env = "KILN_KANIKO_IMAGE")]
    pub kaniko_image: Option<String>,
    /// A non-public address block git sources may reach (repeatable; e.g. 10.1.0.0/16 or 127.0.0.1). Loopback, link-local and private addresses are refused otherwise, so tenants cannot probe this server's network.
    #[cfg(feature = "server")]
    #[arg(
        long = "allow-private-network",
        env = "KILN_ALLOW_PRIVATE_NETWORKS",
        value_delimiter = ',',
        value_name = "CIDR"
    )]
    pub allow_private_networks: Vec<kiln_server::net::Cidr>,
    /// Serve HTTPS (HTTP/2 by ALPN) with this PEM certificate chain, leaf first (with --tls-key).
    #[arg(long, env = "KILN_TLS_CERT", value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "KILN_TLS_KEY", value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// A file holding the token `GET /metrics` then requires (`Authorization: Bearer <token>`, e.g. Prometheus' `bearer_token_file`); without it /metrics is open.
    #[arg(long, env = "KILN_METRICS_TOKEN_FILE", value_name = "PATH")]
    pub metrics_token_file: Option<PathBuf>,
    /// The URL clients reach this server at (e.g. https://kiln.example.com): projects' webhook URLs are then absolute, not paths.
    #[arg(long, env = "KILN_PUBLIC_URL", value_name = "URL")]
    pub public_url: Option<String>,
}

#[cfg(feature = "server")]
impl ServeArgs {
    /// The server configuration these flags (and the config file) describe.
    pub fn to_config(&self) -> Result<ServerConfig, kiln_server::config::ConfigFileError> {
        let mut config = ServerConfig::new(&self.data_dir);
        config.listen = self.listen;
        config.registry = self.registry.clone();
        config.docker_host = self.docker_host.clone();
        config.max_concurrent_builds = self.max_concurrent_builds;
        config.default_build_timeout =
            std::time::Duration::from_secs(self.default_build_timeout_secs);
        config.max_build_timeout = std::time::Duration::from_secs(self.max_build_timeout_secs);
        config.plugin_dirs = self.plugin_dirs.clone();
        config.max_upload_bytes = self.max_upload_bytes;
        config.default_profile = self.default_profile.clone();
        config.max_context_bytes = self.max_context_bytes;
        config.max_context_entries = self.max_context_entries;
        config.min_free_disk_bytes = self.min_free_disk_mib.saturating_mul(1 << 20);
        config.request_read_timeout =
            std::time::Duration::from_secs(self.request_read_timeout_secs);
        config.max_running_builds_per_org = self.max_running_builds_per_org;
        config.max_queued_builds_per_org = self.max_queued_builds_per_org;
        config.public_url = self
            .public_url
            .as_deref()
            .map(|url| url.trim_end_matches('/').to_string());
        if let (Some(cert), Some(key)) = (&self.tls_cert, &self.tls_key) {
            config.tls = Some(kiln_server::config::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            });
        }
        if let Some(path) = &self.secret_key_file {
            config.secret_key_file = path.clone();
        }
        if let Some(path) = &self.config {
            kiln_server::config::FileConfig::load(path)?
                .apply(&mut config)
                .map_err(|message| kiln_server::config::ConfigFileError::Invalid {
                    path: path.clone(),
                    message,
                })?;
        }
        if let Some(image) = &self.kaniko_image {
            config.kaniko_image = image.clone();
        }
        if let Some(path) = &self.metrics_token_file {
            let token = std::fs::read_to_string(path).map_err(|source| {
                kiln_server::config::ConfigFileError::Read {
                    path: path.clone(),
                    source,
                }
            })?;
            let token = token.trim().to_string();
            if token.len() < 16 {
                return Err(kiln_server::config::ConfigFileError::Invalid {
                    path: path.clone(),
                    message: "the metrics token must have at least 16 characters".into(),
                });
            }
            config.metrics_token = Some(token);
        }
        if !self.allow_private_networks.is_empty() {
            // The flags add to the config file's blocks.
            let blocks = config.network.allowed().iter().copied();
            config.network = kiln_server::net::NetworkPolicy::allowing(
                blocks.chain(self.allow_private_networks.iter().copied()),
            );
        }
        Ok(config)
    }
}

#[cfg(all(test, feature = "server"))]
mod tests {
    use super::*;
    use clap::Parser;

    fn serve_args(extra: &[&str]) -> ServeArgs {
        match Cli::try_parse_from(["kiln", "serve"].iter().chain(extra))
            .unwrap()
            .command
        {
            Command::Serve(args) => args,
            _ => unreachable!("`kiln serve` parses as Serve"),
        }
    }

    /// Issue 14: `--public-url` makes webhook URLs absolute; a trailing
    /// `/` is dropped so paths join cleanly.
    #[test]
    fn issue_14_public_url_is_kept_without_its_trailing_slash() {
        let config = serve_args(&["--public-url", "https://kiln.example.com/"])
            .to_config()
            .unwrap();
        assert_eq!(
            config.public_url.as_deref(),
            Some("https://kiln.example.com")
        );
        assert_eq!(serve_args(&[]).to_config().unwrap().public_url, None);
    }

    /// Issue 12: `--metrics-token-file` sets the token `/metrics` requires;
    /// a token too short to be one is refused at start.
    #[test]
    fn issue_12_the_metrics_token_comes_from_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, "metrics-token-5f0c2a9e\n").unwrap();
        let config = serve_args(&["--metrics-token-file", good.to_str().unwrap()])
            .to_config()
            .unwrap();
        assert_eq!(
            config.metrics_token.as_deref(),
            Some("metrics-token-5f0c2a9e")
        );
        let short = dir.path().join("short");
        std::fs::write(&short, "abc").unwrap();
        let refused = serve_args(&["--metrics-token-file", short.to_str().unwrap()])
            .to_config()
            .unwrap_err();
        assert!(refused.to_string().contains("at least 16"), "{refused}");
        assert_eq!(serve_args(&[]).to_config().unwrap().metrics_token, None);
    }

    /// Issue 12: the free-space floor is the server's default unless
    /// given, and 0 turns it off.
    #[test]
    fn issue_12_the_free_disk_floor_is_configurable() {
        let default = serve_args(&[]).to_config().unwrap();
        assert_eq!(
            default.min_free_disk_bytes,
            kiln_server::config::ServerConfig::new("/d").min_free_disk_bytes
        );
        let set = serve_args(&["--min-free-disk-mib", "2048"])
            .to_config()
            .unwrap();
        assert_eq!(set.min_free_disk_bytes, 2048 << 20);
        let off = serve_args(&["--min-free-disk-mib", "0"])
            .to_config()
            .unwrap();
        assert_eq!(off.min_free_disk_bytes, 0);
    }

    /// Issue 12 (slow clients): the request read timeout is the server's
    /// default unless given, and cannot be 0 (that would close every
    /// connection before its first request).
    #[test]
    fn issue_12_the_request_read_timeout_is_configurable() {
        let default = serve_args(&[]).to_config().unwrap();
        assert_eq!(
            default.request_read_timeout,
            kiln_server::config::ServerConfig::new("/d").request_read_timeout
        );
        let set = serve_args(&["--request-read-timeout-secs", "5"])
            .to_config()
            .unwrap();
        assert_eq!(set.request_read_timeout, std::time::Duration::from_secs(5));
        let zero = Cli::try_parse_from(["kiln", "serve", "--request-read-timeout-secs", "0"])
            .expect_err("0 must be refused");
        assert_eq!(
            zero.kind(),
            clap::error::ErrorKind::ValueValidation,
            "{zero}"
        );
    }

    /// Issue 12: per-organization limits default to the server's.
    #[test]
    fn issue_12_per_org_limits_are_configurable() {
        let server = kiln_server::config::ServerConfig::new("/d");
        let default = serve_args(&[]).to_config().unwrap();
        assert_eq!(
            (
                default.max_running_builds_per_org,
                default.max_queued_builds_per_org
            ),
            (
                server.max_running_builds_per_org,
                server.max_queued_builds_per_org
            )
        );
        let set = serve_args(&[
            "--max-running-builds-per-org",
            "2",
            "--max-queued-builds-per-org",
            "50",
        ])
        .to_config()
        .unwrap();
        assert_eq!(
            (
                set.max_running_builds_per_org,
                set.max_queued_builds_per_org
            ),
            (2, 50)
        );
    }
}

/// `on` / `off` as a switch.
fn parse_on_off(value: &str) -> Result<bool, String> {
    match value {
        "on" => Ok(true),
        "off" => Ok(false),
        other => Err(format!("{other:?}: say `on` or `off`")),
    }
}
