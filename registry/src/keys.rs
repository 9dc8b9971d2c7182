//! Key material for bearer tokens: the trusted public keys tokens are checked against (a PEM
//! bundle of certificates or public keys, each with libtrust's key ID of its SPKI), and the
//! signing key of the built-in token server with the claim set it signs. Just enough DER is
//! read and written here to get at an SPKI (no X.509 chain walking).

use std::path::{Path, PathBuf};

use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use serde::Serialize;

use crate::scope::Access;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: no RSA or EC public key or certificate in it (PEM expected)")]
    NoKeys { path: PathBuf },
    #[error("{path}: not an RSA or EC (P-256, P-384) private key in PEM (PKCS#8, PKCS#1 or SEC1)")]
    BadPrivateKey { path: PathBuf },
}

/// The claims the built-in token server writes (distribution's `ClaimSet`).
#[derive(Debug, Serialize)]
pub struct Claims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    pub access: Vec<Access>,
}

/// A key tokens may be signed with, and its libtrust key ID when its SPKI could be read.
#[derive(Clone)]
pub struct TrustedKey {
    pub kid: Option<String>,
    pub key: DecodingKey,
}

impl std::fmt::Debug for TrustedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedKey")
            .field("kid", &self.kid)
            .finish()
    }
}

/// PEM blocks (`-----BEGIN X-----` … `-----END X-----`) of a file, with their text.
pub(crate) fn pem_blocks(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let Some(label_end) = after.find("-----") else {
            break;
        };
        let label = after[..label_end].to_string();
        let end_marker = format!("-----END {label}-----");
        let Some(end) = after.find(&end_marker) else {
            break;
        };
        let block_end = start + 11 + end + end_marker.len();
        out.push((label, rest[start..block_end].to_string()));
        rest = &rest[block_end..];
    }
    out
}

pub(crate) fn read(path: &Path) -> Result<String, TokenError> {
    std::fs::read_to_string(path).map_err(|source| TokenError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The public keys of every certificate (or public key) in a PEM bundle, with their key IDs.
pub fn load_public_keys(path: &Path) -> Result<Vec<TrustedKey>, TokenError> {
    let text = read(path)?;
    let keys: Vec<TrustedKey> = pem_blocks(&text)
        .into_iter()
        .filter_map(|(label, block)| {
            let b = block.as_bytes();
            let key = match label.as_str() {
                "CERTIFICATE" | "PUBLIC KEY" | "RSA PUBLIC KEY" => DecodingKey::from_rsa_pem(b)
                    .or_else(|_| DecodingKey::from_ec_pem(b))
                    .ok()?,
                _ => return None,
            };
            let der = pem_der(&block)?;
            let spki = match label.as_str() {
                "CERTIFICATE" => cert_spki(&der).map(<[u8]>::to_vec),
                "PUBLIC KEY" => Some(der),
                _ => Some(rsa_spki(&der)),
            };
            Some(TrustedKey {
                kid: spki.map(|s| key_id(&s)),
                key,
            })
        })
        .collect();
    if keys.is_empty() {
        return Err(TokenError::NoKeys {
            path: path.to_path_buf(),
        });
    }
    Ok(keys)
}

/// The DER inside one PEM block.
pub(crate) fn pem_der(block: &str) -> Option<Vec<u8>> {
    let body: String = block
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// A DER element: (tag, whole element, contents, what follows it).
type DerElement<'a> = (u8, &'a [u8], &'a [u8], &'a [u8]);

/// One DER element at the start of `der`.
fn der_element(der: &[u8]) -> Option<DerElement<'_>> {
    let tag = *der.first()?;
    let first = *der.get(1)?;
    let (len, header) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let len = der
            .get(2..2 + n)?
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, 2 + n)
    };
    let end = header.checked_add(len)?;
    let whole = der.get(..end)?;
    Some((tag, whole, &whole[header..], &der[end..]))
}

/// The SubjectPublicKeyInfo of an X.509 certificate (DER): the seventh element of
/// `tbsCertificate` counting the optional `[0]` version, the sixth without it.
pub(crate) fn cert_spki(der: &[u8]) -> Option<&[u8]> {
    let (_, _, cert, _) = der_element(der)?;
    let (_, _, tbs, _) = der_element(cert)?;
    let mut rest = tbs;
    if rest.first() == Some(&0xa0) {
        rest = der_element(rest)?.3;
    }
    // serialNumber, signature, issuer, validity, subject
    for _ in 0..5 {
        rest = der_element(rest)?.3;
    }
    let (tag, spki, _, _) = der_element(rest)?;
    (tag == 0x30).then_some(spki)
}

/// The built-in token server's private key, and its public half (trusted by the verifier too).
pub struct SigningKey {
    pub alg: Algorithm,
    pub key: EncodingKey,
    pub public: DecodingKey,
    /// libtrust's key ID of the public key, sent as `kid`: distribution looks the signing key
    /// up by it among its root certificates' keys, so it trusts our tokens too.
    pub kid: String,
}

/// DER length octets.
fn der_len(n: usize) -> Vec<u8> {
    match n {
        0..=0x7f => vec![n as u8],
        0x80..=0xff => vec![0x81, n as u8],
        _ => vec![0x82, (n >> 8) as u8, n as u8],
    }
}

/// SubjectPublicKeyInfo of an RSA key given as PKCS#1 `RSAPublicKey`.
fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    // AlgorithmIdentifier { rsaEncryption, NULL }
    const ALG: &[u8] = &[
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0x03];
    bits.extend(der_len(pkcs1.len() + 1));
    bits.push(0);
    bits.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    out.extend(der_len(ALG.len() + bits.len()));
    out.extend_from_slice(ALG);
    out.extend(bits);
    out
}

/// SubjectPublicKeyInfo of a P-256 or P-384 key given as its uncompressed point.
fn ec_spki(point: &[u8], alg: Algorithm) -> Vec<u8> {
    const P256: &[u8] = &[
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
    ];
    const P384: &[u8] = &[
        0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05,
        0x2b, 0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
    ];
    let mut out = if alg == Algorithm::ES384 { P384 } else { P256 }.to_vec();
    out.extend_from_slice(point);
    out
}

/// libtrust's key ID: the first 240 bits of the SPKI's sha256 in base32, in groups of four
/// joined by `:` (`ABCD:EFGH:…`, 12 groups).
pub fn key_id(spki: &[u8]) -> String {
    use sha2::Digest as _;
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let hash = sha2::Sha256::digest(spki);
    let mut chars = String::with_capacity(48);
    // 30 bytes = 48 groups of 5 bits, no padding.
    for chunk in hash[..30].chunks(5) {
        let n = chunk.iter().fold(0u64, |acc, &b| (acc << 8) | b as u64);
        for i in (0..8).rev() {
            chars.push(ALPHABET[((n >> (i * 5)) & 31) as usize] as char);
        }
    }
    chars
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

impl SigningKey {
    pub fn load(path: &Path) -> Result<SigningKey, TokenError> {
        let text = read(path)?;
        let bad = || TokenError::BadPrivateKey {
            path: path.to_path_buf(),
        };
        let (label, block) = pem_blocks(&text)
            .into_iter()
            .find(|(l, _)| l.ends_with("PRIVATE KEY"))
            .ok_or_else(bad)?;
        let body: String = block
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::trim)
            .collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| bad())?;
        use aws_lc_rs::signature::{
            ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair,
            RsaKeyPair,
        };
        let rsa = match label.as_str() {
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der).ok(),
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der).ok(),
            _ => None,
        };
        if let Some(pair) = rsa {
            let pkcs1 = pair.public_key().as_ref();
            return Ok(SigningKey {
                alg: Algorithm::RS256,
                key: EncodingKey::from_rsa_pem(block.as_bytes()).map_err(|_| bad())?,
                public: DecodingKey::from_rsa_der(pkcs1),
                kid: key_id(&rsa_spki(pkcs1)),
            });
        }
        for (curve, alg) in [
            (&ECDSA_P256_SHA256_FIXED_SIGNING, Algorithm::ES256),
            (&ECDSA_P384_SHA384_FIXED_SIGNING, Algorithm::ES384),
        ] {
            if let Ok(pair) = EcdsaKeyPair::from_private_key_der(curve, &der) {
                // jsonwebtoken wants PKCS#8 for EC keys; SEC1 files are converted here.
                let pkcs8 = pair.to_pkcs8v1().map_err(|_| bad())?;
                let point = pair.public_key().as_ref();
                return Ok(SigningKey {
                    alg,
                    key: EncodingKey::from_ec_der(pkcs8.as_ref()),
                    public: DecodingKey::from_ec_der(point),
                    kid: key_id(&ec_spki(point, alg)),
                });
            }
        }
        Err(bad())
    }

    /// The public half, as the verifier trusts it.
    pub fn trusted(&self) -> TrustedKey {
        TrustedKey {
            kid: Some(self.kid.clone()),
            key: self.public.clone(),
        }
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, jsonwebtoken::errors::Error> {
        let mut header = jsonwebtoken::Header::new(self.alg);
        header.typ = Some("JWT".into());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.key)
    }
}
