//! The `git` interface: the plugin must be granted some git host before
//! anything else happens; the embedder's [`Git`](super::Git) then asks the
//! [`GitPermit`] about the URL's own host once it has parsed it.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use crate::bindings::git;
use crate::manifest::glob_matches;
use crate::sandbox::PluginState;

/// The `git` permission entry that admits local (`file://`) repositories;
/// `*` globs never do.
pub const FILE_PERMISSION: &str = "file://";

/// Whether a `git` permission list admits `subject`: a lowercase host name,
/// or [`FILE_PERMISSION`] for a local repository. `*` globs match host
/// names only; local repositories need the literal `file://` entry.
pub fn host_permitted(granted: &BTreeSet<String>, subject: &str) -> bool {
    if subject == FILE_PERMISSION {
        return granted.contains(FILE_PERMISSION);
    }
    granted
        .iter()
        .filter(|g| g.as_str() != FILE_PERMISSION)
        .any(|glob| glob_matches(glob, subject))
}

/// The git hosts one plugin call is granted, for the embedder to consult.
#[derive(Debug, Clone)]
pub struct GitPermit {
    plugin_id: String,
    granted: Arc<BTreeSet<String>>,
}

impl GitPermit {
    /// The plugin asking.
    pub fn plugin_id(&self) -> &str {
        &self.plugin_id
    }

    /// Whether the plugin may check out from `subject` (a lowercase host
    /// name, or [`FILE_PERMISSION`]).
    pub fn admits(&self, subject: &str) -> bool {
        host_permitted(&self.granted, subject)
    }
}

impl git::Host for PluginState {
    async fn checkout(
        &mut self,
        request: git::CheckoutRequest,
    ) -> wasmtime::Result<Result<git::CheckoutResult, git::GitError>> {
        let caps = &self.caps;
        if caps.granted.git.is_empty() {
            return Ok(Err(git::GitError::Denied(format!(
                "plugin {} is not granted any git host; its manifest must ask for `git = [\"host\"]` and the operator must grant it",
                caps.plugin_id
            ))));
        }
        let Some(git_loan) = caps.git.clone() else {
            return Ok(Err(git::GitError::Failed(git::GitFailure {
                reason: git::GitFailureReason::FetchFailed,
                message: "git checkouts are only available while a build's context is materialized"
                    .into(),
            })));
        };
        let permit = GitPermit {
            plugin_id: caps.plugin_id.clone(),
            granted: Arc::new(caps.granted.git.clone()),
        };
        let started = Instant::now();
        let result = git_loan.checkout(request, permit).await;
        self.extend_deadline(started.elapsed());
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn star_admits_hosts_but_not_local_repositories() {
        let star: BTreeSet<String> = ["*".to_string()].into();
        assert!(host_permitted(&star, "github.com"));
        assert!(!host_permitted(&star, FILE_PERMISSION));
        let corp: BTreeSet<String> = ["*.corp.example".to_string(), "file://".to_string()].into();
        assert!(host_permitted(&corp, "git.corp.example"));
        assert!(!host_permitted(&corp, "github.com"));
        assert!(host_permitted(&corp, FILE_PERMISSION));
    }
}
