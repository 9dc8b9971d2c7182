//! Throughput of the json-file log writer and reader, driven by `bench/logs.sh`.
//!
//! `logs_bench write PATH MIB` feeds MIB MiB of synthetic container output (mixed line lengths,
//! some quotes, tabs, escapes and non-ASCII, as real programs print) through the stdout and stderr
//! `LineWriter`s in 64 KiB writes, as the supervisor's copiers do.
//! `logs_bench read PATH [--tail N] [--timestamps] [--since T]` runs `read_logs` to /dev/null.
//! `logs_bench read-serde PATH` is the baseline: serde_json per line, text to /dev/null.
//! Each prints its throughput; hyperfine times the whole process as well.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::process::ExitCode;
use std::time::Instant;

use berth_runner::logs::{LogFile, LogOptions, Stream, parse_since, read_logs};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let r = match args.first().map(String::as_str) {
        Some("write") if args.len() == 3 => write(&args[1], &args[2]),
        Some("read") if args.len() >= 2 => read(&args[1], &args[2..]),
        Some("read-serde") if args.len() == 2 => read_serde(&args[1]),
        _ => Err("usage: logs_bench write PATH MIB | read PATH [--tail N] [--timestamps] [--since T] | read-serde PATH".into()),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("logs_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// 4 MiB of output lines from a fixed xorshift seed, so every run writes the same bytes.
fn sample() -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let words = [
        "GET",
        "/api/v1/items",
        "200",
        "took",
        "ms",
        "user=\"alice\"",
        "ok",
        "\tdetail",
        "caf\u{e9}",
        "[INFO]",
        "<id>",
    ];
    let mut out = Vec::with_capacity(4 << 20);
    while out.len() < 4 << 20 {
        let n = 2 + next() % 24; // 2..26 words: lines of ~10–200 bytes
        for i in 0..n {
            if i > 0 {
                out.push(b' ');
            }
            out.extend_from_slice(words[(next() % words.len() as u64) as usize].as_bytes());
        }
        out.push(b'\n');
    }
    out
}

fn write(path: &str, mib: &str) -> Result<()> {
    let total: usize = mib.parse::<usize>()? << 20;
    let sample = sample();
    let _ = std::fs::remove_file(path);
    let log = LogFile::open(path.as_ref())?;
    let mut out = log.writer(Stream::Stdout);
    let mut err = log.writer(Stream::Stderr);
    let start = Instant::now();
    let mut written = 0;
    let mut i = 0;
    while written < total {
        for chunk in sample.chunks(64 << 10) {
            // One stderr chunk in eight, as a chatty program's warnings.
            if i % 8 == 7 {
                err.write_all(chunk)?
            } else {
                out.write_all(chunk)?
            }
            i += 1;
            written += chunk.len();
        }
    }
    drop((out, err));
    let secs = start.elapsed().as_secs_f64();
    let size = std::fs::metadata(path)?.len();
    eprintln!(
        "write: {:.0} MB of output in {secs:.3} s = {:.0} MB/s of output ({:.0} MB/s of log file, {} MiB)",
        written as f64 / 1e6,
        written as f64 / 1e6 / secs,
        size as f64 / 1e6 / secs,
        size >> 20
    );
    Ok(())
}

fn read(path: &str, flags: &[String]) -> Result<()> {
    let mut opts = LogOptions::default();
    let mut it = flags.iter();
    while let Some(f) = it.next() {
        match f.as_str() {
            "--tail" => opts.tail = Some(it.next().ok_or("--tail needs N")?.parse()?),
            "--timestamps" => opts.timestamps = true,
            "--since" => {
                opts.since = Some(parse_since(
                    it.next().ok_or("--since needs T")?,
                    chrono::Utc::now(),
                )?)
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let mut null_out = File::create("/dev/null")?;
    let mut null_err = File::create("/dev/null")?;
    let start = Instant::now();
    read_logs(path.as_ref(), &opts, &mut null_out, &mut null_err, &|| {
        false
    })?;
    report("read", path, start)
}

fn read_serde(path: &str) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Entry {
        log: String,
        stream: String,
        #[allow(dead_code)]
        time: String,
    }
    let mut null = std::io::BufWriter::with_capacity(256 << 10, File::create("/dev/null")?);
    let start = Instant::now();
    let mut line = Vec::new();
    let mut input = BufReader::with_capacity(1 << 20, File::open(path)?);
    while input.read_until(b'\n', &mut line)? > 0 {
        let e: Entry = serde_json::from_slice(&line)?;
        std::hint::black_box(&e.stream);
        null.write_all(e.log.as_bytes())?;
        line.clear();
    }
    null.flush()?;
    report("read-serde", path, start)
}

fn report(what: &str, path: &str, start: Instant) -> Result<()> {
    let secs = start.elapsed().as_secs_f64();
    let size = std::fs::metadata(path)?.len();
    eprintln!(
        "{what}: {} MiB of log in {secs:.3} s = {:.0} MB/s",
        size >> 20,
        size as f64 / 1e6 / secs
    );
    Ok(())
}
