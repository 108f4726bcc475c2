//! `kiln-sdk`: write Kiln plugins in Rust.
//!
//! A Kiln plugin is a WebAssembly component built with
//! `cargo build --release --target wasm32-wasip2`. It implements exactly one
//! *world* of the `kiln:plugin` contract (the WIT files shipped in `wit/`):
//!
//! | world | enable feature | implement | export with |
//! |---|---|---|---|
//! | context source | `context-source` | [`source::ContextSource`] | [`export_context_source!`] |
//! | builder | `builder` | [`builder::Builder`] | [`export_builder!`] |
//! | credential store | `credential-store` | [`credentials::CredentialStore`] | [`export_credential_store!`] |
//! | detector (what a directory holds, the Dockerfile it would get) | `detector` | [`detector::Detector`] | [`export_detector!`] |
//! | notifier (contract 0.2.0: tell someone a build finished) | `notifier` | [`notifier::Notifier`] | [`export_notifier!`] |
//! | attestor (contract 0.3.0: say what is in a pushed image, e.g. an SBOM) | `attestor` | [`attestor::Attestor`] | [`export_attestor!`] |
//!
//! Enable one world's feature per plugin crate: each world's bindings carry
//! that world's component type, and a component must export everything its
//! world promises. Feature `unpack` adds [`unpack`] (zip, tar and tar.gz
//! into `/context` with escape, link and bomb checks) for archive sources.
//!
//! Test a plugin from `cargo test` with the `kiln-plugin-test` crate: the
//! real plugin runtime with fake host capabilities that record each call
//! (`kiln plugin new` writes such a test).
//!
//! Every world may write to the build log with the [`log`] helpers. Files
//! reach a plugin only as directories the host preopens: a context source
//! reads its staged input under `/input` and writes the context into
//! `/context`; a builder sees `/context` read-only. Nothing else of the host
//! is visible, and no credential ever crosses into a plugin: a builder names
//! secrets by id and the host resolves them inside its own engine calls.
//!
//! ```no_run
//! use kiln_sdk::builder::{Builder, BuildRequest, BuildOutput, PluginError};
//!
//! struct Echo;
//!
//! impl Builder for Echo {
//!     fn build(request: BuildRequest) -> Result<BuildOutput, PluginError> {
//!         kiln_sdk::log::info(&format!("building {}", request.build_id));
//!         Err(PluginError::InvalidInput("this builder builds nothing".into()))
//!     }
//! }
//!
//! kiln_sdk::export_builder!(Echo);
//! ```

//! ## Versions
//!
//! The contract is one semver-tagged WIT package. A host lists the contract
//! versions it loads, and keeps loading plugins built against every one of
//! them; a released version's WIT is frozen (kept beside the live one) and
//! only ever gains a successor.
//!
//! | `kiln:plugin` | `kiln-sdk` | hosts that load it | status |
//! |---|---|---|---|
//! | 0.3.0 | 0.1.x (feature `attestor`) | kiln 0.1.x since the attestor world | current: 0.2.0's worlds unchanged plus `attestor` (`wit/0.3.0`) |
//! | 0.2.0 | 0.1.x (feature `notifier`) | kiln 0.1.x since the notifier world | 0.1.0's worlds unchanged plus `notifier` (`wit/0.2.0`) |
//! | 0.1.0 | 0.1.x | kiln 0.1.x | frozen (`wit/0.1.0`; a compatibility fixture built from it runs in every host) |
//!
//! Policy: adding a function, a record field or a world is a new minor
//! version of the contract, served by the host side by side with the
//! versions before it (0.2.0 added a world: its other worlds *are* 0.1.0's,
//! so what was built against 0.1.0 keeps its identity); removing or changing anything a released version has is a new
//! major version. A plugin states the version it was built against in its
//! manifest (`api = "0.1.0"`); the host refuses versions it does not list.
//!
//! ## Secrets
//!
//! Builders never receive secret values: they name secrets by id and the
//! host resolves them inside its own engine calls. Credential stores do
//! handle values, and receive and return them as [`Secret`]s, which keep
//! them out of logs and `Debug` output.

#![deny(missing_docs)]

#[cfg(not(any(
    feature = "builder",
    feature = "context-source",
    feature = "credential-store",
    feature = "detector",
    feature = "notifier",
    feature = "attestor"
)))]
compile_error!(
    "kiln-sdk: enable the feature of the world your plugin implements: \
     `builder`, `context-source`, `credential-store`, `detector`, `notifier` or `attestor`"
);

/// Generated bindings, one module per world. Not a stable API: use the
/// re-exports in [`builder`], [`source`] and [`credentials`].
#[doc(hidden)]
pub mod bindings {
    /// Bindings for the `builder` world.
    #[cfg(feature = "builder")]
    #[allow(missing_docs)]
    pub mod builder {
        wit_bindgen::generate!({
            path: "wit/0.1.0",
            world: "kiln:plugin/builder@0.1.0",
            pub_export_macro: true,
            export_macro_name: "__export_builder_raw",
            default_bindings_module: "kiln_sdk::bindings::builder",
            generate_all,
        });
    }

    /// Bindings for the `context-source` world.
    #[cfg(feature = "context-source")]
    #[allow(missing_docs)]
    pub mod context_source {
        wit_bindgen::generate!({
            path: "wit/0.1.0",
            world: "kiln:plugin/context-source@0.1.0",
            pub_export_macro: true,
            export_macro_name: "__export_context_source_raw",
            default_bindings_module: "kiln_sdk::bindings::context_source",
            generate_all,
        });
    }

    /// Bindings for the `detector` world.
    #[cfg(feature = "detector")]
    #[allow(missing_docs)]
    pub mod detector {
        wit_bindgen::generate!({
            path: "wit/0.1.0",
            world: "kiln:plugin/detector@0.1.0",
            pub_export_macro: true,
            export_macro_name: "__export_detector_raw",
            default_bindings_module: "kiln_sdk::bindings::detector",
            generate_all,
        });
    }

    /// Bindings for the `credential-store` world.
    #[cfg(feature = "credential-store")]
    #[allow(missing_docs)]
    pub mod credential_store {
        wit_bindgen::generate!({
            path: "wit/0.1.0",
            world: "kiln:plugin/credential-store@0.1.0",
            pub_export_macro: true,
            export_macro_name: "__export_credential_store_raw",
            default_bindings_module: "kiln_sdk::bindings::credential_store",
            generate_all,
        });
    }

    /// Bindings for the `notifier` world (contract 0.2.0).
    #[cfg(feature = "notifier")]
    #[allow(missing_docs)]
    pub mod notifier {
        wit_bindgen::generate!({
            path: "wit/0.2.0",
            world: "kiln:plugin/notifier@0.2.0",
            pub_export_macro: true,
            export_macro_name: "__export_notifier_raw",
            default_bindings_module: "kiln_sdk::bindings::notifier",
            generate_all,
        });
    }

    /// Bindings for the `attestor` world (contract 0.3.0).
    #[cfg(feature = "attestor")]
    #[allow(missing_docs)]
    pub mod attestor {
        wit_bindgen::generate!({
            path: "wit/0.3.0",
            world: "kiln:plugin/attestor@0.3.0",
            pub_export_macro: true,
            export_macro_name: "__export_attestor_raw",
            default_bindings_module: "kiln_sdk::bindings::attestor",
            generate_all,
        });
    }

    // Every world imports the same `log` interface; the helpers use whichever
    // world is compiled in.
    #[cfg(all(
        not(feature = "builder"),
        not(feature = "context-source"),
        not(feature = "credential-store"),
        not(feature = "detector"),
        not(feature = "notifier"),
        feature = "attestor"
    ))]
    pub(crate) use attestor::kiln::plugin0_1_0::log as log_import;
    #[cfg(feature = "builder")]
    pub(crate) use builder::kiln::plugin::log as log_import;
    #[cfg(all(not(feature = "builder"), feature = "context-source"))]
    pub(crate) use context_source::kiln::plugin::log as log_import;
    #[cfg(all(
        not(feature = "builder"),
        not(feature = "context-source"),
        feature = "credential-store"
    ))]
    pub(crate) use credential_store::kiln::plugin::log as log_import;
    #[cfg(all(
        not(feature = "builder"),
        not(feature = "context-source"),
        not(feature = "credential-store"),
        feature = "detector"
    ))]
    pub(crate) use detector::kiln::plugin::log as log_import;
    #[cfg(all(
        not(feature = "builder"),
        not(feature = "context-source"),
        not(feature = "credential-store"),
        not(feature = "detector"),
        feature = "notifier"
    ))]
    pub(crate) use notifier::kiln::plugin0_1_0::log as log_import;
}

/// A secret value (a token, a password, a credential store's value) whose
/// `Debug` and `Display` never show it. The signatures that carry secrets
/// take and return it, so a stray `{:?}` or log line cannot leak one.
///
/// ```
/// let token = kiln_sdk::Secret::new(String::from("s3cr3t"));
/// assert_eq!(format!("{token:?}"), "Secret(***)");
/// assert_eq!(format!("{token}"), "***");
/// assert_eq!(token.expose(), "s3cr3t");
/// let bytes: kiln_sdk::Secret<Vec<u8>> = kiln_sdk::Secret::new(b"s3cr3t".to_vec());
/// assert_eq!(bytes.into_inner(), b"s3cr3t");
/// ```
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret<T = String>(T);

impl<T> Secret<T> {
    /// Wrap a value.
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The value itself: the one way to read it, easy to find in review.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwrap the value (to hand it back to the host).
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T> std::fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<T> std::fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Lines into the current build's log. The host masks secret values and caps
/// how much one plugin call may write.
pub mod log {
    use crate::bindings::log_import::{output as write_output, write, Level};

    /// Write a line of the build's own output (a build tool's progress as
    /// the plugin renders it): shown as build output, not under the
    /// plugin's name.
    pub fn output(line: &str) {
        write_output(line)
    }

    /// Write a debug line.
    pub fn debug(line: &str) {
        write(Level::Debug, line)
    }
    /// Write an informational line.
    pub fn info(line: &str) {
        write(Level::Info, line)
    }
    /// Write a warning.
    pub fn warn(line: &str) {
        write(Level::Warn, line)
    }
    /// Write an error line.
    pub fn error(line: &str) {
        write(Level::Error, line)
    }
}

/// The builder world: turn the context in `/context` into pushed images.
#[cfg(feature = "builder")]
pub mod builder {
    pub use crate::bindings::builder::exports::kiln::plugin::build::{BuildOutput, BuildRequest};
    pub use crate::bindings::builder::kiln::plugin::types::{
        EngineFailure, FailureReason, HostError, HostFacts, KeyValue, PluginError, ResourceLimits,
    };

    /// The host's container engine. Every call is checked against the
    /// plugin's granted permissions before it does anything.
    pub mod engine {
        use super::HostError;
        pub use crate::bindings::builder::kiln::plugin::engine::{
            buildkit_build, container_start, registry_manifest, BuildkitRequest, Container,
            ContainerExit, ContainerRunRequest, ImageResult, PushedImage,
        };

        /// Run a container to its end, its output going into the build log
        /// line by line as it comes (unrendered; a builder that renders its
        /// tool's output reads [`Container::read_output`] itself).
        pub fn container_run(request: &ContainerRunRequest) -> Result<ContainerExit, HostError> {
            let container = container_start(request)?;
            while let Some(lines) = container.read_output() {
                for line in lines {
                    crate::log::output(&line);
                }
            }
            container.wait()
        }
    }

    /// Implement this and call [`export_builder!`](crate::export_builder).
    ///
    /// A complete builder that builds the context's Dockerfile with the
    /// host's BuildKit engine (its manifest must ask for
    /// `engine = ["buildkit-build"]`):
    ///
    /// ```no_run
    /// use kiln_sdk::builder::engine::{buildkit_build, BuildkitRequest};
    /// use kiln_sdk::builder::{BuildOutput, BuildRequest, Builder, PluginError};
    ///
    /// struct Plain;
    ///
    /// impl Builder for Plain {
    ///     fn build(request: BuildRequest) -> Result<BuildOutput, PluginError> {
    ///         // The request as asked; change fields to build differently.
    ///         let image = buildkit_build(&BuildkitRequest::from(&request))?;
    ///         Ok(image.into())
    ///     }
    /// }
    ///
    /// kiln_sdk::export_builder!(Plain);
    /// ```
    pub trait Builder {
        /// Build the context in `/context` as asked, and push the images.
        fn build(request: BuildRequest) -> Result<BuildOutput, PluginError>;
    }

    impl From<EngineFailure> for PluginError {
        fn from(failure: EngineFailure) -> Self {
            PluginError::Engine(failure)
        }
    }

    /// A host refusal or engine failure, relayed as the build's error
    /// (`?` on an engine call does this).
    impl From<HostError> for PluginError {
        fn from(error: HostError) -> Self {
            match error {
                HostError::Denied(message) => PluginError::Denied(message),
                HostError::InvalidRequest(message) => {
                    PluginError::Internal(format!("the host refused the request: {message}"))
                }
                HostError::Engine(failure) => PluginError::Engine(failure),
            }
        }
    }

    /// The engine request that builds exactly what the build asked for:
    /// its Dockerfile, tags, build args, target, platform, cache setting and
    /// secrets, with nothing generated and no extra labels.
    impl From<&BuildRequest> for engine::BuildkitRequest {
        fn from(request: &BuildRequest) -> Self {
            engine::BuildkitRequest {
                dockerfile: request.dockerfile.clone(),
                dockerfile_inline: None,
                dockerignore_inline: None,
                tags: request.image_refs.clone(),
                build_args: request.build_args.clone(),
                target: request.target.clone(),
                platform: request.platform.clone(),
                no_cache: request.no_cache,
                secrets: request.secrets.clone(),
                labels: Vec::new(),
            }
        }
    }

    /// What the engine built is what a builder usually reports.
    impl From<engine::ImageResult> for BuildOutput {
        fn from(image: engine::ImageResult) -> Self {
            BuildOutput {
                digest: image.digest,
                image_refs: image.image_refs,
                size_bytes: image.size_bytes,
                layer_count: image.layer_count,
                cached_steps: image.cached_steps,
                total_steps: image.total_steps,
            }
        }
    }
}

/// The context-source world: fill `/context` from a source.
#[cfg(feature = "context-source")]
pub mod source {
    pub use crate::bindings::context_source::exports::kiln::plugin::source::{
        ContextInfo, FileMode, SourceSpec, Symlink,
    };
    pub use crate::bindings::context_source::kiln::plugin::types::{KeyValue, PluginError};

    /// Git checkouts by the host: it fetches (shallow, through its mirror
    /// cache, with the organization's credentials) and writes the commit's
    /// tree into `/context`. The manifest must ask for the hosts
    /// (`git = ["github.com"]`, `"*"` for any) and the operator grant them.
    pub mod git {
        pub use crate::bindings::context_source::kiln::plugin::git::{
            checkout, CheckoutRequest, CheckoutResult, GitError, GitFailure, GitFailureReason,
            RefKind,
        };
        use crate::source::PluginError;

        /// A checkout that did not happen, relayed as the source's error
        /// (`?` on `checkout` does this): a refused host is `denied`, an
        /// unusable tree or missing directory `context-invalid`, anything
        /// else (a wrong URL or reference, failed authentication) the
        /// request's to fix.
        impl From<GitError> for PluginError {
            fn from(error: GitError) -> Self {
                match error {
                    GitError::Denied(message) => PluginError::Denied(message),
                    GitError::Failed(failure) => match failure.reason {
                        GitFailureReason::ContextInvalid | GitFailureReason::ContextDirMissing => {
                            PluginError::ContextInvalid(failure.message)
                        }
                        _ => PluginError::InvalidInput(failure.message),
                    },
                }
            }
        }
    }

    /// Implement this and call [`export_context_source!`](crate::export_context_source).
    ///
    /// A complete context source for `contextUrl: "hello://anything"` that
    /// writes a one-line Dockerfile:
    ///
    /// ```no_run
    /// use kiln_sdk::source::{ContextInfo, ContextSource, PluginError, SourceSpec};
    ///
    /// struct Hello;
    ///
    /// impl ContextSource for Hello {
    ///     fn materialize(_spec: SourceSpec) -> Result<ContextInfo, PluginError> {
    ///         let text = "FROM scratch\n";
    ///         std::fs::write("/context/Dockerfile", text)
    ///             .map_err(|e| PluginError::Internal(e.to_string()))?;
    ///         Ok(ContextInfo {
    ///             files: 1,
    ///             bytes: text.len() as u64,
    ///             file_modes: Vec::new(),
    ///             symlinks: Vec::new(),
    ///             summary: "wrote a Dockerfile".into(),
    ///         })
    ///     }
    /// }
    ///
    /// kiln_sdk::export_context_source!(Hello);
    /// ```
    pub trait ContextSource {
        /// Fill the `/context` directory from the source described by `spec`.
        fn materialize(spec: SourceSpec) -> Result<ContextInfo, PluginError>;
    }
}

/// The credential-store world: where an organization's secrets live.
#[cfg(feature = "credential-store")]
pub mod credentials {
    pub use crate::bindings::credential_store::kiln::plugin::types::PluginError;
    pub use crate::Secret;

    /// The refusal of a read-only store.
    fn read_only(org: &str) -> PluginError {
        PluginError::Denied(format!(
            "this credential store is read-only: organization {org}'s credentials are changed where the store reads them from"
        ))
    }

    /// Implement this and call [`export_credential_store!`](crate::export_credential_store).
    /// A read-only store implements [`get`](Self::get) and
    /// [`list_keys`](Self::list_keys) only.
    ///
    /// A complete store that serves read-only credentials from a file the
    /// host mounts read-only at `/credentials` (one `org/key=value` per line;
    /// the host asks for keys such as `registry/HOST`, `git/HOST`, `build/NAME`):
    ///
    /// ```no_run
    /// use kiln_sdk::credentials::{CredentialStore, PluginError, Secret};
    ///
    /// struct FileStore;
    ///
    /// fn read_all() -> Result<Vec<(String, String, Vec<u8>)>, PluginError> {
    ///     let text = std::fs::read_to_string("/credentials/credentials")
    ///         .map_err(|e| PluginError::Internal(format!("cannot read the credentials file: {e}")))?;
    ///     Ok(text
    ///         .lines()
    ///         .filter_map(|line| line.split_once('='))
    ///         .filter_map(|(slot, value)| {
    ///             let (org, key) = slot.split_once('/')?;
    ///             Some((org.to_string(), key.to_string(), value.as_bytes().to_vec()))
    ///         })
    ///         .collect())
    /// }
    ///
    /// impl CredentialStore for FileStore {
    ///     fn get(org: String, key: String) -> Result<Option<Secret<Vec<u8>>>, PluginError> {
    ///         Ok(read_all()?
    ///             .into_iter()
    ///             .find(|(o, k, _)| *o == org && *k == key)
    ///             .map(|(_, _, value)| Secret::new(value)))
    ///     }
    ///     fn list_keys(org: String) -> Result<Vec<String>, PluginError> {
    ///         Ok(read_all()?.into_iter().filter(|(o, _, _)| *o == org).map(|(_, k, _)| k).collect())
    ///     }
    /// }
    ///
    /// kiln_sdk::export_credential_store!(FileStore);
    /// ```
    pub trait CredentialStore {
        /// The value stored under `key` for `org`, if any.
        fn get(org: String, key: String) -> Result<Option<Secret<Vec<u8>>>, PluginError>;
        /// Store `value` under `key` for `org`, replacing any old value.
        /// By default the store is read-only and says so.
        fn put(org: String, key: String, value: Secret<Vec<u8>>) -> Result<(), PluginError> {
            let _ = (key, value);
            Err(read_only(&org))
        }
        /// Remove `key`; true when it existed. By default the store is
        /// read-only and says so.
        fn delete(org: String, key: String) -> Result<bool, PluginError> {
            let _ = key;
            Err(read_only(&org))
        }
        /// The keys stored for `org`.
        fn list_keys(org: String) -> Result<Vec<String>, PluginError>;
    }
}

#[cfg(feature = "unpack")]
pub mod unpack;

/// The detector world: say what a directory holds and the Dockerfile it
/// would get, without building (the Dockerfile wizard's detection).
#[cfg(feature = "detector")]
pub mod detector {
    pub use crate::bindings::detector::exports::kiln::plugin::detect::{DetectRequest, Project};
    pub use crate::bindings::detector::kiln::plugin::types::{KeyValue, PluginError};

    /// Implement this and call [`export_detector!`](crate::export_detector).
    pub trait Detector {
        /// What `/context/<path>` holds and what it would get, no build.
        fn detect(request: DetectRequest) -> Result<Vec<Project>, PluginError>;
    }
}

/// The notifier world (contract 0.2.0): tell a team or a system that a
/// build finished. The host calls [`Notifier::notify`](notifier::Notifier::notify)
/// once per delivery attempt; the plugin reaches its receiver over
/// `wasi:http` (only hosts the operator granted it) and says whether
/// another attempt could help.
#[cfg(feature = "notifier")]
pub mod notifier {
    pub use crate::bindings::notifier::exports::kiln::plugin0_2_0::notify::{
        BuildEvent, Delivered, NotifyError, NotifyRequest,
    };
    pub use crate::bindings::notifier::kiln::plugin0_1_0::types::KeyValue;

    /// Implement this and call [`export_notifier!`](crate::export_notifier).
    pub trait Notifier {
        /// Deliver one event. `Err(NotifyError::Retry)` asks the host to
        /// try again later (with backoff, within its retry window);
        /// `Err(NotifyError::GiveUp)` ends the delivery as failed.
        fn notify(request: NotifyRequest) -> Result<Delivered, NotifyError>;
    }
}

/// Export a [`notifier::Notifier`] implementation as this component's notifier.
#[cfg(feature = "notifier")]
#[macro_export]
macro_rules! export_notifier {
    ($plugin:ident) => {
        // In a host build nothing calls the plugin (there is no export);
        // this keeps its type in use so the crate's `cargo test` and
        // `clippy` stay quiet about it.
        #[cfg(not(target_family = "wasm"))]
        #[doc(hidden)]
        pub fn __kiln_export_anchor() {
            let _ = <$plugin as $crate::notifier::Notifier>::notify;
        }
        const _: () = {
            #[allow(dead_code)]
            struct __KilnExport;
            impl $crate::bindings::notifier::exports::kiln::plugin0_2_0::notify::Guest
                for __KilnExport
            {
                fn notify(
                    request: $crate::notifier::NotifyRequest,
                ) -> ::core::result::Result<
                    $crate::notifier::Delivered,
                    $crate::notifier::NotifyError,
                > {
                    <$plugin as $crate::notifier::Notifier>::notify(request)
                }
            }
            // Only a component exports: a host build of the plugin crate
            // (its `cargo test`) links as a native library, where the
            // contract's export names are not valid symbols.
            #[cfg(target_family = "wasm")]
            $crate::bindings::notifier::__export_notifier_raw!(
                __KilnExport with_types_in $crate::bindings::notifier
            );
        };
    };
}

/// The attestor world (contract 0.3.0): say what is in a pushed image.
/// The host calls [`Attestor::attest`](attestor::Attestor::attest) once per
/// pushed image with its filesystem read-only under
/// [`AttestRequest::rootfs`](attestor::AttestRequest) (`/rootfs`), and signs
/// and attaches the answer (an in-toto predicate: an SPDX or CycloneDX SBOM)
/// beside the image.
#[cfg(feature = "attestor")]
pub mod attestor {
    pub use crate::bindings::attestor::exports::kiln::plugin0_3_0::attest::{
        AttestRequest, Attestation, Image,
    };
    pub use crate::bindings::attestor::kiln::plugin0_1_0::types::{KeyValue, PluginError};

    /// Implement this and call [`export_attestor!`](crate::export_attestor).
    pub trait Attestor {
        /// Read the image's filesystem and say what it holds.
        fn attest(request: AttestRequest) -> Result<Attestation, PluginError>;
    }
}

/// Export an [`attestor::Attestor`] implementation as this component's attestor.
#[cfg(feature = "attestor")]
#[macro_export]
macro_rules! export_attestor {
    ($plugin:ident) => {
        // In a host build nothing calls the plugin (there is no export);
        // this keeps its type in use so the crate's `cargo test` and
        // `clippy` stay quiet about it.
        #[cfg(not(target_family = "wasm"))]
        #[doc(hidden)]
        pub fn __kiln_export_anchor() {
            let _ = <$plugin as $crate::attestor::Attestor>::attest;
        }
        const _: () = {
            #[allow(dead_code)]
            struct __KilnExport;
            impl $crate::bindings::attestor::exports::kiln::plugin0_3_0::attest::Guest
                for __KilnExport
            {
                fn attest(
                    request: $crate::attestor::AttestRequest,
                ) -> ::core::result::Result<
                    $crate::attestor::Attestation,
                    $crate::attestor::PluginError,
                > {
                    <$plugin as $crate::attestor::Attestor>::attest(request)
                }
            }
            // Only a component exports: a host build of the plugin crate
            // (its `cargo test`) links as a native library, where the
            // contract's export names are not valid symbols.
            #[cfg(target_family = "wasm")]
            $crate::bindings::attestor::__export_attestor_raw!(
                __KilnExport with_types_in $crate::bindings::attestor
            );
        };
    };
}

/// Export a [`detector::Detector`] implementation as this component's detector.
#[cfg(feature = "detector")]
#[macro_export]
macro_rules! export_detector {
    ($plugin:ident) => {
        // In a host build nothing calls the plugin (there is no export);
        // this keeps its type in use so the crate's `cargo test` and
        // `clippy` stay quiet about it.
        #[cfg(not(target_family = "wasm"))]
        #[doc(hidden)]
        pub fn __kiln_export_anchor() {
            let _ = <$plugin as $crate::detector::Detector>::detect;
        }
        const _: () = {
            #[allow(dead_code)]
            struct __KilnExport;
            impl $crate::bindings::detector::exports::kiln::plugin::detect::Guest for __KilnExport {
                fn detect(
                    request: $crate::detector::DetectRequest,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<$crate::detector::Project>,
                    $crate::detector::PluginError,
                > {
                    <$plugin as $crate::detector::Detector>::detect(request)
                }
            }
            // Only a component exports: a host build of the plugin crate
            // (its `cargo test`) links as a native library, where the
            // contract's export names are not valid symbols.
            #[cfg(target_family = "wasm")]
            $crate::bindings::detector::__export_detector_raw!(
                __KilnExport with_types_in $crate::bindings::detector
            );
        };
    };
}

/// Export a [`builder::Builder`] implementation as this component's builder.
#[cfg(feature = "builder")]
#[macro_export]
macro_rules! export_builder {
    ($plugin:ident) => {
        // In a host build nothing calls the plugin (there is no export);
        // this keeps its type in use so the crate's `cargo test` and
        // `clippy` stay quiet about it.
        #[cfg(not(target_family = "wasm"))]
        #[doc(hidden)]
        pub fn __kiln_export_anchor() {
            let _ = <$plugin as $crate::builder::Builder>::build;
        }
        const _: () = {
            #[allow(dead_code)]
            struct __KilnExport;
            impl $crate::bindings::builder::exports::kiln::plugin::build::Guest for __KilnExport {
                fn build(
                    request: $crate::builder::BuildRequest,
                ) -> ::core::result::Result<
                    $crate::builder::BuildOutput,
                    $crate::builder::PluginError,
                > {
                    <$plugin as $crate::builder::Builder>::build(request)
                }
            }
            // Only a component exports: a host build of the plugin crate
            // (its `cargo test`) links as a native library, where the
            // contract's export names are not valid symbols.
            #[cfg(target_family = "wasm")]
            $crate::bindings::builder::__export_builder_raw!(
                __KilnExport with_types_in $crate::bindings::builder
            );
        };
    };
}

/// Export a [`source::ContextSource`] implementation as this component's context source.
#[cfg(feature = "context-source")]
#[macro_export]
macro_rules! export_context_source {
    ($plugin:ident) => {
        // In a host build nothing calls the plugin (there is no export);
        // this keeps its type in use so the crate's `cargo test` and
        // `clippy` stay quiet about it.
        #[cfg(not(target_family = "wasm"))]
        #[doc(hidden)]
        pub fn __kiln_export_anchor() {
            let _ = <$plugin as $crate::source::ContextSource>::materialize;
        }
        const _: () = {
            #[allow(dead_code)]
            struct __KilnExport;
            impl $crate::bindings::context_source::exports::kiln::plugin::source::Guest
                for __KilnExport
            {
                fn materialize(
                    spec: $crate::source::SourceSpec,
                ) -> ::core::result::Result<$crate::source::ContextInfo, $crate::source::PluginError>
                {
                    <$plugin as $crate::source::ContextSource>::materialize(spec)
                }
            }
            // Only a component exports: a host build of the plugin crate
            // (its `cargo test`) links as a native library, where the
            // contract's export names are not valid symbols.
            #[cfg(target_family = "wasm")]
            $crate::bindings::context_source::__export_context_source_raw!(
                __KilnExport with_types_in $crate::bindings::context_source
            );
        };
    };
}

/// Export a [`credentials::CredentialStore`] implementation as this component's store.
#[cfg(feature = "credential-store")]
#[macro_export]
macro_rules! export_credential_store {
    ($plugin:ident) => {
        // In a host build nothing calls the plugin (there is no export);
        // this keeps its type in use so the crate's `cargo test` and
        // `clippy` stay quiet about it.
        #[cfg(not(target_family = "wasm"))]
        #[doc(hidden)]
        pub fn __kiln_export_anchor() {
            let _ = <$plugin as $crate::credentials::CredentialStore>::get;
        }
        const _: () = {
            #[allow(dead_code)]
            struct __KilnExport;
            impl $crate::bindings::credential_store::exports::kiln::plugin::credentials::Guest
                for __KilnExport
            {
                fn get(
                    org: String,
                    key: String,
                ) -> ::core::result::Result<Option<Vec<u8>>, $crate::credentials::PluginError>
                {
                    <$plugin as $crate::credentials::CredentialStore>::get(org, key)
                        .map(|value| value.map($crate::Secret::into_inner))
                }
                fn put(
                    org: String,
                    key: String,
                    value: Vec<u8>,
                ) -> ::core::result::Result<(), $crate::credentials::PluginError> {
                    <$plugin as $crate::credentials::CredentialStore>::put(
                        org,
                        key,
                        $crate::Secret::new(value),
                    )
                }
                fn delete(
                    org: String,
                    key: String,
                ) -> ::core::result::Result<bool, $crate::credentials::PluginError> {
                    <$plugin as $crate::credentials::CredentialStore>::delete(org, key)
                }
                fn list_keys(
                    org: String,
                ) -> ::core::result::Result<Vec<String>, $crate::credentials::PluginError> {
                    <$plugin as $crate::credentials::CredentialStore>::list_keys(org)
                }
            }
            // Only a component exports: a host build of the plugin crate
            // (its `cargo test`) links as a native library, where the
            // contract's export names are not valid symbols.
            #[cfg(target_family = "wasm")]
            $crate::bindings::credential_store::__export_credential_store_raw!(
                __KilnExport with_types_in $crate::bindings::credential_store
            );
        };
    };
}
