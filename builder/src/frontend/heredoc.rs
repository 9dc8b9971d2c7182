//! Heredocs (`<<EOF`, `<<-EOF`, `<<"EOF"`, `3<<EOF`) on RUN, COPY and ADD, found the way BuildKit
//! finds them: any word of the line, after shell-word splitting with quotes and escapes kept,
//! that reads `[fd]<<[-]WORD`.

use super::lex::{Lexer, NoEnv};

/// One heredoc attached to an instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heredoc {
    /// The terminator word, quotes removed (`EOF` for `<<"EOF"`).
    pub name: String,
    /// The file descriptor written before `<<` (`3<<EOF`), 0 when none.
    pub fd: u32,
    /// Whether variables in the content are expanded: false when any part of the
    /// terminator was quoted.
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the content lines and the terminator.
    pub chomp: bool,
    /// The lines between the instruction and the terminator, line endings kept, tabs not yet
    /// stripped.
    pub content: String,
}

impl Heredoc {
    /// The content as the step sees it: with `<<-`, leading tabs removed from every line.
    pub fn data(&self) -> String {
        if !self.chomp {
            return self.content.clone();
        }
        self.content
            .split_inclusive('\n')
            .map(|l| l.trim_start_matches('\t'))
            .collect()
    }
}

/// Reads one word as a heredoc marker, BuildKit's `^(\d*)<<(-?)([^<]*)$`.
pub(crate) fn parse_marker(word: &str) -> Option<Heredoc> {
    let digits = word.bytes().take_while(u8::is_ascii_digit).count();
    let after = word[digits..].strip_prefix("<<")?;
    let (chomp, rest) = match after.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, after),
    };
    if rest.is_empty() || rest.contains('<') {
        return None;
    }
    // An out-of-range descriptor is read as 0, as BuildKit ignores the conversion error.
    let fd = word[..digits].parse::<u32>().unwrap_or(0);

    // Lex the terminator with and without its quotes: if they differ, part of it was quoted
    // and the content is taken literally.
    let mut lex = Lexer::new('\\');
    lex.skip_unset_env = true;
    let words = lex.process_words(rest, &NoEnv).ok()?;
    if words.len() != 1 {
        return None;
    }
    lex.raw_quotes = true;
    let raw_words = lex.process_words(rest, &NoEnv).ok()?;
    if raw_words.len() != 1 {
        return None;
    }
    let quotes = |s: &str| s.matches(['\'', '"']).count();
    let name = words.into_iter().next()?;
    let expand = quotes(&name) == quotes(&raw_words[0]);
    Some(Heredoc {
        name,
        fd,
        expand,
        chomp,
        content: String::new(),
    })
}

/// Every heredoc marker on an instruction line, in order.
pub(crate) fn markers_in_line(line: &str) -> Vec<Heredoc> {
    let mut lex = Lexer::new('\\');
    lex.raw_quotes = true;
    lex.raw_escapes = true;
    lex.skip_unset_env = true;
    let words = lex.process_words(line, &NoEnv).unwrap_or_default();
    words.iter().filter_map(|w| parse_marker(w)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers() {
        let h = parse_marker("<<EOF").unwrap();
        assert_eq!(
            (h.name.as_str(), h.expand, h.chomp, h.fd),
            ("EOF", true, false, 0)
        );
        let h = parse_marker("<<-'END'").unwrap();
        assert_eq!((h.name.as_str(), h.expand, h.chomp), ("END", false, true));
        let h = parse_marker("3<<\"E\"OF").unwrap();
        assert_eq!((h.name.as_str(), h.expand, h.fd), ("EOF", false, 3));
        assert!(parse_marker("<<").is_none());
        assert!(parse_marker("a<<EOF").is_none());
        assert!(parse_marker("<<<EOF").is_none());
    }

    #[test]
    fn markers_anywhere_in_the_line() {
        let names: Vec<String> = markers_in_line("RUN cat <<A > a && cat <<-\"B\" > b")
            .into_iter()
            .map(|h| h.name)
            .collect();
        assert_eq!(names, vec!["A", "B"]);
        // Quoted, it is not a heredoc.
        assert!(markers_in_line("RUN echo '<<EOF'").is_empty());
    }

    #[test]
    fn chomp_strips_leading_tabs() {
        let h = Heredoc {
            name: "EOF".into(),
            fd: 0,
            expand: true,
            chomp: true,
            content: "\t\ta\n\tb\n  c\n".into(),
        };
        assert_eq!(h.data(), "a\nb\n  c\n");
    }
}
