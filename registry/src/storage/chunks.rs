//! A stored blob as a response body: `len` bytes from `start`, in chunks of up to [`CHUNK`] bytes.
//!
//! Each chunk is one trip to the blocking pool that reads straight into the buffer hyper then
//! writes to the socket: one copy out of the page cache, no intermediate buffer, no zeroing, and
//! no blocking thread held while a slow client drains its socket (the pool is small and shared
//! with uploads). `tokio::fs::File` behind a `ReaderStream` copied every byte twice in user space
//! (its own buffer, then the stream's) in 256 KiB steps; see bench/RESULTS.md for what this
//! changed. `sendfile(2)` would skip the remaining copy but needs the raw socket, which hyper
//! does not hand out.

use std::fs::File;
use std::io::{self, Read};

use bytes::Bytes;

use super::ByteStream;

/// Bytes per body chunk: big enough that the per-chunk cost (a task hop, an allocation) vanishes
/// next to the copy, small enough that a few hundred concurrent downloads stay within memory
/// (hyper holds at most a chunk or two per connection).
pub const CHUNK: usize = 1 << 20;

/// `file`, positioned at `start`, as a stream of exactly `len` bytes. A file shorter than that
/// ends the stream with `UnexpectedEof`, so a client never takes a short body for a whole one.
pub fn file_chunks(file: File, start: u64, len: u64) -> ByteStream {
    Box::pin(futures::stream::try_unfold(
        (Some(file), start, len),
        |(file, pos, left)| async move {
            let Some(mut file) = file.filter(|_| left > 0) else {
                return Ok(None);
            };
            let want = left.min(CHUNK as u64);
            let (file, buf) = tokio::task::spawn_blocking(move || {
                let mut buf = Vec::with_capacity(want as usize);
                // `read_to_end` fills the spare capacity without initialising it first.
                (&mut file).take(want).read_to_end(&mut buf)?;
                Ok::<_, io::Error>((file, buf))
            })
            .await
            .map_err(io::Error::other)??;
            if (buf.len() as u64) < want {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "blob ends at byte {} of {}",
                        pos + buf.len() as u64,
                        pos + left
                    ),
                ));
            }
            let n = buf.len() as u64;
            Ok(Some((Bytes::from(buf), (Some(file), pos + n, left - n))))
        },
    ))
}

#[cfg(test)]
mod tests {
    use std::io::{Seek, SeekFrom, Write};

    use futures::TryStreamExt;

    use super::*;

    fn blob(len: usize) -> (tempfile::NamedTempFile, Vec<u8>) {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 251) as u8).collect();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&data).unwrap();
        (f, data)
    }

    async fn collect(f: &tempfile::NamedTempFile, start: u64, len: u64) -> io::Result<Vec<Bytes>> {
        let mut file = f.reopen().unwrap();
        file.seek(SeekFrom::Start(start)).unwrap();
        file_chunks(file, start, len).try_collect().await
    }

    #[tokio::test]
    async fn whole_blobs_and_ranges_come_back_exactly_in_large_chunks() {
        let size = 2 * CHUNK + 12345;
        let (f, data) = blob(size);
        let chunks = collect(&f, 0, size as u64).await.unwrap();
        let sizes: Vec<usize> = chunks.iter().map(Bytes::len).collect();
        assert_eq!(sizes, [CHUNK, CHUNK, 12345]);
        assert_eq!(chunks.concat(), data);

        for (start, len) in [(0, 1), (1, CHUNK), (CHUNK - 3, 7), (size - 1, 1), (5, 0)] {
            let got = collect(&f, start as u64, len as u64)
                .await
                .unwrap()
                .concat();
            assert_eq!(got, data[start..start + len], "{start}+{len}");
        }
        assert!(collect(&f, 0, 0).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_file_shorter_than_promised_is_an_error_not_a_short_body() {
        let (f, _) = blob(1000);
        let e = collect(&f, 0, 2000).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    }
}
