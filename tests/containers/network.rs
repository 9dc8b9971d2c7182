//! Bridge networking end to end: the default bridge, NAT out to an "outside" network namespace
//! the test makes, published ports (host loopback and from the outside namespace), user-defined
//! networks with isolation, connect/disconnect, name resolution, links, concurrent IPAM, and
//! cleanup (no veth, NAT entry or address left). Each test has its own state root, bridge,
//! subnets and nftables table (see `Env::new`); traffic stays on loopback and inside
//! what the test creates.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Env, http_get, sh};

fn sh_ok(cmd: &str) -> String {
    let o = sh(cmd);
    assert!(
        o.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A network namespace standing for a host outside: linked to the host by a veth pair on a
/// /30 of its own, with no route back to the containers' subnets (so only NAT makes replies
/// come back). A busybox httpd serves "outside" on port 8000 there.
struct Outside {
    ns: String,
    host_if: String,
    pub host_ip: String,
    pub ip: String,
    httpd: Option<Child>,
    /// The httpd's document root, kept until the namespace goes.
    _www: tempfile::TempDir,
}

impl Outside {
    fn new() -> Outside {
        let pid = std::process::id();
        let ns = format!("bo{pid:x}");
        let host_if = format!("bo{pid:x}h");
        let o = format!("bo{pid:x}o");
        let net = format!("100.{}.{}", 64 + ((pid >> 8) & 0x3f), pid & 0xff);
        let (host_ip, ip) = (format!("{net}.1"), format!("{net}.2"));
        sh_ok(&format!(
            "ip netns add {ns} && ip link add {host_if} type veth peer name {o} && ip link set {o} netns {ns} \
             && ip addr add {host_ip}/30 dev {host_if} && ip link set {host_if} up \
             && ip -n {ns} addr add {ip}/30 dev {o} && ip -n {ns} link set {o} up && ip -n {ns} link set lo up"
        ));
        let www = tempfile::tempdir().unwrap();
        std::fs::write(www.path().join("index.html"), "outside\n").unwrap();
        let httpd = Command::new("ip")
            .args([
                "netns", "exec", &ns, "busybox", "httpd", "-f", "-p", "8000", "-h",
            ])
            .arg(www.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let me = Outside {
            ns,
            host_if,
            host_ip,
            ip,
            httpd: Some(httpd),
            _www: www,
        };
        // Wait until it listens.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if sh(&format!(
                "ip netns exec {} sh -c 'cat /proc/net/tcp' | grep -q ':1F40 '",
                me.ns
            ))
            .status
            .success()
            {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        me
    }

    /// Run a command inside the outside namespace.
    fn exec(&self, cmd: &str) -> std::process::Output {
        sh(&format!("ip netns exec {} {cmd}", self.ns))
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        if let Some(mut h) = self.httpd.take() {
            let _ = h.kill();
            let _ = h.wait();
        }
        let _ = sh(&format!(
            "ip link del {}; ip netns del {}",
            self.host_if, self.ns
        ));
    }
}

fn setup() -> Env {
    let env = Env::new();
    env.import_busybox("bb:1");
    env
}

fn inspect(env: &Env, name: &str, fmt: &str) -> String {
    env.ok(&["inspect", "-f", fmt, name]).trim().to_string()
}

#[test]
fn default_bridge_gives_an_address_hosts_entry_and_nat_out() {
    let env = setup();
    let outside = Outside::new();
    let out = env.ok(&[
        "run",
        "--rm",
        "bb:1",
        "sh",
        "-c",
        "ip -4 -o addr show eth0; cat /etc/hosts; ip route",
    ]);
    let prefix = env.subnet_prefix();
    assert!(out.contains(&format!("inet {prefix}")), "{out}");
    assert!(out.contains(&format!("default via {prefix}1")), "{out}");
    // The hosts file names the container by its address.
    let ip = out
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    assert!(
        out.lines().any(|l| l.starts_with(&format!("{ip}\t"))),
        "{out}"
    );
    // Outbound through masquerade: the outside namespace has no route to the bridge subnet.
    let got = env.ok(&[
        "run",
        "--rm",
        "bb:1",
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{}:8000/", outside.ip),
    ]);
    assert_eq!(got.trim(), "outside");
    // Docker's inspect fields while running.
    env.ok(&["run", "-d", "--name", "c1", "bb:1", "sleep", "60"]);
    let ip = inspect(&env, "c1", "{{.NetworkSettings.IPAddress}}");
    assert!(ip.starts_with(&prefix), "{ip}");
    assert_eq!(
        inspect(&env, "c1", "{{.NetworkSettings.Networks.bridge.IPAddress}}"),
        ip
    );
    assert_eq!(
        inspect(&env, "c1", "{{.NetworkSettings.Gateway}}"),
        format!("{prefix}1")
    );
    // The host reaches the container directly.
    assert!(sh(&format!("busybox ping -c1 -W2 {ip}")).status.success());
    env.ok(&["rm", "-f", "c1"]);
    // Nothing is left on the bridge (the kernel destroys a pair with its namespace, shortly).
    no_ports_left(&env);
}

#[test]
fn published_ports_answer_on_loopback_and_from_outside_and_go_away() {
    let env = setup();
    let outside = Outside::new();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "0:80",
        "-p",
        "127.0.0.1::80",
        "bb:1",
        "sh",
        "-c",
        "mkdir /www && echo hello-web > /www/index.html && exec httpd -f -p 80 -h /www",
    ]);
    let ports = env.ok(&["port", "web"]);
    let mut lines: Vec<&str> = ports.lines().collect();
    lines.sort();
    assert_eq!(lines.len(), 2, "{ports}");
    let any_port: String = lines
        .iter()
        .find(|l| l.contains("0.0.0.0:"))
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    let lo_port: String = lines
        .iter()
        .find(|l| l.contains("127.0.0.1:"))
        .unwrap()
        .rsplit(':')
        .next()
        .unwrap()
        .to_string();
    assert_eq!(
        http_get(&format!("http://127.0.0.1:{any_port}/")),
        "hello-web\n"
    );
    assert_eq!(
        http_get(&format!("http://127.0.0.1:{lo_port}/")),
        "hello-web\n"
    );
    // From another namespace that routes to the host.
    let o = outside.exec(&format!(
        "busybox wget -q -O - http://{}:{any_port}/",
        outside.host_ip
    ));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "hello-web\n");
    // Hairpin: the container reaches its own published port through the gateway.
    let gw = format!("{}1", env.subnet_prefix());
    let got = env.ok(&[
        "exec",
        "web",
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{gw}:{any_port}/"),
    ]);
    assert_eq!(got, "hello-web\n");
    // ps shows the mapping; inspect has Docker's Ports shape.
    let ps = env.ok(&["ps", "--format", "{{.Ports}}"]);
    assert!(ps.contains(&format!("0.0.0.0:{any_port}->80/tcp")), "{ps}");
    let pj = inspect(&env, "web", "{{json .NetworkSettings.Ports}}");
    assert!(pj.contains(&format!("\"HostPort\":\"{any_port}\"")), "{pj}");
    // A host port that is taken: a clear error, the container is not started.
    let out = env.fails(&[
        "run",
        "-d",
        "-p",
        &format!("{any_port}:80"),
        "bb:1",
        "sleep",
        "5",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("port is already allocated"), "{err}");
    assert_eq!(out.status.code(), Some(125));
    // Stopping removes the NAT entries.
    env.ok(&["stop", "-t", "1", "web"]);
    let map = sh_ok(&format!("nft list map ip {} ports", env.nft_table()));
    assert!(!map.contains("elements"), "{map}");
    let o = sh(&format!("curl -s -m 2 http://127.0.0.1:{any_port}/"));
    assert!(!o.status.success());
    // Published ports come back with a start.
    env.ok(&["start", "web"]);
    let ports2 = env.ok(&["port", "web", "80"]);
    assert!(ports2.contains("0.0.0.0:"), "{ports2}");
    env.ok(&["rm", "-f", "web"]);
    let map = sh_ok(&format!("nft list map ip {} ports", env.nft_table()));
    assert!(!map.contains("elements"), "{map}");
}

#[test]
fn publish_all_maps_every_exposed_port() {
    let env = setup();
    env.ok(&[
        "run", "-d", "--name", "pa", "-P", "--expose", "80", "--expose", "53/udp", "bb:1", "sleep",
        "30",
    ]);
    let ports = env.ok(&["port", "pa"]);
    assert!(ports.contains("80/tcp -> 0.0.0.0:"), "{ports}");
    assert!(ports.contains("53/udp -> 0.0.0.0:"), "{ports}");
    env.ok(&["rm", "-f", "pa"]);
}

#[test]
fn user_defined_networks_isolate_resolve_names_and_connect() {
    let env = setup();
    let outside = Outside::new();
    env.ok(&["network", "create", "front"]);
    env.ok(&["network", "create", "back"]);
    env.ok(&["network", "create", "--internal", "sealed"]);
    let ls = env.ok(&["network", "ls", "--format", "{{.Name}}"]);
    for n in ["bridge", "host", "none", "front", "back", "sealed"] {
        assert!(ls.lines().any(|l| l == n), "{n} in {ls}");
    }
    // Bad input: clear errors, nothing made.
    let subnet = env.ok(&[
        "network",
        "inspect",
        "-f",
        "{{(index .IPAM.Config 0).Subnet}}",
        "front",
    ]);
    let subnet = subnet.trim();
    let err = String::from_utf8_lossy(
        &env.fails(&["network", "create", "--subnet", subnet, "dup"])
            .stderr,
    )
    .into_owned();
    assert!(err.contains("overlaps"), "{err}");
    let err =
        String::from_utf8_lossy(&env.fails(&["network", "create", "front"]).stderr).into_owned();
    assert!(err.contains("already exists"), "{err}");
    env.fails(&["network", "create", "bad name"]);
    env.fails(&[
        "run",
        "--rm",
        "--network",
        "front",
        "--network-alias",
        "bad alias",
        "bb:1",
        "true",
    ]);
    env.fails(&["run", "--rm", "--network", "nope", "bb:1", "true"]);
    assert!(!env.ok(&["network", "ls", "-q"]).is_empty());

    env.ok(&[
        "run",
        "-d",
        "--name",
        "db",
        "--network",
        "front",
        "--network-alias",
        "database",
        "bb:1",
        "sleep",
        "60",
    ]);
    env.ok(&[
        "run",
        "-d",
        "--name",
        "other",
        "--network",
        "back",
        "bb:1",
        "sleep",
        "60",
    ]);
    let db_ip = inspect(&env, "db", "{{.NetworkSettings.Networks.front.IPAddress}}");
    assert!(db_ip.starts_with("172."), "{db_ip}");
    // Same network: reachable by name and alias.
    let out = env.ok(&[
        "run",
        "--rm",
        "--network",
        "front",
        "bb:1",
        "sh",
        "-c",
        "ping -c1 -W2 db && ping -c1 -W2 database && nslookup db 127.0.0.11",
    ]);
    assert!(out.contains(&db_ip), "{out}");
    // Different networks cannot reach each other.
    let o = env
        .berth()
        .args(["exec", "other", "ping", "-c1", "-W1", &db_ip])
        .output()
        .unwrap();
    assert!(
        !o.status.success(),
        "isolation: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    // Connected to a common network, they can, by name too.
    env.ok(&["network", "connect", "--alias", "helper", "front", "other"]);
    let err = String::from_utf8_lossy(&env.fails(&["network", "connect", "front", "other"]).stderr)
        .into_owned();
    assert!(err.contains("already exists"), "connect twice: {err}");
    let out = env.ok(&["exec", "db", "ping", "-c1", "-W2", "helper"]);
    assert!(out.contains("1 packets received"), "{out}");
    let cont = env.ok(&["network", "inspect", "-f", "{{len .Containers}}", "front"]);
    assert_eq!(cont.trim(), "2");
    // The resolver is the embedded server; a restarted container's new address is what its
    // name resolves to at once.
    let conf = env.ok(&["exec", "db", "cat", "/etc/resolv.conf"]);
    assert!(conf.contains("nameserver 127.0.0.11"), "{conf}");
    env.ok(&["restart", "-t", "0", "db"]);
    let new_ip = inspect(&env, "db", "{{.NetworkSettings.Networks.front.IPAddress}}");
    assert_ne!(new_ip, db_ip, "a restart takes the next free address");
    let out = env.ok(&["exec", "other", "nslookup", "db", "127.0.0.11"]);
    assert!(
        out.contains(&new_ip) && !out.contains(&format!("{db_ip}\n")),
        "{out}"
    );
    // A container's new address is what its name resolves to after a restart elsewhere.
    env.ok(&["network", "disconnect", "front", "other"]);
    let o = env
        .berth()
        .args(["exec", "db", "ping", "-c1", "-W1", "helper"])
        .output()
        .unwrap();
    assert!(!o.status.success(), "name gone after disconnect");
    // Internal networks have no way out.
    let o = env
        .berth()
        .args([
            "run",
            "--rm",
            "--network",
            "sealed",
            "bb:1",
            "wget",
            "-q",
            "-O",
            "-",
            &format!("http://{}:8000/", outside.ip),
        ])
        .output()
        .unwrap();
    assert!(!o.status.success(), "internal network reached outside");
    // rm is refused while in use, works after.
    let err = String::from_utf8_lossy(&env.fails(&["network", "rm", "front"]).stderr).into_owned();
    assert!(err.contains("active endpoints"), "{err}");
    env.fails(&["network", "rm", "bridge"]);
    env.ok(&["rm", "-f", "db", "other"]);
    let bridges_before = env.bridges();
    env.ok(&["network", "rm", "front"]);
    env.ok(&["network", "prune", "-f"]);
    let ls = env.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(ls.lines().count(), 3, "{ls}");
    // Their bridges and rules are gone.
    let links = sh_ok("ip -o link show");
    for b in bridges_before.iter().filter(|b| b.starts_with("br-")) {
        assert!(!links.contains(&format!(" {b}:")), "bridge {b} left");
    }
    let table = sh_ok(&format!("nft list table ip {}", env.nft_table()));
    assert!(!table.contains("br-"), "{table}");
}

#[test]
fn links_give_hosts_entries_and_legacy_env() {
    let env = setup();
    env.ok(&[
        "run", "-d", "--name", "db", "--expose", "5432", "-e", "SECRET=x", "bb:1", "sleep", "60",
    ]);
    let ip = inspect(&env, "db", "{{.NetworkSettings.IPAddress}}");
    let out = env.ok(&[
        "run",
        "--rm",
        "--link",
        "db:pg",
        "bb:1",
        "sh",
        "-c",
        "env; cat /etc/hosts; ping -c1 -W2 pg",
    ]);
    assert!(
        out.contains(&format!("PG_PORT_5432_TCP_ADDR={ip}")),
        "{out}"
    );
    assert!(out.contains("PG_ENV_SECRET=x"), "{out}");
    assert!(out.contains("PG_NAME=/"), "{out}");
    assert!(out.contains(&format!("{ip}\tpg")), "{out}");
    assert!(out.contains("1 packets received"), "{out}");
    env.ok(&["rm", "-f", "db"]);
}

#[test]
fn concurrent_runs_get_distinct_addresses_and_crashes_release_them() {
    let env = setup();
    let root = env.root();
    let handles: Vec<_> = (0..20)
        .map(|i| {
            let root = root.clone();
            std::thread::spawn(move || {
                let o = assert_cmd::Command::cargo_bin("berth")
                    .unwrap()
                    .arg("--root")
                    .arg(&root)
                    .args([
                        "run",
                        "-d",
                        "--name",
                        &format!("c{i}"),
                        "bb:1",
                        "sleep",
                        "60",
                    ])
                    .output()
                    .unwrap();
                assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let mut ips: Vec<String> = (0..20)
        .map(|i| inspect(&env, &format!("c{i}"), "{{.NetworkSettings.IPAddress}}"))
        .collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 20, "{ips:?}");
    let eps = |env: &Env| {
        std::fs::read_dir(env.root().join("networks"))
            .unwrap()
            .flatten()
            .filter_map(|d| std::fs::read_dir(d.path().join("endpoints")).ok())
            .map(|rd| rd.count())
            .sum::<usize>()
    };
    assert_eq!(eps(&env), 20);
    // A supervisor and its container killed with -9: the next command releases the address.
    let st: serde_json::Value = serde_json::from_str(&env.ok(&["inspect", "c0"])).unwrap();
    let pid = st[0]["State"]["Pid"].as_i64().unwrap();
    let id = st[0]["Id"].as_str().unwrap().to_string();
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.root().join("containers").join(&id).join("state.json"))
            .unwrap(),
    )
    .unwrap();
    let sup = state["berth"]["supervisor_pid"].as_i64().unwrap();
    sh(&format!("kill -9 {sup} {pid}"));
    std::thread::sleep(Duration::from_millis(300));
    let ps = env.ok(&["ps", "-a", "--filter", "name=c0", "--format", "{{.Status}}"]);
    assert!(ps.starts_with("Exited"), "{ps}");
    assert_eq!(eps(&env), 19);
    let all: Vec<String> = (0..20).map(|i| format!("c{i}")).collect();
    let mut args = vec!["rm", "-f"];
    args.extend(all.iter().map(String::as_str));
    env.ok(&args);
    assert_eq!(eps(&env), 0);
    no_ports_left(&env);
}

fn no_ports_left(env: &Env) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let ports = sh_ok(&format!("ip -o link show master {}", env.bridge()));
        if ports.trim().is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "veths left: {ports}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn network_inspect_and_ip_options() {
    let env = setup();
    env.ok(&[
        "network",
        "create",
        "--subnet",
        "10.250.9.0/24",
        "--gateway",
        "10.250.9.254",
        "--label",
        "team=a",
        "fixed",
    ]);
    let doc: serde_json::Value =
        serde_json::from_str(&env.ok(&["network", "inspect", "fixed"])).unwrap();
    let n = &doc[0];
    assert_eq!(n["Driver"], "bridge");
    assert_eq!(n["IPAM"]["Config"][0]["Subnet"], "10.250.9.0/24");
    assert_eq!(n["IPAM"]["Config"][0]["Gateway"], "10.250.9.254");
    assert_eq!(n["Labels"]["team"], "a");
    env.ok(&[
        "run",
        "-d",
        "--name",
        "fx",
        "--network",
        "fixed",
        "--ip",
        "10.250.9.77",
        "--mac-address",
        "02:42:aa:bb:cc:dd",
        "bb:1",
        "sleep",
        "60",
    ]);
    let out = env.ok(&["exec", "fx", "ip", "-o", "addr", "show", "eth0"]);
    assert!(out.contains("10.250.9.77/24"), "{out}");
    let mac = env.ok(&["exec", "fx", "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(mac.trim(), "02:42:aa:bb:cc:dd");
    let c = env.ok(&[
        "network",
        "inspect",
        "-f",
        "{{range .Containers}}{{.Name}} {{.IPv4Address}}{{end}}",
        "fixed",
    ]);
    let c = c.trim();
    assert_eq!(c, "fx 10.250.9.77/24");
    // The address is taken: a clear error; --ip on the default bridge is refused.
    let err = String::from_utf8_lossy(
        &env.fails(&[
            "run",
            "--rm",
            "--network",
            "fixed",
            "--ip",
            "10.250.9.77",
            "bb:1",
            "true",
        ])
        .stderr,
    )
    .into_owned();
    assert!(err.contains("already in use"), "{err}");
    env.fails(&["run", "--rm", "--ip", "10.1.1.1", "bb:1", "true"]);
    env.fails(&["network", "inspect", "nope"]);
    env.ok(&["rm", "-f", "fx"]);
    env.ok(&["network", "rm", "fixed"]);
}

#[test]
fn published_udp_port_answers() {
    let env = setup();
    let port = 20000 + (std::process::id() % 20000) as u16;
    // A UDP echo server: the host's python3, bind-mounted read-only.
    env.ok(&[
        "run", "-d", "--name", "udp", "-p", &format!("{port}:53/udp"),
        "-v", "/usr:/usr:ro", "-v", "/usr/lib:/lib:ro", "-v", "/usr/lib64:/lib64:ro",
        "bb:1", "/usr/bin/python3", "-c",
        "import socket\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\ns.bind(('0.0.0.0',53))\nwhile True:\n    d,a=s.recvfrom(100)\n    s.sendto(b'pong '+d, a)",
    ]);
    assert_eq!(
        env.ok(&["port", "udp", "53/udp"]).trim(),
        format!("0.0.0.0:{port}")
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 64];
    let got = loop {
        sock.send_to(b"ping", ("127.0.0.1", port)).unwrap();
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            break String::from_utf8_lossy(&buf[..n]).into_owned();
        }
        assert!(
            Instant::now() < deadline,
            "no UDP answer through the published port"
        );
    };
    assert_eq!(got, "pong ping");
    env.ok(&["rm", "-f", "udp"]);
}

#[test]
fn a_created_container_connected_to_a_second_network_starts_on_both() {
    let env = setup();
    env.ok(&["network", "create", "one"]);
    env.ok(&["network", "create", "two"]);
    env.ok(&[
        "create",
        "--name",
        "both",
        "--network",
        "one",
        "bb:1",
        "sleep",
        "60",
    ]);
    env.ok(&["network", "connect", "--alias", "second", "two", "both"]);
    env.ok(&["start", "both"]);
    let out = env.ok(&["exec", "both", "ip", "-o", "-4", "addr"]);
    assert!(out.contains("eth0") && out.contains("eth1"), "{out}");
    let nets = inspect(
        &env,
        "both",
        "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}={{$v.IPAddress}} {{end}}",
    );
    assert!(
        nets.contains("one=172.") && nets.contains("two=172."),
        "{nets}"
    );
    // Resolvable on the second network by its alias.
    let got = env.ok(&[
        "run",
        "--rm",
        "--network",
        "two",
        "bb:1",
        "ping",
        "-c1",
        "-W2",
        "second",
    ]);
    assert!(got.contains("1 packets received"), "{got}");
    env.ok(&["rm", "-f", "both"]);
    env.ok(&["network", "rm", "one", "two"]);
}

#[test]
fn daemon_settings_move_the_default_network() {
    let env = Env::new();
    let pid = std::process::id();
    let (a, b) = (100 + ((pid >> 8) & 0x3f), pid & 0xff);
    let bridge = env.bridge();
    std::fs::create_dir_all(env.root()).unwrap();
    // fixed-cidr: addresses from the upper half only; mtu on both ends; --dns from the file.
    std::fs::write(
        env.root().join("daemon.json"),
        format!(
            r#"{{"bridge":"{bridge}","bip":"10.{a}.{b}.1/24","fixed-cidr":"10.{a}.{b}.128/25","mtu":1400,"dns":["10.{a}.{b}.53"]}}"#
        ),
    )
    .unwrap();
    env.import_busybox("bb:1");
    let out = env.ok(&[
        "run",
        "--rm",
        "bb:1",
        "sh",
        "-c",
        "ip -o -4 addr show eth0; cat /sys/class/net/eth0/mtu; cat /etc/resolv.conf",
    ]);
    let ip: String = out
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let last: u32 = ip.rsplit('.').next().unwrap().parse().unwrap();
    assert!(
        ip.starts_with(&format!("10.{a}.{b}.")) && last >= 128,
        "{out}"
    );
    assert!(out.lines().any(|l| l.trim() == "1400"), "{out}");
    assert!(out.contains(&format!("nameserver 10.{a}.{b}.53")), "{out}");
    let mtu = sh_ok(&format!("cat /sys/class/net/{bridge}/mtu"));
    assert_eq!(mtu.trim(), "1400");
    // A bad setting is a clear error naming the file.
    std::fs::write(env.root().join("daemon.json"), r#"{"bip":"10.1.2.0/24"}"#).unwrap();
    let err =
        String::from_utf8_lossy(&env.fails(&["run", "--rm", "bb:1", "true"]).stderr).into_owned();
    assert!(err.contains("daemon.json") && err.contains("bip"), "{err}");
}

#[test]
fn a_crashed_supervisor_leaves_no_published_port_behind() {
    let env = setup();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "crash",
        "-p",
        "127.0.0.1::80",
        "bb:1",
        "sleep",
        "60",
    ]);
    let map = sh_ok(&format!("nft list map ip {} portsip", env.nft_table()));
    assert!(map.contains("elements"), "{map}");
    let id = env
        .ok(&["inspect", "-f", "{{.Id}}", "crash"])
        .trim()
        .to_string();
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(env.root().join("containers").join(&id).join("state.json"))
            .unwrap(),
    )
    .unwrap();
    let sup = state["berth"]["supervisor_pid"].as_i64().unwrap();
    let init = state["Pid"].as_i64().unwrap();
    sh(&format!("kill -9 {sup} {init}"));
    std::thread::sleep(Duration::from_millis(300));
    // The next command sees it dead and releases its address and its NAT entry.
    let st = env.ok(&["inspect", "-f", "{{.State.Status}}", "crash"]);
    assert_eq!(st.trim(), "exited");
    let map = sh_ok(&format!("nft list map ip {} portsip", env.nft_table()));
    assert!(!map.contains("elements"), "{map}");
    assert!(
        std::fs::read_dir(env.root().join("networks"))
            .unwrap()
            .flatten()
            .all(|d| std::fs::read_dir(d.path().join("endpoints"))
                .map(|r| r.count() == 0)
                .unwrap_or(true)),
        "endpoint left"
    );
    env.ok(&["rm", "crash"]);
}
