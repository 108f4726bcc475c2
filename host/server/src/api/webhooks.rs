//! Completion webhooks: CreateWebhook, ListWebhooks, DeleteWebhook, a
//! webhook's deliveries, and redelivering one.

use chrono::Utc;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::routes::Caller;
use super::{json_response, no_content, read_json, ApiError, ApiState, Body};
use crate::store::{OutboundDelivery, WebhookRecord};
use kiln_api::webhooks::EVENT_TYPES;
use kiln_api::{CreateWebhookRequest, DeliveryList, WebhookList};

const MAX_BODY_BYTES: usize = 64 << 10;
/// Deliveries a listing shows.
const DELIVERIES_SHOWN: usize = 100;
/// The longest webhook URL.
const MAX_URL_BYTES: usize = 2048;

fn view(record: &WebhookRecord) -> kiln_api::Webhook {
    kiln_api::Webhook {
        webhook_id: record.webhook_id.clone(),
        url: record.notifier.is_none().then(|| record.url.clone()),
        notifier: record.notifier.clone(),
        events: record.events.clone(),
        project_id: record.project_id.clone(),
        secret: None,
        create_time: record.create_time,
    }
}

fn delivery_view(delivery: &OutboundDelivery) -> kiln_api::Delivery {
    kiln_api::Delivery {
        delivery_id: delivery.delivery_id.clone(),
        event_type: delivery.event_type.clone(),
        build_id: delivery.build_id.clone(),
        status: delivery.status,
        attempts: delivery.attempts,
        create_time: delivery.create_time,
        next_attempt_time: delivery.next_attempt_time,
        last_attempt: delivery.last_attempt.clone(),
    }
}

/// A webhook URL: absolute http(s), no credentials in it (a secret would
/// be shown back in every listing).
fn check_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        format!("`url` {url:?} is not an absolute URL ({e}); give e.g. \"https://deploy.example.com/kiln\"")
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "`url` must be http:// or https://, not {}://",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("`url` {url:?} names no host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("`url` must not carry credentials; verify deliveries by their signature (the webhook's secret)".into());
    }
    if url.len() > MAX_URL_BYTES {
        return Err(format!("`url` is longer than {MAX_URL_BYTES} bytes"));
    }
    Ok(())
}

/// Options a notifier subscription may carry, and their sizes.
const MAX_NOTIFIER_OPTIONS: usize = 32;
const MAX_OPTION_KEY_BYTES: usize = 64;
const MAX_OPTION_VALUE_BYTES: usize = 16 << 10;

/// A notifier subscription: a loaded notifier plugin, and options of a
/// sane shape (what they mean is the plugin's to judge, per attempt).
fn check_notifier(state: &ApiState, target: &kiln_api::NotifierTarget) -> Result<(), String> {
    let notifiers: Vec<&str> = state
        .runtime
        .plugins()
        .filter(|p| p.world == kiln_plugin_runtime::World::Notifier)
        .map(|p| p.manifest.id.as_str())
        .collect();
    let known = || {
        if notifiers.is_empty() {
            "this server has no notifier plugin".to_string()
        } else {
            format!("the notifiers are {}", notifiers.join(", "))
        }
    };
    match state.runtime.plugin(&target.plugin) {
        None => {
            return Err(format!(
                "`notifier.plugin`: {:?} is not a plugin of this server; {}",
                target.plugin,
                known()
            ))
        }
        Some(plugin) if plugin.world != kiln_plugin_runtime::World::Notifier => {
            return Err(format!(
                "`notifier.plugin`: {} is a {} plugin, not a notifier; {}",
                target.plugin,
                plugin.world.wit_name(),
                known()
            ))
        }
        Some(_) => {}
    }
    if target.options.len() > MAX_NOTIFIER_OPTIONS {
        return Err(format!(
            "`notifier.options` has {} options; at most {MAX_NOTIFIER_OPTIONS}",
            target.options.len()
        ));
    }
    for (key, value) in &target.options {
        let key_ok = !key.is_empty()
            && key.len() <= MAX_OPTION_KEY_BYTES
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !key_ok {
            return Err(format!(
                "`notifier.options`: {key:?} is not an option name (1-{MAX_OPTION_KEY_BYTES} letters, digits, `-`, `_` or `.`)"
            ));
        }
        if value.len() > MAX_OPTION_VALUE_BYTES {
            return Err(format!(
                "`notifier.options.{key}` is longer than {} KiB",
                MAX_OPTION_VALUE_BYTES >> 10
            ));
        }
    }
    Ok(())
}

/// A notifier's secrets are build secrets the organization saved, and
/// every `@@secret:NAME@@` its options use is one of them.
async fn check_notifier_secrets(
    state: &ApiState,
    org: &str,
    target: &kiln_api::NotifierTarget,
) -> Result<(), ApiError> {
    let named = target
        .options
        .values()
        .flat_map(|value| kiln_plugin_runtime::http::secret_names(value));
    for name in named {
        if !target.secrets.iter().any(|s| s == name) {
            return Err(ApiError::bad_request(format!(
                "`notifier.options` uses @@secret:{name}@@; list {name:?} in `notifier.secrets` (a build secret the organization saved)"
            )));
        }
    }
    if target.secrets.is_empty() {
        return Ok(());
    }
    let builds = super::secrets::saved_build_secrets(state, org).await?;
    if let Some(missing) = target.secrets.iter().find(|s| !builds.contains(s)) {
        return Err(ApiError::bad_request(format!(
            "`notifier.secrets`: {missing:?} is not a build secret of this organization; save it first (PUT /v1/secrets {{\"buildSecrets\": {{\"{missing}\": \"…\"}}}})"
        )));
    }
    Ok(())
}

pub async fn create(
    state: &ApiState,
    caller: &Caller,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let bad = ApiError::bad_request;
    let body: CreateWebhookRequest =
        read_json(state, request, MAX_BODY_BYTES, "CreateWebhook", || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("a webhook body is at most {} KiB", MAX_BODY_BYTES >> 10),
            )
        })
        .await?;
    match (&body.url, &body.notifier) {
        (Some(url), None) => check_url(url).map_err(bad)?,
        (None, Some(notifier)) => {
            check_notifier(state, notifier).map_err(bad)?;
            check_notifier_secrets(state, &caller.org, notifier).await?;
        }
        (Some(_), Some(_)) => {
            return Err(bad(
                "give `url` (Kiln signs and POSTs each event) or `notifier` (a notifier plugin delivers it), not both".into(),
            ))
        }
        (None, None) => {
            return Err(bad(
                "say where events go: `url` (e.g. \"https://deploy.example.com/kiln\") or `notifier` ({\"plugin\": \"http-post\", \"options\": {…}})".into(),
            ))
        }
    }
    let events = match body.events {
        None => EVENT_TYPES.map(String::from).to_vec(),
        Some(events) if events.is_empty() => {
            return Err(bad(format!(
                "`events` is empty; name some of {} (or leave it out for all)",
                EVENT_TYPES.join(", ")
            )))
        }
        Some(events) => {
            if let Some(unknown) = events.iter().find(|e| !EVENT_TYPES.contains(&e.as_str())) {
                return Err(bad(format!(
                    "`events`: {unknown:?} is not an event; the events are {}",
                    EVENT_TYPES.join(", ")
                )));
            }
            let mut events = events;
            events.dedup();
            events
        }
    };
    if let Some(project_id) = &body.project_id {
        if state
            .store
            .project_for_org(&caller.org, project_id)?
            .is_none()
        {
            return Err(bad(format!(
                "`projectId` {project_id:?} is not a project of this organization"
            )));
        }
    }
    let webhook_id = uuid::Uuid::new_v4().to_string();
    // A notifier's deliveries are not signed by Kiln: it gets no secret.
    let secret = body.url.is_some().then(crate::projects::push::new_secret);
    let sealed = match &secret {
        Some(secret) => state
            .secrets
            .local()
            .seal_text(&crate::webhooks::secret_context(&webhook_id), secret)
            .map_err(ApiError::internal)?,
        None => String::new(),
    };
    let record = WebhookRecord {
        webhook_id,
        org: caller.org.clone(),
        url: body.url.unwrap_or_default(),
        notifier: body.notifier,
        events,
        project_id: body.project_id,
        sealed_secret: sealed,
        create_time: Utc::now(),
    };
    state.store.create_webhook(&record)?;
    state.store.flush().await?;
    Ok(json_response(
        StatusCode::CREATED,
        &kiln_api::Webhook {
            secret,
            ..view(&record)
        },
    ))
}

pub fn list(state: &ApiState, caller: &Caller) -> Result<Response<Body>, ApiError> {
    let webhooks = state
        .store
        .webhooks(&caller.org)?
        .iter()
        .map(view)
        .collect();
    Ok(json_response(StatusCode::OK, &WebhookList { webhooks }))
}

fn find(state: &ApiState, caller: &Caller, webhook_id: &str) -> Result<WebhookRecord, ApiError> {
    state
        .store
        .webhook_for_org(&caller.org, webhook_id)?
        .ok_or_else(|| ApiError::not_found(&format!("webhook {webhook_id}")))
}

pub async fn delete(
    state: &ApiState,
    caller: &Caller,
    webhook_id: &str,
) -> Result<Response<Body>, ApiError> {
    let record = find(state, caller, webhook_id)?;
    state.store.delete_webhook(&record)?;
    state.store.flush().await?;
    Ok(no_content())
}

pub fn deliveries(
    state: &ApiState,
    caller: &Caller,
    webhook_id: &str,
) -> Result<Response<Body>, ApiError> {
    find(state, caller, webhook_id)?;
    let deliveries = state
        .store
        .outbound_for(webhook_id, DELIVERIES_SHOWN)?
        .iter()
        .map(delivery_view)
        .collect();
    Ok(json_response(StatusCode::OK, &DeliveryList { deliveries }))
}

/// Send a delivery again now (the same id and body), whatever became of it.
pub async fn redeliver(
    state: &ApiState,
    caller: &Caller,
    webhook_id: &str,
    delivery_id: &str,
) -> Result<Response<Body>, ApiError> {
    find(state, caller, webhook_id)?;
    let delivery = state
        .store
        .outbound(webhook_id, delivery_id)?
        .ok_or_else(|| ApiError::not_found(&format!("delivery {delivery_id}")))?;
    let again = state.webhooks.redeliver(&delivery)?;
    state.store.flush().await?;
    Ok(json_response(StatusCode::ACCEPTED, &delivery_view(&again)))
}
