//! Build progress as BuildKit's plain output prints it: `#N [stage k/n] INSTRUCTION`, the
//! step's output lines prefixed with its number and elapsed seconds, then `#N CACHED`,
//! `#N DONE 0.3s` or `#N ERROR: …`. Cache misses say why.

use std::io::Write;
use std::time::Instant;

/// Receives build events.
pub trait Progress {
    fn start(&mut self, n: usize, title: &str);
    fn cached(&mut self, n: usize);
    /// The step runs; `reason` says why the cache missed (None with `--no-cache` or when an
    /// earlier step already ran).
    fn miss(&mut self, n: usize, reason: Option<&str>);
    fn output(&mut self, n: usize, bytes: &[u8]);
    fn done(&mut self, n: usize);
    fn error(&mut self, n: usize, message: &str);
    /// A line outside any step (warnings, the final image).
    fn note(&mut self, text: &str);
}

/// Prints nothing (`-q`).
pub struct Quiet;

impl Progress for Quiet {
    fn start(&mut self, _: usize, _: &str) {}
    fn cached(&mut self, _: usize) {}
    fn miss(&mut self, _: usize, _: Option<&str>) {}
    fn output(&mut self, _: usize, _: &[u8]) {}
    fn done(&mut self, _: usize) {}
    fn error(&mut self, _: usize, _: &str) {}
    fn note(&mut self, _: &str) {}
}

/// Plain text, one line per event.
pub struct Plain<W: Write> {
    out: W,
    started: Instant,
    partial: Vec<u8>,
}

impl<W: Write> Plain<W> {
    pub fn new(out: W) -> Self {
        Plain {
            out,
            started: Instant::now(),
            partial: Vec::new(),
        }
    }

    fn flush_partial(&mut self, n: usize) {
        if !self.partial.is_empty() {
            let line = String::from_utf8_lossy(&self.partial).into_owned();
            let t = self.started.elapsed().as_secs_f64();
            let _ = writeln!(self.out, "#{n} {t:.3} {line}");
            self.partial.clear();
        }
    }
}

impl<W: Write> Progress for Plain<W> {
    fn start(&mut self, n: usize, title: &str) {
        self.started = Instant::now();
        self.partial.clear();
        let _ = writeln!(self.out, "#{n} {title}");
    }
    fn cached(&mut self, n: usize) {
        let _ = writeln!(self.out, "#{n} CACHED");
        let _ = writeln!(self.out);
    }
    fn miss(&mut self, n: usize, reason: Option<&str>) {
        if let Some(r) = reason {
            let _ = writeln!(self.out, "#{n} cache miss: {r}");
        }
    }
    fn output(&mut self, n: usize, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                if self.partial.is_empty() {
                    self.partial.push(b' ');
                }
                self.flush_partial(n);
            } else {
                self.partial.push(b);
            }
        }
        let _ = self.out.flush();
    }
    fn done(&mut self, n: usize) {
        self.flush_partial(n);
        let t = self.started.elapsed().as_secs_f64();
        let _ = writeln!(self.out, "#{n} DONE {t:.1}s");
        let _ = writeln!(self.out);
    }
    fn error(&mut self, n: usize, message: &str) {
        self.flush_partial(n);
        let _ = writeln!(self.out, "#{n} ERROR: {message}");
    }
    fn note(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
    }
}
