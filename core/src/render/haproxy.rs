//! `haproxy.cfg` for the edge VM: SNI routing in TCP mode, plain HTTP to one
//! backend, one backend per distinct destination, and per-route source
//! allow-lists (the edge sees real client addresses: the host's DNAT keeps
//! the source). With IPv6 (the edge VM has an `address6`) the
//! frontends bind IPv6 too, and an allow-list may name IPv6 networks.

use serde::Serialize;

use super::{RenderError, Templates};
use crate::artifact::Artifact;
use crate::model::{Endpoint, Model, SniHost, Vm};
use crate::plan::images::Role;

#[derive(Serialize)]
struct Route {
    acl: String,
    method: &'static str,
    pattern: String,
    backend: String,
    /// The networks admitted, space-separated; empty admits all.
    allow: String,
    /// `!route_0 !route_1 …`: no earlier route matched, so this one is
    /// the route haproxy uses.
    selected: String,
}

#[derive(Serialize)]
struct Backend {
    name: String,
    server: String,
    address: String,
    port: u16,
}

#[derive(Serialize)]
struct Http {
    backend: String,
}

#[derive(Serialize)]
struct Data<'a> {
    project: &'a str,
    /// The edge VM has an IPv6 address: bind IPv6 too (every IPv6 address
    /// of the VM, so a tentative address at boot cannot fail the bind).
    ipv6: bool,
    https_port: u16,
    http_port: u16,
    routes: Vec<Route>,
    any_route: String,
    http: Option<Http>,
    backends: Vec<Backend>,
}

fn backend_name(endpoint: &Endpoint) -> String {
    format!("be_{}_{}", endpoint.name.replace('-', "_"), endpoint.port)
}

/// What the edge VM's image needs: Debian's haproxy, started only once
/// cloud-init has written the config it may carry.
pub fn role(model: &Model, vm: &Vm) -> Role {
    match &model.edge {
        Some(edge) if edge.vm == vm.name => Role {
            packages: vec!["haproxy"],
            after_cloud_init: vec!["haproxy.service"],
            ..Role::default()
        },
        _ => Role::default(),
    }
}

pub fn render(templates: &Templates, model: &Model) -> Result<Vec<Artifact>, RenderError> {
    let Some(edge) = &model.edge else {
        return Ok(Vec::new());
    };
    let routes: Vec<Route> = edge
        .routes
        .iter()
        .enumerate()
        .map(|(i, route)| {
            let (method, pattern) = match &route.host {
                SniHost::Exact(host) => ("str", host.clone()),
                SniHost::Wildcard { suffix } => ("end", suffix.clone()),
            };
            let earlier: Vec<String> = (0..i).map(|j| format!("!route_{j}")).collect();
            Route {
                acl: format!("route_{i}"),
                method,
                pattern,
                backend: backend_name(&route.backend),
                allow: route
                    .allow
                    .iter()
                    .map(|net| net.to_string())
                    .collect::<Vec<_>>()
                    .join(" "),
                selected: [format!("route_{i}")]
                    .into_iter()
                    .chain(earlier)
                    .collect::<Vec<_>>()
                    .join(" "),
            }
        })
        .collect();
    let any_route = routes
        .iter()
        .map(|r| r.acl.as_str())
        .collect::<Vec<_>>()
        .join(" || ");
    let mut endpoints: Vec<&Endpoint> = edge
        .routes
        .iter()
        .map(|r| &r.backend)
        .chain(edge.http.as_ref())
        .collect();
    endpoints.sort_by_key(|e| backend_name(e));
    endpoints.dedup_by_key(|e| backend_name(e));
    let backends = endpoints
        .into_iter()
        .map(|e| Backend {
            name: backend_name(e),
            server: e.name.clone(),
            address: e.address.to_string(),
            port: e.port.0,
        })
        .collect();
    let data = Data {
        project: &model.project.name,
        ipv6: edge.address6.is_some(),
        https_port: edge.https_port.0,
        http_port: edge.http_port.0,
        routes,
        any_route,
        http: edge.http.as_ref().map(|e| Http {
            backend: backend_name(e),
        }),
        backends,
    };
    Ok(vec![Artifact::file(
        format!("vms/{}/haproxy.cfg", edge.vm),
        "haproxy-config",
        templates.render("haproxy.cfg", &data)?,
    )
    .for_guest(&edge.vm, "/etc/haproxy/haproxy.cfg", 0o644)])
}
