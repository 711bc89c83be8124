//! The edge layer, from this machine through the public address, as the
//! internet reaches the platform:
//!
//! - each SNI route: a TLS ClientHello for its name (a wildcard route's: a
//!   name under it) is answered with a certificate that covers the name —
//!   a route to the wrong backend answers with that backend's certificate,
//!   for other names. The certificate's chain is not judged here (the
//!   Teleport layer verifies one for real); a backend that holds a
//!   certificate for another's name is not told apart;
//! - a name no route claims is refused (haproxy closes without a
//!   certificate);
//! - each TCP `[[forward]]`: its port accepts a connection. UDP forwards
//!   are not checked (nothing answers an empty datagram).

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::checks::Check;
use crate::model::{Model, Protocol, SniHost};
use crate::net::probe::{self, ProbeError, TlsAnswer};

const LAYER: &str = "edge";
/// The first label of the name asked for under a wildcard route, and of
/// the name no route claims.
const PROBE_LABEL: &str = "waddlec-status";

/// The edge's checks, and, when the public HTTPS port did not answer at
/// all, why (what is behind the edge is unreachable too).
pub fn check(model: &Model, public: IpAddr, timeout: Duration) -> (Vec<Check>, Option<String>) {
    let Some(edge) = &model.edge else {
        return (Vec::new(), None);
    };
    let https = SocketAddr::new(public, edge.https_port.0);
    let mut checks = Vec::new();
    let mut down = None;
    for route in &edge.routes {
        let (label, name) = match &route.host {
            SniHost::Exact(host) => (host.clone(), host.clone()),
            SniHost::Wildcard { suffix } => {
                (format!("*{suffix}"), format!("{PROBE_LABEL}{suffix}"))
            }
        };
        let backend = format!(
            "{} ({}:{})",
            route.backend.name, route.backend.address, route.backend.port
        );
        let check_name = format!("route {label} → {}", route.backend.name);
        let check = match probe::tls_certificate(https, &name, timeout) {
            Ok(TlsAnswer::Certificate(der)) => {
                let names = probe::certificate_names(&der).unwrap_or_default();
                if names.iter().any(|n| probe::name_covers(n, &name)) {
                    Check::pass(
                        LAYER,
                        check_name,
                        format!("{name} answered with a certificate for {}", names.join(", ")),
                    )
                } else {
                    Check::failed(
                        LAYER,
                        check_name,
                        format!(
                            "{name} was answered with a certificate for {}: not the backend the blueprint names, {backend}",
                            if names.is_empty() { "no name".to_string() } else { names.join(", ") }
                        ),
                        "compare the edge VM's haproxy.cfg with the build's (`waddlec deploy` replaces a VM whose seed changed), and check that the backend serves a certificate for the name",
                    )
                }
            }
            Ok(TlsAnswer::Closed(how)) => Check::failed(
                LAYER,
                check_name,
                format!("{name}: the edge closed the connection without a certificate ({how})"),
                format!("the edge has no route for the name, or {backend} does not answer TLS: look at haproxy's log on the edge VM"),
            ),
            Err(e) => {
                if down.is_none() && matches!(e, ProbeError::NoAnswer { .. } | ProbeError::Refused { .. }) {
                    down = Some(e.to_string());
                }
                unreachable(check_name, &e)
            }
        };
        checks.push(check);
    }

    let unknown = format!("{PROBE_LABEL}.invalid");
    let name = "an unknown name is refused".to_string();
    checks.push(match probe::tls_certificate(https, &unknown, timeout) {
        Ok(TlsAnswer::Closed(_)) => Check::pass(LAYER, name, format!("{unknown}: closed")),
        Ok(TlsAnswer::Certificate(der)) => Check::failed(
            LAYER,
            name,
            format!(
                "{unknown} was answered with a certificate for {}",
                probe::certificate_names(&der).unwrap_or_default().join(", ")
            ),
            "the edge sends names no route claims somewhere: its haproxy.cfg is not the build's (run `waddlec deploy`)",
        ),
        Err(e) => unreachable(name, &e),
    });

    for forward in &model.forwards {
        if forward.protocol != Protocol::Tcp {
            continue;
        }
        let addr = SocketAddr::new(public, forward.port.0);
        let name = format!(
            "forward tcp/{} → {}:{}",
            forward.port.0, forward.to.name, forward.to.port
        );
        checks.push(match probe::tcp_connect(addr, timeout) {
            Ok(_) => Check::pass(LAYER, name, format!("{addr} accepts connections")),
            Err(e @ ProbeError::Refused { .. }) => Check::failed(
                LAYER,
                name,
                format!("{e}: the forward or its target is not there"),
                format!(
                    "check the host layer's chains, and that {} listens on {}",
                    forward.to.name, forward.to.port
                ),
            ),
            Err(e) => unreachable(name, &e),
        });
    }
    (checks, down)
}

fn unreachable(name: String, error: &ProbeError) -> Check {
    Check::unreachable(
        LAYER,
        name,
        error.to_string(),
        "check the host is up, your network reaches its public address, and the host layer's chains",
    )
}
