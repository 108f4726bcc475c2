//! Storage records into wire types: the one place the API's shape meets
//! the store's. A field added to a record stays private until it is added
//! here and to `kiln-api`.

use kiln_api as wire;

use crate::plugins::manifest::Permissions;
use crate::plugins::{LoadError, LoadedPlugin};
use crate::store::{
    BuildRecord, BuildSpec, ContextRecord, Failure, GitSource, LogLine, Metrics, Org,
    ProjectRecord, SourceSummary, WizardDetection,
};

/// A project as the API shows it; `webhook_url` is where its pushes go.
pub fn project(record: &ProjectRecord, webhook_url: String) -> wire::Project {
    wire::Project {
        project_id: record.project_id.clone(),
        name: record.name.clone(),
        git_source: record.git_source.clone(),
        dockerfile: record.dockerfile.clone(),
        builder: record.builder.clone(),
        profile: record.profile.clone(),
        build_args: record.build_args.clone(),
        secrets: record.secrets.clone(),
        secret_build_args: record.secret_build_args.clone(),
        tags: record.tags.clone(),
        branches: record.branches.clone(),
        tags_pattern: record.tags_pattern.clone(),
        paths: record.paths.clone(),
        auto_cancel_superseded: record.auto_cancel_superseded,
        poll_interval_secs: record.poll_interval_secs,
        default_branch: record.default_branch.clone(),
        latest_on_every_branch: record.latest_on_every_branch,
        signing: record.signing,
        webhook_url,
        webhook_secret: None,
        create_time: record.create_time,
        update_time: record.update_time,
    }
}

impl From<&BuildRecord> for wire::Build {
    fn from(record: &BuildRecord) -> Self {
        wire::Build {
            build_id: record.build_id.clone(),
            org: record.org.clone(),
            number: record.number,
            name: record.name.clone(),
            status: record.status,
            source: (&record.source).into(),
            request: (&record.request).into(),
            image_refs: record.image_refs.clone(),
            digest: record.digest.clone(),
            platforms: record.platform_images.clone(),
            metrics: record.metrics.as_ref().map(Into::into),
            failure: record.failure.as_ref().map(Into::into),
            profile_used: record.profile_used.clone(),
            peak_memory_bytes: record.peak_memory_bytes,
            attachments: record.attachments.clone(),
            attempts: record
                .attempts
                .iter()
                .map(|a| wire::BuildAttempt {
                    profile: a.profile.clone(),
                    engine: a.engine.clone(),
                    failure: (&a.failure).into(),
                    start_time: a.start_time,
                    finish_time: a.finish_time,
                })
                .collect(),
            engine: record.engine.clone(),
            cache_from: record.cache_from.clone(),
            wizard: record.wizard.as_ref().map(Into::into),
            project_id: record.project_id.clone(),
            trigger: record.trigger.clone(),
            create_time: record.create_time,
            start_time: record.start_time,
            finish_time: record.finish_time,
            log_removed_time: record.log_removed_time,
        }
    }
}

impl From<&BuildSpec> for wire::BuildSettings {
    fn from(spec: &BuildSpec) -> Self {
        wire::BuildSettings {
            dockerfile: spec.dockerfile.clone(),
            tags: spec.tags.clone(),
            build_args: spec.build_args.clone(),
            target: spec.target.clone(),
            platform: spec.platform.clone(),
            platforms: spec.platforms.clone(),
            no_cache: spec.no_cache,
            timeout_secs: spec.timeout_secs,
            builder: spec.builder.clone(),
            profile: spec.profile.clone(),
            secret_build_args: spec.secret_build_args.clone(),
            secrets: spec.secrets.clone(),
            context_dir: spec.context_dir.clone(),
        }
    }
}

impl From<&SourceSummary> for wire::Source {
    fn from(source: &SourceSummary) -> Self {
        wire::Source {
            kind: source.kind.clone(),
            size_bytes: source.size_bytes,
            format: source.format.clone(),
            context_id: source.context_id.clone(),
            url: source.url.clone(),
            git: source.git.as_ref().map(Into::into),
        }
    }
}

impl From<&GitSource> for wire::GitSource {
    fn from(git: &GitSource) -> Self {
        wire::GitSource {
            url: git.url.clone(),
            reference: git.reference.clone(),
            context_dir: git.context_dir.clone(),
            submodules: git.submodules,
            branch: git.branch.clone(),
            commit: git.commit.clone(),
            reference_kind: git.reference_kind,
            full_ref: git.full_ref.clone(),
        }
    }
}

impl From<&Metrics> for wire::Metrics {
    fn from(metrics: &Metrics) -> Self {
        wire::Metrics {
            duration_ms: metrics.duration_ms,
            image_size_bytes: metrics.image_size_bytes,
            layer_count: metrics.layer_count,
            cache_used: metrics.cache_used,
            cached_steps: metrics.cached_steps,
            total_steps: metrics.total_steps,
            phases: metrics.phases.map(|p| wire::Phases {
                queued_ms: p.queued_ms,
                context_ms: p.context_ms,
                build_ms: p.build_ms,
                push_ms: p.push_ms,
            }),
        }
    }
}

impl From<&Failure> for wire::Failure {
    fn from(failure: &Failure) -> Self {
        wire::Failure {
            reason: failure.reason,
            message: failure.message.clone(),
            hint: failure.hint.clone(),
            exit_code: failure.exit_code,
        }
    }
}

impl From<&WizardDetection> for wire::WizardDetection {
    fn from(wizard: &WizardDetection) -> Self {
        wire::WizardDetection {
            stack: wizard.stack.clone(),
            tool: wizard.tool.clone(),
            reasons: wizard.reasons.clone(),
            generated: wizard.generated,
            port: wizard.port,
        }
    }
}

impl From<&LogLine> for wire::LogLine {
    fn from(line: &LogLine) -> Self {
        wire::LogLine {
            seq: line.seq,
            time: line.time,
            stream: line.stream.clone(),
            line: line.line.clone(),
        }
    }
}

impl From<&ContextRecord> for wire::UploadedContext {
    fn from(context: &ContextRecord) -> Self {
        wire::UploadedContext {
            context_id: context.context_id.clone(),
            sha256: context.sha256.clone(),
            size_bytes: context.size_bytes,
            format: context.format.clone(),
            create_time: context.create_time,
        }
    }
}

impl From<&Org> for wire::Org {
    fn from(org: &Org) -> Self {
        wire::Org {
            name: org.name.clone(),
            create_time: org.create_time,
            registry: org.registry.clone(),
        }
    }
}

// The runtime's types and the wire types live in two other crates, so
// these are functions rather than `From` impls.

/// A plugin's permissions as the API shows them.
pub fn permissions(p: &Permissions) -> wire::Permissions {
    {
        wire::Permissions {
            engine: p.engine.clone(),
            git: p.git.clone(),
            http: p.http.clone(),
            secrets: p.secrets.clone(),
            env: p.env.clone(),
            images: p.images.clone(),
        }
    }
}

/// A loaded plugin as the API shows it.
pub fn plugin(p: &LoadedPlugin) -> wire::PluginView {
    {
        wire::PluginView {
            id: p.manifest.id.clone(),
            version: p.manifest.version.clone(),
            api: p.manifest.api.clone(),
            description: p.manifest.description.clone(),
            authors: p.manifest.authors.clone(),
            origin: p.origin.clone(),
            sha256: p.sha256.clone(),
            world: format!("{:?}", p.world),
            kinds: wire::PluginKinds {
                context_source: p.manifest.kinds.context_source.clone(),
                builder: p.manifest.kinds.builder.clone(),
            },
            asked_permissions: permissions(&p.manifest.permissions),
            granted_permissions: permissions(&p.granted),
            limits: wire::PluginLimits {
                memory_mib: p.limits.memory_mib,
                time_secs: p.limits.time_secs,
            },
        }
    }
}

/// A refused plugin as the API shows it.
pub fn load_error(e: &LoadError) -> wire::PluginLoadError {
    {
        wire::PluginLoadError {
            origin: e.origin.clone(),
            plugin_id: e.plugin_id.clone(),
            message: e.message.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The view serializes every field the record has except the store's
    /// own bookkeeping (`seq`), under the same names: the API kept its shape
    /// when records stopped being the API.
    #[test]
    fn a_build_view_matches_the_record_but_for_store_bookkeeping() {
        let record = BuildRecord {
            build_id: "b1".into(),
            org: "acme".into(),
            number: 3,
            name: "hello".into(),
            status: wire::BuildStatus::Failed,
            source: SourceSummary {
                kind: "git".into(),
                size_bytes: Some(10),
                format: None,
                context_id: None,
                url: None,
                git: Some(GitSource {
                    url: "https://example.com/a.git".into(),
                    reference: "main".into(),
                    commit: Some("0".repeat(40)),
                    reference_kind: Some(wire::RefKind::Branch),
                    ..Default::default()
                }),
            },
            request: BuildSpec {
                dockerfile: "Dockerfile".into(),
                tags: vec!["v1".into()],
                builder: "buildkit".into(),
                secrets: vec!["NPM".into()],
                ..Default::default()
            },
            image_refs: vec!["r/acme/hello:v1".into()],
            digest: Some("sha256:00".into()),
            platform_images: Vec::new(),
            metrics: Some(Metrics {
                duration_ms: 5,
                cached_steps: 1,
                total_steps: 2,
                ..Default::default()
            }),
            failure: Some(Failure {
                reason: wire::FailureReason::RunFailed,
                message: "m".into(),
                hint: "h".into(),
                exit_code: Some(7),
            }),
            wizard: Some(WizardDetection {
                stack: "shell".into(),
                reasons: vec!["start.sh".into()],
                generated: true,
                ..Default::default()
            }),
            create_time: chrono::Utc::now(),
            start_time: Some(chrono::Utc::now()),
            finish_time: None,
            seq: 42,
            log_removed_time: Some(chrono::Utc::now()),
            project_id: Some("p1".into()),
            trigger: Some(wire::Trigger {
                kind: wire::TriggerKind::Webhook,
                delivery_id: Some("d1".into()),
                pusher: Some("ada".into()),
                commit_message: Some("fix".into()),
            }),
            registry: None,
            profile_used: None,
            attempts: Vec::new(),
            engine: Some("builder-2".into()),
            cache_from: Vec::new(),
            peak_memory_bytes: None,
            attachments: vec![wire::Attachment {
                kind: "signature".into(),
                reference: "127.0.0.1:5000/acme/app:sha256-0123.sig".into(),
                digest: "sha256:4567".into(),
            }],
        };
        let mut stored = serde_json::to_value(&record).unwrap();
        stored.as_object_mut().unwrap().remove("seq");
        let served = serde_json::to_value(wire::Build::from(&record)).unwrap();
        assert_eq!(served, stored);
        let back: wire::Build = serde_json::from_value(served).unwrap();
        assert_eq!(back, wire::Build::from(&record));
    }
}
