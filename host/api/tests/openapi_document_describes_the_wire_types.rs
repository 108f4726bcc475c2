//! The OpenAPI document is derived from the wire types; these tests hold
//! it to what the types actually put on the wire and take off it, checked
//! by a JSON Schema 2020-12 validator (OpenAPI 3.1's schema dialect).
//!
//! Answers are checked *strictly* (`component_schema(.., closed: true)`),
//! so a field the server sends that the document does not name fails here.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{TimeZone, Utc};
use kiln_api::admin::MASK;
use kiln_api::*;
use serde::Serialize;
use serde_json::{json, Value};

fn document() -> Value {
    serde_json::to_value(kiln_api::openapi::document()).expect("the document serializes")
}

/// A validator for `#/components/schemas/<name>`; `strict` closes objects.
fn validator(name: &str, strict: bool) -> jsonschema::Validator {
    let schema = kiln_api::openapi::component_schema(&document(), name, strict)
        .unwrap_or_else(|| panic!("the document has no schema {name}"));
    jsonschema::validator_for(&schema).expect("the document's schemas compile")
}

fn errors(validator: &jsonschema::Validator, instance: &Value) -> Vec<String> {
    validator
        .iter_errors(instance)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect()
}

/// `value` as the server sends it validates against `name`, strictly.
fn assert_describes<T: Serialize>(name: &str, value: &T) {
    let instance = serde_json::to_value(value).expect("the value serializes");
    let found = errors(&validator(name, true), &instance);
    assert!(
        found.is_empty(),
        "the document's {name} does not describe what is sent:\n{}\nsent: {instance:#}",
        found.join("\n")
    );
}

fn at(second: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 1, 12, 0, second).unwrap()
}

/// A build with every optional part present, so every field is checked.
fn full_build() -> Build {
    Build {
        build_id: "b-1".into(),
        org: "acme".into(),
        number: 7,
        name: "team/api".into(),
        status: BuildStatus::Failed,
        source: Source {
            kind: "git".into(),
            size_bytes: Some(1234),
            format: Some("tar".into()),
            context_id: Some("ctx-1".into()),
            url: Some("https://example.com/a.tar".into()),
            git: Some(GitSource {
                url: "https://git.example.com/app.git".into(),
                reference: "main".into(),
                context_dir: "services/api".into(),
                submodules: true,
                branch: Some("main".into()),
                commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
                reference_kind: Some(RefKind::Branch),
                full_ref: Some("refs/heads/main".into()),
            }),
        },
        request: BuildSettings {
            dockerfile: "Dockerfile".into(),
            tags: vec!["latest".into(), "v1".into()],
            build_args: BTreeMap::from([("A".into(), "1".into())]),
            target: Some("runtime".into()),
            platform: None,
            platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
            no_cache: true,
            timeout_secs: 600,
            builder: "buildkit".into(),
            profile: "medium".into(),
            secret_build_args: vec!["TOKEN".into()],
            secrets: vec!["npmrc".into()],
            context_dir: "services/api".into(),
        },
        image_refs: vec!["127.0.0.1:5000/acme/team/api:latest".into()],
        digest: Some(format!("sha256:{}", "a".repeat(64))),
        platforms: vec![PlatformImage {
            platform: "linux/arm64".into(),
            digest: format!("sha256:{}", "b".repeat(64)),
            size_bytes: 2_000_000,
            layer_count: 3,
            engine: Some("second".into()),
        }],
        metrics: Some(Metrics {
            duration_ms: 1500,
            image_size_bytes: Some(4_000_000),
            layer_count: Some(3),
            cache_used: true,
            cached_steps: 2,
            total_steps: 4,
            phases: Some(Phases {
                queued_ms: 3,
                context_ms: 40,
                build_ms: 1200,
                push_ms: 260,
            }),
        }),
        failure: Some(Failure {
            reason: FailureReason::RunFailed,
            message: "RUN false exited with code 1".into(),
            hint: "Run the step locally.".into(),
            exit_code: Some(1),
        }),
        wizard: Some(WizardDetection {
            stack: "node".into(),
            tool: "npm".into(),
            reasons: vec!["package.json".into()],
            generated: true,
            port: Some(3000),
        }),
        create_time: at(0),
        start_time: Some(at(1)),
        finish_time: Some(at(2)),
        log_removed_time: Some(at(3)),
        project_id: Some("p-1".into()),
        trigger: Some(kiln_api::Trigger {
            kind: kiln_api::TriggerKind::Webhook,
            delivery_id: Some("d-1".into()),
            pusher: Some("ada".into()),
            commit_message: Some("fix".into()),
        }),
        profile_used: Some("large".into()),
        peak_memory_bytes: Some(170 << 20),
        attachments: vec![kiln_api::Attachment {
            kind: "signature".into(),
            reference: "r.example/acme/team/api:sha256-0123.sig".into(),
            digest: "sha256:4567".into(),
        }],
        engine: Some("builder-2".into()),
        cache_from: vec!["r.example/acme/team/api@sha256:89ab".into()],
        attempts: vec![BuildAttempt {
            profile: "medium".into(),
            engine: Some("builder-1".into()),
            failure: Failure {
                reason: FailureReason::OutOfMemory,
                message: "killed for memory".into(),
                hint: "use a larger profile".into(),
                exit_code: Some(137),
            },
            start_time: at(0),
            finish_time: at(1),
        }],
    }
}

/// The same build with every optional part absent.
fn bare_build() -> Build {
    Build {
        build_id: "b-2".into(),
        org: String::new(),
        number: 1,
        name: "hello".into(),
        status: BuildStatus::Pending,
        source: Source {
            kind: "inline-zip".into(),
            ..Source::default()
        },
        request: BuildSettings::default(),
        image_refs: vec![],
        digest: None,
        platforms: vec![],
        metrics: None,
        failure: None,
        wizard: None,
        create_time: at(0),
        start_time: None,
        finish_time: None,
        log_removed_time: None,
        project_id: None,
        trigger: None,
        profile_used: None,
        attempts: vec![],
        engine: None,
        cache_from: Vec::new(),
        peak_memory_bytes: None,
        attachments: Vec::new(),
    }
}

#[test]
fn every_answer_the_server_sends_is_described_field_by_field() {
    assert_describes("Build", &full_build());
    assert_describes("Build", &bare_build());
    assert_describes(
        "BuildList",
        &BuildList {
            builds: vec![full_build(), bare_build()],
            next_page_token: "t".into(),
        },
    );
    assert_describes(
        "BuildAccepted",
        &BuildAccepted {
            build_id: "b-1".into(),
            number: 1,
            status: BuildStatus::Pending,
        },
    );
    assert_describes(
        "LogLine",
        &LogLine {
            seq: 3,
            time: at(3),
            stream: "build".into(),
            line: "Step 1/2".into(),
        },
    );
    assert_describes(
        "UploadedContext",
        &UploadedContext {
            context_id: "ctx-1".into(),
            sha256: "b".repeat(64),
            size_bytes: 10,
            format: "tar.gz".into(),
            create_time: at(4),
        },
    );
    let rights = Permissions {
        engine: BTreeSet::from(["build".into()]),
        git: BTreeSet::from(["*".into()]),
        http: BTreeSet::from(["example.com".into()]),
        secrets: BTreeSet::from(["registry".into()]),
        env: BTreeSet::from(["HOME".into()]),
        images: BTreeSet::from(["gcr.io/kaniko-project/executor".into()]),
    };
    assert_describes(
        "PluginList",
        &PluginList {
            plugins: vec![PluginView {
                id: "buildkit".into(),
                version: "0.1.0".into(),
                api: "0.1.0".into(),
                description: "BuildKit builder".into(),
                authors: vec!["Kiln".into()],
                origin: "embedded".into(),
                sha256: "c".repeat(64),
                world: "Builder".into(),
                kinds: PluginKinds {
                    context_source: vec![],
                    builder: vec!["buildkit".into()],
                },
                asked_permissions: rights.clone(),
                granted_permissions: rights,
                limits: PluginLimits {
                    memory_mib: 64,
                    time_secs: 30,
                },
            }],
            load_errors: vec![
                PluginLoadError {
                    origin: "/plugins/bad/plugin.toml".into(),
                    plugin_id: Some("bad".into()),
                    message: "refused".into(),
                },
                PluginLoadError {
                    origin: "/plugins/worse/plugin.toml".into(),
                    plugin_id: None,
                    message: "unreadable".into(),
                },
            ],
        },
    );
    assert_describes(
        "MaskedSecrets",
        &MaskedSecrets {
            registry_credentials: BTreeMap::from([(
                "127.0.0.1:5000".into(),
                MaskedCredential::masked(),
            )]),
            git_credentials: BTreeMap::from([("*".into(), MaskedCredential::masked())]),
            build_secrets: BTreeMap::from([("TOKEN".into(), MASK.into())]),
        },
    );
    assert_describes(
        "DetectAnswer",
        &DetectAnswer {
            projects: vec![DetectedProject {
                path: "web".into(),
                context_dir: "web".into(),
                stack: "node".into(),
                tool: "npm".into(),
                reasons: vec!["package.json".into()],
                has_dockerfile: false,
                dockerfile: "FROM node\n".into(),
                dockerignore: "node_modules\n".into(),
                port: None,
            }],
            detected: true,
        },
    );
    let org = Org {
        name: "acme".into(),
        create_time: at(5),
        registry: Some(RegistryTarget {
            host: "harbor.example.com:8443".into(),
            namespace: "acme/apps".into(),
        }),
    };
    assert_describes("Org", &org);
    assert_describes("RegistryTarget", org.registry.as_ref().unwrap());
    assert_describes("OrgList", &OrgList { orgs: vec![org] });
    assert_describes(
        "NewToken",
        &NewToken {
            token: "kiln_x".into(),
            token_id: "t-1".into(),
            org: "acme".into(),
            create_time: at(6),
            note: "shown once".into(),
        },
    );
    assert_describes("ErrorBody", &ErrorBody::new(404, "no such build b-9"));
    let engine = Engine {
        name: "builder-2".into(),
        host: "tcp://10.0.0.12:2376".into(),
        tls: true,
        health: EngineHealth::Unhealthy,
        health_error: Some("does not answer".into()),
        last_checked: Some(at(7)),
        draining: true,
        platforms: vec!["linux/amd64".into(), "linux/arm64".into()],
        profiles: vec!["large".into()],
        builders: vec!["buildkit".into()],
        max_concurrent_builds: 4,
        running_builds: vec!["b-1".into()],
        builds_started: 12,
        version: Some("20.10.24".into()),
        cpus: Some(8),
        memory_bytes: Some(16 << 30),
        cache_bytes: Some(1 << 30),
    };
    assert_describes("Engine", &engine);
    let bare_engine = Engine {
        health: EngineHealth::Unknown,
        health_error: None,
        last_checked: None,
        version: None,
        cpus: None,
        memory_bytes: None,
        cache_bytes: None,
        ..engine.clone()
    };
    assert_describes(
        "EngineList",
        &EngineList {
            engines: vec![engine, bare_engine],
        },
    );
}

/// Every value of the enums the server sends is in the document's `enum`.
#[test]
fn every_status_and_failure_reason_is_listed() {
    let document = document();
    let listed = |name: &str| -> Vec<Value> {
        document["components"]["schemas"][name]["enum"]
            .as_array()
            .unwrap_or_else(|| panic!("{name} is not an enum in the document"))
            .clone()
    };
    let statuses: Vec<Value> = BuildStatus::ALL
        .iter()
        .map(|status| serde_json::to_value(status).unwrap())
        .collect();
    assert_eq!(listed("BuildStatus"), statuses);
    let reasons = listed("FailureReason");
    for reason in [
        FailureReason::GitRepositoryNotFound,
        FailureReason::PushDenied,
        FailureReason::EngineError,
        FailureReason::Internal,
    ] {
        let wire = serde_json::to_value(reason).unwrap();
        assert!(reasons.contains(&wire), "{wire} is not listed");
    }
}

/// Request bodies: what serde takes validates, what serde refuses (an
/// unknown field, a wrong type) does not. (The values also pass the
/// server's own rules, which the document states too: see the tests of
/// patterns and limits below.)
#[test]
fn request_schemas_accept_and_refuse_what_the_types_do() {
    fn agree<T: serde::de::DeserializeOwned>(name: &str, body: Value) {
        let by_serde = serde_json::from_value::<T>(body.clone()).is_ok();
        let by_schema = validator(name, false).is_valid(&body);
        assert_eq!(
            by_serde,
            by_schema,
            "{name}: serde {} but the document {} {body}",
            if by_serde { "accepts" } else { "refuses" },
            if by_schema { "accepts" } else { "refuses" },
        );
    }
    let full_create = serde_json::to_value(CreateBuildRequest {
        name: "team/api".into(),
        git_source: Some(GitSourceRequest {
            url: "https://git.example.com/app.git".into(),
            reference: Some("v1".into()),
            context_dir: Some("api".into()),
            submodules: Some(true),
        }),
        dockerfile: Some("Dockerfile".into()),
        builder: Some("kaniko".into()),
        tags: Some(vec!["v1".into()]),
        build_args: Some(BTreeMap::from([("A".into(), "1".into())])),
        no_cache: Some(true),
        timeout_secs: Some(60),
        secrets: Some(vec!["npmrc".into()]),
        ..CreateBuildRequest::default()
    })
    .unwrap();
    agree::<CreateBuildRequest>("CreateBuildRequest", full_create.clone());
    agree::<CreateBuildRequest>(
        "CreateBuildRequest",
        json!({"name": "hello", "contextId": "c"}),
    );
    agree::<CreateBuildRequest>(
        "CreateBuildRequest",
        json!({"name": "hello", "contextId": "c", "tag": ["x"]}),
    );
    agree::<CreateBuildRequest>(
        "CreateBuildRequest",
        json!({"name": "hello", "contextId": "c", "noCache": "yes"}),
    );
    agree::<CreateBuildRequest>(
        "CreateBuildRequest",
        json!({"contextId": "c", "tags": ["x"]}),
    );
    agree::<CreateBuildRequest>(
        "CreateBuildRequest",
        json!({"name": "hello", "gitSource": {"url": "u", "ref": "main"}}),
    );
    agree::<SaveSecretsRequest>(
        "SaveSecretsRequest",
        json!({
            "registryCredentials": {"127.0.0.1:5000": {"username": "u", "password": "pass-1"}, "old": null},
            "gitCredentials": {"*": {"username": "u", "password": "pass-2"}},
            "buildSecrets": {"TOKEN": "value", "OLD": null},
        }),
    );
    agree::<SaveSecretsRequest>("SaveSecretsRequest", json!({"buildSecret": {}}));
    // Beyond serde, the document states the server's credential rules
    // (secrets::check_credential): a password, and a user for registries.
    let secrets = validator("SaveSecretsRequest", false);
    for (body, valid) in [
        (
            json!({"gitCredentials": {"*": {"password": "pass-2"}}}),
            true,
        ),
        (json!({"gitCredentials": {"*": {"username": "u"}}}), false),
        (
            json!({"registryCredentials": {"r.example.com": {"password": "pass-2"}}}),
            false,
        ),
        (
            json!({"registryCredentials": {"r.example.com": {"username": "", "password": "pass-2"}}}),
            false,
        ),
        (
            json!({"registryCredentials": {"r.example.com": {"username": "u", "token": "pass-2"}}}),
            true,
        ),
        (
            json!({"gitCredentials": {"*": {"password": "pass-2", "token": "pass-2"}}}),
            false,
        ),
        (
            json!({"registryCredentials": {"a b": {"username": "u", "password": "pass-2"}}}),
            false,
        ),
    ] {
        assert_eq!(secrets.is_valid(&body), valid, "{body}");
    }
    agree::<SaveSecretsRequest>(
        "SaveSecretsRequest",
        json!({"gitCredentials": {"*": {"user": "u"}}}),
    );
    agree::<DetectRequest>(
        "DetectRequest",
        json!({"contextId": "c", "monorepo": false}),
    );
    agree::<DetectRequest>("DetectRequest", json!({"context": "c"}));
    agree::<CreateOrgRequest>("CreateOrgRequest", json!({"name": "acme"}));
    agree::<CreateOrgRequest>("CreateOrgRequest", json!({"name": "acme", "admin": true}));
}

/// The document's "exactly one build context" is the server's
/// (`validate::context_field`): none, several, and one beside `null`s.
#[test]
fn the_document_requires_exactly_one_build_context_as_the_server_does() {
    let schema = validator("CreateBuildRequest", false);
    let git = json!({"url": "https://git.example.com/app.git"});
    let zip = json!("UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA==");
    let mut bodies = vec![json!({"name": "hello"})];
    let contexts = [
        ("zippedCode", zip.clone()),
        ("contextId", json!("c")),
        ("gitSource", git.clone()),
        ("contextUrl", json!("https://example.com/app.tar.gz")),
    ];
    for (field, value) in &contexts {
        bodies.push(json!({"name": "hello", *field: value}));
        let mut with_nulls = json!({"name": "hello", *field: value});
        for (other, _) in contexts.iter().filter(|(o, _)| o != field) {
            with_nulls[*other] = Value::Null;
        }
        bodies.push(with_nulls);
        for (other, second) in contexts.iter().filter(|(o, _)| o != field) {
            bodies.push(json!({"name": "hello", *field: value, *other: second}));
        }
    }
    bodies.push(json!({"name": "hello", "zippedCode": null, "contextId": null}));
    let mut accepted = 0;
    for body in bodies {
        let request: CreateBuildRequest = serde_json::from_value(body.clone()).unwrap();
        let by_server = kiln_api::validate::context_field(&request).is_ok();
        accepted += usize::from(by_server);
        assert_eq!(
            schema.is_valid(&body),
            by_server,
            "the document and the server disagree on {body}"
        );
    }
    assert_eq!(accepted, 8, "one context, with and without nulls beside it");
}

/// The strict check is able to fail: a field the document does not name is
/// caught, so the test above proves something.
#[test]
fn an_undescribed_field_is_caught() {
    let mut sent = serde_json::to_value(full_build()).unwrap();
    sent["source"]["shadowField"] = json!(1);
    assert!(!errors(&validator("Build", true), &sent).is_empty());
}

/// The patterns the document states agree with the server's checks, value
/// by value: a value the document admits is accepted, and one it does not
/// is refused. The corpus holds the edges each rule has.
#[test]
fn the_documented_patterns_are_the_checks_the_server_applies() {
    use kiln_api::validate::*;
    type Check = fn(&str) -> Result<(), String>;
    let cases: [(&str, &str, Check, &[&str]); 8] = [
        (
            "name",
            NAME_PATTERN,
            |v| check_name(v),
            &[
                "hello", "team/api", "a.b", "a__b", "a--b", "a---b", "x1", "", "Hello", "-a", "a-",
                "a/", "/a", "a..b", "a._b", "a___b", "a b", "a:b", "a//b", "é",
            ],
        ),
        (
            "tag",
            TAG_PATTERN,
            |v| check_tag(v),
            &[
                "latest", "v1.2", "_x", "1", "", ".x", "-x", "a:b", "a/b", "a-b_c.d", "ü",
            ],
        ),
        (
            "build arg",
            VARIABLE_PATTERN,
            |v| check_build_arg(v),
            &["A", "_a1", "a_B", "", "1A", "A-B", "A B", "Ä"],
        ),
        (
            "secret name",
            VARIABLE_PATTERN,
            |v| check_secret_name(v),
            &["NPM_TOKEN", "_x", "", "9x", "x.y"],
        ),
        (
            "platform",
            PLATFORM_PATTERN,
            |v| check_platform(v),
            &[
                "linux/amd64",
                "linux/arm64/v8",
                "linux",
                "linux/",
                "/amd64",
                "Linux/amd64",
                "a/b/c/d",
            ],
        ),
        (
            "organization",
            ORG_PATTERN,
            |v| check_org_name(v),
            &[
                "default", "team-a", "a", "9", "a-b-c", "", "-a", "a-", "A", "a_b", "a.b", "a b",
                "é",
            ],
        ),
        (
            "credential host",
            CREDENTIAL_HOST_PATTERN,
            |v| check_credential_host("registryCredentials", v),
            &[
                "*",
                "registry.example.com",
                "127.0.0.1:5000",
                "[::1]:5000",
                "a-b",
                "",
                "**",
                "a*",
                "a/b",
                "a b",
                "user@host",
                "é",
            ],
        ),
        (
            "target",
            TARGET_PATTERN,
            |v| check_target(v),
            &["build", "stage-1", "a.b_c", "", "a b", "a/b"],
        ),
    ];
    let long_name = "a".repeat(129);
    let long_tag = "t".repeat(129);
    let long_arg = "A".repeat(129);
    let long_target = "s".repeat(129);
    let long_org = "o".repeat(65);
    let long_host = "h".repeat(256);
    let longest_org = "o".repeat(64);
    let extra: [(&str, &str); 7] = [
        ("organization", &long_org),
        ("organization", &longest_org),
        ("credential host", &long_host),
        ("name", &long_name),
        ("tag", &long_tag),
        ("build arg", &long_arg),
        ("target", &long_target),
    ];
    let matches = |pattern: &str, max_length: Option<usize>, value: &str| {
        let mut schema = json!({ "type": "string", "pattern": pattern });
        if let Some(max) = max_length {
            schema["maxLength"] = json!(max);
        }
        jsonschema::validator_for(&schema)
            .expect("the pattern compiles as ECMA-262")
            .is_valid(&json!(value))
    };
    for (what, pattern, check, corpus) in cases {
        let max_length = match what {
            "name" => Some(128),
            "credential host" => Some(255),
            _ => None,
        };
        let corpus = corpus
            .iter()
            .copied()
            .chain(extra.iter().filter(|(w, _)| *w == what).map(|(_, v)| *v));
        for value in corpus {
            assert_eq!(
                matches(pattern, max_length, value),
                check(value).is_ok(),
                "{what} {value:?}: the document and the server disagree"
            );
        }
    }
    for path in [
        "Dockerfile",
        "docker/Dockerfile.prod",
        ".",
        "./Dockerfile",
        "a..b",
        "..a",
        "a/..b",
        "",
        "..",
        "../Dockerfile",
        "a/../b",
        "a/..",
        "/etc/passwd",
        "a\0b",
    ] {
        assert_eq!(
            matches(CONTEXT_PATH_PATTERN, None, path),
            check_context_path("dockerfile", path).is_ok(),
            "path {path:?}: the document and the server disagree"
        );
    }
}

/// The limits the server enforces are the ones the document states.
#[test]
fn the_documented_limits_are_the_servers() {
    use kiln_api::validate::*;
    let document = document();
    let create = &document["components"]["schemas"]["CreateBuildRequest"]["properties"];
    let not_null = |field: &str| create[field]["oneOf"][0].clone();
    assert_eq!(not_null("tags")["maxItems"], json!(MAX_TAGS));
    assert_eq!(
        not_null("buildArgs")["maxProperties"],
        json!(MAX_BUILD_ARGS)
    );
    assert_eq!(not_null("secrets")["maxItems"], json!(MAX_SECRETS));

    let tags: Vec<String> = (0..=MAX_TAGS).map(|i| format!("t{i}")).collect();
    assert!(check_tags(&tags[..MAX_TAGS]).is_ok());
    let refused = check_tags(&tags).unwrap_err();
    assert!(refused.contains(&MAX_TAGS.to_string()), "{refused}");
    let many: BTreeMap<String, String> = (0..=MAX_BUILD_ARGS)
        .map(|i| (format!("A{i}"), "v".into()))
        .collect();
    let refused = check_build_args(many.iter()).unwrap_err();
    assert!(refused.contains(&MAX_BUILD_ARGS.to_string()), "{refused}");
    let big: BTreeMap<String, String> = (0..8)
        .map(|i| (format!("A{i}"), "v".repeat(MAX_BUILD_ARG_VALUE_BYTES)))
        .collect();
    let refused = check_build_args(big.iter()).unwrap_err();
    assert!(refused.contains("KiB"), "{refused}");

    let secrets = &document["components"]["schemas"]["SaveSecretsRequest"]["properties"];
    assert_eq!(
        secrets["buildSecrets"]["additionalProperties"]["oneOf"][0]["minLength"],
        json!(MIN_SECRET_CHARS)
    );
    assert!(check_secret_value("build secret X", "abc").is_err());
    assert!(check_secret_value("build secret X", "abcd").is_ok());
}

/// Every link names an operation of the document and a parameter that
/// operation has, taken from a field the answer's schema has.
#[test]
fn the_links_lead_to_operations_the_document_has() {
    let document = document();
    let mut operations = std::collections::BTreeMap::new();
    for (_, item) in document["paths"].as_object().unwrap() {
        for (_, operation) in item.as_object().unwrap() {
            if let Some(id) = operation["operationId"].as_str() {
                operations.insert(id.to_string(), operation.clone());
            }
        }
    }
    let mut links = 0;
    for (path, item) in document["paths"].as_object().unwrap() {
        for (_, operation) in item.as_object().unwrap() {
            for (status, response) in operation["responses"].as_object().into_iter().flatten() {
                let schema = response["content"]["application/json"]["schema"]["$ref"]
                    .as_str()
                    .and_then(|r| r.rsplit('/').next())
                    .map(str::to_string);
                for (_, link) in response["links"].as_object().into_iter().flatten() {
                    links += 1;
                    let target = &operations[link["operationId"].as_str().unwrap()];
                    for (parameter, value) in link["parameters"].as_object().unwrap() {
                        assert!(
                            target["parameters"]
                                .as_array()
                                .unwrap()
                                .iter()
                                .any(|p| p["name"] == *parameter),
                            "{path} {status}: {} has no parameter {parameter}",
                            link["operationId"]
                        );
                        let field = value
                            .as_str()
                            .unwrap()
                            .trim_start_matches("$response.body#/");
                        let schema = schema.as_deref().expect("a linked answer has a schema");
                        assert!(
                            document["components"]["schemas"][schema]["properties"][field]
                                .is_object(),
                            "{path} {status}: {schema} has no {field}"
                        );
                    }
                }
            }
        }
    }
    assert_eq!(
        links, 11,
        "builds to get, cancel and logs; contexts to get; projects to get, update, delete, build and rotate; webhooks to delete and deliveries"
    );
}
