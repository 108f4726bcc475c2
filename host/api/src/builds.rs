//! Builds on the wire: CreateBuild's body, and what the server answers.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Most bytes an inline zip (`zippedCode`) may have, packed; a bigger
/// context is uploaded (`POST /v1/contexts`) and named by `contextId`.
pub const MAX_INLINE_ZIP_BYTES: usize = 4 << 20;

/// `gitSource` in CreateBuild.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GitSourceRequest {
    pub url: String,
    /// A branch, tag, or full/abbreviated commit id; default `main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// A sub-directory of the repository to use as the context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_dir: Option<String>,
    /// Fetch submodules too (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submodules: Option<bool>,
}

/// The CreateBuild body: exactly one of `zippedCode`, `contextId`,
/// `gitSource` or `contextUrl`. Unknown fields are refused, so a typo is an
/// error rather than a silently ignored option.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateBuildRequest {
    /// The image name: lowercase path components, e.g. `hello` or `team/api`;
    /// the image is pushed to `<registry>/<org>/<name>:<tag>`.
    pub name: String,
    /// A zip of the context, base64, at most 4 MiB packed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(content_encoding = "base64"))]
    pub zipped_code: Option<String>,
    /// An uploaded context (`POST /v1/contexts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    /// Build from a git repository: the host fetches it (shallow, through a
    /// per-organization mirror) with the organization's git credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_source: Option<GitSourceRequest>,
    /// A URL for a context source plugin: its scheme picks the plugin (e.g.
    /// a third-party http archive source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_url: Option<String>,
    /// The Dockerfile's path in the context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// A directory of the context to build instead of its root (one
    /// project of a monorepo, as `wizard:detect` lists them); for git
    /// sources use `gitSource.contextDir`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_dir: Option<String>,
    /// `buildkit`, `kaniko`, `wizard`, or a plugin's builder name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(default = "buildkit"))]
    pub builder: Option<String>,
    /// The tags to push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_args: Option<BTreeMap<String, String>>,
    /// The Dockerfile stage to build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// Several platforms (`["linux/amd64", "linux/arm64"]`): one build per
    /// platform on engines that build it, then one image index pushed
    /// under every tag (each platform's image also under
    /// `<tag>-<os>-<arch>[-<variant>]`). Not with `platform`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platforms: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(default = false))]
    pub no_cache: Option<bool>,
    /// How long the build may run; 0 or absent: the server's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    /// The resource profile (memory and CPU): `auto` (sized by the
    /// build's history), `small`, `medium`, `large`, `extra-large`,
    /// `2x-large` or `4x-large`; absent: the server's default (`auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    /// Build secrets passed as build args of the same name (values masked
    /// in the log and never stored in the record; visible in the image's
    /// history, as any build arg is).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_build_args: Option<Vec<String>>,
    /// Build secrets to mount with `RUN --mount=type=secret,id=NAME`
    /// (nothing of them stays in the image).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<String>>,
}

/// `202 Accepted` to CreateBuild: the build is stored `PENDING` and queued.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BuildAccepted {
    pub build_id: String,
    pub number: u64,
    pub status: BuildStatus,
}

/// Where a build is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum BuildStatus {
    #[serde(rename = "BUILD_STATUS_PENDING")]
    Pending,
    #[serde(rename = "BUILD_STATUS_RUNNING")]
    Running,
    #[serde(rename = "BUILD_STATUS_SUCCEEDED")]
    Succeeded,
    #[serde(rename = "BUILD_STATUS_FAILED")]
    Failed,
    #[serde(rename = "BUILD_STATUS_CANCELLED")]
    Cancelled,
}

impl BuildStatus {
    /// Every status, in the order of a build's life.
    pub const ALL: [BuildStatus; 5] = [
        Self::Pending,
        Self::Running,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    /// Whether the build has ended.
    pub fn is_finished(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }

    /// The name on the wire, `BUILD_STATUS_…`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "BUILD_STATUS_PENDING",
            Self::Running => "BUILD_STATUS_RUNNING",
            Self::Succeeded => "BUILD_STATUS_SUCCEEDED",
            Self::Failed => "BUILD_STATUS_FAILED",
            Self::Cancelled => "BUILD_STATUS_CANCELLED",
        }
    }

    /// The status a wire name (or its short form, `failed`) means.
    pub fn parse(text: &str) -> Option<Self> {
        let upper = text.to_ascii_uppercase();
        let short = upper.strip_prefix("BUILD_STATUS_").unwrap_or(&upper);
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().strip_prefix("BUILD_STATUS_") == Some(short))
    }
}

impl std::fmt::Display for BuildStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One build, as `GET /v1/builds/{id}` serves it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Build {
    pub build_id: String,
    /// The organization the build belongs to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub org: String,
    /// Sequential per organization and name.
    pub number: u64,
    pub name: String,
    pub status: BuildStatus,
    pub source: Source,
    /// What the build was asked to do, after defaults.
    pub request: BuildSettings,
    pub image_refs: Vec<String>,
    /// The pushed image's digest; for a multi-platform build, its image
    /// index's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// A multi-platform build's images, one per platform, as the index
    /// lists them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<PlatformImage>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// For builds the Dockerfile wizard made: what it detected and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wizard: Option<WizardDetection>,
    /// The project this build is of, for a project's build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// What started a project's build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trigger: Option<crate::projects::Trigger>,
    /// The sized profile the build ran with: for `auto`, the one it chose
    /// (after an out-of-memory retry, the larger one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_used: Option<String>,
    /// Earlier attempts that failed: an `auto` build that ran out of memory
    /// is built once more one size up, and its first attempt kept here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<BuildAttempt>,
    /// The engine of the server's pool the build ran on (`GET /v1/engines`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    /// Earlier images of this name (`repository@digest`) whose inline
    /// cache the build could import, so it is warm on any engine: the last
    /// build of the same branch, then of the default branch. Whether it
    /// was used shows in `metrics.cachedSteps`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_from: Vec<String>,
    /// The most memory the build's container runs used (Kaniko's, and
    /// other builders that run one), as the engine measured it while they
    /// ran; absent where the engine path measures none (BuildKit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_memory_bytes: Option<u64>,
    /// What was pushed beside the image: its signature and its signed SLSA
    /// provenance (cosign's formats, under the `sha256-<digest>.sig` and
    /// `.att` tags).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    pub create_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish_time: Option<DateTime<Utc>>,
    /// When the server's retention removed this build's log; the record
    /// is kept longer than logs are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_removed_time: Option<DateTime<Utc>>,
}

/// One platform's image of a multi-platform build.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PlatformImage {
    /// `os/arch[/variant]`.
    pub platform: String,
    /// Its manifest's digest (an entry of the build's index).
    pub digest: String,
    /// Its config and layers, compressed, in bytes.
    pub size_bytes: u64,
    pub layer_count: u32,
    /// The engine of the pool that built it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
}

/// An artifact pushed beside a build's image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Attachment {
    /// `signature` or `provenance`.
    pub kind: String,
    /// Where it is: `<registry>/<repository>:sha256-<digest>.sig` (`.att`
    /// for an attestation).
    pub reference: String,
    /// Its manifest's digest.
    pub digest: String,
}

/// An earlier attempt of a build, and how it failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BuildAttempt {
    /// The sized profile it ran with.
    pub profile: String,
    /// The engine it ran on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
    pub failure: Failure,
    pub start_time: DateTime<Utc>,
    pub finish_time: DateTime<Utc>,
}

/// A build's settings after the server applied its defaults (values of
/// secrets never appear, only their names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BuildSettings {
    pub dockerfile: String,
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<String>,
    /// A multi-platform build's platforms, in the order asked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub platforms: Vec<String>,
    pub no_cache: bool,
    pub timeout_secs: u64,
    pub builder: String,
    /// `auto`, `small`, `medium`, `large`, `extra-large`, `2x-large` or
    /// `4x-large` (`xlarge`: `extra-large`), as asked or defaulted.
    #[serde(default)]
    pub profile: String,
    /// Names of build secrets passed as build args.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_build_args: Vec<String>,
    /// Names of build secrets mounted with `RUN --mount=type=secret,id=NAME`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    /// The directory of the context that is built (empty: its root).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub context_dir: String,
}

/// Where a build's context comes from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Source {
    /// `inline-zip`, `upload`, `git`, or a third-party source's kind.
    pub kind: String,
    /// Size of the staged input, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// The archive format of the staged input: `zip`, `tar`, `tar.gz`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// For `upload`: the uploaded context's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_id: Option<String>,
    /// For a `contextUrl`: the URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// For `git`: what was asked and what it resolved to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
}

/// A git context: the request, then the commit the server checked out.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct GitSource {
    /// The repository URL (never with credentials).
    pub url: String,
    /// The reference asked for (a branch, tag or commit id).
    pub reference: String,
    /// The sub-directory that is the context; empty for the whole tree.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub context_dir: String,
    #[serde(default)]
    pub submodules: bool,
    /// The branch built: the reference until it resolves, then the branch
    /// it named (none for a tag or a commit).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    /// The resolved commit id, once fetched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// What the reference turned out to be, once resolved.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_kind: Option<RefKind>,
    /// The full ref name on the remote, for branches and tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub full_ref: Option<String>,
}

/// What a git reference named.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum RefKind {
    Branch,
    Tag,
    Commit,
}

impl RefKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RefKind::Branch => "branch",
            RefKind::Tag => "tag",
            RefKind::Commit => "commit",
        }
    }
}

/// What the Dockerfile wizard found, for a build it made (or took over).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WizardDetection {
    /// `node`, `python`, `go`… (or `dockerfile` when one was there).
    pub stack: String,
    /// `npm`, `pnpm`, `poetry`…
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tool: String,
    /// Which files decided it.
    pub reasons: Vec<String>,
    /// Whether the Dockerfile was generated.
    pub generated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

/// Why a failed build failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FailureReason {
    /// The git repository does not exist or is not visible.
    GitRepositoryNotFound,
    /// The repository needs credentials and the organization has none for its host.
    GitAuthRequired,
    /// The saved git credentials were refused.
    GitAuthFailed,
    /// The branch, tag or commit does not exist.
    GitReferenceNotFound,
    /// The git host is not among the plugin's granted hosts.
    GitHostNotPermitted,
    /// The fetch failed for another reason (network, protocol).
    GitFetchFailed,
    /// `contextDir` is not a directory of the context.
    ContextDirNotFound,
    DockerfileNotFound,
    DockerfileParseError,
    /// A `FROM` image does not exist (or is not visible with the
    /// organization's registry credentials).
    BaseImageNotFound,
    CopyFailed,
    RunFailed,
    OutOfMemory,
    PushUnauthorized,
    PushDenied,
    /// The registry could not be reached (connection refused, timeout,
    /// server error), also after retries.
    RegistryUnreachable,
    ContextInvalid,
    PluginError,
    Timeout,
    Interrupted,
    EngineError,
    /// The engine the build ran on stopped answering mid-build (the
    /// message names it); a build that had pushed nothing yet is retried
    /// once on another engine first.
    EngineLost,
    /// The server's data disk had no room for the build's context (a
    /// limit of the server, not a fault of the build).
    DiskFull,
    Internal,
    /// On a cancelled build: a newer push to the same branch of its project
    /// started another build (the project's `autoCancelSuperseded`).
    Superseded,
}

impl std::fmt::Display for FailureReason {
    /// The name on the wire (`PUSH_DENIED`), so a log says what the API says.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let wire = serde_json::to_value(self).expect("a reason serializes");
        f.write_str(wire.as_str().expect("a reason is a string"))
    }
}

/// A failed build's classified reason, the message, and what to do about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Failure {
    pub reason: FailureReason,
    pub message: String,
    pub hint: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
}

/// Measurements of a finished build.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Metrics {
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_size_bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer_count: Option<u32>,
    pub cache_used: bool,
    pub cached_steps: u32,
    pub total_steps: u32,
    /// Where the build's time went. Absent on builds finished before Kiln
    /// measured phases.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phases: Option<Phases>,
}

/// A finished build's time by phase, in milliseconds; a phase the build
/// never reached is 0.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Phases {
    /// Accepted → a worker started it (`startTime - createTime`).
    pub queued_ms: u64,
    /// The context made ready: fetched or unpacked by its source plugin,
    /// modes, links and `.dockerignore` applied, the Dockerfile found.
    pub context_ms: u64,
    /// The builder at work, up to its first push.
    pub build_ms: u64,
    /// Pushing to the registry (retries included). Builders that push from
    /// inside their own container (Kaniko) count their push in `buildMs`.
    pub push_ms: u64,
}

/// `GET /v1/builds`: a page, newest first.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BuildList {
    pub builds: Vec<Build>,
    /// Pass as `pageToken` for the next page; empty on the last one.
    #[serde(default)]
    pub next_page_token: String,
}

/// One line of a build log (`GET /v1/builds/{id}/logs`, NDJSON or SSE).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LogLine {
    pub seq: u64,
    pub time: DateTime<Utc>,
    /// `system` (the server), `build` (the engine), or `plugin`.
    pub stream: String,
    pub line: String,
}

/// `POST /v1/contexts`: an uploaded build context.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct UploadedContext {
    pub context_id: String,
    pub sha256: String,
    pub size_bytes: u64,
    /// `tar`, `tar.gz` or `zip`.
    pub format: String,
    pub create_time: DateTime<Utc>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12: the log named reasons `PushDenied` while the API says
    /// `PUSH_DENIED`.
    #[test]
    fn issue_12_reasons_display_as_the_api_names_them() {
        assert_eq!(FailureReason::PushDenied.to_string(), "PUSH_DENIED");
        assert_eq!(
            FailureReason::GitHostNotPermitted.to_string(),
            "GIT_HOST_NOT_PERMITTED"
        );
    }
}
