//! One DNS question: the IPv4 addresses (`A` records) or the IPv6 ones
//! (`AAAA`, RFC 3596) of a name, asked of
//! one server over UDP — a recursive resolver, the first `nameserver` of
//! `/etc/resolv.conf` unless the caller names one (`preflight --resolver`,
//! which tests point at a local stand-in), or an RFC 2136 provider's
//! authoritative server, asked about its zone.
//!
//! Hand-written, about a hundred lines, after RFC 1035 §4.1 (header,
//! question, resource records; name compression §4.1.4) instead of a
//! resolver crate: preflight asks one kind of question and must tell three
//! answers apart that `getaddrinfo` folds into one error — the name does
//! not exist (NXDOMAIN, RCODE 3), it exists without a record of the type, or the
//! resolver did not answer in time. `hickory-resolver` would bring an
//! async runtime's worth of crates for that, and `hickory-proto` alone
//! (the message codec, 0.24) still depends on async-trait and the futures
//! crates.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Duration;

/// The records asked for: an address family's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordType {
    /// IPv4 addresses, TYPE 1 (RFC 1035).
    A,
    /// IPv6 addresses, TYPE 28 (RFC 3596).
    Aaaa,
}

impl RecordType {
    fn code(self) -> u16 {
        match self {
            RecordType::A => 1,
            RecordType::Aaaa => 28,
        }
    }

    /// As a zone file spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordType::A => "A",
            RecordType::Aaaa => "AAAA",
        }
    }
}

/// What the resolver said of a name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Its records of the type asked (CNAMEs followed by the resolver), in
    /// answer order.
    Addresses(Vec<IpAddr>),
    /// NXDOMAIN: no such name.
    NoSuchName,
    /// The name exists but has no record of the type asked.
    NoAddress,
}

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("the resolver {server} did not answer within {seconds}s")]
    Timeout { server: SocketAddr, seconds: u64 },
    #[error("cannot ask the resolver {server}: {problem}")]
    Io { server: SocketAddr, problem: String },
    #[error("the resolver {server} failed to answer for {name} (RCODE {rcode})")]
    ServerFailure {
        server: SocketAddr,
        name: String,
        rcode: u8,
    },
    #[error("no resolver: {0}")]
    NoResolver(String),
}

/// The first `nameserver` of `/etc/resolv.conf`, port 53.
pub fn system_resolver() -> Result<SocketAddr, DnsError> {
    let text = std::fs::read_to_string("/etc/resolv.conf")
        .map_err(|e| DnsError::NoResolver(format!("cannot read /etc/resolv.conf: {e}")))?;
    text.lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .find_map(|rest| rest.trim().parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .ok_or_else(|| DnsError::NoResolver("/etc/resolv.conf names no nameserver".into()))
}

/// Asks `server` for the `kind` records of `name`, waiting at most `timeout`.
pub fn lookup(
    server: SocketAddr,
    name: &str,
    kind: RecordType,
    timeout: Duration,
) -> Result<Answer, DnsError> {
    let io = |e: std::io::Error| DnsError::Io {
        server,
        problem: e.to_string(),
    };
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
            .parse()
            .map_err(|_| DnsError::NoResolver("bind".into()))?
    } else {
        "[::]:0"
            .parse()
            .map_err(|_| DnsError::NoResolver("bind".into()))?
    };
    let socket = UdpSocket::bind(bind).map_err(io)?;
    socket.connect(server).map_err(io)?;
    socket.set_read_timeout(Some(timeout)).map_err(io)?;
    let id: u16 = rand::random();
    socket.send(&query(id, name, kind)).map_err(io)?;
    let mut buffer = [0u8; 1500];
    loop {
        let length = match socket.recv(&mut buffer) {
            Ok(length) => length,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Err(DnsError::Timeout {
                    server,
                    seconds: timeout.as_secs(),
                })
            }
            Err(e) => return Err(io(e)),
        };
        // An answer to another question (or garbage) is not ours: wait on.
        if let Some(answer) = parse(&buffer[..length], id, kind) {
            return match answer {
                (0, addresses) if addresses.is_empty() => Ok(Answer::NoAddress),
                (0, addresses) => Ok(Answer::Addresses(addresses)),
                (3, _) => Ok(Answer::NoSuchName),
                (rcode, _) => Err(DnsError::ServerFailure {
                    server,
                    name: name.to_string(),
                    rcode,
                }),
            };
        }
    }
}

/// A standard query (RD set) for `name`, type `kind`, class IN.
fn query(id: u16, name: &str, kind: RecordType) -> Vec<u8> {
    let mut message = Vec::with_capacity(32 + name.len());
    message.extend_from_slice(&id.to_be_bytes());
    message.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        message.push(label.len().min(63) as u8);
        message.extend_from_slice(&label.as_bytes()[..label.len().min(63)]);
    }
    message.push(0);
    message.extend_from_slice(&kind.code().to_be_bytes());
    message.extend_from_slice(&[0, 1]);
    message
}

/// The RCODE and the `kind` records of a response to query `id`; `None`
/// if it is not one.
fn parse(message: &[u8], id: u16, kind: RecordType) -> Option<(u8, Vec<IpAddr>)> {
    if message.len() < 12 || message[..2] != id.to_be_bytes() || message[2] & 0x80 == 0 {
        return None;
    }
    let rcode = message[3] & 0x0f;
    let count = |at: usize| u16::from_be_bytes([message[at], message[at + 1]]);
    let (questions, answers) = (count(4), count(6));
    let mut at = 12;
    for _ in 0..questions {
        at = skip_name(message, at)? + 4;
    }
    let mut addresses = Vec::new();
    for _ in 0..answers {
        at = skip_name(message, at)?;
        let header = message.get(at..at + 10)?;
        let record = u16::from_be_bytes([header[0], header[1]]);
        let length = usize::from(u16::from_be_bytes([header[8], header[9]]));
        let data = message.get(at + 10..at + 10 + length)?;
        if record == kind.code() {
            if let Ok(v4) = <[u8; 4]>::try_from(data) {
                addresses.push(IpAddr::V4(Ipv4Addr::from(v4)));
            } else if let Ok(v6) = <[u8; 16]>::try_from(data) {
                addresses.push(IpAddr::V6(Ipv6Addr::from(v6)));
            }
        }
        at += 10 + length;
    }
    Some((rcode, addresses))
}

/// Where the name starting at `at` ends: labels up to a zero, or a
/// two-byte compression pointer (RFC 1035 §4.1.4).
fn skip_name(message: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let length = *message.get(at)?;
        match length {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_asks_for_a_records_of_each_label() {
        let message = query(0x1234, "www.example.org.", RecordType::A);
        assert_eq!(&message[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(
            &message[12..],
            b"\x03www\x07example\x03org\x00\x00\x01\x00\x01"
        );
        let message = query(0x1234, "www.example.org.", RecordType::Aaaa);
        assert_eq!(
            &message[12..],
            b"\x03www\x07example\x03org\x00\x00\x1c\x00\x01"
        );
    }

    #[test]
    fn an_answer_with_a_compressed_name_gives_its_address() {
        let mut answer = query(7, "a.example", RecordType::A);
        answer[2] = 0x81;
        answer[3] = 0x80;
        answer[7] = 1;
        answer.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 203, 0, 113, 10]);
        assert_eq!(
            parse(&answer, 7, RecordType::A).map(|(_, a)| a),
            Some(vec![IpAddr::V4(Ipv4Addr::new(203, 0, 113, 10))])
        );
        assert!(
            parse(&answer, 8, RecordType::A).is_none(),
            "another query's answer"
        );
        assert_eq!(
            parse(&answer, 7, RecordType::Aaaa).map(|(_, a)| a),
            Some(vec![]),
            "an A record is no answer to an AAAA question"
        );
    }

    #[test]
    fn an_aaaa_answer_gives_its_ipv6_address() {
        let mut answer = query(9, "a.example", RecordType::Aaaa);
        answer[2] = 0x81;
        answer[3] = 0x80;
        answer[7] = 1;
        let address: Ipv6Addr = "2001:db8::10".parse().unwrap();
        answer.extend_from_slice(&[0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 60, 0, 16]);
        answer.extend_from_slice(&address.octets());
        assert_eq!(
            parse(&answer, 9, RecordType::Aaaa).map(|(_, a)| a),
            Some(vec![IpAddr::V6(address)])
        );
    }
}
