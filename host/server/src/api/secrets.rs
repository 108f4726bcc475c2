//! SaveBuildSecrets: an organization's registry credentials, git
//! credentials and build secrets. Values go in, sealed; they never come out
//! of the API: every read shows `***`.

use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::routes::Caller;
use super::validate;
use super::{json_response, no_content, read_json, ApiError, ApiState, Body};
use crate::store::secrets::{Credential, SecretKind};

/// A credential has a password (or token) long enough to mask; a registry
/// credential also names its user.
fn check_credential(
    group: &str,
    host: &str,
    credential: &kiln_api::CredentialInput,
) -> Result<(), String> {
    let what = format!("`{group}` for {host}");
    if credential.password.is_empty() {
        return Err(format!(
            "{what} has no password: give {{\"username\": \"...\", \"password\": \"...\"}} (or \"token\"), or null to remove the credential"
        ));
    }
    if group == "registryCredentials" && credential.username.is_empty() {
        return Err(format!(
            "{what} has no username: registries authenticate a user and a password (or token)"
        ));
    }
    validate::check_secret_value(&format!("the password in {what}"), &credential.password)
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

/// The names of the organization's build secrets: what a build's
/// `secrets` or a notifier's `secrets` may name.
pub(super) async fn saved_build_secrets(
    state: &ApiState,
    org: &str,
) -> Result<Vec<String>, ApiError> {
    let mut names = state.secrets.names(org).await.map_err(ApiError::internal)?;
    Ok(names.remove(&SecretKind::Build).unwrap_or_default())
}

/// Every saved name of `org`'s, each value `***`.
pub async fn masked(state: &ApiState, org: &str) -> Result<kiln_api::MaskedSecrets, ApiError> {
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
        state,
        request,
        1 << 20,
        "SaveBuildSecrets ({registryCredentials, gitCredentials, buildSecrets})",
        || ApiError::bad_request("the request body is over 1 MiB"),
    )
    .await?;
    Ok(json_response(
        StatusCode::OK,
        &save_secrets(state, &caller.org, save).await?,
    ))
}

/// SaveBuildSecrets: set or remove what `save` names (all checked before
/// anything changes); answers every saved name, masked.
pub async fn save_secrets(
    state: &ApiState,
    org: &str,
    save: kiln_api::SaveSecretsRequest,
) -> Result<kiln_api::MaskedSecrets, ApiError> {
    // Check everything before changing anything.
    for (group, entries) in [
        ("registryCredentials", &save.registry_credentials),
        ("gitCredentials", &save.git_credentials),
    ] {
        for (host, credential) in entries {
            kiln_api::validate::check_credential_host(group, host)
                .map_err(ApiError::bad_request)?;
            if let Some(credential) = credential {
                check_credential(group, host, credential).map_err(ApiError::bad_request)?;
            }
        }
    }
    for (name, value) in &save.build_secrets {
        validate::check_secret_name(name).map_err(ApiError::bad_request)?;
        if let Some(value) = value {
            validate::check_secret_value(&format!("build secret {name}"), value).map_err(|e| {
                ApiError::bad_request(format!("{e}; give a longer value, or null to remove it"))
            })?;
        }
    }
    let secrets = &state.secrets;
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
    masked(state, org).await
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
