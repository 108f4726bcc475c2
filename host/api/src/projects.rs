//! Projects on the wire: a saved build recipe for one image, built on a git
//! push (its webhook), on request, or by polling.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// `gitSource` of a project: the repository, not a reference (each push or
/// request names the commit).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProjectGitSource {
    /// The repository URL (credentials come from the organization's git
    /// credentials, never from the URL).
    pub url: String,
    /// A sub-directory of the repository to use as the context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_dir: Option<String>,
    /// Fetch submodules too (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub submodules: Option<bool>,
}

/// The CreateProject body. Unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateProjectRequest {
    /// The image name (unique among the organization's projects); images
    /// go to `<registry>/<org>/<name>:<tag>`.
    pub name: String,
    pub git_source: ProjectGitSource,
    /// The Dockerfile's path in the context; default `Dockerfile`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    /// `buildkit`, `kaniko`, `wizard`, or a plugin's builder name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_args: Option<BTreeMap<String, String>>,
    /// Build secrets to mount (`RUN --mount=type=secret,id=NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<String>>,
    /// Build secrets passed as build args of the same name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_build_args: Option<Vec<String>>,
    /// Tag templates: `{branch}`, `{tag}`, `{sha}`, `{sha7}`, `{number}`
    /// and literal text. A template whose placeholder a build lacks (a
    /// `{tag}` on a branch push) is skipped; `latest` is pushed only for
    /// the default branch unless `latestOnEveryBranch`. Default:
    /// `{branch}`, `{tag}`, `{sha7}`, `latest`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    /// Globs of the branches whose pushes build (`main`, `release/*`;
    /// `*` stays within one `/` segment, `**` crosses them). Default: every branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branches: Option<Vec<String>>,
    /// A glob of the tags whose pushes build (`v*`). Default: tags build nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags_pattern: Option<String>,
    /// Globs of repository paths: a push builds only when it touches one.
    /// Default: every push builds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// A newer push to a branch cancels this project's pending or running
    /// build of an older commit of it (reason `SUPERSEDED`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_cancel_superseded: Option<bool>,
    /// Check the repository's refs this often and build new commits (for
    /// repositories that cannot send webhooks); 0 or absent: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval_secs: Option<u64>,
    /// The repository's default branch, when a push does not say (the
    /// generic payload, API and poll builds); default `main`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_branch: Option<String>,
    /// Push `latest` from every branch, not only the default one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_on_every_branch: Option<bool>,
    /// Sign and attest this project's images (signature, provenance,
    /// SBOM): `true` or `false` whatever the organization's setting; unset,
    /// the organization's (`PUT /v1/orgs/{org}/signing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<bool>,
}

/// The UpdateProject body (`PATCH`): the fields given replace the project's;
/// absent ones stay. `name` cannot change (it is the image's name).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateProjectRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_source: Option<ProjectGitSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerfile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub builder: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_args: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secrets: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_build_args: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branches: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_cancel_superseded: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval_secs: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_branch: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_on_every_branch: Option<bool>,
    /// Sign and attest this project's images (signature, provenance,
    /// SBOM): `true` or `false` whatever the organization's setting; unset,
    /// the organization's (`PUT /v1/orgs/{org}/signing`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<bool>,
}

/// A project, as the API serves it (its webhook secret never: that is
/// shown once, when created or rotated).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub project_id: String,
    pub name: String,
    pub git_source: ProjectGitSource,
    pub dockerfile: String,
    pub builder: String,
    pub profile: String,
    pub build_args: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_build_args: Vec<String>,
    pub tags: Vec<String>,
    pub branches: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags_pattern: Option<String>,
    pub paths: Vec<String>,
    pub auto_cancel_superseded: bool,
    pub poll_interval_secs: u64,
    pub default_branch: String,
    pub latest_on_every_branch: bool,
    /// Whether its images are signed and attested whatever the
    /// organization's setting (`true`/`false`); absent: the organization's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signing: Option<bool>,
    /// Where the repository's host sends push events: absolute when the
    /// server knows its public URL (`--public-url`), else a path.
    pub webhook_url: String,
    /// `whsec_…`, only in the answers to CreateProject and
    /// RotateWebhookSecret: paste it as the webhook's secret (GitHub,
    /// Gitea) or token (GitLab); a generic sender signs with it as
    /// Standard Webhooks do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    pub create_time: DateTime<Utc>,
    pub update_time: DateTime<Utc>,
}

/// A page of projects, by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProjectList {
    pub projects: Vec<Project>,
}

/// The `:build` body: what to build now, as a push of it would.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ProjectBuildRequest {
    /// A branch, a tag (`refs/tags/v1`) or a commit id; default: the
    /// project's default branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

/// What started a project's build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum TriggerKind {
    /// `POST /v1/projects/{id}:build`.
    Api,
    /// A push event at the project's webhook.
    Webhook,
    /// The host's polling of the repository's refs.
    Poll,
    /// A build started again from an earlier one.
    Rebuild,
}

/// A project build's trigger, on its record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Trigger {
    pub kind: TriggerKind,
    /// The push delivery's id (the sender's, e.g. `X-GitHub-Delivery`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_id: Option<String>,
    /// Who pushed, as the sender names them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pusher: Option<String>,
    /// The pushed head commit's message (its first line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit_message: Option<String>,
}

/// The answer to a push at a project's webhook: the builds it started
/// (`202`), or why it started none (`200`, `ignored`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct PushAnswer {
    pub build_ids: Vec<String>,
    /// Why the push built nothing (a branch that does not match, a
    /// deletion, untouched paths, an event that is not a push).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}
