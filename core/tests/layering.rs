//! The core's layering rule, checked on its manifest: `waddlec-core` (and
//! the `waddle-images` toolkit under it) depend on no crate that talks to
//! the network, speaks TLS or gRPC, runs processes or reads the clock. Those
//! belong to the `waddlec` crate above; Cargo then keeps the core from
//! naming them at all.

use std::collections::BTreeSet;

/// Crates that would let the core act on the world.
const FORBIDDEN: &[&str] = &[
    // HTTP and TLS
    "reqwest",
    "hyper",
    "ureq",
    "rustls",
    "native-tls",
    "openssl",
    // gRPC and async runtimes
    "tonic",
    "prost",
    "tokio",
    "async-std",
    // processes
    "duct",
    "subprocess",
    "nix",
    // clocks
    "chrono",
    "humantime",
    // randomness (secrets are generated above the core)
    "rand",
    "getrandom",
    // the actor crate itself
    "waddlec",
];

fn dependencies(manifest: &str) -> BTreeSet<String> {
    let manifest: toml::Table = toml::from_str(manifest).expect("a Cargo.toml");
    manifest
        .get("dependencies")
        .and_then(toml::Value::as_table)
        .map(|deps| deps.keys().cloned().collect())
        .unwrap_or_default()
}

#[test]
fn the_core_and_the_image_toolkit_depend_on_nothing_that_acts() {
    for (name, manifest) in [
        ("core/Cargo.toml", include_str!("../Cargo.toml")),
        ("images/Cargo.toml", include_str!("../../images/Cargo.toml")),
    ] {
        let deps = dependencies(manifest);
        assert!(!deps.is_empty(), "{name} lists its dependencies");
        let bad: Vec<_> = deps
            .iter()
            .filter(|dep| FORBIDDEN.contains(&dep.as_str()))
            .collect();
        assert!(bad.is_empty(), "{name} depends on {bad:?}");
    }
}

#[test]
fn the_check_sees_a_forbidden_dependency() {
    let deps = dependencies("[dependencies]\nreqwest = \"0.13\"\nserde = \"1\"\n");
    assert!(deps.iter().any(|dep| FORBIDDEN.contains(&dep.as_str())));
}
