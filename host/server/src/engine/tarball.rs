//! Stream a directory to the daemon as a tar, without holding it in memory.

use std::io::{self, Write};
use std::path::PathBuf;

use bytes::Bytes;
use tokio::sync::mpsc;

const CHUNK: usize = 64 * 1024;

/// A `Write` that hands full chunks to an async channel. Runs on a blocking
/// thread; `blocking_send` gives backpressure when the daemon reads slowly.
struct ChannelWriter {
    buffer: Vec<u8>,
    tx: mpsc::Sender<io::Result<Bytes>>,
}

impl ChannelWriter {
    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(
            &mut self.buffer,
            Vec::with_capacity(CHUNK),
        ));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the engine stopped reading"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= CHUNK {
            self.send_buffer()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

/// The directory as a stream of tar chunks. Entries get deterministic metadata (owner 0,
/// fixed times, 0644/0755 modes) so identical contexts hit the build cache.
/// Where a builder's generated Dockerfile goes in the tar.
pub const GENERATED_DOCKERFILE: &str = ".kiln-generated/Dockerfile";

pub fn stream_directory(
    dir: PathBuf,
    generated_dockerfile: Option<String>,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(8);
    tokio::task::spawn_blocking(move || {
        let error_tx = tx.clone();
        let writer = ChannelWriter {
            buffer: Vec::with_capacity(CHUNK),
            tx,
        };
        let mut builder = tar::Builder::new(writer);
        builder.mode(tar::HeaderMode::Deterministic);
        builder.follow_symlinks(false);
        let result = builder
            .append_dir_all(".", &dir)
            .and_then(|_| match &generated_dockerfile {
                Some(text) => {
                    let mut header = tar::Header::new_gnu();
                    header.set_size(text.len() as u64);
                    header.set_mode(0o644);
                    header.set_cksum();
                    builder.append_data(&mut header, GENERATED_DOCKERFILE, text.as_bytes())
                }
                None => Ok(()),
            })
            .and_then(|_| builder.into_inner())
            .and_then(|mut w| w.flush());
        if let Err(e) = result {
            let _ = error_tx.blocking_send(Err(e));
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
