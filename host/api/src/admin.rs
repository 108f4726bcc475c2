//! Organizations, tokens, secrets and plugins on the wire.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An organization (`POST /v1/orgs`, `GET /v1/orgs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Org {
    pub name: String,
    pub create_time: DateTime<Utc>,
    /// Where its images go, when the operator gave it its own registry
    /// (`PUT /v1/orgs/{org}/registry`); otherwise the server's registry,
    /// under `<registry>/<org>/`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistryTarget>,
}

/// An organization's own registry: its images are pushed to
/// `<host>/<namespace>/<name>:<tag>` (and its cache to
/// `<host>/<namespace>/cache/<name>`) with its registry credential for
/// `host`. The body of `PUT /v1/orgs/{org}/registry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegistryTarget {
    /// `host` or `host:port`, e.g. `harbor.example.com` or `127.0.0.1:5001`.
    #[cfg_attr(
        feature = "openapi",
        schema(pattern = r"^[A-Za-z0-9.-]+(?::[0-9]{1,5})?$", max_length = 255)
    )]
    pub host: String,
    /// The repository path under it: lowercase components separated by
    /// `/`, e.g. `team-a` or `acme/builds`.
    #[cfg_attr(
        feature = "openapi",
        schema(
            pattern = r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*$",
            max_length = 200
        )
    )]
    pub namespace: String,
}

/// `GET /v1/orgs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct OrgList {
    pub orgs: Vec<Org>,
}

/// `PUT` and `GET /v1/orgs/{org}/signing`: whether the organization's
/// images are signed and get their provenance attached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SigningSetting {
    pub enabled: bool,
}

/// `POST /v1/orgs`' body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CreateOrgRequest {
    pub name: String,
}

/// `POST /v1/orgs/{org}/tokens`: the token, shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct NewToken {
    pub token: String,
    pub token_id: String,
    pub org: String,
    pub create_time: DateTime<Utc>,
    pub note: String,
}

/// A username and password, as `GET /v1/secrets` shows them: both `***`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MaskedCredential {
    pub username: String,
    pub password: String,
}

/// What is written in place of every secret value.
pub const MASK: &str = "***";

impl MaskedCredential {
    pub fn masked() -> Self {
        MaskedCredential {
            username: MASK.into(),
            password: MASK.into(),
        }
    }
}

/// `GET /v1/secrets` (and the answer to `PUT`): names, never values.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MaskedSecrets {
    /// Registry host → credential.
    pub registry_credentials: BTreeMap<String, MaskedCredential>,
    /// Git host (or `*`) → credential.
    pub git_credentials: BTreeMap<String, MaskedCredential>,
    /// Build secret name → `***`.
    pub build_secrets: BTreeMap<String, String>,
}

/// `PUT /v1/secrets`' body: each named entry is set, or with `null`
/// removed; entries not named stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SaveSecretsRequest {
    /// Registry host (`host` or `host:port`) → credential, used to push
    /// and to pull private base images.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    // The schema is laid over by `openapi::fields` (utoipa cannot
    // derive a map of optional structs).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub registry_credentials: BTreeMap<String, Option<CredentialInput>>,
    /// Git host (or `*` for every host) → credential.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub git_credentials: BTreeMap<String, Option<CredentialInput>>,
    /// Build secret name (letters, digits, `_`) → value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub build_secrets: BTreeMap<String, Option<String>>,
}

/// A username and password (or token) as it is saved; it is never read
/// back.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CredentialInput {
    #[serde(default)]
    pub username: String,
    /// A password or a token (`token` is accepted as the same field).
    #[serde(default, alias = "token")]
    pub password: String,
}

impl std::fmt::Debug for CredentialInput {
    // The password never reaches a log through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialInput")
            .field("username", &self.username)
            .field("password", &MASK)
            .finish()
    }
}

/// `GET /v1/plugins`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PluginList {
    pub plugins: Vec<PluginView>,
    /// Plugins that were found but refused, and why.
    pub load_errors: Vec<PluginLoadError>,
}

/// One loaded plugin.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PluginView {
    pub id: String,
    pub version: String,
    /// The contract version it was built against.
    pub api: String,
    pub description: String,
    #[serde(default)]
    pub authors: Vec<String>,
    /// `embedded`, or the manifest's path.
    pub origin: String,
    pub sha256: String,
    /// `Builder`, `ContextSource`, `CredentialStore`, `Detector` or
    /// `Notifier`.
    pub world: String,
    pub kinds: PluginKinds,
    pub asked_permissions: Permissions,
    pub granted_permissions: Permissions,
    pub limits: PluginLimits,
}

/// What a plugin provides.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PluginKinds {
    #[serde(default)]
    pub context_source: Vec<String>,
    #[serde(default)]
    pub builder: Vec<String>,
}

/// Rights, each a list: what is not listed is not allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Permissions {
    #[serde(default)]
    pub engine: BTreeSet<String>,
    #[serde(default)]
    pub git: BTreeSet<String>,
    #[serde(default)]
    pub http: BTreeSet<String>,
    #[serde(default)]
    pub secrets: BTreeSet<String>,
    #[serde(default)]
    pub env: BTreeSet<String>,
    #[serde(default)]
    pub images: BTreeSet<String>,
}

impl Permissions {
    /// `name=a,b` for each non-empty right, by name; `-` when none.
    pub fn summary(&self) -> String {
        self.describe("-")
    }

    /// `name=a,b` for each non-empty right, by name; `none` when there are none.
    pub fn describe(&self, none: &str) -> String {
        let parts: Vec<String> = [
            ("engine", &self.engine),
            ("env", &self.env),
            ("git", &self.git),
            ("http", &self.http),
            ("images", &self.images),
            ("secrets", &self.secrets),
        ]
        .into_iter()
        .filter(|(_, set)| !set.is_empty())
        .map(|(name, set)| {
            format!(
                "{name}={}",
                set.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
        if parts.is_empty() {
            none.to_string()
        } else {
            parts.join(" ")
        }
    }
}

/// The limits one call of a plugin runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PluginLimits {
    pub memory_mib: u64,
    pub time_secs: u64,
}

/// A plugin that was found but refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PluginLoadError {
    /// Its manifest's path.
    pub origin: String,
    /// Its id, when the manifest could be read.
    pub plugin_id: Option<String>,
    pub message: String,
}

/// `POST /v1/wizard:detect`'s body: one context, and what to look at.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DetectRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zipped_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    /// A git repository, checked out as a build would (the organization's
    /// git credentials, the same limits); `contextDir` narrows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_source: Option<crate::GitSourceRequest>,
    /// A directory of the context (default: its root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Also list the sub-projects (default true).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monorepo: Option<bool>,
}

/// `POST /v1/wizard:detect`'s answer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DetectAnswer {
    pub projects: Vec<DetectedProject>,
    /// Whether anything buildable was found.
    pub detected: bool,
}

/// One buildable directory the wizard found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DetectedProject {
    pub path: String,
    /// The same as `path`: what to give CreateBuild to build this project.
    pub context_dir: String,
    pub stack: String,
    pub tool: String,
    pub reasons: Vec<String>,
    pub has_dockerfile: bool,
    /// Its own Dockerfile, or the one the wizard would generate.
    pub dockerfile: String,
    pub dockerignore: String,
    pub port: Option<u16>,
}

/// `POST /v1/gc`' body (admin token).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcRequest {
    /// Say what would be removed, and remove nothing.
    #[serde(default)]
    pub dry_run: bool,
}

/// What one garbage collection removed (or, dry, would remove), by the
/// server's `[retention]` rules.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct GcReport {
    pub dry_run: bool,
    /// One total per kind of thing, every kind listed.
    pub totals: Vec<GcTotal>,
    /// What went (or would go), the first [`GcReport::MAX_ITEMS`] of it.
    pub items: Vec<GcItem>,
    /// Items past the first [`GcReport::MAX_ITEMS`] (counted in `totals`).
    pub items_not_listed: u64,
    /// What could not be removed, and why; the rest went on.
    pub errors: Vec<String>,
    pub duration_ms: u64,
}

impl GcReport {
    /// Most items one report lists.
    pub const MAX_ITEMS: usize = 1000;
}

/// How many things of one kind went, and their bytes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct GcTotal {
    /// `record`, `log`, `context`, `idempotencyAnswer`, `pushDelivery`,
    /// `webhookDelivery`, `dashboardSession`, `leftover`, `gitMirror`, `pluginCache` or
    /// `engineBuildCache`.
    pub kind: String,
    pub count: u64,
    pub bytes: u64,
}

/// One thing garbage collection removed, and the rule that removed it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct GcItem {
    pub kind: String,
    /// A build id, context id, path under the data directory, or cache record id.
    pub name: String,
    pub bytes: u64,
    /// The rule, e.g. `finished more than 90 days ago (retention.log_days)`.
    pub reason: String,
}

/// One engine of the server's pool (`GET /v1/engines`, the operator's
/// admin token only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Engine {
    pub name: String,
    /// `unix:///…` or `tcp://…`.
    pub host: String,
    /// Whether the server speaks mutual TLS to it.
    pub tls: bool,
    /// `HEALTHY`, `UNHEALTHY`, or `UNKNOWN` before its first check.
    pub health: EngineHealth,
    /// Why the last check failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_checked: Option<DateTime<Utc>>,
    /// Drained: it finishes what it runs and takes no new builds.
    pub draining: bool,
    /// What it builds (its own platform when the operator listed none).
    pub platforms: Vec<String>,
    /// The profiles it serves (empty: all of them).
    pub profiles: Vec<String>,
    /// The builders it runs (empty: all of them).
    pub builders: Vec<String>,
    pub max_concurrent_builds: u32,
    /// The builds it runs now.
    pub running_builds: Vec<String>,
    /// Builds it was given since the server started.
    pub builds_started: u64,
    /// Its daemon's version, CPUs, memory and BuildKit cache size, as
    /// the last check saw them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_bytes: Option<u64>,
}

/// An engine's health, as its last check found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EngineHealth {
    Unknown,
    Healthy,
    Unhealthy,
}

/// `GET /v1/engines`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EngineList {
    pub engines: Vec<Engine>,
}
