//! Git checkouts for builds, with gix (no `git` binary at run time).
//!
//! | item | what it does |
//! |---|---|
//! | [`GitFetcher`] | one mirror per (organization, repository URL) under the data dir; fetches what a build needs into it, then exports the commit's tree |
//! | [`CheckoutRequest`] / [`Checkout`] | what a build asks for and what it got (the resolved commit and whether the reference was a branch, a tag or a commit) |
//! | [`GitError`] | every way a checkout fails, each saying what to fix |
//! | [`export`] | writes a tree (or one sub-directory of it) into the build context, with limits and path checks |
//! | [`kept`] | a finished build's context kept beside the mirror, so the next checkout writes only what changed |
//! | [`url`] | URL parsing and the host a permission is checked against |
//!
//! A fetch is shallow (depth 1) wherever the reference names a branch, a tag
//! or a full commit id; only an abbreviated commit id needs the history. The
//! mirror keeps what earlier builds fetched, so the next build of the same
//! repository receives only new objects. A file lock per mirror makes
//! concurrent builds of one repository (and two Kiln processes) take turns.
//! The host alone holds credentials: gix asks [`GitFetcher`]'s callback, which
//! answers from the organization's stored git credentials and nothing else
//! (no credential helpers, no global git config, no prompts).

pub mod export;
pub mod kept;
pub mod url;

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use gix::remote::Direction;
use sha2::{Digest, Sha256};

pub use export::Limits;
pub use url::RepoUrl;

/// Credentials for one git host: username and password or token.
#[derive(Clone)]
pub struct GitCredential {
    pub username: String,
    pub password: String,
}

/// Looks up the organization's credentials for a git host.
pub type CredentialLookup = Arc<dyn Fn(&str) -> Option<GitCredential> + Send + Sync>;

/// The lookup over an organization's saved git credentials: the host's
/// own, else the `*` fallback. `on_use` sees every password handed out (a
/// build's log masks it).
pub fn credential_lookup(
    known: std::collections::BTreeMap<String, crate::store::secrets::Credential>,
    on_use: impl Fn(&str) + Send + Sync + 'static,
) -> CredentialLookup {
    Arc::new(move |host: &str| {
        let found = known.get(host).or_else(|| known.get("*"))?;
        on_use(&found.password);
        Some(GitCredential {
            username: found.username.clone(),
            password: found.password.clone(),
        })
    })
}

/// What a build asks to check out.
#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    pub url: String,
    /// A branch, a tag, a full or abbreviated commit id, or a full ref name.
    pub reference: String,
    /// The sub-directory that becomes the context (`""`: the whole tree).
    pub context_dir: String,
    /// Fetch and check out submodules too.
    pub submodules: bool,
}

/// What a reference named: a branch, a tag or a commit.
pub use kiln_api::RefKind;

/// What was checked out.
#[derive(Debug, Clone)]
pub struct Checkout {
    /// The resolved commit id, 40 hex digits.
    pub commit: String,
    pub kind: RefKind,
    /// The full ref name on the remote (`refs/heads/main`), for branches and tags.
    pub full_ref: Option<String>,
    pub files: u64,
    pub bytes: u64,
    /// Submodule paths checked out (relative to the repository root).
    pub submodules: Vec<String>,
    /// Whether the fetch was shallow.
    pub shallow: bool,
    /// Whether the fetch received a pack (false: everything was in the mirror).
    pub received_pack: bool,
    /// Files an earlier build's kept context already held, unwritten.
    pub reused_files: u64,
    /// How to keep this context for the next build when this one ends
    /// ([`KeptExport::keep`]).
    pub kept: Option<kept::KeptExport>,
}

/// Why a checkout failed. Every message names the repository and says
/// what to change.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("git URL {url:?} is not valid: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("fetching from {host} is not permitted for plugin {plugin}; the operator grants git hosts in the server config ([plugins.{plugin}] git = [\"{host}\"])")]
    HostNotPermitted { plugin: String, host: String },
    #[error("{0}")]
    AddressNotPermitted(crate::net::NetworkRefusal),
    #[error("repository {url} was not found (or is not visible with the credentials used); check the URL, and for a private repository save git credentials for its host")]
    RepositoryNotFound { url: String },
    #[error("repository {url} requires authentication; save git credentials for {host} (PUT /v1/secrets {{\"gitCredentials\": {{\"{host}\": {{\"username\": \"...\", \"token\": \"...\"}}}}}})")]
    AuthenticationRequired { url: String, host: String },
    #[error("repository {url} requires authentication, and Kiln sends git credentials over plain http only to this machine; use the repository's https:// URL")]
    ClearTextCredentials { url: String },
    #[error("authentication to {url} failed with the saved git credentials for {host}; check the username and that the token is valid and has read access to the repository (e.g. the read_repository scope)")]
    AuthenticationFailed { url: String, host: String },
    #[error("reference {reference:?} is neither a branch, a tag nor a commit of {url}{available}")]
    UnknownReference {
        url: String,
        reference: String,
        available: String,
    },
    #[error(
        "abbreviated commit id {reference:?} matches several commits of {url}; give more digits"
    )]
    AmbiguousReference { url: String, reference: String },
    #[error("contextDir {dir:?} does not exist in commit {commit} of {url}; give a directory that exists at that commit (paths are relative to the repository root)")]
    ContextDirMissing {
        url: String,
        commit: String,
        dir: String,
    },
    #[error("contextDir {dir:?} in commit {commit} is not a directory")]
    ContextDirNotDirectory { commit: String, dir: String },
    #[error("the repository's tree is unusable as a build context: {0}")]
    UnsafeTree(String),
    #[error("the checkout is too large: {0}")]
    TooLarge(String),
    #[error("submodule {path:?}: {message}")]
    Submodule { path: String, message: String },
    #[error("cannot fetch {url}: {message}")]
    Fetch { url: String, message: String },
    #[error("the fetch of {url} was cancelled")]
    Cancelled { url: String },
    #[error("git mirror error: {0}")]
    Internal(String),
}

/// Fetches into mirrors and exports trees. Cheap to clone.
#[derive(Clone)]
pub struct GitFetcher {
    mirrors: PathBuf,
    /// Checked before every fetch: a tenant's URL may not make the host
    /// reach loopback or private networks the operator did not allow.
    network: crate::net::NetworkPolicy,
}

/// Sets the interrupt flag when dropped: a cancelled build drops the future
/// waiting on the fetch, and the fetch thread then stops at its next check.
pub struct InterruptOnDrop(pub Arc<AtomicBool>);

impl Drop for InterruptOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Whether a reference looks like a commit id (all hex, 4 to 40 digits).
/// The name a kept context goes by beside its mirror: one per context
/// directory and submodule setting (the mirror already names the
/// organization and repository).
fn kept_key(context_dir: &str, submodules: bool) -> String {
    let dir = export::normalized_dir(context_dir);
    let digest = Sha256::digest(format!("{dir}\0{submodules}").as_bytes());
    hex::encode(&digest[..12])
}

fn looks_like_commit(reference: &str) -> bool {
    (4..=40).contains(&reference.len()) && reference.bytes().all(|b| b.is_ascii_hexdigit())
}

impl GitFetcher {
    /// Mirrors under `data_dir`; fetches reach public addresses and the
    /// blocks `network` allows.
    pub fn new(data_dir: &Path, network: crate::net::NetworkPolicy) -> Self {
        GitFetcher {
            mirrors: data_dir.join("git-mirrors"),
            network,
        }
    }

    /// The mirror of `url` for `org`. Mirrors are per organization, so one
    /// organization's fetched private objects never serve another's build.
    pub fn mirror_path(&self, org: &str, url: &str) -> PathBuf {
        let digest = Sha256::digest(format!("{org}\0{url}").as_bytes());
        self.mirrors
            .join(org)
            .join(format!("{}.git", hex::encode(&digest[..12])))
    }

    /// Every `git-mirrors/<org>/*.<extension>` entry.
    fn entries_with_extension(&self, extension: &str) -> Vec<PathBuf> {
        let Ok(orgs) = std::fs::read_dir(&self.mirrors) else {
            return Vec::new();
        };
        orgs.flatten()
            .filter_map(|org| std::fs::read_dir(org.path()).ok())
            .flat_map(|entries| entries.flatten().map(|entry| entry.path()))
            .filter(|path| path.extension().is_some_and(|e| e == extension))
            .collect()
    }

    /// Every mirror (`git-mirrors/<org>/<hash>.git`) with its last use:
    /// the time its lock file was last taken by a fetch.
    pub fn mirrors(&self) -> Vec<(PathBuf, std::time::SystemTime)> {
        self.entries_with_extension("git")
            .into_iter()
            .filter_map(|path| {
                let used = std::fs::metadata(path.with_extension("lock"))
                    .or_else(|_| std::fs::symlink_metadata(&path))
                    .and_then(|m| m.modified())
                    .ok()?;
                Some((path, used))
            })
            .collect()
    }

    /// Remove what kept-context moves a crash interrupted left beside the
    /// mirrors (half-kept or half-taken contexts). Call it before builds run.
    pub fn remove_interrupted_keeps(&self) {
        for exports in self.entries_with_extension("exports") {
            kept::remove_transient(&exports);
        }
    }

    /// Remove `mirror` if no fetch has used it since `unused_since`. Holds
    /// the mirror's lock while it checks and removes, so a fetch that
    /// starts meanwhile waits and then makes a fresh mirror. A mirror whose
    /// lock is held is in use: `Ok(false)`.
    pub fn remove_mirror_unused_since(
        &self,
        mirror: &Path,
        unused_since: std::time::SystemTime,
    ) -> std::io::Result<bool> {
        let lock_path = mirror.with_extension("lock");
        // Mirrors made before lock files kept the time: the directory's.
        let used_before = match lock_path.exists() {
            true => None,
            false => Some(std::fs::metadata(mirror)?.modified()?),
        };
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(false),
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
        }
        let used = match used_before {
            Some(time) => time,
            None => lock.metadata()?.modified()?,
        };
        if used > unused_since {
            return Ok(false);
        }
        // The lock file stays: a fetch waiting on it holds it open, and a
        // new one would let another fetch in beside it.
        std::fs::remove_dir_all(mirror)?;
        // Its kept contexts go with it.
        match std::fs::remove_dir_all(kept::exports_of(mirror)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        Ok(true)
    }

    /// Fetch what `request` needs into the mirror and write the tree (or
    /// its `context_dir`) into `dest`. Blocking: run it on a blocking thread.
    /// `permitted` says whether a host may be fetched from (submodules
    /// are checked too).
    #[allow(clippy::too_many_arguments)]
    pub fn checkout(
        &self,
        org: &str,
        request: &CheckoutRequest,
        permitted: &dyn Fn(&RepoUrl) -> Result<(), GitError>,
        credentials: &CredentialLookup,
        dest: &Path,
        limits: &Limits,
        interrupt: &AtomicBool,
    ) -> Result<Checkout, GitError> {
        let url = RepoUrl::parse(&request.url)?;
        permitted(&url)?;
        let fetched = self.fetch(org, &url, &request.reference, credentials, interrupt)?;
        let repo = fetched.open()?;
        let commit = repo
            .find_commit(fetched.commit)
            .map_err(|e| GitError::Internal(error_chain(&e)))?;
        let root = commit
            .tree()
            .map_err(|e| GitError::Internal(error_chain(&e)))?;
        let subtree = export::subtree(&root, &request.context_dir, &url, &fetched.commit)?;
        // An earlier build's context of the same tree, if one was kept:
        // only what changed is written.
        let exports = kept::exports_of(&self.mirror_path(org, url.as_str()));
        let key = kept_key(&request.context_dir, request.submodules);
        let mut writer = export::Writer::new(dest, limits);
        if let Some(previous) = kept::take(&exports, &key, dest) {
            writer = writer.reusing(previous);
        }
        writer.write_tree(&repo, &subtree, "")?;
        let mut submodules = Vec::new();
        if request.submodules && !writer.gitlinks.is_empty() {
            let modules = export::read_gitmodules(&repo, &root)?;
            let prefix = export::normalized_dir(&request.context_dir);
            for (inside, commit_id) in std::mem::take(&mut writer.gitlinks) {
                let full_path = if prefix.is_empty() {
                    inside.clone()
                } else {
                    format!("{prefix}/{inside}")
                };
                let sub_url =
                    modules
                        .url_for(&full_path, &url)
                        .map_err(|message| GitError::Submodule {
                            path: full_path.clone(),
                            message,
                        })?;
                permitted(&sub_url).map_err(|e| GitError::Submodule {
                    path: full_path.clone(),
                    message: e.to_string(),
                })?;
                let sub = self
                    .fetch(
                        org,
                        &sub_url,
                        &commit_id.to_string(),
                        credentials,
                        interrupt,
                    )
                    .map_err(|e| GitError::Submodule {
                        path: full_path.clone(),
                        message: e.to_string(),
                    })?;
                let sub_repo = sub.open()?;
                let sub_tree = sub_repo
                    .find_commit(sub.commit)
                    .and_then(|c| c.tree())
                    .map_err(|e| GitError::Submodule {
                        path: full_path.clone(),
                        message: error_chain(&e),
                    })?;
                writer.write_tree(&sub_repo, &sub_tree, &inside)?;
                submodules.push(full_path);
            }
        }
        writer.sweep()?;
        writer.finish()?;
        let (files, bytes, reused_files) = (writer.files, writer.bytes, writer.reused_files);
        let snapshot = writer.into_snapshot();
        let settled = kept::settle(&exports, snapshot.newest_ctime());
        let snapshot = snapshot.vouched(settled);
        Ok(Checkout {
            commit: fetched.commit.to_string(),
            kind: fetched.kind,
            full_ref: fetched.full_ref,
            files,
            bytes,
            submodules,
            shallow: fetched.shallow,
            received_pack: fetched.received_pack,
            reused_files,
            kept: Some(kept::KeptExport::new(exports, key, snapshot)),
        })
    }

    /// Bring `reference` of `url` into the org's mirror; answer the commit.
    fn fetch(
        &self,
        org: &str,
        url: &RepoUrl,
        reference: &str,
        credentials: &CredentialLookup,
        interrupt: &AtomicBool,
    ) -> Result<Fetched, GitError> {
        let LockedMirror {
            _lock,
            auth,
            repo,
            path,
            ..
        } = self.lock_mirror(org, url.clone(), credentials)?;
        let reference = reference.trim();

        // A full commit id is fetched by id, shallow; servers that refuse
        // wants of unadvertised objects get the whole history instead.
        if reference.len() == 40 && looks_like_commit(reference) {
            let id = gix::ObjectId::from_hex(reference.as_bytes())
                .map_err(|e| GitError::Internal(e.to_string()))?;
            let spec = format!("+{reference}:refs/kiln/commits/{reference}");
            let received_pack =
                match fetch_specs(&repo, url, &[spec], true, &auth, &self.network, interrupt) {
                    Ok(outcome) => outcome.received_pack,
                    Err(
                        e @ (GitError::AuthenticationFailed { .. }
                        | GitError::AuthenticationRequired { .. }
                        | GitError::RepositoryNotFound { .. }
                        | GitError::Cancelled { .. }),
                    ) => return Err(e),
                    Err(e) if repo.has_object(id) => {
                        tracing::debug!("fetch by id failed ({e}); the mirror has the commit");
                        false
                    }
                    Err(e) => {
                        tracing::debug!("fetch by id refused ({e}); fetching the whole history");
                        self.fetch_everything(&repo, url, &auth, interrupt)?;
                        true
                    }
                };
            let repo = reopen(&path)?;
            if !is_commit(&repo, id) {
                return Err(GitError::UnknownReference {
                    url: url.redacted(),
                    reference: reference.into(),
                    available: String::new(),
                });
            }
            return Ok(Fetched {
                path,
                commit: id,
                kind: RefKind::Commit,
                full_ref: None,
                shallow: repo.is_shallow().unwrap_or(false),
                received_pack,
            });
        }

        // Branches and tags (or a full ref name), shallow.
        let specs: Vec<String> = if reference.starts_with("refs/") {
            vec![format!("+{reference}:{reference}")]
        } else {
            vec![
                format!("+refs/heads/{reference}:refs/heads/{reference}"),
                format!("+refs/tags/{reference}:refs/tags/{reference}"),
            ]
        };
        match fetch_specs(&repo, url, &specs, true, &auth, &self.network, interrupt) {
            Ok(outcome) => {
                let repo = reopen(&path)?;
                let (full_ref, kind, id) = outcome
                    .resolved
                    .ok_or_else(|| GitError::Internal("the fetch matched no reference".into()))?;
                let commit = peel_to_commit(&repo, id)?;
                Ok(Fetched {
                    path,
                    commit,
                    kind,
                    full_ref: Some(full_ref),
                    shallow: repo.is_shallow().unwrap_or(false),
                    received_pack: outcome.received_pack,
                })
            }
            Err(GitError::UnknownReference { available, .. }) if looks_like_commit(reference) => {
                // An abbreviated commit id: only the whole history can
                // resolve it.
                let _ = available;
                self.fetch_everything(&repo, url, &auth, interrupt)?;
                let repo = reopen(&path)?;
                let commit = resolve_prefix(&repo, url, reference)?;
                Ok(Fetched {
                    path,
                    commit,
                    kind: RefKind::Commit,
                    full_ref: None,
                    shallow: false,
                    received_pack: true,
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the host may reach `url`'s host: checked before anything
    /// touches the network (and the same answer whether or not something
    /// listens there).
    fn check_network(&self, url: &RepoUrl) -> Result<(), GitError> {
        if url.host.is_empty() {
            return Ok(());
        }
        self.network
            .check_host(&url.host)
            .map_err(|refusal| match refusal {
                crate::net::NetworkRefusal::NotPublic { .. } => {
                    GitError::AddressNotPermitted(refusal)
                }
                crate::net::NetworkRefusal::Unresolvable { .. } => GitError::Fetch {
                    url: url.redacted(),
                    message: refusal.to_string(),
                },
            })
    }

    /// The commit `reference` (a branch, a tag or a full ref name) names on
    /// the remote now, from its ref advertisement alone (no pack is
    /// fetched): the full ref, its kind and the commit id. A branch is
    /// preferred over a tag of the same name, as a fetch prefers it.
    pub fn resolve_remote(
        &self,
        org: &str,
        url: &str,
        reference: &str,
        credentials: &CredentialLookup,
    ) -> Result<(String, RefKind, String), GitError> {
        let reference = reference.trim();
        let wanted: Vec<String> = if reference.starts_with("refs/") {
            vec![reference.to_string()]
        } else {
            vec![
                format!("refs/heads/{reference}"),
                format!("refs/tags/{reference}"),
            ]
        };
        let advertised = self.remote_refs(org, url, &wanted, credentials)?;
        let url = RepoUrl::parse(url)?;
        wanted
            .iter()
            .find_map(|name| advertised.iter().find(|(n, _)| n == name))
            .map(|(name, id)| {
                let kind = if name.starts_with("refs/tags/") {
                    RefKind::Tag
                } else {
                    RefKind::Branch
                };
                (name.clone(), kind, id.to_string())
            })
            .ok_or_else(|| GitError::UnknownReference {
                url: url.redacted(),
                reference: reference.into(),
                available: String::new(),
            })
    }

    /// The refs the remote advertises now that match `patterns` (full ref
    /// names, `refs/heads/*` style globs allowed), each with its commit,
    /// without fetching anything: what polling compares.
    pub fn remote_refs(
        &self,
        org: &str,
        url: &str,
        patterns: &[String],
        credentials: &CredentialLookup,
    ) -> Result<Vec<(String, gix::ObjectId)>, GitError> {
        let mirror = self.lock_mirror(org, RepoUrl::parse(url)?, credentials)?;
        let specs: Vec<String> = patterns.iter().map(|r| format!("+{r}:{r}")).collect();
        advertised_refs(
            &mirror.repo,
            &mirror.url,
            &specs,
            &mirror.auth,
            &self.network,
        )
        .map_err(|e| classify_error(e, &mirror.url, &mirror.auth))
    }

    /// The org's mirror of `url`, locked, for a look at the remote: the
    /// network checked first, as for a fetch.
    fn lock_mirror(
        &self,
        org: &str,
        url: RepoUrl,
        credentials: &CredentialLookup,
    ) -> Result<LockedMirror, GitError> {
        self.check_network(&url)?;
        let path = self.mirror_path(org, url.as_str());
        let lock = MirrorLock::acquire(&path)?;
        let repo = open_or_init(&path)?;
        let auth = AuthState::new(&url, credentials.clone());
        Ok(LockedMirror {
            _lock: lock,
            auth,
            repo,
            path,
            url,
        })
    }

    /// The paths that differ between two commits of the repository (both
    /// fetched by id into the organization's mirror, shallow): what a push
    /// changed when its payload does not list it all.
    pub fn changed_paths(
        &self,
        org: &str,
        url: &str,
        before: &str,
        after: &str,
        credentials: &CredentialLookup,
    ) -> Result<Vec<String>, GitError> {
        let mirror = self.lock_mirror(org, RepoUrl::parse(url)?, credentials)?;
        let (repo, url, auth) = (&mirror.repo, &mirror.url, &mirror.auth);
        let ids: Vec<gix::ObjectId> = [before, after]
            .iter()
            .map(|id| {
                gix::ObjectId::from_hex(id.as_bytes())
                    .map_err(|e| GitError::Internal(format!("commit id {id:?}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        let missing: Vec<String> = ids
            .iter()
            .filter(|id| !is_commit(repo, **id))
            .map(|id| format!("+{id}:refs/kiln/commits/{id}"))
            .collect();
        if !missing.is_empty() {
            let never = AtomicBool::new(false);
            fetch_specs(repo, url, &missing, true, auth, &self.network, &never)?;
        }
        diff_paths(&reopen(&mirror.path)?, ids[0], ids[1])
    }

    /// What a new branch changed: the paths that differ between `after`
    /// and the point where it forked from `base_branch` (their merge base),
    /// with both fetched into the mirror with their history. `None` when
    /// the base branch is gone or the two share no history.
    pub fn changed_since_fork(
        &self,
        org: &str,
        url: &str,
        base_branch: &str,
        after: &str,
        credentials: &CredentialLookup,
    ) -> Result<Option<Vec<String>>, GitError> {
        let mirror = self.lock_mirror(org, RepoUrl::parse(url)?, credentials)?;
        let (repo, url, auth) = (&mirror.repo, &mirror.url, &mirror.auth);
        let after_id = gix::ObjectId::from_hex(after.as_bytes())
            .map_err(|e| GitError::Internal(format!("commit id {after:?}: {e}")))?;
        let base_ref = format!("refs/kiln/fork-base/{base_branch}");
        // With history (a shallow mirror is deepened once): the merge base
        // may be any number of commits back.
        let specs = [
            format!("+refs/heads/{base_branch}:{base_ref}"),
            format!("+{after}:refs/kiln/commits/{after}"),
        ];
        let never = AtomicBool::new(false);
        fetch_specs(repo, url, &specs, false, auth, &self.network, &never)?;
        let repo = reopen(&mirror.path)?;
        let Some(base_id) = repo
            .try_find_reference(base_ref.as_str())
            .map_err(|e| GitError::Internal(format!("{base_ref}: {e}")))?
            .and_then(|mut r| r.peel_to_id().ok().map(|id| id.detach()))
        else {
            return Ok(None);
        };
        let fork = repo
            .merge_base(base_id, after_id)
            .map_err(|e| {
                GitError::Internal(format!("merge base of {base_branch} and {after}: {e}"))
            })?
            .map(|id| id.detach());
        match fork {
            Some(fork) => diff_paths(&repo, fork, after_id).map(Some),
            None => Ok(None),
        }
    }

    /// Every branch and tag with full history (unshallowing the mirror).
    fn fetch_everything(
        &self,
        repo: &gix::Repository,
        url: &RepoUrl,
        auth: &AuthState,
        interrupt: &AtomicBool,
    ) -> Result<(), GitError> {
        let specs = [
            "+refs/heads/*:refs/heads/*".to_string(),
            "+refs/tags/*:refs/tags/*".to_string(),
        ];
        fetch_specs(repo, url, &specs, false, auth, &self.network, interrupt).map(|_| ())
    }
}

/// The paths that differ between two commits' trees (renames as a
/// removal and an addition: both paths count for a filter).
fn diff_paths(
    repo: &gix::Repository,
    old: gix::ObjectId,
    new: gix::ObjectId,
) -> Result<Vec<String>, GitError> {
    let tree_of = |id: gix::ObjectId| -> Result<gix::Tree<'_>, GitError> {
        repo.find_commit(id)
            .and_then(|c| c.tree())
            .map_err(|e| GitError::Internal(format!("commit {id}: {e}")))
    };
    let (old_tree, new_tree) = (tree_of(old)?, tree_of(new)?);
    let mut options = gix::diff::Options::default().with_rewrites(None);
    options.track_path();
    let changes = repo
        .diff_tree_to_tree(&old_tree, &new_tree, options)
        .map_err(|e| GitError::Internal(format!("diff {old}..{new}: {e}")))?;
    Ok(changes
        .iter()
        .map(|change| change.location().to_string())
        .collect())
}

/// A commit brought into a mirror.
struct Fetched {
    path: PathBuf,
    commit: gix::ObjectId,
    kind: RefKind,
    full_ref: Option<String>,
    shallow: bool,
    received_pack: bool,
}

impl Fetched {
    fn open(&self) -> Result<gix::Repository, GitError> {
        reopen(&self.path)
    }
}

/// What one fetch did.
struct FetchOutcome {
    /// The first explicit mapping: full ref name, kind, object id.
    resolved: Option<(String, RefKind, gix::ObjectId)>,
    received_pack: bool,
}

/// A mirror opened under its lock, with what a connection to its remote needs.
struct LockedMirror {
    _lock: MirrorLock,
    auth: AuthState,
    repo: gix::Repository,
    path: PathBuf,
    url: RepoUrl,
}

/// An exclusive lock on one mirror, held for a fetch.
struct MirrorLock(#[allow(dead_code)] std::fs::File);

impl MirrorLock {
    fn acquire(mirror: &Path) -> Result<Self, GitError> {
        let parent = mirror
            .parent()
            .ok_or_else(|| GitError::Internal("mirror path has no parent".into()))?;
        std::fs::create_dir_all(parent)
            .map_err(|e| GitError::Internal(format!("cannot create {}: {e}", parent.display())))?;
        let lock_path = mirror.with_extension("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| GitError::Internal(format!("cannot open {}: {e}", lock_path.display())))?;
        file.lock()
            .map_err(|e| GitError::Internal(format!("cannot lock {}: {e}", lock_path.display())))?;
        // The lock file's time is the mirror's last use, for retention.
        let _ = file.set_modified(std::time::SystemTime::now());
        Ok(MirrorLock(file))
    }
}

/// Options that keep gix away from the user's and system's git config,
/// credential helpers and environment. Redirects are not followed: the
/// network policy checked the URL's host, and a redirect could lead
/// anywhere (to a loopback address, say) after that check.
fn isolated() -> gix::open::Options {
    gix::open::Options::isolated().config_overrides(["http.followRedirects=false"])
}

fn open_or_init(path: &Path) -> Result<gix::Repository, GitError> {
    if path.join("HEAD").exists() {
        return reopen(path);
    }
    let tmp = path.with_extension("init");
    let _ = std::fs::remove_dir_all(&tmp);
    gix::ThreadSafeRepository::init_opts(
        &tmp,
        gix::create::Kind::Bare,
        gix::create::Options::default(),
        isolated(),
    )
    .map_err(|e| GitError::Internal(format!("cannot create the mirror: {}", error_chain(&e))))?;
    std::fs::rename(&tmp, path)
        .map_err(|e| GitError::Internal(format!("cannot create the mirror: {e}")))?;
    reopen(path)
}

fn reopen(path: &Path) -> Result<gix::Repository, GitError> {
    gix::open_opts(path, isolated()).map_err(|e| {
        GitError::Internal(format!(
            "cannot open the mirror {}: {}",
            path.display(),
            error_chain(&e)
        ))
    })
}

fn is_commit(repo: &gix::Repository, id: gix::ObjectId) -> bool {
    repo.find_commit(id).is_ok()
}

/// An annotated tag's commit, or the commit itself.
fn peel_to_commit(repo: &gix::Repository, id: gix::ObjectId) -> Result<gix::ObjectId, GitError> {
    let object = repo
        .find_object(id)
        .map_err(|e| GitError::Internal(error_chain(&e)))?;
    let commit = object
        .peel_to_commit()
        .map_err(|e| GitError::Internal(format!("{id} is not a commit: {}", error_chain(&e))))?;
    Ok(commit.id)
}

fn resolve_prefix(
    repo: &gix::Repository,
    url: &RepoUrl,
    prefix: &str,
) -> Result<gix::ObjectId, GitError> {
    let unknown = || GitError::UnknownReference {
        url: url.redacted(),
        reference: prefix.into(),
        available: String::new(),
    };
    let prefix_id = gix::hash::Prefix::from_hex(prefix).map_err(|_| unknown())?;
    match repo.objects.lookup_prefix(prefix_id, None) {
        Ok(Some(Ok(id))) if is_commit(repo, id) => Ok(id),
        Ok(Some(Err(()))) => Err(GitError::AmbiguousReference {
            url: url.redacted(),
            reference: prefix.into(),
        }),
        _ => Err(unknown()),
    }
}

/// The credential callback's memory: whether it supplied credentials, so a
/// failure can say "required" or "failed".
struct AuthState {
    url: RepoUrl,
    lookup: CredentialLookup,
    supplied: Mutex<bool>,
    asked: Mutex<bool>,
    refused_clear_text: Mutex<bool>,
}

impl AuthState {
    fn new(url: &RepoUrl, lookup: CredentialLookup) -> Self {
        AuthState {
            url: url.clone(),
            lookup,
            supplied: Mutex::new(false),
            asked: Mutex::new(false),
            refused_clear_text: Mutex::new(false),
        }
    }

    fn callback(
        &self,
    ) -> impl FnMut(
        gix::credentials::helper::Action,
    ) -> gix::Result<Option<gix::credentials::protocol::Outcome>>
           + '_ {
        move |action| match action {
            gix::credentials::helper::Action::Get(context) => {
                *self.asked.lock().unwrap() = true;
                if !self.url.may_carry_credentials() {
                    *self.refused_clear_text.lock().unwrap() = true;
                    return Ok(None);
                }
                let host = self.url.host.clone();
                match (self.lookup)(&host) {
                    Some(credential) => {
                        *self.supplied.lock().unwrap() = true;
                        Ok(Some(gix::credentials::protocol::Outcome {
                            identity: gix::sec::identity::Account {
                                username: credential.username,
                                password: credential.password,
                                oauth_refresh_token: None,
                            },
                            next: context.into(),
                        }))
                    }
                    None => Ok(None),
                }
            }
            gix::credentials::helper::Action::Store(_)
            | gix::credentials::helper::Action::Erase(_) => Ok(None),
        }
    }

    /// The failure to report for an error that may be about authentication.
    fn auth_failure(&self) -> Option<GitError> {
        if !*self.asked.lock().unwrap() {
            return None;
        }
        let url = self.url.redacted();
        let host = self.url.host.clone();
        if *self.refused_clear_text.lock().unwrap() {
            return Some(GitError::ClearTextCredentials { url });
        }
        Some(if *self.supplied.lock().unwrap() {
            GitError::AuthenticationFailed { url, host }
        } else {
            GitError::AuthenticationRequired { url, host }
        })
    }
}

/// The HTTP transport's options for `url` with a resolver that applies
/// the network policy to every connection the transport makes (see
/// [`crate::net::PolicyResolver`]); `None` for other schemes, whose host the
/// check before the fetch covers.
fn guarded_http_options(
    repo: &gix::Repository,
    url: &RepoUrl,
    network: &crate::net::NetworkPolicy,
) -> Option<Box<dyn std::any::Any>> {
    use gix_transport::client::blocking_io::http;
    if !matches!(url.scheme.as_str(), "http" | "https") {
        return None;
    }
    let mut options = match repo.transport_options(url.as_str(), None) {
        Ok(Some(options)) => options,
        other => {
            tracing::warn!(
                "no HTTP transport options for {}: {other:?}",
                url.redacted()
            );
            return None;
        }
    };
    let settings = options.downcast_mut::<http::Options>()?;
    let network = network.clone();
    let backend = http::reqwest::Options {
        configure_client: Some(Box::new(move |builder| {
            Ok(
                builder.dns_resolver(std::sync::Arc::new(crate::net::PolicyResolver(
                    network.clone(),
                ))),
            )
        })),
        configure_request: None,
    };
    settings.backend = Some(std::sync::Arc::new(std::sync::Mutex::new(backend)));
    Some(options)
}

/// One connection, one fetch with `specs`.
fn fetch_specs(
    repo: &gix::Repository,
    url: &RepoUrl,
    specs: &[String],
    shallow: bool,
    auth: &AuthState,
    network: &crate::net::NetworkPolicy,
    interrupt: &AtomicBool,
) -> Result<FetchOutcome, GitError> {
    let classify = |e: gix::Error| classify_error(e, url, auth);
    if interrupt.load(Ordering::Relaxed) {
        return Err(GitError::Cancelled {
            url: url.redacted(),
        });
    }
    let remote = repo
        .remote_at(url.as_str())
        .map_err(|e| GitError::InvalidUrl {
            url: url.redacted(),
            reason: error_chain(&e),
        })?
        .with_fetch_tags(gix::remote::fetch::Tags::None)
        .with_refspecs(specs.iter().map(|s| s.as_str()), Direction::Fetch)
        .map_err(|e| GitError::Internal(format!("refspec: {}", error_chain(&e))))?;
    let mut connection = remote
        .connect(Direction::Fetch)
        .map_err(classify)?
        .with_credentials(auth.callback());
    if let Some(options) = guarded_http_options(repo, url, network) {
        connection = connection.with_transport_options(options);
    }
    let prepare = connection
        .prepare_fetch(gix::progress::Discard, Default::default())
        .map_err(classify)?;
    let ref_map = prepare.ref_map();
    let resolved = ref_map.mappings.iter().find_map(|m| {
        let gix::remote::fetch::refmap::Source::Ref(r) = &m.remote else {
            return None;
        };
        let (name, target, peeled) = r.unpack();
        let name = name.to_string();
        let kind = if name.starts_with("refs/tags/") {
            RefKind::Tag
        } else {
            RefKind::Branch
        };
        let id = peeled.or(target)?.to_owned();
        Some((name, kind, id))
    });
    let explicit_by_id = specs.iter().any(|s| {
        s.trim_start_matches('+')
            .split(':')
            .next()
            .is_some_and(|src| src.len() == 40 && looks_like_commit(src))
    });
    if resolved.is_none() && !explicit_by_id && !specs.iter().any(|s| s.contains('*')) {
        let reference = specs[0]
            .trim_start_matches('+')
            .split(':')
            .next()
            .unwrap_or_default()
            .trim_start_matches("refs/heads/")
            .to_string();
        // The fetch asked the server for matching refs only; list the
        // branches with a second request, for the error message alone.
        drop(prepare);
        let branches = list_branches(repo, url, auth, network);
        let available = if branches.is_empty() {
            String::new()
        } else {
            let shown: Vec<String> = branches.iter().take(10).cloned().collect();
            format!(
                "; its branches include: {}{}",
                shown.join(", "),
                if branches.len() > 10 { ", ..." } else { "" }
            )
        };
        return Err(GitError::UnknownReference {
            url: url.redacted(),
            reference,
            available,
        });
    }
    // Everything asked for is already in the mirror: no pack to receive
    // (a shallow fetch would otherwise send the tip's objects again).
    let wanted: Vec<gix::ObjectId> = ref_map
        .mappings
        .iter()
        .filter_map(|m| m.remote.as_id().map(|id| id.to_owned()))
        .collect();
    if !wanted.is_empty()
        && !specs.iter().any(|s| s.contains('*'))
        && wanted.iter().all(|id| repo.has_object(id))
    {
        return Ok(FetchOutcome {
            resolved,
            received_pack: false,
        });
    }
    let prepare = if shallow {
        prepare.with_shallow(gix::remote::fetch::Shallow::DepthAtRemote(
            NonZeroU32::new(1).expect("one"),
        ))
    } else if repo.is_shallow().unwrap_or(false) {
        prepare.with_shallow(gix::remote::fetch::Shallow::undo())
    } else {
        prepare
    };
    let outcome = prepare
        .receive(gix::progress::Discard, interrupt)
        .map_err(|e| {
            if interrupt.load(Ordering::Relaxed) {
                GitError::Cancelled {
                    url: url.redacted(),
                }
            } else {
                classify_error(e, url, auth)
            }
        })?;
    let received_pack = matches!(outcome.status, gix::remote::fetch::Status::Change { .. });
    Ok(FetchOutcome {
        resolved,
        received_pack,
    })
}

/// The remote's branch names, sorted; empty when they cannot be listed.
fn list_branches(
    repo: &gix::Repository,
    url: &RepoUrl,
    auth: &AuthState,
    network: &crate::net::NetworkPolicy,
) -> Vec<String> {
    let specs = ["+refs/heads/*:refs/heads/*".to_string()];
    let mut branches: Vec<String> = advertised_refs(repo, url, &specs, auth, network)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|(name, _)| name.strip_prefix("refs/heads/").map(str::to_string))
        .collect();
    branches.sort();
    branches
}

/// The refs the remote advertises that `specs` match, each with the
/// commit it points at (an annotated tag peeled, where the remote says).
fn advertised_refs(
    repo: &gix::Repository,
    url: &RepoUrl,
    specs: &[String],
    auth: &AuthState,
    network: &crate::net::NetworkPolicy,
) -> gix::Result<Vec<(String, gix::ObjectId)>> {
    let remote = repo
        .remote_at(url.as_str())?
        .with_fetch_tags(gix::remote::fetch::Tags::None)
        .with_refspecs(specs.iter().map(String::as_str), Direction::Fetch)?;
    let mut connection = remote
        .connect(Direction::Fetch)?
        .with_credentials(auth.callback());
    if let Some(options) = guarded_http_options(repo, url, network) {
        connection = connection.with_transport_options(options);
    }
    let (ref_map, _) = connection.ref_map(gix::progress::Discard, Default::default())?;
    Ok(ref_map
        .remote_refs
        .iter()
        .filter_map(|r| {
            let (name, target, peeled) = r.unpack();
            Some((name.to_string(), peeled.or(target)?.to_owned()))
        })
        .collect())
}

/// A gix error and its causes on one line.
pub(crate) fn error_chain(error: &gix::Error) -> String {
    format!("{error:?}")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && *l != "Caused by:")
        .map(|l| {
            l.split_once(": ")
                .filter(|(n, _)| n.chars().all(|c| c.is_ascii_digit()))
                .map_or(l, |(_, rest)| rest)
        })
        .collect::<Vec<_>>()
        .join(": ")
}

/// Turn a gix error into what the user should do about it.
fn classify_error(error: gix::Error, url: &RepoUrl, auth: &AuthState) -> GitError {
    let message = error_chain(&error);
    let lower = message.to_lowercase();
    let class = error.dominant_class();
    tracing::debug!(url = %url.redacted(), ?class, "git error: {message}");
    // The server asked for credentials (a 401): whatever failed next is
    // about them, unless gix classified it as something else entirely.
    let unauthenticated = matches!(class, Some(gix::error::Class::Unauthenticated))
        || lower.contains("401")
        || lower.contains("authentication required");
    if unauthenticated {
        return auth
            .auth_failure()
            .unwrap_or(GitError::AuthenticationRequired {
                url: url.redacted(),
                host: url.host.clone(),
            });
    }
    if lower.contains("404")
        || lower.contains("not found")
        || lower.contains("does not appear to be a git repository")
        || lower.contains("no such repository")
        || lower.contains("access denied or repository not exported")
        || lower.contains("not exported")
        || lower.contains("could not be found")
        || matches!(class, Some(gix::error::Class::NotFound))
    {
        return GitError::RepositoryNotFound {
            url: url.redacted(),
        };
    }
    GitError::Fetch {
        url: url.redacted(),
        message: url.redact_in(&message),
    }
}
