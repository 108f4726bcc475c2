//! Kiln builder `kaniko`: builds with the Kaniko executor, run by the host
//! as a container (`engine.container-start`) with the context read-only at
//! `/workspace`, the organization's registry credentials at
//! `/kaniko/.docker/config.json` (written and mounted by the host; this
//! plugin never sees them) and a writable `/kiln-output` for the digest
//! file. Kaniko pushes every destination itself; the plugin then reads the
//! pushed manifest back through the host for size and layers.
//!
//! The executor's output is read line by line as it runs and rendered in
//! BuildKit's plain style ([`render`]) into the build log, so every
//! builder's log reads the same.
//!
//! The mapping from a build request to executor arguments, from its log to
//! the rendered one, and from an executor failure to a build failure, are
//! plain functions tested natively.

pub mod render;

use kiln_sdk::builder::engine::{container_start, registry_manifest, ContainerRunRequest};
use kiln_sdk::builder::{
    BuildOutput, BuildRequest, Builder, EngineFailure, FailureReason, HostError, HostFacts,
    PluginError,
};

/// Where things are inside the executor container.
const WORKSPACE: &str = "/workspace";
const OUTPUT: &str = "/kiln-output";
const DOCKER_CONFIG: &str = "/kaniko/.docker/config.json";

/// The executor's arguments for `request`.
pub fn executor_args(request: &BuildRequest, facts: &HostFacts) -> Vec<String> {
    let mut args = vec![
        format!("--context=dir://{WORKSPACE}"),
        format!("--dockerfile={WORKSPACE}/{}", request.dockerfile),
    ];
    for reference in &request.image_refs {
        args.push(format!("--destination={reference}"));
    }
    for kv in &request.build_args {
        args.push(format!("--build-arg={}={}", kv.key, kv.value));
    }
    if let Some(target) = &request.target {
        args.push(format!("--target={target}"));
    }
    if let Some(platform) = &request.platform {
        args.push(format!("--custom-platform={platform}"));
    }
    match (&facts.cache_repo, request.no_cache) {
        (Some(repo), false) => {
            args.push("--cache=true".into());
            args.push(format!("--cache-repo={repo}"));
        }
        _ => args.push("--cache=false".into()),
    }
    args.push(format!("--label=dev.kiln.build-id={}", request.build_id));
    for label in &facts.labels {
        args.push(format!("--label={}={}", label.key, label.value));
    }
    args.push(format!("--digest-file={OUTPUT}/digest"));
    args.push("--log-format=text".into());
    args.push("--verbosity=info".into());
    if facts.registry_plain_http {
        // Only a registry the host speaks plain HTTP to (loopback).
        args.push("--insecure".into());
        args.push("--insecure-pull".into());
    }
    args
}

/// A non-zero exit as a build failure: a RUN step's exit code, a missing
/// Dockerfile, a refused push, or the executor's own words.
pub fn failure_from_exit(exit_code: i32, error: Option<&str>) -> EngineFailure {
    let message = error.unwrap_or("the Kaniko executor failed without an error message");
    let lower = message.to_lowercase();
    let step_code = ["exit status ", "exit code: ", "exit code "]
        .iter()
        .find_map(|marker| {
            let rest = lower.rsplit_once(marker)?.1;
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse::<i32>().ok()
        });
    let (reason, code) = if lower.contains("failed to execute command") || step_code.is_some() {
        (FailureReason::RunFailed, step_code.or(Some(exit_code)))
    } else if lower.contains("dockerfile") && lower.contains("no such file") {
        (FailureReason::DockerfileNotFound, None)
    } else if lower.contains("unauthorized") || lower.contains("authentication required") {
        (FailureReason::PushUnauthorized, None)
    } else if lower.contains("push") && (lower.contains("denied") || lower.contains("forbidden")) {
        (FailureReason::PushDenied, None)
    } else if lower.contains("parse") && lower.contains("dockerfile") {
        (FailureReason::DockerfileParseError, None)
    } else if lower.contains("copy") && lower.contains("no such file") {
        (FailureReason::CopyFailed, None)
    } else {
        (FailureReason::EngineError, Some(exit_code))
    };
    EngineFailure {
        reason,
        message: message.to_string(),
        exit_code: code,
    }
}

struct Kaniko;

impl Builder for Kaniko {
    fn build(request: BuildRequest) -> Result<BuildOutput, PluginError> {
        if request.image_refs.is_empty() {
            return Err(PluginError::InvalidInput(
                "nothing to push: the build has no image references".into(),
            ));
        }
        if !request.secrets.is_empty() {
            return Err(PluginError::InvalidInput(
                "the Kaniko executor cannot mount build secrets; use the buildkit builder for `secrets`".into(),
            ));
        }
        let facts = &request.host;
        let image = facts.executor_image.clone().ok_or_else(|| {
            PluginError::InvalidInput(
                "the host named no Kaniko executor image (kiln serve --kaniko-image / KILN_KANIKO_IMAGE)".into(),
            )
        })?;
        kiln_sdk::log::info(&format!(
            "kaniko: executor {image}, profile {} ({} MiB)",
            request.limits.profile,
            request.limits.memory_bytes >> 20
        ));
        let args = executor_args(&request, facts);
        let not_on_engine = |error: HostError| {
            match error {
            HostError::Engine(failure) if failure.message.contains("is not on the engine") => {
                PluginError::Engine(EngineFailure {
                    message: format!(
                        "the Kaniko executor image {image} is not in the Docker Engine: pull or load it there, or point Kiln at another one (kiln serve --kaniko-image IMAGE, or KILN_KANIKO_IMAGE)"
                    ),
                    ..failure
                })
            }
            other => other.into(),
        }
        };
        let container = container_start(&ContainerRunRequest {
            image: image.clone(),
            args,
            env: Vec::new(),
            context_mount: Some(WORKSPACE.into()),
            registry_config_mount: Some(DOCKER_CONFIG.into()),
            // The registry may be on the engine's loopback.
            host_network: facts.registry_plain_http,
            output_mount: Some(OUTPUT.into()),
        })
        .map_err(not_on_engine)?;
        // Steps are numbered by walking the Dockerfile alongside what the
        // executor announces; the context is this builder's to read.
        let dockerfile =
            std::fs::read_to_string(std::path::Path::new("/context").join(&request.dockerfile))
                .unwrap_or_default();
        let build_args: Vec<(String, String)> = request
            .build_args
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        let mut renderer = render::KanikoRenderer::new(&dockerfile)
            .with_build_args(&dockerfile, &build_args)
            .with_cache_repo(facts.cache_repo.as_deref().filter(|_| !request.no_cache));
        while let Some(lines) = container.read_output() {
            for line in lines {
                for rendered in renderer.line(&line) {
                    kiln_sdk::log::output(&rendered);
                }
            }
        }
        for rendered in renderer.finish() {
            kiln_sdk::log::output(&rendered);
        }
        let run = container.wait().map_err(not_on_engine)?;
        if run.oom_killed {
            return Err(PluginError::Engine(EngineFailure {
                reason: FailureReason::OutOfMemory,
                message: format!(
                    "the executor was killed for using more than the {} profile's {} MiB",
                    request.limits.profile,
                    request.limits.memory_bytes >> 20
                ),
                exit_code: Some(run.exit_code),
            }));
        }
        if run.exit_code != 0 {
            return Err(PluginError::Engine(failure_from_exit(
                run.exit_code,
                renderer.error.as_deref(),
            )));
        }
        let digest_file = run
            .outputs
            .iter()
            .find(|kv| kv.key == "digest")
            .map(|kv| kv.value.trim().to_string());
        let first = &request.image_refs[0];
        let pushed = registry_manifest(first)?;
        if let Some(written) = &digest_file {
            if written != &pushed.digest {
                kiln_sdk::log::warn(&format!(
                    "the digest file says {written}, the registry {}",
                    pushed.digest
                ));
            }
        }
        Ok(BuildOutput {
            digest: digest_file.unwrap_or(pushed.digest),
            image_refs: request.image_refs,
            size_bytes: pushed.size_bytes,
            layer_count: pushed.layer_count,
            cached_steps: renderer.cached_steps,
            total_steps: renderer.total_steps,
        })
    }
}

kiln_sdk::export_builder!(Kaniko);

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_sdk::builder::{KeyValue, ResourceLimits};

    fn request() -> BuildRequest {
        BuildRequest {
            build_id: "b1".into(),
            dockerfile: "docker/Dockerfile.prod".into(),
            image_refs: vec![
                "127.0.0.1:5000/acme/app:v1".into(),
                "127.0.0.1:5000/acme/app:latest".into(),
            ],
            build_args: vec![KeyValue {
                key: "VERSION".into(),
                value: "1.2".into(),
            }],
            target: Some("runtime".into()),
            platform: Some("linux/arm64".into()),
            no_cache: false,
            secrets: Vec::new(),
            limits: ResourceLimits {
                profile: "medium".into(),
                memory_bytes: 4 << 30,
                nano_cpus: 2_000_000_000,
            },
            host: HostFacts {
                registry: "127.0.0.1:5000".into(),
                registry_plain_http: true,
                cache_repo: Some("127.0.0.1:5000/acme/cache/app".into()),
                executor_image: Some("ghcr.io/osscontainertools/kaniko:v1".into()),
                labels: vec![KeyValue {
                    key: "org.opencontainers.image.revision".into(),
                    value: "abc123".into(),
                }],
                base_images: Vec::new(),
            },
        }
    }

    #[test]
    fn every_request_field_maps_to_an_executor_argument() {
        let request = request();
        let args = executor_args(&request, &request.host);
        for expected in [
            "--context=dir:///workspace",
            "--dockerfile=/workspace/docker/Dockerfile.prod",
            "--destination=127.0.0.1:5000/acme/app:v1",
            "--destination=127.0.0.1:5000/acme/app:latest",
            "--build-arg=VERSION=1.2",
            "--target=runtime",
            "--custom-platform=linux/arm64",
            "--cache=true",
            "--cache-repo=127.0.0.1:5000/acme/cache/app",
            "--label=org.opencontainers.image.revision=abc123",
            "--digest-file=/kiln-output/digest",
            "--log-format=text",
            "--insecure",
            "--insecure-pull",
        ] {
            assert!(args.iter().any(|a| a == expected), "{expected} in {args:?}");
        }
    }

    #[test]
    fn no_cache_and_https_registries_drop_cache_and_insecure_flags() {
        let mut request = request();
        request.no_cache = true;
        request.host.registry_plain_http = false;
        let args = executor_args(&request, &request.host);
        assert!(args.iter().any(|a| a == "--cache=false"));
        assert!(!args.iter().any(|a| a.starts_with("--cache-repo")));
        assert!(!args.iter().any(|a| a.starts_with("--insecure")));
    }

    #[test]
    fn executor_errors_become_build_failures() {
        let run = failure_from_exit(
            1,
            Some("error building stage: failed to execute command: waiting for process to exit: exit status 3"),
        );
        assert_eq!(run.reason, FailureReason::RunFailed);
        assert_eq!(run.exit_code, Some(3));
        let push = failure_from_exit(
            1,
            Some("error pushing image: failed to push to destination 127.0.0.1:5000/a/b:v1: UNAUTHORIZED: authentication required"),
        );
        assert_eq!(push.reason, FailureReason::PushUnauthorized);
        let missing = failure_from_exit(
            1,
            Some("error resolving dockerfile path: please provide a valid path to a Dockerfile within the build context with --dockerfile: stat /workspace/Dockerfile: no such file or directory"),
        );
        assert_eq!(missing.reason, FailureReason::DockerfileNotFound);
        assert_eq!(
            failure_from_exit(2, None).reason,
            FailureReason::EngineError
        );
    }
}
