//! `Idempotency-Key` on CreateBuild and UploadBuildContext: a client whose
//! connection broke before the answer came sends the request again with
//! the same key and gets the first answer (`Idempotent-Replayed: true`)
//! instead of a second build. The key is the client's: the same key with
//! another body is refused (422). Answers are kept for [`KEEP`]; requests
//! with the same key wait for each other, so two at once make one build.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use chrono::Utc;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde::Serialize;

use super::{json_response, ApiError, ApiState, Body};
use crate::store::IdempotentAnswer;

/// The request header.
pub const HEADER: &str = "idempotency-key";
/// The answer header saying an answer is the kept one.
pub const REPLAYED: &str = "idempotent-replayed";
/// How long an answer is kept for its key (garbage collection removes it after).
pub use crate::store::IDEMPOTENT_ANSWER_KEEP as KEEP;
/// Most characters in a key (a UUID has 36).
pub const MAX_KEY_CHARS: usize = 255;

/// A request that came with an `Idempotency-Key`: holds the key's lock
/// (another request with the same key waits until this one has answered)
/// and the answer kept for the key, if one is.
pub struct KeyedRequest {
    org: String,
    operation: &'static str,
    key: String,
    kept: Option<IdempotentAnswer>,
    _same_key: tokio::sync::OwnedMutexGuard<()>,
}

/// Start `org`'s `operation` for `request`: `None` without a key, else the
/// key's lock and kept answer. A malformed key is 400.
pub async fn begin(
    state: &ApiState,
    request: &Request<Incoming>,
    org: &str,
    operation: &'static str,
) -> Result<Option<KeyedRequest>, ApiError> {
    let Some(key) = key_of(request)? else {
        return Ok(None);
    };
    let same_key = lock(org, operation, &key).await;
    let kept = state
        .store
        .idempotent_answer(org, operation, &key)?
        .filter(|kept| Utc::now() - kept.create_time <= KEEP);
    Ok(Some(KeyedRequest {
        org: org.to_string(),
        operation,
        key,
        kept,
        _same_key: same_key,
    }))
}

impl KeyedRequest {
    /// Whether an answer is kept for the key (whatever body it was for).
    pub fn has_answer(&self) -> bool {
        self.kept.is_some()
    }

    /// The kept answer when the body is the one it was for; 422 when the
    /// key was used for another body; `None` when nothing is kept.
    pub fn replay(&self, request_sha256: &str) -> Result<Option<Response<Body>>, ApiError> {
        let Some(kept) = &self.kept else {
            return Ok(None);
        };
        if kept.request_sha256 != request_sha256 {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!(
                    "`Idempotency-Key` {:?} was used for a different request in the last {} hours; send a new key with a new request",
                    self.key,
                    KEEP.num_hours()
                ),
            ));
        }
        let status = StatusCode::from_u16(kept.status).map_err(ApiError::internal)?;
        let mut response = json_response(status, &kept.body);
        response
            .headers_mut()
            .insert(REPLAYED, hyper::header::HeaderValue::from_static("true"));
        Ok(Some(response))
    }

    /// Keep `answer` as the one for this key and body.
    pub fn remember(
        &self,
        state: &ApiState,
        request_sha256: &str,
        status: StatusCode,
        answer: &impl Serialize,
    ) -> Result<(), ApiError> {
        let kept = IdempotentAnswer {
            request_sha256: request_sha256.to_string(),
            status: status.as_u16(),
            body: serde_json::to_value(answer).map_err(ApiError::internal)?,
            create_time: Utc::now(),
        };
        state
            .store
            .put_idempotent_answer(&self.org, self.operation, &self.key, &kept)?;
        Ok(())
    }
}

/// The request's key, if it has one: 1 to [`MAX_KEY_CHARS`] visible ASCII
/// characters.
fn key_of(request: &Request<Incoming>) -> Result<Option<String>, ApiError> {
    let Some(value) = request.headers().get(HEADER) else {
        return Ok(None);
    };
    let key = value.to_str().unwrap_or("");
    let visible = |b: u8| (0x21..=0x7e).contains(&b);
    if key.is_empty() || key.len() > MAX_KEY_CHARS || !key.bytes().all(visible) {
        return Err(ApiError::bad_request(format!(
            "`Idempotency-Key` must be 1 to {MAX_KEY_CHARS} visible ASCII characters (a UUID is a good key)"
        )));
    }
    Ok(Some(key.to_string()))
}

/// The lock of `key` for `org`'s `operation`, once every earlier holder
/// has let go.
async fn lock(org: &str, operation: &str, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
    static LOCKS: LazyLock<Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>> =
        LazyLock::new(Default::default);
    let lock = {
        let mut locks = LOCKS.lock().unwrap();
        locks.retain(|_, lock| lock.strong_count() > 0);
        let id = format!("{org}\0{operation}\0{key}");
        match locks.get(&id).and_then(Weak::upgrade) {
            Some(lock) => lock,
            None => {
                let lock = Arc::new(tokio::sync::Mutex::new(()));
                locks.insert(id, Arc::downgrade(&lock));
                lock
            }
        }
    };
    lock.lock_owned().await
}
