//! `.dockerignore` matching with Docker's `patternmatcher` semantics: patterns are cleaned
//! (`./`, a leading `/`, `..`, doubled and trailing `/` go), `*` and `?` stop at `/`, `**`
//! crosses directories, `[...]` is a class, `\` escapes, `!pattern` re-includes, the last
//! matching pattern wins, and a path is excluded when it or any of its parent directories is.
//!
//! Which file applies: `<Dockerfile>.dockerignore` beside the Dockerfile, when it exists, is
//! used instead of the context's `.dockerignore` ([`Ignore::for_build`]).

use std::path::{Path, PathBuf};

use regex::Regex;

/// A `.dockerignore` that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum IgnoreError {
    /// A pattern that does not compile.
    #[error("{file}:{line}: invalid pattern {pattern:?}: {message}")]
    Pattern {
        /// The ignore file (`.dockerignore` when parsed from text).
        file: String,
        line: usize,
        pattern: String,
        message: String,
    },
    /// The ignore file exists but cannot be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Debug, Clone)]
enum Kind {
    Exact,
    /// `dir/**`: anything starting with this.
    Prefix(String),
    /// `**/name` (or `**name`): anything ending with this.
    Suffix(String),
    Regex(Regex),
}

#[derive(Debug, Clone)]
struct Pattern {
    /// The cleaned pattern, without `!`.
    text: String,
    exclusion: bool,
    kind: Kind,
}

impl Pattern {
    fn matches(&self, path: &str) -> bool {
        match &self.kind {
            Kind::Exact => path == self.text,
            Kind::Prefix(p) => path.starts_with(p.as_str()),
            Kind::Suffix(s) => {
                // `**/foo` also matches `foo` at the top.
                path.ends_with(s.as_str()) || s.strip_prefix('/') == Some(path)
            }
            Kind::Regex(re) => re.is_match(path),
        }
    }
}

/// Go's `path.Clean` for slash-separated paths.
fn clean(p: &str) -> String {
    if p.is_empty() {
        return ".".into();
    }
    let rooted = p.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            other => parts.push(other),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn compile(text: &str) -> Result<Kind, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut re = String::from("^");
    #[derive(PartialEq)]
    enum T {
        Exact,
        Prefix,
        Suffix,
        Regex,
    }
    let mut t = T::Exact;
    let mut i = 0;
    let mut first = true;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                // `**/` is `**`.
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i == chars.len() {
                    // A trailing `**` accepts everything, as in .gitignore.
                    if t == T::Exact {
                        t = T::Prefix;
                    } else {
                        re.push_str(".*");
                        t = T::Regex;
                    }
                } else {
                    re.push_str("(.*/)?");
                    t = T::Regex;
                }
                if first {
                    t = T::Suffix;
                }
            }
            '*' => {
                re.push_str("[^/]*");
                t = T::Regex;
            }
            '?' => {
                re.push_str("[^/]");
                t = T::Regex;
            }
            '.' | '+' | '(' | ')' | '|' | '{' | '}' | '$' => {
                re.push('\\');
                re.push(ch);
            }
            '\\' => match chars.get(i) {
                Some(&next) => {
                    i += 1;
                    re.push('\\');
                    re.push(next);
                    t = T::Regex;
                }
                None => re.push_str("\\\\"),
            },
            '[' | ']' => {
                re.push(ch);
                t = T::Regex;
            }
            other => re.push(other),
        }
        first = false;
    }
    Ok(match t {
        T::Exact => Kind::Exact,
        T::Prefix => Kind::Prefix(text.strip_suffix("**").unwrap_or(text).to_string()),
        T::Suffix => Kind::Suffix(text.strip_prefix("**").unwrap_or(text).to_string()),
        T::Regex => {
            re.push('$');
            Kind::Regex(Regex::new(&re).map_err(|e| e.to_string())?)
        }
    })
}

/// The patterns of one `.dockerignore`.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

impl Ignore {
    /// Reads `.dockerignore` text: one pattern a line, `#` comment lines, blank lines skipped.
    pub fn parse(text: &str) -> Result<Ignore, IgnoreError> {
        Self::parse_named(text, ".dockerignore")
    }

    fn parse_named(text: &str, file: &str) -> Result<Ignore, IgnoreError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut patterns = Vec::new();
        for (n, raw) in text.lines().enumerate() {
            // Only a `#` in the first column starts a comment.
            if raw.starts_with('#') {
                continue;
            }
            let mut p = raw.trim();
            if p.is_empty() {
                continue;
            }
            let exclusion = p.starts_with('!');
            if exclusion {
                p = p[1..].trim();
            }
            let fail = |message: String| IgnoreError::Pattern {
                file: file.to_string(),
                line: n + 1,
                pattern: raw.trim().to_string(),
                message,
            };
            if p.is_empty() {
                return Err(fail("an exception `!` needs a pattern after it".into()));
            }
            let mut cleaned = clean(p);
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let kind = compile(&cleaned).map_err(fail)?;
            patterns.push(Pattern {
                text: cleaned,
                exclusion,
                kind,
            });
        }
        Ok(Ignore { patterns })
    }

    /// The ignore rules of a build: `<Dockerfile>.dockerignore` beside the Dockerfile if it
    /// exists, else `.dockerignore` at the context root, else none. Returns the file used.
    pub fn for_build(
        context: &Path,
        dockerfile: &Path,
    ) -> Result<(Ignore, Option<PathBuf>), IgnoreError> {
        let mut specific = dockerfile.as_os_str().to_owned();
        specific.push(".dockerignore");
        for candidate in [PathBuf::from(specific), context.join(".dockerignore")] {
            match std::fs::read(&candidate) {
                Ok(bytes) => {
                    let text = String::from_utf8_lossy(&bytes);
                    let ignore = Self::parse_named(&text, &candidate.display().to_string())?;
                    return Ok((ignore, Some(candidate)));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(IgnoreError::Read {
                        path: candidate,
                        source,
                    });
                }
            }
        }
        Ok((Ignore::default(), None))
    }

    /// Whether there are no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether `rel_path` (relative to the context, `/`-separated) is excluded: the last
    /// pattern matching it or one of its parent directories decides. `is_dir` does not change
    /// the answer (Docker's patterns, trailing `/` cleaned away, match files and directories
    /// alike); it is there so callers state what they walk.
    pub fn matches(&self, rel_path: &str, is_dir: bool) -> bool {
        let _ = is_dir;
        let path = clean(rel_path.trim_start_matches('/'));
        let parents: Vec<&str> = match path.rfind('/') {
            Some(i) => path[..i].split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.patterns {
            // An exclusion only matters once something matched, an inclusion only before.
            if p.exclusion != matched {
                continue;
            }
            let mut hit = p.matches(&path);
            if !hit {
                for i in 1..=parents.len() {
                    if p.matches(&parents[..i].join("/")) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// Whether an exception (`!pattern`) could re-include something inside directory `dir`.
    /// A walker may skip an excluded directory when this is false:
    /// `if ignore.matches(d, true) && !ignore.may_match_inside(d) { skip }`.
    pub fn may_match_inside(&self, dir: &str) -> bool {
        let dir = clean(dir.trim_start_matches('/'));
        let dir_parts: Vec<&str> = if dir == "." {
            Vec::new()
        } else {
            dir.split('/').collect()
        };
        self.patterns
            .iter()
            .filter(|p| p.exclusion)
            .any(|p| could_reach_inside(&p.text, &dir_parts))
    }
}

/// Whether `pattern` could match `dir` itself, a path inside it, or one of its parents (which
/// re-includes everything inside): compares component by component, giving up certainty at
/// the first `**`.
fn could_reach_inside(pattern: &str, dir: &[&str]) -> bool {
    let comps: Vec<&str> = pattern.split('/').collect();
    for (i, d) in dir.iter().enumerate() {
        let Some(c) = comps.get(i) else {
            // The pattern names a parent of `dir`.
            return true;
        };
        if c.contains("**") {
            return true;
        }
        match compile(c) {
            Ok(Kind::Exact) if c != d => return false,
            Ok(Kind::Regex(re)) if !re.is_match(d) => return false,
            Ok(_) => {}
            Err(_) => return true,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ig(text: &str) -> Ignore {
        Ignore::parse(text).unwrap()
    }

    #[test]
    fn basic_globs() {
        let i = ig("*.md\n/build\n./tmp/\nsrc/**/*.o\n?.txt\n**/.git\n");
        assert!(i.matches("README.md", false));
        assert!(!i.matches("docs/README.md", false), "* does not cross /");
        assert!(i.matches("build", true));
        assert!(
            i.matches("build/out/x", false),
            "children of an excluded dir"
        );
        assert!(i.matches("tmp/a", false));
        assert!(i.matches("src/a/b/c.o", false));
        assert!(i.matches("src/c.o", false), "**/ matches no directory too");
        assert!(i.matches("a.txt", false));
        assert!(!i.matches("ab.txt", false));
        assert!(i.matches(".git", true));
        assert!(i.matches("deep/er/.git/config", false));
        assert!(!i.matches("main.rs", false));
    }

    #[test]
    fn exceptions_last_match_wins() {
        let i = ig("*.md\n!README.md\n");
        assert!(i.matches("CHANGES.md", false));
        assert!(!i.matches("README.md", false));
        let i = ig("!README.md\n*.md\n");
        assert!(i.matches("README.md", false), "a later exclusion overrides");
        let i = ig("docs\n!docs/keep.md\n");
        assert!(i.matches("docs/other.md", false));
        assert!(!i.matches("docs/keep.md", false));
    }

    #[test]
    fn comments_brackets_escapes_and_cleaning() {
        let i = ig("# a comment\n  \n[abc].rs\nx\\*y\n a/../b \n");
        assert!(i.matches("a.rs", false));
        assert!(!i.matches("d.rs", false));
        assert!(i.matches("x*y", false));
        assert!(!i.matches("xzy", false));
        assert!(i.matches("b", false));
        assert!(!i.matches("# a comment", false));
        let i = ig(" # not a comment\n");
        assert!(i.matches("# not a comment", false));
    }

    #[test]
    fn trailing_double_star() {
        let i = ig("dir/**\n");
        assert!(i.matches("dir/a", false));
        assert!(i.matches("dir/a/b", false));
        assert!(!i.matches("dir", true));
        let i = ig("**\n!keep\n");
        assert!(i.matches("anything/at/all", false));
        assert!(!i.matches("keep", false));
    }

    #[test]
    fn walker_can_skip_dirs() {
        let i = ig("node_modules\nvendor\n!vendor/keep/**\n");
        assert!(i.matches("node_modules", true));
        assert!(!i.may_match_inside("node_modules"));
        assert!(i.matches("vendor", true));
        assert!(i.may_match_inside("vendor"));
        assert!(i.may_match_inside("vendor/keep"));
        assert!(!i.matches("vendor/keep/a.go", false));
        let i = ig("logs\n!**/important.log\n");
        assert!(
            i.may_match_inside("logs"),
            "**/ exception may match anywhere"
        );
        assert!(!i.matches("logs/x/important.log", false));
        let i = ig("a\n!a/b/c\n");
        assert!(i.may_match_inside("a"));
        assert!(i.may_match_inside("a/b"));
        assert!(!i.may_match_inside("a/z"));
    }

    #[test]
    fn bad_patterns() {
        let e = Ignore::parse("ok\n!\n").unwrap_err();
        assert!(e.to_string().starts_with(".dockerignore:2:"), "{e}");
        assert!(Ignore::parse("[z-a]\n").is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "[a-z*?!/\\\\.\\[\\]#\n -]{0,60}", path in "[a-z*./]{0,20}") {
            if let Ok(i) = Ignore::parse(&text) {
                let _ = i.matches(&path, false);
                let _ = i.may_match_inside(&path);
            }
        }
    }

    #[test]
    fn dockerfile_specific_ignore_file_wins() {
        let dir = std::env::temp_dir().join(format!("berth-ignore-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("build")).unwrap();
        std::fs::write(dir.join(".dockerignore"), "general\n").unwrap();
        let dockerfile = dir.join("build/app.Dockerfile");
        let (i, used) = Ignore::for_build(&dir, &dockerfile).unwrap();
        assert_eq!(used, Some(dir.join(".dockerignore")));
        assert!(i.matches("general", false));
        std::fs::write(dir.join("build/app.Dockerfile.dockerignore"), "specific\n").unwrap();
        let (i, used) = Ignore::for_build(&dir, &dockerfile).unwrap();
        assert_eq!(used, Some(dir.join("build/app.Dockerfile.dockerignore")));
        assert!(i.matches("specific", false));
        assert!(!i.matches("general", false));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
