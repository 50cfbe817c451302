//! The UDP and TCP listeners and the message handling of the cluster DNS.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use hickory_proto::op::{Edns, Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::{A, CNAME, NS, PTR, SOA, SRV};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::task::JoinHandle;

use super::zone::{Answer, Data, Qtype, Zone};
use super::{ClusterDns, DnsError, forward};

/// A running DNS server; dropping it stops the listeners.
pub struct DnsServer {
    tasks: Vec<JoinHandle<()>>,
    addrs: Vec<SocketAddr>,
}

impl DnsServer {
    /// The bound addresses (UDP and TCP share them).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.addrs
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

pub(super) async fn serve(dns: Arc<ClusterDns>) -> Result<DnsServer, DnsError> {
    let mut tasks = Vec::new();
    let mut addrs = Vec::new();
    for addr in dns.config.listen.clone() {
        // Bound on a thread inside the node's namespace; usable from any task after.
        let (udp, tcp) = dns
            .config
            .netns
            .run_in_runtime(move || -> std::io::Result<(UdpSocket, TcpListener)> {
                let udp = std::net::UdpSocket::bind(addr)?;
                udp.set_nonblocking(true)?;
                // TCP takes the port UDP got (they differ only when asked for port 0).
                let tcp = std::net::TcpListener::bind(udp.local_addr()?)?;
                tcp.set_nonblocking(true)?;
                Ok((UdpSocket::from_std(udp)?, TcpListener::from_std(tcp)?))
            })
            .await?
            .map_err(|source| DnsError::Bind { addr, source })?;
        addrs.push(
            udp.local_addr()
                .map_err(|source| DnsError::Bind { addr, source })?,
        );
        tasks.push(tokio::spawn(serve_udp(dns.clone(), Arc::new(udp))));
        tasks.push(tokio::spawn(serve_tcp(dns.clone(), tcp)));
    }
    Ok(DnsServer { tasks, addrs })
}

async fn serve_udp(dns: Arc<ClusterDns>, sock: Arc<UdpSocket>) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, peer)) = sock.recv_from(&mut buf).await else {
            continue;
        };
        match answer_local(&dns, &buf[..n], false) {
            Reply::Bytes(out) => {
                let _ = sock.send_to(&out, peer).await;
            }
            Reply::Drop => {}
            Reply::Forward => {
                let (dns, sock, query) = (dns.clone(), sock.clone(), buf[..n].to_vec());
                tokio::spawn(async move {
                    let c = &dns.config;
                    let out = forward::udp(&c.netns, &c.upstreams, &query, c.upstream_timeout)
                        .await
                        .or_else(|| servfail(&query));
                    if let Some(out) = out {
                        let _ = sock.send_to(&out, peer).await;
                    }
                });
            }
        }
    }
}

async fn serve_tcp(dns: Arc<ClusterDns>, listener: TcpListener) {
    loop {
        let Ok((mut conn, _)) = listener.accept().await else {
            continue;
        };
        let dns = dns.clone();
        tokio::spawn(async move {
            loop {
                let Ok(len) = conn.read_u16().await else {
                    return;
                };
                let mut query = vec![0u8; len as usize];
                if conn.read_exact(&mut query).await.is_err() {
                    return;
                }
                let out = match answer_local(&dns, &query, true) {
                    Reply::Bytes(out) => Some(out),
                    Reply::Drop => None,
                    Reply::Forward => {
                        let c = &dns.config;
                        forward::tcp(&c.netns, &c.upstreams, &query, c.upstream_timeout)
                            .await
                            .or_else(|| servfail(&query))
                    }
                };
                let Some(out) = out else { return };
                let mut framed = (out.len() as u16).to_be_bytes().to_vec();
                framed.extend_from_slice(&out);
                if conn.write_all(&framed).await.is_err() {
                    return;
                }
            }
        });
    }
}

enum Reply {
    Bytes(Vec<u8>),
    Forward,
    Drop,
}

fn servfail(query: &[u8]) -> Option<Vec<u8>> {
    let req = Message::from_vec(query).ok()?;
    let mut resp = Message::error_msg(
        req.metadata.id,
        req.metadata.op_code,
        ResponseCode::ServFail,
    );
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.queries = req.queries;
    resp.to_vec().ok()
}

fn serial() -> u32 {
    static SERIAL: OnceLock<u32> = OnceLock::new();
    *SERIAL.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as u32)
    })
}

fn qtype(t: RecordType) -> Qtype {
    match t {
        RecordType::A => Qtype::A,
        RecordType::SRV => Qtype::Srv,
        RecordType::PTR => Qtype::Ptr,
        RecordType::CNAME => Qtype::Cname,
        RecordType::SOA => Qtype::Soa,
        RecordType::NS => Qtype::Ns,
        RecordType::ANY => Qtype::Any,
        _ => Qtype::Other,
    }
}

fn name(s: &str) -> Option<Name> {
    Name::from_ascii(s).ok()
}

fn soa(zone: &Zone, owner: &str, ttl: u32) -> Option<Record> {
    let apex = zone.apex();
    let data = SOA::new(
        name(&format!("ns.dns.{apex}"))?,
        name(&format!("hostmaster.{apex}"))?,
        serial(),
        7200,
        1800,
        86400,
        ttl,
    );
    Some(Record::from_rdata(name(owner)?, ttl, RData::SOA(data)))
}

fn record(owner: &str, ttl: u32, data: &Data) -> Option<Record> {
    let rdata = match data {
        Data::A(ip) => RData::A(A(*ip)),
        Data::Cname(t) => RData::CNAME(CNAME(name(t)?)),
        Data::Ptr(t) => RData::PTR(PTR(name(t)?)),
        Data::Srv(p, w, port, t) => RData::SRV(SRV::new(*p, *w, *port, name(t)?)),
    };
    Some(Record::from_rdata(name(owner)?, ttl, rdata))
}

/// Answers from the zone, or says the question must be forwarded.
fn answer_local(dns: &ClusterDns, query: &[u8], tcp: bool) -> Reply {
    let Ok(req) = Message::from_vec(query) else {
        // Answer FORMERR when at least the id can be read.
        if query.len() < 12 {
            return Reply::Drop;
        }
        let id = u16::from_be_bytes([query[0], query[1]]);
        let resp = Message::error_msg(id, OpCode::Query, ResponseCode::FormErr);
        return resp.to_vec().map_or(Reply::Drop, Reply::Bytes);
    };
    if req.metadata.message_type != MessageType::Query {
        return Reply::Drop;
    }
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.queries = req.queries.clone();
    if let Some(edns) = &req.edns {
        let mut e = Edns::new();
        e.set_max_payload(1232.min(edns.max_payload().max(512)));
        resp.set_edns(e);
    }
    if req.metadata.op_code != OpCode::Query {
        resp.metadata.response_code = ResponseCode::NotImp;
        return resp.to_vec().map_or(Reply::Drop, Reply::Bytes);
    }
    let [q] = req.queries.as_slice() else {
        resp.metadata.response_code = ResponseCode::FormErr;
        return resp.to_vec().map_or(Reply::Drop, Reply::Bytes);
    };
    let mut qname = q.name().to_ascii().to_ascii_lowercase();
    if !qname.ends_with('.') {
        qname.push('.');
    }
    let zone = dns.zone();
    let ttl = dns.config.ttl;
    let answer = zone.lookup(&qname, qtype(q.query_type()));
    if answer == Answer::Forward {
        return Reply::Forward;
    }
    resp.metadata.authoritative = true;
    let soa_owner = if qname.ends_with(".in-addr.arpa.") {
        "in-addr.arpa."
    } else {
        zone.apex()
    };
    match answer {
        Answer::Records(records) => {
            for (owner, data) in &records {
                resp.answers.extend(record(owner, ttl, data));
                if let Data::Srv(_, _, _, target) = data {
                    for ip in zone.addresses(target) {
                        resp.additionals.extend(record(target, ttl, &Data::A(ip)));
                    }
                }
            }
        }
        Answer::Soa => resp.answers.extend(soa(&zone, zone.apex(), ttl)),
        Answer::Ns => {
            if let (Some(apex), Some(ns)) =
                (name(zone.apex()), name(&format!("ns.dns.{}", zone.apex())))
            {
                resp.answers
                    .push(Record::from_rdata(apex, ttl, RData::NS(NS(ns))));
            }
        }
        Answer::NoData => resp.authorities.extend(soa(&zone, soa_owner, ttl)),
        Answer::NxDomain => {
            resp.metadata.response_code = ResponseCode::NXDomain;
            resp.authorities.extend(soa(&zone, soa_owner, ttl));
        }
        Answer::Forward => unreachable!("handled above"),
    }
    let Ok(bytes) = resp.to_vec() else {
        return Reply::Drop;
    };
    let limit = req.edns.as_ref().map_or(512, |e| e.max_payload().max(512)) as usize;
    if !tcp && bytes.len() > limit {
        return resp.truncate().to_vec().map_or(Reply::Drop, Reply::Bytes);
    }
    Reply::Bytes(bytes)
}

pub(super) fn answer_zone_only(dns: &ClusterDns, query: &[u8]) -> Option<Vec<u8>> {
    match answer_local(dns, query, false) {
        Reply::Bytes(b) => Some(b),
        _ => None,
    }
}
