//! What to tell a user about each kind of failure: the operator's
//! troubleshooting guide, in one table.

use crate::store::FailureReason;

/// The hint shown with a failure of this kind.
pub fn hint_for(reason: FailureReason, exit_code: Option<i32>) -> String {
    match reason {
        FailureReason::GitRepositoryNotFound => {
            "Check `gitSource.url`. A private repository that the credentials cannot see also looks missing: save git credentials for its host (PUT /v1/secrets gitCredentials).".into()
        }
        FailureReason::GitAuthRequired => {
            "Save git credentials for the repository's host: PUT /v1/secrets {\"gitCredentials\": {\"HOST\": {\"username\": \"...\", \"token\": \"...\"}}} (or `kiln secrets set git HOST`).".into()
        }
        FailureReason::GitAuthFailed => {
            "The git host refused the saved credentials: check the username, that the token has not expired, and that it may read the repository (e.g. GitLab's read_repository scope, GitHub's contents:read).".into()
        }
        FailureReason::GitReferenceNotFound => {
            "Check `gitSource.reference`: a branch or tag name as it is on the remote (case-sensitive), or a commit id that is on one of its branches.".into()
        }
        FailureReason::GitHostNotPermitted => {
            "The server's operator decides which git hosts builds may fetch from ([plugins.git] git = [...] in the server config).".into()
        }
        FailureReason::GitFetchFailed => {
            "The fetch failed: check that the git host is reachable from the Kiln server, then build again.".into()
        }
        FailureReason::ContextDirNotFound => {
            "Check `gitSource.contextDir`: a directory of the repository at that commit, relative to its root (e.g. `services/api`).".into()
        }
        FailureReason::DockerfileNotFound => {
            "Check the `dockerfile` path: it is relative to the context root, and names are case-sensitive (`Dockerfile`, not `dockerfile`).".into()
        }
        FailureReason::DockerfileParseError => {
            "Fix the Dockerfile syntax at the line the message names.".into()
        }
        FailureReason::BaseImageNotFound => {
            "A FROM image does not exist: check its name and tag (the message names it). For a private registry, save the organization's registry credentials for its host.".into()
        }
        FailureReason::CopyFailed => {
            "A COPY/ADD source is missing from the context: check the paths (relative to the context root) and that .dockerignore does not exclude them.".into()
        }
        FailureReason::RunFailed => format!(
            "A RUN step exited with code {}; its output is in the log. Package-manager failures (apt, apk, npm, pip) usually mean a wrong package name, a missing lock file, or no network access to the package mirror.",
            exit_code.map(|c| c.to_string()).unwrap_or_else(|| "non-zero".into())
        ),
        FailureReason::OutOfMemory => {
            "The build ran out of memory: use a larger `profile`, or reduce the step's parallelism.".into()
        }
        FailureReason::PushUnauthorized => {
            "The registry refused the credentials: check the organization's registry credentials and that they may push.".into()
        }
        FailureReason::PushDenied => {
            "The registry refused the push: check that the repository may be written (and its storage is not full).".into()
        }
        FailureReason::RegistryUnreachable => {
            "The registry could not be reached, also after retries: check that it runs and that the Kiln server can reach it, then build again.".into()
        }
        FailureReason::ContextInvalid => {
            "The build context could not be used: fix the archive as the message says and send it again.".into()
        }
        FailureReason::PluginError => {
            "A plugin failed; the message names it and what happened. For a third-party plugin, report it to its author.".into()
        }
        FailureReason::Timeout => {
            "The build exceeded its time limit: raise `timeoutSecs` (up to the server's maximum) or make the build faster (cache, smaller context).".into()
        }
        FailureReason::Interrupted => {
            "The host restarted while the build ran; start the build again.".into()
        }
        FailureReason::EngineError => {
            "The container engine failed: check that the Docker Engine runs (`docker info`) and read the host's log.".into()
        }
        FailureReason::EngineLost => {
            "The engine the build ran on stopped answering (the message names it and what happened): build again; the pool sends it to a healthy engine. `GET /v1/engines` shows each engine's health.".into()
        }
        FailureReason::DiskFull => {
            "The server's disk is nearly full, not a fault of the build: ask its operator to free space (`kiln admin gc`) or add disk, then build again. A .dockerignore that leaves out what the build does not need makes the context smaller.".into()
        }
        FailureReason::Internal => "Kiln itself failed: read the host's log and report it.".into(),
        FailureReason::Superseded => {
            "Nothing to do: a newer push to the same branch is being built instead (the project's autoCancelSuperseded; PATCH it to false to build every push).".into()
        }
    }
}
