//! What a well-formed CreateBuild looks like. Every check names the field
//! and says how to fix it.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use serde::Deserialize;

/// Most bytes an inline zip may have, packed.
pub const MAX_INLINE_ZIP_BYTES: usize = 4 << 20;

/// `gitSource` in CreateBuild.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GitSourceRequest {
    pub url: String,
    /// A branch, tag, or full/abbreviated commit id; default `main`.
    #[serde(default)]
    pub reference: Option<String>,
    /// A sub-directory of the repository to use as the context.
    #[serde(default)]
    pub context_dir: Option<String>,
    /// Fetch submodules too (default false).
    #[serde(default)]
    pub submodules: Option<bool>,
}

/// The reference a git build uses when the request names none.
pub const DEFAULT_GIT_REFERENCE: &str = "main";

/// A git reference: a branch or tag name (git's ref-name rules), a commit
/// id, or a full ref name.
pub fn check_git_reference(reference: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "`gitSource.reference` {reference:?} is not a valid git reference: {why}; give a branch (\"main\"), a tag (\"v1.2.0\") or a commit id"
        ))
    };
    if reference.is_empty() {
        return bad("it is empty");
    }
    if reference.len() > 255 {
        return bad("it is longer than 255 characters");
    }
    if reference
        .chars()
        .any(|c| c.is_control() || " ~^:?*[\\".contains(c))
    {
        return bad("it contains a space, a control character or one of ~ ^ : ? * [ \\");
    }
    if reference.contains("..") || reference.contains("@{") || reference.contains("//") {
        return bad("it contains `..`, `@{` or `//`");
    }
    if reference.starts_with('/')
        || reference.starts_with('-')
        || reference.ends_with('/')
        || reference.ends_with('.')
        || reference.ends_with(".lock")
        || reference.split('/').any(|part| part.starts_with('.'))
    {
        return bad("it starts with `/` or `-`, ends with `/`, `.` or `.lock`, or has a part starting with `.`");
    }
    Ok(())
}

/// The CreateBuild body. Unknown fields are refused, so a typo is an error
/// rather than a silently ignored option.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateBuildRequest {
    pub name: String,
    #[serde(default)]
    pub zipped_code: Option<String>,
    #[serde(default)]
    pub context_id: Option<String>,
    #[serde(default)]
    pub git_source: Option<GitSourceRequest>,
    /// A URL for a context source plugin: its scheme picks the plugin.
    #[serde(default)]
    pub context_url: Option<String>,
    #[serde(default)]
    pub dockerfile: Option<String>,
    /// A directory of the context to build instead of its root (one
    /// project of a monorepo, as `wizard:detect` lists them).
    #[serde(default)]
    pub context_dir: Option<String>,
    #[serde(default)]
    pub builder: Option<String>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub build_args: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub target: Option<String>,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub no_cache: Option<bool>,
    #[serde(default)]
    pub timeout_secs: Option<u64>,
    #[serde(default)]
    pub profile: Option<String>,
    /// Build secrets passed as build args of the same name.
    #[serde(default)]
    pub secret_build_args: Option<Vec<String>>,
    /// Build secrets to mount (`RUN --mount=type=secret,id=NAME`).
    #[serde(default)]
    pub secrets: Option<Vec<String>>,
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

/// One path component of an image name, as the registry API defines it:
/// lowercase alphanumerics separated by `.`, `_`, `__` or runs of `-`.
fn valid_name_component(part: &str) -> bool {
    let bytes: Vec<char> = part.chars().collect();
    if bytes.is_empty() || !is_lower_alnum(bytes[0]) || !is_lower_alnum(*bytes.last().unwrap()) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if is_lower_alnum(c) {
            i += 1;
            continue;
        }
        // A separator: `.`, `_`, `__`, or `-`+.
        let start = i;
        while i < bytes.len() && !is_lower_alnum(bytes[i]) {
            i += 1;
        }
        let sep: String = bytes[start..i].iter().collect();
        let ok = sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-');
        if !ok {
            return false;
        }
    }
    true
}

/// The image name: `app` or `team/app`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 128 || !name.split('/').all(valid_name_component) {
        return Err(format!(
            "`name` {name:?} is not a valid image name: use lowercase letters, digits and single `.`, `_` or `-` between them (`/` separates path parts), at most 128 characters, e.g. \"hello\" or \"team/api\""
        ));
    }
    Ok(())
}

/// A tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !first_ok || !rest_ok || tag.len() > 128 {
        return Err(format!(
            "tag {tag:?} is not valid: a tag is 1 to 128 letters, digits, `_`, `.` or `-`, and does not start with `.` or `-` (e.g. \"v1.2\", \"latest\")"
        ));
    }
    Ok(())
}

/// A path inside the context: relative, no `..`.
pub fn check_context_path(field: &str, path: &str) -> Result<(), String> {
    let escapes = path.is_empty()
        || path.contains('\0')
        || Path::new(path)
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir));
    if escapes {
        return Err(format!(
            "`{field}` {path:?} must be a relative path inside the build context, without `..` (e.g. \"Dockerfile\" or \"docker/Dockerfile.prod\")"
        ));
    }
    Ok(())
}

/// A build-arg name.
pub fn check_build_arg(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !ok {
        return Err(format!(
            "build arg name {name:?} is not valid: use letters, digits and `_`, not starting with a digit"
        ));
    }
    Ok(())
}

/// `os/arch[/variant]`.
pub fn check_platform(platform: &str) -> Result<(), String> {
    let parts: Vec<&str> = platform.split('/').collect();
    let ok = (2..=3).contains(&parts.len())
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        });
    if !ok {
        return Err(format!(
            "`platform` {platform:?} is not valid: use os/arch[/variant], e.g. \"linux/amd64\" or \"linux/arm64/v8\""
        ));
    }
    Ok(())
}

/// A build stage name.
pub fn check_target(target: &str) -> Result<(), String> {
    let ok = !target.is_empty()
        && target.len() <= 128
        && target
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if !ok {
        return Err(format!(
            "`target` {target:?} is not a valid stage name: letters, digits, `_`, `.`, `-`"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_registry_grammar() {
        for good in ["hello", "team/api", "a.b", "a__b", "a--b", "x1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Hello", "-a", "a-", "a/", "a..b", "a b", "a:b"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn tags_follow_the_registry_grammar() {
        for good in ["latest", "v1.2", "_x", "1"] {
            assert!(check_tag(good).is_ok(), "{good}");
        }
        for bad in ["", ".x", "-x", "a:b", "a/b", &"x".repeat(129)] {
            assert!(check_tag(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn context_paths_stay_inside() {
        assert!(check_context_path("dockerfile", "docker/Dockerfile").is_ok());
        for bad in ["", "../Dockerfile", "/etc/passwd", "a/../../b"] {
            assert!(check_context_path("dockerfile", bad).is_err(), "{bad}");
        }
    }
}
