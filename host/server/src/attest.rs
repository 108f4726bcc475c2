//! Attestations about a pushed image made by attestor plugins (the SBOM).
//!
//! The image's filesystem is rebuilt from what the registry holds — its
//! layers in order, OCI whiteouts applied — into a directory that each
//! attestor reads read-only (`/rootfs`): the attestation is about the image
//! as pushed, whichever builder pushed it, and no engine is involved. Each
//! layer streams from the registry straight into the extraction and is
//! checked against its digest before any attestor runs; the extraction
//! refuses paths that escape the directory (through `..` or a link) and
//! skips device nodes, as the context's does.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use kiln_trust::registry::{Credentials, Descriptor, Reference, RegistryError, Session};

/// Why an image's filesystem could not be rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error(transparent)]
    Registry(#[from] kiln_trust::RegistryError),
    #[error("{image}: layer {layer}: {message}")]
    Layer {
        image: String,
        layer: String,
        message: String,
    },
    #[error(
        "{image}: the image is larger than {limit} bytes unpacked, more than an attestor is given"
    )]
    TooLarge { image: String, limit: u64 },
}

/// What was rebuilt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rootfs {
    pub layers: usize,
    /// Bytes written (regular files).
    pub bytes: u64,
    /// Layers whose download failed once and was tried again.
    pub retried: u32,
}

/// Largest image (its compressed layers, and its files unpacked) rebuilt
/// for attestors.
pub const MAX_IMAGE_BYTES: u64 = 16 << 30;

/// Rebuild `image` (`host/path@sha256:…`) for `platform` into `dest` (an
/// empty directory). A layer that fails its digest check leaves `dest`
/// half made: the caller removes it.
pub async fn rootfs_from_registry(
    image: &str,
    platform: Option<&str>,
    credentials: Option<Credentials<'_>>,
    dest: &Path,
) -> Result<Rootfs, RootfsError> {
    let parsed = Reference::parse(image)?;
    let mut session = parsed.pull_session(credentials);
    let manifest = session.image_manifest(&parsed.wanted, platform).await?;
    let mut written = 0u64;
    let mut retried = 0;
    for layer in &manifest.manifest.layers {
        let failed = |message: String| RootfsError::Layer {
            image: image.to_string(),
            layer: layer.digest.clone(),
            message,
        };
        let budget = MAX_IMAGE_BYTES - written;
        let mut attempt = apply_streamed(&mut session, layer, dest, budget).await;
        // A download cut short (a registry restarting, a dropped
        // connection) is tried once more: applying a layer again over its
        // own partial result gives the same files.
        if let Err(LayerAttemptError::Download(e)) = &attempt {
            tracing::warn!(image, layer = %layer.digest, "layer download failed, trying once more: {e}");
            retried += 1;
            attempt = apply_streamed(&mut session, layer, dest, budget).await;
        }
        match attempt {
            Ok(bytes) => written += bytes,
            Err(LayerAttemptError::Download(e)) => return Err(e.into()),
            Err(LayerAttemptError::Layer(LayerError::TooLarge)) => {
                return Err(RootfsError::TooLarge {
                    image: image.to_string(),
                    limit: MAX_IMAGE_BYTES,
                })
            }
            Err(LayerAttemptError::Layer(LayerError::Other(message))) => {
                return Err(failed(message))
            }
        }
    }
    Ok(Rootfs {
        layers: manifest.manifest.layers.len(),
        bytes: written,
        retried,
    })
}

/// Why one attempt at a layer failed: its download (worth another try) or
/// its contents.
enum LayerAttemptError {
    Download(RegistryError),
    Layer(LayerError),
}

/// Stream `layer` from the registry straight into its extraction onto
/// `dest` (on a blocking thread): nothing of it is kept on disk or held
/// whole in memory. Answers the bytes of regular files written.
async fn apply_streamed(
    session: &mut Session<'_>,
    layer: &Descriptor,
    dest: &Path,
    budget: u64,
) -> Result<u64, LayerAttemptError> {
    let (chunks, reader) = ChannelReader::pair();
    let media_type = layer.media_type.clone();
    let target = dest.to_path_buf();
    let extraction =
        tokio::task::spawn_blocking(move || apply_layer(reader, &media_type, &target, budget));
    let streamed = session
        .blob_stream(&layer.digest, MAX_IMAGE_BYTES, |chunk| {
            let chunks = chunks.clone();
            async move {
                // A tar ends before its padding, so the extraction may be
                // done (or failed, said below) before the blob is: the
                // rest is still read, for the digest check.
                let _ = chunks.send(chunk).await;
                Ok(())
            }
        })
        .await;
    drop(chunks);
    let applied = extraction.await.map_err(|e| {
        LayerAttemptError::Layer(LayerError::Other(format!("the extraction stopped: {e}")))
    })?;
    // A download that failed ended the extraction's stream early, so the
    // extraction's own error ("failed to unpack …") is only its echo: the
    // download's is the cause.
    streamed.map_err(LayerAttemptError::Download)?;
    applied.map_err(LayerAttemptError::Layer)
}

/// A blocking `Read` (for the extraction's thread) over chunks an async
/// task sends: the layer's bytes as they arrive. The senders dropped is
/// the end of the stream.
struct ChannelReader {
    chunks: tokio::sync::mpsc::Receiver<bytes::Bytes>,
    current: bytes::Bytes,
}

impl ChannelReader {
    /// A sender and its reader; a few chunks in flight at most, so a slow
    /// extraction slows the download (the sender awaits) instead of
    /// buffering it or blocking the runtime.
    fn pair() -> (tokio::sync::mpsc::Sender<bytes::Bytes>, Self) {
        let (sender, chunks) = tokio::sync::mpsc::channel(16);
        let reader = ChannelReader {
            chunks,
            current: bytes::Bytes::new(),
        };
        (sender, reader)
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if !self.current.is_empty() || buf.is_empty() {
                let n = buf.len().min(self.current.len());
                buf[..n].copy_from_slice(&self.current.split_to(n));
                return Ok(n);
            }
            match self.chunks.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
    }
}

enum LayerError {
    TooLarge,
    Other(String),
}

impl From<std::io::Error> for LayerError {
    /// The whole chain: the tar reader's errors say which file ("failed to
    /// unpack `…`") and keep why (the OS's error) as their source.
    fn from(e: std::io::Error) -> Self {
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        LayerError::Other(message)
    }
}

/// Apply one layer (a tar, gzip-compressed or not) onto `dest`: whiteouts
/// remove what lower layers put there; everything else is unpacked.
/// Answers the bytes of regular files written.
fn apply_layer(
    layer: impl Read,
    media_type: &str,
    dest: &Path,
    budget: u64,
) -> Result<u64, LayerError> {
    let mut reader = std::io::BufReader::new(layer);
    let mut magic = [0u8; 4];
    let peeked = {
        use std::io::BufRead;
        let buffered = reader.fill_buf()?;
        let n = buffered.len().min(4);
        magic[..n].copy_from_slice(&buffered[..n]);
        n
    };
    let stream: Box<dyn Read> = if peeked >= 2 && magic[..2] == [0x1f, 0x8b] {
        Box::new(flate2::read::GzDecoder::new(reader))
    } else if peeked == 4 && magic == [0x28, 0xb5, 0x2f, 0xfd] || media_type.contains("zstd") {
        return Err(LayerError::Other(
            "zstd-compressed layers are not supported yet (push with gzip)".into(),
        ));
    } else {
        Box::new(reader)
    };
    let mut archive = tar::Archive::new(stream);
    archive.set_preserve_permissions(false);
    archive.set_preserve_mtime(false);
    archive.set_unpack_xattrs(false);
    archive.set_overwrite(true);
    let mut written = 0u64;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let Some(relative) = clean(&path) else {
            continue;
        };
        let name = relative
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(hidden) = name.strip_prefix(".wh.") {
            // The whiteout's own path: every directory above it checked.
            let Some(marker) = inside(dest, &relative) else {
                continue;
            };
            let parent = marker.parent().unwrap_or(dest);
            if hidden == ".wh..opq" {
                // An opaque directory: nothing below it from lower layers.
                if let Ok(children) = std::fs::read_dir(parent) {
                    for child in children.flatten() {
                        remove(&child.path());
                    }
                }
            } else {
                remove(&parent.join(hidden));
            }
            continue;
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink() || kind.is_hard_link()) {
            // Devices, fifos: not files an attestor reads.
            continue;
        }
        if let Some(target) = inside(dest, &relative) {
            // A later layer replaces what is there, whatever its kind.
            if let Ok(existing) = std::fs::symlink_metadata(&target) {
                if !(existing.is_dir() && kind.is_dir()) {
                    remove(&target);
                }
            }
        }
        if kind.is_file() {
            written += entry.header().size()?;
            if written > budget {
                return Err(LayerError::TooLarge);
            }
        }
        // unpack_in refuses a path whose parent leads out of `dest`.
        entry.unpack_in(dest)?;
    }
    Ok(written)
}

/// `path` as plain components (no `..`, no root); `None` for the archive's
/// own root entry or an escape.
fn clean(path: &Path) -> Option<PathBuf> {
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    (!clean.as_os_str().is_empty()).then_some(clean)
}

/// `dest/relative`, when no directory above it is a link (which could
/// lead out of `dest`); the last component may be one (it is replaced or
/// removed, never followed).
fn inside(dest: &Path, relative: &Path) -> Option<PathBuf> {
    let mut current = dest.to_path_buf();
    let mut components = relative.components().peekable();
    while let Some(component) = components.next() {
        current.push(component);
        let is_link = std::fs::symlink_metadata(&current).is_ok_and(|m| m.file_type().is_symlink());
        if is_link && components.peek().is_some() {
            return None;
        }
    }
    Some(current)
}

fn remove(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, Option<&[u8]>)], gzip: bool) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, contents) in entries {
            let mut header = tar::Header::new_gnu();
            match contents {
                Some(bytes) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(bytes.len() as u64);
                    header.set_mode(0o644);
                    header.set_cksum();
                    builder.append_data(&mut header, path, *bytes).unwrap();
                }
                None => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    header.set_mode(0o755);
                    header.set_cksum();
                    builder.append_data(&mut header, path, &[][..]).unwrap();
                }
            }
        }
        let tar = builder.into_inner().unwrap();
        if !gzip {
            return tar;
        }
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut encoder, &tar).unwrap();
        encoder.finish().unwrap()
    }

    fn apply(dest: &Path, bytes: Vec<u8>) -> u64 {
        match apply_layer(
            &bytes[..],
            "application/vnd.oci.image.layer.v1.tar",
            dest,
            1 << 20,
        ) {
            Ok(written) => written,
            Err(LayerError::TooLarge) => panic!("too large"),
            Err(LayerError::Other(e)) => panic!("{e}"),
        }
    }

    /// A FAKE registry, for a fault the real one cannot be made to
    /// produce on cue: a blob's body cut off half-way (a dropped
    /// connection). It serves one image manifest and its one layer; the
    /// layer's first `cut` answers stop after half the body.
    async fn registry_that_cuts_blobs(layer: Vec<u8>, cut: usize) -> (String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let layer_digest = kiln_trust::registry::sha256_digest(&layer);
        let config = b"{}".to_vec();
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "size": config.len(), "digest": kiln_trust::registry::sha256_digest(&config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                        "size": layer.len(), "digest": layer_digest}],
        }))
        .unwrap();
        let manifest_digest = kiln_trust::registry::sha256_digest(&manifest);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cuts = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(cut));
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let (manifest, layer, cuts) = (manifest.clone(), layer.clone(), cuts.clone());
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = socket.read(&mut buf).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        request.extend_from_slice(&buf[..n]);
                    }
                    let line = String::from_utf8_lossy(&request)
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    let (body, content_type) = if line.contains("/manifests/") {
                        (manifest, "application/vnd.oci.image.manifest.v1+json")
                    } else {
                        (layer, "application/octet-stream")
                    };
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    let whole = !line.contains("/blobs/")
                        || cuts
                            .fetch_update(
                                std::sync::atomic::Ordering::SeqCst,
                                std::sync::atomic::Ordering::SeqCst,
                                |n| n.checked_sub(1),
                            )
                            .is_err();
                    let sent = if whole {
                        &body[..]
                    } else {
                        &body[..body.len() / 2]
                    };
                    let _ = socket.write_all(sent).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        (
            format!("127.0.0.1:{}/app@{manifest_digest}", addr.port()),
            layer_digest,
        )
    }

    #[tokio::test]
    async fn a_layer_download_cut_short_is_tried_once_more_and_then_named_as_the_cause() {
        let payload = vec![7u8; 256 << 10];
        let bytes = layer(&[("app/", None), ("app/data", Some(&payload))], false);

        // Cut once: the second attempt rebuilds the whole file.
        let (image, _) = registry_that_cuts_blobs(bytes.clone(), 1).await;
        let dest = tempfile::tempdir().unwrap();
        let rootfs = rootfs_from_registry(&image, None, None, dest.path())
            .await
            .unwrap();
        assert_eq!(rootfs.retried, 1);
        assert_eq!(
            std::fs::read(dest.path().join("app/data")).unwrap(),
            payload
        );

        // Cut every time: the error is the download's, not the extraction's
        // echo of it ("failed to unpack …").
        let (image, layer_digest) = registry_that_cuts_blobs(bytes, usize::MAX).await;
        let dest = tempfile::tempdir().unwrap();
        let error = rootfs_from_registry(&image, None, None, dest.path())
            .await
            .expect_err("a download that never completes")
            .to_string();
        assert!(
            error.contains(&layer_digest)
                && error.contains("cannot read the blob")
                && !error.contains("failed to unpack"),
            "{error}"
        );
    }

    #[test]
    fn layers_stack_with_whiteouts_and_opaque_directories() {
        let dest = tempfile::tempdir().unwrap();
        let d = dest.path();
        let written = apply(
            d,
            layer(
                &[
                    ("etc/", None),
                    ("etc/os-release", Some(b"ID=debian\n")),
                    ("etc/gone", Some(b"x")),
                    ("var/lib/dpkg/status", Some(b"Package: a\n")),
                    ("opaque/old", Some(b"old")),
                ],
                true,
            ),
        );
        assert_eq!(written, 10 + 1 + 11 + 3);
        apply(
            d,
            layer(
                &[
                    ("etc/.wh.gone", Some(b"")),
                    ("opaque/.wh..wh..opq", Some(b"")),
                    ("opaque/new", Some(b"new")),
                    ("var/lib/dpkg/status", Some(b"Package: b\n")),
                ],
                false,
            ),
        );
        assert!(!d.join("etc/gone").exists());
        assert!(d.join("etc/os-release").exists());
        assert!(!d.join("opaque/old").exists());
        assert_eq!(std::fs::read(d.join("opaque/new")).unwrap(), b"new");
        assert_eq!(
            std::fs::read(d.join("var/lib/dpkg/status")).unwrap(),
            b"Package: b\n"
        );
    }

    #[test]
    fn a_streamed_layer_reads_as_its_chunks_arrive() {
        let bytes = layer(&[("a/b", Some(b"hello"))], true);
        let (sender, reader) = ChannelReader::pair();
        let feeder = std::thread::spawn(move || {
            for chunk in bytes.chunks(7) {
                // The reader may be done (the archive's end read) before
                // the trailing padding is sent, and is dropped then: CI
                // saw this send fail on a busy machine.
                if sender
                    .blocking_send(bytes::Bytes::copy_from_slice(chunk))
                    .is_err()
                {
                    break;
                }
            }
        });
        let dest = tempfile::tempdir().unwrap();
        let written = match apply_layer(reader, "", dest.path(), 1 << 20) {
            Ok(written) => written,
            Err(_) => panic!("the layer applies"),
        };
        feeder.join().unwrap();
        assert_eq!(written, 5);
        assert_eq!(std::fs::read(dest.path().join("a/b")).unwrap(), b"hello");
        // Over its budget, a layer stops.
        let big = layer(&[("big", Some(&[0u8; 4096][..]))], false);
        assert!(matches!(
            apply_layer(&big[..], "", dest.path(), 1024),
            Err(LayerError::TooLarge)
        ));
    }

    #[test]
    fn a_layer_cannot_reach_outside_through_a_link_or_dots() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("keep"), "mine").unwrap();
        let dest = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dest.path().join("out")).unwrap();
        let hostile = layer(
            &[("out/.wh.keep", Some(b"")), ("out/planted", Some(b"x"))],
            false,
        );
        // The whiteout is ignored and the write refused.
        assert!(apply_layer(&hostile[..], "", dest.path(), 1 << 20).is_err());
        assert!(outside.path().join("keep").exists());
        assert!(!outside.path().join("planted").exists());
        assert_eq!(clean(Path::new("../etc/passwd")), None);
        assert_eq!(clean(Path::new("./a/b")), Some(PathBuf::from("a/b")));
    }
}
