//! Organizations and their tokens, managed by the operator with the admin
//! token written at first start. Tokens are stored hashed and shown once.
//! Also the operator's other call: garbage collection on demand.

use chrono::Utc;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};

use super::routes::Caller;
use super::{json_response, no_content, read_json, ApiError, ApiState, Body};
use crate::signing::SigningError;
use crate::store::{Org, TokenRecord};

/// A new random token.
pub fn new_token() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    format!("kiln_{}", hex::encode(bytes))
}

/// Create a token for `org` and store its hash; returns (token, record).
pub fn issue_token(
    store: &crate::store::Store,
    org: &str,
    admin: bool,
) -> Result<(String, TokenRecord), crate::store::StoreError> {
    let token = new_token();
    let record = TokenRecord {
        token_id: uuid::Uuid::new_v4().simple().to_string()[..16].to_string(),
        org: org.to_string(),
        admin,
        create_time: Utc::now(),
    };
    store.add_token(&record, &token)?;
    Ok((token, record))
}

pub async fn create(
    state: &ApiState,
    caller: &Caller,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    caller.require_admin()?;
    let body: kiln_api::CreateOrgRequest = read_json(
        state,
        request,
        64 * 1024,
        "CreateOrg ({\"name\": \"...\"})",
        || ApiError::bad_request("the request body is over 64 KiB"),
    )
    .await?;
    kiln_api::validate::check_org_name(&body.name).map_err(ApiError::bad_request)?;
    let org = Org {
        name: body.name,
        create_time: Utc::now(),
        registry: None,
        sign_images: None,
    };
    if !state.store.create_org(&org)? {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("organization {} already exists", org.name),
        ));
    }
    state.store.flush().await?;
    Ok(json_response(
        StatusCode::CREATED,
        &kiln_api::Org::from(&org),
    ))
}

pub fn list(state: &ApiState, caller: &Caller) -> Result<Response<Body>, ApiError> {
    caller.require_admin()?;
    Ok(json_response(
        StatusCode::OK,
        &kiln_api::OrgList {
            orgs: state.store.orgs()?.iter().map(Into::into).collect(),
        },
    ))
}

pub fn create_token(
    state: &ApiState,
    caller: &Caller,
    org: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require_admin()?;
    if state.store.org(org)?.is_none() {
        return Err(ApiError::not_found(&format!("organization {org}")));
    }
    let (token, record) = issue_token(&state.store, org, false)?;
    Ok(json_response(
        StatusCode::CREATED,
        &kiln_api::NewToken {
            token,
            token_id: record.token_id,
            org: record.org,
            create_time: record.create_time,
            note: "the token is shown only now; store it safely".into(),
        },
    ))
}

/// The organization, or the 404 every unknown one gets.
fn existing_org(state: &ApiState, org: &str) -> Result<Org, ApiError> {
    state
        .store
        .org(org)?
        .ok_or_else(|| ApiError::not_found(&format!("organization {org}")))
}

/// `PUT` of one of an organization's settings (admin token): read the
/// body (`what` names it in errors) as a `T`, let `apply` check it and put
/// it into the record, store the record durably, answer the body.
async fn put_org_setting<T: serde::Serialize + serde::de::DeserializeOwned>(
    state: &ApiState,
    caller: &Caller,
    org: &str,
    request: Request<Incoming>,
    what: &str,
    apply: impl FnOnce(&mut Org, &T) -> Result<(), ApiError>,
) -> Result<Response<Body>, ApiError> {
    caller.require_admin()?;
    let mut record = existing_org(state, org)?;
    let setting: T = read_json(state, request, 64 * 1024, what, || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the request body is over 64 KiB",
        )
    })
    .await?;
    apply(&mut record, &setting)?;
    state.store.put_org(&record)?;
    state.store.flush().await?;
    Ok(json_response(StatusCode::OK, &setting))
}

/// `PUT /v1/orgs/{org}/registry`: the organization's images (and cache) go
/// to its own registry from its next build on.
pub async fn set_registry(
    state: &ApiState,
    caller: &Caller,
    org: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    put_org_setting(
        state,
        caller,
        org,
        request,
        "SetOrgRegistry ({\"host\": \"registry.example.com\", \"namespace\": \"team-a\"})",
        |record, target: &kiln_api::RegistryTarget| {
            kiln_api::validate::check_registry_target(target).map_err(ApiError::bad_request)?;
            record.registry = Some(target.clone());
            Ok(())
        },
    )
    .await
}

/// `GET /v1/orgs/{org}/registry`: where its images go now (the server's
/// registry under its name, unless it has its own).
pub fn get_registry(
    state: &ApiState,
    caller: &Caller,
    org: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require_admin()?;
    let record = existing_org(state, org)?;
    Ok(json_response(
        StatusCode::OK,
        &crate::store::registry_target(record.registry.as_ref(), &state.config.registry, org),
    ))
}

/// `GET /v1/orgs/{org}/signing-key`: the public half of the key the
/// organization's images are signed with, as PEM (`cosign verify --key`
/// reads it). Its own token or the admin token; for any other, the
/// organization does not exist.
pub async fn signing_key(
    state: &ApiState,
    caller: &Caller,
    org: &str,
) -> Result<Response<Body>, ApiError> {
    if !caller.admin && caller.org != org {
        return Err(ApiError::not_found(&format!("organization {org}")));
    }
    existing_org(state, org)?;
    // The organization's own key is its operator's to fix (409, saying
    // what is wrong with it); the key Kiln keeps failing is the server's.
    let key = crate::signing::org_key(&state.secrets, org)
        .await
        .map_err(|e| match e {
            SigningError::BadKey { .. } | SigningError::Store { .. } => {
                ApiError::new(StatusCode::CONFLICT, e.to_string())
            }
            _ => ApiError::internal(e),
        })?;
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(hyper::header::CONTENT_TYPE, "application/x-pem-file")
        .body(http_body_util::BodyExt::boxed(http_body_util::Full::new(
            bytes::Bytes::from(crate::signing::public_key_pem(&key)),
        )))
        .unwrap())
}

/// `PUT /v1/orgs/{org}/signing`: sign and attest the organization's images
/// (or not), for its builds that finish from now on.
pub async fn set_signing(
    state: &ApiState,
    caller: &Caller,
    org: &str,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    put_org_setting(
        state,
        caller,
        org,
        request,
        "SetOrgSigning ({\"enabled\": true|false})",
        |record, setting: &kiln_api::SigningSetting| {
            record.sign_images = Some(setting.enabled);
            Ok(())
        },
    )
    .await
}

/// `GET /v1/orgs/{org}/signing`: its own setting, else the server's.
pub fn get_signing(
    state: &ApiState,
    caller: &Caller,
    org: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require_admin()?;
    let record = existing_org(state, org)?;
    Ok(json_response(
        StatusCode::OK,
        &kiln_api::SigningSetting {
            enabled: record.signs_images(&state.config),
        },
    ))
}

/// `DELETE /v1/orgs/{org}/registry`: back to the server's registry.
pub async fn reset_registry(
    state: &ApiState,
    caller: &Caller,
    org: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require_admin()?;
    let mut record = existing_org(state, org)?;
    if record.registry.take().is_some() {
        state.store.put_org(&record)?;
        state.store.flush().await?;
    }
    Ok(no_content())
}

pub fn revoke_token(
    state: &ApiState,
    caller: &Caller,
    org: &str,
    token_id: &str,
) -> Result<Response<Body>, ApiError> {
    caller.require_admin()?;
    if !state.store.revoke_token(org, token_id)? {
        return Err(ApiError::not_found(&format!(
            "token {token_id} of organization {org}"
        )));
    }
    Ok(no_content())
}

/// `POST /v1/gc`: collect now, or (dry) say what would go.
/// `GET /v1/engines`: every engine of the pool, as its last check found it.
pub fn list_engines(state: &ApiState, caller: &Caller) -> Result<Response<Body>, ApiError> {
    caller.require_admin()?;
    Ok(json_response(
        StatusCode::OK,
        &kiln_api::EngineList {
            engines: state.engines.views(),
        },
    ))
}

/// `POST /v1/engines/{name}:drain` and `:resume`.
pub fn drain_engine(
    state: &ApiState,
    caller: &Caller,
    name: &str,
    draining: bool,
) -> Result<Response<Body>, ApiError> {
    caller.require_admin()?;
    let engine = state
        .engines
        .set_draining(name, draining)
        .ok_or_else(|| ApiError::not_found(&format!("engine {name:?}")))?;
    tracing::info!(
        engine = name,
        draining,
        "an operator drained or resumed an engine"
    );
    Ok(json_response(StatusCode::OK, &engine))
}

pub async fn collect_garbage(
    state: &ApiState,
    caller: &Caller,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    caller.require_admin()?;
    let body: kiln_api::GcRequest = read_json(
        state,
        request,
        64 * 1024,
        "CollectGarbage ({\"dryRun\": true|false})",
        || ApiError::bad_request("the request body is over 64 KiB"),
    )
    .await?;
    let report = state.gc.run(body.dry_run).await;
    Ok(json_response(StatusCode::OK, &report))
}
