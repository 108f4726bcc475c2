//! A small client for the OCI Distribution API (Docker Registry HTTP API
//! v2): reading manifests and blobs, and pushing the small artifacts Kiln
//! attaches beside an image.
//!
//! Registries on loopback are spoken to over plain HTTP (as Docker Engine
//! does); every other one over HTTPS with the system's roots. Basic auth and
//! the bearer-token handshake (`WWW-Authenticate: Bearer realm=…`) are both
//! supported. Everything read by digest is checked against that digest.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Credentials for a registry (what the organization saved). Borrowed: only
/// the host holds them, and nothing here keeps them.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    pub username: &'a str,
    pub password: &'a str,
}

impl std::fmt::Debug for Credentials<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credentials({}, password ***)", self.username)
    }
}

/// Why the registry did not answer as it should.
#[derive(Debug, thiserror::Error)]
#[error("{reference}: {message}")]
pub struct RegistryError {
    /// The image, repository or artifact asked about.
    pub reference: String,
    pub message: String,
}

/// What the registry holds for a reference.
#[derive(Debug, Clone, PartialEq)]
pub struct PushedImage {
    pub digest: String,
    pub size_bytes: u64,
    pub layer_count: u32,
}

/// Manifests and indexes, OCI's and Docker's.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json";

/// An entry of a manifest: a config, a layer, or (in an index) a manifest.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub digest: String,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// An index entry's platform.
    #[serde(default)]
    pub platform: Option<Platform>,
}

/// Where an index entry runs (`platform` in an OCI index).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub variant: Option<String>,
}

impl Descriptor {
    /// `os/arch[/variant]` of an index entry.
    pub fn platform_name(&self) -> Option<String> {
        let platform = self.platform.as_ref()?;
        Some(match &platform.variant {
            Some(variant) => format!("{}/{}/{variant}", platform.os, platform.architecture),
            None => format!("{}/{}", platform.os, platform.architecture),
        })
    }
}

/// An image manifest or an index, as far as Kiln reads them.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    #[serde(default)]
    pub config: Option<Descriptor>,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
    /// An index: the per-platform manifests.
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

/// Whether a registry host is spoken to over plain HTTP.
pub fn plain_http(host: &str) -> bool {
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(name, _)| name);
    kiln_api::validate::is_loopback_host(name)
}

/// A reference without its tag, and the tag (`latest` when it names
/// none): a port's colon (`host:5000/app`) is not a tag's.
pub fn without_tag(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (reference, "latest"),
    }
}

/// A reference as a registry client resolves it: Docker Hub's short forms
/// made whole (`python:3` → `docker.io/library/python:3`, `team/app` →
/// `docker.io/team/app`); a reference naming its host is unchanged.
pub fn normalize(reference: &str) -> String {
    match reference.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            reference.to_string()
        }
        Some(_) => format!("docker.io/{reference}"),
        None => format!("docker.io/library/{reference}"),
    }
}

/// An image reference split: `host/path[:tag][@sha256:…]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub host: String,
    pub path: String,
    /// The tag or digest asked for (`latest` when neither is given).
    pub wanted: String,
}

impl Reference {
    /// Parse `reference`; it must name its registry host
    /// (`registry.example/team/app:v1`, `127.0.0.1:5000/acme/app@sha256:…`).
    pub fn parse(reference: &str) -> Result<Self, RegistryError> {
        let bad = |message: &str| RegistryError {
            reference: reference.to_string(),
            message: message.to_string(),
        };
        let (name, wanted) = match reference.split_once('@') {
            Some((name, digest)) => {
                let hex = digest
                    .strip_prefix("sha256:")
                    .filter(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
                    .ok_or_else(|| bad("a digest is sha256: and 64 hex digits"))?;
                (name, format!("sha256:{}", hex.to_ascii_lowercase()))
            }
            None => {
                let (name, tag) = without_tag(reference);
                (name, tag.to_string())
            }
        };
        let (host, path) = name
            .split_once('/')
            .filter(|(host, path)| {
                (host.contains('.') || host.contains(':') || *host == "localhost")
                    && !path.is_empty()
            })
            .ok_or_else(|| {
                bad("name the registry too: host[:port]/repository[:tag] or …@sha256:<digest>")
            })?;
        Ok(Reference {
            host: host.to_string(),
            path: path.to_string(),
            wanted,
        })
    }

    /// `host/path`, as signatures name the image.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.host, self.path)
    }

    /// A session reading this repository.
    pub fn pull_session<'a>(&self, credentials: Option<Credentials<'a>>) -> Session<'a> {
        Session::new(&self.host, &self.path, credentials, "pull")
    }
}

/// The digest `reference` names (its index's, for a multi-platform image):
/// one manifest read.
pub async fn digest(
    reference: &str,
    credentials: Option<Credentials<'_>>,
) -> Result<String, RegistryError> {
    let parsed = Reference::parse(reference)?;
    let found = parsed
        .pull_session(credentials)
        .manifest(&parsed.wanted)
        .await?;
    Ok(found.digest)
}

/// Read `reference`'s manifest (the first platform's, for an index): its
/// digest, size and layer count.
pub async fn manifest(
    reference: &str,
    credentials: Option<Credentials<'_>>,
) -> Result<PushedImage, RegistryError> {
    let parsed = Reference::parse(reference)?;
    let mut session = parsed.pull_session(credentials);
    let top = session.manifest(&parsed.wanted).await?;
    let mut manifest = top.manifest;
    if let Some(first) = manifest.manifests.first() {
        manifest = session.manifest(&first.digest.clone()).await?.manifest;
    }
    Ok(PushedImage {
        digest: top.digest,
        size_bytes: manifest.config.map_or(0, |c| c.size)
            + manifest.layers.iter().map(|l| l.size).sum::<u64>(),
        layer_count: manifest.layers.len() as u32,
    })
}

/// A manifest as read: its digest and what it says.
pub struct FetchedManifest {
    pub digest: String,
    pub manifest: Manifest,
}

/// A blob to push: its media type, bytes and annotations (in the manifest
/// that lists it).
pub struct Blob {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
    pub annotations: BTreeMap<String, String>,
}

impl Blob {
    pub fn digest(&self) -> String {
        sha256_digest(&self.bytes)
    }

    fn descriptor(&self) -> serde_json::Value {
        let mut descriptor = serde_json::json!({
            "mediaType": self.media_type,
            "size": self.bytes.len(),
            "digest": self.digest(),
        });
        if !self.annotations.is_empty() {
            descriptor["annotations"] = serde_json::json!(self.annotations);
        }
        descriptor
    }
}

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// An OCI image manifest to push: its config and layers, and for an
/// artifact attached to an image its type and `subject` (OCI 1.1).
pub struct NewManifest {
    pub config: Blob,
    pub layers: Vec<Blob>,
    /// `artifactType`: what the manifest is (a signature, attestations, a
    /// Wasm component).
    pub artifact_type: Option<String>,
    /// The digest of the manifest (in the same repository) this one is
    /// about: it becomes one of its referrers.
    pub subject: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// A manifest as a descriptor names it (a referrer's `subject`, an index's
/// entry).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestDescriptor {
    pub media_type: String,
    pub digest: String,
    pub size: u64,
}

/// The OCI image manifest's media type.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The OCI image index's media type (also the referrers list's).
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// The tag OCI 1.1's referrers tag schema keeps `digest`'s referrers under
/// on registries without the referrers API: `sha256-<hex>`.
pub fn referrers_tag(digest: &str) -> String {
    digest.replacen(':', "-", 1)
}

/// The lock of one referrers index (`host/path@digest`) in this process.
///
/// An update reads the index, adds an entry and writes it back: two at
/// once each wrote the index without the other's entry. A build pushes its
/// signature and its attestations side by side, and a signed image was
/// left with its signature missing from the index (issue 19). Servers
/// sharing a registry without the referrers API can still race; the
/// registries that have it keep the list themselves.
fn referrers_index_lock(index: String) -> std::sync::Arc<tokio::sync::Mutex<()>> {
    use std::sync::{Arc, Mutex, OnceLock, Weak};
    type Locks = Mutex<std::collections::HashMap<String, Weak<tokio::sync::Mutex<()>>>>;
    static LOCKS: OnceLock<Locks> = OnceLock::new();
    let mut locks = LOCKS.get_or_init(Locks::default).lock().unwrap();
    // Indexes nobody updates any more are forgotten.
    locks.retain(|_, lock| lock.strong_count() > 0);
    if let Some(lock) = locks.get(&index).and_then(Weak::upgrade) {
        return lock;
    }
    let lock = Arc::new(tokio::sync::Mutex::new(()));
    locks.insert(index, Arc::downgrade(&lock));
    lock
}

/// Push `manifest` to `repository` (`host/path`) under `tag`, blobs first
/// (those the registry has are not sent again); answers its descriptor. A
/// 401 gets the bearer handshake for `pull,push`.
///
/// A manifest with a `subject` is listed among the subject's referrers:
/// by the registry when it has the referrers API (it says so with an
/// `OCI-Subject` header), else in the index under the referrers tag
/// ([`referrers_tag`]), as OCI 1.1 asks clients to do.
pub async fn push_manifest(
    repository: &str,
    tag: &str,
    manifest: &NewManifest,
    credentials: Option<Credentials<'_>>,
) -> Result<ManifestDescriptor, RegistryError> {
    let mut session = push_session(repository, credentials)?;
    // The subject's descriptor is read in the push's own session (one
    // token on registries that hand them out).
    let subject = match &manifest.subject {
        Some(digest) => Some(session.manifest_descriptor(digest).await?),
        None => None,
    };
    for blob in std::iter::once(&manifest.config).chain(&manifest.layers) {
        session.put_blob(blob).await?;
    }
    let mut document = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": manifest.config.descriptor(),
        "layers": manifest.layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
    });
    if let Some(artifact_type) = &manifest.artifact_type {
        document["artifactType"] = artifact_type.as_str().into();
    }
    if let Some(subject) = &subject {
        document["subject"] = serde_json::json!(subject);
    }
    if !manifest.annotations.is_empty() {
        document["annotations"] = serde_json::json!(manifest.annotations);
    }
    let body = serde_json::to_vec(&document).expect("a manifest serializes");
    let pushed = ManifestDescriptor {
        media_type: OCI_MANIFEST.into(),
        digest: sha256_digest(&body),
        size: body.len() as u64,
    };
    let answer = session.put_manifest(tag, OCI_MANIFEST, body).await?;
    if let Some(subject) = &subject {
        if !answer.headers.contains_key("oci-subject") {
            let entry = referrer_entry(&pushed, &document);
            session.add_to_referrers_index(subject, entry).await?;
        }
    }
    Ok(pushed)
}

/// One platform's image in an index to push: a manifest already in the
/// repository, and where it runs (`os/arch[/variant]`).
pub struct IndexEntry {
    pub digest: String,
    pub platform: String,
}

/// Push an OCI image index listing `entries` (manifests `repository`
/// holds) under every tag of `tags`; answers its descriptor. Each entry's
/// media type and size are the registry's own (a `HEAD` each), so the
/// index names exactly what was pushed, Docker's manifests or OCI's.
pub async fn push_index(
    repository: &str,
    tags: &[String],
    entries: &[IndexEntry],
    credentials: Option<Credentials<'_>>,
) -> Result<ManifestDescriptor, RegistryError> {
    let mut session = push_session(repository, credentials)?;
    let mut manifests = Vec::new();
    for entry in entries {
        let found = session.manifest_descriptor(&entry.digest).await?;
        let mut parts = entry.platform.splitn(3, '/');
        let mut platform = serde_json::json!({
            "os": parts.next().unwrap_or_default(),
            "architecture": parts.next().unwrap_or_default(),
        });
        if let Some(variant) = parts.next() {
            platform["variant"] = variant.into();
        }
        let mut descriptor = serde_json::json!(found);
        descriptor["platform"] = platform;
        manifests.push(descriptor);
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": manifests,
    });
    let body = serde_json::to_vec(&index).expect("an index serializes");
    let pushed = ManifestDescriptor {
        media_type: OCI_INDEX.into(),
        digest: sha256_digest(&body),
        size: body.len() as u64,
    };
    for tag in tags {
        session.put_manifest(tag, OCI_INDEX, body.clone()).await?;
    }
    Ok(pushed)
}

/// A session that pushes to `repository` (`host/path`).
fn push_session<'a>(
    repository: &str,
    credentials: Option<Credentials<'a>>,
) -> Result<Session<'a>, RegistryError> {
    let (host, path) = repository.split_once('/').ok_or_else(|| RegistryError {
        reference: repository.to_string(),
        message: "not a registry repository (host/path)".into(),
    })?;
    Ok(Session::new(host, path, credentials, "pull,push"))
}

/// A referrers index's entry for the manifest `document` pushed as
/// `pushed`: its descriptor, artifact type and annotations.
fn referrer_entry(pushed: &ManifestDescriptor, document: &serde_json::Value) -> serde_json::Value {
    let mut entry = serde_json::json!(pushed);
    // An image manifest without an artifactType is typed by its config.
    let artifact_type = document
        .get("artifactType")
        .or_else(|| document["config"].get("mediaType"))
        .cloned()
        .unwrap_or_default();
    entry["artifactType"] = artifact_type;
    if let Some(annotations) = document.get("annotations") {
        entry["annotations"] = annotations.clone();
    }
    entry
}

/// The manifests that name `reference` (`host/path@sha256:…`) as their
/// subject: the registry's referrers API when it has one, else the
/// referrers tag schema's index. Each is a descriptor with its
/// `artifactType`.
pub async fn referrers(
    reference: &str,
    credentials: Option<Credentials<'_>>,
) -> Result<Vec<serde_json::Value>, RegistryError> {
    let parsed = Reference::parse(reference)?;
    let digest = &parsed.wanted;
    if !digest.starts_with("sha256:") {
        return Err(RegistryError {
            reference: reference.to_string(),
            message: "referrers are looked up by digest (name@sha256:…)".into(),
        });
    }
    let mut session = parsed.pull_session(credentials);
    let url = format!("{}/referrers/{digest}", session.base);
    let answer = session
        .send_read(Method::GET, &url, None, Bytes::new(), MANIFEST_LIMIT)
        .await?;
    let index = if answer.status.is_success() {
        Some(answer.body)
    } else {
        session
            .raw_manifest_if_present(&referrers_tag(digest))
            .await?
    };
    let Some(index) = index else {
        return Ok(Vec::new());
    };
    let index: serde_json::Value = serde_json::from_slice(&index).map_err(|e| RegistryError {
        reference: reference.to_string(),
        message: format!("its referrers index is not valid JSON: {e}"),
    })?;
    Ok(index["manifests"].as_array().cloned().unwrap_or_default())
}

type HttpClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// One HTTP client for every registry: connections are pooled, and TLS is
/// ring with the system's roots. Only tasks on [`io_runtime`] use it.
fn http_client() -> &'static HttpClient {
    static CLIENT: OnceLock<HttpClient> = OnceLock::new();
    CLIENT.get_or_init(|| {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_native_roots(provider)
            .expect("ring and the system's roots make a TLS config")
            .https_or_http()
            .enable_http1()
            .build();
        Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector)
    })
}

/// A registry's answer, its body read (up to the limit asked for).
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

/// Manifests are small (the OCI spec has registries refuse those over
/// 4 MiB); anything longer is not read.
const MANIFEST_LIMIT: usize = 4 << 20;

/// One repository's requests, with the credentials given.
pub struct Session<'a> {
    /// `scheme://host/v2/path`.
    base: String,
    /// `scheme://host`, for relative upload locations.
    origin: String,
    /// `host/path`, for errors.
    repository: String,
    path: String,
    credentials: Option<Credentials<'a>>,
    /// What a bearer token is asked for: `pull` or `pull,push`.
    actions: &'static str,
    token: Option<String>,
}

impl<'a> Session<'a> {
    /// Requests to `host`'s repository `path` for `actions` (`pull`,
    /// `pull,push`).
    pub fn new(
        host: &str,
        path: &str,
        credentials: Option<Credentials<'a>>,
        actions: &'static str,
    ) -> Self {
        let scheme = if plain_http(host) { "http" } else { "https" };
        // Docker Hub's images are named docker.io/…; its API is elsewhere.
        let api_host = if host == "docker.io" {
            "registry-1.docker.io"
        } else {
            host
        };
        Session {
            base: format!("{scheme}://{api_host}/v2/{path}"),
            origin: format!("{scheme}://{api_host}"),
            repository: format!("{host}/{path}"),
            path: path.to_string(),
            credentials,
            actions,
            token: None,
        }
    }

    fn error(&self, at: &str, message: String) -> RegistryError {
        RegistryError {
            reference: format!("{}{at}", self.repository),
            message,
        }
    }

    /// The manifest under `wanted` (a tag or a digest). Read by digest, the
    /// body must hash to it; read by tag, its digest is the body's hash
    /// (not merely what the registry says it is).
    pub async fn manifest(&mut self, wanted: &str) -> Result<FetchedManifest, RegistryError> {
        self.manifest_if_present(wanted).await?.ok_or_else(|| {
            self.error(
                &at(wanted),
                "the registry has no such image (404: check the name and tag)".into(),
            )
        })
    }

    /// As [`Session::manifest`], but `None` when the registry has none
    /// under `wanted` (404).
    pub async fn manifest_if_present(
        &mut self,
        wanted: &str,
    ) -> Result<Option<FetchedManifest>, RegistryError> {
        let Some(body) = self.raw_manifest_if_present(wanted).await? else {
            return Ok(None);
        };
        let manifest = serde_json::from_slice(&body)
            .map_err(|e| self.error(&at(wanted), format!("the manifest is not valid JSON: {e}")))?;
        Ok(Some(FetchedManifest {
            digest: sha256_digest(&body),
            manifest,
        }))
    }

    /// The manifest under `wanted` as the registry sent it (checked
    /// against the digest when read by one); `None` on a 404.
    pub async fn raw_manifest_if_present(
        &mut self,
        wanted: &str,
    ) -> Result<Option<Bytes>, RegistryError> {
        let url = format!("{}/manifests/{wanted}", self.base);
        let answer = self
            .send_read(Method::GET, &url, None, Bytes::new(), MANIFEST_LIMIT)
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(self.error(
                &at(wanted),
                format!("the registry answered {} for the manifest", answer.status),
            ));
        }
        let digest = sha256_digest(&answer.body);
        if wanted.starts_with("sha256:") && digest != wanted {
            return Err(self.error(
                &at(wanted),
                format!("the registry sent a manifest whose digest is {digest}"),
            ));
        }
        Ok(Some(answer.body))
    }

    /// The descriptor of the manifest under `wanted` (a `HEAD`: its media
    /// type, digest and size), for a referrer's `subject`.
    pub async fn manifest_descriptor(
        &mut self,
        wanted: &str,
    ) -> Result<ManifestDescriptor, RegistryError> {
        let url = format!("{}/manifests/{wanted}", self.base);
        let answer = self
            .send_read(Method::HEAD, &url, None, Bytes::new(), 0)
            .await?;
        if !answer.status.is_success() {
            return Err(self.error(
                &at(wanted),
                format!("the registry answered {} for the manifest", answer.status),
            ));
        }
        let header = |name: &str| {
            answer
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let digest = match header("docker-content-digest") {
            Some(digest) => digest,
            None if wanted.starts_with("sha256:") => wanted.to_string(),
            None => {
                return Err(self.error(
                    &at(wanted),
                    "the registry did not say the manifest's digest".into(),
                ))
            }
        };
        if wanted.starts_with("sha256:") && digest != wanted {
            return Err(self.error(
                &at(wanted),
                format!("the registry answered for another manifest ({digest})"),
            ));
        }
        Ok(ManifestDescriptor {
            media_type: header("content-type").unwrap_or_else(|| OCI_MANIFEST.into()),
            digest,
            size: header("content-length")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0),
        })
    }

    /// `PUT` a manifest under `tag`; its answer (headers and all).
    async fn put_manifest(
        &mut self,
        tag: &str,
        media_type: &str,
        body: Vec<u8>,
    ) -> Result<Answer, RegistryError> {
        let url = format!("{}/manifests/{tag}", self.base);
        let answer = self
            .send_read(
                Method::PUT,
                &url,
                Some(media_type),
                Bytes::from(body),
                MANIFEST_LIMIT,
            )
            .await?;
        if !answer.status.is_success() {
            return Err(self.error(
                &at(tag),
                format!(
                    "the registry answered {} for the manifest: {}",
                    answer.status,
                    String::from_utf8_lossy(&answer.body).trim()
                ),
            ));
        }
        Ok(answer)
    }

    /// Add `entry` to the referrers tag schema's index of `subject` (made
    /// when there is none; an entry of the same digest is replaced).
    async fn add_to_referrers_index(
        &mut self,
        subject: &ManifestDescriptor,
        entry: serde_json::Value,
    ) -> Result<(), RegistryError> {
        let index_lock = referrers_index_lock(format!("{}@{}", self.repository, subject.digest));
        let _updating = index_lock.lock().await;
        let tag = referrers_tag(&subject.digest);
        let mut index = match self.raw_manifest_if_present(&tag).await? {
            Some(body) => serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .filter(|index| index["manifests"].is_array())
                .ok_or_else(|| {
                    self.error(
                        &at(&tag),
                        "the referrers tag holds something other than an index; remove it".into(),
                    )
                })?,
            None => serde_json::json!({
                "schemaVersion": 2,
                "mediaType": OCI_INDEX,
                "manifests": [],
            }),
        };
        let manifests = index["manifests"].as_array_mut().expect("checked above");
        manifests.retain(|m| m["digest"] != entry["digest"]);
        manifests.push(entry);
        let body = serde_json::to_vec(&index).expect("an index serializes");
        self.put_manifest(&tag, OCI_INDEX, body).await?;
        Ok(())
    }

    /// The blob `digest`, checked against it; at most `limit` bytes.
    pub async fn blob(&mut self, digest: &str, limit: u64) -> Result<Vec<u8>, RegistryError> {
        let mut bytes = Vec::new();
        self.blob_stream(digest, limit, |chunk| {
            bytes.extend_from_slice(&chunk);
            std::future::ready(Ok(()))
        })
        .await?;
        Ok(bytes)
    }

    /// The image manifest `wanted` names: itself, or for an index the one
    /// for `platform` (`os/arch[/variant]`; the first when none is asked).
    pub async fn image_manifest(
        &mut self,
        wanted: &str,
        platform: Option<&str>,
    ) -> Result<FetchedManifest, RegistryError> {
        let top = self.manifest(wanted).await?;
        if top.manifest.manifests.is_empty() {
            return Ok(top);
        }
        let chosen = match platform {
            None => top.manifest.manifests.first(),
            Some(platform) => top
                .manifest
                .manifests
                .iter()
                .find(|m| m.platform_name().as_deref() == Some(platform)),
        }
        .ok_or_else(|| {
            self.error(
                &at(wanted),
                format!(
                    "the index has no manifest for {}",
                    platform.unwrap_or("any platform")
                ),
            )
        })?;
        let digest = chosen.digest.clone();
        self.manifest(&digest).await
    }

    /// Stream the blob `digest` to `each` chunk by chunk (at most `limit`
    /// bytes), nothing of it held in memory, and check it against its
    /// digest at the end (what `each` did with a blob that fails the check
    /// is the caller's to undo); answers its size. `each` is awaited, so a
    /// slow consumer slows the download instead of blocking the runtime;
    /// its failing stops the download.
    pub async fn blob_stream<F>(
        &mut self,
        digest: &str,
        limit: u64,
        mut each: impl FnMut(Bytes) -> F,
    ) -> Result<u64, RegistryError>
    where
        F: std::future::Future<Output = Result<(), String>>,
    {
        let reference = format!("{}@{digest}", self.repository);
        let failed = |message: String| RegistryError {
            reference: reference.clone(),
            message,
        };
        let url = format!("{}/blobs/{digest}", self.base);
        let response = self.send(Method::GET, &url, None, Bytes::new()).await?;
        if !response.status().is_success() {
            return Err(failed(format!(
                "the registry answered {} for the blob",
                response.status()
            )));
        }
        let mut body = response.into_body();
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| failed(format!("cannot read the blob: {e}")))?;
            if let Ok(data) = frame.into_data() {
                size += data.len() as u64;
                if size > limit {
                    return Err(failed(format!("the blob is larger than {limit} bytes")));
                }
                hasher.update(&data);
                each(data).await.map_err(&failed)?;
            }
        }
        let found = format!("sha256:{}", hex::encode(hasher.finalize()));
        if found != digest {
            return Err(failed(format!(
                "the registry sent a blob whose digest is {found}"
            )));
        }
        Ok(size)
    }

    /// The `Authorization` header this session sends.
    fn authorization(&self) -> Option<HeaderValue> {
        let value = match (&self.token, self.credentials) {
            (Some(token), _) => format!("Bearer {token}"),
            (None, Some(credentials)) => credentials.basic(),
            (None, None) => return None,
        };
        let mut value = HeaderValue::from_str(&value).ok()?;
        value.set_sensitive(true);
        Some(value)
    }

    /// [`Session::send`], and at most `limit` bytes of the answer read.
    async fn send_read(
        &mut self,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        body: Bytes,
        limit: usize,
    ) -> Result<Answer, RegistryError> {
        let response = self.send(method, url, content_type, body).await?;
        read_answer(response, limit)
            .await
            .map_err(|message| self.error("", message))
    }

    /// Send a request (again with a bearer token after a 401 that offers
    /// one); the answer's body is the caller's to read (or stream).
    async fn send(
        &mut self,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<hyper::Response<hyper::body::Incoming>, RegistryError> {
        let first = self
            .send_once(method.clone(), url, content_type, body.clone())
            .await?;
        if first.status() != StatusCode::UNAUTHORIZED || self.token.is_some() {
            return Ok(first);
        }
        let challenge = first
            .headers()
            .get(hyper::header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let Some(token) =
            scoped_token(&challenge, &self.path, self.actions, self.credentials).await
        else {
            return Ok(first);
        };
        self.token = Some(token);
        self.send_once(method, url, content_type, body).await
    }

    async fn send_once(
        &self,
        method: Method,
        url: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<hyper::Response<hyper::body::Incoming>, RegistryError> {
        let mut request = Request::builder()
            .method(method)
            .uri(url)
            .header(ACCEPT, MANIFEST_ACCEPT);
        if let Some(content_type) = content_type {
            request = request.header(CONTENT_TYPE, content_type);
        }
        if let Some(authorization) = self.authorization() {
            request = request.header(AUTHORIZATION, authorization);
        }
        let request = request
            .body(Full::new(body))
            .map_err(|e| self.error("", format!("not a valid request URL {url}: {e}")))?;
        request_once(request)
            .await
            .map_err(|message| self.error("", message))
    }

    async fn put_blob(&mut self, blob: &Blob) -> Result<(), RegistryError> {
        let digest = blob.digest();
        let head = format!("{}/blobs/{digest}", self.base);
        if self
            .send_read(Method::HEAD, &head, None, Bytes::new(), 0)
            .await?
            .status
            .is_success()
        {
            return Ok(());
        }
        let start = format!("{}/blobs/uploads/", self.base);
        let started = self
            .send_read(Method::POST, &start, None, Bytes::new(), MANIFEST_LIMIT)
            .await?;
        if started.status != StatusCode::ACCEPTED {
            return Err(self.error(
                "",
                format!(
                    "the registry answered {} to starting an upload",
                    started.status
                ),
            ));
        }
        let location = started
            .headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                self.error(
                    "",
                    "the registry started an upload without a Location".into(),
                )
            })?;
        // The Location may be relative to the registry.
        let location = if location.starts_with('/') {
            format!("{}{location}", self.origin)
        } else {
            location.to_string()
        };
        let separator = if location.contains('?') { '&' } else { '?' };
        let url = format!(
            "{location}{separator}{}",
            form_urlencoded::Serializer::new(String::new())
                .append_pair("digest", &digest)
                .finish()
        );
        let finished = self
            .send_read(
                Method::PUT,
                &url,
                Some("application/octet-stream"),
                Bytes::from(blob.bytes.clone()),
                MANIFEST_LIMIT,
            )
            .await?;
        if !finished.status.is_success() {
            return Err(self.error(
                "",
                format!(
                    "the registry answered {} to the blob {digest}",
                    finished.status
                ),
            ));
        }
        Ok(())
    }
}

impl Credentials<'_> {
    fn basic(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }
}

/// The runtime every registry connection lives on, for as long as the
/// process does.
///
/// Why not the caller's: a pooled connection is a task on the runtime that
/// opened it, and the pool is shared. Where one process runs several
/// runtimes (each test's in-process server has its own; so may an embedder),
/// a request handed a connection another runtime opened failed with
/// "dispatch task is gone: runtime dropped the dispatch task" when that
/// runtime ended mid-request: an image went unsigned in CI that way, and a
/// referrers push failed. Connections opened, driven and pooled here outlive
/// every caller's runtime; callers only exchange messages with them, which
/// works from any runtime.
fn io_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("kiln-registry-io")
            .enable_all()
            .build()
            .expect("a one-thread runtime for registry connections starts")
    })
}

/// One request, sent from [`io_runtime`]; its answer unread (the body
/// streams to the caller from the connection's task there).
async fn request_once(
    request: Request<Full<Bytes>>,
) -> Result<hyper::Response<hyper::body::Incoming>, String> {
    // A caller that gives up (a cancelled build) takes its request with it.
    let sent = io_runtime().spawn(http_client().request(request));
    let answer = tokio_util::task::AbortOnDropHandle::new(sent)
        .await
        .map_err(|e| format!("the registry request's task ended: {e}"))?;
    answer.map_err(|error| {
        let mut reason = format!("cannot reach the registry: {error}");
        let mut cause = std::error::Error::source(&error);
        while let Some(next) = cause {
            reason = format!("{reason}: {next}");
            cause = next.source();
        }
        reason
    })
}

/// An answer with its body read, up to `limit` bytes.
async fn read_answer(
    response: hyper::Response<hyper::body::Incoming>,
    limit: usize,
) -> Result<Answer, String> {
    let (parts, mut body) = response.into_parts();
    let mut read = Vec::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("cannot read the registry's answer: {e}"))?;
        if let Some(data) = frame.data_ref() {
            if read.len() + data.len() > limit {
                return Err(format!(
                    "the registry's answer is larger than {limit} bytes, more than this can be"
                ));
            }
            read.extend_from_slice(data);
        }
    }
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body: Bytes::from(read),
    })
}

/// How an error names what was asked for: `:tag` or `@digest`.
fn at(wanted: &str) -> String {
    if wanted.starts_with("sha256:") {
        format!("@{wanted}")
    } else {
        format!(":{wanted}")
    }
}

/// The token handshake (`WWW-Authenticate: Bearer realm="…",service="…"`)
/// for `actions` (`pull`, `pull,push`) on `repository`.
async fn scoped_token(
    challenge: &str,
    repository: &str,
    actions: &str,
    credentials: Option<Credentials<'_>>,
) -> Option<String> {
    let params = challenge.strip_prefix("Bearer ")?;
    let field = |name: &str| {
        params.split(',').find_map(|part| {
            let (key, value) = part.trim().split_once('=')?;
            (key == name).then(|| value.trim_matches('"').to_string())
        })
    };
    let realm = field("realm")?;
    let query = {
        let mut query = form_urlencoded::Serializer::new(String::new());
        query.append_pair("scope", &format!("repository:{repository}:{actions}"));
        if let Some(service) = field("service") {
            query.append_pair("service", &service);
        }
        query.finish()
    };
    let separator = if realm.contains('?') { '&' } else { '?' };
    let uri: Uri = format!("{realm}{separator}{query}").parse().ok()?;
    let mut request = Request::get(uri);
    if let Some(credentials) = credentials {
        request = request.header(AUTHORIZATION, credentials.basic());
    }
    let response = request_once(request.body(Full::new(Bytes::new())).ok()?)
        .await
        .ok()?;
    let answer = read_answer(response, MANIFEST_LIMIT).await.ok()?;
    let answer: serde_json::Value = serde_json::from_slice(&answer.body).ok()?;
    answer["token"]
        .as_str()
        .or_else(|| answer["access_token"].as_str())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_is_split_off_after_the_last_slash_only() {
        assert_eq!(
            without_tag("127.0.0.1:5000/default/hello:v1"),
            ("127.0.0.1:5000/default/hello", "v1")
        );
        // The registry's port is not a tag.
        assert_eq!(
            without_tag("127.0.0.1:5000/default/hello"),
            ("127.0.0.1:5000/default/hello", "latest")
        );
    }

    #[test]
    fn references_parse_and_loopback_is_plain_http() {
        let parsed = Reference::parse("127.0.0.1:5000/acme/app:v1").unwrap();
        assert_eq!(
            (
                parsed.host.as_str(),
                parsed.path.as_str(),
                parsed.wanted.as_str()
            ),
            ("127.0.0.1:5000", "acme/app", "v1")
        );
        assert_eq!(parsed.repository(), "127.0.0.1:5000/acme/app");
        let parsed = Reference::parse("registry.example.com/acme/app").unwrap();
        assert_eq!(parsed.wanted, "latest");
        let digest = format!("sha256:{}", "AB".repeat(32));
        let parsed = Reference::parse(&format!("localhost/app@{digest}")).unwrap();
        assert_eq!(parsed.wanted, digest.to_ascii_lowercase());
        for bad in [
            "app:v1",
            "acme/app",
            "r.example/app@sha256:12",
            "r.example/",
        ] {
            let error = Reference::parse(bad).unwrap_err();
            assert_eq!(error.reference, bad);
        }
        assert_eq!(normalize("python:3"), "docker.io/library/python:3");
        assert_eq!(normalize("team/app"), "docker.io/team/app");
        assert_eq!(normalize("localhost/app"), "localhost/app");
        assert_eq!(
            normalize("127.0.0.1:5000/base/busybox:1"),
            "127.0.0.1:5000/base/busybox:1"
        );
        assert!(plain_http("127.0.0.1:5000"));
        assert!(plain_http("localhost:5000"));
        assert!(!plain_http("registry.example.com"));
        assert!(!plain_http("10.0.0.5:5000"));
    }

    #[test]
    fn credentials_never_print_the_password() {
        let shown = format!(
            "{:?}",
            Credentials {
                username: "robot",
                password: "hunter22"
            }
        );
        assert!(
            shown.contains("robot") && !shown.contains("hunter22"),
            "{shown}"
        );
    }
}
