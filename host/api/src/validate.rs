//! What a well-formed CreateBuild looks like. Every check names the field
//! and says how to fix it. The server applies these; a client may apply
//! them first to fail before sending anything.

use std::path::{Component, Path};

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
