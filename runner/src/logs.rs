//! Container logs in Docker's json-file format: the writer the supervisor feeds, and the reader
//! behind `berth logs`.
//!
//! Owns the on-disk format, byte for byte as Docker's `jsonfilelog` writes it (one JSON object
//! per line: `{"log":"…","stream":"stdout","time":"<RFC3339Nano>"}`), the line splitting of
//! Docker's copier (entries of at most 16 KiB; a longer line becomes several partial entries
//! without '\n'), and reading with `--tail`, `--since`, `--until`, `--timestamps`, `--follow`.
//!
//! The reader has a fast path for exactly the shape the writer produces and falls back to
//! serde_json for anything else (other key orders, `attrs`, an omitted empty `log`), because
//! serde_json per line cannot reach the ≥ 500 MB/s the `logs` command is asked for.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};
use memchr::{memchr, memrchr};

/// Docker's copier buffer: a line longer than this is logged in pieces of this size.
const MAX_ENTRY: usize = 16 * 1024;

/// Entries are batched per `write` call, but a huge write is cut into batches of about this
/// size so memory stays bounded.
const MAX_BATCH: usize = 1 << 20;

/// Reader block sizes: forward reads, backward reads for `--tail`, output batching.
const READ_BLOCK: usize = 1 << 20;
const TAIL_BLOCK: usize = 64 << 10;
const OUT_BATCH: usize = 256 << 10;

/// A line longer than this cannot come from our writer; it is skipped rather than buffered.
const MAX_LINE: usize = 64 << 20;

/// How often `follow` polls the file when it has caught up.
const POLL: Duration = Duration::from_millis(25);

/// Which of the container's output streams an entry came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

impl Stream {
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Stdout => "stdout",
            Stream::Stderr => "stderr",
        }
    }
}

/// A container's log file, shared (in an `Arc`) by the stdout and stderr copy threads.
#[derive(Debug)]
pub struct LogFile {
    file: Mutex<File>,
}

impl LogFile {
    /// Opens (creating, mode 0640 as Docker) `path` for appending.
    pub fn open(path: &Path) -> io::Result<Arc<LogFile>> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(path)?;
        Ok(Arc::new(LogFile {
            file: Mutex::new(file),
        }))
    }

    /// A line splitter for one stream. Each stream needs its own: a partial line belongs to it.
    pub fn writer(self: &Arc<Self>, stream: Stream) -> LineWriter {
        LineWriter {
            log: Arc::clone(self),
            stream,
            pending: Vec::new(),
            batch: Vec::new(),
        }
    }

    /// Whole entries go to the file in one `write` under the lock: O_APPEND plus one call per
    /// batch means the two streams never interleave inside an entry.
    fn append(&self, batch: &[u8]) -> io::Result<()> {
        // A poisoned lock only means another copier panicked mid-write; the file is still usable.
        let mut file = self.file.lock().unwrap_or_else(|p| p.into_inner());
        file.write_all(batch)
    }
}

/// Turns a stream of output bytes into json-file entries, one per line.
///
/// Bytes after the last '\n' wait for the rest of their line; `flush()` (and drop) logs them as a
/// partial entry. If the file cannot be written, the error is returned and that batch is lost.
pub struct LineWriter {
    log: Arc<LogFile>,
    stream: Stream,
    /// The start of a line not yet terminated, always shorter than `MAX_ENTRY`.
    pending: Vec<u8>,
    /// Encoded entries waiting for one `write`.
    batch: Vec<u8>,
}

impl LineWriter {
    fn write_batch(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let r = self.log.append(&self.batch);
        self.batch.clear();
        r
    }
}

impl Write for LineWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        // Lines that arrived together share one timestamp; formatting it once per call is cheap.
        let mut tbuf = [0u8; 40];
        let tlen = format_rfc3339_nano(&Utc::now(), &mut tbuf);
        let time = &tbuf[..tlen];
        let mut rest = buf;
        while !rest.is_empty() {
            // The buffer holds MAX_ENTRY bytes, '\n' included: find a newline within that window.
            let room = MAX_ENTRY - self.pending.len();
            let window = &rest[..rest.len().min(room)];
            if let Some(i) = memchr(b'\n', window) {
                if self.pending.is_empty() {
                    encode_entry(&mut self.batch, &rest[..=i], self.stream, time);
                } else {
                    self.pending.extend_from_slice(&rest[..=i]);
                    encode_entry(&mut self.batch, &self.pending, self.stream, time);
                    self.pending.clear();
                }
                rest = &rest[i + 1..];
            } else if rest.len() >= room {
                // Buffer full without a newline: a partial entry of exactly MAX_ENTRY bytes.
                self.pending.extend_from_slice(&rest[..room]);
                encode_entry(&mut self.batch, &self.pending, self.stream, time);
                self.pending.clear();
                rest = &rest[room..];
            } else {
                self.pending.extend_from_slice(rest);
                rest = &[];
            }
            if self.batch.len() >= MAX_BATCH {
                self.write_batch()?;
            }
        }
        self.write_batch()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.pending.is_empty() {
            let mut tbuf = [0u8; 40];
            let tlen = format_rfc3339_nano(&Utc::now(), &mut tbuf);
            encode_entry(&mut self.batch, &self.pending, self.stream, &tbuf[..tlen]);
            self.pending.clear();
        }
        self.write_batch()
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        if let Err(err) = self.flush() {
            tracing::warn!(%err, stream = self.stream.as_str(), "losing the end of the container log");
        }
    }
}

/// Appends one entry, exactly as Docker's `JSONLogs.MarshalJSONBuf` lays it out.
fn encode_entry(out: &mut Vec<u8>, line: &[u8], stream: Stream, time: &[u8]) {
    out.reserve(line.len() + 64);
    out.extend_from_slice(b"{\"log\":\"");
    escape_json(out, line);
    out.extend_from_slice(b"\",\"stream\":\"");
    out.extend_from_slice(stream.as_str().as_bytes());
    out.extend_from_slice(b"\",\"time\":\"");
    out.extend_from_slice(time);
    out.extend_from_slice(b"\"}\n");
}

/// ASCII bytes Docker's `ffjsonWriteJSONBytesAsString` escapes: controls, quote, backslash and the
/// HTML-sensitive `<`, `>`, `&` (Go's encoder is HTML-safe by default).
const ESCAPE: [bool; 128] = {
    let mut t = [false; 128];
    let mut i = 0;
    while i < 0x20 {
        t[i] = true;
        i += 1;
    }
    t[b'"' as usize] = true;
    t[b'\\' as usize] = true;
    t[b'<' as usize] = true;
    t[b'>' as usize] = true;
    t[b'&' as usize] = true;
    t
};

/// Go's JSON string escaping of arbitrary bytes: each byte that does not start a valid UTF-8
/// sequence becomes one U+FFFD (Go's `utf8.DecodeRune` gives `RuneError, 1`), U+2028 and U+2029
/// are escaped, `\n` `\r` `\\` `\"` get short forms and other escapes are `\u00XX`.
fn escape_json(out: &mut Vec<u8>, s: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut start = 0;
    let mut i = 0;
    while i < s.len() {
        i += find_escape(&s[i..]).unwrap_or(s.len() - i);
        let Some(&b) = s.get(i) else { break };
        if b < 0x80 {
            if !ESCAPE[b as usize] {
                i += 1;
                continue;
            }
            out.extend_from_slice(&s[start..i]);
            match b {
                b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\r' => out.extend_from_slice(b"\\r"),
                _ => out.extend_from_slice(&[
                    b'\\',
                    b'u',
                    b'0',
                    b'0',
                    HEX[(b >> 4) as usize],
                    HEX[(b & 15) as usize],
                ]),
            }
            i += 1;
            start = i;
            continue;
        }
        let len = match b {
            0xC2..=0xDF => 2,
            0xE0..=0xEF => 3,
            0xF0..=0xF4 => 4,
            _ => 0,
        };
        // Rust's validator rejects exactly what Go's decoder rejects (overlongs, surrogates,
        // > U+10FFFF), so it decides whether this one sequence is valid.
        let valid = len > 0 && i + len <= s.len() && std::str::from_utf8(&s[i..i + len]).is_ok();
        if !valid {
            out.extend_from_slice(&s[start..i]);
            out.extend_from_slice(b"\\ufffd");
            i += 1;
            start = i;
        } else if len == 3
            && b == 0xE2
            && s[i + 1] == 0x80
            && (s[i + 2] == 0xA8 || s[i + 2] == 0xA9)
        {
            out.extend_from_slice(&s[start..i]);
            out.extend_from_slice(if s[i + 2] == 0xA8 {
                b"\\u2028"
            } else {
                b"\\u2029"
            });
            i += 3;
            start = i;
        } else {
            i += len;
        }
    }
    out.extend_from_slice(&s[start..]);
}

// Word-at-a-time scanning. Runs between escapes are short (JSON-logging programs print a quote
// every few bytes), where a SIMD search's setup costs more than it saves; eight bytes per step
// with the classic "has zero byte" trick is faster there and still quick on long runs. In each
// mask only bytes *above* a true match can be false positives, so the lowest set bit is exact.
const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// High bit of each byte of `x` that equals `c` (exact up to the first match).
#[inline(always)]
fn bytes_eq(x: u64, c: u8) -> u64 {
    let v = x ^ (LO * u64::from(c));
    v.wrapping_sub(LO) & !v & HI
}

/// Index of the first byte the writer cannot copy as is: a control, non-ASCII, or `"\<>&`.
#[inline]
fn find_escape(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(w) = s[i..].first_chunk::<8>() {
        let x = u64::from_le_bytes(*w);
        let m = (x & HI)
            | (x.wrapping_sub(LO * 0x20) & !x & HI)
            | bytes_eq(x, b'"')
            | bytes_eq(x, b'\\')
            | bytes_eq(x, b'<')
            | bytes_eq(x, b'>')
            | bytes_eq(x, b'&');
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&b| b >= 0x80 || ESCAPE[b as usize])
        .map(|p| i + p)
}

/// Index of the first `"` or `\` (the only bytes that end a run inside a JSON string).
#[inline]
fn find_quote_or_backslash(s: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(w) = s[i..].first_chunk::<8>() {
        let x = u64::from_le_bytes(*w);
        let m = bytes_eq(x, b'"') | bytes_eq(x, b'\\');
        if m != 0 {
            return Some(i + (m.trailing_zeros() / 8) as usize);
        }
        i += 8;
    }
    s[i..]
        .iter()
        .position(|&b| b == b'"' || b == b'\\')
        .map(|p| i + p)
}

/// Go's `time.RFC3339Nano` (what json-file stores): trailing zeros of the fraction dropped, no
/// fraction at all on a whole second. Returns the length written.
fn format_rfc3339_nano(t: &DateTime<Utc>, buf: &mut [u8; 40]) -> usize {
    let mut n = format_seconds(t, buf);
    let mut nanos = t.nanosecond() % 1_000_000_000;
    if nanos != 0 {
        let mut digits = 9;
        while nanos.is_multiple_of(10) {
            nanos /= 10;
            digits -= 1;
        }
        buf[n] = b'.';
        write_digits(&mut buf[n + 1..n + 1 + digits], nanos);
        n += 1 + digits;
    }
    buf[n] = b'Z';
    n + 1
}

/// Docker's `RFC3339NanoFixed` (what `logs --timestamps` prints): always nine fraction digits.
fn format_rfc3339_fixed(t: &DateTime<Utc>, buf: &mut [u8; 40]) -> usize {
    let n = format_seconds(t, buf);
    buf[n] = b'.';
    write_digits(&mut buf[n + 1..n + 10], t.nanosecond() % 1_000_000_000);
    buf[n + 10] = b'Z';
    n + 11
}

/// `YYYY-MM-DDTHH:MM:SS`; years outside 0..=9999 are clamped, as no log entry has one.
fn format_seconds(t: &DateTime<Utc>, buf: &mut [u8; 40]) -> usize {
    write_digits(&mut buf[0..4], t.year().clamp(0, 9999) as u32);
    buf[4] = b'-';
    write_digits(&mut buf[5..7], t.month());
    buf[7] = b'-';
    write_digits(&mut buf[8..10], t.day());
    buf[10] = b'T';
    write_digits(&mut buf[11..13], t.hour());
    buf[13] = b':';
    write_digits(&mut buf[14..16], t.minute());
    buf[16] = b':';
    write_digits(&mut buf[17..19], t.second());
    19
}

fn write_digits(dst: &mut [u8], mut v: u32) {
    for d in dst.iter_mut().rev() {
        *d = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// Parses the RFC3339 times in log entries; a fast path for our own `…Z` form, chrono otherwise.
fn parse_time(s: &[u8]) -> Option<DateTime<Utc>> {
    parse_time_z(s).or_else(|| {
        let s = std::str::from_utf8(s).ok()?;
        DateTime::parse_from_rfc3339(s)
            .ok()
            .map(|t| t.with_timezone(&Utc))
    })
}

fn parse_time_z(s: &[u8]) -> Option<DateTime<Utc>> {
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        s.get(r)?.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    if s.len() < 20
        || s[4] != b'-'
        || s[7] != b'-'
        || s[10] != b'T'
        || s[13] != b':'
        || s[16] != b':'
    {
        return None;
    }
    let nanos = parse_fraction_z(&s[19..])?;
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    Some(
        date.and_hms_nano_opt(num(11..13)?, num(14..16)?, num(17..19)?, nanos)?
            .and_utc(),
    )
}

/// The end of a `…Z` time after the seconds: `Z` or `.digits Z`, as nanoseconds (digits past
/// the ninth are dropped, as Go does).
fn parse_fraction_z(s: &[u8]) -> Option<u32> {
    let Some(frac) = s.strip_prefix(b".") else {
        return (s == b"Z").then_some(0);
    };
    let digits = frac.strip_suffix(b"Z")?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits.len().min(9);
    let v = digits[..n]
        .iter()
        .fold(0u32, |acc, &c| acc * 10 + u32::from(c - b'0'));
    Some(v * 10u32.pow(9 - n as u32))
}

/// The last whole second seen in `…Z` form. Entries come in bursts within one second, so most
/// times only need their fraction parsed, and `--timestamps` can copy the seconds as they are.
struct SecondCache {
    key: [u8; 19],
    secs: i64,
}

/// A time as (Unix seconds, nanoseconds): compared per entry, far cheaper than `DateTime`.
type Stamp = (i64, u32);

fn stamp(t: &DateTime<Utc>) -> Stamp {
    (t.timestamp(), t.nanosecond() % 1_000_000_000)
}

/// What `berth logs` was asked for.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub follow: bool,
    /// The last N entries only (`None` = all).
    pub tail: Option<usize>,
    /// Entries at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Entries at or before this time; reading stops at the first later entry, as Docker's.
    pub until: Option<DateTime<Utc>>,
    /// Prefix each entry with its time (`RFC3339NanoFixed`) and a space, as `docker logs -t`.
    pub timestamps: bool,
}

/// Writes the log at `path` to `stdout`/`stderr` by stream. A missing file is an empty log (in
/// follow mode: one that may still appear). With `follow`, keeps reading new entries until
/// `still_running()` is false and everything written before that has been read.
pub fn read_logs(
    path: &Path,
    opts: &LogOptions,
    stdout: &mut dyn Write,
    stderr: &mut dyn Write,
    still_running: &dyn Fn() -> bool,
) -> io::Result<()> {
    let mut file = loop {
        match File::open(path) {
            Ok(f) => break f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !opts.follow || !still_running() {
                    return Ok(());
                }
                std::thread::sleep(POLL);
            }
            Err(e) => return Err(e),
        }
    };
    let mut pos = match opts.tail {
        Some(n) => tail_offset(&mut file, n)?,
        None => 0,
    };
    file.seek(SeekFrom::Start(pos))?;

    let mut r = EntryReader::new(
        opts,
        Output {
            stdout,
            stderr,
            buf: Vec::with_capacity(OUT_BATCH),
            stream: Stream::Stdout,
        },
    );
    let mut buf = vec![0u8; READ_BLOCK];
    let mut filled = 0; // bytes of an unfinished line at the front of `buf`
    let mut skipping = false; // inside an over-long line, dropping bytes until its '\n'
    let mut exited = false; // the container was seen stopped: drain to EOF, then finish
    loop {
        if filled == buf.len() {
            if buf.len() >= MAX_LINE {
                tracing::warn!(path = %path.display(), "skipping a log line longer than {MAX_LINE} bytes");
                skipping = true;
                filled = 0;
            } else {
                buf.resize(buf.len() * 2, 0);
            }
        }
        let n = match file.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n > 0 {
            pos += n as u64;
            let end = filled + n;
            let mut start = 0;
            if skipping {
                match memchr(b'\n', &buf[filled..end]) {
                    Some(i) => {
                        skipping = false;
                        start = filled + i + 1;
                    }
                    None => {
                        filled = 0;
                        continue;
                    }
                }
            }
            // Complete lines go out; the unfinished tail moves to the front of the buffer.
            let consumed = r.lines(&buf[start..end])?;
            if r.done {
                break;
            }
            let keep = start + consumed;
            buf.copy_within(keep..end, 0);
            filled = end - keep;
            continue;
        }
        // At EOF.
        if !opts.follow || exited {
            break;
        }
        r.out.flush()?;
        // Past `until`, nothing new can match: stop following, as Docker does.
        if !still_running() || opts.until.is_some_and(|u| Utc::now() > u) {
            // Output written just before the exit may have landed after our last read.
            exited = true;
            continue;
        }
        // A log cleared under us (e.g. truncated by hand): start again from its beginning.
        if file.metadata().map(|m| m.len() < pos).unwrap_or(false) {
            tracing::warn!(path = %path.display(), "log file was truncated; reading it from the start");
            file.seek(SeekFrom::Start(0))?;
            pos = 0;
            filled = 0;
            skipping = false;
            continue;
        }
        std::thread::sleep(POLL);
    }
    // A last line without '\n' (a writer caught mid-entry, or a file cut short).
    if filled > 0 && !skipping && !r.done {
        r.line(&buf[..filled])?;
    }
    r.finish()
}

/// Offset of the first of the last `n` lines, found by reading backwards from the end so that
/// `--tail` costs the size of the tail, not of the file. An unterminated last line counts.
fn tail_offset(file: &mut File, n: usize) -> io::Result<u64> {
    let len = file.metadata()?.len();
    if n == 0 {
        return Ok(len);
    }
    let mut block = vec![0u8; TAIL_BLOCK];
    let mut end = len;
    let mut found = 0;
    let mut first = true;
    while end > 0 {
        let start = end.saturating_sub(TAIL_BLOCK as u64);
        let chunk = &mut block[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(chunk)?;
        let mut upto = chunk.len();
        if first {
            first = false;
            // The newline that ends the file terminates the last line; it does not start one.
            if chunk.last() == Some(&b'\n') {
                upto -= 1;
            }
        }
        while let Some(i) = memrchr(b'\n', &chunk[..upto]) {
            found += 1;
            if found == n {
                return Ok(start + i as u64 + 1);
            }
            upto = i;
        }
        end = start;
    }
    Ok(0)
}

/// Output batched per stream. Switching streams flushes, so stdout and stderr keep the order of
/// the log when both go to one terminal.
struct Output<'a> {
    stdout: &'a mut dyn Write,
    stderr: &'a mut dyn Write,
    buf: Vec<u8>,
    stream: Stream,
}

impl Output<'_> {
    fn switch(&mut self, stream: Stream) -> io::Result<()> {
        if stream != self.stream || self.buf.len() >= OUT_BATCH {
            self.flush()?;
            self.stream = stream;
        }
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        let w: &mut dyn Write = match self.stream {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
        };
        if !self.buf.is_empty() {
            w.write_all(&self.buf)?;
            self.buf.clear();
        }
        w.flush()
    }
}

struct EntryReader<'o, 'a> {
    opts: &'o LogOptions,
    out: Output<'a>,
    /// Times are only parsed when a filter or the prefix needs them.
    need_time: bool,
    /// An entry after `until` was seen: stop.
    done: bool,
    corrupt: u64,
    second: Option<SecondCache>,
    since: Option<Stamp>,
    until: Option<Stamp>,
}

/// Corrupt lines are reported one by one up to this many, then only counted.
const MAX_WARNINGS: u64 = 10;

impl<'o, 'a> EntryReader<'o, 'a> {
    fn new(opts: &'o LogOptions, out: Output<'a>) -> Self {
        let need_time = opts.since.is_some() || opts.until.is_some() || opts.timestamps;
        EntryReader {
            opts,
            out,
            need_time,
            done: false,
            corrupt: 0,
            second: None,
            since: opts.since.as_ref().map(stamp),
            until: opts.until.as_ref().map(stamp),
        }
    }

    /// Handles every complete line in `data`; returns how many bytes that was.
    fn lines(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut start = 0;
        while let Some(i) = memchr(b'\n', &data[start..]) {
            self.line(&data[start..start + i])?;
            start += i + 1;
            if self.done {
                break;
            }
        }
        Ok(start)
    }

    fn line(&mut self, line: &[u8]) -> io::Result<()> {
        if line.is_empty() {
            return Ok(());
        }
        if let Some((stream, time, escaped)) = split_fast(line) {
            let Head::Write(entry_start) = self.entry_head(stream, time)? else {
                return Ok(());
            };
            if unescape_json(escaped, &mut self.out.buf) {
                return Ok(());
            }
            // Not our exact shape after all (an unescaped quote: more keys): undo, go slow.
            self.out.buf.truncate(entry_start);
        }
        self.slow_line(line)
    }

    fn slow_line(&mut self, line: &[u8]) -> io::Result<()> {
        #[derive(serde::Deserialize)]
        struct Entry {
            #[serde(default)]
            log: String,
            #[serde(default)]
            stream: String,
            #[serde(default)]
            time: String,
        }
        let entry: Entry = match serde_json::from_slice(line) {
            Ok(e) => e,
            Err(err) => {
                self.corrupt_line(&err.to_string());
                return Ok(());
            }
        };
        let stream = match entry.stream.as_str() {
            "stderr" => Stream::Stderr,
            // Docker sends anything that is not stderr to stdout.
            _ => Stream::Stdout,
        };
        if let Head::Write(_) = self.entry_head(stream, entry.time.as_bytes())? {
            self.out.buf.extend_from_slice(entry.log.as_bytes());
        }
        Ok(())
    }

    /// Applies the time filters, switches the output stream and writes the timestamp prefix.
    fn entry_head(&mut self, stream: Stream, time: &[u8]) -> io::Result<Head> {
        if self.need_time {
            let Some((t, z_form)) = self.time_of(time) else {
                self.corrupt_line(&format!("bad time {:?}", String::from_utf8_lossy(time)));
                return Ok(Head::Skip);
            };
            if self.since.is_some_and(|s| t < s) {
                return Ok(Head::Skip);
            }
            if self.until.is_some_and(|u| t > u) {
                self.done = true;
                return Ok(Head::Skip);
            }
            self.out.switch(stream)?;
            let entry_start = self.out.buf.len();
            if self.opts.timestamps {
                let mut tbuf = [0u8; 40];
                let n = if z_form {
                    // The entry's own seconds are already in the output form.
                    tbuf[..19].copy_from_slice(&time[..19]);
                    tbuf[19] = b'.';
                    write_digits(&mut tbuf[20..29], t.1);
                    tbuf[29] = b'Z';
                    30
                } else {
                    let Some(t) = DateTime::from_timestamp(t.0, t.1) else {
                        return Ok(Head::Skip);
                    };
                    format_rfc3339_fixed(&t, &mut tbuf)
                };
                tbuf[n] = b' ';
                self.out.buf.extend_from_slice(&tbuf[..=n]);
            }
            Ok(Head::Write(entry_start))
        } else {
            self.out.switch(stream)?;
            Ok(Head::Write(self.out.buf.len()))
        }
    }

    /// The entry's time, and whether it is in UTC `…Z` form (its first 19 bytes then are the
    /// seconds in output form).
    fn time_of(&mut self, time: &[u8]) -> Option<(Stamp, bool)> {
        if let (Some(c), Some(head)) = (&self.second, time.first_chunk::<19>())
            && *head == c.key
            && let Some(nanos) = parse_fraction_z(&time[19..])
        {
            return Some(((c.secs, nanos), true));
        }
        if let Some(t) = parse_time_z(time) {
            let key = *time.first_chunk::<19>()?;
            let t = stamp(&t);
            self.second = Some(SecondCache { key, secs: t.0 });
            return Some((t, true));
        }
        parse_time(time).map(|t| (stamp(&t), false))
    }

    fn corrupt_line(&mut self, why: &str) {
        self.corrupt += 1;
        if self.corrupt <= MAX_WARNINGS {
            tracing::warn!("skipping a corrupt log entry: {why}");
        }
    }

    fn finish(mut self) -> io::Result<()> {
        if self.corrupt > MAX_WARNINGS {
            tracing::warn!("skipped {} corrupt log entries in all", self.corrupt);
        }
        self.out.flush()
    }
}

enum Head {
    /// Write the entry; its output (prefix included) starts at this offset of the batch.
    Write(usize),
    Skip,
}

/// Splits a line of exactly the writer's shape into (stream, time, escaped log text), working
/// from the end: `{"log":"<escaped>","stream":"stdout","time":"<time>"}`. The escaped text is
/// checked by the unescaper (an unescaped quote in it means another shape).
fn split_fast(line: &[u8]) -> Option<(Stream, &[u8], &[u8])> {
    const HEAD: &[u8] = b"{\"log\":\"";
    const TIME: &[u8] = b",\"time\":\"";
    let inner = line.strip_suffix(b"\"}")?;
    let q = memrchr(b'"', inner)?;
    let time = &inner[q + 1..];
    let rest = inner[..=q].strip_suffix(TIME)?;
    let (rest, stream) = if let Some(r) = rest.strip_suffix(b"\",\"stream\":\"stdout\"") {
        (r, Stream::Stdout)
    } else {
        (
            rest.strip_suffix(b"\",\"stream\":\"stderr\"")?,
            Stream::Stderr,
        )
    };
    Some((stream, time, rest.strip_prefix(HEAD)?))
}

/// JSON string unescape of `s` (the text between the quotes) onto `out`. False when `s` is not a
/// valid JSON string body. Invalid `\u` surrogates become U+FFFD, as Go's decoder does. Raw bytes
/// are copied as they are (our writer only stores valid UTF-8).
fn unescape_json(s: &[u8], out: &mut Vec<u8>) -> bool {
    let mut rest = s;
    loop {
        let Some(i) = find_quote_or_backslash(rest) else {
            out.extend_from_slice(rest);
            return true;
        };
        out.extend_from_slice(&rest[..i]);
        if rest[i] == b'"' {
            return false;
        }
        let Some(&e) = rest.get(i + 1) else {
            return false;
        };
        rest = &rest[i + 2..];
        let c = match e {
            b'"' | b'\\' | b'/' => e,
            b'n' => b'\n',
            b'r' => b'\r',
            b't' => b'\t',
            b'b' => 0x08,
            b'f' => 0x0c,
            b'u' => {
                let Some(hi) = hex4(rest) else { return false };
                rest = &rest[4..];
                // The writer's `\u00XX` for controls and `<>&`: one byte, no UTF-8 encoding.
                if hi < 0x80 {
                    out.push(hi as u8);
                    continue;
                }
                let cp = if (0xD800..0xDC00).contains(&hi) {
                    match rest.strip_prefix(b"\\u").and_then(hex4) {
                        Some(lo) if (0xDC00..0xE000).contains(&lo) => {
                            rest = &rest[6..];
                            0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                        }
                        _ => 0xFFFD,
                    }
                } else {
                    hi
                };
                let ch = char::from_u32(cp).unwrap_or('\u{FFFD}');
                let mut tmp = [0u8; 4];
                out.extend_from_slice(ch.encode_utf8(&mut tmp).as_bytes());
                continue;
            }
            _ => return false,
        };
        out.push(c);
    }
}

fn hex4(s: &[u8]) -> Option<u32> {
    let h = s.first_chunk::<4>()?;
    let d = |c: u8| -> Option<u32> {
        match c {
            b'0'..=b'9' => Some(u32::from(c - b'0')),
            b'a'..=b'f' => Some(u32::from(c - b'a' + 10)),
            b'A'..=b'F' => Some(u32::from(c - b'A' + 10)),
            _ => None,
        }
    };
    Some(d(h[0])? << 12 | d(h[1])? << 8 | d(h[2])? << 4 | d(h[3])?)
}

/// Docker's `--since`/`--until` values (`timetypes.GetTimestamp`): a Go duration before `now`
/// (`10m`, `1h30m`, `1.5h`; Docker keeps whole seconds of it), an RFC3339 time with or without
/// fraction and zone, a date `2006-01-02`, `2006-01-02T15[:04[:05]]`, or a Unix time with an
/// optional fraction (`1700000000.5`). Times without a zone are in the local zone, as the Docker
/// CLI reads them.
pub fn parse_since(s: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    use chrono::TimeZone;
    let local = chrono::Local.offset_from_utc_datetime(&now.naive_utc());
    parse_since_in(s, now, local)
}

fn parse_since_in(
    s: &str,
    now: DateTime<Utc>,
    local: chrono::FixedOffset,
) -> Result<DateTime<Utc>, String> {
    // "0" is a Unix time, not a zero duration (Docker special-cases it).
    if s != "0"
        && let Some(nanos) = parse_go_duration(s)
    {
        let t = now
            .timestamp_nanos_opt()
            .ok_or("the current time is out of range")? as i128
            - nanos;
        let secs = i64::try_from(t.div_euclid(1_000_000_000))
            .map_err(|_| format!("duration {s:?} is out of range"))?;
        return DateTime::from_timestamp(secs, 0)
            .ok_or_else(|| format!("duration {s:?} is out of range"));
    }
    if let Some(t) = parse_datetime(s, local) {
        return Ok(t);
    }
    if s.contains('-') {
        return Err(format!(
            "cannot parse {s:?} as a time: expected RFC3339 (2006-01-02T15:04:05.999999999Z07:00), \
             2006-01-02, or 2006-01-02T15[:04[:05]]"
        ));
    }
    parse_unix(s).ok_or_else(|| format!("failed to parse value as time or duration: {s:?}"))
}

/// Go's `time.ParseDuration`, in nanoseconds: `[-+]?([0-9]*(\.[0-9]*)?unit)+`.
fn parse_go_duration(s: &str) -> Option<i128> {
    let (neg, mut rest) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int, r) = rest.split_at(int_len);
        let (frac, r) = match r.strip_prefix('.') {
            Some(r) => {
                let n = r.bytes().take_while(u8::is_ascii_digit).count();
                r.split_at(n)
            }
            None => ("", r),
        };
        if int.is_empty() && frac.is_empty() {
            return None;
        }
        let unit_len = r
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(r.len());
        let (unit, r) = r.split_at(unit_len);
        let scale: i128 = match unit {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        let whole: i128 = if int.is_empty() { 0 } else { int.parse().ok()? };
        let mut part = whole.checked_mul(scale)?;
        if !frac.is_empty() {
            // Go scales the fraction in floating point too.
            let f: f64 = format!("0.{frac}").parse().ok()?;
            part += (f * scale as f64) as i128;
        }
        total = total.checked_add(part)?;
        if total > i64::MAX as i128 {
            return None;
        }
        rest = r;
    }
    Some(if neg { -total } else { total })
}

/// `YYYY-MM-DD[THH[:MM[:SS[.fraction]]]][Z|±HH:MM]`; no zone means `local`.
fn parse_datetime(s: &str, local: chrono::FixedOffset) -> Option<DateTime<Utc>> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        b.get(r)?.iter().try_fold(0u32, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
        })
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let date = NaiveDate::from_ymd_opt(num(0..4)? as i32, num(5..7)?, num(8..10)?)?;
    let (mut h, mut m, mut sec, mut nanos) = (0, 0, 0, 0u32);
    let mut i = 10;
    if b.get(i) == Some(&b'T') {
        h = num(i + 1..i + 3)?;
        i += 3;
        if b.get(i) == Some(&b':') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            m = num(i + 1..i + 3)?;
            i += 3;
            if b.get(i) == Some(&b':') {
                sec = num(i + 1..i + 3)?;
                i += 3;
                if b.get(i) == Some(&b'.') {
                    let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                    if digits == 0 || digits > 9 {
                        return None;
                    }
                    nanos = num(i + 1..i + 1 + digits)? * 10u32.pow(9 - digits as u32);
                    i += 1 + digits;
                }
            }
        }
    }
    let naive = date.and_hms_nano_opt(h, m, sec, nanos)?;
    let offset = match &b[i..] {
        [] => local,
        [b'Z'] => chrono::FixedOffset::east_opt(0)?,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let secs = (num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6)? * 60) as i32;
            chrono::FixedOffset::east_opt(if *sign == b'-' { -secs } else { secs })?
        }
        _ => return None,
    };
    Some((naive - offset).and_utc())
}

/// `seconds[.fraction]` since the epoch.
fn parse_unix(s: &str) -> Option<DateTime<Utc>> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    if secs.is_empty()
        || !secs.bytes().all(|c| c.is_ascii_digit())
        || frac.len() > 9
        || !frac.bytes().all(|c| c.is_ascii_digit())
    {
        return None;
    }
    if s.contains('.') && frac.is_empty() {
        return None;
    }
    let nanos = if frac.is_empty() {
        0
    } else {
        frac.parse::<u32>().ok()? * 10u32.pow(9 - frac.len() as u32)
    };
    DateTime::from_timestamp(secs.parse().ok()?, nanos)
}

#[cfg(test)]
mod tests {
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
        let want: String =
            (0..50).map(|i| format!("tick {i}\n")).collect::<String>() + "no newline";
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
}
