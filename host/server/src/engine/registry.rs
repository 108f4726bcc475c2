//! Reading a pushed image's manifest from its registry (the Docker
//! Registry HTTP API v2), for builders that push by themselves (Kaniko):
//! the digest, the stored size and the layer count.
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
    let (repository, tag) = match rest.rsplit_once(':') {
        Some((repo, tag)) if !tag.contains('/') => (repo, tag),
        _ => (rest, "latest"),
    };
    Some((host, repository, tag))
}

/// Read `reference`'s manifest (the first platform's, for an index).
pub async fn manifest(
    reference: &str,
    auth: Option<&RegistryAuth>,
) -> Result<PushedImage, BuildFailure> {
    let failed = |message: String| BuildFailure::engine(format!("{reference}: {message}"));
    let (host, repository, tag) =
        split(reference).ok_or_else(|| failed("not a registry reference".into()))?;
    let scheme = if plain_http(host) { "http" } else { "https" };
    let client = reqwest::Client::new();
    let mut token: Option<String> = None;
    let fetch = |wanted: &str| {
        client
            .get(format!(
                "{scheme}://{host}/v2/{repository}/manifests/{wanted}"
            ))
            .header("Accept", ACCEPT)
    };
    let send = |request: reqwest::RequestBuilder, token: &Option<String>| {
        let request = match (token, auth) {
            (Some(token), _) => request.bearer_auth(token),
            (None, Some(auth)) => request.basic_auth(&auth.username, Some(&auth.password)),
            (None, None) => request,
        };
        request.send()
    };
    let mut response = send(fetch(tag), &token)
        .await
        .map_err(|e| failed(format!("cannot reach the registry: {e}")))?;
    if response.status() == reqwest::StatusCode::UNAUTHORIZED {
        let challenge = response
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if let Some(found) = bearer_token(&client, &challenge, repository, auth).await {
            token = Some(found);
            response = send(fetch(tag), &token)
                .await
                .map_err(|e| failed(format!("cannot reach the registry: {e}")))?;
        }
    }
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
        let response = send(fetch(&first.digest), &token)
            .await
            .map_err(|e| failed(format!("cannot reach the registry: {e}")))?;
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

/// The token handshake: `Bearer realm="…",service="…"` → a pull token.
async fn bearer_token(
    client: &reqwest::Client,
    challenge: &str,
    repository: &str,
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
        query.append_pair("scope", &format!("repository:{repository}:pull"));
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
