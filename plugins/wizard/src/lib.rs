//! Kiln builder `wizard`: for a context without a Dockerfile (or
//! `builder: "wizard"`), detect the stack with [`kiln_stacks`]' ordered
//! rules, say in the log which files decided it, generate a Dockerfile and
//! `.dockerignore`, and build them with the host's BuildKit. The
//! `wizard-detect` detector answers the same question without building
//! (`POST /v1/wizard:detect`, `kiln init`).
//!
//! Base images come from the host (`host.base-images`, the operator's
//! `[wizard.base_images]`), so a deployment can use its own registry mirror.

use std::path::Path;

use kiln_sdk::builder::engine::{buildkit_build, BuildkitRequest};
use kiln_sdk::builder::{BuildOutput, BuildRequest, Builder, PluginError};
use kiln_stacks::{BaseImages, NOTHING_DETECTED};

struct Wizard;

impl Builder for Wizard {
    fn build(request: BuildRequest) -> Result<BuildOutput, PluginError> {
        let overrides: Vec<(String, String)> = request
            .host
            .base_images
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        let bases = BaseImages::with_overrides(&overrides);
        let found = kiln_stacks::detect_dir(Path::new("/context"), "", &bases)
            .ok_or_else(|| PluginError::ContextInvalid(NOTHING_DETECTED.into()))?;
        for reason in &found.reasons {
            kiln_sdk::log::info(&format!("wizard: {reason}"));
        }
        let (inline, ignore) = if found.has_dockerfile {
            (None, None)
        } else {
            for line in found.dockerfile.lines() {
                kiln_sdk::log::debug(&format!("wizard Dockerfile: {line}"));
            }
            (Some(found.dockerfile), Some(found.dockerignore))
        };
        let image = buildkit_build(&BuildkitRequest {
            dockerfile: "Dockerfile".into(),
            dockerfile_inline: inline,
            dockerignore_inline: ignore,
            tags: request.image_refs,
            build_args: request.build_args,
            target: request.target,
            platform: request.platform,
            no_cache: request.no_cache,
            secrets: request.secrets,
            // The host adds the build's own labels (`host.labels`) itself.
            labels: Vec::new(),
        })?;
        Ok(image.into())
    }
}

kiln_sdk::export_builder!(Wizard);
