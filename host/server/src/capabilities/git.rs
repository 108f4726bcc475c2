//! The host side of `git`: checkouts for context sources, scoped to one
//! build's context directory, its organization's mirrors and credentials,
//! and the hosts the plugin is granted.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::git::{
    url::FILE_PERMISSION, Checkout, CheckoutRequest, CredentialLookup, GitError, GitFetcher,
    InterruptOnDrop, Limits, RefKind, RepoUrl,
};
use crate::plugins::bindings::source::kiln::plugin::git;
use crate::plugins::manifest::glob_matches;
use crate::plugins::PluginState;

/// Git as one build's context source may use it.
pub struct GitScope {
    pub fetcher: GitFetcher,
    pub org: String,
    /// The build's context directory on the host.
    pub context_dir: PathBuf,
    pub credentials: CredentialLookup,
    pub limits: Limits,
    /// What the host checked out (or why it failed), recorded by the host
    /// itself so the build record never depends on what a plugin reports.
    pub outcome: Arc<Mutex<Option<Result<Checkout, GitError>>>>,
}

/// Whether a `git` permission entry admits `url`. `*` globs match host
/// names only; local repositories need the literal `file://` entry.
pub fn host_permitted(granted: &std::collections::BTreeSet<String>, url: &RepoUrl) -> bool {
    let subject = url.permission_subject();
    if subject == FILE_PERMISSION {
        return granted.contains(FILE_PERMISSION);
    }
    granted
        .iter()
        .filter(|g| g.as_str() != FILE_PERMISSION)
        .any(|glob| glob_matches(glob, subject))
}

fn to_wit_failure(error: &GitError) -> git::GitFailure {
    use git::GitFailureReason as R;
    let reason = match error {
        GitError::InvalidUrl { .. } => R::InvalidUrl,
        GitError::HostNotPermitted { .. } => R::HostNotPermitted,
        GitError::RepositoryNotFound { .. } => R::RepositoryNotFound,
        GitError::AuthenticationRequired { .. } | GitError::ClearTextCredentials { .. } => {
            R::AuthenticationRequired
        }
        GitError::AuthenticationFailed { .. } => R::AuthenticationFailed,
        GitError::UnknownReference { .. } | GitError::AmbiguousReference { .. } => {
            R::UnknownReference
        }
        GitError::ContextDirMissing { .. } | GitError::ContextDirNotDirectory { .. } => {
            R::ContextDirMissing
        }
        GitError::UnsafeTree(_) | GitError::TooLarge(_) => R::ContextInvalid,
        GitError::Submodule { .. }
        | GitError::Fetch { .. }
        | GitError::Cancelled { .. }
        | GitError::Internal(_) => R::FetchFailed,
    };
    git::GitFailure {
        reason,
        message: error.to_string(),
    }
}

impl git::Host for PluginState {
    async fn checkout(
        &mut self,
        request: git::CheckoutRequest,
    ) -> wasmtime::Result<Result<git::CheckoutResult, git::GitFailure>> {
        if self.caps.granted.git.is_empty() {
            let plugin = self.caps.plugin_id.clone();
            return Ok(Err(git::GitFailure {
                reason: git::GitFailureReason::HostNotPermitted,
                message: format!(
                    "plugin {plugin} is not granted any git host; its manifest must ask for `git = [\"host\"]` and the operator must grant it"
                ),
            }));
        }
        let Some(scope) = self.caps.git.as_ref() else {
            return Ok(Err(git::GitFailure {
                reason: git::GitFailureReason::FetchFailed,
                message: "git checkouts are only available while a build's context is materialized"
                    .into(),
            }));
        };
        if scope.outcome.lock().unwrap().is_some() {
            return Ok(Err(git::GitFailure {
                reason: git::GitFailureReason::FetchFailed,
                message: "a build checks out one repository; checkout was already called".into(),
            }));
        }
        let granted = self.caps.granted.git.clone();
        let plugin = self.caps.plugin_id.clone();
        let permitted = move |url: &RepoUrl| {
            if host_permitted(&granted, url) {
                Ok(())
            } else {
                Err(GitError::HostNotPermitted {
                    plugin: plugin.clone(),
                    host: url.permission_subject().to_string(),
                })
            }
        };
        let checkout = CheckoutRequest {
            url: request.url,
            reference: request.reference,
            context_dir: request.context_dir,
            submodules: request.submodules,
        };
        let fetcher = scope.fetcher.clone();
        let org = scope.org.clone();
        let dest = scope.context_dir.clone();
        let credentials = scope.credentials.clone();
        let limits = scope.limits;
        let interrupt = Arc::new(AtomicBool::new(false));
        // A dropped call (cancel, timeout) stops the fetch thread.
        let _stop = InterruptOnDrop(interrupt.clone());
        let started = Instant::now();
        let result = tokio::task::spawn_blocking(move || {
            fetcher.checkout(
                &org,
                &checkout,
                &permitted,
                &credentials,
                &dest,
                &limits,
                &interrupt,
            )
        })
        .await
        .unwrap_or_else(|e| {
            Err(GitError::Internal(format!(
                "the checkout thread failed: {e}"
            )))
        });
        self.extend_deadline(started.elapsed());
        let answer = match &result {
            Ok(done) => Ok(git::CheckoutResult {
                commit: done.commit.clone(),
                ref_kind: match done.kind {
                    RefKind::Branch => git::RefKind::Branch,
                    RefKind::Tag => git::RefKind::Tag,
                    RefKind::Commit => git::RefKind::Commit,
                },
                full_ref: done.full_ref.clone(),
                files: done.files,
                bytes: done.bytes,
                submodules: done.submodules.clone(),
                shallow: done.shallow,
            }),
            Err(error) => Err(to_wit_failure(error)),
        };
        if let Some(scope) = self.caps.git.as_ref() {
            *scope.outcome.lock().unwrap() = Some(result);
        }
        Ok(answer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_admits_hosts_but_not_local_repositories() {
        let star: std::collections::BTreeSet<String> = ["*".to_string()].into();
        let url = |u: &str| RepoUrl::parse(u).unwrap();
        assert!(host_permitted(&star, &url("https://github.com/a/b.git")));
        assert!(!host_permitted(&star, &url("file:///srv/git/b.git")));
        let corp: std::collections::BTreeSet<String> =
            ["*.corp.example".to_string(), "file://".to_string()].into();
        assert!(host_permitted(
            &corp,
            &url("https://git.corp.example/a.git")
        ));
        assert!(!host_permitted(&corp, &url("https://github.com/a.git")));
        assert!(host_permitted(&corp, &url("file:///srv/git/b.git")));
    }
}
