//! Network isolation exploits (issue 15), each scripted against the real kernel:
//! - a container with the default CAP_NET_RAW crafts a frame to its bridge's MAC addressed to
//!   127.0.0.1 (CVE-2020-8558: `route_localnet=1` on the bridge made the host accept it), while
//!   publishing on the host's loopback and hairpin keep working;
//! - a bridge name carrying nftables syntax (`network create -o
//!   com.docker.network.bridge.name=x";drop`) is refused before any script is built.
//!
//! Each test has its own state root, default bridge and subnet (`Env::new`); traffic goes only
//! to the host's loopback and to the bridge the test made.

use crate::common;

use std::net::UdpSocket;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Env, http_get, sh};

/// Sends UDP datagrams as raw IP packets in ethernet frames to a given MAC, bypassing the
/// container's routing table (which would keep 127.0.0.1 on its own loopback):
/// `sender IFNAME DST_MAC SRC_IP DST_IP PORT [DST_IP PORT]…`. Static: the busybox image has
/// no libc.
const SENDER_C: &str = r#"
#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/ip.h>
#include <netinet/udp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

static unsigned short csum(const void *p, int n) {
    const unsigned short *w = p;
    unsigned long s = 0;
    for (; n > 1; n -= 2) s += *w++;
    if (n) s += *(const unsigned char *)w;
    s = (s >> 16) + (s & 0xffff);
    s += s >> 16;
    return (unsigned short)~s;
}

int main(int argc, char **argv) {
    if (argc < 6) { fprintf(stderr, "usage\n"); return 2; }
    int fd = socket(AF_PACKET, SOCK_DGRAM, htons(ETH_P_IP));
    if (fd < 0) { perror("socket(AF_PACKET)"); return 1; }
    struct sockaddr_ll to;
    memset(&to, 0, sizeof to);
    to.sll_family = AF_PACKET;
    to.sll_protocol = htons(ETH_P_IP);
    to.sll_ifindex = if_nametoindex(argv[1]);
    to.sll_halen = 6;
    unsigned char *m = to.sll_addr;
    if (sscanf(argv[2], "%hhx:%hhx:%hhx:%hhx:%hhx:%hhx", &m[0], &m[1], &m[2], &m[3], &m[4], &m[5]) != 6) {
        fprintf(stderr, "bad mac\n");
        return 2;
    }
    for (int i = 4; i + 1 < argc; i += 2) {
        unsigned char pkt[sizeof(struct iphdr) + sizeof(struct udphdr) + 8];
        memset(pkt, 0, sizeof pkt);
        struct iphdr *ip = (struct iphdr *)pkt;
        struct udphdr *u = (struct udphdr *)(pkt + sizeof *ip);
        ip->version = 4;
        ip->ihl = 5;
        ip->ttl = 64;
        ip->id = htons(4242 + i);
        ip->protocol = IPPROTO_UDP;
        ip->tot_len = htons(sizeof pkt);
        ip->saddr = inet_addr(argv[3]);
        ip->daddr = inet_addr(argv[i]);
        ip->check = csum(ip, sizeof *ip);
        u->source = htons(40000);
        u->dest = htons(atoi(argv[i + 1]));
        u->len = htons(sizeof *u + 8);
        memcpy(pkt + sizeof *ip + sizeof *u, "berth-pw", 8);
        for (int k = 0; k < 3; k++)
            if (sendto(fd, pkt, sizeof pkt, 0, (struct sockaddr *)&to, sizeof to) < 0) {
                perror("sendto");
                return 1;
            }
    }
    return 0;
}
"#;

/// Compile the sender into `dir` (gcc is needed; a missing one fails in CI, skips elsewhere).
fn build_sender(dir: &Path) -> bool {
    if !common::have("gcc") {
        return false;
    }
    std::fs::create_dir_all(dir).unwrap();
    let src = dir.join("sender.c");
    std::fs::write(&src, SENDER_C).unwrap();
    let out = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(dir.join("sender"))
        .arg(&src)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gcc -static: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    true
}

fn recv_within(sock: &UdpSocket, within: Duration) -> Option<Vec<u8>> {
    let deadline = Instant::now() + within;
    let mut buf = [0u8; 64];
    while Instant::now() < deadline {
        sock.set_read_timeout(Some(
            deadline.saturating_duration_since(Instant::now()) + Duration::from_millis(1),
        ))
        .unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            return Some(buf[..n].to_vec());
        }
    }
    None
}

#[test]
fn a_container_cannot_reach_the_hosts_loopback_but_publishing_on_it_works() {
    let env = Env::new();
    env.import_busybox("bb:1");
    let x = env.path("x");
    if !build_sender(&x) {
        return;
    }
    let vol = format!("{}:/x", x.display());
    // The attacker: waits for its orders in /x/go, then crafts the frames.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "attacker",
        "-v",
        &vol,
        "bb:1",
        "sh",
        "-c",
        "while [ ! -s /x/go ]; do sleep 0.05; done; /x/sender $(cat /x/go) > /x/out 2>&1; echo $? >> /x/out",
    ]);
    let bridge = env.bridge();
    let gw = format!("{}1", env.subnet_prefix());
    let ip = env
        .ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.IPAddress}}",
            "attacker",
        ])
        .trim()
        .to_string();
    let mac = std::fs::read_to_string(format!("/sys/class/net/{bridge}/address"))
        .unwrap()
        .trim()
        .to_string();
    // A service listening on the host's loopback only, and a control listener on the bridge's
    // own address: the same crafted frame reaching it shows the frames do arrive.
    let secret = UdpSocket::bind("127.0.0.1:0").unwrap();
    let control = UdpSocket::bind(format!("{gw}:0")).unwrap();
    let (sp, cp) = (
        secret.local_addr().unwrap().port(),
        control.local_addr().unwrap().port(),
    );
    std::fs::write(
        x.join("go.tmp"),
        format!("eth0 {mac} {ip} 127.0.0.1 {sp} {gw} {cp}\n"),
    )
    .unwrap();
    std::fs::rename(x.join("go.tmp"), x.join("go")).unwrap();
    let got = recv_within(&control, Duration::from_secs(20));
    let out = std::fs::read_to_string(x.join("out")).unwrap_or_default();
    assert_eq!(
        got.as_deref(),
        Some(&b"berth-pw"[..]),
        "the control frame to the bridge address never arrived; sender: {out}"
    );
    // The frames to 127.0.0.1 went first, on the same path: had the host accepted them, they
    // would be queued by now; a short grace covers scheduling.
    let leaked = recv_within(&secret, Duration::from_millis(500));
    assert_eq!(
        leaked, None,
        "a frame from the container reached a service on the host's 127.0.0.1"
    );
    let rules = String::from_utf8_lossy(
        &sh(&format!("nft list chain ip {} guard", env.nft_table())).stdout,
    )
    .into_owned();
    assert!(
        rules.contains("127.0.0.0/8") && rules.contains("drop"),
        "{rules}"
    );

    // Publishing on the host's loopback still works, and so does hairpin through the gateway.
    env.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "-p",
        "127.0.0.1::80",
        "-p",
        "0:81",
        "bb:1",
        "sh",
        "-c",
        "mkdir /www && echo hello-web > /www/index.html && (httpd -p 81 -h /www &) && exec httpd -f -p 80 -h /www",
    ]);
    let port = |p: &str| {
        env.ok(&["port", "web", p])
            .trim()
            .rsplit(':')
            .next()
            .unwrap()
            .to_string()
    };
    let (lo, any) = (port("80"), port("81"));
    assert_eq!(http_get(&format!("http://127.0.0.1:{lo}/")), "hello-web\n");
    assert_eq!(http_get(&format!("http://127.0.0.1:{any}/")), "hello-web\n");
    let hairpin = env.ok(&[
        "exec",
        "web",
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{gw}:{any}/"),
    ]);
    assert_eq!(hairpin, "hello-web\n");
    env.ok(&["rm", "-f", "attacker", "web"]);
}

#[test]
fn a_bridge_name_with_nft_syntax_is_refused_before_any_rule_is_written() {
    let env = Env::new();
    env.import_busybox("bb:1");
    for (i, evil) in [
        "x\";drop",
        "x\" } ; flush",
        "a}b",
        "a;b",
        "a/b",
        "a\nb",
        "é",
    ]
    .iter()
    .enumerate()
    {
        let name = format!("evil{i}");
        let out = env.fails(&[
            "network",
            "create",
            "-o",
            &format!("com.docker.network.bridge.name={evil}"),
            &name,
        ]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("not a valid interface name")
                && err.contains("letters, digits, '_', '.' or '-'"),
            "{evil:?}: {err}"
        );
        let ls = env.ok(&["network", "ls", "--format", "{{.Name}}"]);
        assert!(!ls.lines().any(|l| l == name), "{ls}");
    }
    // Names people use still work.
    env.ok(&[
        "network",
        "create",
        "-o",
        &format!(
            "com.docker.network.bridge.name=b{:x}.1_-",
            std::process::id() & 0xffff
        ),
        "fine",
    ]);
    env.ok(&["network", "rm", "fine"]);

    // A record from before the restriction is not turned into a script: starting a container
    // on it fails with what to do, and nothing of it reaches nftables or the links.
    let created = env.ok(&["network", "create", "old"]);
    let id = created.trim();
    let record = env.root().join("networks").join(id).join("network.json");
    let json = std::fs::read_to_string(&record).unwrap();
    let evil = "x\\\";drop";
    let json = json.replace(&format!("br-{}", &id[..12]), evil);
    assert!(json.contains(evil), "{json}");
    std::fs::write(&record, json).unwrap();
    let out = env.fails(&["run", "--rm", "--network", "old", "bb:1", "true"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("not a valid interface name") && err.contains("create it again"),
        "{err}"
    );
    let table = sh(&format!("nft list table ip {}", env.nft_table()));
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(!table.contains("x\""), "{table}");
    let links = String::from_utf8_lossy(&sh("ip -o link show").stdout).into_owned();
    assert!(!links.contains("x\";drop"), "{links}");
    // And it can still be removed.
    env.ok(&["network", "rm", "old"]);
}
