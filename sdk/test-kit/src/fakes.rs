//! The host capabilities a plugin under test talks to: fakes that answer
//! like the real host would and record every request, so a test can assert
//! what the plugin asked for. Permission checks are not faked: they happen
//! in the real runtime before a fake is called.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use kiln_plugin_runtime::bindings::{engine, git, types};
use kiln_plugin_runtime::{
    EngineFailure, GitPermit, HostError, LogLevel, LogSink, RunningContainer,
};

/// One line the plugin logged or printed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: LogLevel,
    pub text: String,
}

/// Collects a call's log lines.
#[derive(Default)]
pub(crate) struct RecordingLog {
    lines: Mutex<Vec<LogLine>>,
}

impl RecordingLog {
    pub(crate) fn take(&self) -> Vec<LogLine> {
        std::mem::take(&mut self.lines.lock().unwrap())
    }
}

impl LogSink for RecordingLog {
    fn write(&self, _plugin_id: &str, level: LogLevel, line: &str) {
        self.lines.lock().unwrap().push(LogLine {
            level,
            text: line.to_string(),
        });
    }
}

/// What a builder asked the engine for, in order.
#[derive(Debug, Clone)]
pub enum EngineCall {
    BuildkitBuild(engine::BuildkitRequest),
    ContainerRun(engine::ContainerRunRequest),
    RegistryManifest(String),
}

/// The engine and registry as a builder sees them, without Docker: each
/// request is recorded and answered with the configured result (by
/// default, success: the requested tags "pushed" under a fixed digest).
#[derive(Clone)]
pub struct FakeEngine {
    digest: String,
    build_failure: Option<EngineFailure>,
    run_exit_code: i32,
    run_outputs: Vec<(String, String)>,
    run_lines: Vec<String>,
}

/// The digest a [`FakeEngine`] reports unless told otherwise.
pub const FAKE_DIGEST: &str =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

impl Default for FakeEngine {
    fn default() -> Self {
        FakeEngine {
            digest: FAKE_DIGEST.to_string(),
            build_failure: None,
            run_exit_code: 0,
            run_outputs: Vec::new(),
            run_lines: Vec::new(),
        }
    }
}

impl FakeEngine {
    /// Report this digest for builds, pushes and registry reads.
    pub fn digest(mut self, digest: &str) -> Self {
        self.digest = digest.to_string();
        self
    }

    /// Fail every BuildKit build with this reason and message (what a
    /// failing `RUN` or a refused push looks like to the plugin).
    pub fn fail_builds(mut self, reason: types::FailureReason, message: &str) -> Self {
        self.build_failure = Some(EngineFailure {
            reason,
            message: message.to_string(),
            exit_code: None,
        });
        self
    }

    /// Container runs exit with this code.
    pub fn run_exit_code(mut self, code: i32) -> Self {
        self.run_exit_code = code;
        self
    }

    /// Container runs print these lines (what the plugin reads with
    /// `read-output`).
    pub fn run_prints(mut self, lines: &[&str]) -> Self {
        self.run_lines = lines.iter().map(|l| l.to_string()).collect();
        self
    }

    /// Container runs leave this file in their output mount.
    pub fn run_output(mut self, name: &str, contents: &str) -> Self {
        self.run_outputs
            .push((name.to_string(), contents.to_string()));
        self
    }
}

/// A [`FakeEngine`] lent to one call, recording into `calls`.
pub(crate) struct RecordingEngine {
    pub(crate) answers: FakeEngine,
    pub(crate) calls: Mutex<Vec<EngineCall>>,
}

impl RecordingEngine {
    pub(crate) fn take(&self) -> Vec<EngineCall> {
        std::mem::take(&mut self.calls.lock().unwrap())
    }
}

/// A fake container: prints the configured lines, then exits.
struct FakeContainer {
    lines: Option<Vec<String>>,
    exit: engine::ContainerExit,
}

#[async_trait::async_trait]
impl RunningContainer for FakeContainer {
    async fn read_output(&mut self) -> Option<Vec<String>> {
        self.lines.take().filter(|lines| !lines.is_empty())
    }

    async fn wait(&mut self) -> Result<engine::ContainerExit, HostError> {
        self.lines = None;
        Ok(self.exit.clone())
    }
}

#[async_trait::async_trait]
impl kiln_plugin_runtime::Engine for RecordingEngine {
    async fn buildkit_build(
        &self,
        request: engine::BuildkitRequest,
    ) -> Result<engine::ImageResult, HostError> {
        let tags = request.tags.clone();
        self.calls
            .lock()
            .unwrap()
            .push(EngineCall::BuildkitBuild(request));
        if let Some(failure) = &self.answers.build_failure {
            return Err(HostError::Engine(failure.clone()));
        }
        Ok(engine::ImageResult {
            digest: self.answers.digest.clone(),
            image_refs: tags,
            size_bytes: 0,
            layer_count: 1,
            cached_steps: 0,
            total_steps: 1,
        })
    }

    async fn container_start(
        &self,
        request: engine::ContainerRunRequest,
    ) -> Result<Box<dyn RunningContainer>, HostError> {
        let outputs = if request.output_mount.is_some() {
            self.answers
                .run_outputs
                .iter()
                .map(|(key, value)| types::KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect()
        } else {
            Vec::new()
        };
        self.calls
            .lock()
            .unwrap()
            .push(EngineCall::ContainerRun(request));
        Ok(Box::new(FakeContainer {
            lines: Some(self.answers.run_lines.clone()),
            exit: engine::ContainerExit {
                exit_code: self.answers.run_exit_code,
                oom_killed: false,
                outputs,
            },
        }))
    }

    async fn registry_manifest(&self, reference: &str) -> Result<engine::PushedImage, HostError> {
        self.calls
            .lock()
            .unwrap()
            .push(EngineCall::RegistryManifest(reference.to_string()));
        Ok(engine::PushedImage {
            digest: self.answers.digest.clone(),
            size_bytes: 0,
            layer_count: 1,
        })
    }
}

/// Git as a context source sees it, without a network: a checkout of a
/// permitted URL copies a local directory into the context and reports a
/// fixed commit; every request is recorded. Host permission is decided by
/// the plugin's real grant.
#[derive(Clone, Default)]
pub struct FakeGit {
    tree: Option<PathBuf>,
    commit: Option<String>,
}

/// The commit a [`FakeGit`] reports unless told otherwise.
pub const FAKE_COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

impl FakeGit {
    /// Check out the files of `dir` (whatever URL and reference are asked).
    pub fn serving(dir: &Path) -> Self {
        FakeGit {
            tree: Some(dir.to_path_buf()),
            commit: None,
        }
    }

    /// Report this commit id.
    pub fn commit(mut self, commit: &str) -> Self {
        self.commit = Some(commit.to_string());
        self
    }
}

/// A [`FakeGit`] lent to one call, writing into `context`.
pub(crate) struct RecordingGit {
    pub(crate) answers: FakeGit,
    pub(crate) context: PathBuf,
    pub(crate) calls: Mutex<Vec<git::CheckoutRequest>>,
}

impl RecordingGit {
    pub(crate) fn take(&self) -> Vec<git::CheckoutRequest> {
        std::mem::take(&mut self.calls.lock().unwrap())
    }
}

/// The host part of a URL as the `git` permission names it: a lowercase
/// host name, or `file://` for local repositories.
fn permission_subject(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    if scheme == "file" {
        return Some(kiln_plugin_runtime::capabilities::FILE_PERMISSION.to_string());
    }
    let authority = rest.split('/').next()?;
    let host = authority.rsplit('@').next()?;
    let host = host.split(':').next()?;
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

fn git_failure(reason: git::GitFailureReason, message: String) -> git::GitError {
    git::GitError::Failed(git::GitFailure { reason, message })
}

#[async_trait::async_trait]
impl kiln_plugin_runtime::Git for RecordingGit {
    async fn checkout(
        &self,
        request: git::CheckoutRequest,
        permit: GitPermit,
    ) -> Result<git::CheckoutResult, git::GitError> {
        self.calls.lock().unwrap().push(request.clone());
        let Some(subject) = permission_subject(&request.url) else {
            return Err(git_failure(
                git::GitFailureReason::InvalidUrl,
                format!("`{}` is not a repository URL", request.url),
            ));
        };
        if !permit.admits(&subject) {
            return Err(git::GitError::Denied(format!(
                "plugin {} is not granted the git host `{subject}`",
                permit.plugin_id()
            )));
        }
        let Some(tree) = &self.answers.tree else {
            return Err(git_failure(
                git::GitFailureReason::RepositoryNotFound,
                format!("no repository at {} (FakeGit serves none)", request.url),
            ));
        };
        let source = tree.join(&request.context_dir);
        if !source.is_dir() {
            return Err(git_failure(
                git::GitFailureReason::ContextDirMissing,
                format!(
                    "`{}` is not a directory of the repository",
                    request.context_dir
                ),
            ));
        }
        let (files, bytes) = copy_tree(&source, &self.context).map_err(|e| {
            git_failure(
                git::GitFailureReason::FetchFailed,
                format!("cannot copy the served tree: {e}"),
            )
        })?;
        Ok(git::CheckoutResult {
            commit: self
                .answers
                .commit
                .clone()
                .unwrap_or_else(|| FAKE_COMMIT.to_string()),
            ref_kind: git::RefKind::Branch,
            full_ref: Some(format!("refs/heads/{}", request.reference)),
            files,
            bytes,
            submodules: Vec::new(),
            shallow: true,
        })
    }
}

/// Copy regular files and directories of `from` into `to`; (files, bytes).
fn copy_tree(from: &Path, to: &Path) -> std::io::Result<(u64, u64)> {
    let (mut files, mut bytes) = (0, 0);
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let kind = entry.file_type()?;
        let target = to.join(entry.file_name());
        if kind.is_dir() {
            if entry.file_name() == ".git" {
                continue;
            }
            std::fs::create_dir_all(&target)?;
            let (f, b) = copy_tree(&entry.path(), &target)?;
            files += f;
            bytes += b;
        } else if kind.is_file() {
            bytes += std::fs::copy(entry.path(), &target)?;
            files += 1;
        }
    }
    Ok((files, bytes))
}

/// Everything recorded for the engine, for sharing with the runtime.
pub(crate) fn recording_engine(answers: &FakeEngine) -> Arc<RecordingEngine> {
    Arc::new(RecordingEngine {
        answers: answers.clone(),
        calls: Mutex::new(Vec::new()),
    })
}

#[cfg(test)]
mod tests {
    use super::permission_subject;

    #[test]
    fn urls_name_their_host_as_the_permission_does() {
        assert_eq!(
            permission_subject("https://user@GitHub.com:443/a/b.git").as_deref(),
            Some("github.com")
        );
        assert_eq!(
            permission_subject("file:///srv/git/app.git").as_deref(),
            Some("file://")
        );
        assert_eq!(permission_subject("not a url"), None);
    }
}
