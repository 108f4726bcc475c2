//! Git checkouts as the runtime's [`Git`] capability: scoped to one build's
//! context directory, its organization's mirrors and credentials; the
//! URL's host is checked against the plugin's [`GitPermit`] before the
//! fetch starts.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use kiln_plugin_runtime::bindings::git;
use kiln_plugin_runtime::{Git, GitPermit};

use crate::git::{
    Checkout, CheckoutRequest, CredentialLookup, GitError, GitFetcher, InterruptOnDrop, Limits,
    RefKind, RepoUrl,
};

/// Git as one build's context source may use it.
pub struct BuildGit {
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

fn to_wit_error(error: &GitError) -> git::GitError {
    use git::GitFailureReason as R;
    let reason = match error {
        GitError::HostNotPermitted { .. } | GitError::AddressNotPermitted(_) => {
            return git::GitError::Denied(error.to_string())
        }
        GitError::InvalidUrl { .. } => R::InvalidUrl,
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
    git::GitError::Failed(git::GitFailure {
        reason,
        message: error.to_string(),
    })
}

#[async_trait::async_trait]
impl Git for BuildGit {
    async fn checkout(
        &self,
        request: git::CheckoutRequest,
        permit: GitPermit,
    ) -> Result<git::CheckoutResult, git::GitError> {
        if self.outcome.lock().unwrap().is_some() {
            return Err(git::GitError::Failed(git::GitFailure {
                reason: git::GitFailureReason::FetchFailed,
                message: "a build checks out one repository; checkout was already called".into(),
            }));
        }
        let permitted = move |url: &RepoUrl| {
            if permit.admits(url.permission_subject()) {
                Ok(())
            } else {
                Err(GitError::HostNotPermitted {
                    plugin: permit.plugin_id().to_string(),
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
        let fetcher = self.fetcher.clone();
        let org = self.org.clone();
        let dest = self.context_dir.clone();
        let credentials = self.credentials.clone();
        let limits = self.limits;
        let interrupt = Arc::new(AtomicBool::new(false));
        // A dropped call (cancel, timeout) stops the fetch thread.
        let _stop = InterruptOnDrop(interrupt.clone());
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
            Err(error) => Err(to_wit_error(error)),
        };
        *self.outcome.lock().unwrap() = Some(result);
        answer
    }
}
