//! SaveBuildSecrets: an organization's registry credentials, git
//! credentials and build secrets. Values go in, sealed; they never come out
//! of the API: every read shows `***`.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::routes::Caller;
use super::{json_response, no_content, read_json, ApiError, ApiState, Body};
use crate::store::secrets::{Credential, SecretKind};

/// A build secret's name: what may follow `id=` in a secret mount and name
/// a build arg.
pub fn check_secret_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let ok = name.len() <= 128
        && chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "build secret name {name:?} is not valid: letters, digits and `_`, not starting with a digit"
        ))
    }
}

fn check_host(group: &str, host: &str) -> Result<(), String> {
    let ok = host == "*"
        || (!host.is_empty()
            && host.len() <= 255
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{group}` key {host:?} is not a host: give host or host:port (e.g. \"registry.example.com\", \"127.0.0.1:5000\"){}",
            if group == "gitCredentials" { ", or \"*\" for every host" } else { "" }
        ))
    }
}

/// A store's refusal is the caller's to fix (a read-only store); anything
/// else is the server's.
fn store_error(error: crate::credentials::CredentialError) -> ApiError {
    match error {
        crate::credentials::CredentialError::Refused { .. } => {
            ApiError::new(StatusCode::CONFLICT, error.to_string())
        }
        other => ApiError::internal(other),
    }
}

async fn masked(state: &ApiState, org: &str) -> Result<kiln_api::MaskedSecrets, ApiError> {
    let names = state.secrets.names(org).await.map_err(store_error)?;
    let named = |kind: SecretKind| names.get(&kind).into_iter().flatten().cloned();
    let credentials = |kind| {
        named(kind)
            .map(|name| (name, kiln_api::MaskedCredential::masked()))
            .collect()
    };
    Ok(kiln_api::MaskedSecrets {
        registry_credentials: credentials(SecretKind::Registry),
        git_credentials: credentials(SecretKind::Git),
        build_secrets: named(SecretKind::Build)
            .map(|name| (name, kiln_api::admin::MASK.to_string()))
            .collect(),
    })
}

pub async fn save(
    state: &ApiState,
    caller: &Caller,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let save: kiln_api::SaveSecretsRequest = read_json(
        request,
        1 << 20,
        "SaveBuildSecrets ({registryCredentials, gitCredentials, buildSecrets})",
        || ApiError::bad_request("the request body is over 1 MiB"),
    )
    .await?;
    // Check everything before changing anything.
    for host in save.registry_credentials.keys() {
        check_host("registryCredentials", host).map_err(ApiError::bad_request)?;
    }
    for host in save.git_credentials.keys() {
        check_host("gitCredentials", host).map_err(ApiError::bad_request)?;
    }
    for (name, value) in &save.build_secrets {
        check_secret_name(name).map_err(ApiError::bad_request)?;
        if value.as_deref() == Some("") {
            return Err(ApiError::bad_request(format!(
                "build secret {name} is empty; give a value, or null to remove it"
            )));
        }
    }
    let secrets = &state.secrets;
    let org = &caller.org;
    for (kind, entries) in [
        (SecretKind::Registry, &save.registry_credentials),
        (SecretKind::Git, &save.git_credentials),
    ] {
        for (host, credential) in entries {
            match credential {
                Some(given) => {
                    // The wire type becomes the stored record here, at the edge.
                    let credential = Credential {
                        username: given.username.clone(),
                        password: given.password.clone(),
                    };
                    let bytes = serde_json::to_vec(&credential).expect("credentials serialize");
                    secrets
                        .put(org, kind, host, &bytes)
                        .await
                        .map_err(store_error)?
                }
                None => {
                    secrets.delete(org, kind, host).await.map_err(store_error)?;
                }
            }
        }
    }
    for (name, value) in &save.build_secrets {
        match value {
            Some(value) => secrets
                .put(org, SecretKind::Build, name, value.as_bytes())
                .await
                .map_err(store_error)?,
            None => {
                secrets
                    .delete(org, SecretKind::Build, name)
                    .await
                    .map_err(store_error)?;
            }
        }
    }
    state.store.flush().await?;
    Ok(json_response(StatusCode::OK, &masked(state, org).await?))
}

pub async fn list(state: &ApiState, caller: &Caller) -> Result<Response<Body>, ApiError> {
    Ok(json_response(
        StatusCode::OK,
        &masked(state, &caller.org).await?,
    ))
}

pub async fn delete(
    state: &ApiState,
    caller: &Caller,
    kind: &str,
    name: &str,
) -> Result<Response<Body>, ApiError> {
    let kind = SecretKind::parse(kind).ok_or_else(|| {
        ApiError::not_found(&format!("secret kind {kind} (use registry, git or build)"))
    })?;
    if !state
        .secrets
        .delete(&caller.org, kind, name)
        .await
        .map_err(store_error)?
    {
        return Err(ApiError::not_found(&format!(
            "{} secret {name}",
            kind.as_str()
        )));
    }
    Ok(no_content())
}
