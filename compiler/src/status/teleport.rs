//! The Teleport layer: the proxy's `/webapi/ping` through the edge at the
//! public address, under Teleport's public name, with the certificate
//! verified as `tsh` would (`net::teleport_web`), and the version it
//! reports (`server_version`) the one `versions.teleport` pins.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::checks::Check;
use crate::model::Model;
use crate::net::teleport_web::{self, PingError};

const LAYER: &str = "teleport";

/// `edge_down`: why the edge's HTTPS port did not answer, if it did not.
pub fn check(
    model: &Model,
    public: IpAddr,
    extra_ca: Option<&[u8]>,
    timeout: Duration,
    edge_down: Option<&str>,
) -> Vec<Check> {
    let (Some(teleport), Some(edge)) = (&model.teleport, &model.edge) else {
        return Vec::new();
    };
    let name = format!("{} /webapi/ping", teleport.public_host);
    if let Some(why) = edge_down {
        return vec![Check::unreachable(
            LAYER,
            name,
            format!("behind the edge, which did not answer: {why}"),
            "see the edge layer",
        )];
    }
    let addr = SocketAddr::new(public, edge.https_port.0);
    let check = match teleport_web::ping(&teleport.public_host, addr, extra_ca, timeout) {
        Ok(ping) if ping.server_version.trim_start_matches('v') == teleport.version.trim_start_matches('v') => {
            Check::pass(
                LAYER,
                name,
                format!("Teleport {} (cluster {})", ping.server_version, ping.cluster_name),
            )
        }
        Ok(ping) => Check::failed(
            LAYER,
            name,
            format!(
                "runs Teleport {}; versions.teleport is {}",
                ping.server_version, teleport.version
            ),
            "rebuild and deploy: the Teleport VM's image carries the pinned release (`waddlec deploy --allow-replace` for it)",
        ),
        Err(e @ PingError::Unreachable { .. }) => Check::unreachable(
            LAYER,
            name,
            e.to_string(),
            "see the edge layer's route for Teleport's name",
        ),
        Err(e) => Check::failed(
            LAYER,
            name,
            e.to_string(),
            "the edge's route for Teleport's name reaches something else, or Teleport's certificate is not trusted (a staging ACME issuer: --edge-ca)",
        ),
    };
    vec![check]
}
