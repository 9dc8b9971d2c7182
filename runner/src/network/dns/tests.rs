use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV6, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use super::answer::*;
use super::server::*;
use super::upstream::*;
use hickory_proto::op::{MessageType, Query};
use proptest::prelude::*;
use std::collections::HashMap;
use std::process::{Child, Command, Stdio};

// ---- helpers -------------------------------------------------------

#[derive(Default)]
struct FakeResolver {
    names: HashMap<String, Vec<IpAddr>>,
}

impl FakeResolver {
    fn new() -> Self {
        let mut names = HashMap::new();
        names.insert(
            "web".to_string(),
            vec!["10.89.0.2".parse().unwrap(), "fd00:89::2".parse().unwrap()],
        );
        names.insert("db".to_string(), vec!["10.89.0.3".parse().unwrap()]);
        names.insert(
            "api".to_string(),
            vec!["10.89.0.4".parse().unwrap(), "10.89.0.5".parse().unwrap()],
        );
        let many = (1..=100)
            .map(|i| IpAddr::V4(Ipv4Addr::new(10, 90, 0, i)))
            .collect();
        names.insert("many".to_string(), many);
        FakeResolver { names }
    }
}

impl Resolver for FakeResolver {
    fn lookup(&self, name: &str) -> Option<Vec<IpAddr>> {
        assert_eq!(name, name.to_ascii_lowercase(), "name not lower-cased");
        assert!(!name.ends_with('.'), "trailing dot");
        self.names.get(name).cloned()
    }
    fn reverse(&self, ip: IpAddr) -> Option<String> {
        let mut hits: Vec<&String> = self
            .names
            .iter()
            .filter(|(_, ips)| ips.contains(&ip))
            .map(|(n, _)| n)
            .collect();
        hits.sort();
        hits.first().map(|s| s.to_string())
    }
}

fn query_msg(name: &str, qtype: RecordType) -> Message {
    let mut msg = Message::query();
    msg.metadata.id = 0x1234;
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    msg
}

fn query(name: &str, qtype: RecordType) -> Vec<u8> {
    query_msg(name, qtype).to_vec().unwrap()
}

fn reply(action: Action) -> Message {
    match action {
        Action::Reply(bytes) => Message::from_vec(&bytes).expect("reply parses"),
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn ips(msg: &Message) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = msg
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect();
    out.sort();
    out
}

fn ptr_target(msg: &Message) -> Option<String> {
    msg.answers.iter().find_map(|r| match &r.data {
        RData::PTR(p) => Some(p.0.to_ascii()),
        _ => None,
    })
}

/// What the fake upstream does with a name.
fn upstream_answer(q: &Message, tcp: bool, tag: Ipv4Addr) -> Option<Message> {
    let question = q.queries.first()?;
    let name = normalize(question.name());
    let mut r = Message::response(q.metadata.id, q.metadata.op_code);
    r.metadata.recursion_desired = q.metadata.recursion_desired;
    r.metadata.recursion_available = true;
    r.add_query(question.clone());
    match name.as_str() {
        "silent.example" => return None,
        "nx.example" => r.metadata.response_code = ResponseCode::NXDomain,
        // Only the first fake upstream fails: the second one answers.
        "fail.example" if tag == TAG1 => r.metadata.response_code = ResponseCode::ServFail,
        "refused.example" => r.metadata.response_code = ResponseCode::Refused,
        "big.example" if !tcp => r.metadata.truncation = true,
        "big.example" => {
            for i in 0..40 {
                r.add_answer(Record::from_rdata(
                    question.name().clone(),
                    60,
                    RData::A(A(Ipv4Addr::new(198, 51, 100, i))),
                ));
            }
        }
        _ => {
            r.add_answer(Record::from_rdata(
                question.name().clone(),
                60,
                RData::A(A(tag)),
            ));
        }
    }
    Some(r)
}

/// A tiny DNS server on 127.0.0.1:<random> (UDP and TCP, same port) in
/// the host namespace. Every answer carries `tag` as address, to tell
/// upstreams apart. Stops when dropped.
struct FakeUpstream {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeUpstream {
    fn start(tag: Ipv4Addr) -> FakeUpstream {
        let stop = Arc::new(AtomicBool::new(false));
        // Same port for UDP and TCP: retry until both are free.
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()) {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        tcp.set_nonblocking(true).unwrap();
        let s1 = Arc::clone(&stop);
        let t1 = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !s1.load(Ordering::Relaxed) {
                let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                    continue;
                };
                let Ok(q) = Message::from_vec(&buf[..n]) else {
                    continue;
                };
                if let Some(r) = upstream_answer(&q, false, tag) {
                    let _ = udp.send_to(&r.to_vec().unwrap(), peer);
                }
            }
        });
        let s2 = Arc::clone(&stop);
        let t2 = thread::spawn(move || {
            while !s2.load(Ordering::Relaxed) {
                let Ok((mut stream, _)) = tcp.accept() else {
                    thread::sleep(Duration::from_millis(20));
                    continue;
                };
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_secs(2)))
                    .unwrap();
                let mut len = [0u8; 2];
                if stream.read_exact(&mut len).is_err() {
                    continue;
                }
                let mut q = vec![0u8; usize::from(u16::from_be_bytes(len))];
                if stream.read_exact(&mut q).is_err() {
                    continue;
                }
                let Ok(q) = Message::from_vec(&q) else {
                    continue;
                };
                if let Some(r) = upstream_answer(&q, true, tag) {
                    let _ = stream.write_all(&framed(&r.to_vec().unwrap()).unwrap());
                }
            }
        });
        FakeUpstream {
            addr,
            stop,
            threads: vec![t1, t2],
        }
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A loopback address where nothing listens (UDP gets ECONNREFUSED).
fn dead_upstream() -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.local_addr().unwrap()
}

fn udp_ask(sock: &UdpSocket, q: &[u8]) -> Message {
    sock.send(q).unwrap();
    let mut buf = [0u8; 65535];
    let n = sock.recv(&mut buf).expect("UDP reply");
    Message::from_vec(&buf[..n]).unwrap()
}

fn tcp_ask(stream: &mut TcpStream, q: &[u8]) -> Message {
    stream.write_all(&framed(q).unwrap()).unwrap();
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).unwrap();
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    stream.read_exact(&mut buf).unwrap();
    Message::from_vec(&buf).unwrap()
}

// ---- answer(): local names ------------------------------------------

#[test]
fn a_query_for_known_name() {
    let r = reply(answer(&query("web.", RecordType::A), &FakeResolver::new()));
    assert_eq!(r.metadata.id, 0x1234);
    assert_eq!(r.metadata.message_type, MessageType::Response);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.recursion_available && r.metadata.recursion_desired);
    assert_eq!(r.queries.len(), 1);
    assert_eq!(ips(&r), vec!["10.89.0.2".parse::<IpAddr>().unwrap()]);
    assert!(r.answers.iter().all(|a| a.ttl == TTL));
}

#[test]
fn a_query_is_case_insensitive_and_keeps_question_case() {
    let r = reply(answer(&query("WeB.", RecordType::A), &FakeResolver::new()));
    assert_eq!(ips(&r), vec!["10.89.0.2".parse::<IpAddr>().unwrap()]);
    assert_eq!(r.queries[0].name().to_ascii(), "WeB.");
    assert_eq!(r.answers[0].name.to_ascii(), "WeB.");
}

#[test]
fn a_query_returns_every_address_of_an_alias() {
    let r = reply(answer(&query("api.", RecordType::A), &FakeResolver::new()));
    assert_eq!(
        ips(&r),
        vec![
            "10.89.0.4".parse::<IpAddr>().unwrap(),
            "10.89.0.5".parse().unwrap()
        ]
    );
}

#[test]
fn aaaa_query_for_known_name_with_ipv6() {
    let r = reply(answer(
        &query("web.", RecordType::AAAA),
        &FakeResolver::new(),
    ));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ips(&r), vec!["fd00:89::2".parse::<IpAddr>().unwrap()]);
    assert_eq!(r.answers[0].ttl, TTL);
}

#[test]
fn aaaa_query_for_known_name_without_ipv6_is_nodata() {
    let r = reply(answer(
        &query("db.", RecordType::AAAA),
        &FakeResolver::new(),
    ));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
}

#[test]
fn other_types_for_known_name_are_nodata() {
    let r = reply(answer(&query("db.", RecordType::MX), &FakeResolver::new()));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
}

#[test]
fn ptr_query_for_known_address() {
    let name = Name::from(IpAddr::V4(Ipv4Addr::new(10, 89, 0, 3)));
    assert_eq!(name.to_ascii(), "3.0.89.10.in-addr.arpa.");
    let r = reply(answer(
        &query(&name.to_ascii(), RecordType::PTR),
        &FakeResolver::new(),
    ));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert_eq!(ptr_target(&r).as_deref(), Some("db."));
    assert_eq!(r.answers[0].ttl, TTL);
}

#[test]
fn ptr_query_for_known_ipv6_address() {
    let name = Name::from("fd00:89::2".parse::<IpAddr>().unwrap());
    let r = reply(answer(
        &query(&name.to_ascii(), RecordType::PTR),
        &FakeResolver::new(),
    ));
    assert_eq!(ptr_target(&r).as_deref(), Some("web."));
}

// ---- answer(): what is not ours --------------------------------------

#[test]
fn unknown_names_and_addresses_are_forwarded() {
    let res = FakeResolver::new();
    assert_eq!(
        answer(&query("example.com.", RecordType::A), &res),
        Action::Forward
    );
    assert_eq!(
        answer(&query("example.com.", RecordType::AAAA), &res),
        Action::Forward
    );
    assert_eq!(
        answer(&query("example.com.", RecordType::MX), &res),
        Action::Forward
    );
    assert_eq!(
        answer(&query("example.com.", RecordType::TXT), &res),
        Action::Forward
    );
    // Search-domain suffixes: exactly the name asked.
    assert_eq!(
        answer(&query("web.corp.example.", RecordType::A), &res),
        Action::Forward
    );
    let unknown = Name::from(IpAddr::V4(Ipv4Addr::new(10, 89, 0, 99)));
    assert_eq!(
        answer(&query(&unknown.to_ascii(), RecordType::PTR), &res),
        Action::Forward
    );
    // A partial reverse name is not an address.
    assert_eq!(
        answer(&query("89.10.in-addr.arpa.", RecordType::PTR), &res),
        Action::Forward
    );
    assert_eq!(answer(&query(".", RecordType::NS), &res), Action::Forward);
}

#[test]
fn other_classes_are_forwarded() {
    let mut msg = query_msg("web.", RecordType::A);
    msg.queries[0].set_query_class(DNSClass::CH);
    assert_eq!(
        answer(&msg.to_vec().unwrap(), &FakeResolver::new()),
        Action::Forward
    );
}

// ---- answer(): errors ------------------------------------------------

#[test]
fn several_questions_are_formerr() {
    let mut msg = query_msg("web.", RecordType::A);
    msg.add_query(Query::query(
        Name::from_ascii("db.").unwrap(),
        RecordType::A,
    ));
    let r = reply(answer(&msg.to_vec().unwrap(), &FakeResolver::new()));
    assert_eq!(r.metadata.id, 0x1234);
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn no_question_is_formerr() {
    let mut msg = Message::query();
    msg.metadata.id = 7;
    let r = reply(answer(&msg.to_vec().unwrap(), &FakeResolver::new()));
    assert_eq!(r.metadata.id, 7);
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
}

#[test]
fn malformed_body_is_formerr_with_the_query_id() {
    let mut bytes = query("web.", RecordType::A);
    bytes.truncate(bytes.len() - 3); // cut inside the question
    let r = reply(answer(&bytes, &FakeResolver::new()));
    assert_eq!(r.metadata.id, 0x1234);
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    assert!(r.queries.is_empty());
}

#[test]
fn other_opcodes_are_notimp() {
    let mut msg = query_msg("web.", RecordType::A);
    msg.metadata.op_code = OpCode::Status;
    let r = reply(answer(&msg.to_vec().unwrap(), &FakeResolver::new()));
    assert_eq!(r.metadata.response_code, ResponseCode::NotImp);
    assert_eq!(r.metadata.op_code, OpCode::Status);
    assert_eq!(r.queries.len(), 1);
}

#[test]
fn short_packets_and_responses_are_dropped() {
    let res = FakeResolver::new();
    assert_eq!(answer(&[], &res), Action::Drop);
    assert_eq!(answer(&[0x12, 0x34, 0, 0, 0], &res), Action::Drop);
    let mut resp = query_msg("web.", RecordType::A);
    resp.metadata.message_type = MessageType::Response;
    assert_eq!(answer(&resp.to_vec().unwrap(), &res), Action::Drop);
}

#[test]
fn servfail_echoes_the_question() {
    let q = query("example.com.", RecordType::A);
    let r = Message::from_vec(&servfail(&q)).unwrap();
    assert_eq!(r.metadata.id, 0x1234);
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert!(r.metadata.recursion_desired && r.metadata.recursion_available);
    assert_eq!(r.queries, query_msg("example.com.", RecordType::A).queries);
}

#[test]
fn edns_is_echoed() {
    let mut msg = query_msg("web.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    msg.set_edns(edns);
    let r = reply(answer(&msg.to_vec().unwrap(), &FakeResolver::new()));
    assert_eq!(r.edns.map(|e| e.max_payload()), Some(EDNS_PAYLOAD));
    let r = reply(answer(&query("web.", RecordType::A), &FakeResolver::new()));
    assert!(r.edns.is_none());
}

#[test]
fn big_udp_answers_are_truncated() {
    let q = query("many.", RecordType::A);
    let Action::Reply(full) = answer(&q, &FakeResolver::new()) else {
        panic!("no reply")
    };
    assert!(full.len() > CLASSIC_UDP);
    assert_eq!(Message::from_vec(&full).unwrap().answers.len(), 100);
    let cut = fit(full.clone(), udp_limit(&q));
    assert!(cut.len() <= CLASSIC_UDP);
    let r = Message::from_vec(&cut).unwrap();
    assert!(r.metadata.truncation);
    assert_eq!(r.metadata.id, 0x1234);
    assert_eq!(r.queries.len(), 1);
    assert!(r.answers.is_empty());
    // With a large EDNS payload it fits.
    let mut msg = query_msg("many.", RecordType::A);
    let mut edns = Edns::new();
    edns.set_max_payload(4096);
    msg.set_edns(edns);
    assert_eq!(udp_limit(&msg.to_vec().unwrap()), 4096);
    assert_eq!(fit(full.clone(), 4096), full);
}

#[test]
fn garbage_never_panics() {
    // Deterministic xorshift so a failure is reproducible.
    let res = FakeResolver::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let seed = query("web.", RecordType::A);
    for i in 0..20_000 {
        let bytes: Vec<u8> = if i % 2 == 0 {
            let len = (next() % 80) as usize;
            (0..len).map(|_| next() as u8).collect()
        } else {
            // Mutations of a valid query reach deeper into the parser.
            let mut b = seed.clone();
            for _ in 0..(next() % 4 + 1) {
                let at = (next() as usize) % b.len();
                b[at] = next() as u8;
            }
            b.truncate((next() as usize) % (b.len() + 1));
            b
        };
        let action = answer(&bytes, &res);
        if let Action::Reply(r) = &action {
            assert!(r.len() >= HEADER_LEN);
            assert_eq!(r[..2], bytes[..2]);
        }
        let _ = question_end(&bytes);
        let _ = fit(bytes.clone(), 16);
        let _ = matches(&bytes, &seed);
        if bytes.len() >= HEADER_LEN {
            let _ = servfail(&bytes);
        }
    }
}

proptest! {
    #[test]
    fn proptest_answer_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let res = FakeResolver::new();
        match answer(&bytes, &res) {
            Action::Reply(r) => {
                prop_assert!(r.len() >= HEADER_LEN);
                prop_assert_eq!(&r[..2], &bytes[..2]);
            }
            Action::Forward => prop_assert!(Message::from_vec(&bytes).is_ok()),
            Action::Drop => {}
        }
        let _ = fit(bytes.clone(), 64);
    }
}

// ---- resolv.conf -----------------------------------------------------

#[test]
fn resolv_conf_nameservers() {
    let text = "\
# generated
search corp.example
nameserver 192.0.2.53
nameserver 127.0.0.53
nameserver   2001:db8::53  # comment
nameserver ::1
nameserver 127.0.1.1
nameserver 0.0.0.0
;nameserver 192.0.2.99
nameserver fe80::1%eth0
nameserver fe80::2%3
nameserver ::ffff:127.0.0.1
nameserver not-an-address
nameserver
options edns0 ndots:2
nameserver 192.0.2.53
";
    let got = upstreams_from_resolv_conf(text);
    assert_eq!(
        got,
        vec![
            "192.0.2.53:53".parse::<SocketAddr>().unwrap(),
            "[2001:db8::53]:53".parse().unwrap(),
            SocketAddr::V6(SocketAddrV6::new("fe80::2".parse().unwrap(), 53, 0, 3)),
        ]
    );
}

#[test]
fn resolv_conf_with_only_a_local_stub_is_empty() {
    let text = "nameserver 127.0.0.53\noptions edns0 trust-ad\nsearch .\n";
    assert!(upstreams_from_resolv_conf(text).is_empty());
    assert!(upstreams_from_resolv_conf("").is_empty());
}

// ---- forwarding (host loopback only) ---------------------------------

const TAG1: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const TAG2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 2);

#[test]
fn forward_udp_relays_with_client_id() {
    let up = FakeUpstream::start(TAG1);
    let q = query("ext.example.", RecordType::A);
    let resp = forward_udp(&q, &[up.addr], FORWARD_BUDGET, CLASSIC_UDP).unwrap();
    let r = Message::from_vec(&resp).unwrap();
    assert_eq!(r.metadata.id, 0x1234);
    assert_eq!(ips(&r), vec![IpAddr::V4(TAG1)]);
}

#[test]
fn forward_relays_nxdomain() {
    let up = FakeUpstream::start(TAG1);
    let q = query("nx.example.", RecordType::A);
    let resp = forward_udp(&q, &[up.addr], FORWARD_BUDGET, CLASSIC_UDP).unwrap();
    let r = Message::from_vec(&resp).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(r.metadata.id, 0x1234);
    let resp = forward_tcp(&q, &[up.addr], FORWARD_BUDGET).unwrap();
    let r = Message::from_vec(&resp).unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn forward_skips_dead_silent_and_failing_upstreams() {
    let up1 = FakeUpstream::start(TAG1);
    let up2 = FakeUpstream::start(TAG2);
    // SERVFAIL from the first: the second answers.
    let q = query("fail.example.", RecordType::A);
    let resp = forward_udp(&q, &[up1.addr, up2.addr], FORWARD_BUDGET, CLASSIC_UDP).unwrap();
    assert_eq!(
        ips(&Message::from_vec(&resp).unwrap()),
        vec![IpAddr::V4(TAG2)]
    );
    let resp = forward_tcp(&q, &[up1.addr, up2.addr], FORWARD_BUDGET).unwrap();
    assert_eq!(
        ips(&Message::from_vec(&resp).unwrap()),
        vec![IpAddr::V4(TAG2)]
    );
    assert!(forward_udp(&q, &[up1.addr], FORWARD_BUDGET, CLASSIC_UDP).is_none());
    // REFUSED everywhere: nothing (the caller answers SERVFAIL).
    let q = query("refused.example.", RecordType::A);
    assert!(forward_udp(&q, &[up1.addr, up2.addr], FORWARD_BUDGET, CLASSIC_UDP).is_none());
    // Refused port first, then a good one.
    let q = query("ext.example.", RecordType::A);
    let resp = forward_udp(
        &q,
        &[dead_upstream(), up2.addr],
        FORWARD_BUDGET,
        CLASSIC_UDP,
    )
    .unwrap();
    assert_eq!(
        ips(&Message::from_vec(&resp).unwrap()),
        vec![IpAddr::V4(TAG2)]
    );
    let resp = forward_tcp(&q, &[dead_upstream(), up2.addr], FORWARD_BUDGET).unwrap();
    assert_eq!(
        ips(&Message::from_vec(&resp).unwrap()),
        vec![IpAddr::V4(TAG2)]
    );
    // Nobody answers: gives up within the budget.
    let q = query("silent.example.", RecordType::A);
    let start = Instant::now();
    assert!(forward_udp(&q, &[up1.addr, up2.addr], FORWARD_BUDGET, CLASSIC_UDP).is_none());
    let took = start.elapsed();
    assert!(
        took >= FORWARD_BUDGET - Duration::from_millis(50),
        "{took:?}"
    );
    assert!(
        took < FORWARD_BUDGET + Duration::from_millis(1500),
        "{took:?}"
    );
    assert!(forward_udp(&q, &[], FORWARD_BUDGET, CLASSIC_UDP).is_none());
}

#[test]
fn forward_retries_truncated_answers_over_tcp() {
    let up = FakeUpstream::start(TAG1);
    let q = query("big.example.", RecordType::A);
    // The client takes big answers: the full TCP one.
    let resp = forward_udp(&q, &[up.addr], FORWARD_BUDGET, 4096).unwrap();
    let r = Message::from_vec(&resp).unwrap();
    assert_eq!(r.answers.len(), 40);
    assert!(!r.metadata.truncation);
    assert_eq!(r.metadata.id, 0x1234);
    // It does not: the truncated one, so that it retries over TCP.
    let resp = forward_udp(&q, &[up.addr], FORWARD_BUDGET, CLASSIC_UDP).unwrap();
    let r = Message::from_vec(&resp).unwrap();
    assert!(r.metadata.truncation);
    assert_eq!(r.metadata.id, 0x1234);
}

#[test]
fn mismatched_replies_are_ignored() {
    let q = query("ext.example.", RecordType::A);
    let mut other = Message::from_vec(&q).unwrap();
    other.metadata.message_type = MessageType::Response;
    assert!(matches(&other.to_vec().unwrap(), &q));
    other.metadata.id = 0x4321;
    assert!(!matches(&other.to_vec().unwrap(), &q));
    let mut other = query_msg("evil.example.", RecordType::A);
    other.metadata.message_type = MessageType::Response;
    assert!(!matches(&other.to_vec().unwrap(), &q));
    let mut upper = query_msg("EXT.example.", RecordType::A);
    upper.metadata.message_type = MessageType::Response;
    assert!(matches(&upper.to_vec().unwrap(), &q));
    assert!(!matches(&q, &q), "a query is not a reply");
}

/// serve() on host loopback sockets: no namespace needed.
#[test]
fn serve_on_host_loopback_and_stop() {
    let up = FakeUpstream::start(TAG1);
    let sockets = Sockets::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let udp_addr = sockets.udp.local_addr().unwrap();
    let tcp_addr = sockets.tcp.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let handle = serve(
        sockets,
        Arc::new(FakeResolver::new()),
        vec![up.addr],
        Arc::clone(&stop),
    );
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(udp_addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let r = udp_ask(&client, &query("db.", RecordType::A));
    assert_eq!(ips(&r), vec!["10.89.0.3".parse::<IpAddr>().unwrap()]);
    let r = udp_ask(&client, &query("ext.example.", RecordType::A));
    assert_eq!(ips(&r), vec![IpAddr::V4(TAG1)]);
    let r = udp_ask(&client, &query("many.", RecordType::A));
    assert!(r.metadata.truncation);
    let mut tcp = TcpStream::connect(tcp_addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let r = tcp_ask(&mut tcp, &query("many.", RecordType::A));
    assert_eq!(r.answers.len(), 100);
    let r = tcp_ask(&mut tcp, &query("big.example.", RecordType::A));
    assert_eq!(r.answers.len(), 40);
    let start = Instant::now();
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[test]
fn serve_answers_servfail_without_upstreams() {
    let sockets = Sockets::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let udp_addr = sockets.udp.local_addr().unwrap();
    let tcp_addr = sockets.tcp.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let handle = serve(
        sockets,
        Arc::new(FakeResolver::new()),
        Vec::new(),
        Arc::clone(&stop),
    );
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(udp_addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let r = udp_ask(&client, &query("ext.example.", RecordType::A));
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(r.queries.len(), 1);
    let mut tcp = TcpStream::connect(tcp_addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let r = tcp_ask(&mut tcp, &query("ext.example.", RecordType::A));
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    // Garbage gets FORMERR, the connection stays usable.
    let r = tcp_ask(
        &mut tcp,
        &[0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0x05],
    );
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
    assert_eq!(r.metadata.id, 0xabcd);
    let r = tcp_ask(&mut tcp, &query("web.", RecordType::A));
    assert_eq!(ips(&r), vec!["10.89.0.2".parse::<IpAddr>().unwrap()]);
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
}

#[test]
fn serve_handles_many_concurrent_clients() {
    let up = FakeUpstream::start(TAG1);
    let sockets = Sockets::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let udp_addr = sockets.udp.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    // A silent upstream first: every forward waits on it, and local
    // answers must not wait behind the forwards.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let handle = serve(
        sockets,
        Arc::new(FakeResolver::new()),
        vec![silent.local_addr().unwrap(), up.addr],
        Arc::clone(&stop),
    );
    let clients: Vec<_> = (0..20)
        .map(|i| {
            thread::spawn(move || {
                let c = UdpSocket::bind("127.0.0.1:0").unwrap();
                c.connect(udp_addr).unwrap();
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let name = if i % 2 == 0 { "ext.example." } else { "web." };
                let start = Instant::now();
                let r = udp_ask(&c, &query(name, RecordType::A));
                (i, r, start.elapsed())
            })
        })
        .collect();
    for c in clients {
        let (i, r, took) = c.join().unwrap();
        if i % 2 == 0 {
            assert_eq!(ips(&r), vec![IpAddr::V4(TAG1)]);
        } else {
            assert_eq!(ips(&r), vec!["10.89.0.2".parse::<IpAddr>().unwrap()]);
            // The forwards wait ~1 s on the silent upstream.
            assert!(
                took < Duration::from_millis(800),
                "local answer took {took:?}"
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
    drop(silent);
}

struct PanickyResolver(FakeResolver);

impl Resolver for PanickyResolver {
    fn lookup(&self, name: &str) -> Option<Vec<IpAddr>> {
        assert_ne!(name, "boom", "resolver bug");
        self.0.lookup(name)
    }
    fn reverse(&self, ip: IpAddr) -> Option<String> {
        self.0.reverse(ip)
    }
}

#[test]
fn a_panicking_resolver_does_not_kill_the_server() {
    let sockets = Sockets::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let udp_addr = sockets.udp.local_addr().unwrap();
    let tcp_addr = sockets.tcp.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let handle = serve(
        sockets,
        Arc::new(PanickyResolver(FakeResolver::new())),
        Vec::new(),
        Arc::clone(&stop),
    );
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.connect(udp_addr).unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    client.send(&query("boom.", RecordType::A)).unwrap();
    let mut buf = [0u8; 512];
    assert!(
        client.recv(&mut buf).is_err(),
        "no answer to a panicking lookup"
    );
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let r = udp_ask(&client, &query("web.", RecordType::A));
    assert_eq!(ips(&r), vec!["10.89.0.2".parse::<IpAddr>().unwrap()]);
    let mut tcp = TcpStream::connect(tcp_addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.write_all(&framed(&query("boom.", RecordType::A)).unwrap())
        .unwrap();
    let mut len = [0u8; 2];
    assert!(tcp.read_exact(&mut len).is_err(), "connection closed");
    let mut tcp = TcpStream::connect(tcp_addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let r = tcp_ask(&mut tcp, &query("web.", RecordType::A));
    assert_eq!(ips(&r), vec!["10.89.0.2".parse::<IpAddr>().unwrap()]);
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
}

// ---- integration: a real network namespace (root) --------------------

/// A process in a new network namespace with `lo` up; killed (by PID)
/// and reaped on drop, which removes the namespace.
struct Netns {
    child: Child,
}

impl Netns {
    fn new() -> Netns {
        let child = Command::new("unshare")
            .args(["-n", "sleep", "60"])
            .stdin(Stdio::null())
            .spawn()
            .expect("unshare");
        let ns = Netns { child };
        let pid = ns.pid();
        // Until unshare has exec'd, the child is still in our namespace.
        let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
        let start = Instant::now();
        loop {
            let theirs = std::fs::read_link(format!("/proc/{pid}/ns/net")).unwrap();
            if theirs != ours {
                break;
            }
            assert!(start.elapsed() < Duration::from_secs(5), "no new netns");
            thread::sleep(Duration::from_millis(10));
        }
        let status = Command::new("nsenter")
            .args([
                "-t",
                &pid.to_string(),
                "-n",
                "ip",
                "link",
                "set",
                "lo",
                "up",
            ])
            .status()
            .expect("nsenter");
        assert!(status.success(), "cannot bring lo up");
        ns
    }

    fn pid(&self) -> i32 {
        i32::try_from(self.child.id()).unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

#[test]
fn netns_serves_names_forwards_ptr_and_tcp() {
    if !is_root() {
        eprintln!("SKIPPED netns_serves_names_forwards_ptr_and_tcp: needs root");
        return;
    }
    let up = FakeUpstream::start(TAG1);
    let ns = Netns::new();
    let sockets = bind_in_netns(ns.pid()).expect("bind in netns");
    let stop = Arc::new(AtomicBool::new(false));
    let handle = serve(
        sockets,
        Arc::new(FakeResolver::new()),
        vec![up.addr],
        Arc::clone(&stop),
    );
    let server = SocketAddr::from((DNS_ADDR, DNS_PORT));

    // Client sockets made inside the namespace.
    let (udp, mut tcp) = crate::network::netns::run_in(ns.pid(), || {
        let udp = UdpSocket::bind("127.0.0.1:0")?;
        udp.connect(server)?;
        let tcp = TcpStream::connect_timeout(&server, Duration::from_secs(2))?;
        Ok((udp, tcp))
    })
    .expect("client sockets in netns");
    udp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();

    // Known name, over UDP.
    let r = udp_ask(&udp, &query("web.", RecordType::A));
    assert_eq!(ips(&r), vec!["10.89.0.2".parse::<IpAddr>().unwrap()]);
    let r = udp_ask(&udp, &query("web.", RecordType::AAAA));
    assert_eq!(ips(&r), vec!["fd00:89::2".parse::<IpAddr>().unwrap()]);
    // Forwarded to the host-namespace upstream on 127.0.0.1.
    let r = udp_ask(&udp, &query("ext.example.", RecordType::A));
    assert_eq!(r.metadata.id, 0x1234);
    assert_eq!(ips(&r), vec![IpAddr::V4(TAG1)]);
    let r = udp_ask(&udp, &query("nx.example.", RecordType::A));
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    // PTR.
    let ptr = Name::from(IpAddr::V4(Ipv4Addr::new(10, 89, 0, 3)));
    let r = udp_ask(&udp, &query(&ptr.to_ascii(), RecordType::PTR));
    assert_eq!(ptr_target(&r).as_deref(), Some("db."));
    // TCP: several queries on one connection, local and forwarded.
    let r = tcp_ask(&mut tcp, &query("DB.", RecordType::A));
    assert_eq!(ips(&r), vec!["10.89.0.3".parse::<IpAddr>().unwrap()]);
    let r = tcp_ask(&mut tcp, &query("ext.example.", RecordType::A));
    assert_eq!(ips(&r), vec![IpAddr::V4(TAG1)]);
    let r = tcp_ask(&mut tcp, &query("big.example.", RecordType::A));
    assert_eq!(r.answers.len(), 40);
    let r = tcp_ask(&mut tcp, &query(&ptr.to_ascii(), RecordType::PTR));
    assert_eq!(ptr_target(&r).as_deref(), Some("db."));

    stop.store(true, Ordering::Relaxed);
    let start = Instant::now();
    handle.join().unwrap();
    assert!(start.elapsed() < Duration::from_secs(3));
    drop(tcp);
    drop(ns);
}

#[test]
fn netns_server_keeps_running_after_the_namespace_dies() {
    if !is_root() {
        eprintln!("SKIPPED netns_server_keeps_running_after_the_namespace_dies: needs root");
        return;
    }
    let ns = Netns::new();
    let sockets = bind_in_netns(ns.pid()).expect("bind in netns");
    let stop = Arc::new(AtomicBool::new(false));
    let handle = serve(
        sockets,
        Arc::new(FakeResolver::new()),
        Vec::new(),
        Arc::clone(&stop),
    );
    drop(ns); // the namespace's last process is gone
    thread::sleep(Duration::from_millis(500));
    assert!(!handle.is_finished());
    stop.store(true, Ordering::Relaxed);
    handle.join().unwrap();
}

#[test]
fn bind_in_netns_fails_for_missing_process() {
    assert!(bind_in_netns(i32::MAX).is_err());
}
