//! The engine's container runs, as a builder plugin drives them: granted
//! images only, the context mounted read-only, output in the build log, the
//! exit code reported, and no container left behind — also when cancelled.

use std::time::{Duration, Instant};

use kiln_tests::*;
use serde_json::json;

async fn server() -> TestServer {
    server_with(|_| {}).await
}

/// A server with the container-runner fixture granted what it asks, and
/// `adjust`'s changes.
async fn server_with(
    adjust: impl FnOnce(&mut kiln_tests::kiln_server::config::ServerConfig),
) -> TestServer {
    let plugins = plugin_dir_with(&["container-runner"], &[]);
    let dir = plugins.path().to_path_buf();
    let t = TestServer::start_with(|c| {
        c.plugin_dirs = vec![dir];
        c.plugin_grants.insert(
            "container-runner".into(),
            kiln_tests::kiln_server::config::FileConfig::parse_grant("grant = \"asked\""),
        );
        adjust(c);
    })
    .await;
    // The directory must outlive loading only; the component is in memory.
    drop(plugins);
    t
}

fn request(script: &str, image: Option<&str>) -> serde_json::Value {
    let mut args = json!({ "RUN_SCRIPT": script });
    if let Some(image) = image {
        args["RUN_IMAGE"] = json!(image);
    }
    let mut body = hello_request(&unique_name("runner"));
    body["builder"] = json!("container-runner");
    body["buildArgs"] = args;
    body
}

#[tokio::test]
async fn a_granted_image_runs_with_the_context_and_reports_its_exit() {
    let t = server().await;
    let marker = unique_name("finished-marker");
    let build_id = t
        .create_build(&request(
            &format!("ls /workspace && wc -c < /creds/config.json && echo {marker} && echo written-by-the-run > /out/result && exit 7"),
            None,
        ))
        .await;
    let record = t.wait_finished(&build_id, Duration::from_secs(60)).await;
    let message = record["failure"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("exit code 7, oom-killed false, outputs [result=written-by-the-run]"),
        "{record:#}"
    );
    let log = t.log_text(&build_id).await;
    assert!(log.contains("hello.sh") && log.contains(&marker), "{log}");
    assert_eq!(
        containers_with(&marker).await,
        0,
        "the container was removed"
    );

    let build_id = t.create_build(&request("touch /workspace/x", None)).await;
    t.wait_finished(&build_id, Duration::from_secs(60)).await;
    assert!(
        t.log_text(&build_id)
            .await
            .contains("Read-only file system"),
        "the context is read-only"
    );
}

#[tokio::test]
async fn an_image_outside_the_grant_is_denied() {
    let t = server().await;
    let build_id = t
        .create_build(&request("true", Some("local/busybox:1")))
        .await;
    let record = t.wait_finished(&build_id, Duration::from_secs(60)).await;
    let message = record["failure"]["message"].as_str().unwrap();
    assert!(
        message.contains("is not granted running the image `local/busybox:1`"),
        "{message}"
    );
}

#[tokio::test]
async fn cancelling_removes_the_running_container_within_two_seconds() {
    let t = server().await;
    let marker = unique_name("container-marker");
    let build_id = t
        .create_build(&request(
            &format!("echo {marker} && sleep 300 && echo done"),
            None,
        ))
        .await;
    let started = Instant::now();
    while !t.log_text(&build_id).await.contains(&marker) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the container never started"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(containers_with(&marker).await, 1);
    t.post_json(&format!("/v1/builds/{build_id}:cancel"), &json!({}))
        .await;
    let cancelled = Instant::now();
    while containers_with(&marker).await != 0 {
        assert!(
            cancelled.elapsed() < Duration::from_secs(2),
            "the container is still there"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let record = t.wait_finished(&build_id, Duration::from_secs(10)).await;
    assert_eq!(record["status"], "BUILD_STATUS_CANCELLED");
}

/// Issue 16: under `auto`, a build that runs out of memory (in a container
/// run, where the profile's memory is enforced) is built once more one size
/// up, saying so in its log, and the record keeps both attempts; the next
/// build of the same name starts at the size that worked. A profile named
/// explicitly is not retried.
#[tokio::test]
async fn issue_16_an_auto_build_out_of_memory_is_rebuilt_once_one_size_up() {
    let t = server_with(|c| {
        // Sizes a test can outgrow: `auto` starts at medium.
        c.profiles[1].memory_bytes = 48 << 20;
        c.profiles[2].memory_bytes = 512 << 20;
    })
    .await;
    // `dd` holds one 160 MiB block in memory; the run then lasts long
    // enough for the engine's stats (one sample a second) to see its peak.
    let hungry = |name: &str, profile: Option<&str>| {
        let mut body = request(
            "dd if=/dev/zero of=/dev/null bs=160M count=1 && sleep 2",
            None,
        );
        body["name"] = json!(name);
        body["buildArgs"]["THEN_BUILD"] = json!("1");
        if let Some(profile) = profile {
            body["profile"] = json!(profile);
        }
        body
    };
    let name = unique_name("hungry");

    let build_id = t.create_build(&hungry(&name, None)).await;
    let record = t.wait_succeeded(&build_id, Duration::from_secs(120)).await;
    assert_eq!(record["request"]["profile"], "auto");
    assert_eq!(record["profileUsed"], "large", "{record:#}");
    let attempts = record["attempts"]
        .as_array()
        .expect("the first attempt is kept");
    assert_eq!(attempts.len(), 1, "{record:#}");
    assert_eq!(attempts[0]["profile"], "medium");
    assert_eq!(attempts[0]["failure"]["reason"], "OUT_OF_MEMORY");
    t.assert_documented("Build", &record).await;
    let log = t.log_text(&build_id).await;
    assert!(
        log.contains("profile auto: medium (no earlier successful build")
            && log.contains("profile auto: OUT_OF_MEMORY with medium (48 MiB); building once more with large (512 MiB)"),
        "{log}"
    );

    // Its peak, as the engine measured it while it ran.
    let peak = record["peakMemoryBytes"].as_u64().expect("a measured peak");
    assert!(
        (160 << 20..512 << 20).contains(&peak),
        "peak {peak} of a run holding 160 MiB"
    );

    // The next build of the name is sized by that peak, a quarter more.
    let again = t.create_build(&hungry(&name, None)).await;
    let record = t.wait_succeeded(&again, Duration::from_secs(120)).await;
    assert_eq!(record["profileUsed"], "large");
    assert!(record.get("attempts").is_none(), "{record:#}");
    let log = t.log_text(&again).await;
    assert!(
        log.contains(&format!("profile auto: large, the smallest that fits the {} MiB the last successful build of {name} (#1) used", peak >> 20)),
        "{log}"
    );

    // Sized by what it used, not by what it was given: a build that ran
    // with extra-large makes the next `auto` one large.
    let roomy = unique_name("roomy");
    let given = t.create_build(&hungry(&roomy, Some("extra-large"))).await;
    let record = t.wait_succeeded(&given, Duration::from_secs(120)).await;
    assert_eq!(record["profileUsed"], "extra-large");
    let sized = t.create_build(&hungry(&roomy, None)).await;
    let record = t.wait_succeeded(&sized, Duration::from_secs(120)).await;
    assert_eq!(record["profileUsed"], "large", "{record:#}");

    // Named explicitly, a profile is what the build gets: no retry.
    let small = t
        .create_build(&hungry(&unique_name("hungry"), Some("medium")))
        .await;
    let record = t.wait_finished(&small, Duration::from_secs(120)).await;
    assert_eq!(record["failure"]["reason"], "OUT_OF_MEMORY", "{record:#}");
    assert_eq!(record["profileUsed"], "medium");
    assert!(record.get("attempts").is_none(), "{record:#}");
}
