//! The one way every call into a plugin goes, and the typed entry point
//! for each world's exports.

use std::path::Path;

use wasmtime::Store;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use crate::bindings;
use crate::capabilities::Capabilities;
use crate::runtime::{LoadedPlugin, PluginError, PluginRuntime, Pre};
use crate::sandbox::{PluginState, Preopens, STDIO_CAPTURE_BYTES};
use crate::world::World;

impl PluginRuntime {
    /// The one way every call into a plugin goes: a fresh store with the
    /// plugin's limits and preopens, the call itself (`body`), the plugin's
    /// stdout/stderr forwarded, and a trap turned into a failure that says
    /// what happened.
    async fn call<T>(
        &self,
        plugin: &LoadedPlugin,
        caps: Capabilities,
        preopens: &Preopens,
        body: impl AsyncFnOnce(&mut Store<PluginState>) -> wasmtime::Result<T>,
    ) -> Result<T, PluginError> {
        let stdio = MemoryOutputPipe::new(STDIO_CAPTURE_BYTES);
        let log = caps.log.clone();
        let mut store = self.new_store(plugin, caps, preopens, &stdio)?;
        let outcome = body(&mut store).await;
        Self::forward_stdio(log.as_ref(), &plugin.manifest.id, &stdio);
        outcome.map_err(|e| Self::explain(plugin, &store, e, &stdio))
    }

    /// Instantiate the plugin in a fresh sandbox and call nothing: what
    /// every call pays before its export runs, and proof that the component
    /// links and starts (`kiln plugin check`, benchmarks).
    pub async fn instantiate(&self, plugin: &LoadedPlugin) -> Result<(), PluginError> {
        self.call(
            plugin,
            Capabilities::for_plugin(plugin),
            &Preopens::none(),
            async |store| {
                match &plugin.pre {
                    Pre::Builder(pre) => {
                        pre.instantiate_async(&mut *store).await?;
                    }
                    Pre::Source(pre) => {
                        pre.instantiate_async(&mut *store).await?;
                    }
                    Pre::Store(pre) => {
                        pre.instantiate_async(&mut *store).await?;
                    }
                    Pre::Detector(pre) => {
                        pre.instantiate_async(&mut *store).await?;
                    }
                    Pre::Notifier(pre) => {
                        pre.instantiate_async(&mut *store).await?;
                    }
                    Pre::Attestor(pre) => {
                        pre.instantiate_async(&mut *store).await?;
                    }
                }
                Ok(())
            },
        )
        .await
    }

    /// Call a context source's `materialize`.
    pub async fn materialize(
        &self,
        plugin: &LoadedPlugin,
        caps: Capabilities,
        preopens: &Preopens,
        spec: &bindings::source::exports::kiln::plugin::source::SourceSpec,
    ) -> Result<
        Result<
            bindings::source::exports::kiln::plugin::source::ContextInfo,
            bindings::types::PluginError,
        >,
        PluginError,
    > {
        let Pre::Source(pre) = &plugin.pre else {
            return Err(wrong_world(plugin, World::ContextSource));
        };
        self.call(plugin, caps, preopens, async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance
                .kiln_plugin_source()
                .call_materialize(store, spec)
                .await
        })
        .await
    }

    /// Call a builder's `build`.
    pub async fn build(
        &self,
        plugin: &LoadedPlugin,
        caps: Capabilities,
        preopens: &Preopens,
        request: &bindings::builder::exports::kiln::plugin::build::BuildRequest,
    ) -> Result<
        Result<
            bindings::builder::exports::kiln::plugin::build::BuildOutput,
            bindings::types::PluginError,
        >,
        PluginError,
    > {
        let Pre::Builder(pre) = &plugin.pre else {
            return Err(wrong_world(plugin, World::Builder));
        };
        self.call(plugin, caps, preopens, async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance
                .kiln_plugin_build()
                .call_build(store, request)
                .await
        })
        .await
    }

    /// Call a detector's `detect` with `context_dir` preopened read-only.
    pub async fn detect(
        &self,
        plugin: &LoadedPlugin,
        caps: Capabilities,
        context_dir: &Path,
        request: &bindings::detector::exports::kiln::plugin::detect::DetectRequest,
    ) -> Result<
        Result<
            Vec<bindings::detector::exports::kiln::plugin::detect::Project>,
            bindings::types::PluginError,
        >,
        PluginError,
    > {
        let Pre::Detector(pre) = &plugin.pre else {
            return Err(wrong_world(plugin, World::Detector));
        };
        let preopens = Preopens {
            context: Some(context_dir.to_path_buf()),
            ..Preopens::none()
        };
        self.call(plugin, caps, &preopens, async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance
                .kiln_plugin_detect()
                .call_detect(store, request)
                .await
        })
        .await
    }

    /// Call a credential store, with `credentials_dir` (if any) mounted
    /// read-only at `/credentials`.
    pub async fn credentials(
        &self,
        plugin: &LoadedPlugin,
        caps: Capabilities,
        credentials_dir: Option<&Path>,
        call: CredentialCall<'_>,
    ) -> Result<Result<CredentialAnswer, bindings::types::PluginError>, PluginError> {
        let Pre::Store(pre) = &plugin.pre else {
            return Err(wrong_world(plugin, World::CredentialStore));
        };
        let preopens = Preopens {
            credentials: credentials_dir.map(Path::to_path_buf),
            rootfs: None,
            ..Preopens::none()
        };
        self.call(plugin, caps, &preopens, async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            let api = instance.kiln_plugin_credentials();
            Ok(match call {
                CredentialCall::Get { org, key } => api
                    .call_get(store, org, key)
                    .await?
                    .map(CredentialAnswer::Value),
                CredentialCall::Put { org, key, value } => api
                    .call_put(store, org, key, value)
                    .await?
                    .map(|()| CredentialAnswer::Done),
                CredentialCall::Delete { org, key } => api
                    .call_delete(store, org, key)
                    .await?
                    .map(CredentialAnswer::Deleted),
                CredentialCall::ListKeys { org } => api
                    .call_list_keys(store, org)
                    .await?
                    .map(CredentialAnswer::Keys),
            })
        })
        .await
    }
}

impl PluginRuntime {
    /// Call a notifier's `notify`: one delivery attempt of one event. It
    /// gets no preopen; its only way out is `wasi:http` to granted hosts.
    pub async fn notify(
        &self,
        plugin: &LoadedPlugin,
        caps: Capabilities,
        request: &bindings::notify::NotifyRequest,
    ) -> Result<Result<bindings::notify::Delivered, bindings::notify::NotifyError>, PluginError>
    {
        let Pre::Notifier(pre) = &plugin.pre else {
            return Err(wrong_world(plugin, World::Notifier));
        };
        self.call(plugin, caps, &Preopens::none(), async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance
                .kiln_plugin0_2_0_notify()
                .call_notify(store, request)
                .await
        })
        .await
    }
}

impl PluginRuntime {
    /// Call an attestor's `attest` on an image whose filesystem is the
    /// directory `rootfs`, preopened read-only at `/rootfs` (nothing else:
    /// no context, no network unless granted, no credential).
    pub async fn attest(
        &self,
        plugin: &LoadedPlugin,
        caps: Capabilities,
        rootfs: &Path,
        request: &bindings::attest::AttestRequest,
    ) -> Result<Result<bindings::attest::Attestation, bindings::types::PluginError>, PluginError>
    {
        let Pre::Attestor(pre) = &plugin.pre else {
            return Err(wrong_world(plugin, World::Attestor));
        };
        let preopens = Preopens {
            rootfs: Some(rootfs.to_path_buf()),
            ..Preopens::none()
        };
        self.call(plugin, caps, &preopens, async |store| {
            let instance = pre.instantiate_async(&mut *store).await?;
            instance
                .kiln_plugin0_3_0_attest()
                .call_attest(store, request)
                .await
        })
        .await
    }
}

/// A call for one world made on a plugin of another: says which is which.
fn wrong_world(plugin: &LoadedPlugin, needed: World) -> PluginError {
    PluginError::Invalid {
        id: plugin.manifest.id.clone(),
        message: format!(
            "implements the {} world; this call needs a {} plugin",
            plugin.world.wit_name(),
            needed.wit_name()
        ),
    }
}

/// One call of a credential store's `credentials` interface.
pub enum CredentialCall<'a> {
    Get {
        org: &'a str,
        key: &'a str,
    },
    Put {
        org: &'a str,
        key: &'a str,
        value: &'a [u8],
    },
    Delete {
        org: &'a str,
        key: &'a str,
    },
    ListKeys {
        org: &'a str,
    },
}

/// What a credential store answered.
pub enum CredentialAnswer {
    Value(Option<Vec<u8>>),
    Done,
    Deleted(bool),
    Keys(Vec<String>),
}
