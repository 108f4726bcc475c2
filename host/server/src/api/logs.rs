//! StreamBuildLogs: replay the stored log, then tail it until the build ends.
//!
//! `fromStart=true` starts at the first line; otherwise at the next line
//! written. `afterSeq=N` (or an SSE client's `Last-Event-ID: N`) resumes
//! right after line N, without gaps or duplicates. `follow=true` keeps the
//! stream open until the build finishes. The format is Server-Sent Events
//! when the client accepts `text/event-stream`, otherwise NDJSON.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use tokio::sync::mpsc;

use super::builds::query_params;
use super::routes::Caller;
use super::{ApiError, ApiState, Body};
use crate::store::{LogHub, LogLine, Store};

/// Lines read from the store per batch.
const BATCH: usize = 500;
/// Frames buffered per follower before it waits on its client.
const FOLLOWER_BUFFER: usize = 16;
/// How often a follower re-checks the record, as a safety net.
const RECHECK: Duration = Duration::from_secs(1);

#[derive(Clone, Copy)]
enum Format {
    Ndjson,
    Sse,
}

fn flag(params: &std::collections::HashMap<String, String>, name: &str) -> Result<bool, ApiError> {
    // Exactly the booleans the OpenAPI document declares: `?follow=` or
    // `?follow=1` is refused rather than guessed at.
    match params.get(name).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(ApiError::bad_request(format!(
            "`{name}` must be true or false, not {other:?}"
        ))),
    }
}

pub fn stream(
    state: &ApiState,
    caller: &Caller,
    build_id: &str,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let record = state
        .store
        .build_for_org(&caller.org, build_id)?
        .ok_or_else(|| ApiError::not_found(&format!("build {build_id}")))?;
    let params = query_params(request);
    let from_start = flag(&params, "fromStart")?;
    let follow = flag(&params, "follow")?;
    let resume = params
        .get("afterSeq")
        .cloned()
        .or_else(|| {
            request
                .headers()
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                ApiError::bad_request("`afterSeq` / Last-Event-ID must be a line number")
            })
        })
        .transpose()?;
    let after = match (resume, from_start) {
        (Some(seq), _) => seq,
        (None, true) => 0,
        // "From now": after the last durable line of a running build; a
        // finished build has nothing more to say.
        (None, false) if record.status.is_finished() => state.store.last_log_seq(build_id)?,
        (None, false) => *state.hub.subscribe(build_id).borrow(),
    };
    let format = match request.headers().get(hyper::header::ACCEPT) {
        Some(accept) if accept.to_str().unwrap_or("").contains("text/event-stream") => Format::Sse,
        _ => Format::Ndjson,
    };
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(FOLLOWER_BUFFER);
    let store = state.store.clone();
    let hub = state.hub.clone();
    let build_id = record.build_id.clone();
    let holder = TokenHolder {
        token: caller.token.clone(),
        revocations: state.store.revocations(),
    };
    tokio::spawn(async move {
        if let Err(e) = follow_log(store, hub, build_id, after, follow, format, holder, tx).await {
            tracing::debug!("log stream ended early: {e}");
        }
    });
    let content_type = match format {
        Format::Sse => "text/event-stream",
        Format::Ndjson => "application/x-ndjson",
    };
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed();
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .header(hyper::header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap())
}

fn frame(line: &LogLine, format: Format) -> Bytes {
    let json = serde_json::to_string(&kiln_api::LogLine::from(line)).expect("log lines serialize");
    Bytes::from(match format {
        Format::Ndjson => format!("{json}\n"),
        Format::Sse => format!("id: {}\nevent: log\ndata: {json}\n\n", line.seq),
    })
}

/// The token a stream was opened with: the stream ends when it is revoked.
struct TokenHolder {
    token: String,
    revocations: tokio::sync::watch::Receiver<u64>,
}

#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error("the client went away")]
    ClientGone,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Send every stored line after `after` up to `up_to`; returns the last
/// sequence sent.
async fn drain(
    store: &Store,
    build_id: &str,
    mut after: u64,
    up_to: u64,
    format: Format,
    tx: &mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
) -> Result<u64, FollowError> {
    loop {
        let lines = store.log_lines(build_id, after, up_to, BATCH)?;
        let full = lines.len() == BATCH;
        if let Some(last) = lines.last() {
            after = last.seq;
        }
        // One frame per batch: fewer wakeups for the client and us.
        if !lines.is_empty() {
            let mut chunk = Vec::new();
            for line in &lines {
                chunk.extend_from_slice(&frame(line, format));
            }
            tx.send(Ok(Frame::data(Bytes::from(chunk))))
                .await
                .map_err(|_| FollowError::ClientGone)?;
        }
        if !full {
            return Ok(after);
        }
    }
}

/// Whether the build has finished. A finished record implies its whole log
/// is durable: the scheduler flushes the log before it finishes the record.
fn finished(store: &Store, build_id: &str) -> Result<bool, FollowError> {
    Ok(store
        .build(build_id)?
        .map(|r| r.status.is_finished())
        .unwrap_or(true))
}

// One call site; the arguments are the stream's whole state.
#[allow(clippy::too_many_arguments)]
async fn follow_log(
    store: Store,
    hub: LogHub,
    build_id: String,
    mut after: u64,
    follow: bool,
    format: Format,
    mut holder: TokenHolder,
    tx: mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
) -> Result<(), FollowError> {
    let mut updates = hub.subscribe(&build_id);
    // The record is read only when it may have changed (at the start, when
    // the writer's channel closes, and on the periodic re-check), not on
    // every new line: with hundreds of followers that read dominated.
    let mut check_record = true;
    let result = async {
        loop {
            if check_record {
                if finished(&store, &build_id)? {
                    drain(&store, &build_id, after, u64::MAX, format, &tx).await?;
                    if let (Format::Sse, true) = (format, follow) {
                        let end = Bytes::from_static(b"event: end\ndata: {}\n\n");
                        let _ = tx.send(Ok(Frame::data(end))).await;
                    }
                    return Ok(());
                }
                check_record = false;
            }
            // Only durable lines are served while the build runs.
            let durable = *updates.borrow_and_update();
            after = drain(&store, &build_id, after, durable, format, &tx).await?;
            if !follow {
                return Ok(());
            }
            tokio::select! {
                changed = updates.changed() => {
                    if changed.is_err() {
                        // The writer is gone: the build ended. A fresh channel
                        // keeps this loop from spinning on a closed one.
                        updates = hub.subscribe(&build_id);
                        check_record = true;
                    }
                }
                _ = tokio::time::sleep(RECHECK) => check_record = true,
                _ = tx.closed() => return Err(FollowError::ClientGone),
                revoked = holder.revocations.changed() => {
                    // A revocation (or the store closing): is it ours?
                    if revoked.is_err() || store.token(&holder.token)?.is_none() {
                        if let Format::Sse = format {
                            let error = kiln_api::ErrorBody::new(401, "the token this stream was opened with was revoked");
                            let data = serde_json::to_string(&error).expect("errors serialize");
                            let event = Bytes::from(format!("event: error\ndata: {data}\n\n"));
                            let _ = tx.send(Ok(Frame::data(event))).await;
                        }
                        return Ok(());
                    }
                }
            }
        }
    }
    .await;
    drop(updates);
    hub.release_if_idle(&build_id);
    result
}
