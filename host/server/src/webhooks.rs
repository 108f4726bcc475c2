//! Completion webhooks: build events delivered to subscribers, signed as
//! the Standard Webhooks specification says, through a durable queue.
//!
//! * [`Webhooks::emit`] turns a build's event into one delivery per
//!   subscribed webhook, stored before the caller's flush (the build's
//!   own), so a crash after the event loses none.
//! * [`Webhooks::run`] attempts due deliveries: a 2xx ends one; anything
//!   else retries with exponential backoff and jitter until the retry
//!   window (24 hours by default) has passed. A delivery whose attempt a
//!   killed host did not finish is due again at start-up.
//! * Every attempt checks where it goes first: loopback, link-local and
//!   private addresses are refused (and the reason recorded) unless the
//!   operator allowed the host (`[webhooks] allowed_hosts`); the check is
//!   made again when the connection resolves the name (rebinding).
//!
//! * A subscription with a `notifier` instead of a URL has each attempt
//!   made by that notifier plugin (contract 0.2.0's `notify`): the same
//!   queue, retries and history; the plugin says whether another attempt
//!   could help, and reaches only the hosts the operator granted it.
//!
//! Headers: `webhook-id` (the delivery's id, the same on every attempt),
//! `webhook-timestamp` (the attempt's Unix time) and `webhook-signature`
//! (`v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`, keyed by the
//! bytes the `whsec_` secret encodes).

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use chrono::{DateTime, Utc};
use hmac::{Mac, SimpleHmac};
use kiln_api::{BuildEvent, BuildSummary, DeliveryAttempt, DeliveryStatus, NotifierTarget};
use kiln_plugin_runtime::bindings::{notify, types::KeyValue};
use kiln_plugin_runtime::{Capabilities, PluginRuntime};
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::credentials::CredentialStores;
use crate::metrics::AttemptResult;
use crate::net::{NetworkPolicy, PolicyResolver};
use crate::store::{BuildRecord, OutboundDelivery, Store, StoreError, WebhookRecord};

/// How deliveries are made; `kiln serve`'s `[webhooks]`.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Hosts (names or addresses, as in the URL) deliveries may reach
    /// although they are loopback, link-local or private.
    pub allowed_hosts: Vec<String>,
    /// The wait before the second attempt; each later one waits 4× longer,
    /// up to an hour.
    pub first_retry: Duration,
    /// How long after the event (or a redelivery) attempts go on.
    pub retry_window: Duration,
    /// One attempt's time limit, connection to answer.
    pub timeout: Duration,
    /// The server's public URL, for the build links notifiers are given.
    pub public_url: Option<String>,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        WebhookSettings {
            allowed_hosts: Vec::new(),
            first_retry: Duration::from_secs(5),
            retry_window: Duration::from_secs(24 * 3600),
            timeout: Duration::from_secs(10),
            public_url: None,
        }
    }
}

/// Attempts made at once.
const PARALLEL_ATTEMPTS: usize = 8;
/// The longest wait between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(3600);
/// How much of an answer a delivery keeps.
const EXCERPT_BYTES: usize = 512;

/// The handle the API and the scheduler share. Cheap to clone.
#[derive(Clone)]
pub struct Webhooks {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    secrets: CredentialStores,
    /// Where notifier plugins are called.
    runtime: Arc<PluginRuntime>,
    metrics: Arc<crate::metrics::Metrics>,
    settings: WebhookSettings,
    wake: Notify,
    /// For hosts that must be public: its resolver refuses the rest.
    guarded: reqwest::Client,
    /// For the hosts the operator allowed.
    trusted: reqwest::Client,
}

/// Why a delivery could not be queued or attempted.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the secret of webhook {webhook_id} does not open: {message}")]
    Secret { webhook_id: String, message: String },
}

fn client(settings: &WebhookSettings, guarded: bool) -> reqwest::Client {
    let builder = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        // A redirect would be a second destination the check never saw.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("Kiln-Webhooks/", env!("CARGO_PKG_VERSION")));
    let builder = if guarded {
        builder.dns_resolver(Arc::new(PolicyResolver(NetworkPolicy::default())))
    } else {
        builder
    };
    builder.build().expect("the webhook HTTP client builds")
}

/// What a webhook's secret is sealed against: its own id.
pub fn secret_context(webhook_id: &str) -> Vec<u8> {
    [b"completion-webhook\0".as_slice(), webhook_id.as_bytes()].concat()
}

/// The Standard Webhooks signature of one attempt.
pub fn sign(secret: &str, delivery_id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = crate::projects::push::secret_key_bytes(secret);
    let mut mac = SimpleHmac::<Sha256>::new_from_slice(&key).expect("any key length");
    mac.update(delivery_id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// A build as its events describe it.
pub fn summary(record: &BuildRecord) -> BuildSummary {
    let build = kiln_api::Build::from(record);
    BuildSummary {
        build_id: build.build_id,
        org: record.org.clone(),
        number: build.number,
        name: build.name,
        project_id: build.project_id,
        status: build.status,
        image_refs: build.image_refs,
        digest: build.digest,
        metrics: build.metrics,
        failure: build.failure,
        source: build.source,
    }
}

impl Webhooks {
    pub fn new(
        store: Store,
        secrets: CredentialStores,
        runtime: Arc<PluginRuntime>,
        metrics: Arc<crate::metrics::Metrics>,
        settings: WebhookSettings,
    ) -> Self {
        Webhooks {
            inner: Arc::new(Inner {
                guarded: client(&settings, true),
                trusted: client(&settings, false),
                store,
                secrets,
                runtime,
                metrics,
                settings,
                wake: Notify::new(),
            }),
        }
    }

    pub fn settings(&self) -> &WebhookSettings {
        &self.inner.settings
    }

    /// Queue `event_type` of `record` for every webhook of its organization
    /// that subscribed to it; returns how many deliveries. The caller
    /// flushes the store (with the record's own change), then the
    /// deliveries go out.
    ///
    /// Every event is also kept in the organization's event log, which
    /// `GET /v1/events` (and the dashboard's live list) follows.
    pub fn emit(&self, record: &BuildRecord, event_type: &str) -> Result<usize, StoreError> {
        let store = &self.inner.store;
        let now = Utc::now();
        let body = serde_json::to_string(&BuildEvent {
            event_type: event_type.to_string(),
            timestamp: now,
            data: summary(record),
        })
        .expect("events serialize");
        store.append_event(&record.org, &body)?;
        let subscribed: Vec<WebhookRecord> = store
            .webhooks(&record.org)?
            .into_iter()
            .filter(|w| w.events.iter().any(|e| e == event_type))
            .filter(|w| {
                w.project_id
                    .as_ref()
                    .is_none_or(|p| record.project_id.as_ref() == Some(p))
            })
            .collect();
        if subscribed.is_empty() {
            return Ok(0);
        }
        for webhook in &subscribed {
            store.put_outbound(&OutboundDelivery {
                delivery_id: store.next_delivery_id()?,
                webhook_id: webhook.webhook_id.clone(),
                event_type: event_type.to_string(),
                build_id: record.build_id.clone(),
                body: body.clone(),
                status: DeliveryStatus::Pending,
                attempts: 0,
                create_time: now,
                give_up_time: now + self.inner.settings.retry_window,
                next_attempt_time: Some(now),
                last_attempt: None,
            })?;
        }
        self.inner.wake.notify_one();
        Ok(subscribed.len())
    }

    /// Queue `event_type` and make it durable at once (where no flush of
    /// the caller's follows).
    pub async fn emit_durably(&self, record: &BuildRecord, event_type: &str) {
        match self.emit(record, event_type) {
            Ok(0) => {}
            Ok(_) => {
                if let Err(e) = self.inner.store.flush().await {
                    tracing::error!(build_id = %record.build_id, "cannot store the {event_type} deliveries: {e}");
                }
            }
            Err(e) => {
                tracing::error!(build_id = %record.build_id, "cannot queue the {event_type} deliveries: {e}")
            }
        }
    }

    /// Attempt `delivery` again now, with a new retry window.
    pub fn redeliver(&self, delivery: &OutboundDelivery) -> Result<OutboundDelivery, StoreError> {
        let now = Utc::now();
        let again = OutboundDelivery {
            status: DeliveryStatus::Pending,
            give_up_time: now + self.inner.settings.retry_window,
            next_attempt_time: Some(now),
            ..delivery.clone()
        };
        self.inner.store.reschedule_outbound(delivery, &again)?;
        self.inner.wake.notify_one();
        Ok(again)
    }

    /// Attempt due deliveries until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        match self.inner.store.recover_outbound(Utc::now()) {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                n,
                "webhook deliveries an earlier run did not finish are due again"
            ),
            Err(e) => tracing::error!("cannot recover webhook deliveries: {e}"),
        }
        let slots = Arc::new(tokio::sync::Semaphore::new(PARALLEL_ATTEMPTS));
        loop {
            let now = Utc::now();
            let (due, next) = match self.inner.store.due_outbound(now, PARALLEL_ATTEMPTS) {
                Ok(found) => found,
                Err(e) => {
                    tracing::error!("cannot read the webhook queue: {e}");
                    (Vec::new(), Some(now + Duration::from_secs(5)))
                }
            };
            let took_some = !due.is_empty();
            for entry in due {
                let Ok(permit) = slots.clone().acquire_owned().await else {
                    return;
                };
                match self.inner.store.claim_due(&entry) {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::error!("cannot claim a webhook delivery: {e}");
                        continue;
                    }
                }
                let this = self.clone();
                tokio::spawn(async move {
                    if let Err(e) = this.attempt(&entry.webhook_id, &entry.delivery_id).await {
                        tracing::error!(webhook_id = %entry.webhook_id, delivery_id = %entry.delivery_id, "webhook delivery: {e}");
                    }
                    drop(permit);
                });
            }
            if took_some {
                // More may be due already.
                continue;
            }
            let wait = next
                .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO))
                .unwrap_or(Duration::from_secs(60))
                .min(Duration::from_secs(60));
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.inner.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// One attempt of one delivery, and what it leaves for the next.
    async fn attempt(&self, webhook_id: &str, delivery_id: &str) -> Result<(), WebhookError> {
        let store = &self.inner.store;
        let (Some(webhook), Some(mut delivery)) = (
            store.webhook(webhook_id)?,
            store.outbound(webhook_id, delivery_id)?,
        ) else {
            return Ok(()); // the webhook was deleted meanwhile
        };
        if delivery.status != DeliveryStatus::Pending {
            return Ok(());
        }
        let started = Instant::now();
        let now = Utc::now();
        let outcome = match &webhook.notifier {
            Some(target) => self.notify(&webhook.org, target, &delivery).await,
            None => {
                let secret = self.open_secret(&webhook)?;
                self.send(&webhook, &delivery, &secret, now).await
            }
        };
        let latency_ms = started.elapsed().as_millis() as u64;
        delivery.attempts += 1;
        let attempt = |response_code, response_excerpt, error| DeliveryAttempt {
            time: now,
            latency_ms,
            response_code,
            response_excerpt,
            error,
        };
        let (attempt, verdict) = match outcome {
            Sent::Answered { code, excerpt } => (
                attempt(Some(code), excerpt, String::new()),
                if (200..300).contains(&code) {
                    Verdict::Done
                } else {
                    Verdict::Retry
                },
            ),
            Sent::Delivered { code, summary } => {
                (attempt(code, summary, String::new()), Verdict::Done)
            }
            Sent::Failed(error) => (attempt(None, String::new(), error), Verdict::Retry),
            Sent::Refused(error) => (attempt(None, String::new(), error), Verdict::GiveUp),
        };
        tracing::info!(webhook_id, delivery_id, attempt = delivery.attempts, code = ?attempt.response_code, error = %attempt.error, latency_ms, "webhook delivery attempted");
        delivery.last_attempt = Some(attempt);
        let next = Utc::now() + self.backoff(delivery.attempts);
        (delivery.status, delivery.next_attempt_time) = match verdict {
            Verdict::Done => (DeliveryStatus::Succeeded, None),
            Verdict::Retry if next <= delivery.give_up_time => {
                (DeliveryStatus::Pending, Some(next))
            }
            Verdict::Retry | Verdict::GiveUp => (DeliveryStatus::Failed, None),
        };
        self.inner.metrics.webhook_attempt(match delivery.status {
            DeliveryStatus::Succeeded => AttemptResult::Succeeded,
            DeliveryStatus::Pending => AttemptResult::Retried,
            DeliveryStatus::Failed => AttemptResult::Failed,
        });
        store.put_outbound(&delivery)?;
        store.flush().await?;
        if delivery.next_attempt_time.is_some() {
            // The loop may be asleep until a later delivery's time.
            self.inner.wake.notify_one();
        }
        Ok(())
    }

    fn open_secret(&self, webhook: &WebhookRecord) -> Result<String, WebhookError> {
        self.inner
            .secrets
            .local()
            .open_text(&secret_context(&webhook.webhook_id), &webhook.sealed_secret)
            .map_err(|e| WebhookError::Secret {
                webhook_id: webhook.webhook_id.clone(),
                message: e.to_string(),
            })
    }

    /// The wait after `attempts` failed attempts: the first retry's wait,
    /// 4× per attempt, at most an hour, ±25% so that receivers that came
    /// back are not hit by every sender at once.
    fn backoff(&self, attempts: u32) -> Duration {
        let first = self.inner.settings.first_retry;
        let grown = first.saturating_mul(4u32.saturating_pow(attempts.saturating_sub(1)));
        let capped = grown.min(MAX_BACKOFF.max(first));
        let jitter = 0.75 + rand::random::<f64>() * 0.5;
        capped.mul_f64(jitter)
    }

    /// One attempt made by a notifier plugin: it is given the event (the
    /// stored body, so every attempt describes the same thing) and the
    /// subscription's options, and says delivered, retry or give up. A
    /// trap or an exhausted time budget is retried: the receiver may have
    /// been what was slow.
    async fn notify(
        &self,
        org: &str,
        target: &NotifierTarget,
        delivery: &OutboundDelivery,
    ) -> Sent {
        let runtime = &self.inner.runtime;
        let Some(plugin) = runtime.plugin(&target.plugin) else {
            return Sent::Refused(format!(
                "the notifier plugin {} is not loaded on this server; an operator installs it, or the organization subscribes another notifier",
                target.plugin
            ));
        };
        let event = match serde_json::from_str::<BuildEvent>(&delivery.body) {
            Ok(event) => event,
            Err(e) => return Sent::Refused(format!("the stored event does not read back: {e}")),
        };
        let request = notify::NotifyRequest {
            event: notifier_event(
                &delivery.delivery_id,
                &delivery.body,
                event,
                self.inner.settings.public_url.as_deref(),
            ),
            options: target
                .options
                .iter()
                .map(|(key, value)| KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            attempt: delivery.attempts + 1,
        };
        let id = &target.plugin;
        // The values are read now (a rotated secret is used from its next
        // attempt) and lent to the gate, never to the plugin.
        let mut lent = std::collections::BTreeMap::new();
        for name in &target.secrets {
            let value = self
                .inner
                .secrets
                .get(org, crate::store::secrets::SecretKind::Build, name)
                .await;
            match value {
                Ok(Some(value)) => {
                    lent.insert(name.clone(), String::from_utf8_lossy(&value).into_owned());
                }
                Ok(None) => {
                    return Sent::Refused(format!(
                        "the build secret {name} this notifier sends was deleted; save it again (PUT /v1/secrets) and redeliver"
                    ))
                }
                Err(e) => return Sent::Failed(format!("cannot read the build secret {name}: {e}")),
            }
        }
        let masks: Vec<String> = lent.values().filter(|v| !v.is_empty()).cloned().collect();
        let mask = |text: String| {
            let mut masked = masks
                .iter()
                .fold(text, |text, value| text.replace(value.as_str(), "***"));
            crate::store::truncate_at_char_boundary(&mut masked, EXCERPT_BYTES);
            masked
        };
        let caps = Capabilities::for_plugin(plugin).with_http_secrets(lent);
        match runtime.notify(plugin, caps, &request).await {
            Ok(Ok(delivered)) => Sent::Delivered {
                code: delivered.status,
                summary: mask(delivered.summary),
            },
            Ok(Err(notify::NotifyError::Retry(message))) => {
                Sent::Failed(mask(format!("{id}: {message}")))
            }
            Ok(Err(notify::NotifyError::GiveUp(message))) => {
                Sent::Refused(mask(format!("{id}: {message}")))
            }
            Err(failure) => Sent::Failed(mask(failure.to_string())),
        }
    }

    async fn send(
        &self,
        webhook: &WebhookRecord,
        delivery: &OutboundDelivery,
        secret: &str,
        now: DateTime<Utc>,
    ) -> Sent {
        let url = match reqwest::Url::parse(&webhook.url) {
            Ok(url) => url,
            Err(e) => return Sent::Refused(format!("the URL {} is not valid: {e}", webhook.url)),
        };
        let host = url.host_str().unwrap_or_default().to_string();
        let allowed =
            self.inner.settings.allowed_hosts.iter().any(|a| {
                a.eq_ignore_ascii_case(host.trim_start_matches('[').trim_end_matches(']'))
            });
        if !allowed {
            // Address literals never reach the resolver: checked here,
            // with names (the resolver checks those again at connection).
            let checked = tokio::task::spawn_blocking({
                let host = host.clone();
                move || NetworkPolicy::default().check_host(&host)
            })
            .await;
            match checked {
                Ok(Ok(())) => {}
                Ok(Err(crate::net::NetworkRefusal::NotPublic { address, class, .. })) => {
                    return Sent::Refused(format!(
                        "refused: {host} is {address}, a {class} address; an operator who means to deliver there adds the host to [webhooks] allowed_hosts in the server's config"
                    ))
                }
                Ok(Err(unresolvable)) => return Sent::Failed(unresolvable.to_string()),
                Err(e) => return Sent::Failed(e.to_string()),
            }
        }
        let client = if allowed {
            &self.inner.trusted
        } else {
            &self.inner.guarded
        };
        let timestamp = now.timestamp();
        let request = client
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", &delivery.delivery_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                sign(
                    secret,
                    &delivery.delivery_id,
                    timestamp,
                    delivery.body.as_bytes(),
                ),
            )
            .body(delivery.body.clone());
        match request.send().await {
            Ok(mut response) => {
                let code = response.status().as_u16();
                // Only the excerpt is read: a receiver answering with a
                // huge body costs the host no more than that.
                let mut excerpt = Vec::new();
                while excerpt.len() < EXCERPT_BYTES {
                    match response.chunk().await {
                        Ok(Some(chunk)) => excerpt.extend_from_slice(&chunk),
                        Ok(None) | Err(_) => break,
                    }
                }
                excerpt.truncate(EXCERPT_BYTES);
                Sent::Answered {
                    code,
                    excerpt: String::from_utf8_lossy(&excerpt).into_owned(),
                }
            }
            Err(e) => Sent::Failed(error_chain(&e)),
        }
    }
}

enum Sent {
    Answered {
        code: u16,
        excerpt: String,
    },
    /// A notifier delivered it.
    Delivered {
        code: Option<u16>,
        summary: String,
    },
    /// No answer: retried.
    Failed(String),
    /// Not sent, and never will be as things stand: given up at once.
    Refused(String),
}

enum Verdict {
    Done,
    Retry,
    GiveUp,
}

/// The event as the notifier contract gives it: the fields a template
/// wants most, flat, and the whole event as its webhooks send it.
fn notifier_event(
    delivery_id: &str,
    body: &str,
    event: BuildEvent,
    public_url: Option<&str>,
) -> notify::BuildEvent {
    let data = event.data;
    let status = data
        .status
        .as_str()
        .trim_start_matches("BUILD_STATUS_")
        .to_string();
    let git = data.source.git;
    notify::BuildEvent {
        delivery_id: delivery_id.to_string(),
        event_type: event.event_type,
        timestamp: event
            .timestamp
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        build_url: public_url
            .map(|base| format!("{}/v1/builds/{}", base.trim_end_matches('/'), data.build_id)),
        org: data.org,
        build_id: data.build_id,
        number: data.number,
        name: data.name,
        project_id: data.project_id,
        status,
        image_refs: data.image_refs,
        digest: data.digest,
        failure_reason: data.failure.as_ref().map(|f| f.reason.to_string()),
        failure_message: data.failure.map(|f| {
            if f.hint.is_empty() {
                f.message
            } else {
                format!("{} ({})", f.message, f.hint)
            }
        }),
        duration_ms: data.metrics.map(|m| m.duration_ms),
        git_url: git.as_ref().map(|g| g.url.clone()),
        git_reference: git.as_ref().map(|g| g.reference.clone()),
        git_commit: git.and_then(|g| g.commit),
        json: body.to_string(),
    }
}

/// An error and its causes on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_standard_webhooks_test_vector() {
        assert_eq!(
            sign(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
