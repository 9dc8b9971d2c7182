//! The answers of the embedded DNS server: a pure function of the query bytes and the
//! [`Resolver`] (names and aliases on the container's networks, their reverse records), and the
//! raw replies for queries that cannot be parsed (FORMERR, SERVFAIL, truncation to the client's
//! UDP size).

use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};

use hickory_proto::op::{Edns, Message, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tracing::{debug, warn};

/// The port the embedded server listens on inside the container.
pub const DNS_PORT: u16 = 53;
pub const DNS_ADDR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
/// TTL of the records answered locally (Docker uses 600 s).
pub(super) const TTL: u32 = 600;
/// Size of a DNS header.
pub(super) const HEADER_LEN: usize = 12;
/// UDP payload size without EDNS (RFC 1035).
pub(super) const CLASSIC_UDP: usize = 512;
/// The EDNS UDP payload size advertised in local answers.
pub(super) const EDNS_PAYLOAD: u16 = 1232;

// Raw response codes used when building replies by hand.
pub(super) const RCODE_FORMERR: u8 = 1;
pub(super) const RCODE_SERVFAIL: u8 = 2;
pub(super) const RCODE_NOTIMP: u8 = 4;
pub(super) const RCODE_REFUSED: u8 = 5;

/// Answers for the container's network.
pub trait Resolver: Send + Sync + 'static {
    /// Called for each query, must be cheap; returns the addresses for `name`
    /// (already lower-cased, without the trailing dot) or `None` if the name
    /// is not a container/alias on its networks.
    fn lookup(&self, name: &str) -> Option<Vec<IpAddr>>;
    /// Reverse lookup for PTR queries: the container name for an address on
    /// the network.
    fn reverse(&self, ip: IpAddr) -> Option<String>;
}

/// What to do with one query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send these bytes back to the client.
    Reply(Vec<u8>),
    /// Not ours: forward the query to the upstream servers.
    Forward,
    /// Not worth an answer (too short to carry an id, or not a query).
    Drop,
}

/// The answer logic: a pure function of the query bytes and the resolver.
///
/// Local answers are not size-limited here; the UDP path truncates them to
/// the client's payload size.
pub fn answer(query: &[u8], resolver: &dyn Resolver) -> Action {
    if query.len() < HEADER_LEN {
        return Action::Drop;
    }
    if query[2] & 0x80 != 0 {
        // A response: never answer it (no reflection loops).
        return Action::Drop;
    }
    let msg = match Message::from_vec(query) {
        Ok(msg) => msg,
        Err(err) => {
            debug!(%err, "malformed query");
            return Action::Reply(raw_reply(query, RCODE_FORMERR, false));
        }
    };
    if msg.metadata.op_code != OpCode::Query {
        return Action::Reply(raw_reply(query, RCODE_NOTIMP, true));
    }
    if msg.queries.len() != 1 {
        return Action::Reply(raw_reply(query, RCODE_FORMERR, false));
    }
    let question = &msg.queries[0];
    if question.query_class() != DNSClass::IN {
        return Action::Forward;
    }
    let qname = question.name();
    let name = normalize(qname);
    let records = match question.query_type() {
        qtype @ (RecordType::A | RecordType::AAAA) => {
            let Some(addrs) = resolver.lookup(&name) else {
                return Action::Forward;
            };
            let mut records: Vec<Record> = addrs
                .into_iter()
                .filter_map(|ip| match (qtype, ip) {
                    (RecordType::A, IpAddr::V4(v4)) => Some(RData::A(A(v4))),
                    (RecordType::AAAA, IpAddr::V6(v6)) => Some(RData::AAAA(AAAA(v6))),
                    _ => None,
                })
                .map(|data| Record::from_rdata(qname.clone(), TTL, data))
                .collect();
            // Round-robin between the containers behind one alias, as Docker
            // shuffles its answers.
            if records.len() > 1 {
                let by = usize::from(random_u16()) % records.len();
                records.rotate_left(by);
            }
            // A known name without addresses of this family: NOERROR, no
            // answers (NODATA), never a forward that could say NXDOMAIN.
            records
        }
        RecordType::PTR => {
            let Some(ip) = arpa_to_ip(qname) else {
                return Action::Forward;
            };
            let Some(host) = resolver.reverse(ip) else {
                return Action::Forward;
            };
            let Some(target) = host_to_name(&host) else {
                warn!(host, "reverse name is not a valid DNS name");
                return Action::Forward;
            };
            vec![Record::from_rdata(
                qname.clone(),
                TTL,
                RData::PTR(PTR(target)),
            )]
        }
        // Other types for a container name: the name exists, it just has no
        // such records (upstream would wrongly say NXDOMAIN for it).
        _ if resolver.lookup(&name).is_some() => Vec::new(),
        _ => return Action::Forward,
    };
    let mut reply = response_to(&msg);
    reply.add_answers(records);
    match reply.to_vec() {
        Ok(bytes) => Action::Reply(bytes),
        Err(err) => {
            warn!(%err, "cannot encode answer");
            Action::Reply(raw_reply(query, RCODE_SERVFAIL, true))
        }
    }
}

/// [`answer`], but a panic (in the parser or in the resolver) drops the
/// query instead of killing the serving thread.
pub(super) fn safe_answer(query: &[u8], resolver: &dyn Resolver) -> Action {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| answer(query, resolver)))
        .unwrap_or_else(|_| {
            warn!("panic while answering a DNS query; dropped");
            Action::Drop
        })
}

/// The query name, lower-cased, without the trailing dot.
pub(super) fn normalize(name: &Name) -> String {
    let mut s = name.to_ascii();
    if s.ends_with('.') {
        s.pop();
    }
    s.make_ascii_lowercase();
    s
}

/// The address of a full `in-addr.arpa` / `ip6.arpa` name.
pub(super) fn arpa_to_ip(name: &Name) -> Option<IpAddr> {
    let net = name.parse_arpa_name().ok()?;
    (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
}

pub(super) fn host_to_name(host: &str) -> Option<Name> {
    let host = host.trim_end_matches('.');
    if host.is_empty() {
        return None;
    }
    let mut name = Name::from_ascii(host).ok()?;
    name.set_fqdn(true);
    Some(name)
}

/// A NOERROR response skeleton for `query`: id, opcode, RD, RA, question,
/// and an OPT record when the query had one.
pub(super) fn response_to(query: &Message) -> Message {
    let mut reply = Message::response(query.metadata.id, query.metadata.op_code);
    reply.metadata.recursion_desired = query.metadata.recursion_desired;
    reply.metadata.recursion_available = true;
    reply.metadata.checking_disabled = query.metadata.checking_disabled;
    reply.metadata.response_code = ResponseCode::NoError;
    reply.add_queries(query.queries.iter().cloned());
    if query.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(EDNS_PAYLOAD);
        reply.set_edns(edns);
    }
    reply
}

/// A reply built by hand from the query's header: id, opcode and RD copied,
/// QR and RA set, `rcode`; the question copied when asked and well-formed
/// (glibc ignores error replies whose question does not match, except a
/// FORMERR without question). Needs `query.len() >= 12`.
pub(super) fn raw_reply(query: &[u8], rcode: u8, with_question: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(CLASSIC_UDP);
    out.extend_from_slice(&query[..2]);
    out.push(0x80 | (query[2] & 0x79)); // QR, opcode, RD (AA/TC cleared)
    out.push(0x80 | (rcode & 0x0f)); // RA, rcode
    let question = if with_question {
        question_end(query).map(|end| &query[HEADER_LEN..end])
    } else {
        None
    };
    let qdcount: u16 = question.is_some().into();
    out.extend_from_slice(&qdcount.to_be_bytes());
    out.extend_from_slice(&[0; 6]);
    if let Some(q) = question {
        out.extend_from_slice(q);
    }
    out
}

/// The end offset of the (single) question of a message, if it has exactly
/// one well-formed question.
pub(super) fn question_end(msg: &[u8]) -> Option<usize> {
    if msg.len() < HEADER_LEN || u16::from_be_bytes([msg[4], msg[5]]) != 1 {
        return None;
    }
    let mut pos = HEADER_LEN;
    loop {
        let len = *msg.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                pos += 1;
                break;
            }
            0x00 => pos += 1 + usize::from(len),
            0xc0 => {
                pos += 2;
                break;
            }
            _ => return None,
        }
    }
    let end = pos + 4;
    (end <= msg.len()).then_some(end)
}

/// The UDP payload size the client can take.
pub(super) fn udp_limit(query: &[u8]) -> usize {
    Message::from_vec(query)
        .ok()
        .and_then(|m| m.edns.map(|e| usize::from(e.max_payload())))
        .unwrap_or(CLASSIC_UDP)
        .max(CLASSIC_UDP)
}

/// `reply` if it fits in `limit` bytes, otherwise its header with TC set and
/// its question only, so that the client retries over TCP.
pub(super) fn fit(reply: Vec<u8>, limit: usize) -> Vec<u8> {
    if reply.len() <= limit || reply.len() < HEADER_LEN {
        return reply;
    }
    let end = question_end(&reply);
    let mut out = reply[..HEADER_LEN].to_vec();
    out[2] |= 0x02; // TC
    out[4..6].copy_from_slice(&u16::from(end.is_some()).to_be_bytes());
    out[6..12].fill(0);
    if let Some(end) = end {
        out.extend_from_slice(&reply[HEADER_LEN..end]);
    }
    out
}

pub(super) fn servfail(query: &[u8]) -> Vec<u8> {
    raw_reply(query, RCODE_SERVFAIL, true)
}

/// A random 16-bit number (query ids towards upstreams, answer rotation).
pub(super) fn random_u16() -> u16 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.finish() as u16
}
