//! Bearer-token authentication (the distribution token spec): the keys tokens are checked
//! against, the check itself (signature, `iss`, `aud`, `exp`/`nbf` with distribution's 60 s of
//! leeway, then the `access` claim against what the request needs), the `WWW-Authenticate`
//! challenge that sends clients to the token server, and the signing key of the built-in token
//! server (`issuer`).
//!
//! A token's key is picked as distribution picks it: by its `kid` header (libtrust's key ID of a
//! trusted certificate's or public key's SPKI), or by the leaf certificate of its `x5c` header,
//! which must itself be in the trusted bundle (berth does not walk chains up to a root: put the
//! signing certificate in the bundle). A token with neither is checked against every trusted
//! key of the family its `alg` names (RS*/PS* with RSA keys, ES256/ES384 with EC keys).
//! A client sends one token with many requests and a signature check costs more than serving a
//! HEAD, so a verified token is remembered (by its sha256) until it expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind as JwtErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use crate::keys::cert_spki;
pub use crate::keys::{Claims, SigningKey, TokenError, TrustedKey, key_id, load_public_keys};
use crate::scope::{Access, challenge_scope};

/// How far `exp` and `nbf` may be off, as distribution allows for clock skew.
pub const LEEWAY_SECS: u64 = 60;

/// What a presented token turned out to be.
#[derive(Debug, PartialEq, Eq)]
pub enum Rejection {
    /// No `Authorization: Bearer …` at all.
    Missing,
    /// Malformed, badly signed, expired, for another service or from another issuer.
    Invalid(String),
}

/// The claims this registry reads; `jsonwebtoken` checks `exp`, `nbf`, `iss` and `aud` itself.
#[derive(Debug, Deserialize)]
struct Granted {
    exp: u64,
    #[serde(default)]
    access: Vec<Access>,
}

/// What a verified token grants, until when.
struct Verified {
    exp: u64,
    access: Arc<[Access]>,
}

/// Tokens remembered at most; past it, expired ones are dropped, and all if none was.
const CACHE_MAX: usize = 4096;

/// Public keys tokens may be signed with, and who must have issued them for whom.
pub struct Verifier {
    pub service: String,
    pub issuer: String,
    keys: Vec<TrustedKey>,
    verified: Mutex<HashMap<[u8; 32], Verified>>,
}

impl Verifier {
    pub fn new(service: String, issuer: String, keys: Vec<TrustedKey>) -> Verifier {
        Verifier {
            service,
            issuer,
            keys,
            verified: Mutex::new(HashMap::new()),
        }
    }

    /// The access an `Authorization` header's token grants, if the token is valid.
    pub fn verify(&self, authorization: Option<&str>) -> Result<Arc<[Access]>, Rejection> {
        let token = authorization
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(Rejection::Missing)?;
        use sha2::Digest as _;
        let id: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let now = jsonwebtoken::get_current_timestamp();
        {
            let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
            match cache.get(&id) {
                Some(v) if now <= v.exp.saturating_add(LEEWAY_SECS) => {
                    return Ok(v.access.clone());
                }
                Some(_) => {
                    cache.remove(&id);
                    return Err(Rejection::Invalid("token expired".into()));
                }
                None => {}
            }
        }
        let granted = self.check(token)?;
        let access: Arc<[Access]> = granted.access.into();
        let mut cache = self.verified.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            cache.retain(|_, v| now <= v.exp.saturating_add(LEEWAY_SECS));
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(
            id,
            Verified {
                exp: granted.exp,
                access: access.clone(),
            },
        );
        Ok(access)
    }

    /// Signature and claims of one token, the slow way.
    fn check(&self, token: &str) -> Result<Granted, Rejection> {
        let invalid = |why: &str| Rejection::Invalid(why.to_string());
        let header = jsonwebtoken::decode_header(token).map_err(|e| invalid(&e.to_string()))?;
        let alg = header.alg;
        if !ALGORITHMS.contains(&alg) {
            return Err(invalid(&format!(
                "signature algorithm {alg:?} is not accepted"
            )));
        }
        let mut v = Validation::new(alg);
        v.leeway = LEEWAY_SECS;
        v.validate_nbf = true;
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[&self.service]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        let mut last = invalid("no trusted key of the token's algorithm family");
        // The key the header names, if it names one: `x5c`'s leaf certificate, else `kid`.
        let named: Option<String> = match (&header.x5c, &header.kid) {
            (Some(chain), _) => {
                let leaf = chain
                    .first()
                    .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
                    .and_then(|der| cert_spki(&der).map(key_id))
                    .ok_or_else(|| {
                        invalid("the token's x5c header holds no readable certificate")
                    })?;
                if !self
                    .keys
                    .iter()
                    .any(|k| k.kid.as_deref() == Some(leaf.as_str()))
                {
                    return Err(invalid(
                        "the token's x5c certificate is not in the trusted bundle",
                    ));
                }
                Some(leaf)
            }
            (None, Some(kid)) if self.keys.iter().any(|k| k.kid.as_deref() == Some(kid)) => {
                Some(kid.clone())
            }
            (None, Some(kid)) if self.keys.iter().all(|k| k.kid.is_some()) => {
                return Err(invalid(&format!(
                    "token signed by an untrusted key ({kid})"
                )));
            }
            _ => None,
        };
        let candidates = self.keys.iter().filter(|k| match &named {
            Some(id) => k.kid.as_deref() == Some(id.as_str()),
            None => true,
        });
        for key in candidates
            .map(|k| &k.key)
            .filter(|k| k.family() == alg.family())
        {
            match jsonwebtoken::decode::<Granted>(token, key, &v) {
                Ok(t) => return Ok(t.claims),
                Err(e) => {
                    let why = match e.kind() {
                        JwtErrorKind::ExpiredSignature => "token expired".to_string(),
                        JwtErrorKind::ImmatureSignature => "token not valid yet".to_string(),
                        JwtErrorKind::InvalidIssuer => "token from an untrusted issuer".to_string(),
                        JwtErrorKind::InvalidAudience => "token for another service".to_string(),
                        JwtErrorKind::InvalidSignature => "token signature invalid".to_string(),
                        _ => format!("invalid token: {e}"),
                    };
                    // Only a bad signature may be another key's; anything else is final.
                    if !matches!(e.kind(), JwtErrorKind::InvalidSignature) {
                        return Err(Rejection::Invalid(why));
                    }
                    last = Rejection::Invalid(why);
                }
            }
        }
        Err(last)
    }
}

/// Algorithms a token may be signed with: the asymmetric ones distribution accepts (never
/// `none` or an HMAC, whose secret would be the public key).
const ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// `Bearer realm="…",service="…"[,scope="…"][,error="…"]`, as distribution writes it: the scope
/// lists what the request needed, `error` is `invalid_token` for a rejected token and
/// `insufficient_scope` for a valid one that does not grant enough.
pub fn challenge(realm: &str, service: &str, needed: &[Access], error: Option<&str>) -> String {
    let mut h = format!("Bearer realm={},service={}", quote(realm), quote(service));
    if !needed.is_empty() {
        h.push_str(&format!(",scope={}", quote(&challenge_scope(needed))));
    }
    if let Some(e) = error {
        h.push_str(&format!(",error={}", quote(e)));
    }
    h
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Name;
    use crate::keys::pem_der;
    use jsonwebtoken::EncodingKey;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    fn openssl(dir: &Path, args: &[&str]) {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .expect("openssl is installed");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// A key and a self-signed certificate for it: `rsa` or `ec`.
    fn keypair(dir: &Path, kind: &str) -> (PathBuf, PathBuf) {
        let key = dir.join(format!("{kind}.key"));
        let crt = dir.join(format!("{kind}.crt"));
        let keyopt: &[&str] = match kind {
            "rsa" => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            _ => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        };
        let mut args = vec!["genpkey"];
        args.extend_from_slice(keyopt);
        args.extend_from_slice(&["-out", key.to_str().unwrap()]);
        openssl(dir, &args);
        openssl(
            dir,
            &[
                "req",
                "-new",
                "-x509",
                "-key",
                key.to_str().unwrap(),
                "-out",
                crt.to_str().unwrap(),
                "-days",
                "1",
                "-subj",
                "/CN=token",
            ],
        );
        (key, crt)
    }

    fn now() -> u64 {
        jsonwebtoken::get_current_timestamp()
    }

    fn claims(access: &str, exp: u64) -> Claims {
        Claims {
            iss: "issuer".into(),
            sub: "alice".into(),
            aud: "svc".into(),
            exp,
            nbf: now() - 5,
            iat: now(),
            jti: "1".into(),
            access: crate::scope::parse_scopes([access]),
        }
    }

    fn bearer(t: &str) -> String {
        format!("Bearer {t}")
    }

    #[test]
    fn tokens_signed_by_a_trusted_certificate_pass_and_others_do_not() {
        let dir = tempfile::TempDir::new().unwrap();
        for kind in ["rsa", "ec"] {
            let (key, crt) = keypair(dir.path(), kind);
            let signer = SigningKey::load(&key).unwrap();
            let v = Verifier::new(
                "svc".into(),
                "issuer".into(),
                load_public_keys(&crt).unwrap(),
            );
            let t = signer
                .sign(&claims("repository:a/b:pull,push", now() + 300))
                .unwrap();
            let granted = v.verify(Some(&bearer(&t))).unwrap();
            assert!(crate::scope::satisfies(
                &granted,
                &[Access::repository(
                    &Name::parse("a/b").unwrap(),
                    &["pull", "push"]
                )]
            ));
            // The key's own public half verifies too.
            let own = Verifier::new("svc".into(), "issuer".into(), vec![signer.trusted()]);
            assert!(own.verify(Some(&bearer(&t))).is_ok(), "{kind}");
        }
        // An RSA token against the EC certificate only: no key fits.
        let rsa = SigningKey::load(&dir.path().join("rsa.key")).unwrap();
        let ec_only = Verifier::new(
            "svc".into(),
            "issuer".into(),
            load_public_keys(&dir.path().join("ec.crt")).unwrap(),
        );
        let t = rsa.sign(&claims("repository:a:pull", now() + 300)).unwrap();
        assert!(matches!(
            ec_only.verify(Some(&bearer(&t))),
            Err(Rejection::Invalid(_))
        ));
        // Another RSA key than the certificate's: signature invalid.
        let sub = dir.path().join("other");
        std::fs::create_dir(&sub).unwrap();
        let (other, _) = keypair(&sub, "rsa");
        let rsa_only = Verifier::new(
            "svc".into(),
            "issuer".into(),
            load_public_keys(&dir.path().join("rsa.crt")).unwrap(),
        );
        let t = SigningKey::load(&other)
            .unwrap()
            .sign(&claims("repository:a:pull", now() + 300))
            .unwrap();
        let other_kid = SigningKey::load(&other).unwrap().kid;
        assert_eq!(
            rsa_only.verify(Some(&bearer(&t))),
            Err(Rejection::Invalid(format!(
                "token signed by an untrusted key ({other_kid})"
            )))
        );
    }

    /// Signs `c` with `key`'s algorithm and the header `edit` leaves.
    fn sign_with(key: &SigningKey, c: &Claims, edit: impl Fn(&mut jsonwebtoken::Header)) -> String {
        let mut h = jsonwebtoken::Header::new(key.alg);
        edit(&mut h);
        jsonwebtoken::encode(&h, c, &key.key).unwrap()
    }

    #[test]
    fn the_key_is_picked_by_kid_or_x5c_and_tried_in_turn_without_them() {
        let dir = tempfile::TempDir::new().unwrap();
        let (_, rsa_crt) = keypair(dir.path(), "rsa");
        let (_, ec_crt) = keypair(dir.path(), "ec");
        let sub = dir.path().join("second");
        std::fs::create_dir(&sub).unwrap();
        let (second_key, second_crt) = keypair(&sub, "rsa");
        let bundle = dir.path().join("bundle.pem");
        let text: String = [&rsa_crt, &ec_crt, &second_crt]
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        std::fs::write(&bundle, text).unwrap();
        let trusted = load_public_keys(&bundle).unwrap();
        assert_eq!(trusted.len(), 3);
        assert!(trusted.iter().all(|k| k.kid.is_some()));
        let v = Verifier::new("svc".into(), "issuer".into(), trusted);
        let second = SigningKey::load(&second_key).unwrap();
        let c = claims("repository:a:pull", now() + 300);
        // kid names the second certificate's key (the first RSA key is not tried).
        assert!(v.verify(Some(&bearer(&second.sign(&c).unwrap()))).is_ok());
        // No kid, no x5c: every RSA key in turn.
        assert!(
            v.verify(Some(&bearer(&sign_with(&second, &c, |_| {}))))
                .is_ok()
        );
        // x5c whose leaf is a trusted certificate.
        let der = |p: &Path| pem_der(&std::fs::read_to_string(p).unwrap()).unwrap();
        let b64 = |d: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(d);
        let leaf = b64(der(&second_crt));
        let t = sign_with(&second, &c, |h| h.x5c = Some(vec![leaf.clone()]));
        assert!(v.verify(Some(&bearer(&t))).is_ok());
        // x5c naming a certificate outside the bundle, even when the key signed correctly.
        let other = dir.path().join("third");
        std::fs::create_dir(&other).unwrap();
        let (third_key, third_crt) = keypair(&other, "rsa");
        let third = SigningKey::load(&third_key).unwrap();
        let t = sign_with(&third, &c, |h| h.x5c = Some(vec![b64(der(&third_crt))]));
        assert_eq!(
            v.verify(Some(&bearer(&t))),
            Err(Rejection::Invalid(
                "the token's x5c certificate is not in the trusted bundle".into()
            ))
        );
        // x5c of a trusted certificate but signed by another key: the signature decides.
        let t = sign_with(&third, &c, |h| h.x5c = Some(vec![leaf.clone()]));
        assert_eq!(
            v.verify(Some(&bearer(&t))),
            Err(Rejection::Invalid("token signature invalid".into()))
        );
        let t = sign_with(&third, &c, |h| h.x5c = Some(vec!["!!".into()]));
        assert!(matches!(
            v.verify(Some(&bearer(&t))),
            Err(Rejection::Invalid(_))
        ));
    }

    #[test]
    fn key_ids_are_libtrusts_over_the_spki() {
        let dir = tempfile::TempDir::new().unwrap();
        for kind in ["rsa", "ec"] {
            let (key, crt) = keypair(dir.path(), kind);
            let spki = dir.path().join(format!("{kind}.spki"));
            openssl(
                dir.path(),
                &[
                    "pkey",
                    "-in",
                    key.to_str().unwrap(),
                    "-pubout",
                    "-outform",
                    "DER",
                    "-out",
                    spki.to_str().unwrap(),
                ],
            );
            let k = SigningKey::load(&key).unwrap();
            assert_eq!(k.kid, key_id(&std::fs::read(&spki).unwrap()), "{kind}");
            assert_eq!(k.kid.len(), 59);
            assert_eq!(k.kid.split(':').count(), 12);
            // The certificate's SPKI, read from its DER, gives the same ID.
            let from_cert = load_public_keys(&crt).unwrap();
            assert_eq!(from_cert[0].kid.as_deref(), Some(k.kid.as_str()), "{kind}");
        }
        // Base32 of a known hash prefix: sha256("") starts e3 b0 c4 42 98.
        assert!(key_id(b"").starts_with("4OYM:IQUY:"));
    }

    #[test]
    fn claims_are_checked() {
        let dir = tempfile::TempDir::new().unwrap();
        let (key, crt) = keypair(dir.path(), "ec");
        let signer = SigningKey::load(&key).unwrap();
        let v = Verifier::new(
            "svc".into(),
            "issuer".into(),
            load_public_keys(&crt).unwrap(),
        );
        let sign = |c: &Claims| bearer(&signer.sign(c).unwrap());
        let reason = |h: &str| match v.verify(Some(h)) {
            Err(Rejection::Invalid(why)) => why,
            other => panic!("{other:?}"),
        };
        assert_eq!(reason(&sign(&claims("", now() - 120))), "token expired");
        assert!(
            v.verify(Some(&sign(&claims("", now() - 30)))).is_ok(),
            "expired 30 s ago is within the leeway"
        );
        let mut c = claims("", now() + 300);
        c.nbf = now() + 600;
        assert_eq!(reason(&sign(&c)), "token not valid yet");
        let mut c = claims("", now() + 300);
        c.iss = "mallory".into();
        assert_eq!(reason(&sign(&c)), "token from an untrusted issuer");
        let mut c = claims("", now() + 300);
        c.aud = "other-registry".into();
        assert_eq!(reason(&sign(&c)), "token for another service");
        // A tampered payload keeps the signature of the original.
        let t = signer
            .sign(&claims("repository:a:pull", now() + 300))
            .unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        let forged = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(
            serde_json::to_vec(&serde_json::json!({
                "iss": "issuer", "aud": "svc", "exp": now() + 300,
                "access": [{"type": "repository", "name": "a", "actions": ["push"]}]
            }))
            .unwrap(),
        );
        assert_eq!(
            reason(&bearer(&format!("{}.{forged}.{}", parts[0], parts[2]))),
            "token signature invalid"
        );
        // alg "none" and an HMAC are refused whatever they claim.
        let none = format!(
            "{}.{}.",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#),
            parts[1]
        );
        assert!(matches!(
            v.verify(Some(&bearer(&none))),
            Err(Rejection::Invalid(_))
        ));
        let hs = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims("repository:a:push", now() + 300),
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert!(reason(&bearer(&hs)).contains("not accepted"));
        assert_eq!(v.verify(None), Err(Rejection::Missing));
        assert_eq!(v.verify(Some("Basic YTpi")), Err(Rejection::Missing));
        assert!(matches!(
            v.verify(Some("Bearer garbage")),
            Err(Rejection::Invalid(_))
        ));
    }

    #[test]
    fn verified_tokens_are_remembered_until_they_expire() {
        let dir = tempfile::TempDir::new().unwrap();
        let (key, crt) = keypair(dir.path(), "ec");
        let signer = SigningKey::load(&key).unwrap();
        let v = Verifier::new(
            "svc".into(),
            "issuer".into(),
            load_public_keys(&crt).unwrap(),
        );
        let t = bearer(
            &signer
                .sign(&claims("repository:a:pull", now() + 300))
                .unwrap(),
        );
        let first = v.verify(Some(&t)).unwrap();
        let again = v.verify(Some(&t)).unwrap();
        assert!(
            Arc::ptr_eq(&first, &again),
            "the second check is a cache hit"
        );
        // A remembered entry past its exp (and the leeway) is refused and forgotten.
        let id: [u8; 32] = {
            use sha2::Digest as _;
            sha2::Sha256::digest(t.trim_start_matches("Bearer ").as_bytes()).into()
        };
        v.verified.lock().unwrap().get_mut(&id).unwrap().exp = now() - LEEWAY_SECS - 5;
        assert_eq!(
            v.verify(Some(&t)),
            Err(Rejection::Invalid("token expired".into()))
        );
        assert!(v.verified.lock().unwrap().is_empty());
        // Rejected tokens are not remembered.
        let bad = bearer(&signer.sign(&claims("", now() - 600)).unwrap());
        assert!(v.verify(Some(&bad)).is_err());
        assert!(v.verified.lock().unwrap().is_empty());
    }

    #[test]
    fn challenges_name_scope_and_error() {
        let n = Name::parse("a/b").unwrap();
        assert_eq!(
            challenge("http://h/token", "svc", &[], None),
            r#"Bearer realm="http://h/token",service="svc""#
        );
        assert_eq!(
            challenge(
                "http://h/token",
                "svc",
                &[Access::repository(&n, &["pull", "push"])],
                Some("insufficient_scope")
            ),
            r#"Bearer realm="http://h/token",service="svc",scope="repository:a/b:pull,push",error="insufficient_scope""#
        );
    }

    #[test]
    fn bad_key_files_are_named() {
        let dir = tempfile::TempDir::new().unwrap();
        let f = dir.path().join("x.pem");
        std::fs::write(&f, "not a pem").unwrap();
        assert!(matches!(
            load_public_keys(&f),
            Err(TokenError::NoKeys { .. })
        ));
        assert!(matches!(
            SigningKey::load(&f),
            Err(TokenError::BadPrivateKey { .. })
        ));
        let missing = dir.path().join("missing.pem");
        assert!(
            load_public_keys(&missing)
                .unwrap_err()
                .to_string()
                .contains("missing.pem")
        );
    }
}
