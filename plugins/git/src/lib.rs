//! Kiln context source `git`: the request's `gitSource` becomes the build
//! context. The plugin owns the defaults and the checks of what was asked
//! (reference `main` when none is given, a `contextDir` inside the
//! repository); the host owns the network, the mirror cache and the
//! organization's credentials, and writes the checkout into `/context`.

use kiln_sdk::source::git::{checkout, CheckoutRequest, RefKind};
use kiln_sdk::source::{ContextInfo, ContextSource, PluginError, SourceSpec};

/// The reference built when the request names none.
const DEFAULT_REFERENCE: &str = "main";

struct Git;

fn option<'a>(spec: &'a SourceSpec, key: &str) -> Option<&'a str> {
    spec.options
        .iter()
        .find(|kv| kv.key == key)
        .map(|kv| kv.value.as_str())
}

/// `contextDir` as a clean relative path, or why it is not one.
fn context_dir(raw: &str) -> Result<String, PluginError> {
    let parts: Vec<&str> = raw
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if raw.starts_with('/') || parts.contains(&"..") {
        return Err(PluginError::InvalidInput(format!(
            "contextDir {raw:?} must be a directory inside the repository, relative to its root and without `..`"
        )));
    }
    Ok(parts.join("/"))
}

impl ContextSource for Git {
    fn materialize(spec: SourceSpec) -> Result<ContextInfo, PluginError> {
        let url = option(&spec, "url")
            .filter(|u| !u.is_empty())
            .ok_or_else(|| PluginError::InvalidInput("gitSource needs a `url`".into()))?;
        let reference = option(&spec, "reference")
            .filter(|r| !r.is_empty())
            .unwrap_or(DEFAULT_REFERENCE);
        let dir = context_dir(option(&spec, "context-dir").unwrap_or(""))?;
        let submodules = option(&spec, "submodules") == Some("true");
        kiln_sdk::log::info(&format!(
            "git: {url} at {reference}{}{}",
            if dir.is_empty() {
                String::new()
            } else {
                format!(", directory {dir}")
            },
            if submodules { ", with submodules" } else { "" }
        ));
        let done = checkout(&CheckoutRequest {
            url: url.to_string(),
            reference: reference.to_string(),
            context_dir: dir.clone(),
            submodules,
        })?;
        let kind = match done.ref_kind {
            RefKind::Branch => "branch",
            RefKind::Tag => "tag",
            RefKind::Commit => "commit",
        };
        let mut summary = format!(
            "git {url} {kind} {reference} at {}: {} files, {} bytes",
            &done.commit[..done.commit.len().min(12)],
            done.files,
            done.bytes
        );
        if !done.submodules.is_empty() {
            summary.push_str(&format!(", submodules {}", done.submodules.join(", ")));
        }
        Ok(ContextInfo {
            files: done.files,
            bytes: done.bytes,
            file_modes: Vec::new(),
            symlinks: Vec::new(),
            summary,
        })
    }
}

kiln_sdk::export_context_source!(Git);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_dirs_stay_inside_the_repository() {
        assert_eq!(context_dir("./services//api/").unwrap(), "services/api");
        assert_eq!(context_dir("").unwrap(), "");
        assert!(context_dir("../etc").is_err());
        assert!(context_dir("a/../../b").is_err());
        assert!(context_dir("/abs").is_err());
    }
}
