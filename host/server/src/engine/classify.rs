//! Turn the engine's error text into a classified failure. The patterns are
//! the messages Docker Engine 20.10's BuildKit and the registry produce.

use super::BuildFailure;
use crate::store::FailureReason;

/// Classify a failed build from the stream's error and the failing step's
/// own error text. `step_output` is the failing step's last output lines.
pub fn classify_build_error(error: &str, step_error: &str, step_output: String) -> BuildFailure {
    let text = format!("{error}\n{step_error}");
    let lower = text.to_lowercase();
    let exit_code = parse_exit_code(&text);
    let reason = if lower.contains("failed to read dockerfile")
        || (lower.contains("dockerfile") && lower.contains("no such file or directory"))
    {
        FailureReason::DockerfileNotFound
    } else if base_image_missing(&lower) {
        FailureReason::BaseImageNotFound
    } else if lower.contains("dockerfile parse error")
        || lower.contains("unknown instruction")
        || lower.contains("failed to create llb definition")
    {
        FailureReason::DockerfileParseError
    } else if lower.contains("failed to compute cache key")
        || (lower.contains("not found") && (lower.contains("copy") || lower.contains("checksum")))
    {
        FailureReason::CopyFailed
    } else if exit_code == Some(137) || lower.contains("out of memory") || lower.contains("oom") {
        FailureReason::OutOfMemory
    } else if exit_code.is_some() {
        // Only a step that ran and exited is the user's: "executor failed
        // running" without an exit code is the engine failing to run it
        // (e.g. "could not find bridge docker0").
        FailureReason::RunFailed
    } else {
        FailureReason::EngineError
    };
    let mut message = error.trim().to_string();
    if !step_output.is_empty() {
        message.push('\n');
        message.push_str(&step_output);
    }
    BuildFailure {
        reason,
        message,
        exit_code,
    }
}

/// Whether the engine could not find a `FROM` image: BuildKit resolving
/// the image's metadata, or the registry answering that it has no such
/// manifest.
fn base_image_missing(lower: &str) -> bool {
    let resolving = lower.contains("failed to resolve source metadata")
        || lower.contains("failed to create llb definition")
        || lower.contains("failed to load cache key");
    resolving
        && (lower.contains(": not found")
            || lower.contains("manifest unknown")
            || lower.contains("pull access denied")
            || lower.contains("repository does not exist"))
}

/// Whether a push failed for want of a registry to talk to (worth
/// retrying), rather than because the registry said no.
fn registry_unreachable(lower: &str) -> bool {
    [
        "connection refused",
        "no such host",
        "i/o timeout",
        "connection reset",
        "no route to host",
        "network is unreachable",
        "tls handshake timeout",
        "unexpected eof",
        "502 bad gateway",
        "503 service unavailable",
        "504 gateway timeout",
        "500 internal server error",
        "received unexpected http status: 5",
    ]
    .iter()
    .any(|symptom| lower.contains(symptom))
        // Go's HTTP client when the registry closed the connection before
        // answering (a registry going down): `Get "http://…/v2/": EOF`.
        || lower.trim_end().ends_with(": eof")
}

/// Classify a failed push.
pub fn classify_push_error(reference: &str, error: &str) -> BuildFailure {
    let lower = error.to_lowercase();
    let reason = if lower.contains("unauthorized")
        || lower.contains("authentication required")
        || lower.contains("no basic auth credentials")
    {
        FailureReason::PushUnauthorized
    } else if registry_unreachable(&lower) {
        FailureReason::RegistryUnreachable
    } else {
        FailureReason::PushDenied
    };
    BuildFailure {
        reason,
        message: format!("push of {reference} failed: {}", error.trim()),
        exit_code: None,
    }
}

/// `... exit code: 3` → 3.
fn parse_exit_code(text: &str) -> Option<i32> {
    let at = text.rfind("exit code: ")? + "exit code: ".len();
    let digits: String = text[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 12: engine-side and network failures were blamed on the user.
    #[test]
    fn issue_12_engine_and_network_failures_have_their_own_reasons() {
        let bridge = classify_build_error(
            "executor failed running [/bin/sh -c echo hi]: failed to create endpoint on network bridge: could not find bridge docker0",
            "",
            String::new(),
        );
        assert_eq!(bridge.reason, FailureReason::EngineError);
        let refused = classify_push_error(
            "127.0.0.1:5000/default/app:latest",
            "Get \"http://127.0.0.1:5000/v2/\": dial tcp 127.0.0.1:5000: connect: connection refused",
        );
        assert_eq!(refused.reason, FailureReason::RegistryUnreachable);
        let unavailable = classify_push_error(
            "r/a:b",
            "received unexpected HTTP status: 503 Service Unavailable",
        );
        assert_eq!(unavailable.reason, FailureReason::RegistryUnreachable);
        // The registry closing the connection as it stopped (seen by the
        // reliability suite's outage: it was PUSH_DENIED, not retried).
        let closed = classify_push_error(
            "127.0.0.1:37189/default/outage:latest",
            "Docker stream error: Get \"http://127.0.0.1:37189/v2/\": EOF",
        );
        assert_eq!(closed.reason, FailureReason::RegistryUnreachable);
        let denied = classify_push_error(
            "r/a:b",
            "denied: requested access to the resource is denied",
        );
        assert_eq!(denied.reason, FailureReason::PushDenied);
        let missing = classify_build_error(
            "failed to solve with frontend dockerfile.v0: failed to create LLB definition: 127.0.0.1:5000/base/busybox:nope: not found",
            "",
            String::new(),
        );
        assert_eq!(missing.reason, FailureReason::BaseImageNotFound);
    }

    #[test]
    fn a_failed_run_carries_its_exit_code() {
        let f = classify_build_error(
            "executor failed running [/bin/sh -c exit 3]: exit code: 3",
            "",
            String::new(),
        );
        assert_eq!(f.reason, FailureReason::RunFailed);
        assert_eq!(f.exit_code, Some(3));
    }

    #[test]
    fn a_missing_dockerfile_is_named() {
        let f = classify_build_error(
            "failed to solve with frontend dockerfile.v0: failed to read dockerfile: open /var/lib/docker/tmp/x/Dockerfile: no such file or directory",
            "",
            String::new(),
        );
        assert_eq!(f.reason, FailureReason::DockerfileNotFound);
    }

    #[test]
    fn push_auth_errors_are_told_apart() {
        assert_eq!(
            classify_push_error("r", "unauthorized: authentication required").reason,
            FailureReason::PushUnauthorized
        );
        assert_eq!(
            classify_push_error("r", "denied: requested access to the resource is denied").reason,
            FailureReason::PushDenied
        );
    }
}
