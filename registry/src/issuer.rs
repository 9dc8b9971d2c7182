//! The built-in token server, so token mode works with berth alone: `GET /token?service=…&
//! scope=…` (the token spec's request) authenticates Basic credentials against the htpasswd file
//! and answers `{"token","access_token","expires_in","issued_at"}` with a JWT signed by
//! `--auth-token-key`. A user who logs in gets every action asked for; a request without
//! credentials gets pull on repositories when anonymous pull is allowed, and nothing else (the
//! registry then answers its requests with `insufficient_scope`, as Docker Hub does for private
//! repositories). Wrong credentials are a 401, so `login` can tell them apart.
//!
//! `POST /token` is the OAuth2 form of the same request (the token spec's oauth.md, which
//! Docker's client tries first when it holds a refresh token): `grant_type=password` with
//! `username`/`password`, or `grant_type=refresh_token` with a refresh token this server issued
//! for `access_type=offline` (signed like an access token, for the audience `SERVICE#refresh`,
//! so the registry never takes it for an access token; refused once its user has left the
//! htpasswd file). Errors follow RFC 6749 (`400 {"error":"invalid_grant",…}`).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::auth::{Htpasswd, REALM};
use crate::endpoint::{Name, parse_query, query_get};
use crate::error::{ErrorKind, RegistryError};
use crate::scope::{Access, parse_scopes};
use crate::token::{Claims, SigningKey};

/// Lifetime of an issued token; clients fetch a new one per operation (distribution's default
/// for its own token servers is the same five minutes).
pub const TOKEN_TTL_SECS: u64 = 300;

/// Lifetime of a refresh token (`access_type=offline`).
pub const REFRESH_TTL_SECS: u64 = 30 * 24 * 3600;

pub struct Issuer {
    pub key: SigningKey,
    pub service: String,
    pub issuer: String,
    pub htpasswd: Arc<Htpasswd>,
    pub anonymous_pull: bool,
}

impl Issuer {
    /// What `user` (None: anonymous) is granted of `asked`: resources with no action left are
    /// dropped, repositories with invalid names are never granted.
    pub fn grant(&self, user: Option<&str>, asked: &[Access]) -> Vec<Access> {
        asked
            .iter()
            .filter(|a| match a.kind.as_str() {
                "repository" => Name::parse(&a.name).is_ok(),
                "registry" => a.name == "catalog",
                _ => false,
            })
            .filter_map(|a| {
                let actions: Vec<String> = match user {
                    Some(_) => a.actions.clone(),
                    None if self.anonymous_pull && a.kind == "repository" => {
                        a.actions.iter().filter(|x| *x == "pull").cloned().collect()
                    }
                    None => Vec::new(),
                };
                (!actions.is_empty()).then(|| Access {
                    kind: a.kind.clone(),
                    name: a.name.clone(),
                    actions,
                })
            })
            .collect()
    }

    /// A signed token for `user` granting `access`.
    pub fn issue(&self, user: Option<&str>, access: Vec<Access>) -> Result<String, RegistryError> {
        self.sign(user, access, self.service.clone(), TOKEN_TTL_SECS)
    }

    fn refresh_audience(&self) -> String {
        format!("{}#refresh", self.service)
    }

    /// A refresh token for `user` (grants nothing at the registry: another audience).
    pub fn issue_refresh(&self, user: &str) -> Result<String, RegistryError> {
        self.sign(
            Some(user),
            Vec::new(),
            self.refresh_audience(),
            REFRESH_TTL_SECS,
        )
    }

    /// The user a refresh token this server issued names, if it is valid and the user is
    /// still in the htpasswd file.
    pub fn redeem_refresh(&self, token: &str) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct Sub {
            sub: String,
        }
        let mut v = jsonwebtoken::Validation::new(self.key.alg);
        v.leeway = crate::token::LEEWAY_SECS;
        v.set_issuer(&[&self.issuer]);
        v.set_audience(&[self.refresh_audience()]);
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let sub = jsonwebtoken::decode::<Sub>(token, &self.key.public, &v)
            .ok()?
            .claims
            .sub;
        (!sub.is_empty() && self.htpasswd.has_user(&sub)).then_some(sub)
    }

    fn sign(
        &self,
        user: Option<&str>,
        access: Vec<Access>,
        aud: String,
        ttl: u64,
    ) -> Result<String, RegistryError> {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: user.unwrap_or_default().to_string(),
            aud,
            exp: now + ttl,
            nbf: now,
            iat: now,
            jti: uuid::Uuid::new_v4().to_string(),
            access,
        };
        self.key
            .sign(&claims)
            .map_err(|e| RegistryError::new(ErrorKind::Internal, format!("signing a token: {e}")))
    }
}

// GET /token?service=<service>&scope=<type:name:actions>[&scope=…][&account=<user>]
// Authorization: Basic <base64(user:password)>   (optional)
pub async fn token(State(issuer): State<Arc<Issuer>>, req: Request) -> Response {
    match respond(&issuer, req).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn respond(issuer: &Arc<Issuer>, req: Request) -> Result<Response, RegistryError> {
    let query = parse_query(req.uri().query())?;
    if let Some(svc) = query_get(&query, "service")
        && svc != issuer.service
    {
        return Err(RegistryError::new(
            ErrorKind::Denied,
            format!(
                "this token server issues tokens for service {:?}, not {svc:?}",
                issuer.service
            ),
        ));
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let user = match authorization {
        None => None,
        Some(a) => {
            let h = issuer.htpasswd.clone();
            // bcrypt is slow by design: off the async workers (remembered once verified).
            let user = tokio::task::spawn_blocking(move || h.authenticate(Some(&a)))
                .await
                .ok()
                .flatten();
            match user {
                Some(u) => Some(u),
                None => {
                    return Err(RegistryError::new(
                        ErrorKind::Unauthorized,
                        "incorrect username or password",
                    )
                    .with_header(
                        header::WWW_AUTHENTICATE,
                        &format!("Basic realm=\"{REALM}\""),
                    ));
                }
            }
        }
    };
    let asked = parse_scopes(
        query
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str()),
    );
    let granted = issuer.grant(user.as_deref(), &asked);
    let token = issuer.issue(user.as_deref(), granted)?;
    let issued_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let body = json!({
        "token": token,
        "access_token": token,
        "expires_in": TOKEN_TTL_SECS,
        "issued_at": issued_at,
    });
    Ok(([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response())
}

/// An RFC 6749 error answer.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

// POST /token   (application/x-www-form-urlencoded)
// grant_type=password&username=…&password=…&service=…&client_id=…[&scope=…][&access_type=offline]
// grant_type=refresh_token&refresh_token=…&service=…&client_id=…[&scope=…]
pub async fn token_post(
    State(issuer): State<Arc<Issuer>>,
    axum::extract::RawForm(body): axum::extract::RawForm,
) -> Response {
    // A form body is encoded as a query string is.
    let form = match parse_query(Some(&String::from_utf8_lossy(&body))) {
        Ok(f) => f,
        Err(_) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "the form body is not valid application/x-www-form-urlencoded",
            );
        }
    };
    let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let bad = |d: &str| oauth_error(StatusCode::BAD_REQUEST, "invalid_request", d);
    if get("client_id").is_none_or(str::is_empty) {
        return bad("client_id is required");
    }
    if let Some(svc) = get("service")
        && svc != issuer.service
    {
        return bad(&format!(
            "this token server issues tokens for service {:?}, not {svc:?}",
            issuer.service
        ));
    }
    let user = match get("grant_type") {
        Some("password") => {
            let (Some(u), Some(p)) = (get("username"), get("password")) else {
                return bad("grant_type=password needs username and password");
            };
            let basic = format!(
                "Basic {}",
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("{u}:{p}")
                )
            );
            let h = issuer.htpasswd.clone();
            let user = tokio::task::spawn_blocking(move || h.authenticate(Some(&basic)))
                .await
                .ok()
                .flatten();
            match user {
                Some(u) => u,
                None => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "incorrect username or password",
                    );
                }
            }
        }
        Some("refresh_token") => {
            let Some(t) = get("refresh_token") else {
                return bad("grant_type=refresh_token needs refresh_token");
            };
            match issuer.redeem_refresh(t) {
                Some(u) => u,
                None => {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "invalid_grant",
                        "the refresh token is invalid, expired or its user is gone",
                    );
                }
            }
        }
        Some(other) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                &format!("grant_type {other:?} is not supported: use password or refresh_token"),
            );
        }
        None => return bad("grant_type is required"),
    };
    let asked = parse_scopes(get("scope"));
    let granted = issuer.grant(Some(&user), &asked);
    let scope = granted
        .iter()
        .map(Access::to_string)
        .collect::<Vec<_>>()
        .join(" ");
    let token = match issuer.issue(Some(&user), granted) {
        Ok(t) => t,
        Err(e) => return e.into_response(),
    };
    let issued_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut body = json!({
        "access_token": token,
        "token": token,
        "scope": scope,
        "expires_in": TOKEN_TTL_SECS,
        "issued_at": issued_at,
    });
    if get("access_type") == Some("offline") {
        match issuer.issue_refresh(&user) {
            Ok(r) => body["refresh_token"] = json!(r),
            Err(e) => return e.into_response(),
        }
    }
    ([(header::CACHE_CONTROL, "no-store")], axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(anonymous_pull: bool) -> (tempfile::TempDir, Issuer) {
        let dir = tempfile::TempDir::new().unwrap();
        let key = dir.path().join("k.pem");
        let out = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
            ])
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success());
        let h = dir.path().join("htpasswd");
        std::fs::write(&h, "").unwrap();
        let i = Issuer {
            key: SigningKey::load(&key).unwrap(),
            service: "svc".into(),
            issuer: "iss".into(),
            htpasswd: Htpasswd::load(&h).unwrap(),
            anonymous_pull,
        };
        (dir, i)
    }

    #[test]
    fn users_get_what_they_ask_anonymous_only_pull_when_allowed() {
        let asked = parse_scopes([
            "repository:a/b:pull,push",
            "repository:c:delete",
            "registry:catalog:*",
            "repository:Bad:pull",
            "registry:other:*",
            "thing:x:pull",
        ]);
        let (_d, open) = issuer(true);
        let shown = |v: Vec<Access>| v.iter().map(Access::to_string).collect::<Vec<_>>();
        assert_eq!(
            shown(open.grant(Some("alice"), &asked)),
            [
                "repository:a/b:pull,push",
                "repository:c:delete",
                "registry:catalog:*"
            ]
        );
        assert_eq!(shown(open.grant(None, &asked)), ["repository:a/b:pull"]);
        let (_d, closed) = issuer(false);
        assert!(closed.grant(None, &asked).is_empty());
    }

    #[test]
    fn issued_tokens_verify_with_the_key_and_carry_the_claims() {
        let (_d, i) = issuer(false);
        let t = i
            .issue(Some("alice"), parse_scopes(["repository:a:pull"]))
            .unwrap();
        let v = crate::token::Verifier::new("svc".into(), "iss".into(), vec![i.key.trusted()]);
        let granted = v.verify(Some(&format!("Bearer {t}"))).unwrap();
        assert_eq!(*granted, parse_scopes(["repository:a:pull"])[..]);
        let claims: serde_json::Value =
            jsonwebtoken::dangerous::insecure_decode::<serde_json::Value>(&t)
                .unwrap()
                .claims;
        assert_eq!(claims["sub"], "alice");
        assert_eq!(claims["aud"], "svc");
        assert_eq!(
            claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
            TOKEN_TTL_SECS
        );
    }
}
