//! The settings `kiln serve` runs with.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use kiln_plugin_runtime::grant::{GrantAll, PluginGrant};

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
    /// The URL clients reach this server at (`https://kiln.example.com`):
    /// webhook URLs are absolute when it is set, paths otherwise.
    pub public_url: Option<String>,
    /// The shortest `pollIntervalSecs` a project may ask for (the poller
    /// looks at most this often).
    pub min_poll_interval_secs: u64,
    /// Sign every pushed image with its organization's key (cosign's
    /// format, `crate::signing`); `[signing] enabled = false` turns it off.
    pub sign_images: bool,
    /// How completion webhooks are delivered (`[webhooks]`).
    pub webhooks: crate::webhooks::WebhookSettings,
    /// The Docker Engine: `unix:///path`, `tcp://host:port`, or empty for
    /// the local default socket.
    pub docker_host: String,
    /// Builds that run at once (on the one local engine, when `engines`
    /// is empty).
    pub max_concurrent_builds: usize,
    /// The pool of engines builds are spread over (`[[engines]]`); empty:
    /// the one engine at `docker_host`, `max_concurrent_builds` at once.
    pub engines: Vec<EngineConfig>,
    /// How often each engine is pinged and inspected.
    pub engine_health_interval: Duration,
    /// A build's time limit when its request gives none.
    pub default_build_timeout: Duration,
    /// The longest time limit a request may ask for.
    pub max_build_timeout: Duration,
    /// Extra directories holding third-party plugins (one sub-directory per
    /// plugin, each with a `plugin.toml`).
    pub plugin_dirs: Vec<PathBuf>,
    /// What the operator grants each plugin (`[plugins.<id>]` in the config file).
    pub plugin_grants: BTreeMap<String, PluginGrant>,
    /// Plugins pulled from a registry at start-up (`[plugins.<id>] source
    /// = …`), each checked against its pin and trusted keys.
    pub plugin_sources: BTreeMap<String, PluginSource>,
    /// The most memory any plugin call may have, whatever its manifest says.
    pub max_plugin_memory_mib: u64,
    /// The most time any plugin call's own code may run.
    pub max_plugin_time_secs: u64,
    /// The key that seals organization secrets; created on first start.
    pub secret_key_file: PathBuf,
    /// The profile a build gets when its request names none (`auto`).
    pub default_profile: String,
    /// The sized profiles, in the order Kiln names them (`auto` chooses
    /// among them by memory, whatever sizes the operator gave them).
    pub profiles: Vec<Profile>,
    /// Most bytes an uploaded context (POST /v1/contexts) may have, packed.
    pub max_upload_bytes: u64,
    /// Most bytes an unpacked context may hold.
    pub max_context_bytes: u64,
    /// Most files and directories an unpacked context may hold.
    pub max_context_entries: u64,
    /// Organization → credential-store plugin id (the rest use the local store).
    pub credential_orgs: BTreeMap<String, String>,
    /// Mounted read-only at `/credentials` for credential-store plugins.
    pub credentials_dir: Option<PathBuf>,
    /// The Kaniko executor image the `kaniko` builder runs (and the only
    /// image it may run).
    pub kaniko_image: String,
    /// Base image per wizard stack (`node`, `python`, `static`...): the
    /// operator's `[wizard.base_images]`; stacks not named keep the defaults.
    pub wizard_base_images: BTreeMap<String, String>,
    /// Which non-public networks the host may reach for tenants (git
    /// sources): none by default (`--allow-private-network`).
    pub network: crate::net::NetworkPolicy,
    /// When set, `GET /metrics` needs `Authorization: Bearer <this>`.
    pub metrics_token: Option<String>,
    /// Most builds of one organization that run at once (0: only the
    /// node's limit); the rest wait their turn in the queue.
    pub max_running_builds_per_org: usize,
    /// Most builds of one organization waiting in the queue (0: no limit);
    /// past it CreateBuild is 429 with `Retry-After`.
    pub max_queued_builds_per_org: usize,
    /// Below this many free bytes on the data directory's filesystem, new
    /// builds and uploads are refused (507) rather than failing half-way.
    pub min_free_disk_bytes: u64,
    /// The longest a client may take to send a request's headers, or
    /// pause within its body, before its connection is closed (headers)
    /// or it is answered 408 (body); also how long an idle keep-alive
    /// connection stays open. A client that stalls holds a descriptor,
    /// and a stalled create holds builds back (`answering_create`).
    pub request_read_timeout: Duration,
    /// What garbage collection removes, and how often it runs (`[retention]`).
    pub retention: RetentionPolicy,
    /// Serve HTTPS with this certificate chain and key (HTTP/2 by ALPN);
    /// plain HTTP without.
    pub tls: Option<TlsFiles>,
}

/// PEM files of the API's TLS certificate chain (leaf first) and its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// `[retention]`: what the server's garbage collection removes. Every
/// limit can be 0, which keeps that kind of thing forever. Builds still
/// pending or running are never touched.
///
/// ```toml
/// [retention]
/// interval_minutes = 60            # 0: only `kiln admin gc`
/// log_days = 90                    # logs of builds finished longer ago (the record stays)
/// record_days = 365                # records (and logs) of builds finished longer ago
/// records_per_name = 1000          # finished builds kept per organization and image name
/// unreferenced_context_hours = 24  # uploaded contexts no kept build refers to
/// git_mirror_idle_days = 30        # git mirrors no build fetched into for this long
/// engine_build_cache_mib = 20480   # the engine's build cache, least recently used first
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionPolicy {
    pub interval_minutes: u64,
    pub log_days: u64,
    pub record_days: u64,
    pub records_per_name: u64,
    pub unreferenced_context_hours: u64,
    pub git_mirror_idle_days: u64,
    pub engine_build_cache_mib: u64,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            interval_minutes: 60,
            log_days: 90,
            record_days: 365,
            records_per_name: 1000,
            unreferenced_context_hours: 24,
            git_mirror_idle_days: 30,
            engine_build_cache_mib: 20 << 10,
        }
    }
}

/// Builds one organization may have waiting before CreateBuild is 429.
pub const DEFAULT_MAX_QUEUED_BUILDS_PER_ORG: usize = 1000;

/// The free space (MiB) below which new builds and uploads are refused.
pub const DEFAULT_MIN_FREE_DISK_MIB: u64 = 256;

/// Seconds a client may take over a request's headers, or pause within its
/// body (hyper's own default for headers, and near nginx's).
pub const DEFAULT_REQUEST_READ_TIMEOUT_SECS: u64 = 30;

/// Whether a host name (without port) is this machine (Kiln speaks plain
/// HTTP to registries, and sends git credentials in clear text, only to such hosts).
pub use kiln_api::validate::is_loopback_host;

/// The executor image when none is configured: the maintained fork
/// (upstream Kaniko was archived in 2025), pinned.
pub const DEFAULT_KANIKO_IMAGE: &str = "ghcr.io/osscontainertools/kaniko:v1.28.0";

/// A build profile: the resources one build may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    pub name: String,
    pub memory_bytes: u64,
    pub nano_cpus: u64,
}

/// The profile that picks a size from the build's history.
pub use kiln_api::validate::AUTO_PROFILE;

/// The sized profiles, smallest first, as Kiln ships them; the operator
/// resizes them with `[profiles.<name>]` in the config file.
pub fn default_profiles() -> Vec<Profile> {
    let gib = |n: u64| n << 30;
    let cpus = |n: u64| n * 1_000_000_000;
    [
        ("small", gib(2), cpus(1)),
        ("medium", gib(4), cpus(2)),
        ("large", gib(8), cpus(4)),
        ("extra-large", gib(16), cpus(8)),
        ("2x-large", gib(32), cpus(16)),
        ("4x-large", gib(64), cpus(32)),
    ]
    .into_iter()
    .map(|(name, memory_bytes, nano_cpus)| Profile {
        name: name.into(),
        memory_bytes,
        nano_cpus,
    })
    .collect()
}

/// The size `auto` starts with when a build has no history: the one Kiln
/// used for every build before `auto`.
pub const AUTO_FIRST_PROFILE: &str = "medium";

impl ServerConfig {
    /// The sized profile a name means (`xlarge` is `extra-large`); `auto`
    /// and unknown names are none.
    pub fn profile(&self, name: &str) -> Option<&Profile> {
        let name = kiln_api::validate::canonical_profile(name);
        self.profiles.iter().find(|p| p.name == name)
    }

    /// The next size up from `name`: the profile with the least memory
    /// above its own (the operator may size them in any order).
    pub fn larger_profile(&self, name: &str) -> Option<&Profile> {
        let current = self.profile(name)?.memory_bytes;
        self.profiles
            .iter()
            .filter(|p| p.memory_bytes > current)
            .min_by_key(|p| p.memory_bytes)
    }

    /// The defaults the README documents, with data under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir: PathBuf = data_dir.into();
        ServerConfig {
            listen: "127.0.0.1:7878".parse().unwrap(),
            data_dir: data_dir.clone(),
            registry: "127.0.0.1:5000".into(),
            docker_host: String::new(),
            max_concurrent_builds: 2,
            engines: Vec::new(),
            engine_health_interval: Duration::from_secs(5),
            default_build_timeout: Duration::from_secs(60 * 60),
            max_build_timeout: Duration::from_secs(6 * 60 * 60),
            plugin_dirs: Vec::new(),
            plugin_grants: BTreeMap::new(),
            plugin_sources: BTreeMap::new(),
            max_plugin_memory_mib: 1024,
            max_plugin_time_secs: 3600,
            default_profile: AUTO_PROFILE.into(),
            profiles: default_profiles(),
            secret_key_file: data_dir.join("secret.key"),
            max_upload_bytes: 2 << 30,
            max_context_bytes: 8 << 30,
            max_context_entries: 200_000,
            credential_orgs: BTreeMap::new(),
            credentials_dir: None,
            kaniko_image: DEFAULT_KANIKO_IMAGE.to_string(),
            network: crate::net::NetworkPolicy::default(),
            metrics_token: None,
            min_free_disk_bytes: DEFAULT_MIN_FREE_DISK_MIB << 20,
            request_read_timeout: Duration::from_secs(DEFAULT_REQUEST_READ_TIMEOUT_SECS),
            max_running_builds_per_org: 0,
            max_queued_builds_per_org: DEFAULT_MAX_QUEUED_BUILDS_PER_ORG,
            wizard_base_images: BTreeMap::new(),
            retention: RetentionPolicy::default(),
            tls: None,
            public_url: None,
            webhooks: Default::default(),
            min_poll_interval_secs: 60,
            sign_images: true,
        }
    }
}

/// `kiln serve --config kiln.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Grants per plugin id, and where a plugin pulled from a registry
    /// comes from.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginEntry>,
    /// Host-wide plugin limits.
    #[serde(default)]
    pub plugin_limits: Option<PluginLimits>,
    /// Which organizations keep their secrets in a credential-store plugin.
    #[serde(default)]
    pub credentials: Option<CredentialsConfig>,
    /// The Kaniko executor image (`--kaniko-image` overrides it).
    #[serde(default)]
    pub kaniko_image: Option<String>,
    /// `[wizard.base_images]`: base image per stack.
    #[serde(default)]
    pub wizard: Option<WizardConfig>,
    /// `[network]`: what the host may reach on tenants' behalf.
    #[serde(default)]
    pub network: Option<NetworkConfig>,
    /// `[retention]`: what garbage collection removes.
    #[serde(default)]
    pub retention: Option<RetentionPolicy>,
    /// `[webhooks]`: where completion webhooks may deliver.
    #[serde(default)]
    pub webhooks: Option<WebhooksConfig>,
    /// `[profiles.<name>]`: the sizes of the build profiles.
    #[serde(default)]
    pub profiles: BTreeMap<String, ProfileSize>,
    /// `[signing]`: whether pushed images are signed.
    #[serde(default)]
    pub signing: Option<SigningConfig>,
    /// `[[engines]]`: the engines builds run on.
    #[serde(default)]
    pub engines: Vec<EngineConfig>,
}

/// `[[engines]]`: one engine of the pool builds are spread over.
///
/// ```toml
/// [[engines]]
/// name = "local"
/// host = "unix:///var/run/docker.sock"
/// max_concurrent_builds = 2
///
/// [[engines]]
/// name = "builder-2"
/// host = "tcp://10.0.0.12:2376"
/// tls = { ca = "certs/ca.pem", cert = "certs/cert.pem", key = "certs/key.pem" }
/// platforms = ["linux/amd64", "linux/arm64"]  # arm64 through QEMU binfmt
/// profiles = ["large", "extra-large"]         # omitted: every profile
/// builders = ["buildkit"]                     # omitted: every builder
/// max_concurrent_builds = 4
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineConfig {
    /// Lower-case letters, digits and `-`; unique in the pool.
    pub name: String,
    /// `unix:///path` or `tcp://host:port`.
    pub host: String,
    /// Mutual TLS for a `tcp://` engine: the CA its certificate is checked
    /// against, and this server's client certificate and key (PEM files;
    /// relative to the config file).
    #[serde(default)]
    pub tls: Option<EngineTls>,
    /// What it builds (`linux/amd64`, `linux/arm64`…), natively or through
    /// QEMU binfmt; omitted: its own platform only, as its daemon reports it.
    #[serde(default)]
    pub platforms: Vec<String>,
    /// The build profiles it serves; omitted: all of them.
    #[serde(default)]
    pub profiles: Vec<String>,
    /// The builders it runs (`buildkit`, `kaniko`…); omitted: all of them.
    #[serde(default)]
    pub builders: Vec<String>,
    /// Builds it runs at once.
    #[serde(default = "default_engine_slots")]
    pub max_concurrent_builds: usize,
}

fn default_engine_slots() -> usize {
    2
}

/// PEM files for mutual TLS with an engine.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl EngineConfig {
    /// The engine of a server without `[[engines]]`: the one at
    /// `docker_host` (the local socket when empty), running
    /// `max_concurrent_builds` builds.
    pub fn single(docker_host: &str, max_concurrent_builds: usize) -> Self {
        EngineConfig {
            name: "default".into(),
            host: docker_host.to_string(),
            tls: None,
            platforms: Vec::new(),
            profiles: Vec::new(),
            builders: Vec::new(),
            max_concurrent_builds: max_concurrent_builds.max(1),
        }
    }

    /// The same entry under another name.
    pub fn named(self, name: &str) -> Self {
        EngineConfig {
            name: name.to_string(),
            ..self
        }
    }

    /// Why this entry cannot be used, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        let name = &self.name;
        let valid_name = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid_name {
            return Err(format!(
                "[[engines]] name {name:?}: use 1-63 lower-case letters, digits and '-'"
            ));
        }
        let tcp = self.host.starts_with("tcp://");
        if !(tcp || self.host.starts_with("unix://")) {
            return Err(format!(
                "[[engines]] {name}: host {:?} is neither unix:///path nor tcp://host:port",
                self.host
            ));
        }
        if self.tls.is_some() && !tcp {
            return Err(format!(
                "[[engines]] {name}: tls is for tcp:// engines; a unix socket is local"
            ));
        }
        if self.max_concurrent_builds == 0 {
            return Err(format!(
                "[[engines]] {name}: max_concurrent_builds must be at least 1 (drain an engine to stop its builds)"
            ));
        }
        for platform in &self.platforms {
            kiln_api::validate::check_platform(platform)
                .map_err(|e| format!("[[engines]] {name}: platforms: {e}"))?;
        }
        for profile in &self.profiles {
            let canonical = kiln_api::validate::canonical_profile(profile);
            if !kiln_api::validate::SIZED_PROFILES.contains(&canonical) {
                return Err(format!(
                    "[[engines]] {name}: profiles: {profile:?} is not a profile; the profiles are {}",
                    kiln_api::validate::SIZED_PROFILES.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// `[plugins.<id>]`: what the operator grants the plugin and, for one
/// published as an OCI artifact (`kiln plugin push`, `wkg oci push`), where
/// `kiln serve` pulls it from.
///
/// ```toml
/// [plugins.recipe-builder]
/// source = "registry.example.com/kiln-plugins/recipe-builder:0.1.0"
/// sha256 = "5f1c…"                      # the artifact's digest; a moved tag is refused
/// trusted_keys = ["keys/publisher.pub"] # PEM; relative to this file
/// grant = "asked"
/// ```
#[derive(Debug, Clone, Default)]
pub struct PluginEntry {
    pub grant: PluginGrant,
    pub source: Option<PluginSource>,
}

/// Where a plugin is pulled from, and what it must match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginSource {
    /// `host/path:tag` (or `@sha256:…`) of a Wasm component artifact.
    pub reference: String,
    /// The artifact's (manifest's) sha256, hex: it covers the component
    /// and the `plugin.toml` beside it.
    pub sha256: Option<String>,
    /// Public keys (PEM files), one of which must have signed the artifact.
    pub trusted_keys: Vec<PathBuf>,
}

impl<'de> Deserialize<'de> for PluginEntry {
    /// The grant's keys as [`PluginGrant`] reads them (unknown ones
    /// refused), beside `source`, `sha256` and `trusted_keys`.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut table = toml::Table::deserialize(deserializer)?;
        let mut text = |key: &str| -> Result<Option<String>, D::Error> {
            match table.remove(key) {
                None => Ok(None),
                Some(toml::Value::String(value)) => Ok(Some(value)),
                Some(other) => Err(D::Error::custom(format!(
                    "`{key}` must be a string, not {}",
                    other.type_str()
                ))),
            }
        };
        let reference = text("source")?;
        let sha256 = text("sha256")?
            .map(|pin| {
                let hex = pin.strip_prefix("sha256:").unwrap_or(&pin).to_ascii_lowercase();
                if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(hex)
                } else {
                    Err(D::Error::custom(format!(
                        "`sha256 = {pin:?}` is not a sha256 (64 hex digits, as `kiln plugin push` prints)"
                    )))
                }
            })
            .transpose()?;
        let trusted_keys = match table.remove("trusted_keys") {
            None => Vec::new(),
            Some(value) => Vec::<PathBuf>::deserialize(value).map_err(|_| {
                D::Error::custom("`trusted_keys` must be a list of PEM public key files")
            })?,
        };
        let grant =
            PluginGrant::deserialize(toml::Value::Table(table)).map_err(D::Error::custom)?;
        let source = match reference {
            Some(reference) => {
                if sha256.is_none() && trusted_keys.is_empty() {
                    return Err(D::Error::custom(format!(
                        "`source = {reference:?}` needs a `sha256` pin or `trusted_keys` (a tag can be moved to anything)"
                    )));
                }
                Some(PluginSource {
                    reference,
                    sha256,
                    trusted_keys,
                })
            }
            None if sha256.is_some() || !trusted_keys.is_empty() => {
                return Err(D::Error::custom(
                    "`sha256` and `trusted_keys` check a plugin pulled from a registry: give its `source` too",
                ))
            }
            None => None,
        };
        Ok(PluginEntry { grant, source })
    }
}

/// `[signing]`: image signatures (on unless `enabled = false`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningConfig {
    pub enabled: bool,
}

/// `[profiles.<name>]`: one profile's size.
///
/// ```toml
/// [profiles.small]
/// memory_mib = 1024
/// cpus = 0.5
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileSize {
    pub memory_mib: u64,
    pub cpus: f64,
}

/// `[webhooks]`: the non-public hosts completion webhooks may deliver to.
///
/// ```toml
/// [webhooks]
/// allowed_hosts = ["127.0.0.1", "deploy.internal"]
/// first_retry_ms = 5000       # then 4x longer each time, up to an hour
/// retry_window_hours = 24
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhooksConfig {
    /// Host names or addresses, as webhook URLs name them.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// The wait before a failed delivery's second attempt, in milliseconds
    /// (each later wait is 4× longer, up to an hour); default 5000.
    #[serde(default)]
    pub first_retry_ms: Option<u64>,
    /// How long attempts go on after the event, in hours; default 24.
    #[serde(default)]
    pub retry_window_hours: Option<u64>,
}

/// `[network]`: the non-public networks builds may make the host reach.
///
/// ```toml
/// [network]
/// allow_private = ["10.1.0.0/16", "192.168.1.20"]
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Address blocks (`10.1.0.0/16`) or addresses (`192.168.1.20`) that
    /// git sources may reach although they are not public.
    #[serde(default)]
    pub allow_private: Vec<crate::net::Cidr>,
}

/// `[wizard]`: the Dockerfile wizard's settings.
///
/// ```toml
/// [wizard.base_images]
/// python = "mirror.example.com/library/python:3.12-slim"
/// static = "mirror.example.com/nginxinc/nginx-unprivileged:1.27-alpine"
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WizardConfig {
    #[serde(default)]
    pub base_images: BTreeMap<String, String>,
}

/// `[credentials]`: per-organization credential stores.
///
/// ```toml
/// [credentials]
/// directory = "/run/secrets/kiln"   # mounted read-only at /credentials for store plugins
/// [credentials.orgs]
/// acme = "file-credentials"         # organizations not listed use the encrypted local store
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialsConfig {
    #[serde(default)]
    pub directory: Option<PathBuf>,
    #[serde(default)]
    pub orgs: BTreeMap<String, String>,
}

/// Host-wide caps on every plugin call.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginLimits {
    pub max_memory_mib: Option<u64>,
    pub max_time_secs: Option<u64>,
}

/// Why the config file was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("cannot read the config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the config file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("{path} is not usable: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl FileConfig {
    /// Read and check a config file. Key files it names relative paths
    /// of are relative to its own directory.
    pub fn load(path: &Path) -> Result<Self, ConfigFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut file: FileConfig =
            toml::from_str(&text).map_err(|source| ConfigFileError::Parse {
                path: path.to_path_buf(),
                source,
            })?;
        let base = path.parent().unwrap_or(Path::new("."));
        for tls in file.engines.iter_mut().filter_map(|e| e.tls.as_mut()) {
            for file in [&mut tls.ca, &mut tls.cert, &mut tls.key] {
                if file.is_relative() {
                    *file = base.join(&*file);
                }
            }
        }
        for source in file.plugins.values_mut().filter_map(|e| e.source.as_mut()) {
            for key in &mut source.trusted_keys {
                if key.is_relative() {
                    *key = base.join(&*key);
                }
            }
        }
        Ok(file)
    }

    /// One `[plugins.<id>]` table's body, parsed (tests, tools).
    pub fn parse_grant(text: &str) -> PluginGrant {
        toml::from_str(text).expect("a valid grant")
    }

    /// Put its settings into a server configuration; a `[profiles.<name>]`
    /// that names no profile, or sizes one to nothing, is refused.
    pub fn apply(self, config: &mut ServerConfig) -> Result<(), String> {
        for (name, size) in &self.profiles {
            let canonical = kiln_api::validate::canonical_profile(name);
            let Some(profile) = config.profiles.iter_mut().find(|p| p.name == canonical) else {
                return Err(format!(
                    "[profiles.{name}] is not a profile; the profiles are {}",
                    kiln_api::validate::SIZED_PROFILES.join(", ")
                ));
            };
            if size.memory_mib == 0 || !(size.cpus > 0.0 && size.cpus <= 1024.0) {
                return Err(format!(
                    "[profiles.{name}]: memory_mib must be above 0 and cpus between 0 and 1024"
                ));
            }
            profile.memory_bytes = size.memory_mib << 20;
            profile.nano_cpus = (size.cpus * 1e9) as u64;
        }
        for (id, entry) in self.plugins {
            if let Some(source) = entry.source {
                config.plugin_sources.insert(id.clone(), source);
            }
            config.plugin_grants.insert(id, entry.grant);
        }
        let mut names = std::collections::BTreeSet::new();
        for engine in &self.engines {
            engine.check()?;
            if !names.insert(engine.name.as_str()) {
                return Err(format!(
                    "[[engines]] {}: two engines have this name",
                    engine.name
                ));
            }
        }
        config.engines = self.engines;
        if let Some(signing) = self.signing {
            config.sign_images = signing.enabled;
        }
        if let Some(image) = self.kaniko_image {
            config.kaniko_image = image;
        }
        if let Some(network) = self.network {
            config.network = crate::net::NetworkPolicy::allowing(network.allow_private);
        }
        if let Some(webhooks) = self.webhooks {
            config.webhooks.allowed_hosts = webhooks.allowed_hosts;
            if let Some(ms) = webhooks.first_retry_ms {
                config.webhooks.first_retry = Duration::from_millis(ms.max(1));
            }
            if let Some(hours) = webhooks.retry_window_hours {
                config.webhooks.retry_window = Duration::from_secs(hours.max(1) * 3600);
            }
        }
        if let Some(retention) = self.retention {
            config.retention = retention;
        }
        if let Some(wizard) = self.wizard {
            config.wizard_base_images = wizard.base_images;
        }
        if let Some(credentials) = self.credentials {
            config.credential_orgs = credentials.orgs;
            config.credentials_dir = credentials.directory;
        }
        if let Some(limits) = self.plugin_limits {
            if let Some(memory) = limits.max_memory_mib {
                config.max_plugin_memory_mib = memory;
            }
            if let Some(time) = limits.max_time_secs {
                config.max_plugin_time_secs = time;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_plugin_runtime::Permissions;

    #[test]
    fn grants_are_asked_or_explicit_and_unknown_keys_are_refused() {
        let file: FileConfig = toml::from_str(
            "[plugins.recipe-builder]\ngrant = \"asked\"\n\n[plugins.fetcher]\nhttp = [\"example.com\"]\nmemory_mib = 32\n",
        )
        .unwrap();
        let asked = Permissions {
            engine: ["buildkit-build".to_string()].into(),
            http: ["example.com".to_string(), "evil.com".to_string()].into(),
            ..Default::default()
        };
        assert_eq!(file.plugins["recipe-builder"].grant.rights(&asked), asked);
        let fetcher = file.plugins["fetcher"].grant.rights(&asked);
        assert_eq!(asked.intersect(&fetcher).http.len(), 1);
        assert!(asked.intersect(&fetcher).engine.is_empty());
        assert!(toml::from_str::<FileConfig>("[plugins.x]\ngrant = \"everything\"\n").is_err());
        assert!(toml::from_str::<FileConfig>("[plugins.x]\nnetwork = true\n").is_err());
    }

    #[test]
    fn a_plugin_from_a_registry_needs_a_pin_or_trusted_keys() {
        let pin = "ab".repeat(32);
        let file: FileConfig = toml::from_str(&format!(
            "[plugins.remote]\nsource = \"r.example/p/remote:1\"\nsha256 = \"sha256:{}\"\ntrusted_keys = [\"k.pub\"]\ngrant = \"asked\"\n",
            pin.to_uppercase()
        ))
        .unwrap();
        let mut config = ServerConfig::new("/tmp/kiln");
        file.apply(&mut config).unwrap();
        let source = &config.plugin_sources["remote"];
        assert_eq!(source.reference, "r.example/p/remote:1");
        assert_eq!(source.sha256.as_deref(), Some(pin.as_str()));
        assert_eq!(source.trusted_keys, vec![PathBuf::from("k.pub")]);
        assert_eq!(config.plugin_grants["remote"].grant, Some(GrantAll::Asked));
        for (text, says) in [
            (
                "source = \"r.example/p/x:1\"\n",
                "needs a `sha256` pin or `trusted_keys`",
            ),
            ("sha256 = \"abc\"\nsource = \"r/x:1\"\n", "not a sha256"),
            ("trusted_keys = [\"k.pub\"]\n", "give its `source` too"),
            ("source = 3\n", "`source` must be a string"),
            (
                "source = \"r/x:1\"\ntrusted_keys = \"k.pub\"\n",
                "must be a list",
            ),
            (
                "source = \"r/x:1\"\ntrusted_keys = [\"k\"]\nnetwork = true\n",
                "unknown field `network`",
            ),
        ] {
            let error = toml::from_str::<FileConfig>(&format!("[plugins.x]\n{text}"))
                .unwrap_err()
                .to_string();
            assert!(error.contains(says), "{text}: {error}");
        }
    }

    #[test]
    fn engines_are_read_checked_and_their_tls_files_found_beside_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kiln.toml");
        std::fs::write(
            &path,
            r#"
[[engines]]
name = "local"
host = "unix:///var/run/docker.sock"

[[engines]]
name = "builder-2"
host = "tcp://10.0.0.12:2376"
tls = { ca = "certs/ca.pem", cert = "certs/cert.pem", key = "/etc/kiln/key.pem" }
platforms = ["linux/amd64", "linux/arm64"]
profiles = ["large", "xlarge"]
builders = ["buildkit"]
max_concurrent_builds = 4
"#,
        )
        .unwrap();
        let file = FileConfig::load(&path).unwrap();
        let mut config = ServerConfig::new("/tmp/kiln");
        file.apply(&mut config).unwrap();
        assert_eq!(config.engines.len(), 2);
        assert_eq!(config.engines[0].max_concurrent_builds, 2, "the default");
        let tls = config.engines[1].tls.as_ref().unwrap();
        assert_eq!(tls.ca, dir.path().join("certs/ca.pem"));
        assert_eq!(tls.key, PathBuf::from("/etc/kiln/key.pem"));
        assert_eq!(config.engines[1].max_concurrent_builds, 4);

        let refused = |text: &str| {
            let file: FileConfig = toml::from_str(text).unwrap();
            file.apply(&mut ServerConfig::new("/tmp/kiln")).unwrap_err()
        };
        let two = "[[engines]]\nname = \"a\"\nhost = \"unix:///x.sock\"\n";
        assert!(refused(&format!("{two}{two}")).contains("two engines have this name"));
        assert!(
            refused("[[engines]]\nname = \"A b\"\nhost = \"unix:///x\"\n").contains("lower-case")
        );
        assert!(refused("[[engines]]\nname = \"a\"\nhost = \"ssh://x\"\n").contains("neither"));
        assert!(refused(
            "[[engines]]\nname = \"a\"\nhost = \"unix:///x\"\ntls = { ca = \"c\", cert = \"c\", key = \"k\" }\n"
        )
        .contains("tls is for tcp://"));
        assert!(refused(
            "[[engines]]\nname = \"a\"\nhost = \"tcp://x:1\"\nplatforms = [\"amd64\"]\n"
        )
        .contains("os/arch"));
        assert!(refused(
            "[[engines]]\nname = \"a\"\nhost = \"tcp://x:1\"\nprofiles = [\"huge\"]\n"
        )
        .contains("not a profile"));
        assert!(refused(
            "[[engines]]\nname = \"a\"\nhost = \"tcp://x:1\"\nmax_concurrent_builds = 0\n"
        )
        .contains("at least 1"));
        let unknown = toml::from_str::<FileConfig>(
            "[[engines]]\nname = \"a\"\nhost = \"tcp://x:1\"\nweight = 2\n",
        )
        .unwrap_err();
        assert!(unknown.to_string().contains("weight"), "{unknown}");
    }

    #[test]
    fn profiles_are_resized_by_name_or_alias_and_unknown_ones_refused() {
        let file: FileConfig = toml::from_str(
            "[profiles.small]\nmemory_mib = 64\ncpus = 0.5\n[profiles.xlarge]\nmemory_mib = 1024\ncpus = 3\n",
        )
        .unwrap();
        let mut config = ServerConfig::new("/tmp/kiln");
        file.apply(&mut config).unwrap();
        assert_eq!(config.profiles[0].memory_bytes, 64 << 20);
        assert_eq!(config.profiles[0].nano_cpus, 500_000_000);
        assert_eq!(config.profiles[3].name, "extra-large");
        assert_eq!(config.profiles[3].memory_bytes, 1 << 30);
        let unknown: FileConfig =
            toml::from_str("[profiles.huge]\nmemory_mib = 1\ncpus = 1\n").unwrap();
        let refused = unknown
            .apply(&mut ServerConfig::new("/tmp/kiln"))
            .unwrap_err();
        assert!(
            refused.contains("huge") && refused.contains("2x-large"),
            "{refused}"
        );
        let empty: FileConfig =
            toml::from_str("[profiles.small]\nmemory_mib = 0\ncpus = 1\n").unwrap();
        assert!(empty.apply(&mut ServerConfig::new("/tmp/kiln")).is_err());
    }

    #[test]
    fn retention_keeps_the_defaults_it_is_not_told_and_refuses_unknown_keys() {
        let file: FileConfig = toml::from_str("[retention]\nlog_days = 7\n").unwrap();
        let mut config = ServerConfig::new("/tmp/kiln");
        file.apply(&mut config).unwrap();
        assert_eq!(
            config.retention,
            RetentionPolicy {
                log_days: 7,
                ..RetentionPolicy::default()
            }
        );
        let error = toml::from_str::<FileConfig>("[retention]\nlogs_days = 7\n").unwrap_err();
        assert!(error.to_string().contains("logs_days"), "{error}");
    }
}
