//! Reading a pushed image's manifest from its registry (the Docker
//! Registry HTTP API v2), for builders that push by themselves (Kaniko):
//! the digest, the stored size and the layer count; and pushing small OCI
//! artifacts beside an image (its signature, `crate::signing`).
//!
//! Registries on loopback are spoken to over plain HTTP (as Docker Engine
//! does); every other one over HTTPS. Basic auth and the bearer-token
//! handshake (`WWW-Authenticate: Bearer realm=…`) are both supported.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::{BuildFailure, RegistryAuth};

/// What the registry holds for a reference.
#[derive(Debug, Clone, PartialEq)]
pub struct PushedImage {
    pub digest: String,
    pub size_bytes: u64,
    pub layer_count: u32,
}

const ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json";

#[derive(Deserialize)]
struct Descriptor {
    #[serde(default)]
    size: u64,
    #[serde(default)]
    digest: String,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    /// An index: the per-platform manifests.
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

/// Whether a registry host is spoken to over plain HTTP.
pub fn plain_http(host: &str) -> bool {
    let name = host
        .rsplit_once(':')
        .filter(|(_, port)| port.chars().all(|c| c.is_ascii_digit()))
        .map_or(host, |(name, _)| name);
    crate::config::is_loopback_host(name)
}

/// `host/repo/path:tag` → (host, repository, tag).
fn split(reference: &str) -> Option<(&str, &str, &str)> {
    let (host, rest) = reference.split_once('/')?;
    let (repository, tag) = without_tag(rest);
    Some((host, repository, tag))
}

/// A reference without its tag, and the tag (`latest` when it names
/// none): a port's colon (`host:5000/app`) is not a tag's.
pub fn without_tag(reference: &str) -> (&str, &str) {
    match reference.rsplit_once(':') {
        Some((repository, tag)) if !tag.contains('/') => (repository, tag),
        _ => (reference, "latest"),
    }
}

/// Read `reference`'s manifest (the first platform's, for an index).
pub async fn manifest(
    reference: &str,
    auth: Option<&RegistryAuth>,
) -> Result<PushedImage, BuildFailure> {
    let failed = |message: String| BuildFailure::engine(format!("{reference}: {message}"));
    let (host, repository, tag) =
        split(reference).ok_or_else(|| failed("not a registry reference".into()))?;
    let mut session = Session::new(host, repository, auth, "pull");
    let base = session.base.clone();
    let fetch = |wanted: &str| {
        let url = format!("{base}/manifests/{wanted}");
        move |client: &reqwest::Client| client.get(&url).header("Accept", ACCEPT)
    };
    let response = session.send(fetch(tag)).await.map_err(failed)?;
    if !response.status().is_success() {
        return Err(failed(format!(
            "the registry answered {} for the manifest",
            response.status()
        )));
    }
    let header_digest = response
        .headers()
        .get("docker-content-digest")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let body = response
        .bytes()
        .await
        .map_err(|e| failed(format!("cannot read the manifest: {e}")))?;
    let digest =
        header_digest.unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(&body))));
    let mut manifest: Manifest = serde_json::from_slice(&body)
        .map_err(|e| failed(format!("the manifest is not valid JSON: {e}")))?;
    if let Some(first) = manifest.manifests.first() {
        let response = session.send(fetch(&first.digest)).await.map_err(failed)?;
        let body = response
            .bytes()
            .await
            .map_err(|e| failed(format!("cannot read the manifest: {e}")))?;
        manifest = serde_json::from_slice(&body)
            .map_err(|e| failed(format!("the platform manifest is not valid JSON: {e}")))?;
    }
    Ok(PushedImage {
        digest,
        size_bytes: manifest.config.map_or(0, |c| c.size)
            + manifest.layers.iter().map(|l| l.size).sum::<u64>(),
        layer_count: manifest.layers.len() as u32,
    })
}

/// The token handshake (`WWW-Authenticate: Bearer realm="…",service="…"`)
/// for `actions` (`pull`, `pull,push`) on `repository`.
async fn scoped_token(
    client: &reqwest::Client,
    challenge: &str,
    repository: &str,
    actions: &str,
    auth: Option<&RegistryAuth>,
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
    let mut request = client.get(format!("{realm}{separator}{query}"));
    if let Some(auth) = auth {
        request = request.basic_auth(&auth.username, Some(&auth.password));
    }
    let answer: serde_json::Value = request.send().await.ok()?.json().await.ok()?;
    answer["token"]
        .as_str()
        .or_else(|| answer["access_token"].as_str())
        .map(str::to_string)
}

/// Why the registry did not take an artifact.
#[derive(Debug, thiserror::Error)]
#[error("{repository}: {message}")]
pub struct PushError {
    pub repository: String,
    pub message: String,
}

/// A blob to push: its media type, bytes and annotations (in the manifest
/// that lists it).
pub struct Blob {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
    pub annotations: std::collections::BTreeMap<String, String>,
}

impl Blob {
    pub fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(Sha256::digest(&self.bytes)))
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

/// Push an OCI image manifest of `config` and `layers` to `repository`
/// (`host/path`) under `tag`, blobs first (those the registry has are not
/// sent again); answers the manifest's digest. Registries on loopback are
/// plain HTTP, as for reading; a 401 gets the bearer handshake for
/// `pull,push`.
pub async fn push_manifest(
    repository: &str,
    tag: &str,
    config: &Blob,
    layers: &[Blob],
    auth: Option<&RegistryAuth>,
) -> Result<String, PushError> {
    let failed = |message: String| PushError {
        repository: repository.to_string(),
        message,
    };
    let (host, path) = repository
        .split_once('/')
        .ok_or_else(|| failed("not a registry repository (host/path)".into()))?;
    let mut session = Session::new(host, path, auth, "pull,push");
    for blob in std::iter::once(config).chain(layers) {
        session.put_blob(blob).await.map_err(failed)?;
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": config.descriptor(),
        "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
    });
    let body = serde_json::to_vec(&manifest).expect("a manifest serializes");
    let digest = format!("sha256:{}", hex::encode(Sha256::digest(&body)));
    let url = format!("{}/manifests/{tag}", session.base);
    let response = session
        .send(|client| {
            client
                .put(&url)
                .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
                .body(body.clone())
        })
        .await
        .map_err(failed)?;
    if !response.status().is_success() {
        return Err(failed(format!(
            "the registry answered {} for the manifest {tag}",
            response.status()
        )));
    }
    Ok(digest)
}

/// One repository's requests, with the credentials the organization saved.
struct Session<'a> {
    client: reqwest::Client,
    /// `scheme://host/v2/path`.
    base: String,
    path: String,
    auth: Option<&'a RegistryAuth>,
    /// What a bearer token is asked for: `pull` or `pull,push`.
    actions: &'static str,
    token: Option<String>,
}

impl<'a> Session<'a> {
    fn new(host: &str, path: &str, auth: Option<&'a RegistryAuth>, actions: &'static str) -> Self {
        let scheme = if plain_http(host) { "http" } else { "https" };
        Session {
            client: reqwest::Client::new(),
            base: format!("{scheme}://{host}/v2/{path}"),
            path: path.to_string(),
            auth,
            actions,
            token: None,
        }
    }

    /// Send a request (built again after a 401 with a bearer token).
    async fn send(
        &mut self,
        request: impl Fn(&reqwest::Client) -> reqwest::RequestBuilder,
    ) -> Result<reqwest::Response, String> {
        let authorized =
            |builder: reqwest::RequestBuilder, token: &Option<String>| match (token, self.auth) {
                (Some(token), _) => builder.bearer_auth(token),
                (None, Some(auth)) => builder.basic_auth(&auth.username, Some(&auth.password)),
                (None, None) => builder,
            };
        let unreachable = |e: reqwest::Error| format!("cannot reach the registry: {e}");
        let response = authorized(request(&self.client), &self.token)
            .send()
            .await
            .map_err(unreachable)?;
        if response.status() != reqwest::StatusCode::UNAUTHORIZED || self.token.is_some() {
            return Ok(response);
        }
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let Some(token) = scoped_token(
            &self.client,
            &challenge,
            &self.path,
            self.actions,
            self.auth,
        )
        .await
        else {
            return Ok(response);
        };
        self.token = Some(token);
        authorized(request(&self.client), &self.token)
            .send()
            .await
            .map_err(unreachable)
    }

    async fn put_blob(&mut self, blob: &Blob) -> Result<(), String> {
        let digest = blob.digest();
        let head = format!("{}/blobs/{digest}", self.base);
        if self
            .send(|client| client.head(&head))
            .await?
            .status()
            .is_success()
        {
            return Ok(());
        }
        let start = format!("{}/blobs/uploads/", self.base);
        let started = self.send(|client| client.post(&start)).await?;
        if started.status() != reqwest::StatusCode::ACCEPTED {
            return Err(format!(
                "the registry answered {} to starting an upload",
                started.status()
            ));
        }
        let location = started
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .ok_or("the registry started an upload without a Location")?;
        // The Location may be relative to the registry.
        let location = match reqwest::Url::parse(&self.base).and_then(|base| base.join(location)) {
            Ok(url) => url,
            Err(e) => return Err(format!("the upload Location {location:?}: {e}")),
        };
        let mut url = location;
        url.query_pairs_mut().append_pair("digest", &digest);
        let finished = self
            .send(|client| {
                client
                    .put(url.clone())
                    .header("Content-Type", "application/octet-stream")
                    .body(blob.bytes.clone())
            })
            .await?;
        if !finished.status().is_success() {
            return Err(format!(
                "the registry answered {} to the blob {digest}",
                finished.status()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_and_loopback_is_plain_http() {
        assert_eq!(
            split("127.0.0.1:5000/acme/app:v1"),
            Some(("127.0.0.1:5000", "acme/app", "v1"))
        );
        assert_eq!(
            split("registry.example.com/acme/app"),
            Some(("registry.example.com", "acme/app", "latest"))
        );
        assert!(plain_http("127.0.0.1:5000"));
        assert!(plain_http("localhost:5000"));
        assert!(!plain_http("registry.example.com"));
        assert!(!plain_http("10.0.0.5:5000"));
    }
}
