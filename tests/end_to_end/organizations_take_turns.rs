//! Organizations share a node fairly: each has a limit on queued builds
//! (429 with `Retry-After` past it) and may have one on running builds, and
//! the workers take turns between organizations, so one organization's
//! queue does not starve another's build.

use std::time::Duration;

use hyper::StatusCode;
use kiln_tests::*;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(180);

/// A build that runs for about `seconds`.
fn slow_request(name: &str, seconds: u32) -> Value {
    let mut request = dockerfile_request(
        name,
        &format!("FROM {REGISTRY}/base/busybox:1\nRUN sleep {seconds} && echo {name}\n"),
    );
    request["noCache"] = true.into();
    request
}

async fn wait_status(api: &Api, build_id: &str, status: &str) {
    let started = std::time::Instant::now();
    while api.build(build_id).await["status"] != status {
        assert!(started.elapsed() < LIMIT, "{build_id} never {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn time(record: &Value, field: &str) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(record[field].as_str().expect(field)).unwrap()
}

fn started_at(record: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    time(record, "startTime")
}

/// Issue 12: per-organization quotas, and round-robin between
/// organizations. One slot; organization A fills its queue, B's one build
/// runs next anyway.
#[tokio::test]
async fn issue_12_a_full_queue_is_429_and_organizations_take_turns() {
    let t = TestServer::start_with(|config| {
        config.max_concurrent_builds = 1;
        config.max_queued_builds_per_org = 2;
    })
    .await;
    let a_running = t
        .create_build(&slow_request(&unique_name("a-first"), 4))
        .await;
    wait_status(&t, &a_running, "BUILD_STATUS_RUNNING").await;
    let a_queued = [
        t.create_build(&slow_request(&unique_name("a-second"), 1))
            .await,
        t.create_build(&slow_request(&unique_name("a-third"), 1))
            .await,
    ];

    // A third queued build of A is one too many.
    let refused = t
        .post_json("/v1/builds", &slow_request(&unique_name("a-fourth"), 1))
        .await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After is seconds");
    assert!(retry_after > 0);
    let message = refused.error_message();
    assert!(message.contains("2 builds waiting"), "{message}");
    t.assert_documented("ErrorBody", &refused.json()).await;

    // B's queue is its own; its build goes next, before A's queued ones.
    let b = t.as_token(&t.server.create_org_with_token("turns-b").unwrap());
    let b_build = b
        .create_build(&slow_request(&unique_name("b-only"), 1))
        .await;
    let b_record = b.wait_succeeded(&b_build, LIMIT).await;
    let a_first = t.wait_succeeded(&a_running, LIMIT).await;
    for queued in &a_queued {
        let a_record = t.wait_succeeded(queued, LIMIT).await;
        assert!(
            started_at(&b_record) < started_at(&a_record),
            "B's build started at {} after A's queued one at {}",
            started_at(&b_record),
            started_at(&a_record)
        );
    }
    assert!(started_at(&a_first) < started_at(&b_record));
    // With its queue drained, A may queue again.
    let again = t
        .post_json("/v1/builds", &slow_request(&unique_name("a-again"), 1))
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    let metrics = t
        .request_with(hyper::Method::GET, "/metrics", &[], Vec::new())
        .await;
    let text = String::from_utf8_lossy(&metrics.body);
    assert!(
        text.contains("kiln_builds_refused_by_quota_total 1"),
        "{text}"
    );
}

/// Issue 12: an organization at its running limit waits while another
/// organization's build takes the free slot.
#[tokio::test]
async fn issue_12_an_organization_at_its_running_limit_leaves_free_slots_to_others() {
    let t = TestServer::start_with(|config| {
        config.max_concurrent_builds = 2;
        config.max_running_builds_per_org = 1;
    })
    .await;
    let a_first = t
        .create_build(&slow_request(&unique_name("a-long"), 6))
        .await;
    wait_status(&t, &a_first, "BUILD_STATUS_RUNNING").await;
    let a_second = t
        .create_build(&slow_request(&unique_name("a-held"), 1))
        .await;
    let b = t.as_token(&t.server.create_org_with_token("limit-b").unwrap());
    let b_build = b
        .create_build(&slow_request(&unique_name("b-free"), 1))
        .await;
    b.wait_succeeded(&b_build, LIMIT).await;
    // A's second build waited for A's first, though a slot was free.
    let first = t.build(&a_first).await;
    let second = t.build(&a_second).await;
    if first["status"] == "BUILD_STATUS_RUNNING" {
        assert_eq!(second["status"], "BUILD_STATUS_PENDING", "{second:#}");
    }
    let first = t.wait_succeeded(&a_first, LIMIT).await;
    let second = t.wait_succeeded(&a_second, LIMIT).await;
    assert!(
        started_at(&second) >= time(&first, "finishTime"),
        "A ran two builds at once: {first:#} {second:#}"
    );
}

/// Issue 12: a build waits to start while a create is being answered (a
/// burst of creates answered first; starting builds took the same cores
/// and every answer waited), but no longer than a quarter of a second: a
/// create that never ends does not hold builds back.
#[tokio::test]
async fn issue_12_workers_give_way_to_creates_being_answered_but_not_for_long() {
    use tokio::io::AsyncWriteExt;
    let t = TestServer::start().await;
    // A create whose body arrives slowly: in flight until it is sent whole.
    let body = serde_json::to_vec(&slow_request(&unique_name("slow-body"), 0)).unwrap();
    let mut slow = tokio::net::TcpStream::connect(t.server.addr())
        .await
        .unwrap();
    let head = format!(
        "POST /v1/builds HTTP/1.1\r\nhost: kiln\r\nauthorization: Bearer {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        t.token,
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body[..10]).await.unwrap();
    // The server is reading that body (a request it has not started has
    // nothing to give way to).
    tokio::time::sleep(Duration::from_millis(200)).await;

    let meanwhile = t
        .create_build(&slow_request(&unique_name("meanwhile"), 0))
        .await;
    let record = t.wait_succeeded(&meanwhile, LIMIT).await;
    let waited = started_at(&record) - time(&record, "createTime");
    assert!(
        waited >= chrono::Duration::milliseconds(250),
        "the build started {waited} after it was created, while a create was still being answered"
    );

    // The slow create is answered once its body is whole.
    slow.write_all(&body[10..]).await.unwrap();
    let answer = read_json_answer_start(&mut slow).await;
    assert!(answer.starts_with("HTTP/1.1 202"), "{answer}");
}
