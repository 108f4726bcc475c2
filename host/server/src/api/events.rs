//! `GET /v1/events`: an organization's build events as Server-Sent Events
//! (`build.queued`, `build.started`, `build.succeeded`, `build.failed`,
//! `build.cancelled`, each with a summary of the build), the same events
//! completion webhooks deliver.
//!
//! Each event's SSE `id` is its event id: a client that reconnects with
//! `Last-Event-ID` (an `EventSource` does so by itself), or `?after=N`,
//! gets every event after it, then the new ones. Without either it gets
//! only new ones. Events are kept per organization up to
//! [`crate::store::EVENTS_KEPT_PER_ORG`]; a client that was away longer is
//! sent `event: reset` first (reload what you show, then follow).
//!
//! The stream stays open; a comment every [`KEEPALIVE`] keeps proxies from
//! closing it, and it ends when the credential it was opened with is
//! revoked (`event: error`).

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use tokio::sync::mpsc;

use super::builds::query_params;
use super::routes::{Caller, Credential};
use super::{ApiError, ApiState, Body};
use crate::store::Store;

/// Events read from the store per batch.
const BATCH: usize = 500;
/// A comment line this often keeps an idle stream open through proxies.
pub const KEEPALIVE: Duration = Duration::from_secs(15);

type Item = Result<Frame<Bytes>, Infallible>;

pub fn stream(
    state: &ApiState,
    caller: &Caller,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let params = query_params(request);
    let after = super::logs::resume_point(
        &params,
        request,
        "after",
        "an event id (the `id` of an event this stream sent)",
    )?;
    let mut ids = state.store.event_ids();
    // "From now": after the newest event there is.
    let start = match after {
        Some(after) => after,
        None => *ids.borrow_and_update(),
    };
    let (tx, rx) = mpsc::channel::<Item>(16);
    let follower = EventFollower {
        store: state.store.clone(),
        org: caller.org.clone(),
        credential: caller.credential.clone(),
        tx,
    };
    let resumed = after.is_some();
    tokio::spawn(async move {
        let _ = follower.run(start, resumed, ids).await;
    });
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed();
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(hyper::header::CONTENT_TYPE, "text/event-stream")
        .header(hyper::header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap())
}

struct EventFollower {
    store: Store,
    org: String,
    credential: Credential,
    tx: mpsc::Sender<Item>,
}

#[derive(Debug)]
struct Gone;

impl EventFollower {
    async fn send(&self, text: String) -> Result<(), Gone> {
        self.tx
            .send(Ok(Frame::data(Bytes::from(text))))
            .await
            .map_err(|_| Gone)
    }

    /// Send every stored event after `after`; returns the last id sent.
    async fn drain(&self, mut after: u64) -> Result<u64, Gone> {
        loop {
            let events = self
                .store
                .events_after(&self.org, after, BATCH)
                .map_err(|e| tracing::warn!("cannot read events: {e}"))
                .map_err(|_| Gone)?;
            let full = events.len() == BATCH;
            if events.is_empty() {
                return Ok(after);
            }
            let mut chunk = String::new();
            for event in &events {
                let event_type = serde_json::from_str::<serde_json::Value>(&event.json)
                    .ok()
                    .and_then(|v| v["type"].as_str().map(str::to_string))
                    .unwrap_or_else(|| "build".into());
                chunk.push_str(&format!(
                    "id: {}\nevent: {event_type}\ndata: {}\n\n",
                    event.id, event.json
                ));
                after = event.id;
            }
            self.send(chunk).await?;
            if !full {
                return Ok(after);
            }
        }
    }

    async fn run(
        self,
        mut after: u64,
        resumed: bool,
        mut ids: tokio::sync::watch::Receiver<u64>,
    ) -> Result<(), Gone> {
        let mut revocations = self.store.revocations();
        // Tell an EventSource how long to wait before reconnecting, and
        // open the stream at once (some clients wait for the first byte).
        self.send("retry: 2000\n: kiln build events\n\n".into())
            .await?;
        if resumed
            && self
                .store
                .events_lost_after(&self.org, after)
                .unwrap_or(false)
        {
            self.send("event: reset\ndata: {}\n\n".into()).await?;
        }
        loop {
            after = self.drain(after).await?;
            tokio::select! {
                changed = ids.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                }
                _ = tokio::time::sleep(KEEPALIVE) => self.send(": keep-alive\n\n".into()).await?,
                _ = self.tx.closed() => return Err(Gone),
                revoked = revocations.changed() => {
                    if revoked.is_err() || !self.credential.is_valid(&self.store).unwrap_or(false) {
                        let error = kiln_api::ErrorBody::new(
                            401,
                            "the token (or dashboard session) this stream was opened with was revoked",
                        );
                        let data = serde_json::to_string(&error).expect("errors serialize");
                        let _ = self.send(format!("event: error\ndata: {data}\n\n")).await;
                        return Ok(());
                    }
                }
            }
        }
    }
}
