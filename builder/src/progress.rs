//! Build progress as BuildKit prints it. [`Plain`]: `#N [stage k/n] INSTRUCTION`, the step's
//! output lines prefixed with its number and elapsed seconds, then `#N CACHED`, `#N DONE 0.3s`
//! or `#N ERROR: …`; cache misses say why. [`Tty`]: the redrawing view of a terminal — a
//! `[+] Building 1.2s (3/7)` header, the running step with its timer and last output lines,
//! finished steps collapsed to one line each (`=> CACHED [2/4] COPY …`, `=> [3/4] RUN … 1.2s`).
//!
//! The view redraws on events only (output, step changes), never from a timer thread: RUN
//! steps start sandboxes from this process, which must stay single-threaded.

use std::collections::VecDeque;
use std::io::Write;
use std::time::{Duration, Instant};

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
    /// The build is over (successfully or not): leave the output in its final form.
    fn finish(&mut self) {}
    /// Time passed (called a few times a second while stages build): a live view redraws
    /// its running steps' timers.
    fn tick(&mut self) {}
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

/// Output lines kept per running step.
const TAIL: usize = 6;
/// Least time between two redraws caused by output.
const REDRAW: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq)]
enum StepState {
    Running,
    Cached,
    Done(f64),
    Error(f64),
}

struct TtyStep {
    n: usize,
    title: String,
    started: Instant,
    tail: VecDeque<String>,
    partial: Vec<u8>,
    state: StepState,
}

/// BuildKit's terminal view (`--progress tty`, and `auto` on a terminal).
pub struct Tty<W: Write> {
    out: W,
    started: Instant,
    steps: Vec<TtyStep>,
    /// Lines of the live area currently on screen (erased before the next draw).
    drawn: usize,
    last_draw: Option<Instant>,
    width: usize,
    finished: bool,
}

impl<W: Write> Tty<W> {
    /// `width`: the terminal's columns (lines are cut to fit, so the cursor arithmetic holds).
    pub fn new(out: W, width: usize) -> Self {
        Tty {
            out,
            started: Instant::now(),
            steps: Vec::new(),
            drawn: 0,
            last_draw: None,
            width: width.max(20),
            finished: false,
        }
    }

    fn fit(&self, s: &str) -> String {
        let s: String = s.chars().filter(|c| !c.is_control()).collect();
        if s.chars().count() <= self.width {
            s
        } else {
            s.chars()
                .take(self.width.saturating_sub(1))
                .collect::<String>()
                + "…"
        }
    }

    fn erase(&mut self) {
        if self.drawn > 0 {
            // Up to the live area's first line, then clear to the end of the screen.
            let _ = write!(self.out, "\x1b[{}F\x1b[J", self.drawn);
            self.drawn = 0;
        }
    }

    fn header(&self, finished: bool) -> String {
        let total = self.steps.len();
        let done = self
            .steps
            .iter()
            .filter(|s| s.state != StepState::Running)
            .count();
        let t = self.started.elapsed().as_secs_f64();
        format!(
            "[+] Building {t:.1}s ({done}/{total}){}",
            if finished { " FINISHED" } else { "" }
        )
    }

    fn step_line(&self, s: &TtyStep) -> String {
        match s.state {
            StepState::Running => {
                let t = s.started.elapsed().as_secs_f64();
                self.fit(&format!(" => {} {t:.1}s", s.title))
            }
            StepState::Cached => self.fit(&format!(" => CACHED {}", s.title)),
            StepState::Done(t) => self.fit(&format!(" => {} {t:.1}s", s.title)),
            StepState::Error(t) => self.fit(&format!(" => ERROR {} {t:.1}s", s.title)),
        }
    }

    fn draw(&mut self) {
        self.erase();
        let mut lines = vec![self.header(false)];
        for s in self.steps.iter().filter(|s| s.state == StepState::Running) {
            lines.push(self.step_line(s));
            for l in &s.tail {
                lines.push(self.fit(&format!(" => => # {l}")));
            }
        }
        for l in &lines {
            let _ = writeln!(self.out, "{l}");
        }
        self.drawn = lines.len();
        let _ = self.out.flush();
        self.last_draw = Some(Instant::now());
    }

    /// Print a finished step above the live area, for good.
    fn settle(&mut self, n: usize, state: StepState) {
        self.erase();
        let Some(i) = self.steps.iter().position(|s| s.n == n) else {
            return;
        };
        if !self.steps[i].partial.is_empty() {
            let line = String::from_utf8_lossy(&self.steps[i].partial).into_owned();
            self.steps[i].partial.clear();
            self.push_line(i, line);
        }
        self.steps[i].state = state;
        let line = self.step_line(&self.steps[i]);
        let _ = writeln!(self.out, "{line}");
        if matches!(state, StepState::Error(_)) {
            let tail: Vec<String> = self.steps[i].tail.iter().cloned().collect();
            for l in tail {
                let l = self.fit(&format!(" => => # {l}"));
                let _ = writeln!(self.out, "{l}");
            }
        }
        self.draw();
    }

    fn push_line(&mut self, i: usize, line: String) {
        let tail = &mut self.steps[i].tail;
        tail.push_back(line);
        while tail.len() > TAIL {
            tail.pop_front();
        }
    }
}

impl<W: Write> Progress for Tty<W> {
    fn tick(&mut self) {
        let running = self.steps.iter().any(|s| s.state == StepState::Running);
        if !self.finished && running && self.last_draw.is_none_or(|t| t.elapsed() >= REDRAW) {
            self.draw();
        }
    }
    fn start(&mut self, n: usize, title: &str) {
        self.steps.push(TtyStep {
            n,
            title: title.to_string(),
            started: Instant::now(),
            tail: VecDeque::new(),
            partial: Vec::new(),
            state: StepState::Running,
        });
        self.draw();
    }
    fn cached(&mut self, n: usize) {
        self.settle(n, StepState::Cached);
    }
    fn miss(&mut self, n: usize, reason: Option<&str>) {
        if let (Some(r), Some(i)) = (reason, self.steps.iter().position(|s| s.n == n)) {
            self.push_line(i, format!("cache miss: {r}"));
            self.draw();
        }
    }
    fn output(&mut self, n: usize, bytes: &[u8]) {
        let Some(i) = self.steps.iter().position(|s| s.n == n) else {
            return;
        };
        for &b in bytes {
            if b == b'\n' || b == b'\r' {
                if !self.steps[i].partial.is_empty() {
                    let line = String::from_utf8_lossy(&self.steps[i].partial).into_owned();
                    self.steps[i].partial.clear();
                    self.push_line(i, line);
                }
            } else {
                self.steps[i].partial.push(b);
            }
        }
        if self.last_draw.is_none_or(|t| t.elapsed() >= REDRAW) {
            self.draw();
        }
    }
    fn done(&mut self, n: usize) {
        let t = self
            .steps
            .iter()
            .find(|s| s.n == n)
            .map_or(0.0, |s| s.started.elapsed().as_secs_f64());
        self.settle(n, StepState::Done(t));
    }
    fn error(&mut self, n: usize, message: &str) {
        let t = self
            .steps
            .iter()
            .find(|s| s.n == n)
            .map_or(0.0, |s| s.started.elapsed().as_secs_f64());
        self.settle(n, StepState::Error(t));
        self.erase();
        let _ = writeln!(self.out, "------\n > {message}\n------");
        self.draw();
    }
    fn note(&mut self, text: &str) {
        if self.finished {
            let _ = writeln!(self.out, "{text}");
            return;
        }
        self.erase();
        let _ = writeln!(self.out, "{text}");
        self.draw();
    }
    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.erase();
        let h = self.header(true);
        let _ = writeln!(self.out, "{h}");
        let _ = self.out.flush();
        self.finished = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_redraw_a_running_step_and_nothing_once_finished() {
        let mut t = Tty::new(Vec::new(), 80);
        t.start(1, "[1/1] RUN sleep 1");
        let drawn = t.out.len();
        t.tick();
        assert_eq!(
            t.out.len(),
            drawn,
            "a tick right after a draw redraws nothing"
        );
        std::thread::sleep(REDRAW + Duration::from_millis(20));
        t.tick();
        assert!(t.out.len() > drawn, "a later tick redraws the running step");
        t.done(1);
        t.finish();
        let end = t.out.len();
        std::thread::sleep(REDRAW + Duration::from_millis(20));
        t.tick();
        assert_eq!(t.out.len(), end, "nothing after the build finished");
    }

    #[test]
    fn tty_collapses_finished_steps_and_keeps_a_tail_of_the_running_one() {
        let mut buf = Vec::new();
        {
            let mut t = Tty::new(&mut buf, 80);
            t.start(1, "[1/2] FROM bb");
            t.cached(1);
            t.start(2, "[2/2] RUN seq 10");
            for i in 1..=10 {
                t.output(2, format!("{i}\n").as_bytes());
            }
            t.error(2, "exit code 1");
            t.finish();
        }
        let s = String::from_utf8(buf).unwrap();
        assert!(s.contains(" => CACHED [1/2] FROM bb\n"), "{s}");
        assert!(s.contains(" => ERROR [2/2] RUN seq 10 0.0s\n"), "{s}");
        assert!(
            s.contains("\x1b["),
            "redraws with ANSI cursor movement: {s}"
        );
        // What is left on screen once the escapes are applied: the final form.
        assert!(s.ends_with("(2/2) FINISHED\n"), "{s}");
        // A failed step leaves its last lines of output (six) on screen.
        let after = &s[s.find(" => ERROR").unwrap()..];
        assert!(after.contains(" => => # 5\n => => # 6\n"), "{s}");
        assert!(after.contains(" => => # 10\n"), "{s}");
        assert!(after.contains("------\n > exit code 1\n------\n"), "{s}");
        assert!(!after.contains(" => => # 4\n"), "{s}");
    }
}
