//! CreateBuild, GetBuild, ListBuilds, CancelBuild, and the plugin list.

use std::collections::HashMap;

use base64::Engine as _;
use chrono::Utc;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use sha2::{Digest, Sha256};

use super::routes::Caller;
use super::validate;
use super::views;
use super::{idempotency, json_response, parse_json, read_json_bytes, ApiError, ApiState, Body};
use crate::scheduler::staged_file_name;
use crate::store::{BuildRecord, BuildSpec, BuildStatus, ListFilter, SourceSummary};
use kiln_api::builds::{CreateBuildRequest, GitSourceRequest, MAX_INLINE_ZIP_BYTES};

/// Builds per ListBuilds page when the request names no size (or 0).
const DEFAULT_PAGE_SIZE: usize = 50;
/// The largest page ListBuilds gives.
const MAX_PAGE_SIZE: usize = 1000;

/// Largest CreateBuild body: a 4 MiB zip is ~5.6 MB of base64, plus fields.
const MAX_BODY_BYTES: usize = 8 << 20;

/// The query string as a map (last value wins).
pub fn query_params(request: &Request<Incoming>) -> HashMap<String, String> {
    form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

pub async fn create(
    state: &ApiState,
    caller: &Caller,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    // Workers give way from before the body is read (`accept` holds its
    // own for gRPC's and projects' creates).
    let _answering = state.scheduler.answering_create();
    let keyed = idempotency::begin(state, &request, &caller.org, OPERATION).await?;
    let body = read_json_bytes(state, request, MAX_BODY_BYTES, || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the request body is over {} MiB; inline contexts (zippedCode) are limited to {} MiB packed",
                MAX_BODY_BYTES >> 20,
                MAX_INLINE_ZIP_BYTES >> 20
            ),
        )
    })
    .await?;
    // A retried request gets the first answer, even when the server has
    // since become low on disk or the organization's queue full.
    let mut body_sha256 = String::new();
    if let Some(keyed) = &keyed {
        body_sha256 = hex::encode(Sha256::digest(&body));
        if let Some(first) = keyed.replay(&body_sha256)? {
            return Ok(first);
        }
    }
    let request: CreateBuildRequest = parse_json(&body, "CreateBuild")?;
    let accepted = accept(state, &caller.org, request, None, |accepted| match &keyed {
        // Kept before the build can start: a retry that comes while it
        // runs finds it.
        Some(keyed) => keyed.remember(state, &body_sha256, StatusCode::ACCEPTED, accepted),
        None => Ok(()),
    })
    .await?;
    Ok(json_response(StatusCode::ACCEPTED, &accepted))
}

/// Who asked for a build other than by CreateBuild: a project's push,
/// `:build` call or poll. Applied to the record after validation.
pub struct BuildOrigin {
    pub project_id: String,
    pub trigger: kiln_api::Trigger,
    /// The branch the commit was pushed to (the request names the commit).
    pub branch: Option<String>,
    /// The build number, reserved before the tags were rendered.
    pub number: u64,
}

/// Validate, stage, store and queue a build: CreateBuild's work, and a
/// project's (`origin`). `before_flush` keeps what must be as durable as
/// the build (an idempotency key's answer, a push delivery's).
pub async fn accept(
    state: &ApiState,
    org: &str,
    request: CreateBuildRequest,
    origin: Option<BuildOrigin>,
    before_flush: impl FnOnce(&kiln_api::BuildAccepted) -> Result<(), ApiError>,
) -> Result<kiln_api::BuildAccepted, ApiError> {
    let _answering = state.scheduler.answering_create();
    super::check_free_disk(state)?;
    check_queue_quota(state, org)?;
    let (mut record, staged) = validate_create(state, org, request).await?;
    if let Some(origin) = origin {
        record.project_id = Some(origin.project_id);
        record.trigger = Some(origin.trigger);
        record.number = origin.number;
        if let Some(git) = record.source.git.as_mut() {
            git.branch = origin.branch;
        }
    }

    let build_id = record.build_id.clone();
    let staging = crate::scheduler::staging_dir(&state.config.data_dir, &build_id);
    // Whatever was kept for a build that could not be stored goes again.
    let unstage = || {
        let _ = std::fs::remove_dir_all(&staging);
        let _ = state.store.remove_inline_zip(&build_id);
    };
    // An inline zip waits in the store (the worker writes it out when the
    // build starts): accepting a build then creates no file or directory
    // (under a burst, ext4's search for a free inode among just-deleted
    // ones was a quarter of a create's time), and the zip is as durable as
    // the record, by the same flush. An upload is linked now, so GC cannot
    // take its bytes while the build waits.
    match &staged {
        Staged::Inline(zip) => state
            .store
            .put_inline_zip(&build_id, zip)
            .map_err(ApiError::from),
        Staged::Upload(_) => staged
            .stage(&state.config.data_dir, &staging)
            .map_err(ApiError::io),
        Staged::Url(..) | Staged::Git(_) => Ok(()),
    }
    .inspect_err(|_| unstage())?;
    let record = state
        .store
        .create_build(record)
        .inspect_err(|_| unstage())?;
    let accepted = kiln_api::BuildAccepted {
        build_id: record.build_id.clone(),
        number: record.number,
        status: record.status,
    };
    before_flush(&accepted)?;
    if let Err(e) = state.webhooks.emit(&record, "build.queued") {
        tracing::error!(build_id = %record.build_id, "cannot queue build.queued deliveries: {e}");
    }
    // 202 means stored: a crash after this answer loses neither the build
    // nor its key's answer. Concurrent creates share one flush.
    state.store.flush().await?;
    state.metrics.build_created();
    state.scheduler.wake();
    tracing::info!(build_id = %record.build_id, org = %record.org, name = %record.name, number = record.number, "build accepted");
    Ok(accepted)
}

/// 429 while the organization has its most builds waiting.
fn check_queue_quota(state: &ApiState, org: &str) -> Result<(), ApiError> {
    let limit = state.config.max_queued_builds_per_org;
    if limit == 0 || state.store.queued_for_org(org) < limit {
        return Ok(());
    }
    state.metrics.build_refused_by_quota();
    Err(ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        format!(
            "organization {org} has {limit} builds waiting, this server's limit; send this build again once some have started (Retry-After), or cancel ones no longer needed"
        ),
    )
    .with_retry_after(QUOTA_RETRY_AFTER_SECS))
}

/// The `Retry-After` of a 429: about as long as a queued build waits for
/// a slot on a busy node, so clients come back when one may be free.
const QUOTA_RETRY_AFTER_SECS: u64 = 30;

/// CreateBuild's name among operations with idempotency keys.
const OPERATION: &str = "createBuild";

/// Check every field; return the record to store and the decoded zip.
pub(super) async fn validate_create(
    state: &ApiState,
    org: &str,
    request: CreateBuildRequest,
) -> Result<(BuildRecord, Staged), ApiError> {
    let bad = ApiError::bad_request;
    validate::check_name(&request.name).map_err(bad)?;

    use validate::ContextField;
    let staged = match validate::context_field(&request).map_err(bad)? {
        ContextField::ZippedCode => Staged::Inline(decode_inline_zip(
            request.zipped_code.as_deref().unwrap_or_default(),
        )?),
        ContextField::ContextId => {
            let id = request.context_id.as_deref().unwrap_or_default();
            let record = state.store.context(org, id)?.ok_or_else(|| {
                bad(format!(
                    "`contextId` {id:?} does not exist for this organization; upload the context with POST /v1/contexts and use the id it returns"
                ))
            })?;
            Staged::Upload(record)
        }
        ContextField::ContextUrl => {
            let url = request.context_url.clone().unwrap_or_default();
            let scheme = url
                .split_once("://")
                .map(|(scheme, _)| scheme)
                .filter(|s| {
                    s.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                        && s.chars().all(|c| {
                            c.is_ascii_lowercase() || c.is_ascii_digit() || "+.-".contains(c)
                        })
                })
                .ok_or_else(|| {
                    bad(format!(
                        "`contextUrl` {url:?} is not a URL of the form scheme://..."
                    ))
                })?;
            if matches!(scheme, "inline-zip" | "upload") || state.runtime.source(scheme).is_none() {
                return Err(bad(format!(
                    "no context source plugin on this server handles `{scheme}://` URLs; load one with --plugin-dir"
                )));
            }
            Staged::Url(scheme.to_string(), url)
        }
        ContextField::GitSource => Staged::Git(validate_git_source(
            state,
            request.git_source.clone().expect("present"),
        )?),
    };

    let context_dir = match request.context_dir.as_deref() {
        None | Some("") | Some(".") => String::new(),
        Some(_) if matches!(staged, Staged::Git(_)) => {
            return Err(bad(
                "a git build names its directory as `gitSource.contextDir`, not `contextDir`"
                    .into(),
            ))
        }
        Some(dir) => {
            validate::check_context_path("contextDir", dir).map_err(bad)?;
            crate::git::export::normalized_dir(dir)
        }
    };
    let dockerfile = request.dockerfile.unwrap_or_else(|| "Dockerfile".into());
    validate::check_context_path("dockerfile", &dockerfile).map_err(bad)?;
    let tags = request.tags.unwrap_or_else(|| vec!["latest".into()]);
    validate::check_tags(&tags).map_err(bad)?;
    let build_args = request.build_args.unwrap_or_default();
    validate::check_build_args(build_args.iter()).map_err(bad)?;
    // One platform is a plain build; several make one image index.
    let (platform, platforms) = match (request.platform, request.platforms) {
        (Some(_), Some(_)) => {
            return Err(bad(
                "give `platform` (one) or `platforms` (several), not both".into(),
            ))
        }
        (None, Some(platforms)) => {
            validate::check_platforms(&platforms, &tags).map_err(bad)?;
            match <[String; 1]>::try_from(platforms) {
                Ok([one]) => (Some(one), Vec::new()),
                Err(several) => (None, several),
            }
        }
        (platform, None) => {
            if let Some(platform) = &platform {
                validate::check_platform(platform).map_err(bad)?;
            }
            (platform, Vec::new())
        }
    };
    if let Some(target) = &request.target {
        validate::check_target(target).map_err(bad)?;
    }
    let timeout_secs = request.timeout_secs.unwrap_or(0);
    let max = state.config.max_build_timeout.as_secs();
    if timeout_secs > max {
        return Err(bad(format!(
            "`timeoutSecs` {timeout_secs} is over this server's maximum of {max}; 0 means the default ({} s)",
            state.config.default_build_timeout.as_secs()
        )));
    }
    let profile = request
        .profile
        .unwrap_or_else(|| state.config.default_profile.clone());
    kiln_api::validate::check_profile(&profile).map_err(bad)?;
    let secret_build_args = request.secret_build_args.unwrap_or_default();
    let secret_mounts = request.secrets.unwrap_or_default();
    // Most builds name no secret: the organization's stored names (a scan
    // of the store, or a credential plugin's call) are read only when one
    // is named.
    let stored_build = if secret_build_args.is_empty() && secret_mounts.is_empty() {
        Vec::new()
    } else {
        super::secrets::saved_build_secrets(state, org).await?
    };
    for (field, names) in [
        ("secretBuildArgs", &secret_build_args),
        ("secrets", &secret_mounts),
    ] {
        validate::check_secret_names(field, names).map_err(bad)?;
        for name in names {
            if !stored_build.contains(name) {
                return Err(bad(format!(
                    "`{field}`: build secret {name} is not set for this organization; save it with PUT /v1/secrets {{\"buildSecrets\": {{\"{name}\": \"...\"}}}}"
                )));
            }
        }
        if let Some(twice) = names
            .iter()
            .enumerate()
            .find(|(i, n)| names[..*i].contains(n))
        {
            return Err(bad(format!("`{field}` names {} twice", twice.1)));
        }
    }
    for name in &secret_build_args {
        if build_args.contains_key(name) {
            return Err(bad(format!(
                "{name} is both a build arg and a secret build arg; give it once"
            )));
        }
    }
    let builder = request.builder.unwrap_or_else(|| "buildkit".into());
    let Some(builder_plugin) = state.runtime.builder(&builder) else {
        return Err(bad(format!(
            "`builder` {builder:?} is not available here; this server has: {}",
            state.runtime.builder_names().join(", ")
        )));
    };
    // Secret values reach a build only through the host's BuildKit path;
    // a builder not granted secrets would silently build without them.
    let takes_secrets = builder_plugin.granted.secrets.contains("build")
        && builder_plugin.granted.engine.contains("buildkit-build");
    let wants_secrets = !secret_mounts.is_empty() || !secret_build_args.is_empty();
    if wants_secrets && !takes_secrets {
        return Err(bad(format!(
            "the `{builder}` builder cannot use build secrets (`secrets`, `secretBuildArgs`); build with `buildkit` for them"
        )));
    }
    // A build no engine of the pool could ever take is refused now, not
    // left waiting.
    if platforms.is_empty() {
        state
            .engines
            .check_buildable(platform.as_deref(), Some(&profile), &builder)
            .map_err(bad)?;
    }
    for platform in &platforms {
        state
            .engines
            .check_buildable(Some(platform), Some(&profile), &builder)
            .map_err(bad)?;
    }

    // The organization's own registry when it has one, fixed for this
    // build now (a later change of target moves only later builds).
    let registry = state.store.org(org)?.and_then(|o| o.registry);
    let image_refs = {
        let target = crate::store::registry_target(registry.as_ref(), &state.config.registry, org);
        tags.iter()
            .map(|tag| {
                format!(
                    "{}/{}/{}:{}",
                    target.host, target.namespace, request.name, tag
                )
            })
            .collect()
    };
    let record = BuildRecord {
        // Time-ordered (UUIDv7): every tree keyed by build id then grows at
        // its end, as the builds do. Random ids (v4) scattered each new
        // build across the whole tree, so the store's writes and reads got
        // slower with every build it held.
        build_id: uuid::Uuid::now_v7().to_string(),
        org: org.to_string(),
        number: 0,
        name: request.name,
        status: BuildStatus::Pending,
        source: staged.summary(),
        request: BuildSpec {
            dockerfile,
            tags,
            build_args,
            target: request.target,
            platform,
            platforms,
            no_cache: request.no_cache.unwrap_or(false),
            timeout_secs,
            builder,
            profile,
            secret_build_args,
            secrets: secret_mounts,
            context_dir,
        },
        image_refs,
        digest: None,
        platform_images: Vec::new(),
        metrics: None,
        failure: None,
        wizard: None,
        create_time: Utc::now(),
        start_time: None,
        finish_time: None,
        seq: 0,
        log_removed_time: None,
        project_id: None,
        trigger: None,
        registry,
        profile_used: None,
        attempts: Vec::new(),
        engine: None,
        cache_from: Vec::new(),
        peak_memory_bytes: None,
        attachments: Vec::new(),
    };
    Ok((record, staged))
}

/// Check `gitSource` and turn it into what the record keeps.
pub fn validate_git_source(
    state: &ApiState,
    git: GitSourceRequest,
) -> Result<crate::store::GitSource, ApiError> {
    let bad = ApiError::bad_request;
    if state.runtime.source("git").is_none() {
        return Err(bad(
            "no context source plugin on this server handles `gitSource`; the first-party `git` plugin is missing".into(),
        ));
    }
    let url =
        crate::git::RepoUrl::parse(&git.url).map_err(|e| bad(format!("`gitSource.url`: {e}")))?;
    let reference = git
        .reference
        .unwrap_or_else(|| kiln_api::validate::DEFAULT_GIT_REFERENCE.to_string());
    validate::check_git_reference(&reference).map_err(bad)?;
    let context_dir = match git.context_dir.as_deref() {
        None | Some("") | Some(".") => String::new(),
        Some(dir) => {
            validate::check_context_path("gitSource.contextDir", dir).map_err(|_| {
                bad(format!(
                    "`gitSource.contextDir` {dir:?} must be a relative directory inside the repository, without `..` (e.g. \"services/api\")"
                ))
            })?;
            crate::git::export::normalized_dir(dir)
        }
    };
    let looks_like_commit =
        reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit());
    let branch = if looks_like_commit || reference.starts_with("refs/tags/") {
        None
    } else {
        Some(reference.trim_start_matches("refs/heads/").to_string())
    };
    Ok(crate::store::GitSource {
        url: url.redacted(),
        reference,
        context_dir,
        submodules: git.submodules.unwrap_or(false),
        branch,
        ..Default::default()
    })
}

/// The context a build request brought, before it is staged for the worker.
pub enum Staged {
    /// A repository the `git` source plugin checks out through the host.
    Git(crate::store::GitSource),
    Inline(Vec<u8>),
    Upload(crate::store::ContextRecord),
    /// A URL for the plugin handling its scheme (kind, url).
    Url(String, String),
}

impl Staged {
    pub(super) fn summary(&self) -> SourceSummary {
        match self {
            Staged::Inline(zip) => SourceSummary {
                kind: "inline-zip".into(),
                size_bytes: Some(zip.len() as u64),
                format: Some("zip".into()),
                context_id: None,
                url: None,
                git: None,
            },
            Staged::Upload(record) => SourceSummary {
                kind: "upload".into(),
                size_bytes: Some(record.size_bytes),
                format: Some(record.format.clone()),
                context_id: Some(record.context_id.clone()),
                url: None,
                git: None,
            },
            Staged::Url(kind, url) => SourceSummary {
                kind: kind.clone(),
                size_bytes: None,
                format: None,
                context_id: None,
                url: Some(url.clone()),
                git: None,
            },
            Staged::Git(git) => SourceSummary {
                kind: "git".into(),
                size_bytes: None,
                format: None,
                context_id: None,
                url: None,
                git: Some(git.clone()),
            },
        }
    }

    /// Write the input where a context source plugin finds it (`dir`,
    /// preopened as `/input`).
    pub(super) fn stage(
        &self,
        data_dir: &std::path::Path,
        dir: &std::path::Path,
    ) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        match self {
            Staged::Inline(zip) => std::fs::write(dir.join(staged_file_name("zip")), zip),
            Staged::Upload(record) => {
                let blob = super::contexts::blob_path(data_dir, &record.sha256);
                let target = dir.join(staged_file_name(&record.format));
                // A hard link costs nothing; blobs are never modified in place.
                std::fs::hard_link(&blob, &target)
                    .or_else(|_| std::fs::copy(&blob, &target).map(|_| ()))
            }
            // The plugin fetches it; nothing to stage.
            Staged::Url(..) | Staged::Git(_) => Ok(()),
        }
    }
}

pub(super) fn decode_inline_zip(encoded: &str) -> Result<Vec<u8>, ApiError> {
    let bad = ApiError::bad_request;
    // Reject by size before decoding: base64 is 4/3 of the bytes.
    if encoded.len() / 4 * 3 > MAX_INLINE_ZIP_BYTES + 3 {
        return Err(bad(format!(
            "`zippedCode` is about {:.1} MiB packed; inline contexts are limited to {} MiB: upload bigger contexts with POST /v1/contexts and build them by `contextId`",
            (encoded.len() / 4 * 3) as f64 / (1 << 20) as f64,
            MAX_INLINE_ZIP_BYTES >> 20
        )));
    }
    let zip = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|e| bad(format!("`zippedCode` is not valid base64 ({e}); encode the zip file's bytes with standard base64")))?;
    if zip.len() > MAX_INLINE_ZIP_BYTES {
        return Err(bad(format!(
            "`zippedCode` is {} bytes packed; inline contexts are limited to {} MiB: upload bigger contexts with POST /v1/contexts",
            zip.len(),
            MAX_INLINE_ZIP_BYTES >> 20
        )));
    }
    if !(zip.starts_with(b"PK\x03\x04") || zip.starts_with(b"PK\x05\x06")) {
        return Err(bad(
            "`zippedCode` is not a zip archive (it does not start with a zip signature); send the base64 of a .zip file".into(),
        ));
    }
    Ok(zip)
}

/// GetBuild: `org`'s build (another organization's is not found).
pub fn get(state: &ApiState, org: &str, build_id: &str) -> Result<kiln_api::Build, ApiError> {
    let record = state
        .store
        .build_for_org(org, build_id)?
        .ok_or_else(|| ApiError::not_found(&format!("build {build_id}")))?;
    Ok(kiln_api::Build::from(&record))
}

/// What ListBuilds was asked for, from a query string or a gRPC request.
#[derive(Debug, Default)]
pub struct ListQuery {
    /// 0: the default page size.
    pub page_size: u64,
    /// The previous page's `nextPageToken`; empty: the first page.
    pub page_token: String,
    pub status: Option<BuildStatus>,
    pub name: Option<String>,
    pub branch: Option<String>,
    pub project_id: Option<String>,
}

/// ListBuilds: a page of `org`'s builds, newest first.
pub fn list_page(
    state: &ApiState,
    org: &str,
    query: ListQuery,
) -> Result<kiln_api::BuildList, ApiError> {
    // 0 (or absent) means the default, as is usual for page sizes.
    let page_size = match query.page_size {
        0 => DEFAULT_PAGE_SIZE,
        n if n <= MAX_PAGE_SIZE as u64 => n as usize,
        _ => return Err(page_size_error()),
    };
    let before = match query.page_token.as_str() {
        "" => None,
        token => Some(token.parse::<u64>().map_err(|_| {
            ApiError::bad_request("`pageToken` is not one this server gave out; use the `nextPageToken` of the previous page")
        })?),
    };
    let filter = ListFilter {
        status: query.status,
        name: query.name,
        branch: query.branch.filter(|b| !b.is_empty()),
        project_id: query.project_id.filter(|p| !p.is_empty()),
        before_seq: before,
    };
    let builds = state.store.list_builds(org, &filter, page_size)?;
    let next = if builds.len() == page_size {
        builds.last().map(|r| r.seq.to_string())
    } else {
        None
    };
    Ok(kiln_api::BuildList {
        builds: builds.iter().map(Into::into).collect(),
        next_page_token: next.unwrap_or_default(),
    })
}

fn page_size_error() -> ApiError {
    ApiError::bad_request(format!(
        "`pageSize` must be a number from 1 to {MAX_PAGE_SIZE} (0 or absent: {DEFAULT_PAGE_SIZE})"
    ))
}

/// ListBuilds over REST: the query string is the [`ListQuery`].
pub fn list(
    state: &ApiState,
    caller: &Caller,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let mut params = query_params(request);
    let page_size = match params.get("pageSize") {
        None => 0,
        Some(v) => v.parse::<u64>().map_err(|_| page_size_error())?,
    };
    let status: Option<BuildStatus> = match params.get("status") {
        None => None,
        Some(s) => Some(serde_json::from_value(serde_json::Value::from(s.as_str())).map_err(|_| {
            ApiError::bad_request(format!(
                "`status` {s:?} is not a build status: use BUILD_STATUS_PENDING, _RUNNING, _SUCCEEDED, _FAILED or _CANCELLED"
            ))
        })?),
    };
    let query = ListQuery {
        page_size,
        page_token: params.remove("pageToken").unwrap_or_default(),
        status,
        name: params.remove("name"),
        branch: params.remove("branch"),
        project_id: params.remove("projectId"),
    };
    Ok(json_response(
        StatusCode::OK,
        &list_page(state, &caller.org, query)?,
    ))
}

/// CancelBuild: `org`'s pending or running build; a finished one is 409.
pub async fn cancel(
    state: &ApiState,
    org: &str,
    build_id: &str,
) -> Result<kiln_api::Build, ApiError> {
    let record = state
        .store
        .build_for_org(org, build_id)?
        .ok_or_else(|| ApiError::not_found(&format!("build {build_id}")))?;
    if record.status.is_finished() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "build {build_id} has already finished ({}); only pending or running builds can be cancelled",
                record.status
            ),
        ));
    }
    let updated = stop(state, build_id, None).await?;
    Ok(kiln_api::Build::from(&updated))
}

/// Cancel a build: a pending one in place (a worker that pops it later
/// sees it is no longer pending and skips it), a running one by stopping
/// its work. `why`, when given, is recorded as the cancelled build's
/// failure (a newer push superseded it). Answers the record as it is now.
pub async fn stop(
    state: &ApiState,
    build_id: &str,
    why: Option<crate::store::Failure>,
) -> Result<BuildRecord, ApiError> {
    let mut cancelled_here = false;
    let updated = state.store.update_build(build_id, |r| {
        cancelled_here = r.status == BuildStatus::Pending;
        if cancelled_here {
            r.status = BuildStatus::Cancelled;
            r.finish_time = Some(Utc::now());
            r.failure = why.clone();
        }
    })?;
    if cancelled_here {
        state
            .metrics
            .build_finished(BuildStatus::Cancelled, std::time::Duration::ZERO);
        state.hub.finish(build_id);
        state
            .webhooks
            .emit_durably(&updated, "build.cancelled")
            .await;
    } else if updated.status == BuildStatus::Running {
        state.scheduler.cancel_running(build_id, why);
    }
    Ok(updated)
}

pub fn plugins(state: &ApiState) -> Result<Response<Body>, ApiError> {
    Ok(json_response(
        StatusCode::OK,
        &kiln_api::PluginList {
            plugins: state.runtime.plugins().map(views::plugin).collect(),
            load_errors: state
                .runtime
                .load_errors()
                .iter()
                .map(views::load_error)
                .collect(),
        },
    ))
}
