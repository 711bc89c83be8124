//! Connections that only look, for `waddlec status`: whether a TCP port
//! accepts a connection, and which certificate a TLS server presents for a
//! server name (SNI) — the way to tell which backend an SNI router handed
//! the connection to. Nothing is sent beyond a TLS handshake, and every
//! step is bounded by the caller's timeout.
//!
//! The certificate is recorded, not trusted: the handshake is cut after
//! the server's certificate (no chain or name is verified here), and the
//! caller compares the names it covers ([`certificate_names`]) with the
//! name asked for.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Why a connection was not made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// Nothing listens there (a TCP reset to the SYN).
    #[error("{addr}: connection refused")]
    Refused { addr: SocketAddr },
    /// No answer in time: down, filtered, or no route.
    #[error("{addr}: no answer within {seconds} s ({problem})")]
    NoAnswer {
        addr: SocketAddr,
        seconds: u64,
        problem: String,
    },
}

/// What a TLS server did with a ClientHello.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsAnswer {
    /// It presented this end-entity certificate (DER).
    Certificate(Vec<u8>),
    /// It accepted the connection and closed it (or answered with an
    /// alert) without presenting a certificate: how.
    Closed(String),
}

/// Connects to `addr`; refused and no answer are told apart.
pub fn tcp_connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ProbeError> {
    TcpStream::connect_timeout(&addr, timeout).map_err(|e| match e.kind() {
        std::io::ErrorKind::ConnectionRefused => ProbeError::Refused { addr },
        _ => ProbeError::NoAnswer {
            addr,
            seconds: timeout.as_secs(),
            problem: e.to_string(),
        },
    })
}

/// Sends a TLS ClientHello for `server_name` to `addr` and returns the
/// certificate the server presents, or how it refused to.
pub fn tls_certificate(
    addr: SocketAddr,
    server_name: &str,
    timeout: Duration,
) -> Result<TlsAnswer, ProbeError> {
    let mut stream = tcp_connect(addr, timeout)?;
    let no_answer = |problem: String| ProbeError::NoAnswer {
        addr,
        seconds: timeout.as_secs(),
        problem,
    };
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| no_answer(e.to_string()))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let seen = Arc::new(Mutex::new(None));
    let recorder = Recorder {
        seen: seen.clone(),
        provider: provider.clone(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| no_answer(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(recorder))
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_string())
        .map_err(|e| no_answer(format!("`{server_name}` is not a server name: {e}")))?;
    let mut connection = rustls::ClientConnection::new(Arc::new(config), name)
        .map_err(|e| no_answer(e.to_string()))?;
    let outcome = loop {
        if !connection.is_handshaking() {
            break Ok(());
        }
        match connection.complete_io(&mut stream) {
            Ok((0, 0)) => break Err("the server closed the connection".to_string()),
            Ok(_) => {}
            Err(e) => break Err(e.to_string()),
        }
        if seen.lock().map(|s| s.is_some()).unwrap_or(false) {
            break Ok(());
        }
    };
    // Best effort: the server learns we are done.
    connection.send_close_notify();
    let _ = connection.write_tls(&mut stream);
    let _ = stream.flush();
    let mut rest = [0u8; 1];
    let _ = stream.set_read_timeout(Some(Duration::from_millis(1)));
    let _ = stream.read(&mut rest);
    let certificate = seen.lock().ok().and_then(|mut s| s.take());
    match (certificate, outcome) {
        (Some(der), _) => Ok(TlsAnswer::Certificate(der)),
        (None, Ok(())) => Ok(TlsAnswer::Closed("no certificate".into())),
        (None, Err(problem)) if timed_out(&problem) => Err(no_answer(problem)),
        (None, Err(problem)) => Ok(TlsAnswer::Closed(problem)),
    }
}

fn timed_out(problem: &str) -> bool {
    problem.contains("timed out") || problem.contains("Resource temporarily unavailable")
}

/// The DNS names a certificate covers: its subjectAltName DNS entries, or
/// its subject's common name when it has none. `None` if the bytes are not
/// a certificate.
pub fn certificate_names(der: &[u8]) -> Option<Vec<String>> {
    use x509_parser::extensions::GeneralName;
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut names: Vec<String> = certificate
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        names = certificate
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok())
            .map(str::to_ascii_lowercase)
            .collect();
    }
    Some(names)
}

/// Whether a certificate name covers `host`, as RFC 6125 matches: exactly,
/// or a `*.` wildcard standing for one leftmost label.
pub fn name_covers(pattern: &str, host: &str) -> bool {
    let (pattern, host) = (pattern.to_ascii_lowercase(), host.to_ascii_lowercase());
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

/// Accepts any certificate and records the end entity's DER bytes; the
/// handshake's signatures are still verified.
#[derive(Debug)]
struct Recorder {
    seen: Arc<Mutex<Option<Vec<u8>>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ServerCertVerifier for Recorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Ok(mut slot) = self.seen.lock() {
            *slot = Some(end_entity.as_ref().to_vec());
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_stand_for_one_label_only() {
        assert!(name_covers("*.apps.example.org", "x.apps.example.org"));
        assert!(name_covers("teleport.example.org", "TELEPORT.example.org"));
        assert!(!name_covers("*.apps.example.org", "a.b.apps.example.org"));
        assert!(!name_covers("*.apps.example.org", "apps.example.org"));
        assert!(!name_covers(
            "teleport.example.org",
            "x.teleport.example.org"
        ));
    }

    #[test]
    fn a_certificate_names_its_alt_names() {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["a.example.org".into(), "*.b.example.org".into()])
                .unwrap();
        let certificate = params.self_signed(&key).unwrap();
        assert_eq!(
            certificate_names(certificate.der()).unwrap(),
            ["a.example.org", "*.b.example.org"]
        );
        assert_eq!(certificate_names(b"not a certificate"), None);
    }
}
