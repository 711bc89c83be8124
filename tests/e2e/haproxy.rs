//! haproxy.cfg, checked by haproxy itself: `haproxy -c` for every shipped
//! blueprint, then the waddle config (and each route of the host-only
//! examples) running for real in a network namespace, with TLS ClientHellos
//! deciding where each name lands.

use std::fs;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use waddlec::model::{Model, SniHost};

use crate::support::netns::{Netns, Reaped};
use crate::support::{
    build, cluster_blueprints, host_only_blueprints, model, repo_root, require, run, text,
    valid_blueprints,
};

#[test]
fn every_rendered_haproxy_cfg_passes_haproxy_c() {
    require("haproxy");
    for blueprint in valid_blueprints()
        .into_iter()
        .chain(host_only_blueprints())
        .chain(cluster_blueprints())
    {
        let (_guard, out) = build(&blueprint);
        let configs: Vec<_> = fs::read_dir(out.join("vms"))
            .unwrap()
            .map(|e| e.unwrap().path().join("haproxy.cfg"))
            .filter(|p| p.exists())
            .collect();
        assert_eq!(configs.len(), 1, "{}: one edge VM", blueprint.display());
        for config in configs {
            let output = run(Command::new("haproxy").arg("-c").arg("-f").arg(&config));
            assert!(
                output.status.success(),
                "{}: haproxy -c failed:\n{}{}",
                config.display(),
                text(&output.stdout),
                text(&output.stderr)
            );
            assert!(
                !text(&output.stderr).contains("WARNING"),
                "haproxy warns:\n{}",
                text(&output.stderr)
            );
        }
    }
}

/// What the blueprint says should happen to a name: the route that claims it.
fn intended(model: &Model, sni: &str) -> Option<String> {
    let edge = model.edge.as_ref()?;
    let sni = sni.to_ascii_lowercase();
    edge.routes
        .iter()
        .find(|r| match &r.host {
            SniHost::Exact(host) => *host == sni,
            SniHost::Wildcard { suffix } => sni.ends_with(suffix.as_str()),
        })
        .map(|r| format!("{}:{}", r.backend.address, r.backend.port))
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The edge VM's haproxy running a rendered config in a namespace, with
/// every backend address listening behind it and recording what reaches it.
struct EdgeLab {
    ns: Netns,
    _internal: Netns,
    log: std::path::PathBuf,
    lab: std::path::PathBuf,
    seen: usize,
    _sinks: Reaped,
    _haproxy: Reaped,
}

impl EdgeLab {
    fn start(model: &Model, out: &std::path::Path, dir: &std::path::Path) -> EdgeLab {
        let edge = model.edge.as_ref().expect("the blueprint has an edge");
        let config = out.join(format!("vms/{}/haproxy.cfg", edge.vm));
        // Two hosts joined by a veth pair: the edge VM (haproxy on its own
        // address) and the internal network holding every backend address.
        let ns = Netns::new("edge");
        let internal = Netns::new("back");
        let nic = model
            .vm(&edge.vm)
            .and_then(|vm| vm.nics.first())
            .expect("edge VM has a NIC");
        let edge_nic = nic.address;
        ns.sh(&format!("ip link add v0 type veth peer name v1 netns {} && ip addr add {edge_nic} dev v0 && ip link set v0 up", internal.name));
        // Its IPv6 address too, usable at once (no duplicate address
        // detection), for probes over IPv6.
        if let Some(address6) = nic.address6 {
            ns.sh(&format!("ip -6 addr add {address6} dev v0 nodad"));
        }
        let mut sinks: Vec<String> = edge
            .routes
            .iter()
            .map(|r| &r.backend)
            .chain(edge.http.as_ref())
            .map(|e| format!("{}:{}", e.address, e.port))
            .collect();
        sinks.sort();
        sinks.dedup();
        let mut addresses: Vec<&str> = sinks
            .iter()
            .map(|s| s.rsplit_once(':').unwrap().0)
            .collect();
        addresses.dedup();
        for address in addresses {
            internal.sh(&format!(
                "ip addr add {address}/{} dev v1",
                edge_nic.prefix_len()
            ));
        }
        internal.sh("ip link set v1 up");
        ns.sh("mkdir -p /run/haproxy");
        let log = dir.join("connections.log");
        fs::write(&log, "").unwrap();
        let lab = repo_root().join("tests/support/sni_lab.py");
        let sinks_process = Reaped(
            Command::new("ip")
                .args(["netns", "exec", &internal.name, "python3"])
                .arg(&lab)
                .arg("sinks")
                .arg(&log)
                .args(&sinks)
                .stdout(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let haproxy = Reaped(
            Command::new("ip")
                .args(["netns", "exec", &ns.name, "haproxy", "-db", "-f"])
                .arg(&config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        wait_for("haproxy", || {
            // The HTTP port only has a frontend with `[edge.http]`.
            ns.listens(edge.https_port.0) && (edge.http.is_none() || ns.listens(edge.http_port.0))
        });
        for sink in &sinks {
            let port: u16 = sink.rsplit_once(':').unwrap().1.parse().unwrap();
            wait_for("backends", || internal.listens(port));
        }
        EdgeLab {
            ns,
            _internal: internal,
            log,
            lab,
            seen: 0,
            _sinks: sinks_process,
            _haproxy: haproxy,
        }
    }

    /// Runs one `sni_lab.py` probe in the edge's namespace; returns the
    /// backend it reached, if any.
    fn probe(&mut self, args: &str) -> Option<String> {
        self.ns
            .sh(&format!("python3 {} {args}", self.lab.display()));
        std::thread::sleep(Duration::from_millis(100));
        let lines: Vec<String> = text(&fs::read(&self.log).unwrap())
            .lines()
            .map(String::from)
            .collect();
        let new = lines[self.seen..].to_vec();
        self.seen = lines.len();
        assert!(new.len() <= 1, "one probe reached {new:?}");
        new.into_iter().next()
    }
}

#[test]
fn sni_routing_sends_each_name_where_the_blueprint_says_and_drops_the_rest() {
    require("haproxy");
    require("python3");
    let blueprint = &valid_blueprints()[0];
    let model = model(blueprint);
    let edge = model.edge.as_ref().expect("waddle has an edge");
    let domain = &model.project.domain;
    let (guard, out) = build(blueprint);
    let mut lab = EdgeLab::start(&model, &out, guard.path());
    let mut probe = |args: &str| lab.probe(args);

    let names = [
        format!("teleport.{domain}"),
        format!("proxmox.{domain}"),
        format!("TELEPORT.{}", domain.to_uppercase()),
        format!("x.apps.{domain}"),
        format!("a.b.apps.{domain}"),
        format!("apps.{domain}"),
        format!("evilapps.{domain}"),
        format!("apps.{domain}.evil.org"),
        format!("x.apps.{domain}.evil.org"),
        format!("unknown.{domain}"),
        "example.net".to_string(),
    ];
    let mut expected_any = 0;
    for name in &names {
        let expected = intended(&model, name);
        expected_any += usize::from(expected.is_some());
        let reached = probe(&format!("tls 127.0.0.1 {} {name}", edge.https_port));
        assert_eq!(reached, expected, "SNI `{name}`");
    }
    assert!(expected_any >= 5, "the probe list exercises the routes");
    for lookalike in [
        format!("apps.{domain}"),
        format!("evilapps.{domain}"),
        format!("apps.{domain}.evil.org"),
    ] {
        assert_eq!(
            intended(&model, &lookalike),
            None,
            "`{lookalike}` must not match `*.apps.{domain}`"
        );
    }
    assert_eq!(
        probe(&format!("tls 127.0.0.1 {}", edge.https_port)),
        None,
        "no SNI is dropped"
    );
    assert_eq!(
        probe(&format!("http 127.0.0.1 {}", edge.https_port)),
        None,
        "plain HTTP on the TLS port is dropped"
    );
    let http = edge
        .http
        .as_ref()
        .map(|e| format!("{}:{}", e.address, e.port));
    assert_eq!(
        probe(&format!("http 127.0.0.1 {}", edge.http_port)),
        http,
        "plain HTTP goes to the HTTP backend"
    );
}

/// The host-only examples' routes, each name probed: a route to a service
/// an ordinary VM declares (`www` → `web:443`) lands there like Teleport's.
/// Where the edge VM has an IPv6 address (`services.toml`), each name is
/// probed over IPv6 too, to that address: HAProxy's IPv6 bind routes it to
/// the same (IPv4) backend.
#[test]
fn every_route_of_the_host_only_examples_reaches_its_backend() {
    require("haproxy");
    require("python3");
    let mut to_ordinary_vms = 0;
    let mut over_ipv6 = 0;
    for blueprint in host_only_blueprints() {
        let model = model(&blueprint);
        let edge = model.edge.as_ref().expect("the example has an edge");
        let (guard, out) = build(&blueprint);
        let mut lab = EdgeLab::start(&model, &out, guard.path());
        for route in &edge.routes {
            let name = match &route.host {
                SniHost::Exact(host) => host.clone(),
                SniHost::Wildcard { suffix } => format!("x{suffix}"),
            };
            let reached = lab.probe(&format!("tls 127.0.0.1 {} {name}", edge.https_port));
            let backend = Some(format!("{}:{}", route.backend.address, route.backend.port));
            assert_eq!(reached, backend, "{}: SNI `{name}`", blueprint.display());
            if let Some(address6) = edge.address6 {
                let reached = lab.probe(&format!("tls {address6} {} {name}", edge.https_port));
                assert_eq!(
                    reached,
                    backend,
                    "{}: SNI `{name}` over IPv6",
                    blueprint.display()
                );
                over_ipv6 += 1;
            }
            let ordinary = route.backend.name != edge.vm
                && model
                    .teleport
                    .as_ref()
                    .is_none_or(|t| t.vm != route.backend.name);
            to_ordinary_vms += usize::from(ordinary);
        }
    }
    assert!(
        to_ordinary_vms > 0,
        "some example routes a name to a service an ordinary VM declares"
    );
    assert!(over_ipv6 > 0, "some example's edge is dual stack");
}

/// A route's allow-list, enforced where the real client address is seen:
/// an admitted source reaches the backend, any other is closed, and a
/// rejected name never falls through to a broader route that also matches.
#[test]
fn a_route_s_allow_list_admits_only_its_sources_and_never_falls_through() {
    require("haproxy");
    require("python3");
    let dir = tempfile::tempdir().unwrap();
    let mut document: toml::Table = fs::read_to_string(&valid_blueprints()[0])
        .unwrap()
        .parse()
        .unwrap();
    let edge_address = "10.10.0.3";
    let routes = document["edge"]["route"].as_array_mut().unwrap();
    let mut admin = toml::Table::new();
    admin.insert("sni".into(), "admin.apps.waddle.social".into());
    admin.insert("to".into(), "teleport:3080".into());
    // Only the edge's own address: probes from it are admitted, probes
    // from 127.0.0.1 are not.
    admin.insert(
        "allow".into(),
        toml::Value::Array(vec![format!("{edge_address}/32").into()]),
    );
    routes.push(admin.into());
    let blueprint = dir.path().join("allow.toml");
    fs::write(&blueprint, toml::to_string(&document).unwrap()).unwrap();
    let model = model(&blueprint);
    let edge = model.edge.as_ref().unwrap();
    let nic = model.vm(&edge.vm).unwrap().nics[0]
        .address
        .addr()
        .to_string();
    assert_eq!(nic, edge_address);
    let (_guard, out) = build(&blueprint);
    let mut lab = EdgeLab::start(&model, &out, dir.path());
    let https = edge.https_port;
    let teleport = "10.10.0.2:3080".to_string();
    let gateway = "10.10.0.30:443".to_string();
    assert_eq!(
        lab.probe(&format!("tls {nic} {https} admin.apps.waddle.social")),
        Some(teleport.clone())
    );
    assert_eq!(
        lab.probe(&format!("tls 127.0.0.1 {https} admin.apps.waddle.social")),
        None,
        "a source outside the allow-list is closed, not sent to *.apps"
    );
    // Routes without a list admit everyone, from either source.
    assert_eq!(
        lab.probe(&format!("tls 127.0.0.1 {https} x.apps.waddle.social")),
        Some(gateway.clone())
    );
    assert_eq!(
        lab.probe(&format!("tls {nic} {https} x.apps.waddle.social")),
        Some(gateway)
    );
    assert_eq!(
        lab.probe(&format!("tls 127.0.0.1 {https} teleport.waddle.social")),
        Some(teleport)
    );
}

/// An IPv6 network in an allow-list: `services.toml`'s `www` route limited
/// to the edge's own IPv6 address, so a probe to that address (whose
/// source it is) reaches the web VM, and probes from `::1` and
/// `127.0.0.1` are closed.
#[test]
fn an_ipv6_allow_list_admits_only_its_sources() {
    require("haproxy");
    require("python3");
    let dir = tempfile::tempdir().unwrap();
    let mut document: toml::Table = fs::read_to_string(&host_only_blueprints()[1])
        .unwrap()
        .parse()
        .unwrap();
    let edge6 = "fd60:6060:6060::10";
    let routes = document["edge"]["route"].as_array_mut().unwrap();
    let www = routes
        .iter_mut()
        .find(|r| r["to"].as_str() == Some("web:443"))
        .expect("services.toml routes www to web:443");
    www.as_table_mut().unwrap().insert(
        "allow".into(),
        toml::Value::Array(vec![format!("{edge6}/128").into()]),
    );
    let blueprint = dir.path().join("allow6.toml");
    fs::write(&blueprint, toml::to_string(&document).unwrap()).unwrap();
    let model = model(&blueprint);
    let edge = model.edge.as_ref().unwrap();
    assert_eq!(edge.address6, Some(edge6.parse().unwrap()));
    let (_guard, out) = build(&blueprint);
    let mut lab = EdgeLab::start(&model, &out, dir.path());
    let https = edge.https_port;
    let web = Some("10.60.0.30:443".to_string());
    let name = "www.post.example.net";
    assert_eq!(lab.probe(&format!("tls {edge6} {https} {name}")), web);
    for source in ["::1", "127.0.0.1"] {
        assert_eq!(
            lab.probe(&format!("tls {source} {https} {name}")),
            None,
            "{source} is outside the allow-list"
        );
        // The same source is served by a route without a list.
        assert_eq!(
            lab.probe(&format!("tls {source} {https} teleport.post.example.net")),
            Some("10.60.0.20:3080".to_string()),
            "{source} reaches the edge"
        );
    }
}
