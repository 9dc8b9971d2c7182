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
//!
//! - `json`: the entry's bytes (Go's escaping; the reader's fast split and unescape)
//! - `stream`: which output stream an entry came from
//! - `time`: the times entries store and `--timestamps`/`--since` take

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
use memchr::{memchr, memrchr};

mod json;
mod stream;
mod time;

use json::*;
pub use stream::Stream;
pub use time::parse_since;
use time::*;

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

#[cfg(test)]
mod tests;
