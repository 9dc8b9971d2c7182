//! Errors of the front end. Each names the Dockerfile line and column, says what is wrong and,
//! where it can, how to fix it.

/// A Dockerfile that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Dockerfile:{line}:{column}: {kind}")]
pub struct ParseError {
    /// 1-based line where the offending instruction (or directive) starts.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub kind: ParseErrorKind,
}

/// What is wrong with a Dockerfile's syntax.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseErrorKind {
    /// A keyword that is not a Dockerfile instruction.
    #[error("unknown instruction: {name}{}", suggestion.map(|s| format!(" (did you mean {s}?)")).unwrap_or_default())]
    UnknownInstruction {
        /// The keyword as written, upper-cased.
        name: String,
        /// The closest real instruction, if one is close.
        suggestion: Option<&'static str>,
    },
    /// The file ended before a heredoc's terminator line.
    #[error(
        "unterminated heredoc: no line reading exactly `{name}` closes it before the end of the file"
    )]
    UnterminatedHeredoc {
        /// The terminator that was expected.
        name: String,
    },
    /// Only comments and blank lines.
    #[error("file with no instructions")]
    NoInstructions,
    /// No FROM at all.
    #[error(
        "no FROM instruction: every build stage starts with FROM (only ARG may come before the first FROM)"
    )]
    NoFrom,
    /// An instruction other than ARG before the first FROM.
    #[error(
        "{instruction} before the first FROM: only ARG may come before FROM; add a FROM line above it"
    )]
    BeforeFrom {
        /// The misplaced instruction.
        instruction: String,
    },
    /// The file ends in a line continuation with no instruction in it.
    #[error(
        "the file ends with a line continuation that has no instruction: remove the trailing escape character"
    )]
    EmptyContinuation,
    /// A bad parser directive.
    #[error("{0}")]
    Directive(String),
    /// An instruction whose arguments or flags are wrong; the message names the instruction.
    #[error("{0}")]
    Instruction(String),
}

/// Every instruction keyword, upper-case.
pub(crate) const KEYWORDS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

/// The instruction closest to `name` by edit distance, if it is close enough to be a typo.
pub(crate) fn suggest(name: &str) -> Option<&'static str> {
    let name = name.to_ascii_uppercase();
    if name.is_empty() {
        return None;
    }
    let mut best: Option<(usize, &'static str)> = None;
    for k in KEYWORDS {
        let d = edit_distance(&name, k);
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, k));
        }
    }
    let (d, k) = best?;
    let limit = if name.chars().count() <= 3 { 1 } else { 2 };
    (d <= limit).then_some(k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        assert_eq!(suggest("RUNN"), Some("RUN"));
        assert_eq!(suggest("copy"), Some("COPY"));
        assert_eq!(suggest("ENTRYPIONT"), Some("ENTRYPOINT"));
        assert_eq!(suggest("WRONG"), None);
        assert_eq!(suggest("HEALTH"), None);
    }

    #[test]
    fn display_has_location_and_hint() {
        let e = ParseError {
            line: 7,
            column: 1,
            kind: ParseErrorKind::UnknownInstruction {
                name: "RUNN".into(),
                suggestion: suggest("RUNN"),
            },
        };
        assert_eq!(
            e.to_string(),
            "Dockerfile:7:1: unknown instruction: RUNN (did you mean RUN?)"
        );
    }
}
