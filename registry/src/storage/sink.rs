//! Streaming a request body into a file while hashing it: large buffers, and the write + hash of
//! one buffer runs on a blocking thread while the next buffer fills from the network.

use std::fs::File;
use std::io::Write;

use super::hash::Hasher;
use futures::StreamExt;
use tokio::task::JoinHandle;

use super::{ByteStream, StorageError, StorageResult};

const BUF: usize = 1 << 20;

type Pending = JoinHandle<std::io::Result<(File, Hasher)>>;

/// Append all of `body` to `file`, feeding `hasher`; returns them with the byte count. On a body
/// error the caller gets `StorageError::Body` and must discard what was written.
pub async fn write_stream(
    file: File,
    hasher: Hasher,
    mut body: ByteStream,
    path: &std::path::Path,
) -> StorageResult<(File, Hasher, u64)> {
    let io_err = |e: std::io::Error| StorageError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let mut state = Some((file, hasher));
    let mut pending: Option<Pending> = None;
    let mut buf: Vec<u8> = Vec::with_capacity(BUF);
    let mut total = 0u64;

    async fn settle(p: Pending) -> std::io::Result<(File, Hasher)> {
        p.await.map_err(std::io::Error::other)?
    }

    loop {
        let next = body.next().await;
        let done = match next {
            Some(Ok(chunk)) => {
                total += chunk.len() as u64;
                buf.extend_from_slice(&chunk);
                false
            }
            Some(Err(e)) => {
                if let Some(p) = pending.take() {
                    let _ = settle(p).await;
                }
                return Err(StorageError::Body(e));
            }
            None => true,
        };
        if buf.len() >= BUF || (done && !buf.is_empty()) {
            if let Some(p) = pending.take() {
                state = Some(settle(p).await.map_err(io_err)?);
            }
            let (mut f, mut h) = state.take().expect("file is either idle or in flight");
            let data = std::mem::replace(&mut buf, Vec::with_capacity(if done { 0 } else { BUF }));
            pending = Some(tokio::task::spawn_blocking(move || {
                h.update(&data);
                f.write_all(&data)?;
                Ok((f, h))
            }));
        }
        if done {
            break;
        }
    }
    if let Some(p) = pending.take() {
        state = Some(settle(p).await.map_err(io_err)?);
    }
    let (f, h) = state.expect("file is back after the last write");
    Ok((f, h, total))
}
