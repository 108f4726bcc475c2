//! The `engine` interface: each function checks the plugin's permission
//! first, then the build's scope, then hands the request to the embedder's
//! [`Engine`](super::Engine). Time spent in the engine is given back to the
//! plugin's budget.

use std::time::Instant;

use wasmtime::component::Resource;

use super::{Capabilities, ContainerHandle, EngineLoan, HostError, ENGINE_REQUEST_BYTES};
use crate::bindings::engine;
use crate::sandbox::PluginState;

/// A container path for a bind mount: absolute, and nothing Docker's
/// `host:container:mode` syntax would misread.
fn mount_point(path: &str) -> bool {
    path.starts_with('/')
        && !path.contains(':')
        && !path.contains(',')
        && !path.split('/').any(|p| p == "..")
}

impl Capabilities {
    /// The engine, if this call was lent one.
    fn engine_loan(&self) -> Result<EngineLoan, HostError> {
        self.engine
            .clone()
            .ok_or_else(|| self.denied("the engine outside a build"))
    }
}

impl engine::Host for PluginState {
    async fn container_start(
        &mut self,
        request: engine::ContainerRunRequest,
    ) -> wasmtime::Result<Result<Resource<ContainerHandle>, HostError>> {
        let caps = &self.caps;
        if !caps.granted.engine.contains("container-run") {
            return Ok(Err(caps.denied("the engine permission `container-run`")));
        }
        if !caps.granted.may_run(&request.image) {
            return Ok(Err(caps.denied(&format!(
                "running the image `{}` (the images it may run: {:?})",
                request.image, caps.granted.images
            ))));
        }
        let loan = match caps.engine_loan() {
            Ok(loan) => loan,
            Err(denied) => return Ok(Err(denied)),
        };
        let mounts = [
            &request.context_mount,
            &request.registry_config_mount,
            &request.output_mount,
        ];
        if let Some(bad) = mounts.into_iter().flatten().find(|m| !mount_point(m)) {
            return Ok(Err(HostError::InvalidRequest(format!(
                "`{bad}` is not a usable mount point: give an absolute path without `:`, `,` or `..`"
            ))));
        }
        let started = Instant::now();
        let result = loan.engine.container_start(request).await;
        self.extend_deadline(started.elapsed());
        match result {
            Ok(running) => {
                let handle = ContainerHandle {
                    running,
                    waited: false,
                };
                Ok(Ok(self.table.push(handle)?))
            }
            Err(error) => Ok(Err(error)),
        }
    }

    async fn registry_manifest(
        &mut self,
        reference: String,
    ) -> wasmtime::Result<Result<engine::PushedImage, HostError>> {
        let caps = &self.caps;
        if !caps.granted.engine.contains("registry-manifest") {
            return Ok(Err(caps.denied("the engine permission `registry-manifest`")));
        }
        let loan = match caps.engine_loan() {
            Ok(loan) => loan,
            Err(denied) => return Ok(Err(denied)),
        };
        if !loan.allowed_refs.contains(&reference) {
            return Ok(Err(caps.denied(&format!(
                "reading `{reference}`: a build may read only its own references ({})",
                loan.allowed_refs.join(", ")
            ))));
        }
        let started = Instant::now();
        let result = loan.engine.registry_manifest(&reference).await;
        self.extend_deadline(started.elapsed());
        Ok(result)
    }

    async fn buildkit_build(
        &mut self,
        request: engine::BuildkitRequest,
    ) -> wasmtime::Result<Result<engine::ImageResult, HostError>> {
        let caps = &self.caps;
        if !caps.granted.engine.contains("buildkit-build") {
            return Ok(Err(caps.denied("the engine permission `buildkit-build`")));
        }
        let loan = match caps.engine_loan() {
            Ok(loan) => loan,
            Err(denied) => return Ok(Err(denied)),
        };
        if let Some(bad) = request.tags.iter().find(|t| !loan.allowed_refs.contains(t)) {
            return Ok(Err(caps.denied(&format!(
                "pushing `{bad}`: a build may only push its own references ({})",
                loan.allowed_refs.join(", ")
            ))));
        }
        let size = request.dockerfile.len()
            + request.dockerfile_inline.as_ref().map_or(0, String::len)
            + request.dockerignore_inline.as_ref().map_or(0, String::len)
            + request.tags.iter().map(String::len).sum::<usize>()
            + request
                .build_args
                .iter()
                .chain(&request.labels)
                .map(|kv| kv.key.len() + kv.value.len())
                .sum::<usize>();
        if size > ENGINE_REQUEST_BYTES {
            return Ok(Err(HostError::InvalidRequest(format!(
                "a {size}-byte engine request: one request may carry at most {ENGINE_REQUEST_BYTES} bytes"
            ))));
        }
        if !request.secrets.is_empty() && !caps.granted.secrets.contains("build") {
            return Ok(Err(
                caps.denied("build secrets (the permission `secrets = [\"build\"]`)")
            ));
        }
        if let Some(id) = request
            .secrets
            .iter()
            .find(|id| !loan.secret_ids.contains(*id))
        {
            return Ok(Err(caps.denied(&format!(
                "secret `{id}`: a build may mount only the secrets its request names ({})",
                loan.secret_ids
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ))));
        }
        let started = Instant::now();
        let result = loan.engine.buildkit_build(request).await;
        self.extend_deadline(started.elapsed());
        Ok(result)
    }
}

impl engine::HostContainer for PluginState {
    async fn read_output(
        &mut self,
        container: Resource<ContainerHandle>,
    ) -> wasmtime::Result<Option<Vec<String>>> {
        // The handle exists only if `container-start` was allowed.
        let handle = self.table.get_mut(&container)?;
        if handle.waited {
            return Ok(None);
        }
        let started = Instant::now();
        let lines = handle.running.read_output().await;
        self.extend_deadline(started.elapsed());
        Ok(lines)
    }

    async fn wait(
        &mut self,
        container: Resource<ContainerHandle>,
    ) -> wasmtime::Result<Result<engine::ContainerExit, HostError>> {
        let handle = self.table.get_mut(&container)?;
        if handle.waited {
            return Ok(Err(HostError::InvalidRequest(
                "wait was already called on this container".into(),
            )));
        }
        handle.waited = true;
        let started = Instant::now();
        let exit = handle.running.wait().await;
        self.extend_deadline(started.elapsed());
        Ok(exit)
    }

    async fn drop(&mut self, container: Resource<ContainerHandle>) -> wasmtime::Result<()> {
        // Dropping the running container stops and removes it.
        self.table.delete(container)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::mount_point;

    #[test]
    fn mount_points_are_absolute_and_unambiguous() {
        assert!(mount_point("/workspace") && mount_point("/kaniko/.docker"));
        for bad in ["workspace", "/a:/b", "/a,b", "/a/../etc", ""] {
            assert!(!mount_point(bad), "{bad}");
        }
    }
}
