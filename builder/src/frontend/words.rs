//! How BuildKit cuts one logical line into pieces before any expansion: the keyword, the
//! `--flags`, and the arguments as a JSON array, whitespace-separated words, quoted words or
//! one string. Quotes stay in the words here; they are removed when the words are expanded.

/// BuildKit's `[\t\v\f\r ]+`: the whitespace that separates arguments (not `\n`, not Unicode
/// spaces).
pub(crate) fn is_sep(c: char) -> bool {
    matches!(c, '\t' | '\u{0b}' | '\u{0c}' | '\r' | ' ')
}

/// Splits on runs of separator whitespace, keeping no empty pieces at either end when the
/// text is already trimmed (as BuildKit's regexp split on trimmed text does).
pub(crate) fn split_whitespace(s: &str) -> Vec<String> {
    if s.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_sep = false;
    for c in s.chars() {
        if is_sep(c) {
            if !in_sep {
                out.push(std::mem::take(&mut cur));
                in_sep = true;
            }
        } else {
            in_sep = false;
            cur.push(c);
        }
    }
    out.push(cur);
    out
}

/// Splits `s` at the first run of separator whitespace.
pub(crate) fn split_once_whitespace(s: &str) -> (&str, Option<&str>) {
    match s.find(is_sep) {
        None => (s, None),
        Some(i) => {
            let rest = s[i..].trim_start_matches(is_sep);
            (&s[..i], Some(rest))
        }
    }
}

/// Reads the leading `--flag[=value]` words of an instruction's arguments (quotes removed,
/// `\` escapes the next character) and returns the rest of the line and the flags. A bare `--`
/// ends the flags.
pub(crate) fn extract_flags(line: &str) -> (String, Vec<String>) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut i = 0;
    while i <= chars.len() {
        let at_end = i == chars.len();
        let ch = if at_end { '\0' } else { chars[i].1 };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            let next_is_dash = chars.get(i + 1).map(|c| c.1) == Some('-');
            if ch != '-' || !next_is_dash {
                return (line[chars[i].0..].to_string(), words);
            }
            phase = Phase::Word;
        }
        if at_end {
            if word != "--" && (blank_ok || !word.is_empty()) {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if word == "--" {
                    return (line[chars[i].0..].to_string(), words);
                }
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                i += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
                i += 1;
                continue;
            }
            let mut c = ch;
            if ch == '\\' {
                if i + 1 == chars.len() {
                    i += 1;
                    continue;
                }
                i += 1;
                c = chars[i].1;
            }
            word.push(c);
            i += 1;
            continue;
        }
        // In a quote.
        if ch == quote {
            phase = Phase::Word;
            i += 1;
            continue;
        }
        let mut c = ch;
        if ch == '\\' {
            if i + 1 == chars.len() {
                phase = Phase::Word;
                i += 1;
                continue;
            }
            i += 1;
            c = chars[i].1;
        }
        word.push(c);
        i += 1;
    }
    (String::new(), words)
}

/// Splits `rest` into words at unquoted whitespace, keeping quotes and escapes in the words
/// (BuildKit's `parseWords`, used by ENV, LABEL and ARG).
pub(crate) fn parse_words(rest: &str, escape: char) -> Vec<String> {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote,
    }
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut quote = '\0';
    let mut blank_ok = false;
    let mut i = 0;
    while i <= chars.len() {
        let at_end = i == chars.len();
        let mut ch = if at_end { '\0' } else { chars[i] };
        if phase == Phase::Spaces {
            if at_end {
                break;
            }
            if ch.is_whitespace() {
                i += 1;
                continue;
            }
            phase = Phase::Word;
        }
        if at_end {
            if blank_ok || !word.is_empty() {
                words.push(word);
            }
            break;
        }
        if phase == Phase::Word {
            if ch.is_whitespace() {
                phase = Phase::Spaces;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                word.clear();
                blank_ok = false;
                i += 1;
                continue;
            }
            if ch == '\'' || ch == '"' {
                quote = ch;
                blank_ok = true;
                phase = Phase::Quote;
            }
            if ch == escape {
                if i + 1 == chars.len() {
                    // An escape at the very end is skipped.
                    i += 1;
                    continue;
                }
                // Unquoted, the escape and the next character go in as they are, even a
                // quote.
                word.push(ch);
                i += 1;
                ch = chars[i];
            }
            word.push(ch);
            i += 1;
            continue;
        }
        // In a quote.
        if ch == quote {
            phase = Phase::Word;
        }
        if ch == escape && quote != '\'' {
            if i + 1 == chars.len() {
                phase = Phase::Word;
                i += 1;
                continue;
            }
            word.push(ch);
            i += 1;
            ch = chars[i];
        }
        word.push(ch);
        i += 1;
    }
    words
}

/// What came of trying to read the arguments as a JSON array.
pub(crate) enum Json {
    /// A JSON array of strings: the exec form.
    Strings(Vec<String>),
    /// Valid JSON array with something other than a string in it: an error in BuildKit.
    NotStrings,
    /// Not a JSON array: the arguments are read another way.
    No,
}

/// Reads `rest` as a JSON array of strings, as BuildKit's `parseJSON` does.
pub(crate) fn parse_json(rest: &str) -> Json {
    let rest = rest.trim_start();
    if !rest.starts_with('[') {
        return Json::No;
    }
    match serde_json::from_str::<Vec<serde_json::Value>>(rest) {
        Ok(values) => {
            let mut out = Vec::with_capacity(values.len());
            for v in values {
                match v {
                    serde_json::Value::String(s) => out.push(s),
                    _ => return Json::NotStrings,
                }
            }
            Json::Strings(out)
        }
        Err(_) => Json::No,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_read_until_the_first_plain_word() {
        let (rest, flags) = extract_flags("--from=build --chown=\"a b\" src dst");
        assert_eq!(flags, vec!["--from=build", "--chown=a b"]);
        assert_eq!(rest, "src dst");
        let (rest, flags) = extract_flags("-- --not-a-flag x");
        assert!(flags.is_empty());
        assert_eq!(rest, " --not-a-flag x");
        let (rest, flags) = extract_flags("--link");
        assert_eq!(flags, vec!["--link"]);
        assert_eq!(rest, "");
        let (rest, flags) = extract_flags("-x --y");
        assert!(flags.is_empty());
        assert_eq!(rest, "-x --y");
    }

    #[test]
    fn words_keep_quotes() {
        assert_eq!(
            parse_words(r#"a="b c" d=e\ f g='h'"#, '\\'),
            vec![r#"a="b c""#, r"d=e\ f", "g='h'"]
        );
        assert_eq!(parse_words("x=\"\"", '\\'), vec!["x=\"\""]);
        assert_eq!(parse_words("  ", '\\'), Vec::<String>::new());
    }

    #[test]
    fn json_forms() {
        assert!(matches!(parse_json(r#"["a", "b"]"#), Json::Strings(v) if v == ["a", "b"]));
        assert!(matches!(parse_json("[1]"), Json::NotStrings));
        assert!(matches!(parse_json("[\"a\" b"), Json::No));
        assert!(matches!(parse_json("echo [x]"), Json::No));
    }

    #[test]
    fn whitespace_split() {
        assert_eq!(split_whitespace("a \t b"), vec!["a", "b"]);
        assert_eq!(split_once_whitespace("k  v w"), ("k", Some("v w")));
    }
}
