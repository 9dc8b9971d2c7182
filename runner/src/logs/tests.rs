use super::*;
use std::sync::atomic::{AtomicBool, Ordering};

fn entries(path: &Path) -> Vec<serde_json::Value> {
    let data = std::fs::read(path).expect("read log");
    assert!(data.is_empty() || data.ends_with(b"\n"));
    data.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice(l).expect("each line is JSON"))
        .collect()
}

fn logs_of(path: &Path, opts: &LogOptions) -> (String, String) {
    let (mut o, mut e) = (Vec::new(), Vec::new());
    read_logs(path, opts, &mut o, &mut e, &|| false).expect("read_logs");
    (
        String::from_utf8(o).expect("utf8"),
        String::from_utf8(e).expect("utf8"),
    )
}

fn entry(log: &str, stream: &str, time: &str) -> String {
    format!(
        "{{\"log\":{},\"stream\":\"{stream}\",\"time\":\"{time}\"}}\n",
        serde_json::to_string(log).expect("json")
    )
}

fn opts() -> LogOptions {
    LogOptions::default()
}

#[test]
fn writer_produces_dockers_exact_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c-json.log");
    let log = LogFile::open(&path).expect("open");
    let mut out = log.writer(Stream::Stdout);
    let mut err = log.writer(Stream::Stderr);
    out.write_all(b"hello\nwor").expect("w");
    err.write_all(b"oops\n").expect("w");
    out.write_all(b"ld\n").expect("w");
    drop((out, err));
    let text = std::fs::read_to_string(&path).expect("read");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    for (line, (log, stream)) in lines.iter().zip([
        ("hello\\n", "stdout"),
        ("oops\\n", "stderr"),
        ("world\\n", "stdout"),
    ]) {
        let prefix = format!("{{\"log\":\"{log}\",\"stream\":\"{stream}\",\"time\":\"");
        assert!(line.starts_with(&prefix), "{line}");
        let time = &line[prefix.len()..line.len() - 2];
        assert!(
            line.ends_with("Z\"}") && parse_time(time.as_bytes()).is_some(),
            "{line}"
        );
    }
}

#[test]
fn escaping_matches_gos_encoder() {
    let mut out = Vec::new();
    let input = b"a\"b\\c\td<>&\r\x01\xe2\x80\xa8\xe2\x80\xa9\xc3\xa9\xff\xe2\x82!\xed\xa0\x80\xf0\x9f\x98\x80\x7f\n";
    escape_json(&mut out, input);
    assert_eq!(
        String::from_utf8(out).expect("ascii"),
        "a\\\"b\\\\c\\u0009d\\u003c\\u003e\\u0026\\r\\u0001\\u2028\\u2029\u{e9}\\ufffd\\ufffd\\ufffd!\\ufffd\\ufffd\\ufffd\u{1f600}\u{7f}\\n"
    );
}

#[test]
fn times_are_rfc3339_nano_in_the_file_and_fixed_width_in_output() {
    let t = |nanos| DateTime::from_timestamp(1_795_420_800, nanos).expect("time");
    let nano = |n| {
        let mut b = [0u8; 40];
        let len = format_rfc3339_nano(&t(n), &mut b);
        String::from_utf8(b[..len].to_vec()).expect("ascii")
    };
    let fixed = |n| {
        let mut b = [0u8; 40];
        let len = format_rfc3339_fixed(&t(n), &mut b);
        String::from_utf8(b[..len].to_vec()).expect("ascii")
    };
    assert_eq!(nano(123_456_789), "2026-11-23T08:00:00.123456789Z");
    assert_eq!(nano(100_000_000), "2026-11-23T08:00:00.1Z");
    assert_eq!(nano(0), "2026-11-23T08:00:00Z");
    assert_eq!(fixed(100_000_000), "2026-11-23T08:00:00.100000000Z");
    assert_eq!(fixed(0), "2026-11-23T08:00:00.000000000Z");
    for n in [0, 1, 100_000_000, 123_456_789, 999_999_999] {
        assert_eq!(parse_time(nano(n).as_bytes()), Some(t(n)));
        assert_eq!(parse_time(fixed(n).as_bytes()), Some(t(n)));
    }
    assert_eq!(
        parse_time(b"2026-11-23T09:00:00.5+01:00"),
        Some(t(500_000_000))
    );
    assert_eq!(parse_time(b"2026-13-23T09:00:00Z"), None);
    assert_eq!(parse_time(b"garbage"), None);
}

#[test]
fn long_lines_split_at_16k_as_dockers_copier() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log");
    let log = LogFile::open(&path).expect("open");
    let mut w = log.writer(Stream::Stdout);
    let mut line = vec![b'x'; 40_000];
    line.push(b'\n');
    w.write_all(&line[..1000]).expect("w");
    w.write_all(&line[1000..]).expect("w");
    w.write_all(&[b'y'; MAX_ENTRY - 1]).expect("w");
    w.write_all(b"\n").expect("w");
    w.write_all(&[b'z'; MAX_ENTRY]).expect("w");
    w.write_all(b"\n").expect("w");
    drop(w);
    let lens: Vec<usize> = entries(&path)
        .iter()
        .map(|e| e["log"].as_str().expect("log").len())
        .collect();
    assert_eq!(
        lens,
        [
            MAX_ENTRY,
            MAX_ENTRY,
            40_001 - 2 * MAX_ENTRY,
            MAX_ENTRY,
            MAX_ENTRY,
            1
        ]
    );
    let (out, _) = logs_of(&path, &opts());
    assert_eq!(out.len(), 40_001 + MAX_ENTRY + MAX_ENTRY + 1);
}

#[test]
fn partial_lines_are_flushed_without_newline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log");
    let log = LogFile::open(&path).expect("open");
    let mut w = log.writer(Stream::Stderr);
    w.write_all(b"prompt> ").expect("w");
    assert!(
        entries(&path).is_empty(),
        "a partial line waits for its end"
    );
    w.flush().expect("flush");
    w.write_all(b"answer\nlast").expect("w");
    drop(w);
    let logs: Vec<String> = entries(&path)
        .iter()
        .map(|e| e["log"].as_str().expect("log").to_string())
        .collect();
    assert_eq!(logs, ["prompt> ", "answer\n", "last"]);
    assert_eq!(
        logs_of(&path, &opts()),
        (String::new(), "prompt> answer\nlast".to_string())
    );
}

#[test]
fn concurrent_streams_never_interleave_inside_an_entry() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log");
    let log = LogFile::open(&path).expect("open");
    let threads: Vec<_> = [Stream::Stdout, Stream::Stderr]
        .into_iter()
        .map(|s| {
            let mut w = log.writer(s);
            std::thread::spawn(move || {
                for i in 0..2000 {
                    // Odd-sized writes so lines straddle calls.
                    let text = format!("{} line {i} {}\n", s.as_str(), "#".repeat(i % 300));
                    for piece in text.as_bytes().chunks(97) {
                        w.write_all(piece).expect("w");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("join");
    }
    let all = entries(&path);
    assert_eq!(all.len(), 4000);
    let (out, err) = logs_of(&path, &opts());
    let expect = |s: &str| {
        (0..2000)
            .map(|i| format!("{s} line {i} {}\n", "#".repeat(i % 300)))
            .collect::<String>()
    };
    assert_eq!(out, expect("stdout"));
    assert_eq!(err, expect("stderr"));
}

#[test]
fn invalid_utf8_reads_back_as_replacement_characters() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log");
    let mut w = LogFile::open(&path).expect("open").writer(Stream::Stdout);
    w.write_all(b"ok \xff\xe2\x82 \xe2\x80\xa8<&>\"\\\t\x1b[0m\n")
        .expect("w");
    drop(w);
    assert_eq!(
        logs_of(&path, &opts()).0,
        "ok \u{fffd}\u{fffd}\u{fffd} \u{2028}<&>\"\\\t\x1b[0m\n"
    );
}

#[test]
fn missing_file_is_an_empty_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        logs_of(&dir.path().join("nope"), &opts()),
        (String::new(), String::new())
    );
    let follow = LogOptions {
        follow: true,
        ..opts()
    };
    assert_eq!(
        logs_of(&dir.path().join("nope"), &follow),
        (String::new(), String::new())
    );
}

fn numbered(dir: &Path, n: usize) -> std::path::PathBuf {
    let path = dir.join("log");
    let mut text = String::new();
    for i in 0..n {
        let stream = if i % 3 == 0 { "stderr" } else { "stdout" };
        text.push_str(&entry(
            &format!("line {i}\n"),
            stream,
            &format!("2026-11-23T08:{:02}:{:02}.5Z", i / 60 % 60, i % 60),
        ));
    }
    std::fs::write(&path, text).expect("write");
    path
}

fn lines_out(path: &Path, opts: &LogOptions) -> Vec<String> {
    // One buffer behind both streams, as a terminal: shows the order entries came out in.
    let o = std::cell::RefCell::new(Vec::new());
    struct Tee<'a>(&'a std::cell::RefCell<Vec<u8>>);
    impl Write for Tee<'_> {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    read_logs(path, opts, &mut Tee(&o), &mut Tee(&o), &|| false).expect("read");
    String::from_utf8(o.into_inner())
        .expect("utf8")
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn both_streams_keep_their_order_in_one_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = numbered(dir.path(), 10);
    let want: Vec<String> = (0..10).map(|i| format!("line {i}")).collect();
    assert_eq!(lines_out(&path, &opts()), want);
}

#[test]
fn tail_reads_the_last_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    // ~85 bytes per entry: 20k entries span many 64 KiB tail blocks.
    let path = numbered(dir.path(), 20_000);
    let tail = |n| {
        lines_out(
            &path,
            &LogOptions {
                tail: Some(n),
                ..opts()
            },
        )
    };
    assert_eq!(tail(0), Vec::<String>::new());
    assert_eq!(tail(1), ["line 19999"]);
    let t = tail(15_000);
    assert_eq!((t.len(), t[0].as_str()), (15_000, "line 5000"));
    assert_eq!(tail(50_000).len(), 20_000);
    // A last entry still being written counts as the last line.
    let mut data = std::fs::read(&path).expect("read");
    data.extend_from_slice(b"{\"log\":\"half");
    std::fs::write(&path, data).expect("write");
    assert_eq!(
        tail(2),
        ["line 19999"],
        "the torn entry is skipped, not printed"
    );
}

#[test]
fn since_until_and_timestamps() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = numbered(dir.path(), 10);
    let at = |s: u32| {
        DateTime::parse_from_rfc3339(&format!("2026-11-23T08:00:{s:02}.5Z"))
            .expect("t")
            .with_timezone(&Utc)
    };
    let o = LogOptions {
        since: Some(at(3)),
        until: Some(at(6)),
        ..opts()
    };
    assert_eq!(
        lines_out(&path, &o),
        ["line 3", "line 4", "line 5", "line 6"]
    );
    let o = LogOptions {
        since: Some(at(8)),
        timestamps: true,
        ..opts()
    };
    assert_eq!(
        lines_out(&path, &o),
        [
            "2026-11-23T08:00:08.500000000Z line 8",
            "2026-11-23T08:00:09.500000000Z line 9"
        ]
    );
    let o = LogOptions {
        tail: Some(3),
        since: Some(at(8)),
        ..opts()
    };
    assert_eq!(lines_out(&path, &o), ["line 8", "line 9"]);
}

#[test]
fn entries_within_one_second_keep_their_fractions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log");
    let times = [
        "08:00:00Z",
        "08:00:00.5Z",
        "08:00:00.25Z",
        "08:00:00.123456789123Z",
        "08:00:01.1Z",
        "08:00:00.75Z",
    ];
    let text: String = times
        .iter()
        .enumerate()
        .map(|(i, t)| entry(&format!("{i}\n"), "stdout", &format!("2026-11-23T{t}")))
        .collect();
    std::fs::write(&path, text).expect("write");
    let o = LogOptions {
        timestamps: true,
        since: Some(utc("2026-11-23T08:00:00.25Z")),
        ..opts()
    };
    assert_eq!(
        lines_out(&path, &o),
        [
            "2026-11-23T08:00:00.500000000Z 1",
            "2026-11-23T08:00:00.250000000Z 2",
            "2026-11-23T08:00:01.100000000Z 4",
            "2026-11-23T08:00:00.750000000Z 5",
        ]
    );
}

#[test]
fn other_shapes_are_read_and_corrupt_lines_skipped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log");
    let text = [
        entry("fast\n", "stdout", "2026-11-23T08:00:00Z"),
        "not json at all\n".to_string(),
        "{\"log\":\"truncated\n".to_string(),
        "{\"log\":\"with attrs\\n\",\"stream\":\"stderr\",\"attrs\":{\"a\":\"b\"},\"time\":\"2026-11-23T08:00:01Z\"}\n".to_string(),
        "{\"time\":\"2026-11-23T08:00:02Z\",\"stream\":\"stdout\",\"log\":\"reordered \\u00e9\\ud83d\\ude00\\n\"}\n".to_string(),
        "{\"stream\":\"stdout\",\"time\":\"2026-11-23T08:00:03Z\"}\n".to_string(),
        // An unescaped quote inside: looks like the fast shape from both ends, is not JSON.
        "{\"log\":\"a\"b\",\"stream\":\"stdout\",\"time\":\"2026-11-23T08:00:04Z\"}\n".to_string(),
        "\n".to_string(),
        entry("offset time\n", "stdout", "2026-11-23T09:00:05+01:00"),
    ]
    .concat();
    std::fs::write(&path, text).expect("write");
    let (out, err) = logs_of(&path, &opts());
    assert_eq!(out, "fast\nreordered \u{e9}\u{1f600}\noffset time\n");
    assert_eq!(err, "with attrs\n");
    let o = LogOptions {
        timestamps: true,
        ..opts()
    };
    assert!(
        logs_of(&path, &o)
            .0
            .ends_with("2026-11-23T08:00:05.000000000Z offset time\n")
    );
}

#[test]
fn unescape_handles_every_json_escape() {
    let mut out = Vec::new();
    assert!(unescape_json(
        br#"a\"b\\c\/d\b\f\n\r\t\u0041\u00e9\ud83d\ude00\ud800x\udc00"#,
        &mut out
    ));
    assert_eq!(
        String::from_utf8(out).expect("utf8"),
        "a\"b\\c/d\u{8}\u{c}\n\r\tA\u{e9}\u{1f600}\u{fffd}x\u{fffd}"
    );
    for bad in [&b"\\"[..], b"\\x", b"\\u12", b"\\u12g4", b"a\"b"] {
        assert!(!unescape_json(bad, &mut Vec::new()), "{bad:?}");
    }
}

#[test]
fn follow_reads_until_the_container_stops() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("log");
    let running = Arc::new(AtomicBool::new(true));
    let writer = {
        let (path, running) = (path.clone(), Arc::clone(&running));
        std::thread::spawn(move || {
            // The file appears only after the reader started.
            std::thread::sleep(Duration::from_millis(60));
            let mut w = LogFile::open(&path).expect("open").writer(Stream::Stdout);
            for i in 0..50 {
                w.write_all(format!("tick {i}\n").as_bytes()).expect("w");
                if i % 10 == 0 {
                    std::thread::sleep(Duration::from_millis(30));
                }
            }
            w.write_all(b"no newline").expect("w");
            drop(w);
            running.store(false, Ordering::SeqCst);
        })
    };
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let o_opts = LogOptions {
        follow: true,
        ..opts()
    };
    read_logs(&path, &o_opts, &mut o, &mut e, &|| {
        running.load(Ordering::SeqCst)
    })
    .expect("follow");
    writer.join().expect("join");
    let want: String = (0..50).map(|i| format!("tick {i}\n")).collect::<String>() + "no newline";
    assert_eq!(String::from_utf8(o).expect("utf8"), want);
}

#[test]
fn follow_with_tail_zero_shows_only_new_entries() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = numbered(dir.path(), 5);
    let running = Arc::new(AtomicBool::new(true));
    let writer = {
        let (path, running) = (path.clone(), Arc::clone(&running));
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(80));
            let mut w = LogFile::open(&path).expect("open").writer(Stream::Stderr);
            w.write_all(b"new\n").expect("w");
            drop(w);
            running.store(false, Ordering::SeqCst);
        })
    };
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let f = LogOptions {
        follow: true,
        tail: Some(0),
        ..opts()
    };
    read_logs(&path, &f, &mut o, &mut e, &|| {
        running.load(Ordering::SeqCst)
    })
    .expect("follow");
    writer.join().expect("join");
    assert_eq!((o.as_slice(), e.as_slice()), (&b""[..], &b"new\n"[..]));
}

#[test]
fn follow_stops_at_until_even_while_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = numbered(dir.path(), 10);
    let until = utc("2026-11-23T08:00:04.5Z");
    let f = LogOptions {
        follow: true,
        until: Some(until),
        ..opts()
    };
    let (mut o, mut e) = (Vec::new(), Vec::new());
    // An entry after `until` ends the read; so does the clock passing it on an idle log.
    read_logs(&path, &f, &mut o, &mut e, &|| true).expect("follow");
    assert_eq!(
        String::from_utf8(o).expect("utf8"),
        "line 1\nline 2\nline 4\n"
    );
    assert_eq!(String::from_utf8(e).expect("utf8"), "line 0\nline 3\n");
    let short = numbered(dir.path(), 3);
    let (mut o, mut e) = (Vec::new(), Vec::new());
    read_logs(&short, &f, &mut o, &mut e, &|| true).expect("follow");
    assert_eq!(o.len() + e.len(), "line 0\nline 1\nline 2\n".len());
}

proptest::proptest! {
    #[test]
    fn word_scans_agree_with_byte_scans(s in proptest::collection::vec(proptest::prop_oneof![
        proptest::prelude::any::<u8>(),
        proptest::prelude::Just(b'a'),
        proptest::prelude::Just(b'"'),
        proptest::prelude::Just(b'\\'),
    ], 0..64)) {
        let naive = s.iter().position(|&b| b == b'"' || b == b'\\');
        proptest::prop_assert_eq!(find_quote_or_backslash(&s), naive);
        let naive = s.iter().position(|&b| b >= 0x80 || ESCAPE[b as usize]);
        proptest::prop_assert_eq!(find_escape(&s), naive);
    }

    #[test]
    fn any_bytes_escape_like_the_reference(s in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)) {
        // Reference: the Go algorithm without the word-at-a-time skip, decoded back by serde_json.
        let mut out = Vec::new();
        escape_json(&mut out, &s);
        let quoted = [b"\"".as_slice(), &out, b"\""].concat();
        let back: String = serde_json::from_slice(&quoted).expect("valid JSON string");
        let mut want = String::new();
        let mut rest = s.as_slice();
        while !rest.is_empty() {
            match std::str::from_utf8(rest) {
                Ok(v) => { want.push_str(v); break; }
                Err(e) => {
                    let ok = e.valid_up_to();
                    want.push_str(std::str::from_utf8(&rest[..ok]).expect("valid prefix"));
                    want.push('\u{fffd}');
                    rest = &rest[ok + 1..];
                }
            }
        }
        proptest::prop_assert_eq!(back, want);
    }

    #[test]
    fn any_text_round_trips(chunks in proptest::collection::vec(".{0,40}", 0..20), split in 1usize..64) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("log");
        let text: String = chunks.join("\n");
        let mut w = LogFile::open(&path).expect("open").writer(Stream::Stdout);
        for piece in text.as_bytes().chunks(split) {
            w.write_all(piece).expect("w");
        }
        drop(w);
        proptest::prop_assert_eq!(logs_of(&path, &opts()).0, text);
    }
}

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("rfc3339")
        .with_timezone(&Utc)
}

#[test]
fn since_accepts_dockers_forms() {
    let now = utc("2026-11-23T08:00:00.75Z");
    let cet = chrono::FixedOffset::east_opt(3600).expect("offset");
    let p = |s: &str| parse_since_in(s, now, cet);
    assert_eq!(p("10m"), Ok(utc("2026-11-23T07:50:00Z")));
    assert_eq!(p("1h30m"), Ok(utc("2026-11-23T06:30:00Z")));
    assert_eq!(p("1.5h"), Ok(utc("2026-11-23T06:30:00Z")));
    assert_eq!(p("42s"), Ok(utc("2026-11-23T07:59:18Z")));
    assert_eq!(p("-1m"), Ok(utc("2026-11-23T08:01:00Z")));
    assert_eq!(p("500ms"), Ok(utc("2026-11-23T08:00:00Z")));
    assert_eq!(p("2026-11-23T07:00:00Z"), Ok(utc("2026-11-23T07:00:00Z")));
    assert_eq!(
        p("2026-11-23T07:00:00.123456789Z"),
        Ok(utc("2026-11-23T07:00:00.123456789Z"))
    );
    assert_eq!(
        p("2026-11-23T07:00:00+02:00"),
        Ok(utc("2026-11-23T05:00:00Z"))
    );
    assert_eq!(
        p("2026-11-23T07:00:00-02:00"),
        Ok(utc("2026-11-23T09:00:00Z"))
    );
    // No zone: the local zone (here UTC+1).
    assert_eq!(p("2026-11-23"), Ok(utc("2026-11-22T23:00:00Z")));
    assert_eq!(p("2026-11-23T07"), Ok(utc("2026-11-23T06:00:00Z")));
    assert_eq!(p("2026-11-23T07:30"), Ok(utc("2026-11-23T06:30:00Z")));
    assert_eq!(p("2026-11-23T07:30:15"), Ok(utc("2026-11-23T06:30:15Z")));
    assert_eq!(
        p("2026-11-23T07:30:15.5"),
        Ok(utc("2026-11-23T06:30:15.5Z"))
    );
    assert_eq!(p("2026-11-23Z"), Ok(utc("2026-11-23T00:00:00Z")));
    assert_eq!(p("1700000000"), Ok(utc("2023-11-14T22:13:20Z")));
    assert_eq!(p("1700000000.5"), Ok(utc("2023-11-14T22:13:20.5Z")));
    assert_eq!(p("0"), Ok(utc("1970-01-01T00:00:00Z")));
    for bad in [
        "",
        "yesterday",
        "10x",
        "2026-13-01",
        "2026-11-23T25:00:00Z",
        "1.2.3",
        "1700000000.",
        "5.",
        "h",
    ] {
        assert!(p(bad).is_err(), "{bad:?} should fail");
    }
    assert_eq!(
        p("soon"),
        Err("failed to parse value as time or duration: \"soon\"".to_string())
    );
    assert!(parse_since("2026-11-23T07:00:00Z", now).is_ok());
}
