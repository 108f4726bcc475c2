//! The OpenAPI 3.1 document (`GET /v1/openapi.json`), generated from the
//! types in this crate, so a field added to a wire type is in the document
//! the moment it is in the API.
//!
//! The server routes requests itself (no web framework), so each operation
//! is declared here on an empty function that stands for it: the function
//! is never called, its `#[utoipa::path]` is the operation's description.
//! The server's route table and this list are kept equal by a test in the
//! server (`the_openapi_document_describes_exactly_the_routes`).

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

// Every wire type: the `components(schemas(...))` list below names them.
use crate::admin::*;
use crate::builds::*;
use crate::error::*;
use crate::projects::*;
use crate::webhooks::*;

/// The name of the bearer-token security scheme.
pub const BEARER: &str = "bearer";

const DESCRIPTION: &str = "\
Kiln turns a build context into a container image pushed to \
`<registry>/<org>/<name>:<tag>`.

Every `/v1` call needs `Authorization: Bearer <token>`. A token belongs to \
one organization; other organizations' resources answer 404, as missing ones \
do. Every error is `{\"error\": {\"code\", \"status\", \"message\"}}`, and the \
message says what was wrong and how to fix it.

Builds are asynchronous: CreateBuild answers `BUILD_STATUS_PENDING` at once; \
follow the build with GetBuild or StreamBuildLogs.";

/// The derived document. Operations are listed in the order a reader meets
/// them: builds, contexts, the wizard, plugins, secrets, administration,
/// then the unauthenticated operational routes.
#[derive(OpenApi)]
#[openapi(
    info(title = "Kiln API", description = DESCRIPTION, license(name = "Apache-2.0")),
    security(("bearer" = [])),
    modifiers(&BearerScheme),
    tags(
        (name = "builds", description = "Start, list, follow and cancel builds"),
        (name = "contexts", description = "Upload build contexts too big to send inline"),
        (name = "projects", description = "Saved build recipes that build on a git push (their webhook), on request, or by polling"),
        (name = "webhooks", description = "Build events delivered to your endpoints, signed as Standard Webhooks"),
        (name = "wizard", description = "What the Dockerfile wizard sees in a context"),
        (name = "plugins", description = "The plugins this server loaded"),
        (name = "secrets", description = "An organization's registry and git credentials and build secrets"),
        (name = "admin", description = "Organizations and tokens (the admin token)"),
        (name = "operations", description = "Health, metrics and this document; no token"),
    ),
    paths(
        create_build, list_builds, get_build, cancel_build, stream_build_logs, stream_events,
        upload_build_context, get_context,
        create_project, list_projects, get_project, update_project, delete_project,
        build_project, rotate_webhook_secret, push_hook,
        create_webhook, list_webhooks, delete_webhook, list_deliveries, redeliver,
        wizard_detect,
        list_plugins,
        save_build_secrets, list_build_secrets, delete_build_secret,
        create_org, list_orgs, create_token, revoke_token,
        set_org_registry, get_org_registry, reset_org_registry, get_signing_key,
        set_org_signing, get_org_signing, collect_garbage,
        list_engines, drain_engine, resume_engine,
        openapi, metrics, healthz,
    ),
    components(schemas(
        CreateBuildRequest, GitSourceRequest, BuildAccepted, Build, BuildStatus, BuildSettings,
        Source, GitSource, RefKind, WizardDetection, Failure, FailureReason, BuildAttempt, Attachment, PlatformImage, Metrics, Phases, BuildList,
        LogLine, UploadedContext, DetectRequest, DetectAnswer, DetectedProject, PluginList,
        PluginView, PluginKinds, Permissions, PluginLimits, PluginLoadError, SaveSecretsRequest,
        CredentialInput, MaskedSecrets, MaskedCredential, CreateOrgRequest, Org, OrgList, RegistryTarget, SigningSetting,
        NewToken, GcRequest, GcReport, GcTotal, GcItem, ErrorBody, ErrorDetail,
        Engine, EngineHealth, EngineList,
        CreateProjectRequest, UpdateProjectRequest, ProjectGitSource, Project,
        ProjectList, ProjectBuildRequest, Trigger, TriggerKind, PushAnswer,
        CreateWebhookRequest, NotifierTarget, Webhook, WebhookList, BuildEvent, BuildSummary,
        DeliveryStatus, Delivery, DeliveryAttempt, DeliveryList,
    ))
)]
pub struct ApiDoc;

/// The document the server serves: derived from the types, the field
/// rules of [`crate::validate`] laid over it, this crate's version as the
/// API's.
pub fn document() -> serde_json::Value {
    let mut derived = ApiDoc::openapi();
    derived.info.version = env!("CARGO_PKG_VERSION").to_string();
    let mut document = serde_json::to_value(derived).expect("the document serializes");
    fields::apply(&mut document);
    add_links(&mut document);
    document
}

/// OpenAPI links: which later calls take an id an answer gives (a new
/// build's id to GetBuild, CancelBuild and StreamBuildLogs; an uploaded
/// context's id to GetContext), so generic clients and stateful testers
/// can follow a resource from its creation.
fn add_links(document: &mut serde_json::Value) {
    let links = [
        (
            "/v1/builds",
            "post",
            "202",
            "buildId",
            &["getBuild", "cancelBuild", "streamBuildLogs"][..],
        ),
        (
            "/v1/contexts",
            "post",
            "201",
            "contextId",
            &["getContext"][..],
        ),
        (
            "/v1/projects",
            "post",
            "201",
            "projectId",
            &[
                "getProject",
                "updateProject",
                "deleteProject",
                "buildProject",
                "rotateWebhookSecret",
            ][..],
        ),
        (
            "/v1/webhooks",
            "post",
            "201",
            "webhookId",
            &["deleteWebhook", "listDeliveries"][..],
        ),
    ];
    for (path, method, status, id, operations) in links {
        let response = document
            .pointer_mut(&format!(
                "/paths/{}/{method}/responses/{status}",
                path.replace('/', "~1")
            ))
            .and_then(serde_json::Value::as_object_mut)
            .unwrap_or_else(|| panic!("the document has no {status} answer of {method} {path}"));
        let mut named = serde_json::Map::new();
        for operation in operations {
            named.insert(
                operation.to_string(),
                serde_json::json!({
                    "operationId": operation,
                    "parameters": { id: format!("$response.body#/{id}") },
                }),
            );
        }
        response.insert("links".into(), named.into());
    }
}

/// Declares the `bearer` scheme the document-wide `security` names.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            BEARER,
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An organization token (`kiln token create --org ORG`), or the admin token for /v1/orgs"))
                    .build(),
            ),
        );
    }
}

/// The `Idempotency-Key` header of the operations that create something.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct IdempotencyKey {
    /// A key of the client's (a UUID, say): a request repeated with the
    /// same key and body within 24 hours gets the first answer instead of
    /// doing the work again; the same key with another body is 422.
    #[param(
        rename = "Idempotency-Key",
        required = false,
        pattern = r"^[\x21-\x7E]{1,255}$"
    )]
    idempotency_key: String,
}

// The operations. Each function stands for one route; see the module doc.

/// Start a build (CreateBuild)
///
/// The build is stored `BUILD_STATUS_PENDING` and queued; it runs
/// asynchronously.
#[utoipa::path(
    post, path = "/v1/builds", operation_id = "createBuild", tag = "builds",
    request_body = CreateBuildRequest,
    params(IdempotencyKey),
    responses(
        (status = 202, description = "Accepted; the build runs asynchronously (or, for a repeated `Idempotency-Key`, the first answer, with `Idempotent-Replayed: true`)", body = BuildAccepted),
        (status = 400, description = "The request is malformed; the message names the field", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 413, description = "The body is over its limit (4 MiB of zip inline)", body = ErrorBody),
        (status = 422, description = "The `Idempotency-Key` was used for a different request", body = ErrorBody),
        (status = 429, description = "The organization has its most builds waiting; try again after `Retry-After` seconds",
         body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait before sending the build again"))),
        (status = 507, description = "The server is low on disk space; nothing was created", body = ErrorBody),
        (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn create_build() {}

/// List builds, newest first (ListBuilds)
#[utoipa::path(
    get, path = "/v1/builds", operation_id = "listBuilds", tag = "builds",
    params(
        ("status" = Option<BuildStatus>, Query, description = "Only builds with this status"),
        ("name" = Option<String>, Query, description = "Only builds of this image name"),
        ("branch" = Option<String>, Query, description = "Only git builds of this branch"),
        ("projectId" = Option<String>, Query, description = "Only builds of this project"),
        ("pageSize" = Option<u32>, Query, minimum = 0, maximum = 1000, description = "Builds per page, up to 1000; 0 or absent: 50"),
        ("pageToken" = Option<String>, Query, description = "The `nextPageToken` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of builds", body = BuildList),
        (status = 400, description = "A filter or page token is malformed", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn list_builds() {}

/// Get a build (GetBuild)
#[utoipa::path(
    get, path = "/v1/builds/{buildId}", operation_id = "getBuild", tag = "builds",
    params(("buildId" = String, Path, description = "The build's id")),
    responses(
        (status = 200, description = "The build", body = Build),
        (status = 400, description = "The id is malformed", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 404, description = "No such build in the token's organization", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn get_build() {}

/// Cancel a build (CancelBuild)
#[utoipa::path(
    post, path = "/v1/builds/{buildId}:cancel", operation_id = "cancelBuild", tag = "builds",
    params(("buildId" = String, Path, description = "The build's id")),
    responses(
        (status = 200, description = "The build, cancelled", body = Build),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 404, description = "No such build in the token's organization", body = ErrorBody),
        (status = 409, description = "The build has already finished", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn cancel_build() {}

/// Stream a build's log (StreamBuildLogs)
#[utoipa::path(
    get, path = "/v1/builds/{buildId}/logs", operation_id = "streamBuildLogs", tag = "builds",
    params(
        ("buildId" = String, Path, description = "The build's id"),
        ("fromStart" = Option<bool>, Query, description = "Replay from the first line (default: from now)"),
        ("follow" = Option<bool>, Query, description = "Keep the stream open until the build ends"),
        ("afterSeq" = Option<u64>, Query, description = "Resume after this line (also: the `Last-Event-ID` header)"),
    ),
    responses(
        (status = 200,
         description = "Log lines: NDJSON, or Server-Sent Events when the client accepts \
                        `text/event-stream` (event `log` with id = seq; `end` when a followed build ends; \
                        `error` when the stream's token is revoked, which ends it)",
         content(
            (LogLine = "application/x-ndjson"),
            (String = "text/event-stream"),
         )),
        (status = 400, description = "A parameter is malformed", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 404, description = "No such build in the token's organization", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn stream_build_logs() {}

/// Follow the organization's build events (StreamEvents)
///
/// Server-Sent Events: `build.queued`, `build.started`, `build.succeeded`,
/// `build.failed` and `build.cancelled`, each a `BuildEvent` (the body
/// completion webhooks deliver) with the event's id as the SSE `id`. The
/// stream stays open; reconnect with `Last-Event-ID` (an `EventSource`
/// does) or `?after=` to get every event after that id first. Without
/// either, only new events. A client away for longer than the server
/// keeps events (the last 10,000 per organization) is sent `event: reset`
/// first.
#[utoipa::path(
    get, path = "/v1/events", operation_id = "streamEvents", tag = "builds",
    params(
        ("after" = Option<u64>, Query, description = "Resume after this event id (also: the `Last-Event-ID` header)"),
    ),
    responses(
        (status = 200,
         description = "Build events as Server-Sent Events (event name = the event's `type`, data = a `BuildEvent`); \
                        `error` when the stream's token is revoked, which ends it",
         content((String = "text/event-stream"))),
        (status = 400, description = "`after` is not an event id", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn stream_events() {}

/// Upload a build context (UploadBuildContext)
///
/// The body is the archive itself: a tar, a gzipped tar or a zip (the
/// format is recognized from its first bytes). Name the answer's
/// `contextId` in CreateBuild.
#[utoipa::path(
    post, path = "/v1/contexts", operation_id = "uploadBuildContext", tag = "contexts",
    request_body(content_type = "application/octet-stream", description = "The archive's bytes"),
    params(IdempotencyKey),
    responses(
        (status = 201, description = "Stored (the same bytes are the same context)", body = UploadedContext),
        (status = 422, description = "The `Idempotency-Key` was used for different bytes", body = ErrorBody),
        (status = 400, description = "The body is not a tar, tar.gz or zip", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 413, description = "The archive is over the server's upload limit", body = ErrorBody),
        (status = 507, description = "The server is low on disk space (or its disk filled during the upload); nothing was kept", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn upload_build_context() {}

/// Create a project (CreateProject)
///
/// A saved build recipe for one image. The answer carries the webhook
/// secret, shown this once.
#[utoipa::path(
    post, path = "/v1/projects", operation_id = "createProject", tag = "projects",
    request_body = CreateProjectRequest,
    responses(
        (status = 201, description = "Created; `webhookSecret` is shown only now", body = Project),
        (status = 400, description = "A field is malformed, or names what this server or organization lacks (a builder, a secret); the message names it", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 409, description = "The organization has a project of that name", body = ErrorBody),
        (status = 413, description = "The body is over 256 KiB", body = ErrorBody),
        (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody),
        (status = 507, description = "The server is low on disk space; nothing was created", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn create_project() {}

/// List the organization's projects, by name (ListProjects)
#[utoipa::path(
    get, path = "/v1/projects", operation_id = "listProjects", tag = "projects",
    responses(
        (status = 200, description = "Every project", body = ProjectList),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn list_projects() {}

/// Get a project (GetProject)
#[utoipa::path(
    get, path = "/v1/projects/{projectId}", operation_id = "getProject", tag = "projects",
    params(("projectId" = String, Path, description = "The project's id")),
    responses(
        (status = 200, description = "The project (never its webhook secret)", body = Project),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 404, description = "No such project in the token's organization", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn get_project() {}

/// Change a project (UpdateProject)
///
/// The fields given replace the project's; absent ones stay.
#[utoipa::path(
    patch, path = "/v1/projects/{projectId}", operation_id = "updateProject", tag = "projects",
    params(("projectId" = String, Path, description = "The project's id")),
    request_body = UpdateProjectRequest,
    responses(
        (status = 200, description = "The changed project", body = Project),
        (status = 400, description = "A field is malformed; the message names it", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 404, description = "No such project in the token's organization", body = ErrorBody),
        (status = 413, description = "The body is over 256 KiB", body = ErrorBody),
        (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn update_project() {}

/// Delete a project (DeleteProject)
///
/// Its builds stay, still naming it.
#[utoipa::path(
    delete, path = "/v1/projects/{projectId}", operation_id = "deleteProject", tag = "projects",
    params(("projectId" = String, Path, description = "The project's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 404, description = "No such project in the token's organization", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn delete_project() {}

/// Build a project now, as a push of the reference would
#[utoipa::path(
    post, path = "/v1/projects/{projectId}:build", operation_id = "buildProject", tag = "projects",
    params(("projectId" = String, Path, description = "The project's id")),
    request_body = ProjectBuildRequest,
    responses(
        (status = 202, description = "Accepted; the build runs asynchronously", body = BuildAccepted),
        (status = 400, description = "The reference is malformed or not on the remote, or none of the project's tags applies to it", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 404, description = "No such project in the token's organization", body = ErrorBody),
        (status = 413, description = "The body is over 256 KiB", body = ErrorBody),
        (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody),
        (status = 429, description = "The organization has its most builds waiting; try again after `Retry-After` seconds",
         body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 507, description = "The server is low on disk space; nothing was created", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn build_project() {}

/// Replace a project's webhook secret
///
/// The old secret stops working at once; the new one is shown this once.
#[utoipa::path(
    post, path = "/v1/projects/{projectId}:rotateWebhookSecret", operation_id = "rotateWebhookSecret", tag = "projects",
    params(("projectId" = String, Path, description = "The project's id")),
    responses(
        (status = 200, description = "The project and its new secret", body = Project),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 404, description = "No such project in the token's organization", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn rotate_webhook_secret() {}

/// A push delivery at a project's webhook
///
/// No token: the signature authenticates it — GitHub's
/// `X-Hub-Signature-256`, GitLab's `X-Gitlab-Token`, Gitea's or Forgejo's
/// `X-Gitea-Signature`, or Standard Webhooks' `webhook-id`,
/// `webhook-timestamp` and `webhook-signature` (the generic body below),
/// each with the project's webhook secret. Checked before the body is
/// read. A delivery id seen before gets its first answer and builds
/// nothing.
#[utoipa::path(
    post, path = "/v1/hooks/{projectId}", operation_id = "pushHook", tag = "projects",
    security(()),
    params(("projectId" = String, Path, description = "The project's id")),
    request_body(content = Object, description = "The sender's push payload (GitHub, GitLab, Gitea) or, signed as Standard Webhooks, `{ref, after, deleted?, pusher?, commitMessage?, changedPaths?, defaultBranch?}`", content_type = "application/json"),
    responses(
        (status = 202, description = "The push started these builds", body = PushAnswer),
        (status = 200, description = "The push builds nothing; `ignored` says why", body = PushAnswer),
        (status = 400, description = "The signed body is not a push payload", body = ErrorBody),
        (status = 401, description = "No signature, or one that does not match the project's secret", body = ErrorBody),
        (status = 404, description = "No such project", body = ErrorBody),
        (status = 413, description = "The body is over 8 MiB", body = ErrorBody),
        (status = 429, description = "The organization has its most builds waiting", body = ErrorBody),
        (status = 507, description = "The server is low on disk space", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn push_hook() {}

/// Subscribe an endpoint to build events (CreateWebhook)
///
/// Deliveries are POSTed with `webhook-id`, `webhook-timestamp` and
/// `webhook-signature` (Standard Webhooks); the body is a `BuildEvent`.
/// A delivery is retried with exponential backoff for 24 hours until a
/// 2xx answer. With `notifier` instead of `url`, a notifier plugin (e.g.
/// `http-post`, a templated JSON POST) makes each attempt, through the
/// same queue; it may reach only the hosts the operator granted it.
#[utoipa::path(
    post, path = "/v1/webhooks", operation_id = "createWebhook", tag = "webhooks",
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Subscribed; `secret` is shown only now", body = Webhook),
        (status = 400, description = "The URL, the notifier, an event or the project is not usable; the message says which", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 413, description = "The body is over 64 KiB", body = ErrorBody),
        (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn create_webhook() {}

/// List the organization's webhooks
#[utoipa::path(
    get, path = "/v1/webhooks", operation_id = "listWebhooks", tag = "webhooks",
    responses(
        (status = 200, description = "Every webhook (never a secret)", body = WebhookList),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn list_webhooks() {}

/// Delete a webhook and its pending deliveries
#[utoipa::path(
    delete, path = "/v1/webhooks/{webhookId}", operation_id = "deleteWebhook", tag = "webhooks",
    params(("webhookId" = String, Path, description = "The webhook's id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 404, description = "No such webhook in the token's organization", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn delete_webhook() {}

/// A webhook's deliveries, newest first (the last 100)
#[utoipa::path(
    get, path = "/v1/webhooks/{webhookId}/deliveries", operation_id = "listDeliveries", tag = "webhooks",
    params(("webhookId" = String, Path, description = "The webhook's id")),
    responses(
        (status = 200, description = "Deliveries with their last attempt", body = DeliveryList),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 404, description = "No such webhook in the token's organization", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn list_deliveries() {}

/// Send a delivery again now (same id, same body)
#[utoipa::path(
    post, path = "/v1/webhooks/{webhookId}/deliveries/{deliveryId}:redeliver", operation_id = "redeliver", tag = "webhooks",
    params(
        ("webhookId" = String, Path, description = "The webhook's id"),
        ("deliveryId" = String, Path, description = "The delivery's id (`webhook-id`)"),
    ),
    responses(
        (status = 202, description = "Due now; retried as a new delivery would be", body = Delivery),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 404, description = "No such webhook or delivery", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn redeliver() {}

/// Get an uploaded context
#[utoipa::path(
    get, path = "/v1/contexts/{contextId}", operation_id = "getContext", tag = "contexts",
    params(("contextId" = String, Path, description = "The context's id")),
    responses(
        (status = 200, description = "The context", body = UploadedContext),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 404, description = "No such context in the token's organization", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn get_context() {}

/// Detect a context's stacks and the Dockerfile the wizard would use, without building
#[utoipa::path(
    post, path = "/v1/wizard:detect", operation_id = "wizardDetect", tag = "wizard",
    request_body = DetectRequest,
    responses(
        (status = 200, description = "What was found", body = DetectAnswer),
        (status = 400, description = "The request or its context is malformed", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn wizard_detect() {}

/// List loaded plugins
#[utoipa::path(
    get, path = "/v1/plugins", operation_id = "listPlugins", tag = "plugins",
    responses(
        (status = 200, description = "Loaded plugins, and those refused with why", body = PluginList),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn list_plugins() {}

/// Save an organization's secrets (SaveBuildSecrets)
#[utoipa::path(
    put, path = "/v1/secrets", operation_id = "saveBuildSecrets", tag = "secrets",
    request_body = SaveSecretsRequest,
    responses(
        (status = 200, description = "Saved; every value shown as `***`", body = MaskedSecrets),
        (status = 400, description = "A host, name or value is malformed; nothing was saved", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 409, description = "The credential store is read-only", body = ErrorBody),
        (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn save_build_secrets() {}

/// List an organization's secrets, every value `***`
#[utoipa::path(
    get, path = "/v1/secrets", operation_id = "listBuildSecrets", tag = "secrets",
    responses(
        (status = 200, description = "Names, never values", body = MaskedSecrets),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn list_build_secrets() {}

/// Remove one secret
#[utoipa::path(
    delete, path = "/v1/secrets/{kind}/{name}", operation_id = "deleteBuildSecret", tag = "secrets",
    params(
        ("kind" = String, Path, description = "`registry`, `git` or `build`"),
        ("name" = String, Path, description = "The registry host, git host or build secret name"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 404, description = "No such secret (or kind)", body = ErrorBody),
        (status = 409, description = "The credential store is read-only", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn delete_build_secret() {}

/// Create an organization (admin token)
#[utoipa::path(
    post, path = "/v1/orgs", operation_id = "createOrg", tag = "admin",
    request_body = CreateOrgRequest,
    responses(
        (status = 201, description = "Created", body = Org),
        (status = 400, description = "The name is malformed", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 409, description = "The organization exists", body = ErrorBody),
        (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn create_org() {}

/// List organizations (admin token)
#[utoipa::path(
    get, path = "/v1/orgs", operation_id = "listOrgs", tag = "admin",
    responses(
        (status = 200, description = "Every organization", body = OrgList),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn list_orgs() {}

/// Run garbage collection now, or say what it would remove (admin token)
///
/// Applies the server's `[retention]` rules (the same run the server does
/// in the background every `retention.interval_minutes`). One run at a
/// time: a request while one runs waits for it.
#[utoipa::path(
    post, path = "/v1/gc", operation_id = "collectGarbage", tag = "admin",
    request_body = GcRequest,
    responses(
        (status = 200, description = "What went (or, dry, would go)", body = GcReport),
        (status = 400, description = "The body is malformed", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn collect_garbage() {}

/// The engines builds run on: health, load, platforms (admin token)
#[utoipa::path(
    get, path = "/v1/engines", operation_id = "listEngines", tag = "admin",
    responses(
        (status = 200, description = "Every engine of the pool, in configuration order", body = EngineList),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn list_engines() {}

/// Drain an engine: it finishes its builds and takes no new ones (admin token)
#[utoipa::path(
    post, path = "/v1/engines/{engine}:drain", operation_id = "drainEngine", tag = "admin",
    params(("engine" = String, Path, description = "The engine's name")),
    responses(
        (status = 200, description = "The engine, draining", body = Engine),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such engine", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn drain_engine() {}

/// Resume a drained engine: it takes builds again (admin token)
#[utoipa::path(
    post, path = "/v1/engines/{engine}:resume", operation_id = "resumeEngine", tag = "admin",
    params(("engine" = String, Path, description = "The engine's name")),
    responses(
        (status = 200, description = "The engine, taking builds", body = Engine),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such engine", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn resume_engine() {}

/// Create a token for an organization (admin token); it is shown once
#[utoipa::path(
    post, path = "/v1/orgs/{org}/tokens", operation_id = "createToken", tag = "admin",
    params(("org" = String, Path, description = "The organization")),
    responses(
        (status = 201, description = "The token; store it now, it is not shown again", body = NewToken),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such organization", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn create_token() {}

/// Give an organization its own registry (admin token)
///
/// From its next build on, its images are pushed to
/// `<host>/<namespace>/<name>:<tag>` and its layer cache to
/// `<host>/<namespace>/cache/<name>`, with its registry credential for
/// `host` (`PUT /v1/secrets` `registryCredentials`), which also pulls its
/// private base images there. Builds already accepted keep their target.
#[utoipa::path(
    put, path = "/v1/orgs/{org}/registry", operation_id = "setOrgRegistry", tag = "admin",
    params(("org" = String, Path, description = "The organization")),
    request_body = RegistryTarget,
    responses(
        (status = 200, description = "Its builds go there from now on", body = RegistryTarget),
        (status = 400, description = "The host or namespace is not usable; the message says why", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such organization", body = ErrorBody),
        (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn set_org_registry() {}

/// Where an organization's images go (admin token)
#[utoipa::path(
    get, path = "/v1/orgs/{org}/registry", operation_id = "getOrgRegistry", tag = "admin",
    params(("org" = String, Path, description = "The organization")),
    responses(
        (status = 200, description = "Its own registry, or the server's under its name", body = RegistryTarget),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such organization", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn get_org_registry() {}

/// Turn signing and provenance on or off for an organization (admin token)
///
/// Its builds that finish from now on follow the setting; until it is
/// set, the server's `[signing] enabled` (on by default) applies.
#[utoipa::path(
    put, path = "/v1/orgs/{org}/signing", operation_id = "setOrgSigning", tag = "admin",
    params(("org" = String, Path, description = "The organization")),
    request_body = SigningSetting,
    responses(
        (status = 200, description = "The setting, as it is now", body = SigningSetting),
        (status = 400, description = "The body is not `{\"enabled\": true|false}`", body = ErrorBody),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such organization", body = ErrorBody),
        (status = 415, description = "The body is not sent as `Content-Type: application/json`", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn set_org_signing() {}

/// Whether an organization's images are signed and attested (admin token)
#[utoipa::path(
    get, path = "/v1/orgs/{org}/signing", operation_id = "getOrgSigning", tag = "admin",
    params(("org" = String, Path, description = "The organization")),
    responses(
        (status = 200, description = "Its own setting, else the server's", body = SigningSetting),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such organization", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn get_org_signing() {}

/// The public key an organization's images are signed with
///
/// Every pushed image is signed in cosign's key-based format (the
/// signature under the image's `sha256-<digest>.sig` tag); `cosign verify
/// --key` takes this PEM. The key is the one Kiln made for the organization,
/// or its own when the credential store keeping its secrets holds one
/// (`signing/key`). The organization's own token or the admin token.
#[utoipa::path(
    get, path = "/v1/orgs/{org}/signing-key", operation_id = "getSigningKey", tag = "admin",
    params(("org" = String, Path, description = "The organization")),
    responses(
        (status = 200, description = "The ECDSA P-256 public key, PEM (SubjectPublicKeyInfo)", body = String, content_type = "application/x-pem-file"),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 404, description = "No such organization (or another organization's)", body = ErrorBody),
        (status = 409, description = "The organization's own key, in its credential store, cannot be read or is not an ECDSA P-256 private key", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn get_signing_key() {}

/// Send an organization's images to the server's registry again (admin token)
#[utoipa::path(
    delete, path = "/v1/orgs/{org}/registry", operation_id = "resetOrgRegistry", tag = "admin",
    params(("org" = String, Path, description = "The organization")),
    responses(
        (status = 204, description = "Its next builds push to the server's registry"),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such organization", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn reset_org_registry() {}

/// Revoke a token (admin token)
#[utoipa::path(
    delete, path = "/v1/orgs/{org}/tokens/{tokenId}", operation_id = "revokeToken", tag = "admin",
    params(
        ("org" = String, Path, description = "The organization"),
        ("tokenId" = String, Path, description = "The token's id (not the token)"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No token, or an unknown or revoked one", body = ErrorBody),
        (status = 403, description = "Not the admin token", body = ErrorBody),
        (status = 404, description = "No such organization or token", body = ErrorBody),
    )
)]
#[allow(dead_code)]
fn revoke_token() {}

/// This document
#[utoipa::path(
    get, path = "/v1/openapi.json", operation_id = "openapi", tag = "operations",
    security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)),
)]
#[allow(dead_code)]
fn openapi() {}

/// Prometheus metrics
///
/// Open unless the operator configured a metrics token
/// (`--metrics-token-file`); then it needs `Authorization: Bearer <that token>`.
#[utoipa::path(
    get, path = "/metrics", operation_id = "metrics", tag = "operations",
    security((), ("bearer" = [])),
    responses(
        (status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain"),
        (status = 401, description = "A metrics token is configured and was not given", body = ErrorBody),
    ),
)]
#[allow(dead_code)]
fn metrics() {}

/// Liveness
#[utoipa::path(
    get, path = "/healthz", operation_id = "healthz", tag = "operations",
    security(()),
    responses((status = 200, description = "`{\"status\": \"ok\"}`", body = Object, content_type = "application/json")),
)]
#[allow(dead_code)]
fn healthz() {}

/// A self-contained JSON Schema (2020-12, OpenAPI 3.1's dialect) for one of
/// `document`'s component schemas, for validating a payload against the
/// document with any JSON Schema validator.
///
/// `closed` shuts every object schema that lists properties and leaves
/// `additionalProperties` open, so a field the document does not name
/// fails: that is how tests prove the document names everything the server
/// sends. `None` when the document has no schema `name`.
pub fn component_schema(
    document: &serde_json::Value,
    name: &str,
    closed: bool,
) -> Option<serde_json::Value> {
    document["components"]["schemas"].get(name)?;
    let mut components = document["components"].clone();
    if closed {
        close_objects(&mut components);
    }
    Some(serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$ref": format!("#/components/schemas/{name}"),
        "components": components,
    }))
}

fn close_objects(schema: &mut serde_json::Value) {
    match schema {
        serde_json::Value::Object(map) => {
            if map.contains_key("properties") && !map.contains_key("additionalProperties") {
                map.insert("additionalProperties".into(), false.into());
            }
            map.values_mut().for_each(close_objects);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(close_objects),
        _ => {}
    }
}

// Field schemas that carry the rules of `crate::validate` (patterns,
// limits), so the document admits exactly what the server accepts. They
// are laid over the derived schemas by wire name (utoipa's attributes take
// only literals, and its typed schema cannot hold `propertyNames` or a
// nullable map of references). A kiln-api test checks each pattern against
// its check function, and `apply` panics on a property the types lack, so
// a renamed field cannot leave a rule behind silently.
mod fields {
    use serde_json::{json, Value};

    use crate::validate::*;

    /// `schema`, or `null` (an `Option` field: serde takes `null` as absent).
    fn or_null(schema: Value) -> Value {
        json!({ "oneOf": [schema, { "type": "null" }] })
    }

    /// (component, property, schema) for every field with a rule.
    fn rules() -> Vec<(&'static str, &'static str, Value)> {
        let variable_names = |description: &str| {
            or_null(json!({
                "type": "array", "maxItems": MAX_SECRETS, "uniqueItems": true,
                "items": { "type": "string", "pattern": VARIABLE_PATTERN },
                "description": description,
            }))
        };
        let credentials_by_host = |credential: Value, description: &str| {
            json!({
                "type": "object",
                "propertyNames": { "pattern": CREDENTIAL_HOST_PATTERN, "maxLength": 255 },
                "additionalProperties": or_null(credential),
                "description": description,
            })
        };
        let credential = json!({ "$ref": "#/components/schemas/CredentialInput" });
        // Registries authenticate a user: their credentials name one.
        let registry_credential = json!({ "allOf": [
            credential.clone(),
            { "required": ["username"], "properties": { "username": { "minLength": 1 } } },
        ]});
        vec![
            ("CreateBuildRequest", "name", json!({
                "type": "string", "pattern": NAME_PATTERN, "maxLength": 128,
                "description": "The image name: lowercase path components, e.g. `hello` or `team/api`; the image is pushed to `<registry>/<org>/<name>:<tag>`.",
                "examples": ["hello", "team/api"],
            })),
            ("CreateBuildRequest", "tags", or_null(json!({
                "type": "array", "minItems": 1, "maxItems": MAX_TAGS,
                "items": { "type": "string", "pattern": TAG_PATTERN },
                "default": ["latest"],
                "description": format!("The tags to push, 1 to {MAX_TAGS}."),
            }))),
            ("CreateBuildRequest", "buildArgs", or_null(json!({
                "type": "object", "maxProperties": MAX_BUILD_ARGS,
                "propertyNames": { "pattern": VARIABLE_PATTERN },
                "additionalProperties": { "type": "string", "maxLength": MAX_BUILD_ARG_VALUE_BYTES },
                "description": format!(
                    "Build args, at most {MAX_BUILD_ARGS}; each value at most {} KiB, names and values together at most {} KiB (in bytes).",
                    MAX_BUILD_ARG_VALUE_BYTES >> 10, MAX_BUILD_ARGS_TOTAL_BYTES >> 10
                ),
            }))),
            ("CreateBuildRequest", "secretBuildArgs", variable_names(
                "Build secrets passed as build args of the same name (values masked in the log and never stored in the record; visible in the image's history, as any build arg is).",
            )),
            ("CreateBuildRequest", "secrets", variable_names(
                "Build secrets to mount with `RUN --mount=type=secret,id=NAME` (nothing of them stays in the image).",
            )),
            ("CreateBuildRequest", "platform", or_null(json!({
                "type": "string", "pattern": PLATFORM_PATTERN,
                "description": "os/arch[/variant] to build for.", "examples": ["linux/amd64"],
            }))),
            ("CreateBuildRequest", "platforms", or_null(json!({
                "type": "array", "minItems": 1, "maxItems": MAX_PLATFORMS, "uniqueItems": true,
                "items": { "type": "string", "pattern": PLATFORM_PATTERN },
                "description": "Platforms (os/arch[/variant]) for one multi-platform image: one build per platform, then an image index pushed under every tag (each platform's image also under `<tag>-<os>-<arch>[-<variant>]`). Not with `platform`.",
                "examples": [["linux/amd64", "linux/arm64"]],
            }))),
            ("CreateBuildRequest", "target", or_null(json!({
                "type": "string", "pattern": TARGET_PATTERN,
                "description": "The Dockerfile stage to build.",
            }))),
            ("CreateBuildRequest", "dockerfile", or_null(json!({
                "type": "string", "pattern": CONTEXT_PATH_PATTERN, "default": "Dockerfile",
                "description": "The Dockerfile's path in the context (relative, inside it).",
            }))),
            ("CreateBuildRequest", "contextDir", or_null(json!({
                "type": "string", "pattern": CONTEXT_PATH_PATTERN,
                "description": "A directory of the context to build instead of its root (one project of a monorepo, as `wizard:detect` lists them); for git sources use `gitSource.contextDir`.",
            }))),
            ("CreateBuildRequest", "profile", or_null(json!({
                "type": "string", "enum": crate::validate::profile_names(),
                "description": "The resource profile (memory and CPU): `auto` sizes it by the build's history and rebuilds once one size up after OUT_OF_MEMORY; `xlarge` is `extra-large`; absent: the server's default (`auto`).",
            }))),
            ("CreateProjectRequest", "name", json!({
                "type": "string", "pattern": NAME_PATTERN, "maxLength": 128,
                "description": "The image name (unique among the organization's projects); images go to `<registry>/<org>/<name>:<tag>`.",
                "examples": ["api", "team/web"],
            })),
            ("CreateProjectRequest", "profile", or_null(json!({
                "type": "string", "enum": crate::validate::profile_names(),
                "description": "The resource profile (`auto`, or a size); absent: the server's default.",
            }))),
            ("CreateOrgRequest", "name", json!({
                "type": "string", "pattern": ORG_PATTERN,
                "description": "1 to 64 lowercase letters, digits and `-`, not starting or ending with `-`: it becomes part of image references.",
                "examples": ["team-a"],
            })),
            ("SaveSecretsRequest", "registryCredentials", credentials_by_host(
                registry_credential,
                "Registry host (`host` or `host:port`) → credential, used to push and to pull private base images; null removes it.",
            )),
            ("SaveSecretsRequest", "gitCredentials", credentials_by_host(
                credential,
                "Git host (or `*` for every host) → credential; null removes it.",
            )),
            ("SaveSecretsRequest", "buildSecrets", json!({
                "type": "object",
                "propertyNames": { "pattern": VARIABLE_PATTERN },
                "additionalProperties": or_null(json!({
                    "type": "string", "minLength": MIN_SECRET_CHARS, "maxLength": MAX_SECRET_BYTES,
                })),
                "description": format!(
                    "Build secret name → value ({MIN_SECRET_CHARS} characters at least, so it can be masked), or null to remove it."
                ),
            })),
            ("CredentialInput", "password", json!({
                "type": "string", "minLength": MIN_SECRET_CHARS, "maxLength": MAX_SECRET_BYTES,
                "description": "A password or a token (`token` is accepted as the same field).",
            })),
            ("CredentialInput", "token", json!({
                "type": "string", "minLength": MIN_SECRET_CHARS, "maxLength": MAX_SECRET_BYTES,
                "description": "Another name for `password`; give one of them.",
            })),
        ]
    }

    /// One of several fields, each optional on its own, is required: a
    /// `oneOf` of "this field, not null" per field (serde reads `null` as
    /// absent, so a null field does not count).
    fn exactly_one_of(fields: &[(&str, &str)]) -> Value {
        let branches: Vec<Value> = fields
            .iter()
            .map(|(field, kind)| {
                let mut properties = serde_json::Map::new();
                properties.insert(field.to_string(), json!({ "type": kind }));
                json!({ "required": [field], "properties": properties })
            })
            .collect();
        json!(branches)
    }

    /// (component, keyword, value): rules over a whole object.
    fn object_rules() -> Vec<(&'static str, &'static str, Value)> {
        vec![
            (
                "CreateBuildRequest",
                "oneOf",
                exactly_one_of(&[
                    ("zippedCode", "string"),
                    ("contextId", "string"),
                    ("gitSource", "object"),
                    ("contextUrl", "string"),
                ]),
            ),
            // `password` or its alias `token` (serde refuses both at once).
            (
                "CredentialInput",
                "oneOf",
                json!([
                    { "required": ["password"] },
                    { "required": ["token"] },
                ]),
            ),
            (
                "DetectRequest",
                "oneOf",
                exactly_one_of(&[
                    ("zippedCode", "string"),
                    ("contextId", "string"),
                    ("gitSource", "object"),
                ]),
            ),
        ]
    }

    /// Properties serde reads under a second name (`#[serde(alias)]`),
    /// which the derived schemas do not list.
    const ALIASES: &[(&str, &str)] = &[("CredentialInput", "token")];

    /// Lays the rules over the derived document.
    pub fn apply(document: &mut Value) {
        for (component, alias) in ALIASES {
            let properties = document
                .pointer_mut(&format!("/components/schemas/{component}/properties"))
                .and_then(Value::as_object_mut)
                .unwrap_or_else(|| panic!("the document has no {component} to carry {alias}"));
            properties.insert(alias.to_string(), json!({}));
        }
        for (component, keyword, value) in object_rules() {
            let schema = document
                .pointer_mut(&format!("/components/schemas/{component}"))
                .and_then(Value::as_object_mut)
                .unwrap_or_else(|| panic!("the document has no {component} to carry its rule"));
            let named = |v: &Value| v.as_str().map(str::to_string);
            let fields: Vec<String> = match keyword {
                "required" => value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(named)
                    .collect(),
                _ => value
                    .as_array()
                    .into_iter()
                    .flatten()
                    .flat_map(|branch| branch["required"].as_array().into_iter().flatten())
                    .filter_map(named)
                    .collect(),
            };
            for field in &fields {
                assert!(
                    schema["properties"].get(field.as_str()).is_some(),
                    "{component} has no {field} for its {keyword} rule"
                );
            }
            schema.insert(keyword.into(), value);
        }
        for (component, property, schema) in rules() {
            let slot = document
                .pointer_mut(&format!(
                    "/components/schemas/{component}/properties/{property}"
                ))
                .unwrap_or_else(|| {
                    panic!("the document has no {component}.{property} to carry its rule")
                });
            *slot = schema;
        }
    }
}
