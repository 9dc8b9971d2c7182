//! Signal names as Docker accepts them (`SIGTERM`, `TERM`, `15`, `term`), and delivery to a PID.

use crate::error::{Result, RunnerError};

pub const SIGKILL: i32 = 9;
pub const SIGTERM: i32 = 15;

const NAMES: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("POLL", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// Parse a signal by name or number.
pub fn parse(s: &str) -> Result<i32> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        if (1..=64).contains(&n) {
            return Ok(n);
        }
        return Err(RunnerError::invalid(
            "signal",
            format!("{s:?} is out of range"),
        ));
    }
    let upper = t.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rt) = name.strip_prefix("RTMIN") {
        let off: i32 = if rt.is_empty() {
            0
        } else {
            rt.trim_start_matches('+').parse().unwrap_or(-1)
        };
        if (0..=30).contains(&off) {
            return Ok(34 + off);
        }
    }
    NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            RunnerError::invalid("signal", format!("{s:?} is not a signal name or number"))
        })
}

/// The name Docker shows for a signal number.
pub fn name(n: i32) -> String {
    NAMES
        .iter()
        .find(|(_, v)| *v == n)
        .map(|(name, _)| format!("SIG{name}"))
        .unwrap_or_else(|| n.to_string())
}

/// Send `sig` to `pid`; a process that is already gone is not an error.
pub fn send(pid: i32, sig: i32) -> Result<()> {
    let Some(p) = rustix::process::Pid::from_raw(pid) else {
        return Ok(());
    };
    match rustix::process::kill_process(p, to_rustix(sig)?) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(RunnerError::Sandbox(format!(
            "sending {} to process {pid}: {e}",
            name(sig)
        ))),
    }
}

fn to_rustix(sig: i32) -> Result<rustix::process::Signal> {
    // Real-time signals have no safe constructor in rustix; berth does not send them.
    rustix::process::Signal::from_named_raw(sig)
        .ok_or_else(|| RunnerError::invalid("signal", format!("{sig} cannot be sent by berth")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers() {
        assert_eq!(parse("SIGTERM").unwrap(), 15);
        assert_eq!(parse("term").unwrap(), 15);
        assert_eq!(parse("9").unwrap(), 9);
        assert_eq!(parse("SIGUSR1").unwrap(), 10);
        assert!(parse("SIGBOGUS").is_err());
        assert!(parse("0").is_err());
        assert_eq!(name(9), "SIGKILL");
    }
}
