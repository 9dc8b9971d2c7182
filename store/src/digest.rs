//! sha256 digests as the store uses them: parsing user input into `oci_spec` digests, and a
//! hashing reader/writer so content is digested while it streams, never in a second pass.

use std::io::{self, Read, Write};

use oci_spec::image::{Digest, DigestAlgorithm};
use sha2::{Digest as _, Sha256};

use crate::error::{Result, StoreError};

/// Parse `sha256:<64 hex>`; other algorithms are refused because the store addresses by sha256.
pub fn parse_sha256(s: &str) -> Result<Digest> {
    let d: Digest = s
        .parse()
        .map_err(|e: oci_spec::OciSpecError| StoreError::InvalidDigest {
            digest: s.to_string(),
            reason: e.to_string(),
        })?;
    if *d.algorithm() != DigestAlgorithm::Sha256 {
        return Err(StoreError::InvalidDigest {
            digest: s.to_string(),
            reason: format!("algorithm {} is not supported, only sha256", d.algorithm()),
        });
    }
    Ok(d)
}

/// Digest of a finished sha256 state.
pub fn from_hasher(h: Sha256) -> Digest {
    let hex = hex::encode(h.finalize());
    parse_sha256(&format!("sha256:{hex}")).expect("a sha256 hex string is always a valid digest")
}

pub fn sha256_of(bytes: &[u8]) -> Digest {
    let mut h = Sha256::new();
    h.update(bytes);
    from_hasher(h)
}

/// The 64 hex characters of a sha256 digest.
pub fn hex_of(d: &Digest) -> &str {
    d.digest()
}

/// Short form Docker prints for IDs: 12 hex characters.
pub fn short_id(d: &Digest) -> &str {
    &d.digest()[..12.min(d.digest().len())]
}

/// Wraps a reader and hashes everything read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R) -> Self {
        HashingReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    /// Read the rest of the stream (hashing it) and return digest and total size.
    pub fn finish(mut self) -> io::Result<(Digest, u64)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((from_hasher(self.hasher), self.count))
    }

    pub fn count(&self) -> u64 {
        self.count
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// Wraps a writer and hashes everything written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    pub fn finish(self) -> (W, Digest, u64) {
        (self.inner, from_hasher(self.hasher), self.count)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_digest() {
        assert_eq!(
            sha256_of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn rejects_other_algorithms_and_bad_hex() {
        assert!(parse_sha256("sha512:abc").is_err());
        assert!(parse_sha256("sha256:XYZ").is_err());
        assert!(parse_sha256("nonsense").is_err());
        assert!(
            parse_sha256("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                .is_ok()
        );
    }

    #[test]
    fn hashing_reader_counts_and_hashes() {
        let r = HashingReader::new(&b"hello"[..]);
        let (d, n) = r.finish().unwrap();
        assert_eq!(n, 5);
        assert_eq!(d, sha256_of(b"hello"));
    }
}
