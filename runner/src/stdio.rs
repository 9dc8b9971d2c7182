//! Plumbing between a container's standard streams and the world: pipes or a pty, copy threads
//! that write the container's output to its json-file log (and to the attached user), and the
//! user's input forwarded into it.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::{Result, RunnerError};
use crate::logs::{LogFile, Stream};
use crate::sandbox::{ConsoleSocket, Io};

/// The container's side of its streams, handed to the sandbox, and our side, kept here.
pub struct Plumbing {
    pub io: Option<Io>,
    console: Option<ConsoleSocket>,
    stdout: Option<OwnedFd>,
    stderr: Option<OwnedFd>,
    /// The write end of the container's stdin: forwarded into, or held open (`-i` detached).
    stdin: Option<OwnedFd>,
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| RunnerError::Sandbox(format!("creating a pipe: {e}")))
}

fn dev_null() -> Result<OwnedFd> {
    File::open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|e| RunnerError::io("opening", "/dev/null", e))
}

impl Plumbing {
    /// `tty`: a pty made by the runtime; else pipes. `open_stdin`: the container gets a stdin
    /// that stays open (else /dev/null).
    pub fn new(tty: bool, open_stdin: bool) -> Result<Plumbing> {
        if tty {
            let console = ConsoleSocket::new()?;
            return Ok(Plumbing {
                io: Some(Io::Console(console.path().to_path_buf())),
                console: Some(console),
                stdout: None,
                stderr: None,
                stdin: None,
            });
        }
        let (out_r, out_w) = pipe()?;
        let (err_r, err_w) = pipe()?;
        let (in_r, in_w) = if open_stdin {
            let (r, w) = pipe()?;
            (r, Some(w))
        } else {
            (dev_null()?, None)
        };
        Ok(Plumbing {
            io: Some(Io::Fds {
                stdin: in_r,
                stdout: out_w,
                stderr: err_w,
            }),
            console: None,
            stdout: Some(out_r),
            stderr: Some(err_r),
            stdin: in_w,
        })
    }

    /// After the sandbox started the container: start copying. `attach`: also to our stdout and
    /// stderr, and our stdin into the container when it has one.
    pub fn connect(mut self, log: Option<Arc<LogFile>>, attach: bool) -> Result<Copiers> {
        let mut threads = Vec::new();
        // Each copy thread holds a sender until it ends: the channel disconnects when all did.
        let (done_tx, done) = std::sync::mpsc::channel::<()>();
        let mut master_keep = None;
        if let Some(console) = self.console.take() {
            let master = console.receive_master()?;
            if attach {
                crate::terminal::copy_size(&master);
            }
            let reader = File::from(
                master
                    .try_clone()
                    .map_err(|e| RunnerError::Sandbox(format!("duplicating the terminal: {e}")))?,
            );
            threads.push(copy_out(
                done_tx.clone(),
                reader,
                log.clone(),
                Stream::Stdout,
                attach.then_some(Sink::Stdout),
            ));
            if attach {
                let writer =
                    File::from(master.try_clone().map_err(|e| {
                        RunnerError::Sandbox(format!("duplicating the terminal: {e}"))
                    })?);
                forward_stdin(writer);
            }
            master_keep = Some(master);
        }
        if let Some(out) = self.stdout.take() {
            threads.push(copy_out(
                done_tx.clone(),
                File::from(out),
                log.clone(),
                Stream::Stdout,
                attach.then_some(Sink::Stdout),
            ));
        }
        if let Some(err) = self.stderr.take() {
            threads.push(copy_out(
                done_tx.clone(),
                File::from(err),
                log.clone(),
                Stream::Stderr,
                attach.then_some(Sink::Stderr),
            ));
        }
        let mut held_stdin = None;
        if let Some(w) = self.stdin.take() {
            if attach {
                forward_stdin(File::from(w));
            } else {
                held_stdin = Some(w);
            }
        }
        drop(done_tx);
        Ok(Copiers {
            threads,
            done,
            _held_stdin: held_stdin,
            master: master_keep,
        })
    }
}

pub struct Copiers {
    threads: Vec<JoinHandle<()>>,
    done: std::sync::mpsc::Receiver<()>,
    _held_stdin: Option<OwnedFd>,
    master: Option<OwnedFd>,
}

impl Copiers {
    pub fn master(&self) -> Option<&OwnedFd> {
        self.master.as_ref()
    }

    /// Wait up to `limit` for the output copies to reach end of file, then leave them (a
    /// process the container left running may hold its streams open for ever).
    pub fn finish_within(self, limit: std::time::Duration) {
        let Copiers {
            threads,
            master,
            done,
            ..
        } = self;
        drop(master);
        let deadline = std::time::Instant::now() + limit;
        // Nothing is ever sent: the wait ends when every copy thread dropped its sender.
        while let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            if let Err(std::sync::mpsc::RecvTimeoutError::Disconnected) = done.recv_timeout(left) {
                for t in threads {
                    let _ = t.join();
                }
                return;
            }
        }
    }

    /// Wait for the output copies to reach end of file (the container and everything that held
    /// its streams are gone).
    pub fn finish(self) {
        let Copiers {
            threads, master, ..
        } = self;
        drop(master);
        for t in threads {
            let _ = t.join();
        }
    }
}

#[derive(Clone, Copy)]
enum Sink {
    Stdout,
    Stderr,
}

fn copy_out(
    done: std::sync::mpsc::Sender<()>,
    mut from: File,
    log: Option<Arc<LogFile>>,
    stream: Stream,
    sink: Option<Sink>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let _done = done;
        let mut writer = log.as_ref().map(|l| l.writer(stream));
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                // EIO: the pty's other side closed.
                Err(_) => break,
            };
            if let Some(w) = writer.as_mut()
                && let Err(e) = w.write_all(&buf[..n])
            {
                tracing::warn!("writing the container log: {e}");
            }
            match sink {
                Some(Sink::Stdout) => {
                    let mut o = std::io::stdout().lock();
                    let _ = o.write_all(&buf[..n]).and_then(|_| o.flush());
                }
                Some(Sink::Stderr) => {
                    let _ = std::io::stderr().lock().write_all(&buf[..n]);
                }
                None => {}
            }
        }
        if let Some(mut w) = writer {
            let _ = w.flush();
        }
    })
}

/// Copy our stdin into the container until either side ends. Never joined: it may be blocked
/// reading a terminal after the container is gone.
fn forward_stdin(mut to: File) {
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = match stdin.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if to.write_all(&buf[..n]).is_err() {
                break;
            }
        }
    });
}
