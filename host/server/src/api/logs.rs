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
use crate::store::{LogCursor, LogHub, LogLine, Store};

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

/// StreamBuildLogs over REST: NDJSON, or Server-Sent Events for a client
/// that accepts `text/event-stream`.
pub fn stream(
    state: &ApiState,
    caller: &Caller,
    build_id: &str,
    request: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let params = query_params(request);
    let from_start = flag(&params, "fromStart")?;
    let follow = flag(&params, "follow")?;
    let resume = resume_point(&params, request, "afterSeq", "a line number")?;
    let format = match request.headers().get(hyper::header::ACCEPT) {
        Some(accept) if accept.to_str().unwrap_or("").contains("text/event-stream") => Format::Sse,
        _ => Format::Ndjson,
    };
    let start = LogStart {
        from_start,
        after_seq: resume,
        follow,
    };
    let frames = open(state, caller, build_id, start, Frames { format, follow })?;
    let content_type = match format {
        Format::Sse => "text/event-stream",
        Format::Ndjson => "application/x-ndjson",
    };
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(frames)).boxed();
    Ok(Response::builder()
        .status(StatusCode::OK)
        .header(hyper::header::CONTENT_TYPE, content_type)
        .header(hyper::header::CACHE_CONTROL, "no-cache")
        .body(body)
        .unwrap())
}

/// Where a resumed stream picks up: the `param` query parameter, else an
/// SSE client's `Last-Event-ID` header; `what` says what it must be.
pub fn resume_point(
    params: &std::collections::HashMap<String, String>,
    request: &Request<Incoming>,
    param: &str,
    what: &str,
) -> Result<Option<u64>, ApiError> {
    params
        .get(param)
        .map(String::as_str)
        .or_else(|| {
            request
                .headers()
                .get("last-event-id")
                .and_then(|v| v.to_str().ok())
        })
        .map(|v| {
            v.trim().parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("`{param}` / Last-Event-ID must be {what}"))
            })
        })
        .transpose()
}

/// Where a log stream starts and whether it follows the build.
#[derive(Debug, Clone, Copy)]
pub struct LogStart {
    /// From the first line (unless `after_seq` is given).
    pub from_start: bool,
    /// Right after this line: a dropped stream's resumption.
    pub after_seq: Option<u64>,
    /// Keep the stream open until the build finishes.
    pub follow: bool,
}

/// How a transport writes a log stream: batches of lines, its end, and
/// the revocation of the token it was opened with.
pub trait LogEncoder: Send + Sync + 'static {
    type Item: Send + 'static;
    /// The items for a batch of lines, in order.
    fn lines(&self, lines: &[LogLine]) -> Vec<Self::Item>;
    /// What ends a stream whose build finished, if anything.
    fn end(&self) -> Option<Self::Item>;
    /// What ends a stream whose token was revoked, if anything.
    fn revoked(&self) -> Option<Self::Item>;
}

/// Open `org`'s build's log as `encoder` writes it: the items arrive on the
/// receiver as the stored log is read and new lines become durable; it
/// closes when the stream ends (and the follower stops when it is dropped).
pub fn open<E: LogEncoder>(
    state: &ApiState,
    caller: &Caller,
    build_id: &str,
    start: LogStart,
    encoder: E,
) -> Result<mpsc::Receiver<E::Item>, ApiError> {
    let record = state
        .store
        .build_for_org(&caller.org, build_id)?
        .ok_or_else(|| ApiError::not_found(&format!("build {build_id}")))?;
    let after = match (start.after_seq, start.from_start) {
        (Some(seq), _) => seq,
        (None, true) => 0,
        // "From now": after the last durable line of a running build; a
        // finished build has nothing more to say.
        (None, false) if record.status.is_finished() => state.store.last_log_seq(build_id)?,
        (None, false) => *state.hub.subscribe(build_id).borrow(),
    };
    let (tx, rx) = mpsc::channel::<E::Item>(FOLLOWER_BUFFER);
    let follower = Follower {
        store: state.store.clone(),
        hub: state.hub.clone(),
        build_id: record.build_id.clone(),
        follow: start.follow,
        holder: TokenHolder {
            credential: caller.credential.clone(),
            revocations: state.store.revocations(),
        },
        encoder,
        tx,
    };
    tokio::spawn(async move {
        if let Err(e) = follower.run(after).await {
            tracing::debug!("log stream ended early: {e}");
        }
    });
    Ok(rx)
}

/// REST's frames: NDJSON lines, or SSE events (`id` is the line's `seq`,
/// so a reconnecting EventSource resumes by `Last-Event-ID`).
struct Frames {
    format: Format,
    follow: bool,
}

impl LogEncoder for Frames {
    type Item = Result<Frame<Bytes>, Infallible>;

    fn lines(&self, lines: &[LogLine]) -> Vec<Self::Item> {
        // One frame per batch: fewer wakeups for the client and us.
        let mut chunk = Vec::new();
        for line in lines {
            let json =
                serde_json::to_string(&kiln_api::LogLine::from(line)).expect("log lines serialize");
            match self.format {
                Format::Ndjson => chunk.extend_from_slice(format!("{json}\n").as_bytes()),
                Format::Sse => chunk.extend_from_slice(
                    format!("id: {}\nevent: log\ndata: {json}\n\n", line.seq).as_bytes(),
                ),
            }
        }
        vec![Ok(Frame::data(Bytes::from(chunk)))]
    }

    fn end(&self) -> Option<Self::Item> {
        let end = Bytes::from_static(b"event: end\ndata: {}\n\n");
        matches!((self.format, self.follow), (Format::Sse, true)).then(|| Ok(Frame::data(end)))
    }

    fn revoked(&self) -> Option<Self::Item> {
        let Format::Sse = self.format else {
            return None;
        };
        let error =
            kiln_api::ErrorBody::new(401, "the token this stream was opened with was revoked");
        let data = serde_json::to_string(&error).expect("errors serialize");
        let event = Bytes::from(format!("event: error\ndata: {data}\n\n"));
        Some(Ok(Frame::data(event)))
    }
}

/// The credential a stream was opened with: the stream ends when it is
/// revoked (a token, or a dashboard session signed out).
struct TokenHolder {
    credential: super::routes::Credential,
    revocations: tokio::sync::watch::Receiver<u64>,
}

#[derive(Debug, thiserror::Error)]
enum FollowError {
    #[error("the client went away")]
    ClientGone,
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Whether the build has finished. A finished record implies its whole log
/// is durable: the scheduler flushes the log before it finishes the record.
fn finished(store: &Store, build_id: &str) -> Result<bool, FollowError> {
    Ok(store
        .build(build_id)?
        .map(|r| r.status.is_finished())
        .unwrap_or(true))
}

/// One open log stream: the build's stored lines, then its new ones.
struct Follower<E: LogEncoder> {
    store: Store,
    hub: LogHub,
    build_id: String,
    follow: bool,
    holder: TokenHolder,
    encoder: E,
    tx: mpsc::Sender<E::Item>,
}

impl<E: LogEncoder> Follower<E> {
    async fn send(&self, items: impl IntoIterator<Item = E::Item>) -> Result<(), FollowError> {
        for item in items {
            self.tx
                .send(item)
                .await
                .map_err(|_| FollowError::ClientGone)?;
        }
        Ok(())
    }

    /// Send every stored line after the cursor up to `up_to`, moving it on.
    async fn drain(&self, cursor: &mut LogCursor, up_to: u64) -> Result<(), FollowError> {
        loop {
            let lines = self.store.read_log(&self.build_id, cursor, up_to, BATCH)?;
            let full = lines.len() == BATCH;
            if !lines.is_empty() {
                self.send(self.encoder.lines(&lines)).await?;
            }
            if !full {
                return Ok(());
            }
        }
    }

    async fn run(mut self, after: u64) -> Result<(), FollowError> {
        let mut cursor = LogCursor::after(after);
        let build_id = self.build_id.clone();
        let hub = self.hub.clone();
        let mut updates = hub.subscribe(&build_id);
        // The record is read only when it may have changed (at the start,
        // when the writer's channel closes, and on the periodic re-check),
        // not on every new line: with hundreds of followers that read
        // dominated.
        let mut check_record = true;
        let result = async {
            loop {
                if check_record {
                    if finished(&self.store, &build_id)? {
                        self.drain(&mut cursor, u64::MAX).await?;
                        let _ = self.send(self.encoder.end()).await;
                        return Ok(());
                    }
                    check_record = false;
                }
                // Only durable lines are served while the build runs.
                let durable = *updates.borrow_and_update();
                self.drain(&mut cursor, durable).await?;
                if !self.follow {
                    return Ok(());
                }
                tokio::select! {
                    changed = updates.changed() => {
                        if changed.is_err() {
                            // The writer is gone: the build ended. A fresh
                            // channel keeps this loop from spinning on a
                            // closed one.
                            updates = hub.subscribe(&build_id);
                            check_record = true;
                        }
                    }
                    _ = tokio::time::sleep(RECHECK) => check_record = true,
                    _ = self.tx.closed() => return Err(FollowError::ClientGone),
                    revoked = self.holder.revocations.changed() => {
                        // A revocation (or the store closing): is it ours?
                        if revoked.is_err() || !self.holder.credential.is_valid(&self.store)? {
                            let _ = self.send(self.encoder.revoked()).await;
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
}
