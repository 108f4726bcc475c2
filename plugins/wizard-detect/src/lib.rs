//! Kiln detector `wizard-detect`: [`kiln_stacks`]' detection of
//! `/context/<path>` (and, for monorepos, of each buildable sub-project),
//! for `POST /v1/wizard:detect`, `kiln init` and the build record of
//! wizard builds.

use std::path::Path;

use kiln_sdk::detector::{DetectRequest, Detector, PluginError, Project};
use kiln_stacks::BaseImages;

struct WizardDetect;

impl Detector for WizardDetect {
    fn detect(request: DetectRequest) -> Result<Vec<Project>, PluginError> {
        let overrides: Vec<(String, String)> = request
            .base_images
            .iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect();
        let bases = BaseImages::with_overrides(&overrides);
        let found = kiln_stacks::detect(
            Path::new("/context"),
            &request.path,
            request.monorepo,
            &bases,
        )
        .map_err(PluginError::InvalidInput)?;
        Ok(found
            .into_iter()
            .map(|d| Project {
                path: d.path,
                stack: d.stack,
                tool: d.variant,
                reasons: d.reasons,
                has_dockerfile: d.has_dockerfile,
                dockerfile: d.dockerfile,
                dockerignore: d.dockerignore,
                port: d.port,
            })
            .collect())
    }
}

kiln_sdk::export_detector!(WizardDetect);
