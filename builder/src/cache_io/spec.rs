//! `--cache-to` and `--cache-from` values, read as buildx reads them: `type=registry,ref=REF`,
//! `type=local,dest=DIR` (`src=DIR` to import), `mode=min|max`, `ignore-error=true`; a value
//! without `=` is a registry reference.

use std::path::PathBuf;

/// Where a cache lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// An artifact in a registry, under a tagged reference.
    Registry { reference: String },
    /// An OCI image layout directory; `tag` names the cache in its `index.json`.
    Local { dir: PathBuf, tag: String },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Registry { reference } => write!(f, "{reference}"),
            Location::Local { dir, tag } => write!(f, "{}:{tag}", dir.display()),
        }
    }
}

/// Which steps an export carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// The layers of the final image (the records of the stages it was made from travel too,
    /// without their layers, so their keys still hit).
    #[default]
    Min,
    /// Every step's layers, and the contents of the `RUN --mount=type=cache` directories.
    Max,
}

/// One `--cache-to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheTo {
    pub location: Location,
    pub mode: Mode,
    /// `ignore-error=true`: a failed export is a warning, not a failed build.
    pub ignore_error: bool,
}

/// One `--cache-from`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheFrom {
    pub location: Location,
}

/// A `--cache-to` or `--cache-from` value that does not read.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("invalid {flag} {spec:?}: {problem}")]
    Invalid {
        flag: &'static str,
        spec: String,
        problem: SpecProblem,
    },
    #[error(
        "--cache-to type=inline is not supported by berth: export the cache beside the image with type=registry,ref=HOST/REPO:cache (or type=local,dest=DIR)"
    )]
    InlineUnsupported,
}

/// What is wrong inside a cache spec.
#[derive(Debug, thiserror::Error)]
pub enum SpecProblem {
    #[error("field {0:?} must be a key=value pair")]
    NotKeyValue(String),
    #[error("{key} must be true or false, not {value:?}")]
    NotBool { key: String, value: String },
    #[error("type is required (type=registry,ref=HOST/REPO:TAG or type=local,{dir_key}=DIR)")]
    NoType { dir_key: &'static str },
    #[error("type=registry needs ref=HOST/REPO:TAG")]
    NoRef,
    #[error("ref {reference:?}: {source}")]
    BadRef {
        reference: String,
        #[source]
        source: Box<berth_store::reference::ReferenceError>,
    },
    #[error("type=local needs {dir_key}=DIR")]
    NoDir { dir_key: &'static str },
    #[error("tag {0:?} is not a tag")]
    BadTag(String),
    #[error("unsupported cache type {0:?} (berth supports registry and local)")]
    UnsupportedType(String),
    #[error("mode must be min or max, not {0:?}")]
    BadMode(String),
    #[error("unknown key {key:?} (accepted keys: {accepted})")]
    UnknownKey { key: String, accepted: &'static str },
}

fn invalid(flag: &'static str, spec: &str, problem: SpecProblem) -> SpecError {
    SpecError::Invalid {
        flag,
        spec: spec.to_string(),
        problem,
    }
}

const TO_KEYS: &str = "type, ref (registry), dest and tag (local), mode, ignore-error, oci-mediatypes, image-manifest";
const FROM_KEYS: &str = "type, ref (registry), src and tag (local)";

fn fields<'a>(flag: &'static str, spec: &'a str) -> Result<Vec<(String, &'a str)>, SpecError> {
    let mut out = Vec::new();
    for field in spec.split(',') {
        let Some((k, v)) = field.split_once('=') else {
            return Err(invalid(
                flag,
                spec,
                SpecProblem::NotKeyValue(field.to_string()),
            ));
        };
        out.push((k.trim().to_ascii_lowercase(), v.trim()));
    }
    Ok(out)
}

fn bool_value(flag: &'static str, spec: &str, k: &str, v: &str) -> Result<bool, SpecError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(invalid(
            flag,
            spec,
            SpecProblem::NotBool {
                key: k.to_string(),
                value: v.to_string(),
            },
        )),
    }
}

fn location(
    flag: &'static str,
    spec: &str,
    typ: Option<&str>,
    reference: Option<&str>,
    dir: Option<&str>,
    dir_key: &'static str,
    tag: Option<&str>,
) -> Result<Location, SpecError> {
    let Some(typ) = typ else {
        return Err(invalid(flag, spec, SpecProblem::NoType { dir_key }));
    };
    match typ {
        "registry" => {
            let Some(r) = reference.filter(|r| !r.is_empty()) else {
                return Err(invalid(flag, spec, SpecProblem::NoRef));
            };
            berth_store::Reference::parse(r).map_err(|source| {
                invalid(
                    flag,
                    spec,
                    SpecProblem::BadRef {
                        reference: r.to_string(),
                        source: Box::new(source),
                    },
                )
            })?;
            Ok(Location::Registry {
                reference: r.to_string(),
            })
        }
        "local" => {
            let Some(d) = dir.filter(|d| !d.is_empty()) else {
                return Err(invalid(flag, spec, SpecProblem::NoDir { dir_key }));
            };
            let tag = tag.unwrap_or("latest");
            if tag.is_empty() || tag.contains(['/', ':', '@']) {
                return Err(invalid(flag, spec, SpecProblem::BadTag(tag.to_string())));
            }
            Ok(Location::Local {
                dir: PathBuf::from(d),
                tag: tag.to_string(),
            })
        }
        "inline" if flag == "--cache-to" => Err(SpecError::InlineUnsupported),
        other => Err(invalid(
            flag,
            spec,
            SpecProblem::UnsupportedType(other.to_string()),
        )),
    }
}

impl CacheTo {
    pub fn parse(spec: &str) -> Result<CacheTo, SpecError> {
        const FLAG: &str = "--cache-to";
        if !spec.contains('=') {
            return Ok(CacheTo {
                location: location(FLAG, spec, Some("registry"), Some(spec), None, "dest", None)?,
                mode: Mode::Min,
                ignore_error: false,
            });
        }
        let (mut typ, mut reference, mut dest, mut tag) = (None, None, None, None);
        let mut mode = Mode::Min;
        let mut ignore_error = false;
        for (k, v) in fields(FLAG, spec)? {
            match k.as_str() {
                "type" => typ = Some(v),
                "ref" => reference = Some(v),
                "dest" => dest = Some(v),
                "tag" => tag = Some(v),
                "mode" => {
                    mode = match v {
                        "min" => Mode::Min,
                        "max" => Mode::Max,
                        _ => {
                            return Err(invalid(FLAG, spec, SpecProblem::BadMode(v.to_string())));
                        }
                    }
                }
                "ignore-error" => ignore_error = bool_value(FLAG, spec, &k, v)?,
                // berth always writes OCI media types and an image manifest.
                "oci-mediatypes" | "image-manifest" => {
                    bool_value(FLAG, spec, &k, v)?;
                }
                _ => {
                    return Err(invalid(
                        FLAG,
                        spec,
                        SpecProblem::UnknownKey {
                            key: k,
                            accepted: TO_KEYS,
                        },
                    ));
                }
            }
        }
        let location = location(FLAG, spec, typ, reference, dest, "dest", tag)?;
        Ok(CacheTo {
            location,
            mode,
            ignore_error,
        })
    }
}

impl CacheFrom {
    pub fn parse(spec: &str) -> Result<CacheFrom, SpecError> {
        const FLAG: &str = "--cache-from";
        if !spec.contains('=') {
            return Ok(CacheFrom {
                location: location(FLAG, spec, Some("registry"), Some(spec), None, "src", None)?,
            });
        }
        let (mut typ, mut reference, mut src, mut tag) = (None, None, None, None);
        for (k, v) in fields(FLAG, spec)? {
            match k.as_str() {
                "type" => typ = Some(v),
                "ref" => reference = Some(v),
                "src" => src = Some(v),
                "tag" => tag = Some(v),
                _ => {
                    return Err(invalid(
                        FLAG,
                        spec,
                        SpecProblem::UnknownKey {
                            key: k,
                            accepted: FROM_KEYS,
                        },
                    ));
                }
            }
        }
        Ok(CacheFrom {
            location: location(FLAG, spec, typ, reference, src, "src", tag)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_read_as_buildx_reads_them() {
        let t = CacheTo::parse("type=registry,ref=localhost:5000/app:cache,mode=max").unwrap();
        assert_eq!(t.mode, Mode::Max);
        assert_eq!(
            t.location,
            Location::Registry {
                reference: "localhost:5000/app:cache".into()
            }
        );
        let t = CacheTo::parse("localhost:5000/app:cache").unwrap();
        assert_eq!(t.mode, Mode::Min);
        let t = CacheTo::parse("type=local,dest=/tmp/c,ignore-error=true").unwrap();
        assert!(t.ignore_error);
        assert_eq!(
            t.location,
            Location::Local {
                dir: "/tmp/c".into(),
                tag: "latest".into()
            }
        );
        let f = CacheFrom::parse("type=local,src=/tmp/c,tag=v1").unwrap();
        assert_eq!(
            f.location,
            Location::Local {
                dir: "/tmp/c".into(),
                tag: "v1".into()
            }
        );
        for (bad, says) in [
            ("type=registry", "needs ref="),
            ("type=local", "needs dest="),
            ("type=registry,ref=x,mode=all", "mode must be min or max"),
            ("type=registry,ref=x,colour=red", "accepted keys: type, ref"),
            ("ref=x", "type is required"),
            ("type=inline", "not supported"),
            ("type=gha", "unsupported cache type"),
            ("type=registry,ref=a b", "ref \"a b\""),
            ("type=registry,ref", "key=value"),
        ] {
            let e = CacheTo::parse(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(matches!(
            CacheTo::parse("type=inline"),
            Err(SpecError::InlineUnsupported)
        ));
        assert!(matches!(
            CacheTo::parse("type=registry,ref=x,mode=all"),
            Err(SpecError::Invalid {
                problem: SpecProblem::BadMode(_),
                ..
            })
        ));
        let e = CacheFrom::parse("type=local,dest=/x")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("accepted keys: type, ref (registry), src"),
            "{e}"
        );
    }
}
