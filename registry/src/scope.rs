//! Token scopes: the `type:name:action,action` strings of the token spec (in challenges, in the
//! token endpoint's `scope` parameters, and as the `access` claim of a JWT), and which access a
//! request needs — as distribution's `appendAccessRecords`: pull for GET/HEAD, pull and push for
//! POST/PUT/PATCH, delete for DELETE (but push to cancel an upload), pull on the source of a
//! cross-repository mount, and `registry:catalog:*` for the catalog.

use std::fmt;

use axum::http::Method;
use serde::{Deserialize, Serialize};

use crate::endpoint::{Name, Route};

/// One resource and the actions wanted on it (or granted: the JWT `access` claim has this shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub actions: Vec<String>,
}

impl Access {
    pub fn repository(name: &Name, actions: &[&str]) -> Access {
        Access {
            kind: "repository".into(),
            name: name.as_str().into(),
            actions: actions.iter().map(|a| a.to_string()).collect(),
        }
    }

    pub fn catalog() -> Access {
        Access {
            kind: "registry".into(),
            name: "catalog".into(),
            actions: vec!["*".into()],
        }
    }

    /// Parse one resource scope, `type[(class)]:name:action[,action…]`. The name may itself
    /// contain `:` (a `host:port/` prefix), so the type ends at the first colon and the actions
    /// start after the last. None for anything else.
    pub fn parse(s: &str) -> Option<Access> {
        let (kind, rest) = s.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        // `repository(plugin)`: the class does not change what is granted here.
        let kind = kind.split_once('(').map_or(kind, |(k, _)| k);
        let kind_ok = !kind.is_empty()
            && kind
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
        if !kind_ok || name.is_empty() {
            return None;
        }
        let actions: Vec<String> = actions
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(String::from)
            .collect();
        Some(Access {
            kind: kind.into(),
            name: name.into(),
            actions,
        })
    }

    /// Whether this grant covers `action` on `kind`/`name` (`*` grants every action).
    pub fn grants(&self, kind: &str, name: &str, action: &str) -> bool {
        self.kind == kind
            && self.name == name
            && self.actions.iter().any(|a| a == "*" || a == action)
    }
}

impl fmt::Display for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// Parse every `scope` value of a token request; several scopes may also share one value,
/// separated by spaces (the POST form of the spec). Unparseable scopes are skipped, as a token
/// server grants nothing for them.
pub fn parse_scopes<'a>(values: impl IntoIterator<Item = &'a str>) -> Vec<Access> {
    values
        .into_iter()
        .flat_map(str::split_whitespace)
        .filter_map(Access::parse)
        .collect()
}

/// What a request needs: `route` with `method`, and `from` when the request mounts a blob from
/// another repository. The base route `/v2/` needs no access, only a valid token.
pub fn required(route: &Route, method: &Method, from: Option<&Name>) -> Vec<Access> {
    let name = match route {
        Route::Base => return Vec::new(),
        Route::Catalog => return vec![Access::catalog()],
        Route::Tags(n)
        | Route::Manifest(n, _)
        | Route::ManifestBadReference(n, _)
        | Route::Blob(n, _)
        | Route::UploadStart(n)
        | Route::Upload(n, _)
        | Route::Referrers(n, _) => n,
    };
    let actions: &[&str] = match *method {
        Method::GET | Method::HEAD => &["pull"],
        Method::POST | Method::PUT | Method::PATCH => &["pull", "push"],
        // Cancelling an upload only drops what the pusher sent: push suffices (distribution asks
        // delete, which a pushing client seldom holds).
        Method::DELETE if matches!(route, Route::Upload(..)) => &["pull", "push"],
        Method::DELETE => &["delete"],
        // Anything else is refused by the router; ask for everything so no token opens it.
        _ => &["pull", "push", "delete"],
    };
    let mut out = vec![Access::repository(name, actions)];
    if let Some(from) = from.filter(|f| *f != name)
        && matches!(route, Route::UploadStart(_))
        && *method == Method::POST
    {
        out.push(Access::repository(from, &["pull"]));
    }
    out
}

/// Whether the `granted` access list covers everything in `needed`.
pub fn satisfies(granted: &[Access], needed: &[Access]) -> bool {
    needed.iter().all(|n| {
        n.actions
            .iter()
            .all(|a| granted.iter().any(|g| g.grants(&n.kind, &n.name, a)))
    })
}

/// The scopes of a challenge, space-separated as the spec writes several.
pub fn challenge_scope(needed: &[Access]) -> String {
    needed
        .iter()
        .map(Access::to_string)
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::parse_route;

    fn n(s: &str) -> Name {
        Name::parse(s).unwrap()
    }

    #[test]
    fn parses_the_spec_grammar() {
        let a = Access::parse("repository:samalba/my-app:pull,push").unwrap();
        assert_eq!(
            (a.kind.as_str(), a.name.as_str(), a.actions.clone()),
            (
                "repository",
                "samalba/my-app",
                vec!["pull".into(), "push".into()]
            )
        );
        assert_eq!(a.to_string(), "repository:samalba/my-app:pull,push");
        // A name with a host and port keeps its colon.
        let a = Access::parse("repository:localhost:5000/a/b:pull").unwrap();
        assert_eq!(a.name, "localhost:5000/a/b");
        assert_eq!(a.actions, vec!["pull"]);
        let a = Access::parse("repository(plugin):vieux/sshfs:pull").unwrap();
        assert_eq!(
            (a.kind.as_str(), a.name.as_str()),
            ("repository", "vieux/sshfs")
        );
        assert_eq!(
            Access::parse("registry:catalog:*").unwrap(),
            Access::catalog()
        );
        // No actions is a valid scope that asks for nothing.
        assert!(Access::parse("repository:a:").unwrap().actions.is_empty());
        for bad in [
            "",
            "repository",
            "repository:a",
            ":a:pull",
            "repository::pull",
            "a b:c:d",
        ] {
            assert_eq!(Access::parse(bad), None, "{bad:?}");
        }
        let all = parse_scopes([
            "repository:a:pull repository:b:push",
            "bogus",
            "registry:catalog:*",
        ]);
        assert_eq!(all.len(), 3);
        assert_eq!(all[1].name, "b");
    }

    #[test]
    fn what_each_request_needs() {
        let need = |m: Method, path: &str, from: Option<&str>| {
            let from = from.map(n);
            challenge_scope(&required(&parse_route(path).unwrap(), &m, from.as_ref()))
        };
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert_eq!(need(Method::GET, "", None), "");
        assert_eq!(need(Method::GET, "_catalog", None), "registry:catalog:*");
        assert_eq!(
            need(Method::GET, "a/b/tags/list", None),
            "repository:a/b:pull"
        );
        assert_eq!(
            need(Method::HEAD, &format!("a/blobs/{d}"), None),
            "repository:a:pull"
        );
        assert_eq!(
            need(Method::PUT, "a/manifests/latest", None),
            "repository:a:pull,push"
        );
        assert_eq!(
            need(Method::POST, "a/blobs/uploads/", Some("x/y")),
            "repository:a:pull,push repository:x/y:pull"
        );
        assert_eq!(
            need(Method::POST, "a/blobs/uploads/", Some("a")),
            "repository:a:pull,push",
            "a mount from the same repository needs nothing more"
        );
        assert_eq!(
            need(Method::DELETE, "a/manifests/latest", None),
            "repository:a:delete"
        );
    }

    #[test]
    fn grants_cover_what_they_name() {
        let g = |s: &str| parse_scopes([s]);
        let need_push = [Access::repository(&n("a"), &["pull", "push"])];
        assert!(satisfies(&g("repository:a:pull,push"), &need_push));
        assert!(satisfies(&g("repository:a:*"), &need_push));
        assert!(satisfies(
            &g("repository:a:pull repository:a:push"),
            &need_push
        ));
        assert!(!satisfies(&g("repository:a:pull"), &need_push));
        assert!(!satisfies(&g("repository:b:pull,push"), &need_push));
        assert!(!satisfies(&g("registry:a:pull,push"), &need_push));
        assert!(!satisfies(&[], &need_push));
        assert!(satisfies(&[], &[]), "the base route needs no grant");
        assert!(satisfies(&g("registry:catalog:*"), &[Access::catalog()]));
        assert!(!satisfies(
            &g("registry:catalog:pull"),
            &[Access::catalog()]
        ));
        assert!(!satisfies(
            &g("repository:a:pull"),
            &[Access::repository(&n("a"), &["delete"])]
        ));
    }
}
