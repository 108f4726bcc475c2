//! `kiln-api`: Kiln's HTTP API as Rust types, shared by the server, the
//! `kiln` CLI and any Rust program that drives a Kiln server.
//!
//! | module | what lives there |
//! |---|---|
//! | [`builds`] | CreateBuild's body, the build view (`GET /v1/builds/{id}`), pages, log lines, uploaded contexts |
//! | [`projects`] | projects (saved build recipes built on a push), their triggers and push answers |
//! | [`webhooks`] | completion webhooks: subscriptions, the build events delivered (Standard Webhooks), deliveries |
//! | [`admin`] | organizations and tokens, masked secrets, loaded plugins, the wizard's detection |
//! | [`error`] | the one error body every route answers with |
//! | [`validate`] | the rules a well-formed request follows (names, tags, paths, refs), with messages that say how to fix it |
//! | [`dockerignore`] | `.dockerignore` with Docker's semantics: the client packs exactly what the server would keep |
//! | [`client`] | (feature `client`) a typed async client over hyper |
//! | [`openapi`] | (feature `openapi`) the OpenAPI 3.1 document, derived from these types |
//!
//! These are the wire types: the server converts its storage records into
//! them at the edge, so the store's format can change without changing the
//! API, and the CLI reads the answers it is given as these same types.
//! This crate depends on no part of the server (no wasmtime, bollard, sled
//! or gix): the client-only `kiln` build is this crate plus the CLI.

pub mod admin;
pub mod builds;
pub mod dockerignore;
pub mod error;
pub mod projects;
pub mod validate;
pub mod webhooks;

#[cfg(feature = "client")]
pub mod client;
#[cfg(feature = "openapi")]
pub mod openapi;

pub use admin::{
    CreateOrgRequest, CredentialInput, DetectAnswer, DetectRequest, DetectedProject, Engine,
    EngineHealth, EngineList, GcItem, GcReport, GcRequest, GcTotal, MaskedCredential,
    MaskedSecrets, NewToken, Org, OrgList, Permissions, PluginKinds, PluginLimits, PluginList,
    PluginLoadError, PluginView, RegistryTarget, SaveSecretsRequest, SigningSetting,
};
pub use builds::{
    Attachment, Build, BuildAccepted, BuildAttempt, BuildList, BuildSettings, BuildStatus,
    CreateBuildRequest, Failure, FailureReason, GitSource, GitSourceRequest, LogLine, Metrics,
    Phases, PlatformImage, RefKind, Source, UploadedContext, WizardDetection,
};
pub use error::ErrorBody;
pub use projects::{
    CreateProjectRequest, Project, ProjectBuildRequest, ProjectGitSource, ProjectList, PushAnswer,
    Trigger, TriggerKind, UpdateProjectRequest,
};
pub use webhooks::{
    BuildEvent, BuildSummary, CreateWebhookRequest, Delivery, DeliveryAttempt, DeliveryList,
    DeliveryStatus, NotifierTarget, Webhook, WebhookList,
};

#[cfg(feature = "client")]
pub use client::{ApiClient, ClientError, ListBuilds};
