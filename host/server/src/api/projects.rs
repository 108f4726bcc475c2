//! Projects (CreateProject, GetProject, ListProjects, UpdateProject,
//! DeleteProject, RotateWebhookSecret, `:build`) and the push webhook
//! each one has (`POST /v1/hooks/{projectId}`, authenticated by its
//! signature, not a token).

use chrono::Utc;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::builds::{accept, validate_create, BuildOrigin};
use super::routes::Caller;
use super::{json_response, no_content, read_json, ApiError, ApiState, Body};
use crate::metrics::PushOutcome;
use crate::projects::push::{self, Payload};
use crate::projects::{self as recipes, Decision, Glob, Target};
use crate::store::{DeliveryRecord, ProjectRecord};
use kiln_api::{
    CreateBuildRequest, CreateProjectRequest, GitSourceRequest, ProjectBuildRequest, ProjectList,
    PushAnswer, Trigger, TriggerKind, UpdateProjectRequest,
};

/// Largest project body.
const MAX_BODY_BYTES: usize = 256 << 10;
/// Largest push delivery: GitHub caps its payloads at 25 MB, but a push
/// that lists that much is cut to its first commits long before.
const MAX_PUSH_BYTES: usize = 8 << 20;
/// The longest polling interval.
const MAX_POLL_SECS: u64 = 7 * 24 * 3600;

/// The tags a project pushes when it names none.
const DEFAULT_TAGS: [&str; 4] = ["{branch}", "{tag}", "{sha7}", "latest"];

/// A commit id that stands for the one a push will name, when a project is
/// checked by CreateBuild's rules.
const SAMPLE_COMMIT: &str = "0000000000000000000000000000000000000001";

fn too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("a project body is at most {} KiB", MAX_BODY_BYTES >> 10),
    )
}

/// Where a project's pushes go: absolute with `--public-url`.
fn webhook_url(state: &ApiState, project_id: &str) -> String {
    let path = format!("/v1/hooks/{project_id}");
    match &state.config.public_url {
        Some(base) => format!("{base}{path}"),
        None => path,
    }
}

/// What a project's webhook secret is sealed against: its own id, so a
/// sealed secret copied into another project does not open.
fn secret_context(project_id: &str) -> Vec<u8> {
    [b"webhook\0".as_slice(), project_id.as_bytes()].concat()
}

fn seal_secret(state: &ApiState, project_id: &str, secret: &str) -> Result<String, ApiError> {
    state
        .secrets
        .local()
        .seal_text(&secret_context(project_id), secret)
        .map_err(ApiError::internal)
}

fn open_secret(state: &ApiState, project: &ProjectRecord) -> Result<String, ApiError> {
    state
        .secrets
        .local()
        .open_text(
            &secret_context(&project.project_id),
            &project.sealed_webhook_secret,
        )
        .map_err(ApiError::internal)
}

/// Check the project's own rules (globs, templates, polling, branch), then
/// CreateBuild's rules on the build a push of it would make: the same
/// validation, with the same messages, and nothing stored.
async fn check(state: &ApiState, org: &str, project: &ProjectRecord) -> Result<(), ApiError> {
    let bad = ApiError::bad_request;
    recipes::check_tag_templates(&project.tags).map_err(bad)?;
    for branch in &project.branches {
        Glob::parse("branches", branch).map_err(bad)?;
    }
    if let Some(pattern) = &project.tags_pattern {
        Glob::parse("tagsPattern", pattern).map_err(bad)?;
    }
    for path in &project.paths {
        Glob::parse("paths", path).map_err(bad)?;
    }
    let min_poll = state.config.min_poll_interval_secs;
    if project.poll_interval_secs != 0
        && !(min_poll..=MAX_POLL_SECS).contains(&project.poll_interval_secs)
    {
        return Err(bad(format!(
            "`pollIntervalSecs` {} must be 0 (no polling) or from {min_poll} to {MAX_POLL_SECS}",
            project.poll_interval_secs
        )));
    }
    kiln_api::validate::check_git_reference(&project.default_branch)
        .map_err(|e| bad(format!("`defaultBranch`: {e}")))?;
    let target = Target {
        commit: SAMPLE_COMMIT.into(),
        branch: Some(project.default_branch.clone()),
        tag: None,
    };
    let mut sample = build_request(project, &target, 1);
    if sample.tags.as_ref().is_none_or(Vec::is_empty) {
        sample.tags = Some(vec!["sample".into()]);
    }
    validate_create(state, org, sample).await.map(|_| ())
}

/// The CreateBuild request a build of `project` at `target` is.
fn build_request(project: &ProjectRecord, target: &Target, number: u64) -> CreateBuildRequest {
    CreateBuildRequest {
        name: project.name.clone(),
        git_source: Some(GitSourceRequest {
            url: project.git_source.url.clone(),
            reference: Some(target.commit.clone()),
            context_dir: project.git_source.context_dir.clone(),
            submodules: project.git_source.submodules,
        }),
        dockerfile: Some(project.dockerfile.clone()),
        builder: Some(project.builder.clone()),
        tags: Some(recipes::render_tags(project, target, number)),
        build_args: Some(project.build_args.clone()),
        profile: Some(project.profile.clone()),
        secrets: Some(project.secrets.clone()),
        secret_build_args: Some(project.secret_build_args.clone()),
        ..Default::default()
    }
}

pub async fn create(
    state: &ApiState,
    caller: &Caller,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let body: CreateProjectRequest =
        read_json(state, request, MAX_BODY_BYTES, "CreateProject", too_large).await?;
    let now = Utc::now();
    let project_id = uuid::Uuid::new_v4().to_string();
    let secret = push::new_secret();
    let git_url = crate::git::RepoUrl::parse(&body.git_source.url)
        .map_err(|e| ApiError::bad_request(format!("`gitSource.url`: {e}")))?
        .redacted();
    let record = ProjectRecord {
        project_id: project_id.clone(),
        org: caller.org.clone(),
        name: body.name,
        git_source: kiln_api::ProjectGitSource {
            url: git_url,
            ..body.git_source
        },
        dockerfile: body.dockerfile.unwrap_or_else(|| "Dockerfile".into()),
        builder: body.builder.unwrap_or_else(|| "buildkit".into()),
        profile: body
            .profile
            .unwrap_or_else(|| state.config.default_profile.clone()),
        build_args: body.build_args.unwrap_or_default(),
        secrets: body.secrets.unwrap_or_default(),
        secret_build_args: body.secret_build_args.unwrap_or_default(),
        tags: body
            .tags
            .unwrap_or_else(|| DEFAULT_TAGS.map(String::from).to_vec()),
        branches: body.branches.unwrap_or_default(),
        tags_pattern: body.tags_pattern,
        paths: body.paths.unwrap_or_default(),
        auto_cancel_superseded: body.auto_cancel_superseded.unwrap_or(false),
        poll_interval_secs: body.poll_interval_secs.unwrap_or(0),
        default_branch: body.default_branch.unwrap_or_else(|| "main".into()),
        latest_on_every_branch: body.latest_on_every_branch.unwrap_or(false),
        signing: body.signing,
        sealed_webhook_secret: seal_secret(state, &project_id, &secret)?,
        create_time: now,
        update_time: now,
    };
    check(state, &caller.org, &record).await?;
    if !state.store.create_project(&record)? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "organization {} already has a project named {:?}; change that one (PATCH /v1/projects/{{id}}) or pick another name",
                caller.org, record.name
            ),
        ));
    }
    state.store.flush().await?;
    tracing::info!(project_id = %record.project_id, org = %record.org, name = %record.name, "project created");
    Ok(json_response(
        StatusCode::CREATED,
        &kiln_api::Project {
            webhook_secret: Some(secret),
            ..super::views::project(&record, webhook_url(state, &project_id))
        },
    ))
}

fn find(state: &ApiState, caller: &Caller, project_id: &str) -> Result<ProjectRecord, ApiError> {
    state
        .store
        .project_for_org(&caller.org, project_id)?
        .ok_or_else(|| ApiError::not_found(&format!("project {project_id}")))
}

pub fn get(
    state: &ApiState,
    caller: &Caller,
    project_id: &str,
) -> Result<Response<Body>, ApiError> {
    let record = find(state, caller, project_id)?;
    Ok(json_response(
        StatusCode::OK,
        &super::views::project(&record, webhook_url(state, project_id)),
    ))
}

pub fn list(state: &ApiState, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let projects = state
        .store
        .projects(&caller.org)?
        .iter()
        .map(|p| super::views::project(p, webhook_url(state, &p.project_id)))
        .collect();
    Ok(json_response(StatusCode::OK, &ProjectList { projects }))
}

pub async fn update(
    state: &ApiState,
    caller: &Caller,
    project_id: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let mut record = find(state, caller, project_id)?;
    let change: UpdateProjectRequest =
        read_json(state, request, MAX_BODY_BYTES, "UpdateProject", too_large).await?;
    if let Some(git) = change.git_source {
        let url = crate::git::RepoUrl::parse(&git.url)
            .map_err(|e| ApiError::bad_request(format!("`gitSource.url`: {e}")))?
            .redacted();
        record.git_source = kiln_api::ProjectGitSource { url, ..git };
    }
    macro_rules! replace {
        ($($field:ident),*) => {
            $(if let Some(value) = change.$field { record.$field = value; })*
        };
    }
    replace!(
        dockerfile,
        builder,
        profile,
        build_args,
        secrets,
        secret_build_args,
        tags,
        branches,
        paths,
        auto_cancel_superseded,
        poll_interval_secs,
        default_branch,
        latest_on_every_branch
    );
    if let Some(signing) = change.signing {
        record.signing = Some(signing);
    }
    if let Some(pattern) = change.tags_pattern {
        // An empty pattern turns tag builds off again.
        record.tags_pattern = Some(pattern).filter(|p| !p.is_empty());
    }
    check(state, &caller.org, &record).await?;
    record.update_time = Utc::now();
    let stored = state
        .store
        .update_project(project_id, |p| {
            let sealed = std::mem::take(&mut p.sealed_webhook_secret);
            *p = ProjectRecord {
                sealed_webhook_secret: sealed,
                ..record.clone()
            };
        })?
        .ok_or_else(|| ApiError::not_found(&format!("project {project_id}")))?;
    state.store.flush().await?;
    Ok(json_response(
        StatusCode::OK,
        &super::views::project(&stored, webhook_url(state, project_id)),
    ))
}

pub async fn delete(
    state: &ApiState,
    caller: &Caller,
    project_id: &str,
) -> Result<Response<Body>, ApiError> {
    let record = find(state, caller, project_id)?;
    state.store.delete_project(&record)?;
    state.store.flush().await?;
    Ok(no_content())
}

/// A new webhook secret; the old one stops working at once.
pub async fn rotate_secret(
    state: &ApiState,
    caller: &Caller,
    project_id: &str,
) -> Result<Response<Body>, ApiError> {
    find(state, caller, project_id)?;
    let secret = push::new_secret();
    let sealed = seal_secret(state, project_id, &secret)?;
    let stored = state
        .store
        .update_project(project_id, |p| {
            p.sealed_webhook_secret = sealed.clone();
            p.update_time = Utc::now();
        })?
        .ok_or_else(|| ApiError::not_found(&format!("project {project_id}")))?;
    state.store.flush().await?;
    Ok(json_response(
        StatusCode::OK,
        &kiln_api::Project {
            webhook_secret: Some(secret),
            ..super::views::project(&stored, webhook_url(state, project_id))
        },
    ))
}

/// Start a build of `project` at `target`: its number reserved first, so
/// `{number}` tags can use it.
async fn start(
    state: &ApiState,
    project: &ProjectRecord,
    target: Target,
    trigger: Trigger,
    before_flush: impl FnOnce(&kiln_api::BuildAccepted) -> Result<(), ApiError>,
) -> Result<kiln_api::BuildAccepted, ApiError> {
    let number = state.store.reserve_number(&project.org, &project.name)?;
    let request = build_request(project, &target, number);
    if request.tags.as_ref().is_none_or(Vec::is_empty) {
        return Err(ApiError::bad_request(format!(
            "none of project {}'s tags ({}) applies to {}; add one that does (e.g. \"{{sha7}}\")",
            project.name,
            project.tags.join(", "),
            match (&target.branch, &target.tag) {
                (Some(branch), _) => format!("branch {branch}"),
                (_, Some(tag)) => format!("tag {tag}"),
                _ => format!("commit {}", target.commit),
            }
        )));
    }
    let branch = target.branch.clone();
    let origin = BuildOrigin {
        project_id: project.project_id.clone(),
        trigger,
        branch: target.branch,
        number,
    };
    let accepted = accept(state, &project.org, request, Some(origin), before_flush).await?;
    if let (true, Some(branch)) = (project.auto_cancel_superseded, branch) {
        // The new build is stored: failing to stop older ones must not make
        // the push look unhandled (a retry would build it twice).
        if let Err(e) = supersede(state, project, &accepted, &branch).await {
            tracing::warn!(build_id = %accepted.build_id, "cannot cancel superseded builds: {}", e.message);
        }
    }
    Ok(accepted)
}

/// Cancel the project's older pending or running builds of `branch`: the
/// build just accepted (`newer`) makes them stale. Each says which build
/// superseded it (reason `SUPERSEDED`).
async fn supersede(
    state: &ApiState,
    project: &ProjectRecord,
    newer: &kiln_api::BuildAccepted,
    branch: &str,
) -> Result<(), ApiError> {
    let Some(newer_record) = state.store.build(&newer.build_id)? else {
        return Ok(());
    };
    let commit = newer_record
        .source
        .git
        .as_ref()
        .and_then(|g| g.reference.get(..7))
        .unwrap_or("")
        .to_string();
    let filter = crate::store::ListFilter {
        project_id: Some(project.project_id.clone()),
        before_seq: Some(newer_record.seq),
        ..Default::default()
    };
    // Older builds of a project still going are few; a page is plenty.
    for older in state.store.list_builds(&project.org, &filter, 200)? {
        let same_branch =
            older.source.git.as_ref().and_then(|g| g.branch.as_deref()) == Some(branch);
        if !same_branch || older.status.is_finished() {
            continue;
        }
        let why = crate::scheduler::failure(
            kiln_api::FailureReason::Superseded,
            format!(
                "superseded by build #{} ({}) of branch {branch}, commit {commit}",
                newer.number, newer.build_id
            ),
            None,
        );
        super::builds::stop(state, &older.build_id, Some(why)).await?;
        tracing::info!(build_id = %older.build_id, by = %newer.build_id, "build superseded");
    }
    Ok(())
}

/// `POST /v1/projects/{id}:build {reference}`: a build now, as a push of
/// that reference would start (its commit resolved from the remote's refs).
pub async fn build(
    state: &ApiState,
    caller: &Caller,
    project_id: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let project = find(state, caller, project_id)?;
    let asked: ProjectBuildRequest =
        read_json(state, request, MAX_BODY_BYTES, "ProjectBuild", too_large).await?;
    let reference = asked
        .reference
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| project.default_branch.clone());
    kiln_api::validate::check_git_reference(&reference)
        .map_err(|e| ApiError::bad_request(format!("`reference`: {e}")))?;
    let target = resolve(state, &project, &reference).await?;
    let accepted = start(
        state,
        &project,
        target,
        Trigger {
            kind: TriggerKind::Api,
            delivery_id: None,
            pusher: None,
            commit_message: None,
        },
        |_| Ok(()),
    )
    .await?;
    Ok(json_response(StatusCode::ACCEPTED, &accepted))
}

/// Run `look` on the project's repository (its organization's mirror, with
/// the organization's git credentials) off the async runtime: git's
/// network and disk work blocks.
async fn look_at_repository<T: Send + 'static>(
    state: &ApiState,
    project: &ProjectRecord,
    look: impl FnOnce(
            &crate::git::GitFetcher,
            &str,
            &str,
            &crate::git::CredentialLookup,
        ) -> Result<T, crate::git::GitError>
        + Send
        + 'static,
) -> Result<Result<T, crate::git::GitError>, ApiError> {
    let known = state
        .secrets
        .git_credentials(&project.org)
        .await
        .map_err(ApiError::internal)?;
    let credentials = crate::git::credential_lookup(known, |_| {});
    let fetcher = crate::git::GitFetcher::new(&state.config.data_dir, state.config.network.clone());
    let (org, url) = (project.org.clone(), project.git_source.url.clone());
    tokio::task::spawn_blocking(move || look(&fetcher, &org, &url, &credentials))
        .await
        .map_err(ApiError::internal)
}

/// What `reference` names now: a full commit id as it is, a branch or a
/// tag from the remote's ref advertisement (no pack fetched).
async fn resolve(
    state: &ApiState,
    project: &ProjectRecord,
    reference: &str,
) -> Result<Target, ApiError> {
    if reference.len() == 40 && reference.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(Target {
            commit: reference.to_ascii_lowercase(),
            branch: None,
            tag: None,
        });
    }
    let reference = reference.to_string();
    let resolved = look_at_repository(state, project, move |fetcher, org, url, credentials| {
        fetcher.resolve_remote(org, url, &reference, credentials)
    })
    .await?;
    let (full_ref, kind, commit) =
        resolved.map_err(|e| ApiError::bad_request(format!("`reference`: {e}")))?;
    let name = full_ref
        .trim_start_matches("refs/heads/")
        .trim_start_matches("refs/tags/")
        .to_string();
    Ok(match kind {
        kiln_api::RefKind::Tag => Target {
            commit,
            branch: None,
            tag: Some(name),
        },
        _ => Target {
            commit,
            branch: Some(name),
            tag: None,
        },
    })
}

/// What a push changed, from its commits in the mirror, when its payload
/// does not list it all: between the two commits, or — for a new branch —
/// since it forked from the default branch (else every new branch of a
/// monorepo would build every project). `None` (the push builds) when
/// there is nothing to compare with or the comparison fails.
async fn compare_in_mirror(
    state: &ApiState,
    project: &ProjectRecord,
    event: &push::PushEvent,
) -> Option<Vec<String>> {
    let after = event.after.clone();
    let compared = match event.before.clone() {
        Some(before) => {
            look_at_repository(state, project, move |fetcher, org, url, credentials| {
                fetcher
                    .changed_paths(org, url, &before, &after, credentials)
                    .map(Some)
            })
            .await
        }
        None => {
            let branch = event.reference.strip_prefix("refs/heads/")?;
            let base = event
                .default_branch
                .clone()
                .unwrap_or_else(|| project.default_branch.clone());
            if base.is_empty() || branch == base {
                return None;
            }
            look_at_repository(state, project, move |fetcher, org, url, credentials| {
                fetcher.changed_since_fork(org, url, &base, &after, credentials)
            })
            .await
        }
    }
    .ok()?;
    match compared {
        Ok(paths) => paths,
        Err(e) => {
            tracing::warn!(project_id = %project.project_id, "cannot compare the push's commits in the mirror ({e}); building it");
            None
        }
    }
}

/// `POST /v1/hooks/{projectId}`: a push delivery. Its signature is checked
/// (in constant time) before its body is parsed; a delivery id seen before
/// gets the first answer and builds nothing.
pub async fn push(
    state: &ApiState,
    project_id: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let project = state
        .store
        .project(project_id)?
        .ok_or_else(|| ApiError::not_found(&format!("webhook of project {project_id}")))?;
    let (parts, body) = request.into_parts();
    let body = super::read_body(state, body, MAX_PUSH_BYTES, || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("a push delivery is at most {} MiB", MAX_PUSH_BYTES >> 20),
        )
    })
    .await?;
    let secret = open_secret(state, &project)?;
    let delivery = push::authenticate(&parts.headers, &body, &secret, Utc::now().timestamp())
        .map_err(|refused| {
            state.metrics.push(PushOutcome::Refused);
            ApiError::new(StatusCode::UNAUTHORIZED, refused.0)
        })?;
    // A sender that gives no id: the body's digest stands for it (the
    // same push delivered twice is the same bytes).
    let delivery_id = if delivery.id.is_empty() {
        use sha2::Digest;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(&body)))
    } else {
        delivery.id.clone()
    };
    if let Some(seen) = state.store.claim_delivery(project_id, &delivery_id)? {
        let (status, answer) = match seen.status {
            0 => (
                StatusCode::OK,
                PushAnswer {
                    build_ids: Vec::new(),
                    ignored: Some(format!(
                        "delivery {delivery_id} is being handled by another request"
                    )),
                },
            ),
            code => (
                StatusCode::from_u16(code).unwrap_or(StatusCode::OK),
                seen.answer,
            ),
        };
        let mut response = json_response(status, &answer);
        response.headers_mut().insert(
            "idempotent-replayed",
            hyper::header::HeaderValue::from_static("true"),
        );
        return Ok(response);
    }
    let handled = handle_push(state, &project, &delivery, &delivery_id, &body).await;
    match handled {
        Ok((status, answer)) => {
            state.metrics.push(if status == StatusCode::ACCEPTED {
                PushOutcome::Built
            } else {
                PushOutcome::Ignored
            });
            if status == StatusCode::OK {
                // A 202's delivery was kept with its build, by the same flush.
                state.store.answer_delivery(
                    project_id,
                    &delivery_id,
                    &DeliveryRecord {
                        status: status.as_u16(),
                        answer: answer.clone(),
                        receive_time: Utc::now(),
                    },
                )?;
                state.store.flush().await?;
            }
            Ok(json_response(status, &answer))
        }
        Err(error) => {
            // Refused or failed: the sender's retry is handled afresh.
            state.store.release_delivery(project_id, &delivery_id)?;
            Err(error)
        }
    }
}

async fn handle_push(
    state: &ApiState,
    project: &ProjectRecord,
    delivery: &push::Delivery,
    delivery_id: &str,
    body: &[u8],
) -> Result<(StatusCode, PushAnswer), ApiError> {
    let ignored = |why: String| {
        tracing::info!(project_id = %project.project_id, delivery_id, why, "push ignored");
        Ok((
            StatusCode::OK,
            PushAnswer {
                build_ids: Vec::new(),
                ignored: Some(why),
            },
        ))
    };
    let event = match push::parse(delivery, body).map_err(ApiError::bad_request)? {
        Payload::Other(what) => return ignored(what),
        Payload::Push(event) => event,
    };
    let mut event = event;
    if event.changed_paths.is_none() && !project.paths.is_empty() {
        event.changed_paths = compare_in_mirror(state, project, &event).await;
    }
    let mut project = project.clone();
    if let Some(default_branch) = &event.default_branch {
        project.default_branch = default_branch.clone();
    }
    let target = match recipes::decide(&project, &event) {
        Decision::Ignore(why) => return ignored(why),
        Decision::Build(target) => target,
    };
    let trigger = Trigger {
        kind: TriggerKind::Webhook,
        delivery_id: Some(delivery_id.to_string()),
        pusher: event.pusher.clone(),
        commit_message: event.commit_message.clone(),
    };
    let project_id = project.project_id.clone();
    let accepted = start(state, &project, target, trigger, |accepted| {
        state
            .store
            .answer_delivery(
                &project_id,
                delivery_id,
                &DeliveryRecord {
                    status: StatusCode::ACCEPTED.as_u16(),
                    answer: PushAnswer {
                        build_ids: vec![accepted.build_id.clone()],
                        ignored: None,
                    },
                    receive_time: Utc::now(),
                },
            )
            .map_err(ApiError::from)
    })
    .await?;
    tracing::info!(project_id = %project.project_id, delivery_id, sender = delivery.sender.as_str(), build_id = %accepted.build_id, "push accepted");
    Ok((
        StatusCode::ACCEPTED,
        PushAnswer {
            build_ids: vec![accepted.build_id],
            ignored: None,
        },
    ))
}

/// Poll the repositories of projects with a `pollIntervalSecs`, until
/// `stop`: each poll reads the remote's refs (the advertisement only, no
/// pack) and builds what moved since the last one, as a push of it would.
/// The first poll of a project only notes where its refs are.
pub async fn poll(state: std::sync::Arc<ApiState>, stop: tokio_util::sync::CancellationToken) {
    let mut last_polled: std::collections::HashMap<String, std::time::Instant> = Default::default();
    let tick = std::time::Duration::from_secs(state.config.min_poll_interval_secs.clamp(1, 15));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let projects = match state.store.all_projects() {
            Ok(projects) => projects,
            Err(e) => {
                tracing::error!("polling: cannot read the projects: {e}");
                continue;
            }
        };
        for project in projects.iter().filter(|p| p.poll_interval_secs > 0) {
            let interval = std::time::Duration::from_secs(project.poll_interval_secs);
            if last_polled
                .get(&project.project_id)
                .is_some_and(|at| at.elapsed() < interval)
            {
                continue;
            }
            last_polled.insert(project.project_id.clone(), std::time::Instant::now());
            if let Err(e) = poll_once(&state, project).await {
                tracing::warn!(project_id = %project.project_id, "polling {}: {}", project.git_source.url, e.message);
            }
        }
        last_polled.retain(|id, _| projects.iter().any(|p| &p.project_id == id));
    }
}

/// One poll of one project: build every branch or tag that moved.
async fn poll_once(state: &ApiState, project: &ProjectRecord) -> Result<(), ApiError> {
    let mut patterns = vec!["refs/heads/*".to_string()];
    if project.tags_pattern.is_some() {
        patterns.push("refs/tags/*".to_string());
    }
    let advertised = look_at_repository(state, project, move |fetcher, org, url, credentials| {
        fetcher.remote_refs(org, url, &patterns, credentials)
    })
    .await?
    .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let now: std::collections::BTreeMap<String, String> = advertised
        .into_iter()
        .filter(|(name, _)| name.starts_with("refs/heads/") || name.starts_with("refs/tags/"))
        .map(|(name, id)| (name, id.to_string()))
        .collect();
    let Some(before) = state.store.project_refs(&project.project_id)? else {
        state.store.put_project_refs(&project.project_id, &now)?;
        state.store.flush().await?;
        tracing::info!(project_id = %project.project_id, refs = now.len(), "polling: first look at the repository, nothing built");
        return Ok(());
    };
    for (reference, commit) in &now {
        if before.get(reference) == Some(commit) {
            continue;
        }
        let event = push::PushEvent {
            reference: reference.clone(),
            before: before.get(reference).cloned(),
            after: commit.clone(),
            deleted: false,
            pusher: None,
            commit_message: None,
            changed_paths: None,
            default_branch: None,
        };
        let mut event = event;
        if !project.paths.is_empty() {
            event.changed_paths = compare_in_mirror(state, project, &event).await;
        }
        let Decision::Build(target) = recipes::decide(project, &event) else {
            continue;
        };
        let trigger = Trigger {
            kind: TriggerKind::Poll,
            delivery_id: None,
            pusher: None,
            commit_message: None,
        };
        let accepted = start(state, project, target, trigger, |_| Ok(())).await?;
        tracing::info!(project_id = %project.project_id, reference, commit, build_id = %accepted.build_id, "polling: built what moved");
    }
    state.store.put_project_refs(&project.project_id, &now)?;
    state.store.flush().await?;
    Ok(())
}
