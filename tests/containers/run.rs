//! `berth run` and the container lifecycle, end to end against the real kernel: isolation seen
//! from inside, Docker's exit codes, detached containers with their supervisor, logs, exec,
//! limits, restart policies, an external runtime, and crash recovery.

use crate::common;

use std::time::{Duration, Instant};

use common::Env;
use serde_json::Value;

fn env_with_image() -> Env {
    let env = Env::new();
    env.import_busybox("bb:1");
    env
}

fn run_out(env: &Env, args: &[&str]) -> (i32, String, String) {
    let out = env.berth().args(args).output().expect("run berth");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn inspect(env: &Env, name: &str) -> Value {
    let out = env.ok(&["inspect", "--type", "container", name]);
    let v: Value = serde_json::from_str(&out).expect("inspect json");
    v[0].clone()
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn mounts_under(env: &Env) -> Vec<String> {
    let root = env.root().canonicalize().unwrap_or(env.root());
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|m| m.starts_with(&*root.to_string_lossy()))
        .map(String::from)
        .collect()
}

#[test]
fn isolation_seen_from_inside() {
    let env = env_with_image();
    let marker = env.path("host-only-marker");
    std::fs::write(&marker, "secret").unwrap();
    let script = format!(
        "echo pid1=$(cat /proc/1/cmdline | tr '\\0' ' '); \
         echo procs=$(ps -o pid= 2>/dev/null | wc -l || ps | wc -l); \
         echo host=$(hostname); \
         mkdir -p /tmp/m; mount -t tmpfs none /tmp/m 2>/dev/null && echo mount=ok || echo mount=denied; \
         busybox reboot -f 2>/dev/null && echo reboot=ok || echo reboot=denied; \
         test -e {} && echo marker=visible || echo marker=hidden; \
         echo sys=$(touch /sys/x 2>&1 | grep -c 'Read-only'); \
         cat /proc/kcore 2>/dev/null | head -c 1 | wc -c",
        marker.display()
    );
    let (code, out, err) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--hostname",
            "box1",
            "bb:1",
            "sh",
            "-c",
            &script,
        ],
    );
    assert_eq!(code, 0, "stdout: {out}\nstderr: {err}");
    assert!(out.contains("pid1=sh -c"), "{out}");
    assert!(out.contains("host=box1"), "{out}");
    assert!(out.contains("mount=denied"), "{out}");
    assert!(out.contains("reboot=denied"), "{out}");
    assert!(out.contains("marker=hidden"), "{out}");
    assert!(out.contains("sys=1"), "{out}");
    // /proc/kcore is masked: reading it yields nothing.
    assert!(out.trim_end().ends_with('0'), "{out}");
    // Only the container's own processes: sh and ps (and the pipeline's helpers).
    let (code, out, _) = run_out(&env, &["run", "--rm", "--network", "none", "bb:1", "ps"]);
    assert_eq!(code, 0);
    let procs: Vec<&str> = out.lines().skip(1).collect();
    assert_eq!(procs.len(), 1, "ps sees only itself: {out}");
    assert!(procs[0].trim_start().starts_with("1 "), "{out}");
    assert!(mounts_under(&env).is_empty(), "{:?}", mounts_under(&env));
}

#[test]
fn privileged_and_capabilities() {
    let env = env_with_image();
    let (code, out, _) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--privileged",
            "bb:1",
            "sh",
            "-c",
            "mkdir -p /tmp/m && mount -t tmpfs none /tmp/m && echo mounted",
        ],
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("mounted"));
    let (code, out, _) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--cap-add",
            "SYS_ADMIN",
            "bb:1",
            "sh",
            "-c",
            "grep CapEff /proc/self/status",
        ],
    );
    assert_eq!(code, 0);
    // Docker's 14 default capabilities plus CAP_SYS_ADMIN (bit 21).
    let eff = u64::from_str_radix(out.split_whitespace().last().unwrap(), 16).unwrap();
    assert_eq!(eff & (1 << 21), 1 << 21, "{out}");
    assert_eq!(eff.count_ones(), 15, "{out}");
    let (_, out, _) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--cap-drop",
            "ALL",
            "bb:1",
            "sh",
            "-c",
            "grep CapEff /proc/self/status",
        ],
    );
    assert!(out.contains("0000000000000000"), "{out}");
    let (_, out, _) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--security-opt",
            "no-new-privileges",
            "bb:1",
            "sh",
            "-c",
            "grep NoNewPrivs /proc/self/status",
        ],
    );
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
    let (code, out, _) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--read-only",
            "bb:1",
            "sh",
            "-c",
            "touch /x 2>&1; echo rc=$?",
        ],
    );
    assert_eq!(code, 0);
    assert!(out.contains("Read-only file system"), "{out}");
    // --privileged hands the host's devices over; the default set has none of them.
    if std::path::Path::new("/dev/kmsg").exists() {
        let probe = "test -c /dev/kmsg && echo has-kmsg || echo no-kmsg";
        let (_, out, _) = run_out(
            &env,
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "--privileged",
                "bb:1",
                "sh",
                "-c",
                probe,
            ],
        );
        assert_eq!(out.trim(), "has-kmsg");
        let (_, out, _) = run_out(
            &env,
            &[
                "run",
                "--rm",
                "--network",
                "none",
                "bb:1",
                "sh",
                "-c",
                probe,
            ],
        );
        assert_eq!(out.trim(), "no-kmsg");
    }
    env.fails(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--cap-add",
        "BOGUS",
        "bb:1",
        "true",
    ]);
}

#[test]
fn exit_codes_and_command_rules() {
    let env = env_with_image();
    let (code, _, _) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "bb:1",
            "sh",
            "-c",
            "exit 42",
        ],
    );
    assert_eq!(code, 42);
    let (code, _, err) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "bb:1",
            "no-such-command",
        ],
    );
    assert_eq!(code, 127, "{err}");
    assert!(err.contains("executable file not found in $PATH"), "{err}");
    assert!(err.contains("no-such-command"), "{err}");
    // PID 1 ignores signals it has no handler for, even SIGKILL from inside (as under Docker).
    let (code, _, _) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "bb:1",
            "sh",
            "-c",
            "kill -9 $$; exit 4",
        ],
    );
    assert_eq!(code, 4);
    // --entrypoint drops the image's CMD; arguments become CMD.
    let (_, out, _) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "echo",
            "bb:1",
            "a",
            "b",
        ],
    );
    assert_eq!(out, "a b\n");
    // Environment: image, -e, --env-file; user and workdir.
    let envfile = env.path("env.list");
    std::fs::write(&envfile, "# comment\nFROM_FILE=yes\n\nBOTH=file\n").unwrap();
    let (code, out, err) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--env-file",
            envfile.to_str().unwrap(),
            "-e",
            "BOTH=flag",
            "-u",
            "app",
            "-w",
            "/tmp/work",
            "bb:1",
            "sh",
            "-c",
            "echo $FROM_FILE $BOTH $(id -u):$(id -g) $(pwd) $HOME $PATH",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        "yes flag 1000:1000 /tmp/work /home/app /usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    let (code, _, err) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "-u",
            "nosuchuser",
            "bb:1",
            "true",
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("nosuchuser"), "{err}");
    // A container with --rm leaves nothing.
    assert_eq!(env.ok(&["ps", "-aq"]).trim(), "");
}

#[test]
fn bad_input_leaves_nothing() {
    let env = env_with_image();
    for args in [
        vec!["run", "--network", "none", "no-such-image", "true"],
        vec!["run", "--network", "none", "-m", "1m", "bb:1", "true"],
        vec![
            "run",
            "--network",
            "none",
            "--restart",
            "sometimes",
            "bb:1",
            "true",
        ],
        vec![
            "run",
            "--network",
            "none",
            "--rm",
            "--restart",
            "always",
            "bb:1",
            "true",
        ],
        vec!["run", "--network", "none", "--cpus", "abc", "bb:1", "true"],
        vec![
            "run",
            "--network",
            "none",
            "--name",
            "bad name",
            "bb:1",
            "true",
        ],
        vec!["run", "--network", "nosuchnet", "bb:1", "true"],
        vec!["run", "-p", "70000:80", "bb:1", "true"],
    ] {
        let out = env.fails(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.starts_with("Error"), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: one line: {err}");
    }
    let err = String::from_utf8_lossy(
        &env.fails(&["run", "--network", "none", "-m", "1m", "bb:1", "true"])
            .stderr,
    )
    .into_owned();
    assert!(err.contains("Minimum memory limit allowed is 6MB"), "{err}");
    let err = String::from_utf8_lossy(
        &env.fails(&["run", "--network", "nosuchnet", "bb:1", "true"])
            .stderr,
    )
    .into_owned();
    assert!(err.contains("network nosuchnet not found"), "{err}");
    assert_eq!(env.ok(&["ps", "-aq"]).trim(), "");
    // Names are unique.
    env.ok(&[
        "create",
        "--network",
        "none",
        "--name",
        "one",
        "bb:1",
        "true",
    ]);
    let err = String::from_utf8_lossy(
        &env.fails(&[
            "create",
            "--network",
            "none",
            "--name",
            "one",
            "bb:1",
            "true",
        ])
        .stderr,
    )
    .into_owned();
    assert!(err.contains("is already in use"), "{err}");
    assert_eq!(env.ok(&["ps", "-aq"]).lines().count(), 1);
}

#[test]
fn detached_lifecycle_logs_exec_stop_rm() {
    let env = env_with_image();
    let id = env
        .ok(&["run", "-d", "--name", "ticker", "--network", "none", "--label", "team=a", "bb:1", "sh", "-c",
              "echo started; echo oops >&2; trap 'echo bye; exit 0' TERM; while true; do sleep 0.1; done"])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    wait_for("log line", || {
        env.ok(&["logs", "ticker"]).contains("started")
    });
    let ps = env.ok(&["ps", "--format", "{{.Names}} {{.State}} {{.Labels}}"]);
    assert_eq!(ps.trim(), "ticker running team=a");
    let json: Value =
        serde_json::from_str(env.ok(&["ps", "--format", "json"]).lines().next().unwrap()).unwrap();
    assert_eq!(json["Names"], "ticker");
    // stdout and stderr are kept apart.
    let out = env.berth().args(["logs", "ticker"]).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "started\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "oops\n");
    let ts = env.ok(&["logs", "-t", "--tail", "1", "ticker"]);
    assert!(
        ts.starts_with("20") && ts.contains("Z started") || ts.is_empty(),
        "{ts}"
    );
    // inspect: Docker's shape.
    let v = inspect(&env, "ticker");
    assert_eq!(v["State"]["Status"], "running");
    assert_eq!(v["Name"], "/ticker");
    assert_eq!(v["Id"], id);
    let pid = v["State"]["Pid"].as_i64().unwrap();
    assert!(pid > 0 && std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert_eq!(
        env.ok(&["inspect", "--format", "{{.State.Pid}}", "ticker"])
            .trim(),
        pid.to_string()
    );
    // exec joins the container: same hostname, sees its PID 1.
    let out = env.ok(&[
        "exec",
        "ticker",
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '; hostname",
    ]);
    assert!(out.starts_with("sh -c echo started"), "{out}");
    assert!(out.contains(&id[..12]), "{out}");
    let (code, _, _) = run_out(&env, &["exec", "ticker", "sh", "-c", "exit 5"]);
    assert_eq!(code, 5);
    let out = env.ok(&[
        "exec",
        "-e",
        "X=1",
        "-w",
        "/tmp",
        "-u",
        "1000",
        "ticker",
        "sh",
        "-c",
        "echo $X $(pwd) $(id -u)",
    ]);
    assert_eq!(out.trim(), "1 /tmp 1000");
    // rm of a running container needs -f.
    let err = String::from_utf8_lossy(&env.fails(&["rm", "ticker"]).stderr).into_owned();
    assert!(err.contains("container is running"), "{err}");
    // stop: the trap runs, exit 0, the log has its last words.
    env.ok(&["stop", "ticker"]);
    let v = inspect(&env, "ticker");
    assert_eq!(v["State"]["Status"], "exited");
    assert_eq!(v["State"]["ExitCode"], 0);
    assert!(env.ok(&["logs", "ticker"]).contains("bye"));
    assert_eq!(env.ok(&["wait", "ticker"]).trim(), "0");
    assert_eq!(env.ok(&["ps", "-q"]).trim(), "");
    assert_eq!(
        env.ok(&["ps", "-aq", "--filter", "status=exited"]).trim(),
        &id[..12]
    );
    // start again, then rename and kill.
    env.ok(&["start", "ticker"]);
    assert_eq!(inspect(&env, "ticker")["State"]["Status"], "running");
    env.ok(&["rename", "ticker", "tocker"]);
    env.ok(&["kill", "tocker"]);
    let v = inspect(&env, "tocker");
    assert_eq!(v["State"]["ExitCode"], 137);
    env.ok(&["rm", "tocker"]);
    env.fails(&["inspect", "--type", "container", "tocker"]);
    assert!(mounts_under(&env).is_empty(), "{:?}", mounts_under(&env));
    assert!(!std::path::Path::new(&format!("/sys/fs/cgroup/pids/berth/{id}")).exists());
}

#[test]
fn restart_policy_and_auto_remove() {
    let env = env_with_image();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "flaky",
        "--network",
        "none",
        "--restart",
        "on-failure:2",
        "bb:1",
        "sh",
        "-c",
        "exit 3",
    ]);
    wait_for("two restarts then exit", || {
        let v = inspect(&env, "flaky");
        v["State"]["Status"] == "exited" && v["RestartCount"] == 2
    });
    assert_eq!(inspect(&env, "flaky")["State"]["ExitCode"], 3);
    // always + stop: stop wins.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "steady",
        "--network",
        "none",
        "--restart",
        "always",
        "bb:1",
        "sh",
        "-c",
        "sleep 0.2",
    ]);
    wait_for("a restart", || {
        inspect(&env, "steady")["RestartCount"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    });
    env.ok(&["stop", "-t", "1", "steady"]);
    std::thread::sleep(Duration::from_millis(500));
    let v = inspect(&env, "steady");
    assert_eq!(v["State"]["Status"], "exited", "{v}");
    // -d --rm: gone after exit.
    env.ok(&[
        "run",
        "-d",
        "--rm",
        "--name",
        "brief",
        "--network",
        "none",
        "bb:1",
        "true",
    ]);
    wait_for("auto-removal", || {
        !env.ok(&["ps", "-a", "--format", "{{.Names}}"])
            .contains("brief")
    });
}

#[test]
fn memory_and_pids_limits() {
    let env = env_with_image();
    // Hold 64 MiB in the shell under a 16 MiB limit: the kernel kills it; Docker reports 137
    // and OOMKilled.
    let (code, _, err) = run_out(
        &env,
        &[
            "run",
            "--name",
            "hog",
            "--network",
            "none",
            "-m",
            "16m",
            "--memory-swap",
            "16m",
            "bb:1",
            "sh",
            "-c",
            "x=$(dd if=/dev/zero bs=1M count=64 2>/dev/null | tr '\\0' a); echo ${#x}",
        ],
    );
    assert_eq!(code, 137, "{err}");
    let v = inspect(&env, "hog");
    assert_eq!(v["State"]["OOMKilled"], true);
    assert_eq!(v["State"]["ExitCode"], 137);
    // Without a limit the same command completes.
    let (code, out, _) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "bb:1",
            "sh",
            "-c",
            "x=$(dd if=/dev/zero bs=1M count=64 2>/dev/null | tr '\\0' a); echo ${#x}",
        ],
    );
    assert_eq!(code, 0);
    assert_eq!(out.trim(), (64 << 20).to_string());
    // Eight background processes under a limit of five: fork fails inside; without it, fine.
    let script = "for i in 1 2 3 4 5 6 7 8; do sleep 1 & done; wait";
    let (code, _, err) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--pids-limit",
            "5",
            "bb:1",
            "sh",
            "-c",
            script,
        ],
    );
    assert_ne!(code, 0);
    assert!(err.contains("fork"), "{err}");
    let (code, _, err) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "bb:1",
            "sh",
            "-c",
            script,
        ],
    );
    assert_eq!(code, 0, "{err}");
    let v: Value = serde_json::from_str(&env.ok(&["inspect", "hog"])).unwrap();
    assert_eq!(v[0]["HostConfig"]["Memory"], 16 << 20);
}

#[test]
fn external_runtime_crun() {
    if !common::have("crun") {
        return;
    }
    let env = env_with_image();
    let (code, out, err) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--runtime",
            "crun",
            "--network",
            "none",
            "bb:1",
            "sh",
            "-c",
            "echo via crun; cat /proc/1/cmdline | tr '\\0' ' '",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("via crun\nsh -c"), "{out}");
    env.ok(&[
        "run",
        "-d",
        "--runtime",
        "crun",
        "--name",
        "c1",
        "--network",
        "none",
        "bb:1",
        "sleep",
        "30",
    ]);
    assert_eq!(env.ok(&["exec", "c1", "echo", "hi"]).trim(), "hi");
    env.ok(&["rm", "-f", "c1"]);
    assert!(mounts_under(&env).is_empty());
}

#[test]
fn killed_supervisor_and_init_are_reported_truthfully() {
    let env = env_with_image();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "victim",
        "--network",
        "none",
        "bb:1",
        "sleep",
        "300",
    ]);
    let st: Value = serde_json::from_str(
        &std::fs::read_to_string(
            std::fs::read_dir(env.root().join("containers"))
                .unwrap()
                .flatten()
                .next()
                .unwrap()
                .path()
                .join("state.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let sup = st["berth"]["supervisor_pid"].as_i64().unwrap() as i32;
    let init = st["Pid"].as_i64().unwrap() as i32;
    // kill -9 both (only processes this test started).
    unsafe_free_kill(sup);
    unsafe_free_kill(init);
    wait_for("state correction", || {
        inspect(&env, "victim")["State"]["Status"] == "exited"
    });
    assert_ne!(inspect(&env, "victim")["State"]["ExitCode"], 0);
    env.ok(&["rm", "victim"]);
    assert!(mounts_under(&env).is_empty(), "{:?}", mounts_under(&env));
    // The same container name can be reused.
    env.ok(&[
        "create",
        "--network",
        "none",
        "--name",
        "victim",
        "bb:1",
        "true",
    ]);
}

fn unsafe_free_kill(pid: i32) {
    let _ = std::process::Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status();
}

#[test]
fn network_modes_host_and_container() {
    let env = env_with_image();
    let host_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let (_, out, _) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "host",
            "bb:1",
            "sh",
            "-c",
            "ls /sys/class/net | wc -l; cat /etc/hostname",
        ],
    );
    let host_ifaces = std::fs::read_dir("/sys/class/net").unwrap().count();
    assert_eq!(
        out.lines().next().unwrap().trim(),
        host_ifaces.to_string(),
        "{out}"
    );
    assert_eq!(out.lines().nth(1).unwrap().trim(), host_name.trim());
    let (_, out, _) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "bb:1",
            "ls",
            "/sys/class/net",
        ],
    );
    assert_eq!(out.trim(), "lo");
    // container:<name> shares the network namespace: a server on its localhost answers.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        "none",
        "bb:1",
        "sh",
        "-c",
        "while true; do echo pong | nc -l -p 7777; done",
    ]);
    std::thread::sleep(Duration::from_millis(300));
    let (code, out, err) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "container:srv",
            "bb:1",
            "sh",
            "-c",
            "echo ping | nc 127.0.0.1 7777",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("pong"), "{out}");
    env.ok(&["rm", "-f", "srv"]);
}

#[test]
fn init_runs_as_pid_one_and_forwards_signals() {
    if !common::have("tini-static") {
        return;
    }
    let env = env_with_image();
    let (code, out, err) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--init",
            "--network",
            "none",
            "bb:1",
            "sh",
            "-c",
            "cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        "/sbin/docker-init -- sh -c cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$ \n2\n"
    );
    // Under an init the shell is not PID 1, so SIGTERM ends it at once (exit 143), no 10 s wait.
    env.ok(&[
        "run",
        "-d",
        "--init",
        "--name",
        "inited",
        "--network",
        "none",
        "bb:1",
        "sleep",
        "300",
    ]);
    let start = Instant::now();
    env.ok(&["stop", "inited"]);
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "stop took {:?}",
        start.elapsed()
    );
    assert_eq!(inspect(&env, "inited")["State"]["ExitCode"], 143);
}

#[test]
fn default_seccomp_filter_blocks_what_docker_blocks() {
    let env = env_with_image();
    let script = "busybox unshare -U true 2>/dev/null; echo userns=$?; \
                  busybox unshare -n true 2>/dev/null; echo netns=$?; \
                  grep Seccomp: /proc/self/status";
    let (code, out, err) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "bb:1",
            "sh",
            "-c",
            script,
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("userns=1"), "{out}");
    assert!(out.contains("netns=1"), "{out}");
    assert!(out.contains("Seccomp:\t2"), "filter mode: {out}");
    // With CAP_SYS_ADMIN (Docker allows unshare then), and unconfined / privileged: no filter.
    let (_, out, _) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--cap-add",
            "SYS_ADMIN",
            "bb:1",
            "sh",
            "-c",
            script,
        ],
    );
    assert!(out.contains("netns=0"), "{out}");
    for flag in [
        ["--security-opt", "seccomp=unconfined"],
        ["--privileged", "--read-only"],
    ] {
        let mut args = vec!["run", "--rm", "--network", "none"];
        args.extend(flag);
        args.extend(["bb:1", "sh", "-c", "grep Seccomp: /proc/self/status"]);
        let (_, out, _) = run_out(&env, &args);
        assert!(out.contains("Seccomp:\t0"), "{flag:?}: {out}");
    }
}

#[test]
fn tty_is_a_real_terminal() {
    if !common::have("script") {
        return;
    }
    let env = env_with_image();
    let berth = assert_cmd::cargo::cargo_bin("berth");
    let cmd = format!(
        "{} --root {} run --rm -t --network none bb:1 sh -c 'tty; echo term=$TERM; test -t 0 && echo stdin-is-tty'",
        berth.display(),
        env.root().display()
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("term=xterm"), "{text}");
    assert!(text.contains("stdin-is-tty"), "{text}");
}

#[test]
fn logs_follow_until_the_container_exits() {
    let env = env_with_image();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "talker",
        "--network",
        "none",
        "bb:1",
        "sh",
        "-c",
        "for i in 1 2 3; do echo line $i; sleep 0.3; done",
    ]);
    let start = Instant::now();
    let out = env.ok(&["logs", "-f", "talker"]);
    assert_eq!(out, "line 1\nline 2\nline 3\n");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(env.ok(&["logs", "--tail", "1", "talker"]), "line 3\n");
}

#[test]
fn cpu_limit_reaches_the_cgroup() {
    let env = env_with_image();
    let (code, out, err) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--cpus",
            "0.5",
            "bb:1",
            "sh",
            "-c",
            "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us",
        ],
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.trim().starts_with("50000"), "{out}");
}

#[test]
fn killing_the_cli_during_run_detached_leaves_a_true_state() {
    let env = env_with_image();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("berth"))
        .arg("--root")
        .arg(env.root())
        .args([
            "run",
            "-d",
            "--name",
            "orphan",
            "--network",
            "none",
            "bb:1",
            "sleep",
            "60",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let _ = child.kill();
    let _ = child.wait();
    // Whatever point it was killed at, the state is true and rm -f cleans everything.
    std::thread::sleep(Duration::from_millis(300));
    let ps = env.ok(&["ps", "-a", "--format", "{{.Names}} {{.State}}"]);
    for line in ps.lines() {
        let state = line.split_whitespace().nth(1).unwrap_or("");
        assert!(["created", "running", "exited"].contains(&state), "{ps}");
        if state == "running" {
            let pid = inspect(&env, "orphan")["State"]["Pid"].as_i64().unwrap();
            assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());
        }
    }
    if !ps.is_empty() {
        env.ok(&["rm", "-f", "orphan"]);
    }
    assert!(mounts_under(&env).is_empty(), "{:?}", mounts_under(&env));
}

#[test]
fn foreground_run_passes_signals_to_the_container() {
    let env = env_with_image();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("berth"))
        .arg("--root")
        .arg(env.root())
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "bb:1",
            "sh",
            "-c",
            "trap 'echo got TERM; exit 7' TERM; echo ready; while true; do sleep 0.1; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut first = [0u8; 6];
    std::io::Read::read_exact(&mut out, &mut first).unwrap();
    assert_eq!(&first, b"ready\n");
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(rest, "got TERM\n");
    assert_eq!(status.code(), Some(7));
}

#[test]
fn pause_freezes_and_commit_pauses_while_reading() {
    let env = Env::new();
    env.import_busybox("bb:1");
    env.ok(&[
        "run",
        "-d",
        "--name",
        "pz",
        "--network",
        "none",
        "bb:1",
        "sh",
        "-c",
        "i=0; while true; do i=$((i+1)); echo $i > /tmp/n; sleep 0.02; done",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    env.ok(&["pause", "pz"]);
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.State.Status}} {{.State.Paused}}", "pz"])
            .trim(),
        "paused true"
    );
    assert!(
        env.ok(&["ps", "--format", "{{.Status}}"])
            .contains("(Paused)")
    );
    // Frozen: the counter does not move (read from the host side of the overlay).
    let id = env
        .ok(&["inspect", "-f", "{{.Id}}", "pz"])
        .trim()
        .to_string();
    let n = env.root().join("containers").join(&id).join("upper/tmp/n");
    let a = std::fs::read_to_string(&n).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(std::fs::read_to_string(&n).unwrap(), a);
    let err = String::from_utf8_lossy(&env.fails(&["pause", "pz"]).stderr).into_owned();
    assert!(err.contains("already paused"), "{err}");
    let err = String::from_utf8_lossy(&env.fails(&["exec", "pz", "true"]).stderr).into_owned();
    assert!(err.contains("unpause the container before exec"), "{err}");
    env.ok(&["unpause", "pz"]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_ne!(std::fs::read_to_string(&n).unwrap(), a, "thawed");
    env.fails(&["unpause", "pz"]);
    // commit pauses while reading and thaws after.
    env.ok(&["commit", "pz", "pz:img"]);
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.State.Status}}", "pz"]).trim(),
        "running"
    );
    // A paused container still stops (it is thawed to receive the signal).
    env.ok(&["pause", "pz"]);
    env.ok(&["stop", "-t", "1", "pz"]);
    assert_eq!(
        env.ok(&["inspect", "-f", "{{.State.Status}}", "pz"]).trim(),
        "exited"
    );
    env.ok(&["rm", "pz"]);
}

/// Options of the overlay mounted at `target` (from /proc/self/mountinfo's super options).
fn overlay_options(target: &std::path::Path) -> Option<String> {
    let t = target.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(t.as_str()))
        .and_then(|l| l.rsplit(' ').next().map(String::from))
}

#[test]
fn rm_containers_skip_the_sync_and_leave_no_files() {
    let env = env_with_image();
    let root = env.root().canonicalize().unwrap();
    let dir = |id: &str| root.join("containers").join(id);
    // --rm: the upper directory is thrown away, so the overlay is volatile (no sync of the
    // upper filesystem at unmount); a container that is kept gets the usual durable mount.
    let gone = env.ok(&[
        "run",
        "-d",
        "--rm",
        "--network",
        "none",
        "bb:1",
        "sleep",
        "30",
    ]);
    let kept = env.ok(&["run", "-d", "--network", "none", "bb:1", "sleep", "30"]);
    let (gone, kept) = (gone.trim().to_string(), kept.trim().to_string());
    let gone_opts = overlay_options(&dir(&gone).join("rootfs")).expect("--rm rootfs mounted");
    let kept_opts = overlay_options(&dir(&kept).join("rootfs")).expect("rootfs mounted");
    assert!(gone_opts.contains("volatile"), "{gone_opts}");
    assert!(!kept_opts.contains("volatile"), "{kept_opts}");
    // The state of a --rm container is still written whole (atomic rename), and reads back.
    assert_eq!(inspect(&env, &gone)["State"]["Status"], "running");
    env.ok(&["rm", "-f", &gone, &kept]);

    // A foreground --rm run: when it returns the container is unlisted, and its files follow
    // (deleted by a detached reaper), with nothing mounted.
    let (code, out, err) = run_out(
        &env,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "bb:1",
            "sh",
            "-c",
            "echo hi; exit 3",
        ],
    );
    assert_eq!((code, out.as_str()), (3, "hi\n"), "{err}");
    assert_eq!(env.ok(&["ps", "-aq"]).trim(), "");
    wait_for("the removed container's files", || {
        std::fs::read_dir(root.join("containers")).unwrap().count() == 0
    });
    assert!(mounts_under(&env).is_empty(), "{:?}", mounts_under(&env));
    // A volatile mount left behind by a crash (its marker in the work directory) does not
    // stop the container from starting again: the scratch work directory is cleared.
    let id = env.ok(&["create", "--network", "none", "bb:1", "true"]);
    let id = id.trim();
    let marker = dir(id).join("work/work/incompat/volatile");
    std::fs::create_dir_all(&marker).unwrap();
    let (code, _, err) = run_out(&env, &["start", "-a", id]);
    assert_eq!(code, 0, "{err}");
    assert!(!marker.exists());
    env.ok(&["rm", id]);
}

#[test]
fn reaper_refuses_what_is_not_a_container_id() {
    let env = env_with_image();
    let outside = env.path("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let (code, _, err) = run_out(&env, &["__supervise", "../../outside", "--reap"]);
    assert_eq!(code, 125);
    assert!(err.contains("not a container ID"), "{err}");
    assert!(outside.exists());
    // Nothing to reap is not an error.
    let (code, _, err) = run_out(&env, &["__supervise", &"a".repeat(64), "--reap"]);
    assert_eq!(code, 0, "{err}");
}

/// The embedded sandbox's cgroup manager (libcgroups, patched to read mountinfo and
/// /proc/self/cgroup once: vendor/README.md) puts the container in every hierarchy the host
/// has, as runc and crun do: each v1 controller (so `pause`, `top`, `stats` and OOM reporting
/// find it), or the one unified cgroup. `exec` joins the same cgroups; `rm` removes them all.
#[test]
fn container_joins_every_cgroup_hierarchy() {
    let env = env_with_image();
    let id = env
        .ok(&[
            "run",
            "-d",
            "--name",
            "cg",
            "--network",
            "none",
            "bb:1",
            "sleep",
            "30",
        ])
        .trim()
        .to_string();
    let pid = inspect(&env, "cg")["State"]["Pid"].as_i64().unwrap();
    let own = format!("/berth/{id}");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let mut dirs = Vec::new();
    if v2 {
        assert_eq!(cgroups.trim(), format!("0::{own}"), "{cgroups}");
        dirs.push(format!("/sys/fs/cgroup{own}"));
    } else {
        // "N:controllers:path"; named hierarchies (name=systemd) and the hybrid host's
        // controller-less unified line are not the runtime's to join.
        let joined: Vec<(&str, &str)> = cgroups
            .lines()
            .filter_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
                (!ctrls.is_empty() && !ctrls.starts_with("name=")).then_some((ctrls, path))
            })
            .collect();
        let names: Vec<&str> = joined.iter().flat_map(|(c, _)| c.split(',')).collect();
        for ctrl in [
            "cpu", "cpuacct", "memory", "pids", "devices", "freezer", "blkio", "cpuset",
        ] {
            let mounted = std::path::Path::new("/sys/fs/cgroup").join(ctrl).is_dir();
            assert_eq!(names.contains(&ctrl), mounted, "{ctrl}: {cgroups}");
        }
        for (ctrls, path) in &joined {
            assert_eq!(*path, own, "{ctrls}: {cgroups}");
            let first = ctrls.split(',').next().unwrap();
            dirs.push(format!("/sys/fs/cgroup/{first}{own}"));
        }
        assert!(!joined.is_empty(), "{cgroups}");
    }
    for d in &dirs {
        let procs = std::fs::read_to_string(format!("{d}/cgroup.procs")).unwrap();
        assert!(procs.lines().any(|l| l == pid.to_string()), "{d}: {procs}");
    }
    // exec lands in the init's cgroups.
    let out = env.ok(&[
        "exec",
        "cg",
        "sh",
        "-c",
        "cat /proc/1/cgroup; echo --; cat /proc/self/cgroup",
    ]);
    let (init, exec) = out.split_once("--\n").unwrap();
    assert_eq!(init, exec, "{out}");
    assert!(env.ok(&["top", "cg"]).contains("sleep 30"));
    env.ok(&["rm", "-f", "cg"]);
    for d in &dirs {
        assert!(!std::path::Path::new(d).exists(), "{d} is left");
    }
}
