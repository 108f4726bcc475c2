//! `kiln-api`'s wire types to and from the BuildService's messages, and
//! the REST API's errors as gRPC statuses. Conversions only: every rule
//! lives with the REST API.

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hyper::StatusCode;
use tonic::{Code, Status};

use super::proto;
use crate::api::{builds, ApiError};

/// The gRPC code for an HTTP status, as the proto file documents it.
pub fn code_for(status: StatusCode) -> Code {
    match status {
        StatusCode::BAD_REQUEST
        | StatusCode::UNPROCESSABLE_ENTITY
        | StatusCode::UNSUPPORTED_MEDIA_TYPE => Code::InvalidArgument,
        StatusCode::UNAUTHORIZED => Code::Unauthenticated,
        StatusCode::FORBIDDEN => Code::PermissionDenied,
        StatusCode::NOT_FOUND => Code::NotFound,
        StatusCode::CONFLICT => Code::FailedPrecondition,
        StatusCode::PAYLOAD_TOO_LARGE
        | StatusCode::TOO_MANY_REQUESTS
        | StatusCode::INSUFFICIENT_STORAGE => Code::ResourceExhausted,
        StatusCode::SERVICE_UNAVAILABLE | StatusCode::BAD_GATEWAY => Code::Unavailable,
        StatusCode::GATEWAY_TIMEOUT => Code::DeadlineExceeded,
        StatusCode::NOT_IMPLEMENTED => Code::Unimplemented,
        _ => Code::Internal,
    }
}

impl From<ApiError> for Status {
    /// The REST answer's message, under the matching code; a 429's
    /// `Retry-After` as `retry-after` metadata.
    fn from(error: ApiError) -> Status {
        let mut status = Status::new(code_for(error.status), error.message);
        if let Some(seconds) = error.retry_after {
            status
                .metadata_mut()
                .insert("retry-after", seconds.to_string().parse().expect("digits"));
        }
        status
    }
}

pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

pub fn status(status: kiln_api::BuildStatus) -> proto::BuildStatus {
    use kiln_api::BuildStatus as S;
    match status {
        S::Pending => proto::BuildStatus::Pending,
        S::Running => proto::BuildStatus::Running,
        S::Succeeded => proto::BuildStatus::Succeeded,
        S::Failed => proto::BuildStatus::Failed,
        S::Cancelled => proto::BuildStatus::Cancelled,
    }
}

/// A ListBuilds filter: UNSPECIFIED is every status; a number the proto
/// does not define is refused.
fn status_filter(value: i32) -> Result<Option<kiln_api::BuildStatus>, ApiError> {
    use kiln_api::BuildStatus as S;
    match proto::BuildStatus::try_from(value) {
        Ok(proto::BuildStatus::Unspecified) => Ok(None),
        Ok(proto::BuildStatus::Pending) => Ok(Some(S::Pending)),
        Ok(proto::BuildStatus::Running) => Ok(Some(S::Running)),
        Ok(proto::BuildStatus::Succeeded) => Ok(Some(S::Succeeded)),
        Ok(proto::BuildStatus::Failed) => Ok(Some(S::Failed)),
        Ok(proto::BuildStatus::Cancelled) => Ok(Some(S::Cancelled)),
        Err(_) => Err(ApiError::bad_request(format!(
            "`status` {value} is not a BuildStatus: use BUILD_STATUS_PENDING, _RUNNING, _SUCCEEDED, _FAILED or _CANCELLED (or UNSPECIFIED for all)"
        ))),
    }
}

/// An empty proto3 string is an absent field.
fn given(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

fn given_list(list: Vec<String>) -> Option<Vec<String>> {
    (!list.is_empty()).then_some(list)
}

/// CreateBuild's message as the REST body it means: empty fields are
/// absent (the server's defaults apply), the zip's bytes are the
/// `zippedCode` REST clients send as base64.
pub fn create_request(request: proto::CreateBuildRequest) -> kiln_api::CreateBuildRequest {
    kiln_api::CreateBuildRequest {
        name: request.name,
        zipped_code: (!request.zipped_code.is_empty())
            .then(|| base64::engine::general_purpose::STANDARD.encode(&request.zipped_code)),
        context_id: given(request.context_id),
        git_source: request
            .git_source
            .map(|git| kiln_api::builds::GitSourceRequest {
                url: git.url,
                reference: given(git.reference),
                context_dir: given(git.context_dir),
                submodules: git.submodules.then_some(true),
            }),
        context_url: given(request.context_url),
        dockerfile: given(request.dockerfile),
        context_dir: given(request.context_dir),
        builder: given(request.builder),
        tags: given_list(request.tags),
        build_args: (!request.build_args.is_empty()).then_some(request.build_args),
        target: given(request.target),
        platform: given(request.platform),
        platforms: given_list(request.platforms),
        no_cache: request.no_cache.then_some(true),
        timeout_secs: (request.timeout_secs != 0).then_some(request.timeout_secs),
        profile: given(request.profile),
        secret_build_args: given_list(request.secret_build_args),
        secrets: given_list(request.secrets),
    }
}

/// ListBuilds' message as the query REST reads from its query string.
pub fn list_query(request: proto::ListBuildsRequest) -> Result<builds::ListQuery, ApiError> {
    Ok(builds::ListQuery {
        page_size: request.page_size.into(),
        page_token: request.page_token,
        status: status_filter(request.status)?,
        name: given(request.name),
        branch: given(request.branch),
        project_id: given(request.project_id),
    })
}

pub fn accepted(accepted: kiln_api::BuildAccepted) -> proto::CreateBuildResponse {
    proto::CreateBuildResponse {
        build_id: accepted.build_id,
        number: accepted.number,
        status: status(accepted.status).into(),
    }
}

pub fn build(build: kiln_api::Build) -> proto::Build {
    proto::Build {
        build_id: build.build_id,
        number: build.number,
        name: build.name,
        status: status(build.status).into(),
        image_refs: build.image_refs,
        digest: build.digest.unwrap_or_default(),
        metrics: build.metrics.map(|m| {
            let phases = m.phases.unwrap_or_default();
            proto::Metrics {
                duration_ms: m.duration_ms,
                image_size_bytes: m.image_size_bytes.unwrap_or(0),
                layer_count: m.layer_count.unwrap_or(0),
                cache_used: m.cache_used,
                cached_steps: m.cached_steps,
                total_steps: m.total_steps,
                queued_ms: phases.queued_ms,
                context_ms: phases.context_ms,
                build_ms: phases.build_ms,
                push_ms: phases.push_ms,
            }
        }),
        failure: build.failure.map(|f| proto::Failure {
            reason: f.reason.to_string(),
            message: f.message,
            hint: f.hint,
            exit_code: f.exit_code,
        }),
        source: Some(source(build.source)),
        request: Some(settings(build.request)),
        create_time: Some(timestamp(build.create_time)),
        start_time: build.start_time.map(timestamp),
        finish_time: build.finish_time.map(timestamp),
        profile_used: build.profile_used.unwrap_or_default(),
        peak_memory_bytes: build.peak_memory_bytes,
        project_id: build.project_id.unwrap_or_default(),
        org: build.org,
        attachments: build
            .attachments
            .into_iter()
            .map(|a| proto::Attachment {
                kind: a.kind,
                reference: a.reference,
                digest: a.digest,
            })
            .collect(),
        platforms: build
            .platforms
            .into_iter()
            .map(|p| proto::PlatformImage {
                platform: p.platform,
                digest: p.digest,
                size_bytes: p.size_bytes,
                layer_count: p.layer_count,
                engine: p.engine.unwrap_or_default(),
            })
            .collect(),
        engine: build.engine.unwrap_or_default(),
    }
}

fn source(source: kiln_api::builds::Source) -> proto::Source {
    proto::Source {
        kind: source.kind,
        size_bytes: source.size_bytes.unwrap_or(0),
        format: source.format.unwrap_or_default(),
        context_id: source.context_id.unwrap_or_default(),
        url: source.url.unwrap_or_default(),
        git: source.git.map(|git| proto::GitCheckout {
            url: git.url,
            reference: git.reference,
            context_dir: git.context_dir,
            submodules: git.submodules,
            branch: git.branch.unwrap_or_default(),
            commit: git.commit.unwrap_or_default(),
            reference_kind: git
                .reference_kind
                .map(|k| k.as_str().to_string())
                .unwrap_or_default(),
            full_ref: git.full_ref.unwrap_or_default(),
        }),
    }
}

fn settings(settings: kiln_api::builds::BuildSettings) -> proto::BuildSettings {
    proto::BuildSettings {
        dockerfile: settings.dockerfile,
        tags: settings.tags,
        build_args: settings.build_args,
        target: settings.target.unwrap_or_default(),
        platform: settings.platform.unwrap_or_default(),
        platforms: settings.platforms,
        no_cache: settings.no_cache,
        timeout_secs: settings.timeout_secs,
        builder: settings.builder,
        profile: settings.profile,
        secrets: settings.secrets,
        secret_build_args: settings.secret_build_args,
        context_dir: settings.context_dir,
    }
}

pub fn build_list(list: kiln_api::BuildList) -> proto::ListBuildsResponse {
    proto::ListBuildsResponse {
        builds: list.builds.into_iter().map(build).collect(),
        next_page_token: list.next_page_token,
    }
}

pub fn log_line(line: kiln_api::LogLine) -> proto::LogLine {
    proto::LogLine {
        seq: line.seq,
        time: Some(timestamp(line.time)),
        stream: line.stream,
        line: line.line,
    }
}

pub fn uploaded(context: kiln_api::UploadedContext) -> proto::UploadedContext {
    proto::UploadedContext {
        context_id: context.context_id,
        sha256: context.sha256,
        size_bytes: context.size_bytes,
        format: context.format,
        create_time: Some(timestamp(context.create_time)),
    }
}

/// SaveBuildSecrets' message as the REST body: set entries, and removed
/// ones as `null`. A name both set and removed is refused.
pub fn save_request(
    request: proto::SaveBuildSecretsRequest,
) -> Result<kiln_api::SaveSecretsRequest, ApiError> {
    fn merge<T>(
        group: &str,
        set: BTreeMap<String, T>,
        removed: Vec<String>,
    ) -> Result<BTreeMap<String, Option<T>>, ApiError> {
        let mut merged: BTreeMap<String, Option<T>> =
            set.into_iter().map(|(k, v)| (k, Some(v))).collect();
        for name in removed {
            if merged.contains_key(&name) {
                return Err(ApiError::bad_request(format!(
                    "`{group}` {name} is both set and in `remove_{group}`; give it once"
                )));
            }
            merged.insert(name, None);
        }
        Ok(merged)
    }
    let credential = |c: proto::Credential| kiln_api::CredentialInput {
        username: c.username,
        password: c.password,
    };
    Ok(kiln_api::SaveSecretsRequest {
        registry_credentials: merge(
            "registry_credentials",
            request
                .registry_credentials
                .into_iter()
                .map(|(k, v)| (k, credential(v)))
                .collect(),
            request.remove_registry_credentials,
        )?,
        git_credentials: merge(
            "git_credentials",
            request
                .git_credentials
                .into_iter()
                .map(|(k, v)| (k, credential(v)))
                .collect(),
            request.remove_git_credentials,
        )?,
        build_secrets: merge(
            "build_secrets",
            request.build_secrets,
            request.remove_build_secrets,
        )?,
    })
}

pub fn masked(secrets: kiln_api::MaskedSecrets) -> proto::BuildSecrets {
    let credentials = |map: BTreeMap<String, kiln_api::MaskedCredential>| {
        map.into_iter()
            .map(|(k, v)| {
                (
                    k,
                    proto::Credential {
                        username: v.username,
                        password: v.password,
                    },
                )
            })
            .collect()
    };
    proto::BuildSecrets {
        registry_credentials: credentials(secrets.registry_credentials),
        git_credentials: credentials(secrets.git_credentials),
        build_secrets: secrets.build_secrets,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_http_status_the_api_answers_has_its_documented_code() {
        for (http, grpc) in [
            (400, Code::InvalidArgument),
            (401, Code::Unauthenticated),
            (403, Code::PermissionDenied),
            (404, Code::NotFound),
            (409, Code::FailedPrecondition),
            (413, Code::ResourceExhausted),
            (429, Code::ResourceExhausted),
            (500, Code::Internal),
            (507, Code::ResourceExhausted),
        ] {
            assert_eq!(
                code_for(StatusCode::from_u16(http).unwrap()),
                grpc,
                "{http}"
            );
        }
    }

    #[test]
    fn a_429_keeps_its_message_and_says_when_to_retry() {
        let status = Status::from(
            ApiError::new(StatusCode::TOO_MANY_REQUESTS, "org has 5 builds waiting")
                .with_retry_after(30),
        );
        assert_eq!(status.code(), Code::ResourceExhausted);
        assert_eq!(status.message(), "org has 5 builds waiting");
        assert_eq!(status.metadata().get("retry-after").unwrap(), "30");
    }

    #[test]
    fn empty_proto_fields_are_absent_so_the_server_defaults_apply() {
        let rest = create_request(proto::CreateBuildRequest {
            name: "hello".into(),
            zipped_code: bytes::Bytes::from_static(b"PK\x03\x04"),
            ..Default::default()
        });
        assert_eq!(rest.zipped_code.as_deref(), Some("UEsDBA=="));
        assert_eq!(rest.tags, None);
        assert_eq!(rest.builder, None);
        assert_eq!(rest.no_cache, None);
        assert_eq!(rest.timeout_secs, None);
        assert_eq!(rest.git_source, None);
    }

    #[test]
    fn a_secret_both_set_and_removed_is_refused() {
        let error = save_request(proto::SaveBuildSecretsRequest {
            build_secrets: [("NPM_TOKEN".to_string(), "abcdefgh".to_string())].into(),
            remove_build_secrets: vec!["NPM_TOKEN".into()],
            ..Default::default()
        })
        .unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert!(error.message.contains("NPM_TOKEN"), "{}", error.message);
        let removal = save_request(proto::SaveBuildSecretsRequest {
            remove_build_secrets: vec!["OLD".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(removal.build_secrets.get("OLD"), Some(&None));
    }
}
