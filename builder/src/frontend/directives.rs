//! Parser directives (`# syntax=`, `# escape=`, `# check=`) with BuildKit's rules: only in the
//! leading comment lines, before any blank line, other comment or instruction; names are
//! case-insensitive; each may appear once; an unknown directive ends the directive block.

use super::error::ParseErrorKind;

/// One directive as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// Lower-cased name: `syntax`, `escape` or `check`.
    pub name: String,
    /// The value, surrounding whitespace removed.
    pub value: String,
    /// 1-based line.
    pub line: usize,
}

/// The directives of a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directives {
    /// The escape character: `\` unless `# escape=` set a backtick.
    pub escape: char,
    /// Every directive found, in order.
    pub list: Vec<Directive>,
}

impl Default for Directives {
    fn default() -> Self {
        Directives {
            escape: '\\',
            list: Vec::new(),
        }
    }
}

impl Directives {
    /// The value of a directive, by lower-case name.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.list
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.value.as_str())
    }

    /// `# syntax=` (the front end image a BuildKit daemon would switch to; recorded only).
    pub fn syntax(&self) -> Option<&str> {
        self.get("syntax")
    }

    /// `# check=` (lint configuration; recorded only).
    pub fn check(&self) -> Option<&str> {
        self.get("check")
    }
}

const VALID: [&str; 3] = ["syntax", "escape", "check"];

/// Go's regexp `\s`.
fn is_re_space(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\u{0c}' | '\r' | ' ')
}

/// Matches `^#\s*([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$` on a line.
fn match_directive(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('#')?.trim_start_matches(is_re_space);
    let name_len = rest
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())))
        .map_or(rest.len(), |(i, _)| i);
    if name_len == 0 {
        return None;
    }
    let (name, rest) = rest.split_at(name_len);
    let rest = rest.trim_start_matches(is_re_space).strip_prefix('=')?;
    if rest.is_empty() {
        return None;
    }
    let trimmed = rest.trim_matches(is_re_space);
    let value = if trimmed.is_empty() {
        // The regexp gives the lazy group one character back when there is nothing else.
        rest.chars().last().map(String::from).unwrap_or_default()
    } else {
        trimmed.to_string()
    };
    Some((name.to_string(), value))
}

/// Looks for directives while they may still appear.
#[derive(Debug, Default)]
pub(crate) struct DirectiveParser {
    done: bool,
    pub(crate) directives: Directives,
}

impl DirectiveParser {
    /// Feeds one physical line (newline and leading whitespace already removed).
    pub(crate) fn line(&mut self, text: &str, line: usize) -> Result<(), ParseErrorKind> {
        if self.done {
            return Ok(());
        }
        let Some((name, value)) = match_directive(text) else {
            self.done = true;
            return Ok(());
        };
        let name = name.to_ascii_lowercase();
        if !VALID.contains(&name.as_str()) {
            self.done = true;
            return Ok(());
        }
        if self.directives.list.iter().any(|d| d.name == name) {
            return Err(ParseErrorKind::Directive(format!(
                "only one {name} parser directive can be used; remove the second one"
            )));
        }
        if name == "escape" {
            match value.as_str() {
                "\\" => self.directives.escape = '\\',
                "`" => self.directives.escape = '`',
                other => {
                    return Err(ParseErrorKind::Directive(format!(
                        "invalid escape token '{other}' does not match ` or \\"
                    )));
                }
            }
        }
        self.directives.list.push(Directive { name, value, line });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_like_buildkit() {
        assert_eq!(
            match_directive("# escape=`"),
            Some(("escape".into(), "`".into()))
        );
        assert_eq!(
            match_directive("#SYNTAX = docker/dockerfile:1  "),
            Some(("SYNTAX".into(), "docker/dockerfile:1".into()))
        );
        assert_eq!(match_directive("# escape="), None);
        assert_eq!(match_directive("# this is a comment"), None);
        assert_eq!(match_directive("#1a=b"), None);
    }

    #[test]
    fn rules() {
        let mut p = DirectiveParser::default();
        p.line("# Escape=`", 1).unwrap();
        assert_eq!(p.directives.escape, '`');
        assert!(p.line("# escape=\\", 2).is_err());
        let mut p = DirectiveParser::default();
        p.line("# unknown=1", 1).unwrap();
        p.line("# escape=`", 2).unwrap();
        assert_eq!(
            p.directives.escape, '\\',
            "an unknown directive ends the block"
        );
        let mut p = DirectiveParser::default();
        assert!(p.line("# escape=x", 1).is_err());
    }
}
