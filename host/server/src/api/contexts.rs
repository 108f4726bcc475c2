//! UploadBuildContext: a tar, tar.gz or zip body streamed to disk as it
//! arrives (never held whole in memory), hashed on the way, size-limited,
//! and stored by content: the same bytes twice give the same context id.
//! Uploads are per organization; another organization's id does not exist.

use chrono::Utc;
use futures_util::TryStreamExt;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use sha2::{Digest, Sha256};

use super::routes::Caller;
use super::{json_response, ApiError, ApiState, Body};
use crate::store::ContextRecord;

/// Where uploaded bytes live: `contexts/blobs/<sha256>`.
pub fn blob_path(data_dir: &std::path::Path, sha256: &str) -> std::path::PathBuf {
    data_dir.join("contexts").join("blobs").join(sha256)
}

/// The archive format, from the first bytes.
fn sniff(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(&[0x1f, 0x8b]) {
        Some("tar.gz")
    } else if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        Some("zip")
    } else if head.len() >= 262 && &head[257..262] == b"ustar" {
        Some("tar")
    } else {
        None
    }
}

/// Removes a partial upload unless it was kept.
struct PartialFile(Option<std::path::PathBuf>);

impl Drop for PartialFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// How many received chunks may wait for the hashing thread, and for the
/// writing thread (hyper's frames are up to a few hundred KiB: a few MiB in
/// flight at most).
const UPLOAD_CHUNKS_IN_FLIGHT: usize = 16;

/// One blocking half of an upload: the content's SHA-256, once the sender
/// is dropped. Hashing is the slowest stage (one core, about as fast as a
/// loopback copy on its own), so it does nothing else.
fn hash_chunks(mut chunks: tokio::sync::mpsc::Receiver<bytes::Bytes>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    while let Some(chunk) = chunks.blocking_recv() {
        hasher.update(&chunk);
    }
    hasher.finalize().into()
}

/// The other blocking half: the received chunks written to `file` as they
/// are, whatever has arrived by then in one vectored write (a buffered
/// writer would first copy every byte once more).
fn write_chunks(
    mut chunks: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    mut file: std::fs::File,
) -> std::io::Result<()> {
    let mut batch = Vec::with_capacity(UPLOAD_CHUNKS_IN_FLIGHT);
    while let Some(first) = chunks.blocking_recv() {
        batch.push(first);
        while let Ok(more) = chunks.try_recv() {
            batch.push(more);
        }
        write_all_vectored(&mut file, &batch)?;
        batch.clear();
    }
    Ok(())
}

/// `Write::write_all_vectored`, which std has not stabilised.
fn write_all_vectored(file: &mut std::fs::File, chunks: &[bytes::Bytes]) -> std::io::Result<()> {
    use std::io::{ErrorKind, IoSlice, Write};
    let mut slices: Vec<IoSlice<'_>> = chunks.iter().map(|chunk| IoSlice::new(chunk)).collect();
    let mut slices = &mut slices[..];
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(ErrorKind::WriteZero.into()),
            Ok(written) => IoSlice::advance_slices(&mut slices, written),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// UploadBuildContext's name among operations with idempotency keys.
const OPERATION: &str = "uploadBuildContext";

/// UploadBuildContext over REST: the request body is the archive.
pub async fn upload(
    state: &ApiState,
    caller: &Caller,
    request: Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let keyed = super::idempotency::begin(state, &request, &caller.org, OPERATION).await?;
    // A retry of an answered upload is only hashed, not written, so it
    // gets its first answer even on a server now low on disk.
    let replaying = keyed.as_ref().is_some_and(|k| k.has_answer());
    let declared = request
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunks = request
        .into_body()
        .into_data_stream()
        .map_err(|e| ApiError::bad_request(format!("the upload broke off: {e}")));
    let received = receive(state, replaying, declared, chunks).await?;
    // The same bytes are the same context anyway; the key only has to
    // refuse other bytes.
    if let Some(keyed) = &keyed {
        if let Some(first) = keyed.replay(&received.sha256)? {
            return Ok(first);
        }
    }
    let record = keep(state, &caller.org, received).await?;
    let answer = kiln_api::UploadedContext::from(&record);
    if let Some(keyed) = &keyed {
        keyed.remember(state, &record.sha256, StatusCode::CREATED, &answer)?;
    }
    state.store.flush().await?;
    Ok(json_response(StatusCode::CREATED, &answer))
}

/// An upload received in full: hashed, checked, and (unless it was only
/// hashed for a replay) written to a temporary file removed on drop.
pub struct Received {
    partial: PartialFile,
    size: u64,
    format: &'static str,
    sha256: String,
}

/// Receive an upload's bytes as they arrive (`declared`: the size the
/// client announced, if it did), from a REST body or a gRPC stream alike:
/// size-limited, hashed and written on a blocking thread, never held whole.
pub async fn receive(
    state: &ApiState,
    replaying: bool,
    declared: Option<u64>,
    chunks: impl futures_util::Stream<Item = Result<bytes::Bytes, ApiError>>,
) -> Result<Received, ApiError> {
    if !replaying {
        super::check_free_disk(state)?;
    }
    let limit = state.config.max_upload_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "the context is over this server's upload limit of {limit} bytes; leave out dependencies and build outputs (a .dockerignore helps)"
            ),
        )
    };
    if declared.is_some_and(|length| length > limit) {
        return Err(too_large());
    }
    let dir = state.config.data_dir.join("contexts");
    let tmp_dir = dir.join("tmp");
    tokio::fs::create_dir_all(&tmp_dir)
        .await
        .map_err(ApiError::internal)?;
    tokio::fs::create_dir_all(dir.join("blobs"))
        .await
        .map_err(ApiError::internal)?;
    let tmp = tmp_dir.join(uuid::Uuid::new_v4().to_string());
    let partial = PartialFile(Some(tmp.clone()));
    let file = match replaying {
        true => None,
        false => Some(std::fs::File::create(&tmp).map_err(ApiError::io)?),
    };
    // Receiving runs here, hashing and writing on a blocking thread each,
    // so the three overlap: hashing and writing on one thread took turns,
    // and the upload ran at under half a plain copy's speed. Both threads
    // get the same chunks (a `Bytes` clone is a reference count).
    let channel = || tokio::sync::mpsc::channel::<bytes::Bytes>(UPLOAD_CHUNKS_IN_FLIGHT);
    let (to_hasher, hasher_chunks) = channel();
    let hashing = tokio::task::spawn_blocking(move || hash_chunks(hasher_chunks));
    let (to_writer, writing) = match file {
        Some(file) => {
            let (sender, chunks) = channel();
            let writing = tokio::task::spawn_blocking(move || write_chunks(chunks, file));
            (Some(sender), Some(writing))
        }
        None => (None, None),
    };
    let mut size: u64 = 0;
    let mut head: Vec<u8> = Vec::with_capacity(512);
    let mut chunks = std::pin::pin!(chunks);
    while let Some(data) = super::next_chunk(state, &mut chunks).await? {
        let data = data?;
        size += data.len() as u64;
        if size > limit {
            return Err(too_large());
        }
        if head.len() < 512 {
            let take = (512 - head.len()).min(data.len());
            head.extend_from_slice(&data[..take]);
        }
        if let Some(to_writer) = &to_writer {
            if to_writer.send(data.clone()).await.is_err() {
                // The writer stopped: its error is the answer.
                break;
            }
        }
        // The hasher stops only when its sender is dropped.
        let _ = to_hasher.send(data).await;
    }
    drop((to_hasher, to_writer));
    if let Some(writing) = writing {
        writing
            .await
            .map_err(ApiError::internal)?
            .map_err(ApiError::io)?;
    }
    let digest = hashing.await.map_err(ApiError::internal)?;
    if size == 0 {
        return Err(ApiError::bad_request(
            "the upload is empty; send a tar, tar.gz or zip of the build context as the request body",
        ));
    }
    let format = sniff(&head).ok_or_else(|| {
        ApiError::bad_request(
            "the upload is not a tar, tar.gz or zip archive (by its first bytes); e.g. `tar -czf - -C DIR .`",
        )
    })?;
    Ok(Received {
        partial,
        size,
        format,
        sha256: hex::encode(digest),
    })
}

/// Keep a received upload as `org`'s context (its bytes stored once per
/// content); the caller flushes the store before answering.
pub async fn keep(
    state: &ApiState,
    org: &str,
    mut received: Received,
) -> Result<ContextRecord, ApiError> {
    let blob = blob_path(&state.config.data_dir, &received.sha256);
    if tokio::fs::metadata(&blob).await.is_err() {
        if let Some(tmp) = received.partial.0.take() {
            tokio::fs::rename(&tmp, &blob)
                .await
                .map_err(ApiError::internal)?;
        }
    }
    let record = ContextRecord {
        context_id: format!("ctx-{}", &received.sha256[..32]),
        sha256: received.sha256.clone(),
        size_bytes: received.size,
        format: received.format.to_string(),
        create_time: Utc::now(),
    };
    state.store.put_context(org, &record)?;
    tracing::info!(org, context_id = %record.context_id, size = received.size, format = received.format, "context uploaded");
    Ok(record)
}

pub fn get(
    state: &ApiState,
    caller: &Caller,
    context_id: &str,
) -> Result<Response<Body>, ApiError> {
    let record = state
        .store
        .context(&caller.org, context_id)?
        .ok_or_else(|| ApiError::not_found(&format!("context {context_id}")))?;
    Ok(json_response(
        StatusCode::OK,
        &kiln_api::UploadedContext::from(&record),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An upload's bytes in pieces of an awkward size, as a body arrives.
    fn pieces() -> (Vec<u8>, Vec<bytes::Bytes>) {
        let whole: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let pieces = whole
            .chunks(7_919)
            .map(bytes::Bytes::copy_from_slice)
            .collect();
        (whole, pieces)
    }

    #[test]
    fn the_writer_stores_every_chunk_whole_and_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        let file = std::fs::File::create(&path).unwrap();
        let (whole, pieces) = pieces();
        // A small channel: the writer sees batches of several chunks and of one.
        let (sender, chunks) = tokio::sync::mpsc::channel(3);
        let writer = std::thread::spawn(move || write_chunks(chunks, file));
        for piece in pieces {
            sender.blocking_send(piece).unwrap();
        }
        drop(sender);
        writer.join().unwrap().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), whole);
    }

    #[test]
    fn the_hasher_gives_the_whole_contents_sha256() {
        let (whole, pieces) = pieces();
        let (sender, chunks) = tokio::sync::mpsc::channel(UPLOAD_CHUNKS_IN_FLIGHT);
        let hasher = std::thread::spawn(move || hash_chunks(chunks));
        for piece in pieces {
            sender.blocking_send(piece).unwrap();
        }
        drop(sender);
        let digest: [u8; 32] = Sha256::digest(&whole).into();
        assert_eq!(hasher.join().unwrap(), digest);
    }
}
