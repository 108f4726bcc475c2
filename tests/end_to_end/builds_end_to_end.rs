//! Builds through the HTTP API against the real Docker Engine and registry.

use std::time::Duration;

use kiln_tests::*;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(120);

#[tokio::test]
async fn hello_example_is_built_pushed_and_runs() {
    let t = TestServer::start().await;
    let name = unique_name("hello");
    let build_id = t.create_build(&hello_request(&name)).await;
    let record = t.wait_succeeded(&build_id, LIMIT).await;
    assert_eq!(record["number"], 1);
    assert_eq!(
        record["request"]["profile"], "auto",
        "the server's default profile"
    );
    assert_eq!(
        record["profileUsed"], "medium",
        "auto's size for a name with no history"
    );

    let expected_ref = format!("{REGISTRY}/default/{name}:latest");
    assert_eq!(record["imageRefs"], json!([expected_ref]));
    let digest = record["digest"].as_str().unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );

    // The registry has the manifest, under the digest the record reports.
    let (status, registry_digest) = registry_manifest(&format!("default/{name}"), "latest").await;
    assert_eq!(status, 200);
    assert_eq!(registry_digest.as_deref(), Some(digest));

    // The metrics are the engine's own numbers.
    pull(&expected_ref).await;
    let inspect = docker().inspect_image(&expected_ref).await.unwrap();
    let metrics = &record["metrics"];
    assert_eq!(metrics["imageSizeBytes"].as_i64(), inspect.size);
    assert_eq!(
        metrics["layerCount"].as_u64().unwrap() as usize,
        inspect.root_fs.unwrap().layers.unwrap().len()
    );
    let duration = metrics["durationMs"].as_u64().unwrap();
    let created = chrono_ms(&record["createTime"]);
    let finished = chrono_ms(&record["finishTime"]);
    assert!(
        duration > 0 && duration <= (finished - created) as u64,
        "{duration} vs {created}..{finished}"
    );
    assert_eq!(
        metrics["totalSteps"], 4,
        "FROM, WORKDIR, COPY, RUN: {metrics}"
    );
    // Issue 18: where the time went; the phases after the queue add up to
    // the duration (each is rounded down to a millisecond).
    let phases = &metrics["phases"];
    let phase = |key: &str| {
        phases[key]
            .as_u64()
            .unwrap_or_else(|| panic!("no {key} in {metrics}"))
    };
    assert!(phase("buildMs") > 0 && phase("pushMs") > 0, "{phases}");
    let ran = phase("contextMs") + phase("buildMs") + phase("pushMs");
    assert!(
        ran <= duration && duration - ran <= 3,
        "{phases} vs {duration} ms"
    );
    let started = chrono_ms(&record["startTime"]);
    assert!(
        phase("queuedMs").abs_diff((started - created) as u64) <= 1,
        "{phases} vs {created}..{started}"
    );

    // What the pushed image prints.
    assert_eq!(run_image(&expected_ref).await.trim(), "Hello from Kiln!");

    // The log tells the story in BuildKit's plain style, and says plainly
    // that this engine path cannot enforce the profile's limits.
    let log = t.log_text(&build_id).await;
    assert!(
        log.contains("profile medium (2 CPUs, 4096 MiB) is not enforced"),
        "{log}"
    );
    assert!(log.contains("[4/4] RUN chmod 0755 /app/hello.sh"), "{log}");
    assert!(
        log.contains(&format!("pushed {expected_ref} {digest}")),
        "{log}"
    );
}

fn chrono_ms(value: &serde_json::Value) -> i64 {
    let text = value.as_str().unwrap();
    // RFC 3339 → milliseconds, without pulling in a date crate here.
    let parsed = std::process::Command::new("date")
        .args(["-d", text, "+%s%3N"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&parsed.stdout)
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn a_build_arg_changes_what_the_image_prints() {
    let t = TestServer::start().await;
    let name = unique_name("hello-arg");
    let mut request = hello_request(&name);
    request["buildArgs"] = json!({ "GREETING": "Howdy from a build arg" });
    request["tags"] = json!(["v1", "stable"]);
    let build_id = t.create_build(&request).await;
    let record = t.wait_finished(&build_id, LIMIT).await;
    assert_eq!(record["status"], "BUILD_STATUS_SUCCEEDED", "{record:#}");
    let refs: Vec<String> = serde_json::from_value(record["imageRefs"].clone()).unwrap();
    assert_eq!(
        refs,
        vec![
            format!("{REGISTRY}/default/{name}:v1"),
            format!("{REGISTRY}/default/{name}:stable")
        ]
    );
    for tag in ["v1", "stable"] {
        let (status, digest) = registry_manifest(&format!("default/{name}"), tag).await;
        assert_eq!(status, 200, "tag {tag}");
        assert_eq!(digest.as_deref(), record["digest"].as_str(), "tag {tag}");
    }
    assert_eq!(run_image(&refs[0]).await.trim(), "Howdy from a build arg!");
}

#[tokio::test]
async fn a_failing_run_step_fails_the_build_with_its_output() {
    let t = TestServer::start().await;
    let dockerfile = format!(
        "FROM {REGISTRY}/base/busybox:1\nRUN echo preparing-the-step && echo about-to-fail-now && exit 3\n"
    );
    let build_id = t
        .create_build(&dockerfile_request(&unique_name("fails"), &dockerfile))
        .await;
    let record = t.wait_finished(&build_id, LIMIT).await;
    assert_eq!(record["status"], "BUILD_STATUS_FAILED", "{record:#}");
    let failure = &record["failure"];
    assert_eq!(failure["reason"], "RUN_FAILED", "{failure:#}");
    assert_eq!(failure["exitCode"], 3, "{failure:#}");
    let message = failure["message"].as_str().unwrap();
    assert!(
        message.contains("exit 3"),
        "the failing step is named: {message}"
    );
    assert!(
        message.contains("about-to-fail-now"),
        "its output is included: {message}"
    );
    assert!(
        failure["hint"].as_str().unwrap().contains("code 3"),
        "{failure:#}"
    );
    let log = t.log_text(&build_id).await;
    assert!(log.contains("about-to-fail-now"), "{log}");
    assert!(log.contains("ERROR"), "{log}");
    assert!(record["imageRefs"].as_array().unwrap().len() == 1);
    assert!(
        record.get("digest").is_none(),
        "a failed build has no digest: {record:#}"
    );
}

#[tokio::test]
async fn a_zip_entry_escaping_the_context_fails_and_writes_nothing_outside() {
    let t = TestServer::start().await;
    let data_dir = t.data_dir.path().to_path_buf();
    let outside_abs = std::env::temp_dir().join(unique_name("kiln-escape-abs"));
    let cases = [
        // Relative: from workspaces/<id>/context up to the data dir.
        (
            "../../../escaped-relative.txt".to_string(),
            data_dir.join("escaped-relative.txt"),
        ),
        (
            "../evil".to_string(),
            data_dir.join("workspaces").join("evil"),
        ),
        (
            outside_abs.to_string_lossy().into_owned(),
            outside_abs.clone(),
        ),
    ];
    for (entry, would_land) in cases {
        let zip = zip_entries(&[
            ("Dockerfile", b"FROM scratch\n", 0o644),
            (entry.as_str(), b"escaped", 0o644),
        ]);
        let build_id = t
            .create_build(&json!({ "name": unique_name("escape"), "zippedCode": base64(&zip) }))
            .await;
        let record = t.wait_finished(&build_id, LIMIT).await;
        assert_eq!(
            record["status"], "BUILD_STATUS_FAILED",
            "{entry}: {record:#}"
        );
        assert_eq!(
            record["failure"]["reason"], "CONTEXT_INVALID",
            "{entry}: {record:#}"
        );
        let message = record["failure"]["message"].as_str().unwrap();
        assert!(message.contains(&entry), "the entry is named: {message}");
        assert!(message.contains("outside the build context"), "{message}");
        assert!(
            !would_land.exists(),
            "{entry} was written to {}",
            would_land.display()
        );
    }
}

#[tokio::test]
async fn the_log_replays_whole_and_a_follower_gets_every_line_in_order() {
    let t = TestServer::start().await;
    let dockerfile = format!(
        "FROM {REGISTRY}/base/busybox:1\nRUN for i in $(seq 1 40); do echo tick-$i; sleep 0.05; done\n"
    );
    let mut request = dockerfile_request(&unique_name("ticks"), &dockerfile);
    request["noCache"] = json!(true);
    let build_id = t.create_build(&request).await;

    // Replays while it runs grow and never lose a line (a replay must not
    // detach the running build's log from the hub).
    let mut previous: Vec<serde_json::Value> = Vec::new();
    let mut replays_showing_ticks = 0;
    let started = std::time::Instant::now();
    while replays_showing_ticks < 3 && started.elapsed() < LIMIT {
        let now = t.log(&build_id).await;
        assert!(now.len() >= previous.len(), "a replay shrank");
        assert_eq!(&now[..previous.len()], &previous[..]);
        if now
            .iter()
            .any(|l| l["line"].as_str().unwrap_or("").contains("tick-"))
        {
            replays_showing_ticks += 1;
        }
        previous = now;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        t.build(&build_id).await["status"],
        "BUILD_STATUS_RUNNING",
        "replays while running show the running step's output"
    );

    // Attach while the build runs, and read to the end.
    let follow = t
        .get(&format!(
            "/v1/builds/{build_id}/logs?fromStart=true&follow=true"
        ))
        .await;
    assert_eq!(follow.status, 200);
    assert_eq!(follow.headers["content-type"], "application/x-ndjson");
    let followed = parse_ndjson(&follow.body);
    // The stream ended on its own: the build must be over by now.
    let record = t.build(&build_id).await;
    assert_eq!(record["status"], "BUILD_STATUS_SUCCEEDED", "{record:#}");

    let replayed = t.log(&build_id).await;
    assert!(!replayed.is_empty());
    let seqs: Vec<u64> = replayed
        .iter()
        .map(|l| l["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap-free, in order"
    );
    assert_eq!(
        followed, replayed,
        "the follower saw exactly the stored log"
    );

    let ticks: Vec<String> = replayed
        .iter()
        .filter_map(|l| l["line"].as_str())
        .filter_map(|l| {
            l.split_whitespace()
                .last()
                .filter(|w| w.starts_with("tick-"))
        })
        .map(str::to_string)
        .collect();
    let expected: Vec<String> = (1..=40).map(|i| format!("tick-{i}")).collect();
    assert_eq!(ticks, expected);

    // Resuming after a line gives exactly the rest.
    let middle = seqs[seqs.len() / 2];
    let rest = t
        .get(&format!("/v1/builds/{build_id}/logs?afterSeq={middle}"))
        .await;
    let rest = parse_ndjson(&rest.body);
    assert_eq!(rest, replayed[middle as usize..].to_vec());

    // Without fromStart the log starts "from now": a finished build has no more.
    let from_now = t.get(&format!("/v1/builds/{build_id}/logs")).await;
    assert_eq!(from_now.status, 200);
    assert!(parse_ndjson(&from_now.body).is_empty());
}

#[tokio::test]
async fn server_sent_events_carry_ids_for_resuming() {
    let t = TestServer::start().await;
    let build_id = t.create_build(&hello_request(&unique_name("sse"))).await;
    t.wait_finished(&build_id, LIMIT).await;
    let answer = {
        use hyper::Method;
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<http_body_util::Full<bytes::Bytes>>();
        let request = hyper::Request::builder()
            .method(Method::GET)
            .uri(t.url(&format!(
                "/v1/builds/{build_id}/logs?fromStart=true&follow=true"
            )))
            .header("authorization", format!("Bearer {}", t.token))
            .header("accept", "text/event-stream")
            .header("last-event-id", "2")
            .body(Default::default())
            .unwrap();
        let response = client.request(request).await.unwrap();
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        use http_body_util::BodyExt;
        String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap()
    };
    let ids: Vec<u64> = answer
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|v| v.parse().unwrap())
        .collect();
    let stored = t.log(&build_id).await.len() as u64;
    assert_eq!(
        ids,
        (3..=stored).collect::<Vec<_>>(),
        "resumes after Last-Event-ID 2"
    );
    assert!(answer.ends_with("event: end\ndata: {}\n\n"), "{answer}");
}

#[tokio::test]
async fn two_hundred_followers_all_receive_the_full_log() {
    let t = TestServer::start().await;
    let dockerfile = format!(
        "FROM {REGISTRY}/base/busybox:1\nRUN for i in $(seq 1 100); do echo fan-out-$i; sleep 0.01; done\n"
    );
    let mut request = dockerfile_request(&unique_name("fanout"), &dockerfile);
    request["noCache"] = json!(true);
    let build_id = t.create_build(&request).await;
    let t = std::sync::Arc::new(t);
    let mut followers = Vec::new();
    for _ in 0..200 {
        let t = t.clone();
        let path = format!("/v1/builds/{build_id}/logs?fromStart=true&follow=true");
        followers.push(tokio::spawn(async move {
            parse_ndjson(&t.get(&path).await.body)
        }));
    }
    let mut received = Vec::new();
    for follower in followers {
        received.push(follower.await.unwrap());
    }
    let record = t.build(&build_id).await;
    assert_eq!(record["status"], "BUILD_STATUS_SUCCEEDED", "{record:#}");
    let full = t.log(&build_id).await;
    assert!(full
        .iter()
        .any(|l| l["line"].as_str().unwrap().ends_with("fan-out-100")));
    for (i, lines) in received.iter().enumerate() {
        assert_eq!(lines, &full, "follower {i} missed or reordered lines");
    }
}

#[tokio::test]
async fn metrics_count_builds_and_plugin_calls_and_the_openapi_document_describes_the_answers() {
    let t = TestServer::start().await;
    let build_id = t
        .create_build(&hello_request(&unique_name("metrics")))
        .await;
    assert_eq!(
        t.wait_finished(&build_id, LIMIT).await["status"],
        "BUILD_STATUS_SUCCEEDED"
    );
    let metrics = t
        .request_as(None, hyper::Method::GET, "/metrics", None)
        .await;
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8_lossy(&metrics.body).to_string();
    for expected in [
        "kiln_builds_created_total 1",
        "kiln_builds_finished_total{status=\"BUILD_STATUS_SUCCEEDED\"} 1",
        "kiln_queue_depth 0",
        "kiln_builds_running 0",
        "kiln_build_duration_seconds_count 1",
        "kiln_plugin_call_duration_seconds_count{plugin=\"inline-zip\",call=\"materialize\"} 1",
        "kiln_plugin_call_duration_seconds_count{plugin=\"buildkit\",call=\"build\"} 1",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let spec = t
        .request_as(None, hyper::Method::GET, "/v1/openapi.json", None)
        .await;
    assert_eq!(spec.status, 200);
    assert_eq!(spec.json()["openapi"], "3.1.0");
    // The document the server serves names every field of what it sends.
    t.assert_documented("Build", &t.build(&build_id).await)
        .await;
    t.assert_documented("BuildList", &t.get("/v1/builds").await.json())
        .await;
    for line in t.log(&build_id).await {
        t.assert_documented("LogLine", &line).await;
    }
    t.assert_documented("PluginList", &t.get("/v1/plugins").await.json())
        .await;
    t.assert_documented("MaskedSecrets", &t.get("/v1/secrets").await.json())
        .await;
    t.assert_documented("ErrorBody", &t.get("/v1/builds/no-such-build").await.json())
        .await;
}

/// Issue 12: revoking a token did not end a log stream already open with
/// it (42 lines arrived after the revoke). The stream now ends at the
/// revocation, with an `error` event, while the build keeps running.
#[tokio::test]
async fn issue_12_revoking_a_token_ends_the_streams_opened_with_it() {
    use http_body_util::BodyExt;
    let t = TestServer::start().await;
    let issued = t
        .request_as(
            Some(&t.token),
            hyper::Method::POST,
            "/v1/orgs/default/tokens",
            None,
        )
        .await;
    assert_eq!(issued.status, 201, "{}", issued.error_message());
    let issued = issued.json();
    let token = issued["token"].as_str().unwrap().to_string();
    let token_id = issued["tokenId"].as_str().unwrap().to_string();
    let dockerfile = format!(
        "FROM {REGISTRY}/base/busybox:1\nRUN for i in $(seq 1 120); do echo tick-$i; sleep 0.5; done\n"
    );
    let build_id = t
        .create_build(&dockerfile_request(&unique_name("revoke"), &dockerfile))
        .await;

    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let request = hyper::Request::builder()
        .uri(t.url(&format!(
            "/v1/builds/{build_id}/logs?fromStart=true&follow=true"
        )))
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "text/event-stream")
        .body(Default::default())
        .unwrap();
    let mut body = client.request(request).await.unwrap().into_body();
    let mut received = String::new();
    // Wait until the build is visibly running: ticks are arriving.
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !received.contains("tick-2") {
        let frame = tokio::time::timeout_at(deadline, body.frame())
            .await
            .expect("ticks arrive")
            .expect("the stream is open")
            .unwrap();
        if let Ok(data) = frame.into_data() {
            received.push_str(&String::from_utf8_lossy(&data));
        }
    }
    let revoked = t
        .request_as(
            Some(&t.token),
            hyper::Method::DELETE,
            &format!("/v1/orgs/default/tokens/{token_id}"),
            None,
        )
        .await;
    assert_eq!(revoked.status, 204);
    let mut after = String::new();
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                after.push_str(&String::from_utf8_lossy(&data));
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the stream is still open after the revoke: {after}"
    );
    assert!(
        after.contains("event: error") && after.contains("revoked"),
        "the stream says why it ended: {after:?}"
    );
    let ticks_after = after.matches("tick-").count();
    assert!(
        ticks_after <= 2,
        "{ticks_after} lines arrived after the revoke: {after}"
    );
    assert_eq!(
        t.build(&build_id).await["status"],
        "BUILD_STATUS_RUNNING",
        "the build itself goes on"
    );
    t.request_as(
        Some(&t.token),
        hyper::Method::POST,
        &format!("/v1/builds/{build_id}:cancel"),
        None,
    )
    .await;
}

/// The engine's tags of `repository` (`127.0.0.1:5000/default/name`).
async fn engine_tags(repository: &str) -> Vec<String> {
    use bollard::query_parameters::ListImagesOptions;
    let images = docker()
        .list_images(Some(ListImagesOptions {
            all: true,
            filters: Some(std::collections::HashMap::from([(
                "reference".to_string(),
                vec![format!("{repository}:*")],
            )])),
            ..Default::default()
        }))
        .await
        .unwrap();
    images
        .into_iter()
        .flat_map(|image| image.repo_tags)
        .collect()
}

/// Issue 12: every build left its image tagged in the engine after the
/// push (620 tags after one test run, failed pushes included). Builds
/// leave no tag now, and the next build still hits BuildKit's cache.
#[tokio::test]
async fn issue_12_builds_leave_no_tags_in_the_engine_and_keep_their_cache() {
    let t = TestServer::start().await;
    let name = unique_name("no-tags");
    let repository = format!("{REGISTRY}/default/{name}");
    let mut request = hello_request(&name);
    request["tags"] = json!(["v1", "latest"]);
    for round in 0..2 {
        let build_id = t.create_build(&request).await;
        let record = t.wait_finished(&build_id, LIMIT).await;
        assert_eq!(record["status"], "BUILD_STATUS_SUCCEEDED", "{record:#}");
        assert_eq!(engine_tags(&repository).await, Vec::<String>::new());
        if round == 1 {
            assert_eq!(
                record["metrics"]["cacheUsed"], true,
                "the rebuild hits the cache: {record:#}"
            );
        }
    }
    // The registry has both tags: they were pushed before they were removed.
    for tag in ["v1", "latest"] {
        let (status, _) = registry_manifest(&format!("default/{name}"), tag).await;
        assert_eq!(status, 200, "{tag}");
    }

    // A push that fails leaves nothing either.
    let unreachable = TestServer::start_with(|config| config.registry = "127.0.0.1:1".into()).await;
    let name = unique_name("no-tags-failed");
    let build_id = unreachable.create_build(&hello_request(&name)).await;
    let record = unreachable.wait_finished(&build_id, LIMIT).await;
    assert_eq!(record["status"], "BUILD_STATUS_FAILED", "{record:#}");
    assert_eq!(
        engine_tags(&format!("127.0.0.1:1/default/{name}")).await,
        Vec::<String>::new()
    );
}

/// Issue 12: `/metrics` can require a token (`--metrics-token-file`).
#[tokio::test]
async fn issue_12_metrics_can_require_a_token() {
    const TOKEN: &str = "metrics-token-5f0c2a9e";
    let t = TestServer::start_with(|config| config.metrics_token = Some(TOKEN.into())).await;
    for given in [None, Some("wrong-token-value"), Some(t.token.as_str())] {
        let answer = t
            .request_as(given, hyper::Method::GET, "/metrics", None)
            .await;
        assert_eq!(answer.status, 401, "token {given:?}");
        assert!(
            answer.error_message().contains("metrics token"),
            "{}",
            answer.error_message()
        );
    }
    let answer = t
        .request_as(Some(TOKEN), hyper::Method::GET, "/metrics", None)
        .await;
    assert_eq!(answer.status, 200);
    assert!(String::from_utf8_lossy(&answer.body).contains("kiln_builds_created_total 0"));
    // The other public routes stay public.
    let health = t
        .request_as(None, hyper::Method::GET, "/healthz", None)
        .await;
    assert_eq!(health.status, 200);
}

/// Issue 12: `Idempotency-Key` on CreateBuild and UploadBuildContext. A
/// retried request (its answer lost on the way) gets the first answer, not
/// a second build; two at once make one build; the same key with another
/// body is 422; a key belongs to its organization.
#[tokio::test]
async fn issue_12_a_request_retried_with_its_idempotency_key_gets_the_first_answer() {
    let t = TestServer::start().await;
    let name = unique_name("idempotent");
    let body = serde_json::to_vec(&hello_request(&name)).unwrap();
    let send = |key: &'static str, body: Vec<u8>| t.post_keyed("/v1/builds", key, body);
    let first = send("retry-7f3a", body.clone()).await;
    assert_eq!(first.status, 202, "{}", first.error_message());
    assert!(first.headers.get("idempotent-replayed").is_none());
    let again = send("retry-7f3a", body.clone()).await;
    assert_eq!(again.status, 202);
    assert_eq!(again.json(), first.json(), "the first answer, again");
    assert_eq!(again.headers["idempotent-replayed"], "true");
    let build_id = first.json()["buildId"].as_str().unwrap().to_string();

    // Two at once with a new key: one build between them.
    let (a, b) = tokio::join!(
        send("burst-01", body.clone()),
        send("burst-01", body.clone())
    );
    assert_eq!(a.status, 202, "{}", a.error_message());
    assert_eq!(b.status, 202, "{}", b.error_message());
    assert_eq!(a.json()["buildId"], b.json()["buildId"]);
    let listed = t.get(&format!("/v1/builds?name={name}")).await.json();
    assert_eq!(
        listed["builds"].as_array().unwrap().len(),
        2,
        "two keys, two builds: {listed:#}"
    );

    // The same key for another request is refused, naming the key.
    let other = serde_json::to_vec(&hello_request(&unique_name("other"))).unwrap();
    let reused = send("retry-7f3a", other.clone()).await;
    assert_eq!(reused.status, 422);
    assert!(
        reused.error_message().contains("retry-7f3a"),
        "{}",
        reused.error_message()
    );
    // A malformed key is a 400 that says what a key is.
    let bad = send("has space", other).await;
    assert_eq!(bad.status, 400);
    assert!(
        bad.error_message().contains("visible ASCII"),
        "{}",
        bad.error_message()
    );

    // Keys belong to their organization: another one's same key is new.
    let elsewhere = t.as_token(&t.server.create_org_with_token("idem-other").unwrap());
    let theirs = elsewhere
        .post_keyed("/v1/builds", "retry-7f3a", body.clone())
        .await;
    assert_eq!(theirs.status, 202, "{}", theirs.error_message());
    assert_ne!(theirs.json()["buildId"].as_str().unwrap(), build_id);

    // Uploads: the same bytes again are the first answer; other bytes 422.
    let upload = |key: &'static str, bytes: Vec<u8>| t.post_keyed("/v1/contexts", key, bytes);
    let archive = zip_entries(&[("Dockerfile", b"FROM scratch\n", 0o644)]);
    let stored = upload("upload-1", archive.clone()).await;
    assert_eq!(stored.status, 201, "{}", stored.error_message());
    let replayed = upload("upload-1", archive).await;
    assert_eq!(replayed.json(), stored.json());
    assert_eq!(replayed.headers["idempotent-replayed"], "true");
    let different = upload(
        "upload-1",
        zip_entries(&[("Dockerfile", b"FROM scratch\nLABEL x=1\n", 0o644)]),
    )
    .await;
    assert_eq!(different.status, 422);

    t.wait_succeeded(&build_id, LIMIT).await;
}

/// Issue 12: build ids are UUIDv7, so they sort in the order the builds
/// were made (the store's trees keyed by build id grow at their end rather
/// than everywhere at once).
#[tokio::test]
async fn issue_12_build_ids_are_time_ordered() {
    let t = TestServer::start().await;
    let name = unique_name("ordered");
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(t.create_build(&hello_request(&name)).await);
    }
    for id in &ids {
        let parsed = uuid::Uuid::parse_str(id).unwrap();
        assert_eq!(parsed.get_version_num(), 7, "{id}");
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "ids in creation order");
    for id in &ids {
        let cancel = t
            .post_json(&format!("/v1/builds/{id}:cancel"), &json!({}))
            .await;
        assert!(
            [200, 202, 409].contains(&cancel.status.as_u16()),
            "{}",
            String::from_utf8_lossy(&cancel.body)
        );
        t.wait_finished(id, LIMIT).await;
    }
}
