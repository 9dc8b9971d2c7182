//! Blob uploads over plain `reqwest`: one session per blob (POST, PATCH chunks with
//! `Content-Range`, PUT `?digest=`), cross-repo mount, and resume.
//!
//! Chunks are at least [`CHUNK`] bytes (the last may be shorter), whatever the source yields,
//! or the registry's `OCI-Chunk-Min-Length` when it asks for more (up to [`MAX_CHUNK`]).
//! When a PATCH fails in transport or with a 5xx, the session's offset is read back with a GET
//! (its `Range` header) and the upload continues from there: the chunk in flight is kept in
//! memory, so a stream that cannot be re-read (gzip on the way up) resumes too. There is no
//! overall timeout; only connect and per-read limits.

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use reqwest::Method;
use reqwest::header::{CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LOCATION, RANGE};
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use super::client::Session;
use super::error::{RemoteError, Result};

pub const CHUNK: usize = 8 << 20;
/// The most a registry's `OCI-Chunk-Min-Length` can make us hold in memory per upload: a chunk is
/// kept until the registry acknowledges it, so resume works on a stream that cannot be re-read.
pub const MAX_CHUNK: usize = 64 << 20;
/// What a [`ChunkSender`] hands over at a time; the uploader joins pieces into chunks.
pub const PIECE: usize = 1 << 20;
const ATTEMPTS: u32 = 5;

/// A source of upload chunks.
pub enum Source {
    /// A file already in the blob store, read from `offset` on.
    File { path: PathBuf, offset: u64 },
    /// Pieces produced by another thread (the compressor).
    Channel(mpsc::Receiver<io::Result<Bytes>>),
}

impl Source {
    /// The next chunk: `want` bytes, or what is left when less; `None` at the end.
    async fn next(&mut self, want: usize) -> io::Result<Option<Bytes>> {
        match self {
            Source::File { path, offset } => {
                use tokio::io::{AsyncReadExt, AsyncSeekExt};
                let mut f = tokio::fs::File::open(&path).await?;
                f.seek(io::SeekFrom::Start(*offset)).await?;
                let mut buf = Vec::with_capacity(want);
                (&mut f).take(want as u64).read_to_end(&mut buf).await?;
                *offset += buf.len() as u64;
                Ok((!buf.is_empty()).then(|| Bytes::from(buf)))
            }
            Source::Channel(rx) => {
                let mut buf = Vec::new();
                while buf.len() < want {
                    match rx.recv().await.transpose()? {
                        None => break,
                        Some(piece) if buf.is_empty() && piece.len() >= want => {
                            return Ok(Some(piece));
                        }
                        Some(piece) => {
                            if buf.is_empty() {
                                buf.reserve_exact(want.max(piece.len()));
                            }
                            buf.extend_from_slice(&piece);
                        }
                    }
                }
                Ok((!buf.is_empty()).then(|| Bytes::from(buf)))
            }
        }
    }
}

/// A `Write` that gathers bytes into [`PIECE`]-sized pieces, hashes them and hands them to the
/// async uploader; used from a blocking thread.
pub struct ChunkSender {
    buf: Vec<u8>,
    tx: mpsc::Sender<io::Result<Bytes>>,
    hasher: Sha256,
    size: u64,
}

impl ChunkSender {
    pub fn new(tx: mpsc::Sender<io::Result<Bytes>>) -> Self {
        ChunkSender {
            buf: Vec::with_capacity(PIECE),
            tx,
            hasher: Sha256::new(),
            size: 0,
        }
    }

    fn send(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE));
        self.hasher.update(&chunk);
        self.size += chunk.len() as u64;
        self.tx
            .blocking_send(Ok(Bytes::from(chunk)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "upload stopped"))
    }

    /// Send what is left; returns digest and size of everything written.
    pub fn finish(mut self) -> io::Result<(String, u64)> {
        if !self.buf.is_empty() {
            self.send()?;
        }
        Ok((
            format!("sha256:{}", hex::encode(self.hasher.finalize())),
            self.size,
        ))
    }

    /// Report a failure to the uploader (it stops and returns the error).
    pub fn fail(self, e: io::Error) {
        let _ = self.tx.blocking_send(Err(e));
    }
}

impl Write for ChunkSender {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let n = data.len().min(PIECE - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() == PIECE {
            self.send()?;
        }
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// What a mount request did.
pub enum Mount {
    Mounted,
    /// The registry opened an upload session instead (202), or refused: upload it.
    NotMounted,
}

fn location(s: &Session, res: &reqwest::Response) -> Option<String> {
    res.headers()
        .get(LOCATION)
        .and_then(|l| l.to_str().ok())
        .map(|l| s.absolute(l))
}

async fn backoff(attempt: u32) {
    tokio::time::sleep(Duration::from_millis(500 << attempt.min(5))).await;
}

fn retryable(e: &RemoteError) -> bool {
    match e {
        RemoteError::Unreachable { .. } => true,
        RemoteError::Registry { detail, .. } => detail.starts_with("HTTP 5"),
        _ => false,
    }
}

/// Try to mount `digest` from `from` (another repository of the same registry).
pub async fn mount(s: &Session, digest: &str, from: &str) -> Result<Mount> {
    s.fresh().await?;
    let post = |authz: Option<reqwest::header::HeaderValue>| {
        let url = s.url("blobs/uploads/");
        // `header` appends: a second Authorization would be ignored behind the session's.
        let r = match authz {
            Some(a) => s
                .http
                .request(Method::POST, &url)
                .header(reqwest::header::AUTHORIZATION, a),
            None => s.request(Method::POST, &url),
        };
        r.query(&[("mount", digest), ("from", from)])
            .header(CONTENT_LENGTH, 0)
            .send()
    };
    let mut res = post(None).await.map_err(|e| s.unreachable(&e))?;
    // A token registry wants pull on `from` too, which the session's token does not grant:
    // answer the challenge with a token for both repositories.
    if res.status() == reqwest::StatusCode::UNAUTHORIZED
        && let Some(authz) = s.token_for(&res).await
    {
        res = post(Some(authz)).await.map_err(|e| s.unreachable(&e))?;
    }
    if res.status() == reqwest::StatusCode::CREATED {
        return Ok(Mount::Mounted);
    }
    // A 202 opened a session we do not want: cancel it (best effort).
    if res.status() == reqwest::StatusCode::ACCEPTED
        && let Some(loc) = location(s, &res)
    {
        let _ = s.request(Method::DELETE, &loc).send().await;
    }
    Ok(Mount::NotMounted)
}

/// The chunk size for a session whose POST answered with `headers`: ours, or the registry's
/// `OCI-Chunk-Min-Length` when larger (capped at [`MAX_CHUNK`]).
pub fn chunk_size(headers: &reqwest::header::HeaderMap) -> usize {
    let min = headers
        .get("oci-chunk-min-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0);
    if min > MAX_CHUNK as u64 {
        tracing::warn!(
            "registry asks for chunks of at least {min} bytes; sending {MAX_CHUNK}-byte chunks"
        );
    }
    CHUNK.max(min.min(MAX_CHUNK as u64) as usize)
}

/// Open an upload session; returns its URL and the chunk size to use.
async fn begin(s: &Session, what: &str) -> Result<(String, usize)> {
    let mut attempt = 0;
    loop {
        let r = async {
            s.fresh().await?;
            let res = s
                .request(Method::POST, &s.url("blobs/uploads/"))
                .header(CONTENT_LENGTH, 0)
                .send()
                .await
                .map_err(|e| s.unreachable(&e))?;
            if res.status() != reqwest::StatusCode::ACCEPTED {
                return Err(s.status_error(what, res).await);
            }
            let loc = location(s, &res).ok_or_else(|| RemoteError::Registry {
                what: what.into(),
                detail: "upload session has no Location".into(),
            })?;
            Ok((loc, chunk_size(res.headers())))
        }
        .await;
        match r {
            Err(e) if retryable(&e) && attempt + 1 < ATTEMPTS => {
                backoff(attempt).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// The session's URL and how many bytes it holds (from the `Range: 0-<last>` header).
async fn status(s: &Session, loc: &str, what: &str) -> Result<(String, u64)> {
    s.fresh().await?;
    let res = s
        .request(Method::GET, loc)
        .send()
        .await
        .map_err(|e| s.unreachable(&e))?;
    if !res.status().is_success() {
        return Err(s.status_error(what, res).await);
    }
    let next = location(s, &res).unwrap_or_else(|| loc.to_string());
    let offset = res
        .headers()
        .get(RANGE)
        .and_then(|r| r.to_str().ok())
        .and_then(parse_range_end)
        .unwrap_or(0);
    Ok((next, offset))
}

/// `0-N` → N + 1 bytes received. Distribution reports an empty session as `0-0` as well; a
/// resume from 0 is then refused (416) only in the one-byte case, which chunks never hit.
pub fn parse_range_end(r: &str) -> Option<u64> {
    let r = r.trim().trim_start_matches("bytes=");
    let (a, b) = r.split_once('-')?;
    let (a, b): (u64, u64) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
    if a != 0 {
        return None;
    }
    Some(if b == 0 { 0 } else { b + 1 })
}

async fn patch(s: &Session, loc: &str, start: u64, chunk: Bytes, what: &str) -> Result<String> {
    let end = start + chunk.len() as u64 - 1;
    s.fresh().await?;
    let res = s
        .request(Method::PATCH, loc)
        .header(CONTENT_RANGE, format!("{start}-{end}"))
        .header(CONTENT_LENGTH, chunk.len())
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(chunk)
        .send()
        .await
        .map_err(|e| s.unreachable(&e))?;
    if res.status() != reqwest::StatusCode::ACCEPTED {
        return Err(s.status_error(what, res).await);
    }
    Ok(location(s, &res).unwrap_or_else(|| loc.to_string()))
}

/// Upload everything `src` yields; `digest` is the expected digest, or `None` when it is only
/// known once the source is drained (then `final_digest` supplies it). Returns digest and size.
pub async fn upload<F>(
    s: &Session,
    what: &str,
    mut src: Source,
    digest: Option<&str>,
    final_digest: F,
    progress: &(dyn Fn(u64) + Send + Sync),
) -> Result<(String, u64)>
where
    F: std::future::Future<Output = Result<(String, u64)>>,
{
    let (mut loc, want) = begin(s, what).await?;
    let mut offset: u64 = 0;
    while let Some(chunk) = src
        .next(want)
        .await
        .map_err(|e| RemoteError::Other(format!("{what}: reading: {e}")))?
    {
        let chunk_start = offset;
        let chunk_end = offset + chunk.len() as u64;
        let mut attempt = 0;
        loop {
            let part = chunk.slice((offset - chunk_start) as usize..);
            match patch(s, &loc, offset, part, what).await {
                Ok(next) => {
                    loc = next;
                    progress(chunk_end - offset);
                    offset = chunk_end;
                    break;
                }
                Err(e) if retryable(&e) && attempt + 1 < ATTEMPTS => {
                    tracing::warn!("{what}: {e}; resuming");
                    backoff(attempt).await;
                    attempt += 1;
                    // Where did the registry get to? Continue from there.
                    let (next, have) = match status(s, &loc, what).await {
                        Ok(x) => x,
                        Err(e2) if retryable(&e2) => continue,
                        Err(e2) => return Err(e2),
                    };
                    loc = next;
                    if have < chunk_start || have > chunk_end {
                        return Err(RemoteError::Other(format!(
                            "{what}: cannot resume: registry holds {have} bytes, chunk was {chunk_start}-{chunk_end}"
                        )));
                    }
                    progress(have.saturating_sub(offset));
                    offset = have;
                    if offset == chunk_end {
                        break;
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }
    let (d, size) = match digest {
        Some(d) => (d.to_string(), offset),
        None => final_digest.await?,
    };
    if size != offset {
        return Err(RemoteError::Other(format!(
            "{what}: sent {offset} bytes but the source produced {size}"
        )));
    }
    let mut attempt = 0;
    loop {
        let r = async {
            s.fresh().await?;
            let res = s
                .request(Method::PUT, &loc)
                .query(&[("digest", d.as_str())])
                .header(CONTENT_LENGTH, 0)
                .send()
                .await
                .map_err(|e| s.unreachable(&e))?;
            if res.status() != reqwest::StatusCode::CREATED {
                return Err(s.status_error(what, res).await);
            }
            Ok(())
        }
        .await;
        match r {
            // Ask whether it landed before trying again: a lost answer is not a lost blob.
            Err(e) if retryable(&e) && attempt + 1 < ATTEMPTS => {
                backoff(attempt).await;
                attempt += 1;
                if s.blob_exists(&d).await.unwrap_or(false) {
                    break;
                }
            }
            Err(e) => return Err(e),
            Ok(()) => break,
        }
    }
    Ok((d, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_headers() {
        assert_eq!(parse_range_end("0-0"), Some(0));
        assert_eq!(parse_range_end("0-8388607"), Some(8 << 20));
        assert_eq!(parse_range_end("bytes=0-9"), Some(10));
        assert_eq!(parse_range_end("5-9"), None);
        assert_eq!(parse_range_end("junk"), None);
    }

    #[test]
    fn chunk_sender_rechunks_and_hashes() {
        let (tx, mut rx) = mpsc::channel(64);
        let data: Vec<u8> = (0..(2 * PIECE + 123)).map(|i| (i % 253) as u8).collect();
        let t = std::thread::spawn(move || {
            let mut w = ChunkSender::new(tx);
            for piece in data.chunks(4096) {
                w.write_all(piece).unwrap();
            }
            w.finish().unwrap()
        });
        let mut sizes = Vec::new();
        let mut all = Vec::new();
        while let Some(Ok(c)) = rx.blocking_recv() {
            sizes.push(c.len());
            all.extend_from_slice(&c);
        }
        let (d, n) = t.join().unwrap();
        assert_eq!(sizes, vec![PIECE, PIECE, 123]);
        assert_eq!(n, all.len() as u64);
        assert_eq!(d, crate::digest::sha256_of(&all).to_string());
    }

    #[test]
    fn chunk_size_honours_the_registry_minimum() {
        let h = |v: &str| {
            let mut m = reqwest::header::HeaderMap::new();
            m.insert("oci-chunk-min-length", v.parse().unwrap());
            m
        };
        assert_eq!(chunk_size(&reqwest::header::HeaderMap::new()), CHUNK);
        assert_eq!(chunk_size(&h("1024")), CHUNK);
        assert_eq!(chunk_size(&h("20971520")), 20 << 20);
        assert_eq!(chunk_size(&h("99999999999")), MAX_CHUNK);
        assert_eq!(chunk_size(&h("junk")), CHUNK);
    }

    #[tokio::test]
    async fn channel_pieces_are_joined_into_chunks_of_the_wanted_size() {
        let (tx, rx) = mpsc::channel(64);
        for n in [PIECE, PIECE, PIECE, 10] {
            tx.send(Ok(Bytes::from(vec![1u8; n]))).await.unwrap();
        }
        drop(tx);
        let mut src = Source::Channel(rx);
        let mut sizes = Vec::new();
        while let Some(c) = src.next(2 * PIECE).await.unwrap() {
            sizes.push(c.len());
        }
        assert_eq!(sizes, vec![2 * PIECE, PIECE + 10]);
    }
}
