//! Completion webhooks (issue 14): build events delivered to a receiver
//! that is not Kiln's code — a Python server verifying every delivery with
//! the Standard Webhooks library from PyPI.

use std::time::{Duration, Instant};

use hyper::StatusCode;
use kiln_tests::webhooks::Receiver;
use kiln_tests::*;
use serde_json::{json, Value};

const LIMIT: Duration = Duration::from_secs(120);
async fn subscribe(t: &Api, url: &str, events: Option<&[&str]>) -> (String, String) {
    let mut body = json!({ "url": url });
    if let Some(events) = events {
        body["events"] = json!(events);
    }
    let answer = t.post_json("/v1/webhooks", &body).await;
    assert_eq!(
        answer.status,
        StatusCode::CREATED,
        "{}",
        answer.error_message()
    );
    let created = answer.json();
    (
        created["webhookId"].as_str().unwrap().to_string(),
        created["secret"].as_str().unwrap().to_string(),
    )
}

async fn deliveries(t: &Api, webhook_id: &str) -> Vec<Value> {
    let answer = t
        .get(&format!("/v1/webhooks/{webhook_id}/deliveries"))
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    answer.json()["deliveries"].as_array().unwrap().clone()
}

async fn wait_delivery_status(t: &Api, webhook_id: &str, status: &str) -> Value {
    let started = Instant::now();
    loop {
        let found = deliveries(t, webhook_id).await;
        if let Some(d) = found.iter().find(|d| d["status"] == status) {
            return d.clone();
        }
        assert!(
            started.elapsed() < LIMIT,
            "no {status} delivery: {found:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The issue's "done when", second half: a subscribed receiver gets a
/// verifiable `build.succeeded` carrying the digest — after failing the
/// first two attempts; a receiver of every event gets them in order.
#[tokio::test]
async fn issue_14_a_receiver_failing_twice_gets_a_verifiable_build_succeeded_with_the_digest() {
    let t = TestServer::start_with(|config| {
        config.webhooks.allowed_hosts = vec!["127.0.0.1".into()];
        config.webhooks.first_retry = Duration::from_millis(200);
    })
    .await;
    let (flaky_port, flaky_url) = Receiver::free_url();
    let (flaky_id, flaky_secret) = subscribe(&t, &flaky_url, Some(&["build.succeeded"])).await;
    let flaky = Receiver::start(flaky_port, &flaky_secret, 2);
    let (every_port, every_url) = Receiver::free_url();
    let (_, every_secret) = subscribe(&t, &every_url, None).await;
    let every = Receiver::start(every_port, &every_secret, 0);

    let build_id = t.create_build(&hello_request(&unique_name("hooked"))).await;
    let record = t.wait_succeeded(&build_id, LIMIT).await;

    // Verified by the reference library, or the receiver would have written
    // an error instead of the event.
    let got = flaky.wait_for(1).await;
    assert!(got[0].get("error").is_none(), "{got:#?}");
    let event = &got[0]["event"];
    assert_eq!(event["type"], "build.succeeded");
    assert_eq!(event["data"]["buildId"], build_id.as_str());
    assert_eq!(event["data"]["status"], "BUILD_STATUS_SUCCEEDED");
    assert_eq!(event["data"]["digest"], record["digest"]);
    assert!(record["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(event["data"]["imageRefs"], record["imageRefs"]);

    let delivery = wait_delivery_status(&t, &flaky_id, "succeeded").await;
    assert_eq!(delivery["attempts"], 3, "{delivery:#}");
    assert_eq!(delivery["lastAttempt"]["responseCode"], 204);
    assert_eq!(delivery["deliveryId"], got[0]["id"]);
    t.assert_documented("Delivery", &delivery).await;

    // Every event, each stamped with when it happened: deliveries run side
    // by side and may arrive in any order, their timestamps do not.
    let mut all = every.wait_for(3).await;
    assert!(all.iter().all(|e| e.get("error").is_none()), "{all:#?}");
    all.sort_by_key(|e| {
        chrono::DateTime::parse_from_rfc3339(e["event"]["timestamp"].as_str().unwrap()).unwrap()
    });
    let types: Vec<&str> = all
        .iter()
        .map(|e| e["event"]["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["build.queued", "build.started", "build.succeeded"]);
    let finished = chrono::DateTime::parse_from_rfc3339(record["finishTime"].as_str().unwrap())
        .unwrap()
        .timestamp_micros() as f64
        / 1e6;
    println!(
        "issue 14: build.succeeded received {:.1} ms after the build's finishTime (first attempt, receiver answering)",
        (all[2]["receivedAt"].as_f64().unwrap() - finished) * 1000.0
    );

    // A redelivery: the same id and body again, verified again.
    let answer = t
        .post_json(
            &format!(
                "/v1/webhooks/{flaky_id}/deliveries/{}:redeliver",
                delivery["deliveryId"].as_str().unwrap()
            ),
            &json!({}),
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::ACCEPTED,
        "{}",
        answer.error_message()
    );
    let again = flaky.wait_for(2).await;
    assert_eq!(again[1]["id"], got[0]["id"]);
    assert_eq!(again[1]["event"], got[0]["event"]);
    let started = Instant::now();
    while deliveries(&t, &flaky_id).await[0]["attempts"] != 4 {
        assert!(started.elapsed() < LIMIT, "the redelivery was not recorded");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // 2 answered 500 then retried; 1 + 3 + the redelivery answered 204.
    t.assert_metrics(&[
        "kiln_webhook_attempts_total{result=\"succeeded\"} 5",
        "kiln_webhook_attempts_total{result=\"retried\"} 2",
        "kiln_webhook_attempts_total{result=\"failed\"} 0",
    ])
    .await;
}

/// SSRF: a webhook pointing at a loopback address on a server that did
/// not allow it gets nothing; the delivery says why and is not retried.
#[tokio::test]
async fn issue_14_deliveries_to_loopback_are_refused_unless_the_operator_allows_the_host() {
    let t = TestServer::start_with(|config| {
        config.webhooks.first_retry = Duration::from_millis(200);
    })
    .await;
    let (port, url) = Receiver::free_url();
    let (webhook_id, secret) = subscribe(&t, &url, Some(&["build.succeeded"])).await;
    let receiver = Receiver::start(port, &secret, 0);
    let build_id = t
        .create_build(&hello_request(&unique_name("refused")))
        .await;
    t.wait_succeeded(&build_id, LIMIT).await;
    let delivery = wait_delivery_status(&t, &webhook_id, "failed").await;
    assert_eq!(delivery["attempts"], 1, "{delivery:#}");
    let error = delivery["lastAttempt"]["error"].as_str().unwrap();
    assert!(
        error.contains("loopback") && error.contains("allowed_hosts"),
        "{error}"
    );
    assert!(receiver.received().is_empty());

    for (bad, needle) in [
        (json!({"url": "ftp://example.com/x"}), "http"),
        (
            json!({"url": "https://user:pw@example.com/x"}),
            "credentials",
        ),
        (
            json!({"url": "https://example.com/x", "events": ["build.exploded"]}),
            "build.succeeded",
        ),
        (
            json!({"url": "https://example.com/x", "projectId": "nope"}),
            "projectId",
        ),
    ] {
        t.assert_refused("/v1/webhooks", &bad, needle).await;
    }
    let other = t.as_token(&t.server.create_org_with_token("other").unwrap());
    assert_eq!(
        other
            .get(&format!("/v1/webhooks/{webhook_id}/deliveries"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

/// Subscribes `http-post` with `options`; the created webhook.
async fn subscribe_notifier(t: &Api, options: Value) -> Value {
    let answer = t
        .post_json(
            "/v1/webhooks",
            &json!({
                "notifier": {"plugin": "http-post", "options": options},
                "events": ["build.succeeded"],
            }),
        )
        .await;
    assert_eq!(
        answer.status,
        StatusCode::CREATED,
        "{}",
        answer.error_message()
    );
    answer.json()
}

/// The notifier world (contract 0.2.0): the first-party `http-post`
/// notifier, a real component, renders its template and POSTs it to a real
/// receiver on a host the operator granted it; the receiver's first answer
/// (500) is retried through the same durable queue as Kiln's own
/// deliveries. A host not granted is refused by the server before anything
/// is sent, and a template that does not render fails at once, saying why.
#[tokio::test]
async fn issue_14_the_http_post_notifier_posts_a_templated_build_succeeded_to_a_granted_host() {
    let (port, url) = Receiver::free_url();
    let granted = format!("127.0.0.1:{port}");
    let t = TestServer::start_with(|config| {
        config.webhooks.first_retry = Duration::from_millis(200);
        config.plugin_grants.insert(
            "http-post".into(),
            kiln_tests::kiln_server::config::FileConfig::parse_grant(&format!(
                "http = [\"{granted}\"]"
            )),
        );
    })
    .await;

    // The plugin as the operator sees it: contract 0.2.0, the one host.
    let plugins = t.get("/v1/plugins").await.json();
    let plugin = plugins["plugins"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "http-post")
        .unwrap_or_else(|| panic!("http-post is not loaded: {plugins:#}"))
        .clone();
    assert_eq!(plugin["world"], "Notifier");
    assert_eq!(plugin["api"], "0.2.0");
    assert_eq!(plugin["grantedPermissions"]["http"], json!([granted]));

    let template = r#"{"text": "{{name}} #{{number}} {{status}}", "image": "{{imageRef}}", "digest": "{{digest}}", "delivery": "{{deliveryId}}", "event": {{event}}}"#;
    let webhook = subscribe_notifier(&t, json!({"url": url, "template": template})).await;
    assert!(webhook.get("secret").is_none(), "{webhook:#}");
    assert!(webhook.get("url").is_none(), "{webhook:#}");
    assert_eq!(webhook["notifier"]["options"]["template"], template);
    t.assert_documented("Webhook", &webhook).await;
    let webhook_id = webhook["webhookId"].as_str().unwrap();
    let receiver = Receiver::start_unsigned(port, 1);

    // Another port on the same address is not what the operator granted.
    let elsewhere = subscribe_notifier(
        &t,
        json!({"url": format!("http://127.0.0.1:{}/x", free_port())}),
    )
    .await;
    let broken =
        subscribe_notifier(&t, json!({"url": url, "template": "{\"a\": \"{{nmae}}\"}"})).await;

    let name = unique_name("notified");
    let build_id = t.create_build(&hello_request(&name)).await;
    let record = t.wait_succeeded(&build_id, LIMIT).await;

    let got = receiver.wait_for(1).await;
    assert_eq!(got.len(), 1, "only the good subscription posts: {got:#?}");
    let body = &got[0]["body"];
    assert_eq!(got[0]["contentType"], "application/json");
    assert_eq!(
        body["text"],
        format!("{name} #{} SUCCEEDED", record["number"])
    );
    assert_eq!(body["image"], record["imageRefs"][0]);
    assert_eq!(body["digest"], record["digest"]);
    assert!(record["digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(body["event"]["type"], "build.succeeded");
    assert_eq!(body["event"]["data"]["buildId"], build_id.as_str());

    let delivery = wait_delivery_status(&t, webhook_id, "succeeded").await;
    assert_eq!(delivery["attempts"], 2, "{delivery:#}");
    assert_eq!(delivery["lastAttempt"]["responseCode"], 200);
    assert_eq!(delivery["lastAttempt"]["responseExcerpt"], "posted, thanks");
    assert_eq!(body["delivery"], delivery["deliveryId"]);

    let refused =
        wait_delivery_status(&t, elsewhere["webhookId"].as_str().unwrap(), "failed").await;
    assert_eq!(refused["attempts"], 1, "{refused:#}");
    let error = refused["lastAttempt"]["error"].as_str().unwrap();
    assert!(error.contains("[plugins.http-post]"), "{error}");
    let failed = wait_delivery_status(&t, broken["webhookId"].as_str().unwrap(), "failed").await;
    assert_eq!(failed["attempts"], 1, "{failed:#}");
    let error = failed["lastAttempt"]["error"].as_str().unwrap();
    assert!(
        error.contains("{{nmae}}") && error.contains("name"),
        "{error}"
    );
    assert_eq!(receiver.received().len(), 1);

    for (bad, needle) in [
        (json!({"notifier": {"plugin": "nope"}}), "http-post"),
        (
            json!({"notifier": {"plugin": "buildkit"}}),
            "not a notifier",
        ),
        (
            json!({"url": url, "notifier": {"plugin": "http-post"}}),
            "not both",
        ),
        (json!({"events": ["build.failed"]}), "notifier"),
        (
            json!({"notifier": {"plugin": "http-post", "options": {"bad key": "x"}}}),
            "option name",
        ),
        (
            json!({"notifier": {"plugin": "http-post", "colour": "red"}}),
            "colour",
        ),
    ] {
        t.assert_refused("/v1/webhooks", &bad, needle).await;
    }
}

/// A chat hook's URL is a credential: the notifier names a build secret as
/// `@@secret:NAME@@` and the host writes the value into the request after
/// it leaves the sandbox. The receiver gets the value; the subscription,
/// its deliveries and the plugin only ever show the name.
#[tokio::test]
async fn issue_14_a_notifier_sends_a_secret_it_never_holds() {
    let (port, url) = Receiver::free_url();
    let granted = format!("127.0.0.1:{port}");
    let t = TestServer::start_with(|config| {
        config.plugin_grants.insert(
            "http-post".into(),
            kiln_tests::kiln_server::config::FileConfig::parse_grant(&format!(
                "http = [\"{granted}\"]"
            )),
        );
    })
    .await;
    let token = "T0K3N-hooks-5ecret";
    let with_secret = format!("{url}/@@secret:HOOK_TOKEN@@");
    for (bad, needle) in [
        (
            json!({"notifier": {"plugin": "http-post", "options": {"url": with_secret}}}),
            "notifier.secrets",
        ),
        (
            json!({"notifier": {"plugin": "http-post", "options": {"url": with_secret}, "secrets": ["HOOK_TOKEN"]}}),
            "save it first",
        ),
    ] {
        t.assert_refused("/v1/webhooks", &bad, needle).await;
    }
    let saved = t
        .save_secrets(&json!({"buildSecrets": {"HOOK_TOKEN": token}}))
        .await;
    assert_eq!(saved.status, StatusCode::OK, "{}", saved.error_message());
    let created = t
        .post_json(
            "/v1/webhooks",
            &json!({
                "notifier": {"plugin": "http-post", "options": {"url": with_secret}, "secrets": ["HOOK_TOKEN"]},
                "events": ["build.succeeded"],
            }),
        )
        .await;
    assert_eq!(
        created.status,
        StatusCode::CREATED,
        "{}",
        created.error_message()
    );
    let webhook_id = created.json()["webhookId"].as_str().unwrap().to_string();
    let receiver = Receiver::start_unsigned(port, 0);

    let build_id = t
        .create_build(&hello_request(&unique_name("secret-hook")))
        .await;
    t.wait_succeeded(&build_id, LIMIT).await;
    let got = receiver.wait_for(1).await;
    assert_eq!(got[0]["path"], format!("/kiln/{token}"));
    assert_eq!(got[0]["body"]["data"]["buildId"], build_id.as_str());

    let delivery = wait_delivery_status(&t, &webhook_id, "succeeded").await;
    let listed = t.get("/v1/webhooks").await;
    for shown in [listed.body.as_ref(), delivery.to_string().as_bytes()] {
        assert!(
            !String::from_utf8_lossy(shown).contains(token),
            "the value is shown: {}",
            String::from_utf8_lossy(shown)
        );
    }
    assert!(String::from_utf8_lossy(&listed.body).contains("@@secret:HOOK_TOKEN@@"));
}
