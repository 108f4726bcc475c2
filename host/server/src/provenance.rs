//! SLSA v1 provenance for a pushed image: an in-toto statement whose
//! subject is the image's digest and whose predicate says how it was built
//! — the build type, the request's external parameters (after defaults;
//! secrets by name only, never a value), the resolved dependencies (the
//! git commit or the context's sha256, each plugin's id, version and
//! component sha256), the builder and the run's times. It is signed with
//! the organization's key (`crate::signing`) as a DSSE envelope and
//! attached the way `cosign attest` does (`kiln_trust::cosign`).

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

/// The statement, as JSON.
pub fn statement(facts: &BuildFacts) -> Value {
    let hex = facts.digest.strip_prefix("sha256:").unwrap_or(facts.digest);
    let build = facts.build;
    let time = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Millis, true);
    json!({
        "_type": STATEMENT_TYPE,
        "subject": [{"name": facts.repository, "digest": {"sha256": hex}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
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
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
