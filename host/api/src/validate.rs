//! What a well-formed CreateBuild looks like. Every check names the field
//! and says how to fix it. The server applies these; a client may apply
//! them first to fail before sending anything.

use std::path::{Component, Path};

// Limits on what one request may ask for. A request past one is refused
// at once (400, naming the limit) rather than tying up a build slot or
// failing later in the engine. The OpenAPI document states the same.

/// Most `tags` one build pushes.
pub const MAX_TAGS: usize = 32;
/// Most `buildArgs` one build takes.
pub const MAX_BUILD_ARGS: usize = 128;
/// Most bytes of one build arg's value.
pub const MAX_BUILD_ARG_VALUE_BYTES: usize = 16 << 10;
/// Most bytes of all build args' names and values together (Docker
/// Engine takes them in the request's URL).
pub const MAX_BUILD_ARGS_TOTAL_BYTES: usize = 64 << 10;
/// Most `platforms` one multi-platform build takes.
pub const MAX_PLATFORMS: usize = 8;
/// Most names in `secrets` and in `secretBuildArgs`, each.
pub const MAX_SECRETS: usize = 32;
/// Fewest characters a secret value (or a credential's password) has:
/// shorter values could not be masked in build logs without garbling them,
/// so they are refused rather than shown.
pub const MIN_SECRET_CHARS: usize = 4;
/// Most bytes of one secret value.
pub const MAX_SECRET_BYTES: usize = 64 << 10;

// The same rules as JSON Schema patterns (ECMA-262), for the OpenAPI
// document; a kiln-api test checks each against its check function.

/// [`check_name`] as a pattern (with a maximum length of 128).
pub const NAME_PATTERN: &str =
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$";
/// [`check_tag`] as a pattern.
pub const TAG_PATTERN: &str = r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$";
/// [`check_build_arg`] and [`check_secret_name`] as a pattern.
pub const VARIABLE_PATTERN: &str = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$";
/// [`check_platform`] as a pattern.
pub const PLATFORM_PATTERN: &str = r"^[a-z0-9_]+/[a-z0-9_]+(?:/[a-z0-9_]+)?$";
/// [`check_target`] as a pattern.
pub const TARGET_PATTERN: &str = r"^[A-Za-z0-9_.-]{1,128}$";
/// [`check_context_path`] as a pattern: relative, no `..` part, no NUL.
pub const CONTEXT_PATH_PATTERN: &str = r"^(?!/)(?!(?:.*/)?\.\.(?:/|$))[^\u0000]+$";

/// [`check_org_name`] as a pattern.
pub const ORG_PATTERN: &str = r"^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$";
/// [`check_credential_host`] as a pattern (with a maximum length of 255).
pub const CREDENTIAL_HOST_PATTERN: &str = r"^(?:\*|[A-Za-z0-9.:\[\]-]+)$";

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
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128;
    if !ok {
        return Err(format!(
            "build arg name {name:?} is not valid: use 1 to 128 letters, digits and `_`, not starting with a digit"
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

/// `platforms`: 1 to [`MAX_PLATFORMS`] different valid platforms, and
/// every tag still a valid tag with each platform's suffix (the tag its
/// platform's image is pushed under, [`platform_tag`]).
pub fn check_platforms(platforms: &[String], tags: &[String]) -> Result<(), String> {
    if platforms.is_empty() {
        return Err("`platforms` is empty: name at least one, or leave it out".into());
    }
    if platforms.len() > MAX_PLATFORMS {
        return Err(format!(
            "`platforms` names {} platforms; one build takes at most {MAX_PLATFORMS}",
            platforms.len()
        ));
    }
    for (at, platform) in platforms.iter().enumerate() {
        check_platform(platform).map_err(|e| e.replacen("`platform`", "`platforms`:", 1))?;
        if platforms[..at].contains(platform) {
            return Err(format!("`platforms` names {platform} twice"));
        }
        for tag in tags {
            let suffixed = platform_tag(tag, platform);
            if check_tag(&suffixed).is_err() {
                return Err(format!(
                    "tag {tag:?} is too long for a multi-platform build: its {platform} image is pushed as {suffixed:?}, over 128 characters; shorten the tag"
                ));
            }
        }
    }
    Ok(())
}

/// The tag a multi-platform build pushes `platform`'s image under, beside
/// the index under `tag`: `<tag>-<os>-<arch>[-<variant>]`.
pub fn platform_tag(tag: &str, platform: &str) -> String {
    format!("{tag}-{}", platform.replace('/', "-"))
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

/// A build secret's name: what may follow `id=` in a secret mount and name
/// a build arg.
pub fn check_secret_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = name.len() <= 128
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "build secret name {name:?} is not valid: 1 to 128 letters, digits and `_`, not starting with a digit"
        ))
    }
}

/// A secret value or a credential's password, named by `what` (e.g.
/// "build secret NPM_TOKEN"): long enough to be masked, not huge.
pub fn check_secret_value(what: &str, value: &str) -> Result<(), String> {
    let chars = value.chars().count();
    if chars < MIN_SECRET_CHARS {
        return Err(format!(
            "{what} is {chars} character{} long; secret values must have at least {MIN_SECRET_CHARS} characters, because shorter ones cannot be masked in build logs",
            if chars == 1 { "" } else { "s" }
        ));
    }
    if value.len() > MAX_SECRET_BYTES {
        return Err(format!(
            "{what} is {} bytes; secret values may have at most {} KiB",
            value.len(),
            MAX_SECRET_BYTES >> 10
        ));
    }
    Ok(())
}

/// `tags`: 1 to [`MAX_TAGS`] valid tags.
pub fn check_tags(tags: &[String]) -> Result<(), String> {
    if tags.is_empty() {
        return Err(
            "`tags` is empty: give at least one tag, or leave it out for [\"latest\"]".into(),
        );
    }
    if tags.len() > MAX_TAGS {
        return Err(format!(
            "`tags` has {} tags; a build pushes at most {MAX_TAGS} (build once, then tag further in the registry)",
            tags.len()
        ));
    }
    tags.iter().try_for_each(|tag| check_tag(tag))
}

/// `buildArgs`: at most [`MAX_BUILD_ARGS`] valid names, each value at most
/// [`MAX_BUILD_ARG_VALUE_BYTES`], all together at most
/// [`MAX_BUILD_ARGS_TOTAL_BYTES`].
pub fn check_build_args<'a>(
    args: impl ExactSizeIterator<Item = (&'a String, &'a String)>,
) -> Result<(), String> {
    if args.len() > MAX_BUILD_ARGS {
        return Err(format!(
            "`buildArgs` has {} entries; a build takes at most {MAX_BUILD_ARGS}",
            args.len()
        ));
    }
    let mut total = 0;
    for (name, value) in args {
        check_build_arg(name)?;
        if value.len() > MAX_BUILD_ARG_VALUE_BYTES {
            return Err(format!(
                "build arg {name} is {} bytes; a value may have at most {} KiB (put larger inputs in the context)",
                value.len(),
                MAX_BUILD_ARG_VALUE_BYTES >> 10
            ));
        }
        total += name.len() + value.len();
    }
    if total > MAX_BUILD_ARGS_TOTAL_BYTES {
        return Err(format!(
            "`buildArgs` total {total} bytes; names and values together may have at most {} KiB (put larger inputs in the context)",
            MAX_BUILD_ARGS_TOTAL_BYTES >> 10
        ));
    }
    Ok(())
}

/// A list of build secret names (`secrets` or `secretBuildArgs`).
pub fn check_secret_names(field: &str, names: &[String]) -> Result<(), String> {
    if names.len() > MAX_SECRETS {
        return Err(format!(
            "`{field}` names {} secrets; a build takes at most {MAX_SECRETS}",
            names.len()
        ));
    }
    names
        .iter()
        .try_for_each(|name| check_secret_name(name).map_err(|e| format!("`{field}`: {e}")))
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
    fn platforms_are_different_valid_and_keep_their_tags_valid() {
        let tags = |t: &[&str]| t.iter().map(|t| t.to_string()).collect::<Vec<_>>();
        let platforms = tags;
        let two = platforms(&["linux/amd64", "linux/arm64/v8"]);
        assert!(check_platforms(&two, &tags(&["latest", "v1"])).is_ok());
        assert_eq!(platform_tag("v1", "linux/arm64/v8"), "v1-linux-arm64-v8");
        let error = check_platforms(&[], &tags(&["latest"])).unwrap_err();
        assert!(error.contains("empty"), "{error}");
        let error = check_platforms(&platforms(&["linux/amd64"; 9]), &[]).unwrap_err();
        assert!(error.contains("at most 8"), "{error}");
        let error = check_platforms(&platforms(&["linux/amd64", "linux/amd64"]), &[]).unwrap_err();
        assert!(error.contains("twice"), "{error}");
        let error = check_platforms(&platforms(&["linux"]), &[]).unwrap_err();
        assert!(error.contains("`platforms`: \"linux\""), "{error}");
        // 115 + "-linux-amd64" is 127 characters; with "-v8" it is 130.
        let long = "x".repeat(115);
        assert!(check_platforms(&platforms(&["linux/amd64"]), &tags(&[&long])).is_ok());
        let error = check_platforms(&two, &tags(&[&long])).unwrap_err();
        assert!(error.contains("linux/arm64/v8"), "{error}");
    }

    #[test]
    fn context_paths_stay_inside() {
        assert!(check_context_path("dockerfile", "docker/Dockerfile").is_ok());
        for bad in ["", "../Dockerfile", "/etc/passwd", "a/../../b"] {
            assert!(check_context_path("dockerfile", bad).is_err(), "{bad}");
        }
    }
}

/// An organization's name: what may stand in an image path.
pub fn check_org_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "organization name {name:?} is not valid: 1 to 64 lowercase letters, digits and `-`, not starting or ending with `-` (it becomes part of image references)"
        ))
    }
}

/// A key of `registryCredentials` or `gitCredentials` (named by `group`):
/// `host`, `host:port`, or `*` for every host.
pub fn check_credential_host(group: &str, host: &str) -> Result<(), String> {
    let ok = host == "*"
        || (!host.is_empty()
            && host.len() <= 255
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{group}` key {host:?} is not a host: give host or host:port (e.g. \"registry.example.com\", \"127.0.0.1:5000\"), or \"*\" for every host"
        ))
    }
}

/// An organization's registry target: a registry host (`name` or
/// `name:port`, as image references spell it) and a namespace of
/// lowercase path components (the distribution spec's repository rules).
pub fn check_registry_target(target: &crate::RegistryTarget) -> Result<(), String> {
    let host = target.host.as_str();
    let (name, port) = match host.rsplit_once(':') {
        Some((name, port)) => (name, Some(port)),
        None => (host, None),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 255
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 5
            && p.chars().all(|c| c.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
    });
    if !(name_ok && port_ok) {
        return Err(format!(
            "`host` {host:?} is not a registry host: give host or host:port, e.g. \"harbor.example.com\" or \"127.0.0.1:5001\""
        ));
    }
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.chars()
                .next()
                .is_some_and(|f| f.is_ascii_lowercase() || f.is_ascii_digit())
            && c.chars()
                .last()
                .is_some_and(|l| l.is_ascii_lowercase() || l.is_ascii_digit())
            && c.chars().all(|ch| {
                ch.is_ascii_lowercase() || ch.is_ascii_digit() || matches!(ch, '.' | '_' | '-')
            })
            && !c.contains("..")
    };
    let namespace = target.namespace.as_str();
    if namespace.is_empty() || namespace.len() > 200 || !namespace.split('/').all(component_ok) {
        return Err(format!(
            "`namespace` {namespace:?} is not a repository path: lowercase letters, digits and `.`, `_`, `-` inside components separated by `/`, e.g. \"team-a\" or \"acme/builds\""
        ));
    }
    Ok(())
}

/// The profile that chooses a size from the build's history.
pub const AUTO_PROFILE: &str = "auto";

/// The sized build profiles, smallest first.
pub const SIZED_PROFILES: [&str; 6] = [
    "small",
    "medium",
    "large",
    "extra-large",
    "2x-large",
    "4x-large",
];

/// The name `extra-large` had before, still accepted.
pub const PROFILE_ALIAS: &str = "xlarge";

/// Every name `profile` may take: `auto`, the sizes, and the alias.
pub fn profile_names() -> Vec<&'static str> {
    std::iter::once(AUTO_PROFILE)
        .chain(SIZED_PROFILES)
        .chain([PROFILE_ALIAS])
        .collect()
}

/// The profile a name means (`xlarge` is `extra-large`).
pub fn canonical_profile(name: &str) -> &str {
    match name {
        PROFILE_ALIAS => "extra-large",
        other => other,
    }
}

/// A request's `profile`.
pub fn check_profile(profile: &str) -> Result<(), String> {
    let names = profile_names();
    if names.contains(&profile) {
        Ok(())
    } else {
        Err(format!(
            "`profile` {profile:?} is not one of {}",
            names.join(", ")
        ))
    }
}

/// The field of a CreateBuild request that carries its build context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextField {
    ZippedCode,
    ContextId,
    GitSource,
    ContextUrl,
}

/// Which one field names the build context: exactly one of them is given
/// (a `null` field is absent).
pub fn context_field(request: &crate::CreateBuildRequest) -> Result<ContextField, String> {
    let given: Vec<(ContextField, &str)> = [
        (
            ContextField::ZippedCode,
            "zippedCode",
            request.zipped_code.is_some(),
        ),
        (
            ContextField::ContextId,
            "contextId",
            request.context_id.is_some(),
        ),
        (
            ContextField::GitSource,
            "gitSource",
            request.git_source.is_some(),
        ),
        (
            ContextField::ContextUrl,
            "contextUrl",
            request.context_url.is_some(),
        ),
    ]
    .into_iter()
    .filter(|(_, _, present)| *present)
    .map(|(field, name, _)| (field, name))
    .collect();
    match given.as_slice() {
        [(field, _)] => Ok(*field),
        [] => Err(
            "the request names no build context: give exactly one of `zippedCode` (a base64 zip), `contextId` (from POST /v1/contexts), `gitSource` or `contextUrl`".into(),
        ),
        many => Err(format!(
            "give exactly one build context, not several: the request has {}",
            many.iter().map(|(_, name)| *name).collect::<Vec<_>>().join(" and ")
        )),
    }
}

/// Whether a host name (without port) is this machine: `localhost` or a
/// loopback address. Plain HTTP (to registries, git hosts, the Kiln API)
/// and credentials over it are allowed only to such hosts.
pub fn is_loopback_host(name: &str) -> bool {
    name == "localhost"
        || name
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
