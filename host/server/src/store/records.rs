//! The records the store keeps. They are not the API: `api::views` converts
//! them into `kiln-api`'s wire types, so this format can change on its own.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// An organization: the unit of isolation. Its builds, logs and images
/// (`<registry>/<org>/...`) are invisible to every other organization.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Org {
    pub name: String,
    pub create_time: DateTime<Utc>,
    /// Its own registry, when the operator gave it one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<kiln_api::RegistryTarget>,
    /// Whether its images are signed and attested; none: the server's
    /// setting (`[signing] enabled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign_images: Option<bool>,
}

impl Org {
    /// Whether its images are signed and attested: its own setting, else
    /// the server's.
    pub fn signs_images(&self, config: &crate::config::ServerConfig) -> bool {
        self.sign_images.unwrap_or(config.sign_images)
    }
}

/// Where an organization's images go: its own registry, else the server's
/// under the organization's name.
pub fn registry_target(
    own: Option<&kiln_api::RegistryTarget>,
    server_registry: &str,
    org: &str,
) -> kiln_api::RegistryTarget {
    own.cloned().unwrap_or_else(|| kiln_api::RegistryTarget {
        host: server_registry.to_string(),
        namespace: org.to_string(),
    })
}

impl BuildRecord {
    /// Where this build pushes (see [`registry_target`]).
    pub fn registry_target(&self, server_registry: &str) -> kiln_api::RegistryTarget {
        registry_target(self.registry.as_ref(), server_registry, &self.org)
    }
}

/// A bearer token, as stored (under the token's hash; the token itself is
/// shown once, when created).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRecord {
    pub token_id: String,
    pub org: String,
    /// Operator tokens may manage organizations and their tokens.
    #[serde(default)]
    pub admin: bool,
    pub create_time: DateTime<Utc>,
}

/// The wire enums are stored as they are named on the wire: their names are
/// the API's contract already, and a stored record must keep meaning the same.
pub use kiln_api::{BuildStatus, FailureReason, RefKind};

/// What a build was asked to do (the validated request, without the context
/// bytes themselves).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildSpec {
    pub dockerfile: String,
    pub tags: Vec<String>,
    pub build_args: std::collections::BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// A multi-platform build's platforms (two or more; one is `platform`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    pub no_cache: bool,
    pub timeout_secs: u64,
    pub builder: String,
    /// The build profile as asked or defaulted (`auto` or a size).
    #[serde(default)]
    pub profile: String,
    /// Names of build secrets passed as build args (values are never stored here).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_build_args: Vec<String>,
    /// Names of build secrets mounted with `RUN --mount=type=secret,id=NAME`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// The directory of the context that is built (empty: its root). Git
    /// sources narrow at checkout instead (`source.git.contextDir`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub context_dir: String,
}

/// Where the build's context comes from.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceSummary {
    /// `inline-zip`, `upload`, `git`...
    pub kind: String,
    /// Size of the staged input, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// The archive format of the staged input: `zip`, `tar`, `tar.gz`.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub format: Option<String>,
    /// For `upload`: the uploaded context's id.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub context_id: Option<String>,
    /// For a `contextUrl`: the URL.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub url: Option<String>,
    /// For `git`: what was asked and what it resolved to.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub git: Option<GitSource>,
}

/// A git context: the request, then the commit the host checked out.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GitSource {
    /// The repository URL (never with credentials).
    pub url: String,
    /// The reference asked for (a branch, tag or commit id); the git
    /// plugin's default (`main`) when none was given.
    pub reference: String,
    /// The sub-directory that is the context; empty for the whole tree.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub context_dir: String,
    #[serde(default)]
    pub submodules: bool,
    /// The branch the build is of: the reference until it resolves, then
    /// the branch it named (none for a tag or a commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The resolved commit id, once fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// `branch`, `tag` or `commit`, once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_kind: Option<RefKind>,
    /// The full ref name on the remote, for branches and tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_ref: Option<String>,
}

/// What the Dockerfile wizard found, for a build it made (or took over).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WizardDetection {
    /// `node`, `python`, `go`... (or `dockerfile` when one was there).
    pub stack: String,
    /// `npm`, `pnpm`, `poetry`...
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tool: String,
    /// Which files decided it.
    pub reasons: Vec<String>,
    /// Whether the Dockerfile was generated.
    pub generated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// An uploaded build context (POST /v1/contexts).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContextRecord {
    pub context_id: String,
    pub sha256: String,
    pub size_bytes: u64,
    /// `tar`, `tar.gz` or `zip`.
    pub format: String,
    pub create_time: DateTime<Utc>,
}

/// A failed build's classified reason, the message, and what to do about it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub reason: FailureReason,
    pub message: String,
    pub hint: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// Measurements of a finished build.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer_count: Option<u32>,
    pub cache_used: bool,
    pub cached_steps: u32,
    pub total_steps: u32,
    /// Absent in records stored before phases were measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<Phases>,
}

/// A finished build's time by phase, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Phases {
    pub queued_ms: u64,
    pub context_ms: u64,
    pub build_ms: u64,
    pub push_ms: u64,
}

/// One build, as stored (the API serves it as a [`kiln_api::Build`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BuildRecord {
    pub build_id: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub org: String,
    pub number: u64,
    pub name: String,
    pub status: BuildStatus,
    pub source: SourceSummary,
    pub request: BuildSpec,
    pub image_refs: Vec<String>,
    /// The image's digest; a multi-platform build's index's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// A multi-platform build's images, one per platform.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platform_images: Vec<kiln_api::PlatformImage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// For builds the Dockerfile wizard made: what it detected and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wizard: Option<WizardDetection>,
    pub create_time: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finish_time: Option<DateTime<Utc>>,
    /// Position in the node's creation order; the queue and list key.
    #[serde(default)]
    pub seq: u64,
    /// When retention removed the build's log (the record outlives it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_removed_time: Option<DateTime<Utc>>,
    /// The project a project's build is of.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// What started a project's build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<kiln_api::Trigger>,
    /// Where the build pushes, fixed when it is accepted (an organization
    /// moving to another registry moves its next builds). None: the
    /// server's registry under the organization's name, as before there
    /// were per-organization registries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<kiln_api::RegistryTarget>,
    /// The sized profile it ran with (for `auto`: the one chosen).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_used: Option<String>,
    /// Earlier attempts that failed (an `auto` build out of memory).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
    /// The engine of the pool it ran on (for a retried build, the last).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Earlier images whose inline cache it could import.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_from: Vec<String>,
    /// The most memory its container runs used, where measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
    /// What was pushed beside the image (its signature and provenance).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<kiln_api::Attachment>,
}

/// An earlier attempt of a build that failed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Attempt {
    pub profile: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    pub failure: Failure,
    pub start_time: DateTime<Utc>,
    pub finish_time: DateTime<Utc>,
}

/// A project: a saved build recipe for one image (`POST /v1/projects`).
/// Its fields are the request's after defaults; the webhook secret is kept
/// sealed with the host's secret key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectRecord {
    pub project_id: String,
    pub org: String,
    pub name: String,
    pub git_source: kiln_api::ProjectGitSource,
    pub dockerfile: String,
    pub builder: String,
    pub profile: String,
    pub build_args: std::collections::BTreeMap<String, String>,
    pub secrets: Vec<String>,
    pub secret_build_args: Vec<String>,
    pub tags: Vec<String>,
    pub branches: Vec<String>,
    pub tags_pattern: Option<String>,
    pub paths: Vec<String>,
    pub auto_cancel_superseded: bool,
    pub poll_interval_secs: u64,
    pub default_branch: String,
    pub latest_on_every_branch: bool,
    /// Sign and attest its images whatever the organization's setting
    /// (absent in records from before the switch: the organization's).
    #[serde(default)]
    pub signing: Option<bool>,
    /// The webhook secret, sealed (nonce + ciphertext, hex).
    pub sealed_webhook_secret: String,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// How long a push delivery's answer is kept: GitHub lets a delivery be
/// redelivered by hand for 3 days; a week covers every sender's retries.
pub const DELIVERY_KEEP: chrono::TimeDelta = chrono::TimeDelta::days(7);

/// A push delivery already answered, kept so a repeated delivery id gets
/// the same answer without a second build.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryRecord {
    pub status: u16,
    pub answer: kiln_api::PushAnswer,
    pub receive_time: DateTime<Utc>,
}

/// One line of a build log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    pub seq: u64,
    pub time: DateTime<Utc>,
    /// `system` (the host), `build` (the engine), or `plugin`.
    pub stream: String,
    pub line: String,
}

/// How long an answer is kept for its `Idempotency-Key`.
pub const IDEMPOTENT_ANSWER_KEEP: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// The first answer to a request sent with an `Idempotency-Key`, kept so a
/// retry of the same request gets it again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IdempotentAnswer {
    /// The request body's sha256: the same key with another body is refused.
    pub request_sha256: String,
    pub status: u16,
    pub body: serde_json::Value,
    pub create_time: DateTime<Utc>,
}

/// A completion webhook (`POST /v1/webhooks`); its secret sealed with the
/// host's key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebhookRecord {
    pub webhook_id: String,
    pub org: String,
    /// Where Kiln POSTs signed deliveries; empty for a notifier's.
    pub url: String,
    /// The notifier plugin that delivers instead, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifier: Option<kiln_api::NotifierTarget>,
    pub events: Vec<String>,
    pub project_id: Option<String>,
    /// Nonce and ciphertext, hex.
    pub sealed_secret: String,
    pub create_time: DateTime<Utc>,
}

/// One event on its way to one webhook: the body is fixed when the event
/// happens, so every attempt (and a redelivery) sends the same bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OutboundDelivery {
    pub delivery_id: String,
    pub webhook_id: String,
    pub event_type: String,
    pub build_id: String,
    /// The JSON body, as sent.
    pub body: String,
    pub status: kiln_api::DeliveryStatus,
    pub attempts: u32,
    pub create_time: DateTime<Utc>,
    /// When retries stop (24 hours after the event, or after a redelivery).
    pub give_up_time: DateTime<Utc>,
    pub next_attempt_time: Option<DateTime<Utc>>,
    pub last_attempt: Option<kiln_api::DeliveryAttempt>,
}
