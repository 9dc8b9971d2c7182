//! Cases in the style of BuildKit's `envVarTest` and `wordsTest` tables.

use super::*;

fn env() -> Vec<(String, String)> {
    [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// `input | expected` per line; `error` means the word must be rejected.
const ENV_VAR_TABLE: &str = r#"
hello                    |     hello
he'll'o                  |     hello
he'llo                   |     error
he\'llo                  |     he'llo
he\\'llo                 |     error
abc\tdef                 |     abctdef
"abc\tdef"               |     abc\tdef
"abc\\tdef"              |     abc\tdef
'abc\tdef'               |     abc\tdef
hello\                   |     hello
hello\\                  |     hello\
"hello                   |     error
"hello\"                 |     error
"hel'lo"                 |     hel'lo
'hello                   |     error
'hello\'                 |     hello\
'hello\there'            |     hello\there
'hello\\there'           |     hello\\there
"''"                     |     ''
$.                       |     $.
he$1x                    |     hex
he$.x                    |     he$.x
he$pwd.                  |     he.
he$PWD                   |     he/home
he\$PWD                  |     he$PWD
he\\$PWD                 |     he\/home
"he\$PWD"                |     he$PWD
"he\\$PWD"               |     he\/home
\${}                     |     ${}
\${}aaa                  |     ${}aaa
he\${}                   |     he${}
he\${}xx                 |     he${}xx
${}                      |     error
${}aaa                   |     error
he${}                    |     error
he${}xx                  |     error
he${hi}                  |     he
he${hi}xx                |     hexx
he${PWD}                 |     he/home
he${.}                   |     error
he${XXX:-000}xx          |     he000xx
he${PWD:-000}xx          |     he/homexx
he${XXX:-$PWD}xx         |     he/homexx
he${XXX:-${PWD:-yyy}}xx  |     he/homexx
he${XXX:-${YYY:-yyy}}xx  |     heyyyxx
he${XXX:YYY}             |     error
he${XXX?}                |     error
he${XXX:?}               |     error
he${PWD?}                |     he/home
he${PWD:?}               |     he/home
he${NULL?}               |     he
he${NULL:?}              |     error
he${XXX:+${PWD}}xx       |     hexx
he${PWD:+${XXX}}xx       |     hexx
he${PWD:+${SHELL}}xx     |     hebashxx
he${XXX:+000}xx          |     hexx
he${PWD:+000}xx          |     he000xx
he${NULL:+000}xx         |     hexx
he${NULL+000}xx          |     he000xx
he${NULL-000}xx          |     hexx
he${NULL:-000}xx         |     he000xx
he${XXX-000}xx           |     he000xx
'he${XX}'                |     he${XX}
"he${PWD}"               |     he/home
"he'$PWD'"               |     he'/home'
"$PWD"                   |     /home
'$PWD'                   |     $PWD
'\$PWD'                  |     \$PWD
'"hello"'                |     "hello"
he\$PWD                  |     he$PWD
"he\$PWD"                |     he$PWD
'he\$PWD'                |     he\$PWD
he${PWD                  |     error
he${PWD=000}xx           |     error
he${PWD+${PWD}:}xx       |     he/home:xx
he${PWD+${SHELL}:}xx     |     hebash:xx
he${XXX+${PWD}:}xx       |     hexx
x${KOREAN}               |     x한국어
${KOREAN}y               |     한국어y
$KOREAN                  |     한국어
${PWD#/}                 |     home
${PWD#*/}                |     home
${PWD##*/}               |     home
${PWD#*o}                |     me
${PWD%e}                 |     /hom
${PWD%/*}                |
${PWD%%m*}               |     /ho
${PWD%?}                 |     /hom
${PWD#\*}                |     /home
${PWD/h/H}               |     /Home
${PWD//o/0}              |     /h0me
${PWD/\//x}              |     xhome
${SHELL//[a/b}           |     bash
${SHELL/a*/X}            |     bX
${XXX/a/b}               |
${PWD/o                  |     error
${PWD/o/b                |     error
${PWD#\x}                |     error
$@                       |
${PWD:}                  |     error
"${PWD:-a b}"            |     /home
${XXX:-"a b"}            |     a b
"$"                      |     $
"\a"                     |     \a
"a\"b"                   |     a"b
"#;

#[test]
fn env_var_table() {
    let lex = Lexer::new('\\');
    let env = env();
    let mut failures = Vec::new();
    for line in ENV_VAR_TABLE.lines().filter(|l| !l.trim().is_empty()) {
        let (input, expected) = line.rsplit_once('|').expect("table line has a |");
        let (input, expected) = (input.trim(), expected.trim());
        let got = lex.process_word(input, &env);
        let ok = match (&got, expected) {
            (Err(_), "error") => true,
            (Ok(w), e) => e != "error" && w == e,
            _ => false,
        };
        if !ok {
            failures.push(format!("{input:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// `ENV name=value` lines add to the environment; `input | w1,w2` expects those words.
const WORDS_TABLE: &str = "
hello | hello
hello${hi}bye | hellobye
ENV hi=hi
hello${hi}bye | hellohibye
ENV space=abc  def
hello${space}bye | helloabc,defbye
hello\"${space}\"bye | helloabc  defbye
hello \"${space}\"bye | hello,abc  defbye
ENV leading=  ab c
hello${leading}def | hello,ab,cdef
hello\"${leading}\" def | hello  ab c,def
hello\"${leading}\" | hello  ab c
hello${leading} | hello,ab,c
ENV trailing=ab c   
hello${trailing} | helloab,c
hello${trailing}d | helloab,c,d
hello\"${trailing}\"d | helloab c   d
hel\"lo${trailing}\" | helloab c   
hello\" there  \" | hello there  
hello there     | hello,there
hello\\ there | hello there
hello\" there | error
hello\\\" there | hello\",there
hello\"\\\\there\" | hello\\there
hello\"\\there\" | hello\\there
hello'\\\\there' | hello\\\\there
hello'\\there' | hello\\there
hello'$there' | hello$there
'' | 
a '' b | a,b
";

#[test]
fn words_table() {
    let lex = Lexer::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    let mut failures = Vec::new();
    for line in WORDS_TABLE.lines().filter(|l| !l.trim().is_empty()) {
        if let Some(def) = line.strip_prefix("ENV ") {
            let (k, v) = def.split_once('=').expect("ENV k=v");
            env.insert(0, (k.to_string(), v.to_string()));
            continue;
        }
        let (input, expected) = line.split_once('|').expect("table line has a |");
        let input = input.trim();
        let expected = expected.strip_prefix(' ').unwrap_or(expected);
        let expected: Vec<String> = if expected.is_empty() {
            Vec::new()
        } else {
            expected.split(',').map(str::to_string).collect()
        };
        let got = match lex.process_words(input, &env) {
            Ok(w) => w,
            Err(_) => vec!["error".to_string()],
        };
        if got != expected {
            failures.push(format!("{input:?}: expected {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn backtick_escape() {
    let lex = Lexer::new('`');
    let env = env();
    assert_eq!(
        lex.process_word("C:\\path`$PWD", &env).unwrap(),
        "C:\\path$PWD"
    );
    assert_eq!(lex.process_word("a` b", &env).unwrap(), "a b");
    assert_eq!(lex.process_word("\"a`\"b\"", &env).unwrap(), "a\"b");
}

#[test]
fn matched_and_unmatched_are_reported() {
    let lex = Lexer::new('\\');
    let e = lex.process("$PWD ${NOPE:-x} $SHELL", &env()).unwrap();
    assert_eq!(e.word, "/home x bash");
    assert_eq!(e.words, vec!["/home", "x", "bash"]);
    assert!(e.matched.contains("PWD") && e.matched.contains("SHELL"));
    assert!(e.unmatched.contains("NOPE"));
}

#[test]
fn skip_unset_env_keeps_references() {
    let mut lex = Lexer::new('\\');
    lex.skip_unset_env = true;
    let env = env();
    assert_eq!(
        lex.process_word("$X ${Y} ${Z:-d} $PWD", &env).unwrap(),
        "$X ${Y} ${Z:-d} /home"
    );
}

#[test]
fn error_names_the_word_and_problem() {
    let err = Lexer::new('\\').process_word("a${B", &NoEnv).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to process \"a${B\": syntax error: missing '}'"
    );
    let err = Lexer::new('\\')
        .process_word("${B:?must be set}", &NoEnv)
        .unwrap_err();
    assert!(err.to_string().contains("B: must be set"), "{err}");
}
