//! Docker's `--filter KEY=VALUE` grammar for containers (`ps`, `container prune`): parsed at the
//! edge into typed items, matched against containers.

use super::record::Container;
use crate::state::Status;

/// A `--filter` that Docker's CLI would refuse, in its words.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FilterError {
    #[error("bad format of filter (expected name=value): {0}")]
    Format(String),
    #[error("invalid filter '{0}'")]
    UnknownKey(String),
    #[error("invalid filter 'status={0}'")]
    UnknownStatus(String),
}

/// `ps --filter`: Docker's keys that make sense here.
pub struct Filters {
    items: Vec<(String, String)>,
}

impl Filters {
    pub fn parse(raw: &[String]) -> Result<Filters, FilterError> {
        let mut items = Vec::new();
        for f in raw {
            let (k, v) = f
                .split_once('=')
                .ok_or_else(|| FilterError::Format(f.clone()))?;
            match k {
                "id" | "name" | "status" | "label" | "exited" | "ancestor" | "before" | "since" => {
                }
                _ => return Err(FilterError::UnknownKey(k.to_string())),
            }
            if k == "status"
                && !matches!(
                    v,
                    "created"
                        | "restarting"
                        | "running"
                        | "removing"
                        | "paused"
                        | "exited"
                        | "dead"
                )
            {
                return Err(FilterError::UnknownStatus(v.to_string()));
            }
            items.push((k.to_string(), v.to_string()));
        }
        Ok(Filters { items })
    }

    pub fn has(&self, key: &str) -> bool {
        self.items.iter().any(|(k, _)| k == key)
    }

    /// Filters with the same key are OR'd, different keys AND'd (Docker's rule).
    pub fn matches(&self, c: &Container) -> bool {
        let keys: std::collections::BTreeSet<&str> =
            self.items.iter().map(|(k, _)| k.as_str()).collect();
        keys.into_iter().all(|key| {
            self.items
                .iter()
                .filter(|(k, _)| k == key)
                .any(|(_, v)| match key {
                    "id" => c.id().starts_with(v.as_str()),
                    "name" => c.name().contains(v.as_str()),
                    "status" => c.state.status.as_str() == v,
                    "exited" => {
                        c.state.status == Status::Exited
                            && v.parse::<i32>().ok() == Some(c.state.exit_code)
                    }
                    "label" => match v.split_once('=') {
                        Some((lk, lv)) => {
                            c.record.config.labels.get(lk).map(String::as_str) == Some(lv)
                        }
                        None => c.record.config.labels.contains_key(v.as_str()),
                    },
                    "ancestor" => {
                        c.record.config.image == *v
                            || c.record
                                .image
                                .trim_start_matches("sha256:")
                                .starts_with(v.trim_start_matches("sha256:"))
                    }
                    _ => true,
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_refuse_what_docker_refuses_in_its_words() {
        let e = |f: &str| {
            Filters::parse(&[f.to_string()])
                .err()
                .map(|e| e.to_string())
        };
        assert_eq!(
            e("name"),
            Some("bad format of filter (expected name=value): name".into())
        );
        assert_eq!(e("colour=red"), Some("invalid filter 'colour'".into()));
        assert_eq!(e("status=up"), Some("invalid filter 'status=up'".into()));
        assert_eq!(e("status=running"), None);
        let f = Filters::parse(&["label=a=b".into(), "name=web".into()]).unwrap();
        assert!(f.has("label") && !f.has("status"));
    }
}
