//! Hashing content in the algorithm of the digest it must match: sha256 (the default, and what
//! an upload session hashes as its chunks arrive) or sha512.

use oci_spec::image::{Digest, DigestAlgorithm};
use sha2::{Digest as _, Sha256, Sha512};

use crate::endpoint::parse_digest;

#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    Sha512(Sha512),
}

impl Hasher {
    /// A hasher for digests of `alg`; sha256 for any algorithm the registry does not address
    /// (the digest it computes then matches none of those).
    pub fn new(alg: &DigestAlgorithm) -> Hasher {
        match alg {
            DigestAlgorithm::Sha512 => Hasher::Sha512(Sha512::new()),
            _ => Hasher::Sha256(Sha256::new()),
        }
    }

    pub fn for_digest(d: &Digest) -> Hasher {
        Hasher::new(d.algorithm())
    }

    pub fn algorithm(&self) -> DigestAlgorithm {
        match self {
            Hasher::Sha256(_) => DigestAlgorithm::Sha256,
            Hasher::Sha512(_) => DigestAlgorithm::Sha512,
        }
    }

    pub fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha512(h) => h.update(b),
        }
    }

    pub fn finish(self) -> Digest {
        let (alg, hex) = match self {
            Hasher::Sha256(h) => ("sha256", hex::encode(h.finalize())),
            Hasher::Sha512(h) => ("sha512", hex::encode(h.finalize())),
        };
        parse_digest(&format!("{alg}:{hex}")).expect("a hash in hex is a valid digest")
    }
}

/// The digest `bytes` have in `alg`.
pub fn digest_of(alg: &DigestAlgorithm, bytes: &[u8]) -> Digest {
    let mut h = Hasher::new(alg);
    h.update(bytes);
    h.finish()
}

/// A digest from the hex name a file or key is stored under, its algorithm told by its length
/// (64 hex characters: sha256, 128: sha512).
pub fn digest_from_hex(hex: &str) -> Option<Digest> {
    let alg = match hex.len() {
        64 => "sha256",
        128 => "sha512",
        _ => return None,
    };
    parse_digest(&format!("{alg}:{hex}")).ok()
}

/// The directory (or key) component naming `d`'s algorithm.
pub fn alg_dir(d: &Digest) -> &'static str {
    match d.algorithm() {
        DigestAlgorithm::Sha512 => "sha512",
        _ => "sha256",
    }
}

/// The algorithms blobs and manifests may be stored under, as their directory names.
pub const ALG_DIRS: [&str; 2] = ["sha256", "sha512"];
