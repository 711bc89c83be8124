//! Services on ordinary VMs, through the core's public pipeline: the
//! example (`blueprints/examples/services.toml`) resolves its UDP forward
//! to the WireGuard VM and its SNI route to the web VM; a protocol is part
//! of what a VM declares (tcp/N and udp/N are two services, udp/22 is not
//! SSH's); and a forward whose protocol the target does not serve is
//! refused with the fix that fits it. What is refused and where is pinned
//! by the invalid corpus (`tests/blueprints/invalid/130-…` to `135-…`).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test here

use std::net::Ipv4Addr;
use std::path::PathBuf;

use waddlec_core::blueprint::{Date, SourceFile};
use waddlec_core::diagnostics::{report, Diagnostic};
use waddlec_core::model::{Model, Protocol, SniHost};
use waddlec_core::{check, CompileError};

const TODAY: Date = Date {
    year: 2000,
    month: 1,
    day: 1,
};

fn example() -> SourceFile {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    SourceFile {
        name: "blueprints/examples/services.toml".into(),
        text: std::fs::read_to_string(root.join("blueprints/examples/services.toml")).unwrap(),
    }
}

/// The example with `from` replaced by `to` (exactly once).
fn edited(from: &str, to: &str) -> SourceFile {
    let mut source = example();
    assert_eq!(source.text.matches(from).count(), 1, "`{from}` is unique");
    source.text = source.text.replace(from, to);
    source
}

fn model(source: &SourceFile) -> Model {
    match check(source, TODAY) {
        Ok(checked) => checked.model,
        Err(CompileError::Invalid(diagnostics)) => {
            panic!(
                "{}",
                report::render_text(source, &diagnostics.sorted(), false)
            )
        }
        Err(other) => panic!("{other}"),
    }
}

fn findings(source: &SourceFile) -> Vec<Diagnostic> {
    match check(source, TODAY) {
        Err(CompileError::Invalid(diagnostics)) => diagnostics.sorted(),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("{} compiled", source.name),
    }
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
