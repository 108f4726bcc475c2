//! SLSA v1 provenance for a pushed image: an in-toto statement whose
//! subject is the image's digest and whose predicate says how it was built
//! — the build type, the request's external parameters (after defaults;
//! secrets by name only, never a value), the resolved dependencies (the
//! git commit or the context's sha256, the base images with their digests,
//! each plugin's id, version and component sha256), the builder and the
//! run's times. It is signed with the organization's key
//! (`crate::signing`) as a DSSE envelope and attached the way `cosign
//! attest` does (`kiln_trust::cosign`).

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

/// The in-toto statement type.
pub const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// SLSA provenance v1.
pub const PREDICATE_TYPE: &str = kiln_trust::verify::SLSA_PROVENANCE_V1;
/// What a Kiln build is: a Dockerfile build of a context (the external
/// parameters are `kiln-api`'s build settings and source).
pub const BUILD_TYPE: &str = "https://kiln.dev/provenance/dockerfile-build/v1";

/// A dependency the build resolved: where from, and its digests
/// (`sha256`, `gitCommit`).
pub struct Dependency {
    pub uri: String,
    pub name: Option<String>,
    pub digest: Vec<(&'static str, String)>,
}

/// Everything a statement says.
pub struct BuildFacts<'a> {
    /// `host/path` of the image, and its manifest digest.
    pub repository: &'a str,
    pub digest: &'a str,
    pub build: &'a kiln_api::Build,
    pub dependencies: Vec<Dependency>,
    /// This server (its public URL, else `kiln://<host name>`).
    pub builder_id: String,
    pub started: Option<DateTime<Utc>>,
    pub finished: DateTime<Utc>,
}

/// An in-toto statement of `predicate` (of `predicate_type`) about the
/// image `repository@digest`.
pub fn about_image(
    repository: &str,
    digest: &str,
    predicate_type: &str,
    predicate: Value,
) -> Value {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": repository, "digest": {"sha256": hex}}],
        "predicateType": predicate_type,
        "predicate": predicate,
    })
}

/// The statement, as JSON.
pub fn statement(facts: &BuildFacts) -> Value {
    let build = facts.build;
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    let predicate = json!({
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "name": build.name,
                "source": build.source,
                "request": build.request,
            },
            "internalParameters": {
                "org": build.org,
                "profileUsed": build.profile_used,
            },
            "resolvedDependencies": facts.dependencies.iter().map(|d| {
                let mut dependency = json!({
                    "uri": d.uri,
                    "digest": d.digest.iter()
                        .map(|(kind, value)| (kind.to_string(), json!(value)))
                        .collect::<serde_json::Map<_, _>>(),
                });
                if let Some(name) = &d.name {
                    dependency["name"] = json!(name);
                }
                dependency
            }).collect::<Vec<_>>(),
        },
        "runDetails": {
            "builder": {
                "id": facts.builder_id,
                "version": {"kiln": env!("CARGO_PKG_VERSION")},
            },
            "metadata": {
                "invocationId": build.build_id,
                "startedOn": facts.started.map(time),
                "finishedOn": time(facts.finished),
            },
        },
    });
    about_image(facts.repository, facts.digest, PREDICATE_TYPE, predicate)
}

/// The base images a Dockerfile builds `FROM`, in order, each once: global
/// `ARG`s (before the first `FROM`) substituted from `build_args` or their
/// defaults; `scratch` and earlier stages (`FROM build`) are not images.
/// Only the request's own build args are used: a secret build arg's value
/// never reaches a provenance statement.
pub fn base_images(
    dockerfile: &str,
    build_args: &std::collections::BTreeMap<String, String>,
) -> Vec<String> {
    let mut args = std::collections::BTreeMap::<String, String>::new();
    let mut stages = Vec::<String>::new();
    let mut images = Vec::<String>::new();
    let mut seen_from = false;
    // Continuation lines (`\` at the end) join their instruction.
    let joined = dockerfile.replace("\\\r\n", " ").replace("\\\n", " ");
    for line in joined.lines().map(str::trim) {
        let mut words = line.split_whitespace();
        let Some(instruction) = words.next() else {
            continue;
        };
        if instruction.starts_with('#') {
            continue;
        }
        if instruction.eq_ignore_ascii_case("ARG") && !seen_from {
            for declaration in words {
                let (name, default) = declaration
                    .split_once('=')
                    .map_or((declaration, None), |(n, d)| (n, Some(d.trim_matches('"'))));
                if let Some(value) = build_args.get(name).map(String::as_str).or(default) {
                    args.insert(name.to_string(), value.to_string());
                }
            }
        } else if instruction.eq_ignore_ascii_case("FROM") {
            seen_from = true;
            let rest: Vec<&str> = words.filter(|w| !w.starts_with("--")).collect();
            let Some(image) = rest.first().map(|image| substitute(image, &args)) else {
                continue;
            };
            let lowered = image.to_ascii_lowercase();
            let is_image =
                lowered != "scratch" && !stages.contains(&lowered) && !images.contains(&image);
            if let (Some(as_word), Some(alias)) = (rest.get(1), rest.get(2)) {
                if as_word.eq_ignore_ascii_case("AS") {
                    stages.push(alias.to_ascii_lowercase());
                }
            }
            if is_image {
                images.push(image);
            }
        }
    }
    images
}

/// A base image as a resolved dependency, named as BuildKit's provenance
/// names them: `pkg:docker/<repository>@<tag>` (Docker Hub's `docker.io/`
/// left out), with the platform when the build asked for one.
pub fn base_image_dependency(full_reference: &str, platform: Option<&str>) -> Dependency {
    let short = full_reference
        .strip_prefix("docker.io/")
        .unwrap_or(full_reference);
    let (repository, version) = match short.split_once('@') {
        Some((repository, digest)) => (repository, digest),
        None => kiln_trust::registry::without_tag(short),
    };
    let query = platform
        .map(|p| format!("?platform={}", p.replace('/', "%2F")))
        .unwrap_or_default();
    Dependency {
        uri: format!("pkg:docker/{repository}@{version}{query}"),
        name: Some("base image".into()),
        digest: Vec::new(),
    }
}

/// `$NAME`, `${NAME}` and `${NAME:-default}` from `args`; unknown names are
/// left as written.
fn substitute(word: &str, args: &std::collections::BTreeMap<String, String>) -> String {
    static PATTERN: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)",
        )
        .expect("the pattern compiles")
    });
    PATTERN
        .replace_all(word, |found: &regex::Captures| {
            let name = found.get(1).or(found.get(3)).expect("a name").as_str();
            match (args.get(name), found.get(2)) {
                (Some(value), _) => value.clone(),
                (None, Some(default)) => default.as_str().to_string(),
                (None, None) => found[0].to_string(),
            }
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_images_are_the_froms_that_name_images() {
        let dockerfile = "\
# syntax=docker/dockerfile:1
ARG BASE=python:3.12-slim
ARG REGISTRY
FROM --platform=$BUILDPLATFORM golang:1.22 AS Build
RUN go build
FROM ${BASE} AS runtime
FROM build AS again
FROM scratch
FROM ${REGISTRY:-docker.io}/library/busybox:1 \\
  AS last
FROM golang:1.22
";
        let none = Default::default();
        assert_eq!(
            base_images(dockerfile, &none),
            vec![
                "golang:1.22".to_string(),
                "python:3.12-slim".into(),
                "docker.io/library/busybox:1".into()
            ]
        );
        let args = [("BASE".to_string(), "r.example/py:3".to_string())].into();
        assert_eq!(base_images(dockerfile, &args)[1], "r.example/py:3");
        assert_eq!(
            base_images("FROM $UNKNOWN\n", &none),
            vec!["$UNKNOWN".to_string()]
        );
    }

    #[test]
    fn base_images_are_named_as_buildkit_names_them() {
        let hub = base_image_dependency("docker.io/library/python:3.12", Some("linux/arm64"));
        assert_eq!(
            hub.uri,
            "pkg:docker/library/python@3.12?platform=linux%2Farm64"
        );
        let local = base_image_dependency("127.0.0.1:5000/base/busybox:1", None);
        assert_eq!(local.uri, "pkg:docker/127.0.0.1:5000/base/busybox@1");
        let pinned = base_image_dependency("r.example/app@sha256:ab", None);
        assert_eq!(pinned.uri, "pkg:docker/r.example/app@sha256:ab");
    }

    #[test]
    fn the_statement_names_the_image_and_its_inputs() {
        let build: kiln_api::Build = serde_json::from_value(json!({
            "buildId": "b-1", "org": "acme", "number": 1, "name": "app",
            "status": "BUILD_STATUS_RUNNING",
            "source": {"kind": "git", "git": {"url": "https://git.example/app.git", "reference": "main", "commit": "0123"}},
            "request": {"dockerfile": "Dockerfile", "tags": ["v1"], "buildArgs": {"A": "1"},
                        "noCache": false, "timeoutSecs": 0, "builder": "buildkit", "profile": "auto",
                        "secrets": ["NPM_TOKEN"]},
            "imageRefs": [], "createTime": "2026-12-03T00:00:00Z",
        }))
        .unwrap();
        let statement = statement(&BuildFacts {
            repository: "r.example/acme/app",
            digest: "sha256:abcd",
            build: &build,
            dependencies: vec![Dependency {
                uri: "git+https://git.example/app.git@main".into(),
                name: None,
                digest: vec![("gitCommit", "0123".into())],
            }],
            builder_id: "kiln://node-1".into(),
            started: None,
            finished: Utc::now(),
        });
        assert_eq!(statement["subject"][0]["digest"]["sha256"], "abcd");
        assert_eq!(statement["predicateType"], PREDICATE_TYPE);
        let definition = &statement["predicate"]["buildDefinition"];
        assert_eq!(
            definition["externalParameters"]["request"]["secrets"],
            json!(["NPM_TOKEN"])
        );
        assert_eq!(
            definition["resolvedDependencies"][0]["digest"]["gitCommit"],
            "0123"
        );
        assert_eq!(
            statement["predicate"]["runDetails"]["metadata"]["invocationId"],
            "b-1"
        );
    }
}
