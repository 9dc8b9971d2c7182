//! Process identity: a PID together with its start time, so a PID the kernel reused is never
//! taken for the process berth started (supervisors, inits, reapers).

use std::fs;

/// Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat), or None when
/// there is no such process.
pub fn process_start_time(pid: i32) -> Option<u64> {
    if pid <= 0 {
        return None;
    }
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    // rest starts at field 3 (state); a zombie is as good as gone.
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether the process `pid` that started at `start` is still there.
pub fn process_alive(pid: i32, start: u64) -> bool {
    start != 0 && process_start_time(pid) == Some(start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_start_time_is_known() {
        let me = std::process::id() as i32;
        let t = process_start_time(me).expect("own stat");
        assert!(process_alive(me, t));
        assert!(!process_alive(me, t + 1));
        assert!(!process_alive(-1, t));
    }
}
