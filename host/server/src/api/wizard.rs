//! `POST /v1/wizard:detect`: what the Dockerfile wizard makes of a context
//! (and, with `monorepo`, of each buildable sub-project), without building.
//! The context is unpacked in the sandbox by the same context-source
//! plugins builds use, into a temporary directory removed afterwards.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use std::sync::{Arc, Mutex};

use super::builds::{decode_inline_zip, validate_git_source, Staged};
use super::routes::Caller;
use super::{json_response, read_json, ApiError, ApiState, Body};
use crate::capabilities::git::BuildGit;
use crate::git::GitFetcher;
use crate::plugins::bindings::detector::exports::kiln::plugin::detect::DetectRequest;
use crate::plugins::bindings::source::exports::kiln::plugin::source::SourceSpec;
use crate::plugins::{Capabilities, Preopens};
use crate::scheduler::{
    git_source_options, materialize, staged_archive, wizard_base_images, MaterializeError,
};

pub async fn detect(
    state: &ApiState,
    caller: &Caller,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let bad = ApiError::bad_request;
    let body: kiln_api::DetectRequest = read_json(
        state,
        request,
        8 << 20,
        "WizardDetect ({zippedCode | contextId | gitSource, path, monorepo})",
        || bad("the request body is over 8 MiB; upload the context (POST /v1/contexts) and send its contextId".into()),
    )
    .await?;
    let staged = match (&body.zipped_code, &body.context_id, body.git_source) {
        (Some(zip), None, None) => Staged::Inline(decode_inline_zip(zip)?),
        (None, Some(id), None) => Staged::Upload(state.store.context(&caller.org, id)?.ok_or_else(|| {
            bad(format!(
                "`contextId` {id:?} does not exist for this organization; upload the context with POST /v1/contexts"
            ))
        })?),
        (None, None, Some(git)) => Staged::Git(validate_git_source(state, git)?),
        _ => {
            return Err(bad(
                "give exactly one context: `zippedCode` (a base64 zip), `contextId` or `gitSource`".into(),
            ))
        }
    };
    let path = body.path.unwrap_or_default();
    if !path.is_empty() {
        super::validate::check_context_path("path", &path).map_err(bad)?;
    }
    let wizard = state.runtime.detector().ok_or_else(|| {
        ApiError::new(StatusCode::NOT_IMPLEMENTED, "no detector plugin is loaded")
    })?;
    let summary = staged.summary();
    let source = state
        .runtime
        .source(&summary.kind)
        .ok_or_else(|| ApiError::internal(format!("no context source for {}", summary.kind)))?;

    let work = tempfile::tempdir_in(&state.config.data_dir).map_err(ApiError::internal)?;
    let input = work.path().join("input");
    let context = work.path().join("context");
    std::fs::create_dir_all(&context).map_err(ApiError::internal)?;
    staged
        .stage(&state.config.data_dir, &input)
        .map_err(ApiError::internal)?;
    let mut caps = Capabilities::for_plugin(source);
    let git_outcome = Arc::new(Mutex::new(None));
    let (input_path, options) = match &staged {
        Staged::Git(git) => {
            // Checked out by the host as a build's would be: the
            // organization's mirrors and credentials, the same limits.
            let known = state
                .secrets
                .git_credentials(&caller.org)
                .await
                .map_err(ApiError::internal)?;
            caps = caps.with_git(Arc::new(BuildGit {
                fetcher: GitFetcher::new(&state.config.data_dir, state.config.network.clone()),
                org: caller.org.clone(),
                context_dir: context.clone(),
                credentials: crate::git::credential_lookup(known, |_| {}),
                limits: crate::git::Limits {
                    max_bytes: state.config.max_context_bytes,
                    max_entries: state.config.max_context_entries,
                },
                outcome: git_outcome.clone(),
            }));
            (None, git_source_options(git))
        }
        _ => staged_archive(summary.format.as_deref()),
    };
    let spec = SourceSpec {
        kind: summary.kind.clone(),
        input_path,
        options,
        max_unpacked_bytes: state.config.max_context_bytes,
        max_entries: state.config.max_context_entries,
    };
    let preopens = Preopens {
        context: Some(context.clone()),
        context_writable: true,
        input: Some(input),
        credentials: None,
        rootfs: None,
    };
    // The same step a build takes, so detection sees the context the build
    // would: modes applied, links created (or refused) by the host.
    let materialized = materialize(&state.runtime, source, caps, &preopens, &spec).await;
    // A checkout the host refused or could not make says why in its own
    // words (no such repository, reference or directory; credentials).
    if let Some(Err(error)) = git_outcome.lock().unwrap().take() {
        return Err(bad(format!(
            "the repository cannot be checked out: {error}"
        )));
    }
    materialized.map_err(|error| match error {
        MaterializeError::Runtime(e) => ApiError::internal(e),
        MaterializeError::Plugin(e) => bad(format!(
            "the context cannot be unpacked: {}",
            e.into_message()
        )),
        MaterializeError::Context(e) => bad(format!("the context cannot be unpacked: {e}")),
    })?;
    let request = DetectRequest {
        path,
        monorepo: body.monorepo.unwrap_or(true),
        base_images: wizard_base_images(&state.config),
    };
    let projects = state
        .runtime
        .detect(wizard, Capabilities::for_plugin(wizard), &context, &request)
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| bad(e.into_message()))?;
    let projects: Vec<kiln_api::DetectedProject> = projects
        .into_iter()
        .map(|p| kiln_api::DetectedProject {
            context_dir: p.path.clone(),
            path: p.path,
            stack: p.stack,
            tool: p.tool,
            reasons: p.reasons,
            has_dockerfile: p.has_dockerfile,
            dockerfile: p.dockerfile,
            dockerignore: p.dockerignore,
            port: p.port,
        })
        .collect();
    Ok(json_response(
        StatusCode::OK,
        &kiln_api::DetectAnswer {
            detected: !projects.is_empty(),
            projects,
        },
    ))
}
