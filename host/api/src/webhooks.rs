//! Completion webhooks on the wire: subscriptions, the events Kiln
//! delivers (signed as the Standard Webhooks specification says), and the
//! deliveries' history.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::builds::{BuildStatus, Failure, Metrics, Source};

/// The events a webhook may subscribe to.
pub const EVENT_TYPES: [&str; 5] = [
    "build.queued",
    "build.started",
    "build.succeeded",
    "build.failed",
    "build.cancelled",
];

/// The CreateWebhook body: exactly one of `url` (Kiln signs and POSTs
/// each event itself) and `notifier` (a notifier plugin delivers it).
/// Unknown fields are refused.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateWebhookRequest {
    /// Where deliveries are POSTed: `http://` or `https://`. Loopback,
    /// link-local and private addresses are refused unless the operator
    /// allows the host (`[webhooks] allowed_hosts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A notifier plugin delivers each event instead (a chat message, a
    /// deploy call), with the same queue, retries and history.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifier: Option<NotifierTarget>,
    /// Which events to deliver; default: every one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<String>>,
    /// Only this project's builds; default: every build of the organization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
}

/// Which notifier plugin delivers a subscription's events, and what it is
/// told. `GET /v1/plugins` lists the notifiers this server has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct NotifierTarget {
    /// The plugin's id, e.g. `http-post`.
    pub plugin: String,
    /// The plugin's options, as its documentation gives them (`http-post`:
    /// `url`, `template`). Stored and shown as given: put no credential
    /// here; name one of `secrets` as `@@secret:NAME@@` instead.
    #[serde(default)]
    pub options: std::collections::BTreeMap<String, String>,
    /// Build secrets of the organization (`PUT /v1/secrets`
    /// `buildSecrets`) the notifier may send: written into its HTTP
    /// requests' path, query or headers where they say `@@secret:NAME@@`,
    /// by the host, after the request leaves the plugin, which never holds
    /// the value (a chat hook's token).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
}

/// A webhook subscription (its secret is shown once, when created).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Webhook {
    pub webhook_id: String,
    /// Where Kiln POSTs signed deliveries; absent for a notifier's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notifier: Option<NotifierTarget>,
    pub events: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// `whsec_…`, only in the answer to CreateWebhook of a `url`
    /// subscription: verify deliveries with it (any Standard Webhooks
    /// library).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub create_time: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebhookList {
    pub webhooks: Vec<Webhook>,
}

/// What a delivery's body is: `{type, timestamp, data}`, as the Standard
/// Webhooks specification recommends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BuildEvent {
    /// `build.queued`, `build.started`, `build.succeeded`, `build.failed`
    /// or `build.cancelled`.
    #[serde(rename = "type")]
    pub event_type: String,
    pub timestamp: DateTime<Utc>,
    pub data: BuildSummary,
}

/// The build an event is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct BuildSummary {
    pub build_id: String,
    pub org: String,
    pub number: u64,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    pub status: BuildStatus,
    pub image_refs: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<Failure>,
    /// Where the context came from (for git: the commit and branch).
    pub source: Source,
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Waiting for its next attempt.
    Pending,
    /// A 2xx answer.
    Succeeded,
    /// Given up: refused by the server's network rules, or no 2xx within
    /// the retry window (24 hours).
    Failed,
}

/// One delivery of an event to a webhook, and its last attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// The `webhook-id` header: the same on every attempt.
    pub delivery_id: String,
    pub event_type: String,
    pub build_id: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub create_time: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_time: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_attempt: Option<DeliveryAttempt>,
}

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttempt {
    pub time: DateTime<Utc>,
    pub latency_ms: u64,
    /// The receiver's HTTP status, when it answered (for a notifier: the
    /// status its receiver gave, as the plugin reports it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_code: Option<u16>,
    /// The first bytes of its answer.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub response_excerpt: String,
    /// Why there was no answer (refused, unreachable, timed out), or what
    /// a notifier said went wrong.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// A webhook's deliveries, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct DeliveryList {
    pub deliveries: Vec<Delivery>,
}
