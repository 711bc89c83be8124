//! Teleport's web API as `tsh` first meets it: `GET /webapi/ping` on the
//! proxy's public name, which answers without authentication with the
//! cluster's name and the proxy's version. The answer's shape is
//! `webclient.PingResponse` of gravitational/teleport
//! `api/client/webclient/webclient.go` (`server_version`, `cluster_name`,
//! `proxy`, `auth`, …); only the fields read here are named, the rest are
//! ignored.
//!
//! The name is connected to at an address the caller gives (the platform's
//! public address: the way the internet reaches it, whatever DNS says on
//! this machine), with the server name in TLS and the `Host` header, and
//! the certificate verified as any client would: the system's roots, plus
//! a CA the operator names (a staging ACME issuer).

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;

/// What `/webapi/ping` says, as far as `status` reads it.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Ping {
    /// The Teleport release the proxy runs, e.g. `18.2.1`.
    pub server_version: String,
    #[serde(default)]
    pub cluster_name: String,
}

#[derive(Debug, thiserror::Error)]
pub enum PingError {
    #[error("cannot set up the HTTPS client: {0}")]
    Setup(String),
    /// No TCP connection or no answer in time.
    #[error("{url} (at {addr}): {problem}")]
    Unreachable {
        url: String,
        addr: SocketAddr,
        problem: String,
    },
    /// It answered, and not as Teleport's proxy does.
    #[error("{url} (at {addr}): {problem}")]
    NotTeleport {
        url: String,
        addr: SocketAddr,
        problem: String,
    },
}

/// `GET https://{host}:{addr.port}/webapi/ping`, connecting to `addr`.
/// `extra_ca` (PEM) is trusted besides the system's roots.
pub fn ping(
    host: &str,
    addr: SocketAddr,
    extra_ca: Option<&[u8]>,
    timeout: Duration,
) -> Result<Ping, PingError> {
    let mut builder = reqwest::blocking::Client::builder()
        .user_agent(concat!("waddlec/", env!("CARGO_PKG_VERSION")))
        .resolve(host, addr)
        .connect_timeout(timeout)
        .timeout(timeout)
        .https_only(true)
        .redirect(reqwest::redirect::Policy::none());
    if let Some(pem) = extra_ca {
        let certificates = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| PingError::Setup(format!("the extra CA is not PEM: {e}")))?;
        builder = builder.tls_certs_merge(certificates);
    }
    let client = builder
        .build()
        .map_err(|e| PingError::Setup(e.to_string()))?;
    let url = if addr.port() == 443 {
        format!("https://{host}/webapi/ping")
    } else {
        format!("https://{host}:{}/webapi/ping", addr.port())
    };
    let response = client.get(&url).send().map_err(|e| {
        let problem = chain(&e);
        if e.is_connect() && !is_tls(&problem) || e.is_timeout() {
            PingError::Unreachable {
                url: url.clone(),
                addr,
                problem,
            }
        } else {
            PingError::NotTeleport {
                url: url.clone(),
                addr,
                problem,
            }
        }
    })?;
    let status = response.status();
    let not_teleport = |problem: String| PingError::NotTeleport {
        url: url.clone(),
        addr,
        problem,
    };
    let body = response
        .text()
        .map_err(|e| not_teleport(format!("reading the answer: {}", chain(&e))))?;
    if !status.is_success() {
        return Err(not_teleport(format!("HTTP {status}")));
    }
    serde_json::from_str(&body).map_err(|e| {
        not_teleport(format!(
            "the answer is not Teleport's ping (no server_version): {e}"
        ))
    })
}

/// A TLS failure (an untrusted or wrong certificate) reaches the server:
/// it is an answer, not an unreachable one.
fn is_tls(problem: &str) -> bool {
    problem.contains("certificate") || problem.contains("tls") || problem.contains("TLS")
}

fn chain(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text = format!("{text}: {cause}");
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As Teleport 18's proxy answers (fields beyond these ignored).
    #[test]
    fn the_ping_answer_is_read_for_its_version() {
        let ping: Ping = serde_json::from_str(
            r#"{"auth":{"type":"local","second_factor":"on"},"proxy":{"kube":{"enabled":true},
               "ssh":{"listen_addr":"[::]:3023"},"tls_routing_enabled":false},
               "server_version":"18.2.1","min_client_version":"17.0.0-aa",
               "cluster_name":"teleport.example.org","automatic_upgrades":false,
               "edition":"community","fips":false}"#,
        )
        .unwrap();
        assert_eq!(ping.server_version, "18.2.1");
        assert_eq!(ping.cluster_name, "teleport.example.org");
    }
}
