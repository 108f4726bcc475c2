//! `http-post`: Kiln's first-party notifier, and the worked example of the
//! `notifier` world (contract 0.2.0).
//!
//! A subscription's options:
//! * `url` (required): where to POST, `http://` or `https://`. Its host must
//!   be granted to this plugin by the operator (`[plugins.http-post] http =
//!   ["chat.example.com"]`); the host refuses any other before sending.
//! * `template` (optional): the JSON body, with `{{placeholder}}`s for the
//!   event's fields (see [`PLACEHOLDERS`]). Each value is inserted
//!   JSON-escaped, so a placeholder inside a string keeps the body valid
//!   whatever the build's name or failure message holds; `{{event}}` is the
//!   whole event as JSON, inserted as a value. Without a template the body
//!   is the event exactly as Kiln's own webhooks send it.
//!
//! What comes back decides what the host does: a 2xx is delivered; 408, 429,
//! 5xx and network failures are retried with backoff; any other answer, an
//! unusable option or a host not granted fails the delivery at once.

use kiln_sdk::notifier::{BuildEvent, NotifyError, NotifyRequest};

/// Every placeholder a template may use, and what it becomes.
pub const PLACEHOLDERS: &[(&str, &str)] = &[
    ("type", "the event type, e.g. build.succeeded"),
    ("deliveryId", "the delivery's id, the same on every attempt"),
    ("timestamp", "when it happened, RFC 3339"),
    ("org", "the organization"),
    ("buildId", "the build's id"),
    ("number", "the build's number within its name"),
    ("name", "the image name"),
    ("projectId", "the project that started it, or empty"),
    ("status", "SUCCEEDED, FAILED, CANCELLED, RUNNING or PENDING"),
    ("imageRef", "the first pushed reference, or empty"),
    ("imageRefs", "every pushed reference, comma-separated"),
    ("digest", "the manifest digest, or empty"),
    ("reason", "the failure reason (RUN_FAILED...), or empty"),
    ("message", "the failure message, or empty"),
    ("durationMs", "how long it ran in milliseconds, or empty"),
    ("gitUrl", "the repository of a git build, or empty"),
    (
        "gitReference",
        "the reference it was asked to build, or empty",
    ),
    ("commit", "the commit built, or empty"),
    ("commit7", "its first seven characters"),
    (
        "buildUrl",
        "the build's page, when the server has a public URL",
    ),
    (
        "event",
        "the whole event as JSON (a value, not inside a string)",
    ),
];

/// The value of one option, if given.
pub fn option<'a>(request: &'a NotifyRequest, key: &str) -> Option<&'a str> {
    request
        .options
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.as_str())
}

/// The body to send: the template rendered against the event, or the event
/// itself; always valid JSON, or a reason not to send.
pub fn render_body(template: Option<&str>, event: &BuildEvent) -> Result<String, NotifyError> {
    let Some(template) = template else {
        return Ok(event.json.clone());
    };
    let mut body = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        body.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| {
            NotifyError::GiveUp(format!(
                "the template has a `{{{{` without its `}}}}` at byte {}",
                template.len() - rest.len() + start
            ))
        })?;
        let name = after[..end].trim();
        match name {
            "event" => body.push_str(&event.json),
            _ => match value_of(name, event) {
                Some(value) => escape_into(&mut body, &value),
                None => {
                    let known: Vec<&str> = PLACEHOLDERS.iter().map(|(n, _)| *n).collect();
                    return Err(NotifyError::GiveUp(format!(
                        "the template uses {{{{{name}}}}}, which is not a placeholder; use one of {}",
                        known.join(", ")
                    )));
                }
            },
        }
        rest = &after[end + 2..];
    }
    body.push_str(rest);
    serde_json::from_str::<serde_json::Value>(&body).map_err(|e| {
        NotifyError::GiveUp(format!(
            "the template does not render to JSON ({e}); put placeholders inside strings, e.g. \"text\": \"{{{{name}}}} {{{{status}}}}\""
        ))
    })?;
    Ok(body)
}

/// A placeholder's text, before escaping; `None` for an unknown name.
fn value_of(name: &str, event: &BuildEvent) -> Option<String> {
    let or_empty = |v: &Option<String>| v.clone().unwrap_or_default();
    Some(match name {
        "type" => event.event_type.clone(),
        "deliveryId" => event.delivery_id.clone(),
        "timestamp" => event.timestamp.clone(),
        "org" => event.org.clone(),
        "buildId" => event.build_id.clone(),
        "number" => event.number.to_string(),
        "name" => event.name.clone(),
        "projectId" => or_empty(&event.project_id),
        "status" => event.status.clone(),
        "imageRef" => event.image_refs.first().cloned().unwrap_or_default(),
        "imageRefs" => event.image_refs.join(","),
        "digest" => or_empty(&event.digest),
        "reason" => or_empty(&event.failure_reason),
        "message" => or_empty(&event.failure_message),
        "durationMs" => event
            .duration_ms
            .map(|ms| ms.to_string())
            .unwrap_or_default(),
        "gitUrl" => or_empty(&event.git_url),
        "gitReference" => or_empty(&event.git_reference),
        "commit" => or_empty(&event.git_commit),
        "commit7" => event
            .git_commit
            .as_deref()
            .map(|c| c.chars().take(7).collect())
            .unwrap_or_default(),
        "buildUrl" => or_empty(&event.build_url),
        _ => return None,
    })
}

/// `value` as the inside of a JSON string.
fn escape_into(out: &mut String, value: &str) {
    let quoted = serde_json::to_string(value).expect("a string serializes");
    out.push_str(&quoted[1..quoted.len() - 1]);
}

/// What an HTTP status means for the delivery: `None` delivered, else the
/// error (retry for 408, 429 and 5xx; give up for the rest).
pub fn judge_status(status: u16, url: &str, excerpt: &str) -> Option<NotifyError> {
    let said = if excerpt.is_empty() {
        String::new()
    } else {
        format!(": {excerpt}")
    };
    match status {
        200..=299 => None,
        408 | 429 | 500..=599 => Some(NotifyError::Retry(format!(
            "{url} answered HTTP {status}{said}"
        ))),
        _ => Some(NotifyError::GiveUp(format!(
            "{url} answered HTTP {status}{said}; another attempt would get the same"
        ))),
    }
}

#[cfg(target_family = "wasm")]
mod send;

struct HttpPost;

impl kiln_sdk::notifier::Notifier for HttpPost {
    fn notify(
        request: NotifyRequest,
    ) -> Result<kiln_sdk::notifier::Delivered, kiln_sdk::notifier::NotifyError> {
        let url = option(&request, "url").ok_or_else(|| {
            NotifyError::GiveUp(
                "the subscription gives no `url` option: say where to POST (options: {\"url\": \"https://…\"})"
                    .into(),
            )
        })?;
        let body = render_body(option(&request, "template"), &request.event)?;
        #[cfg(target_family = "wasm")]
        {
            send::post_json(url, &body)
        }
        #[cfg(not(target_family = "wasm"))]
        {
            let _ = (url, body);
            Err(NotifyError::GiveUp(
                "http-post sends only inside a component".into(),
            ))
        }
    }
}

kiln_sdk::export_notifier!(HttpPost);

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> BuildEvent {
        BuildEvent {
            delivery_id: "msg_1".into(),
            event_type: "build.failed".into(),
            timestamp: "2026-12-02T10:00:00Z".into(),
            org: "acme".into(),
            build_id: "b1".into(),
            number: 7,
            name: "web \"app\"".into(),
            project_id: None,
            status: "FAILED".into(),
            image_refs: vec![],
            digest: None,
            failure_reason: Some("RUN_FAILED".into()),
            failure_message: Some("step 3 exited 7\nline two".into()),
            duration_ms: Some(1200),
            git_url: None,
            git_reference: None,
            git_commit: Some("0123456789abcdef".into()),
            build_url: None,
            json: r#"{"type":"build.failed"}"#.into(),
        }
    }

    #[test]
    fn placeholders_are_escaped_so_the_body_stays_json() {
        let body = render_body(
            Some(r#"{"text": "{{name}} #{{number}}: {{reason}} {{message}} ({{commit7}})", "raw": {{event}}}"#),
            &event(),
        )
        .unwrap();
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            value["text"],
            "web \"app\" #7: RUN_FAILED step 3 exited 7\nline two (0123456)"
        );
        assert_eq!(value["raw"]["type"], "build.failed");
    }

    #[test]
    fn no_template_sends_the_event_itself() {
        assert_eq!(render_body(None, &event()).unwrap(), event().json);
    }

    #[test]
    fn bad_templates_give_up_saying_why() {
        let unknown = render_body(Some(r#"{"a": "{{nmae}}"}"#), &event()).unwrap_err();
        assert!(
            matches!(&unknown, NotifyError::GiveUp(m) if m.contains("{{nmae}}") && m.contains("name")),
            "{unknown:?}"
        );
        let unclosed = render_body(Some(r#"{"a": "{{name"}"#), &event()).unwrap_err();
        assert!(matches!(&unclosed, NotifyError::GiveUp(m) if m.contains("without")));
        let not_json = render_body(Some("{{name}} built"), &event()).unwrap_err();
        assert!(matches!(&not_json, NotifyError::GiveUp(m) if m.contains("JSON")));
    }

    #[test]
    fn statuses_decide_retry_or_give_up() {
        assert!(judge_status(204, "u", "").is_none());
        for retried in [408, 429, 500, 503] {
            assert!(matches!(
                judge_status(retried, "u", ""),
                Some(NotifyError::Retry(_))
            ));
        }
        for final_ in [301, 400, 401, 404] {
            assert!(
                matches!(judge_status(final_, "u", "no"), Some(NotifyError::GiveUp(m)) if m.contains("no"))
            );
        }
    }
}
