//! Regression: bollard 0.21 serves each BuildKit session on a task it never
//! stops, leaking one connection per build in the host and in the daemon.
//! A long-running host must close every build's session. This test is its
//! own binary so no other build runs beside it while descriptors are counted.

use std::time::Duration;

use kiln_tests::*;

fn open_descriptors(pid: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn dockerd_pid() -> Option<String> {
    std::fs::read_to_string("/var/run/docker.pid")
        .ok()
        .map(|p| p.trim().to_string())
}

#[tokio::test]
async fn buildkit_sessions_are_closed_after_each_build() {
    let t = TestServer::start().await;
    let dockerfile = format!("FROM {REGISTRY}/base/busybox:1\nRUN echo session-check\n");
    let run_one = || async {
        let build_id = t
            .create_build(&dockerfile_request(&unique_name("sessions"), &dockerfile))
            .await;
        let record = t.wait_finished(&build_id, Duration::from_secs(120)).await;
        assert_eq!(record["status"], "BUILD_STATUS_SUCCEEDED", "{record:#}");
    };
    // Warm up: pooled connections and runtime threads settle after one build.
    run_one().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ours_before = open_descriptors("self");
    let daemon_before = dockerd_pid().map(|p| open_descriptors(&p));
    for _ in 0..6 {
        run_one().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ours_after = open_descriptors("self");
    // One build's worth of slack for a pooled connection that is still open.
    assert!(
        ours_after <= ours_before + 1,
        "this process went from {ours_before} to {ours_after} open descriptors over 6 builds"
    );
    if let (Some(before), Some(pid)) = (daemon_before, dockerd_pid()) {
        let after = open_descriptors(&pid);
        assert!(
            after <= before + 1,
            "dockerd went from {before} to {after} open descriptors over 6 builds"
        );
    }
}
