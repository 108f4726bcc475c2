//! Files read and written at explicit offsets (`pread`/`pwrite`).
//!
//! Why: under wasmtime-wasi, a file's *stream* reads and writes (what
//! `std::fs::File`'s `read` and `write` become in a WASI component) each
//! hop to a blocking thread and back, whatever the host allows. Positional
//! reads and writes run on the calling thread when the host lets plugins
//! block (Kiln's does). Unpacking 20,000 small files makes 40,000 such
//! calls: the hop was most of the time.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};

/// A file with its own position, read and written with `pread`/`pwrite`.
pub(crate) struct PositionalFile {
    file: File,
    position: u64,
}

impl PositionalFile {
    pub(crate) fn new(file: File) -> Self {
        PositionalFile { file, position: 0 }
    }
}

impl Read for PositionalFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = read_at(&self.file, buf, self.position)?;
        self.position += n as u64;
        Ok(n)
    }
}

impl Write for PositionalFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = write_at(&self.file, buf, self.position)?;
        self.position += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for PositionalFile {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(offset) => Some(offset),
            SeekFrom::Current(delta) => self.position.checked_add_signed(delta),
            SeekFrom::End(delta) => self.file.metadata()?.len().checked_add_signed(delta),
        };
        self.position = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            )
        })?;
        Ok(self.position)
    }
}

/// A [`PositionalFile`] read through a window that survives seeks: a zip
/// reader seeks to every entry's header, and `BufReader` drops its buffer
/// on every seek (20,000 entries re-read 256 KiB each); here a seek that
/// lands inside the window costs nothing.
pub(crate) struct WindowedReader {
    /// The file, whose position is where the next read starts.
    file: PositionalFile,
    window: Vec<u8>,
    /// The file offset of `window[0]`.
    window_start: u64,
}

impl WindowedReader {
    pub(crate) fn new(file: File, capacity: usize) -> Self {
        WindowedReader {
            file: PositionalFile::new(file),
            window: Vec::with_capacity(capacity),
            window_start: 0,
        }
    }

    /// The buffered bytes from the file's position on, if it is inside the
    /// window.
    fn buffered(&self) -> Option<&[u8]> {
        let skip = self.file.position.checked_sub(self.window_start)?;
        let skip = usize::try_from(skip).ok()?;
        self.window.get(skip..).filter(|rest| !rest.is_empty())
    }
}

impl Read for WindowedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.buffered().is_none() {
            let capacity = self.window.capacity();
            if buf.len() >= capacity {
                // Bigger than the window: straight into the caller's buffer.
                return self.file.read(buf);
            }
            self.window.resize(capacity, 0);
            let n = read_at(&self.file.file, &mut self.window, self.file.position)?;
            self.window.truncate(n);
            self.window_start = self.file.position;
            if n == 0 {
                return Ok(0);
            }
        }
        let rest = self.buffered().unwrap_or_default();
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.file.position += n as u64;
        Ok(n)
    }
}

impl Seek for WindowedReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.file.seek(to)
    }
}

#[cfg(unix)]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::read_at(file, buf, offset)
}

#[cfg(unix)]
fn write_at(file: &File, buf: &[u8], offset: u64) -> io::Result<usize> {
    std::os::unix::fs::FileExt::write_at(file, buf, offset)
}

// std's `std::os::wasi::fs::FileExt` is unstable; wasi-libc's `pread` and
// `pwrite` are the same calls.
#[cfg(target_os = "wasi")]
fn read_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let offset = i64::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
    // SAFETY: the fd is open for the borrow of `file`; `buf` is valid for
    // `buf.len()` writable bytes.
    let n = unsafe { libc::pread(file.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), offset) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

#[cfg(target_os = "wasi")]
fn write_at(file: &File, buf: &[u8], offset: u64) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    let offset = i64::try_from(offset).map_err(|_| io::Error::other("offset too large"))?;
    // SAFETY: the fd is open for the borrow of `file`; `buf` is valid for
    // `buf.len()` readable bytes.
    let n = unsafe { libc::pwrite(file.as_raw_fd(), buf.as_ptr().cast(), buf.len(), offset) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

// Elsewhere (no positional calls in std): the file's own position.
#[cfg(not(any(unix, target_os = "wasi")))]
fn read_at(mut file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    file.seek(SeekFrom::Start(offset))?;
    file.read(buf)
}

#[cfg(not(any(unix, target_os = "wasi")))]
fn write_at(mut file: &File, buf: &[u8], offset: u64) -> io::Result<usize> {
    file.seek(SeekFrom::Start(offset))?;
    file.write(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_writes_and_seeks_like_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut out = PositionalFile::new(File::create(&path).unwrap());
        out.write_all(b"hello ").unwrap();
        out.write_all(b"world").unwrap();
        drop(out);
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");

        let mut input = PositionalFile::new(File::open(&path).unwrap());
        assert_eq!(input.seek(SeekFrom::End(-5)).unwrap(), 6);
        let mut tail = String::new();
        input.read_to_string(&mut tail).unwrap();
        assert_eq!(tail, "world");
        assert_eq!(input.seek(SeekFrom::Current(-11)).unwrap(), 0);
        let mut head = [0u8; 5];
        input.read_exact(&mut head).unwrap();
        assert_eq!(&head, b"hello");
        assert!(input.seek(SeekFrom::Current(-6)).is_err());
    }

    #[test]
    fn a_windowed_reader_reads_the_same_bytes_wherever_it_seeks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let mut reader = WindowedReader::new(File::open(&path).unwrap(), 64);
        // Inside the window, behind it, past it, bigger than it, at the end.
        for (at, len) in [
            (0, 10),
            (5, 20),
            (3, 2),
            (500, 64),
            (470, 40),
            (1000, 300),
            (9990, 50),
        ] {
            assert_eq!(reader.seek(SeekFrom::Start(at)).unwrap(), at);
            let mut got = vec![0u8; len];
            let mut filled = 0;
            while filled < len {
                match reader.read(&mut got[filled..]).unwrap() {
                    0 => break,
                    n => filled += n,
                }
            }
            let end = (at as usize + len).min(bytes.len());
            assert_eq!(
                &got[..filled],
                &bytes[at as usize..end],
                "at {at}, {len} bytes"
            );
        }
        assert_eq!(reader.seek(SeekFrom::End(-1)).unwrap(), 9999);
        assert_eq!(reader.seek(SeekFrom::Current(-9999)).unwrap(), 0);
    }
}
