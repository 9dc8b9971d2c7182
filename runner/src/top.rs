//! `top`: a running container's processes as the host's `ps` shows them, Docker's way
//! (`daemon/top_unix.go`): `ps ARGS -q PIDS` (or plain `ps ARGS` when the options refuse `-q`),
//! the header's `PID` column picks the container's lines, and the last column keeps its spaces.
//! The container's processes are those in its cgroup (exec'd ones included) and in its PID
//! namespace.

use std::collections::BTreeSet;
use std::fs;
use std::process::Command;

use crate::container::Container;
use crate::error::{Result, RunnerError};
use crate::process::process_alive;
use crate::state::Status;

/// Titles and one row of cells per process, as Docker's `ContainerTopOKBody`.
#[derive(Debug, Clone, PartialEq)]
pub struct Top {
    pub titles: Vec<String>,
    pub processes: Vec<Vec<String>>,
}

/// The PIDs (host view) of the container's processes.
pub fn pids(c: &Container) -> BTreeSet<i32> {
    let mut out = if c.state.internal.cgroup.is_empty() {
        BTreeSet::new()
    } else {
        crate::cgroups::Cgroups::host().pids(&c.state.internal.cgroup)
    };
    // Its PID namespace, unless that is the host's.
    let ns = |pid: &str| fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    if let Some(own) = ns(&c.state.pid.to_string())
        && Some(&own) != ns("self").as_ref()
        && let Ok(rd) = fs::read_dir("/proc")
    {
        for e in rd.flatten() {
            let name = e.file_name();
            let Some(n) = name.to_str() else { continue };
            if let Ok(pid) = n.parse::<i32>()
                && ns(n).as_ref() == Some(&own)
            {
                out.insert(pid);
            }
        }
    }
    out.insert(c.state.pid);
    out
}

/// Docker's `validatePSArgs`: `-o x=PID` would hide the column we select on.
fn validate(args: &[String]) -> Result<()> {
    let joined = format!(" {}", args.join(" "));
    for w in joined.split_whitespace() {
        if let Some((k, v)) = w.split_once('=')
            && v.starts_with("PID")
        {
            let k = k.rsplit(',').next().unwrap_or(k);
            if k != "pid" {
                return Err(RunnerError::invalid(
                    "ps options",
                    format!("specifying \"{k}={v}\" is not allowed"),
                ));
            }
        }
    }
    Ok(())
}

pub fn top(c: &Container, ps_args: &[String]) -> Result<Top> {
    let args: Vec<String> = if ps_args.is_empty() {
        vec!["-ef".into()]
    } else {
        ps_args
            .iter()
            .flat_map(|a| a.split(' ').filter(|s| !s.is_empty()).map(String::from))
            .collect()
    };
    validate(&args)?;
    if c.state.status == Status::Restarting {
        return Err(RunnerError::Conflict(format!(
            "Container {} is restarting, wait until the container is running",
            c.id()
        )));
    }
    if c.state.status != Status::Running || !process_alive(c.state.pid, c.state.internal.pid_start)
    {
        return Err(RunnerError::Conflict(format!(
            "container {} is not running",
            c.id()
        )));
    }
    let pids = pids(c);
    let list: Vec<String> = pids.iter().map(i32::to_string).collect();
    let run = |extra: bool| {
        let mut cmd = Command::new("ps");
        cmd.args(&args);
        if extra {
            cmd.arg("-q").arg(list.join(","));
        }
        cmd.output()
    };
    let mut out = run(true).map_err(|e| RunnerError::io("running", "ps", e))?;
    if !out.status.success() {
        // Some options (such as f) cannot be combined with -q.
        out = run(false).map_err(|e| RunnerError::io("running", "ps", e))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let line = err.lines().next().unwrap_or("ps failed").to_string();
            return Err(RunnerError::Conflict(format!("ps: {line}")));
        }
    }
    parse(&String::from_utf8_lossy(&out.stdout), &pids)
}

/// Docker's `parsePSOutput`.
fn parse(output: &str, pids: &BTreeSet<i32>) -> Result<Top> {
    let mut lines = output.split('\n');
    let titles: Vec<String> = lines
        .next()
        .unwrap_or("")
        .split_ascii_whitespace()
        .map(String::from)
        .collect();
    let pid_index = titles
        .iter()
        .position(|t| t == "PID")
        .ok_or_else(|| RunnerError::Conflict("Couldn't find PID field in ps output".into()))?;
    let mut processes = Vec::new();
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_ascii_whitespace().collect();
        let Some(p) = fields.get(pid_index) else {
            continue;
        };
        let pid: i32 = p
            .parse()
            .map_err(|_| RunnerError::Conflict(format!("Unexpected pid '{p}': invalid syntax")))?;
        if pids.contains(&pid) {
            let n = titles.len();
            let mut row: Vec<String> = fields[..(n - 1).min(fields.len())]
                .iter()
                .map(|s| s.to_string())
                .collect();
            row.push(fields.get(n - 1..).map(|f| f.join(" ")).unwrap_or_default());
            processes.push(row);
        }
    }
    Ok(Top { titles, processes })
}

/// Lay out like Docker's CLI (`tabwriter` with minimum width 20 and padding 3).
pub fn render(t: &Top) -> String {
    let n = t.titles.len();
    let rows: Vec<&Vec<String>> = std::iter::once(&t.titles).chain(&t.processes).collect();
    let mut widths = vec![0usize; n];
    for r in &rows {
        for (i, cell) in r.iter().enumerate().take(n.saturating_sub(1)) {
            widths[i] = widths[i].max(cell.chars().count() + 3).max(20);
        }
    }
    let mut out = String::new();
    for r in rows {
        for (i, cell) in r.iter().enumerate() {
            if i + 1 < n {
                out.push_str(cell);
                out.push_str(&" ".repeat(widths[i].saturating_sub(cell.chars().count())));
            } else {
                out.push_str(cell);
            }
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PS: &str = "UID          PID    PPID  C STIME TTY          TIME CMD\nroot           1       0  0 10:00 ?        00:00:01 /sbin/init splash\nroot        4242    4200  0 10:01 ?        00:00:00 sleep 100\n";

    #[test]
    fn picks_the_containers_lines_and_keeps_the_command_whole() {
        let t = parse(PS, &BTreeSet::from([4242])).unwrap();
        assert_eq!(t.titles.len(), 8);
        assert_eq!(
            t.processes,
            vec![vec![
                "root",
                "4242",
                "4200",
                "0",
                "10:01",
                "?",
                "00:00:00",
                "sleep 100"
            ]]
        );
        let text = render(&t);
        assert!(text.starts_with(&format!("UID{}PID{}", " ".repeat(17), " ".repeat(17))));
        assert!(text.ends_with("00:00:00            sleep 100\n"), "{text}");
    }

    #[test]
    fn output_without_a_pid_column_is_an_error() {
        let e = parse("USER COMMAND\nroot sh\n", &BTreeSet::new()).unwrap_err();
        assert_eq!(e.to_string(), "Couldn't find PID field in ps output");
    }

    #[test]
    fn renaming_the_pid_column_is_refused() {
        assert!(validate(&["-o".into(), "pid,ppid=PID".into()]).is_err());
        assert!(validate(&["-o".into(), "pid=PID".into()]).is_ok());
        assert!(validate(&["aux".into()]).is_ok());
    }
}
