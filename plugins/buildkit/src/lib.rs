//! Kiln builder `buildkit`: maps a build request onto the host's
//! `engine.buildkit-build`. The host runs the build, streams its progress
//! into the log, pushes every tag and measures the image; this plugin decides
//! what is asked for and checks the request first.

use kiln_sdk::builder::engine::{buildkit_build, BuildkitRequest};
use kiln_sdk::builder::{BuildOutput, BuildRequest, Builder, KeyValue, PluginError};

struct BuildKit;

impl Builder for BuildKit {
    fn build(request: BuildRequest) -> Result<BuildOutput, PluginError> {
        if request.image_refs.is_empty() {
            return Err(PluginError::InvalidInput(
                "nothing to push: the build has no image references".into(),
            ));
        }
        kiln_sdk::log::debug(&format!(
            "buildkit: building {} for {}",
            request.dockerfile,
            request.image_refs.join(", ")
        ));
        let limits = &request.limits;
        kiln_sdk::log::info(&format!(
            "profile {} ({} CPUs, {} MiB) is not enforced: BuildKit builds through Docker Engine's /build endpoint ignore memory and CPU limits",
            limits.profile,
            limits.nano_cpus as f64 / 1e9,
            limits.memory_bytes >> 20
        ));
        // The host adds the build's own labels (`host.labels`) itself.
        let result = buildkit_build(&BuildkitRequest {
            labels: vec![KeyValue {
                key: "dev.kiln.build-id".into(),
                value: request.build_id.clone(),
            }],
            ..BuildkitRequest::from(&request)
        })?;
        Ok(result.into())
    }
}

kiln_sdk::export_builder!(BuildKit);
