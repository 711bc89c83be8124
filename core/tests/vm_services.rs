//! Services on ordinary VMs, through the core's public pipeline: the
//! example (`blueprints/examples/services.toml`) resolves its UDP forward
//! to the WireGuard VM and its SNI route to the web VM; a protocol is part
//! of what a VM declares (tcp/N and udp/N are two services, udp/22 is not
//! SSH's); and a forward whose protocol the target does not serve is
//! refused with the fix that fits it. What is refused and where is pinned
//! by the invalid corpus (`tests/blueprints/invalid/130-…` to `135-…`).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test here

mod common;

use std::net::Ipv4Addr;

use waddlec_core::blueprint::SourceFile;
use waddlec_core::diagnostics::Diagnostic;
use waddlec_core::model::{Model, Protocol, SniHost};

fn example() -> SourceFile {
    common::example("services.toml")
}

/// The example with `from` replaced by `to` (exactly once).
fn edited(from: &str, to: &str) -> SourceFile {
    common::edited(example(), from, to)
}

fn model(source: &SourceFile) -> Model {
    common::checked(source).0
}

fn findings(source: &SourceFile) -> Vec<Diagnostic> {
    common::findings(source)
}

const WIREGUARD_FORWARD: &str = "port = 51820\nprotocol = \"udp\"\nto = \"wireguard:51820\"";

#[test]
fn forwards_and_routes_reach_declared_services() {
    let model = model(&example());
    let udp: Vec<_> = model
        .forwards
        .iter()
        .filter(|f| f.protocol == Protocol::Udp)
        .collect();
    assert_eq!(udp.len(), 1, "{:?}", model.forwards);
    assert_eq!(udp[0].port.0, 51820);
    assert_eq!(udp[0].to.name, "wireguard");
    assert_eq!(udp[0].to.address, Ipv4Addr::new(10, 60, 0, 32));
    let edge = model.edge.as_ref().unwrap();
    let www = edge
        .routes
        .iter()
        .find(|r| r.host == SniHost::Exact("www.post.example.net".into()))
        .unwrap();
    assert_eq!(
        (www.backend.name.as_str(), www.backend.port.0),
        ("web", 443)
    );
}

#[test]
fn a_port_is_a_service_per_protocol() {
    // tcp/51820 beside udp/51820 is a second service, and a TCP forward
    // may then reach it; udp/22 is not SSH's port.
    let source = edited(
        "services = [{ port = 51820, protocol = \"udp\" }]",
        "services = [{ port = 51820, protocol = \"udp\" }, { port = 51820 }, { port = 22, protocol = \"udp\" }]",
    );
    let source = SourceFile {
        text: source.text.replace(
            WIREGUARD_FORWARD,
            &format!("{WIREGUARD_FORWARD}\n\n[[forward]]\nport = 51820\nto = \"wireguard:51820\"\n\n[[forward]]\nport = 2222\nprotocol = \"udp\"\nto = \"wireguard:22\""),
        ),
        ..source
    };
    let model = model(&source);
    let to_wireguard: Vec<_> = model
        .forwards
        .iter()
        .filter(|f| f.to.name == "wireguard")
        .map(|f| (f.protocol, f.port.0, f.to.port.0))
        .collect();
    assert_eq!(
        to_wireguard,
        [
            (Protocol::Udp, 51820, 51820),
            (Protocol::Tcp, 51820, 51820),
            (Protocol::Udp, 2222, 22)
        ]
    );
}

#[test]
fn a_forward_of_the_wrong_protocol_is_told_how_to_fix_it() {
    // TCP to a UDP-only service: the fix is the forward's protocol, or a
    // TCP service declared beside it.
    let found = findings(&edited(
        WIREGUARD_FORWARD,
        "port = 51820\nto = \"wireguard:51820\"",
    ));
    let [finding] = &found[..] else {
        panic!("one finding: {found:?}")
    };
    assert_eq!(finding.rule.code, "E0111");
    assert_eq!(
        finding.message,
        "this forward is TCP, but port 51820 of VM `wireguard` serves UDP only"
    );
    let help = finding.help.as_deref().unwrap();
    assert!(help.contains("tcp/22, udp/51820"), "{help}");
    assert!(
        help.contains("add `{ port = 51820 }` to the `services`"),
        "{help}"
    );
    assert!(
        help.contains("add `protocol = \"udp\"` to the forward"),
        "{help}"
    );
}
