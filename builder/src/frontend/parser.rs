//! Physical lines to logical instruction lines, as BuildKit's `parser.Parse` reads them:
//! parser directives at the top, comments, line continuations with the escape character
//! (comment lines and blank lines inside a continuation are skipped), and heredoc bodies after
//! RUN/COPY/ADD lines (also behind ONBUILD).

use super::directives::{DirectiveParser, Directives};
use super::error::{ParseError, ParseErrorKind};
use super::heredoc::{self, Heredoc};
use super::words::{self, Json};

/// One logical instruction line, cut into keyword, flags and arguments but not interpreted.
#[derive(Debug, Clone)]
pub(crate) struct RawLine {
    /// The keyword as written.
    pub keyword: String,
    /// `--flag[=value]` words, quotes removed.
    pub flags: Vec<String>,
    /// Everything after the flags, trimmed.
    pub args: String,
    /// The whole logical line (continuations joined, escape characters removed).
    pub original: String,
    pub start_line: usize,
    pub end_line: usize,
    pub column: usize,
    pub heredocs: Vec<Heredoc>,
}

/// A warning BuildKit prints but does not fail on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line of the instruction concerned.
    pub line: usize,
    /// The warning text.
    pub message: String,
}

pub(crate) struct Lines {
    pub directives: Directives,
    pub lines: Vec<RawLine>,
    pub warnings: Vec<Warning>,
}

/// Splits after each `\n`, keeping it, as BuildKit's scanner does.
fn physical_lines(source: &str) -> Vec<&str> {
    source.split_inclusive('\n').collect()
}

fn trim_newline(s: &str) -> &str {
    s.trim_end_matches(['\r', '\n'])
}

fn is_comment(raw: &str) -> bool {
    trim_newline(raw).trim_start().starts_with('#')
}

/// Removes a trailing line-continuation escape (and spaces/tabs after it); returns the line
/// and whether the logical line ends here. An escape preceded by another escape is not a
/// continuation (BuildKit's regexp needs a different character, or nothing, before it).
fn trim_continuation(line: &str, escape: char) -> (String, bool) {
    let trimmed = line.trim_end_matches([' ', '\t']);
    let Some(before) = trimmed.strip_suffix(escape) else {
        return (line.to_string(), true);
    };
    if before.is_empty() || !before.ends_with(escape) {
        (before.to_string(), false)
    } else {
        (line.to_string(), true)
    }
}

/// The text of a physical line as BuildKit keeps it: newline removed, optionally leading
/// whitespace removed, and nothing if it is a comment starting in its first column.
fn process_line(raw: &str, strip_left: bool) -> &str {
    let mut token = trim_newline(raw);
    if strip_left {
        token = token.trim_start();
    }
    if token.starts_with('#') { "" } else { token }
}

fn err(line: usize, column: usize, kind: ParseErrorKind) -> ParseError {
    ParseError { line, column, kind }
}

/// Keywords whose lines may carry heredocs.
fn heredoc_keyword(k: &str) -> bool {
    matches!(k.to_ascii_lowercase().as_str(), "run" | "copy" | "add")
}

/// BuildKit's `splitCommand`: keyword, flags and arguments of one logical line.
pub(crate) fn split_command(line: &str) -> (String, Vec<String>, String) {
    let line = line.trim();
    let (keyword, rest) = words::split_once_whitespace(line);
    match rest {
        Some(rest) => {
            let (args, flags) = words::extract_flags(rest);
            (keyword.to_string(), flags, args.trim().to_string())
        }
        None => (keyword.to_string(), Vec::new(), String::new()),
    }
}

/// Whether an instruction line may have heredocs: RUN/COPY/ADD (or ONBUILD of one of them)
/// not in JSON form.
fn can_contain_heredoc(keyword: &str, args: &str) -> bool {
    let (keyword, args) = if keyword.eq_ignore_ascii_case("onbuild") {
        let (k, _, a) = split_command(args);
        (k, a)
    } else {
        (keyword.to_string(), args.to_string())
    };
    heredoc_keyword(&keyword) && !matches!(words::parse_json(&args), Json::Strings(_))
}

pub(crate) fn parse_lines(source: &str) -> Result<Lines, ParseError> {
    let source = source.strip_prefix('\u{feff}').unwrap_or(source);
    let physical = physical_lines(source);
    let mut directives = DirectiveParser::default();
    let mut lines = Vec::new();
    let mut warnings = Vec::new();
    let mut current = 0usize;
    let mut idx = 0usize;

    while idx < physical.len() {
        let raw = physical[idx];
        idx += 1;
        let stripped = trim_newline(raw).trim_start();
        directives
            .line(stripped, current + 1)
            .map_err(|k| err(current + 1, 1, k))?;
        let text = process_line(raw, true);
        current += 1;
        let start_line = current;
        let column = trim_newline(raw)
            .chars()
            .take_while(|c| c.is_whitespace())
            .count()
            + 1;
        let escape = directives.directives.escape;

        let (mut line, mut end) = trim_continuation(text, escape);
        if end && line.is_empty() {
            continue;
        }
        let mut empty_continuation = false;
        while !end && idx < physical.len() {
            let raw = physical[idx];
            idx += 1;
            directives
                .line(trim_newline(raw), current + 1)
                .map_err(|k| err(current + 1, 1, k))?;
            let text = process_line(raw, false);
            current += 1;
            if is_comment(raw) {
                continue;
            }
            if text.trim_start().is_empty() {
                empty_continuation = true;
                continue;
            }
            let (cont, is_end) = trim_continuation(text, escape);
            line.push_str(&cont);
            end = is_end;
        }
        if empty_continuation {
            warnings.push(Warning {
                line: start_line,
                message: "empty continuation line (a blank line inside a line continuation); BuildKit warns it will become an error".into(),
            });
        }

        let (keyword, flags, args) = split_command(&line);
        if keyword.is_empty() {
            return Err(err(start_line, column, ParseErrorKind::EmptyContinuation));
        }

        let mut heredocs = Vec::new();
        if can_contain_heredoc(&keyword, &args) && line.contains("<<") {
            for mut doc in heredoc::markers_in_line(&line) {
                let mut terminated = false;
                while idx < physical.len() {
                    let raw = physical[idx];
                    idx += 1;
                    current += 1;
                    let mut candidate = trim_newline(raw);
                    if doc.chomp {
                        candidate = candidate.trim_start_matches('\t');
                    }
                    if candidate == doc.name {
                        terminated = true;
                        break;
                    }
                    doc.content.push_str(raw);
                }
                if !terminated {
                    return Err(err(
                        start_line,
                        column,
                        ParseErrorKind::UnterminatedHeredoc { name: doc.name },
                    ));
                }
                heredocs.push(doc);
            }
        }

        lines.push(RawLine {
            keyword,
            flags,
            args,
            original: line,
            start_line,
            end_line: current,
            column,
            heredocs,
        });
    }

    Ok(Lines {
        directives: directives.directives,
        lines,
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(src: &str) -> Vec<String> {
        parse_lines(src)
            .unwrap()
            .lines
            .iter()
            .map(|l| format!("{}@{}-{}:{}", l.keyword, l.start_line, l.end_line, l.args))
            .collect()
    }

    #[test]
    fn continuations_skip_comments_and_blank_lines() {
        let src = "FROM a\nRUN echo \\\n# comment\n\n  hi \\\n  there\nCMD x\n";
        assert_eq!(
            summary(src),
            vec!["FROM@1-1:a", "RUN@2-6:echo   hi   there", "CMD@7-7:x"]
        );
    }

    #[test]
    fn escaped_escape_is_not_a_continuation() {
        assert_eq!(
            summary("RUN echo \\\\\nCMD x"),
            vec!["RUN@1-1:echo \\\\", "CMD@2-2:x"]
        );
    }

    #[test]
    fn backtick_escape_directive() {
        let src = "# escape=`\nFROM a\nRUN dir c:\\ `\n  /w\n";
        assert_eq!(summary(src), vec!["FROM@2-2:a", "RUN@3-4:dir c:\\   /w"]);
    }

    #[test]
    fn directive_after_comment_is_a_comment() {
        let src = "# hello\n# escape=`\nFROM a\nRUN a `\nRUN b\n";
        assert_eq!(summary(src), vec!["FROM@3-3:a", "RUN@4-4:a `", "RUN@5-5:b"]);
    }

    #[test]
    fn continuation_at_eof_is_kept() {
        assert_eq!(
            summary("FROM a\nRUN foo \\"),
            vec!["FROM@1-1:a", "RUN@2-2:foo"]
        );
        let e = parse_lines("FROM a\n\\\n").err().unwrap();
        assert_eq!(e.kind, ParseErrorKind::EmptyContinuation);
        assert_eq!(e.line, 2);
    }

    #[test]
    fn heredocs_are_read() {
        let src = "FROM a\nRUN <<EOF\necho hi\nEOF\nCOPY <<-X <<Y /d/\n\tx\n\tX\ny\nY\nCMD z\n";
        let l = parse_lines(src).unwrap().lines;
        assert_eq!(l[1].start_line, 2);
        assert_eq!(l[1].end_line, 4);
        assert_eq!(l[1].heredocs[0].content, "echo hi\n");
        assert_eq!(l[2].end_line, 9);
        assert_eq!(l[2].heredocs[0].data(), "x\n");
        assert_eq!(l[2].heredocs[1].content, "y\n");
        assert_eq!(l[3].start_line, 10);
    }

    #[test]
    fn heredoc_not_first_word_and_json_form() {
        let src = "FROM a\nRUN cat <<EOF > /f && echo ok\nbody\nEOF\nRUN [\"cat\", \"<<EOF\"]\n";
        let l = parse_lines(src).unwrap().lines;
        assert_eq!(l[1].heredocs.len(), 1);
        assert_eq!(l[1].end_line, 4);
        assert!(l[2].heredocs.is_empty());
    }

    #[test]
    fn unterminated_heredoc() {
        let e = parse_lines("FROM a\nRUN <<EOF\nbody\n").err().unwrap();
        assert_eq!(e.line, 2);
        assert!(matches!(e.kind, ParseErrorKind::UnterminatedHeredoc { .. }));
    }

    #[test]
    fn heredoc_only_on_run_copy_add() {
        let l = parse_lines("FROM a\nENV x <<EOF\nCMD y\n").unwrap().lines;
        assert_eq!(l.len(), 3);
    }
}
