//! The Talos image path end to end against a local stand-in for the Image
//! Factory, on a blueprint with only the Talos cluster: the first deployable
//! build fetches the nocloud image of the cluster's schematic, pins its
//! sha256 in the lock file, decompresses it and converts it to qcow2 (the
//! same disk, as `qemu-img compare` sees it); later builds are cache hits,
//! `--locked` refuses what the lock does not pin, and a download that
//! differs from its pin is an error naming the artifact, both hashes and the
//! URL. Nothing here reaches the internet.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::support::file_server::FileServer;
use crate::support::sha256_hex;
use crate::support::talos_lab::SecretLab;
use crate::support::{require, run, text, valid_blueprints};

/// The blueprint's tables that are not the Talos cluster's.
pub const NOT_TALOS: &[&str] = &[
    "vm", "image", "edge", "forward", "teleport", "debian", "platform",
];

/// A small raw disk with data at both ends and a hole, and its xz.
fn fixture(dir: &Path) -> (Vec<u8>, Vec<u8>) {
    let mut raw = vec![0u8; 3 << 20];
    raw[..4096].fill(0xa5);
    let end = raw.len();
    raw[end - 512..].copy_from_slice(&[0x5a; 512]);
    let raw_path = dir.join("fixture.raw");
    fs::write(&raw_path, &raw).unwrap();
    let output = run(Command::new("xz").args(["-T1", "-k", "-c"]).arg(&raw_path));
    assert!(output.status.success(), "{}", text(&output.stderr));
    (raw, output.stdout)
}

#[test]
fn talos_image_is_fetched_pinned_cached_and_verified() {
    require("xz");
    require("qemu-img");
    let lab = SecretLab::edited(&valid_blueprints()[0], |document| {
        for table in NOT_TALOS {
            document.remove(*table);
        }
    });
    lab.init();
    let scratch = tempfile::tempdir().unwrap();
    let cache = scratch.path().join("cache");
    crate::support::seed_upstream(&lab.path("blueprint.toml"), &cache);
    let (raw, xz) = fixture(scratch.path());
    let id = "dc7b152cb3ea99b821fcb7340ce7168313ce393d663740b791c36f6e95fc8586";
    let image_path = format!("/image/{id}/v1.12.4/nocloud-amd64.raw.xz");
    let server = FileServer::start();
    server.serve(image_path.clone(), xz.clone()).serve(
        "POST /schematics",
        format!("{{\"id\":\"{id}\"}}").into_bytes(),
    );
    let build = |extra: &[&str]| {
        let mut args = vec![
            "build",
            "blueprint.toml",
            "--with-secrets",
            "--factory",
            &server.url,
        ];
        args.extend_from_slice(extra);
        run(crate::support::waddlec()
            .current_dir(lab.path(""))
            .env("WADDLE_TEST_GITHUB_CLIENT_SECRET", "x")
            .env("WADDLEC_CACHE_DIR", &cache)
            .args(&args))
    };

    // --locked with only the upstream manifests pinned: the image may not be fetched.
    let output = build(&["--locked"]);
    assert_eq!(output.status.code(), Some(5), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("not pinned"),
        "{}",
        text(&output.stderr)
    );
    assert!(server.requests().is_empty());

    // A factory that computes another ID for our schematic: nothing fetched.
    server.serve("POST /schematics", br#"{"id":"0123"}"#.to_vec());
    let output = build(&[]);
    assert_eq!(output.status.code(), Some(69), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("computed schematic ID 0123"));
    assert_eq!(server.requests(), ["POST /schematics"]);

    // First build: the schematic registered, then the image fetched from
    // its URL, pinned, converted.
    server.serve(
        "POST /schematics",
        format!("{{\"id\":\"{id}\"}}").into_bytes(),
    );
    let output = build(&[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(
        server.requests()[1..],
        ["POST /schematics".to_string(), image_path.clone()]
    );
    let lock = fs::read_to_string(lab.path("blueprint.lock")).unwrap();
    assert!(lock.contains(&sha256_hex(&xz)), "{lock}");
    assert!(lock.contains(&image_path), "{lock}");
    let images: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(lab.path("dist/images.json")).unwrap()).unwrap();
    let images = images.as_array().unwrap();
    assert_eq!(images.len(), 1, "one image for every node: {images:?}");
    let file = images[0]["file"].as_str().unwrap();
    assert_eq!(file, "talos-v1.12.4-dc7b152cb3ea.qcow2");
    assert_eq!(
        images[0]["vms"],
        serde_json::json!(["talos-cp1", "talos-cp2", "talos-cp3"])
    );
    let qcow2 = lab.path("dist/images").join(file);
    let bytes = fs::read(&qcow2).unwrap();
    assert_eq!(images[0]["sha256"], sha256_hex(&bytes));
    assert_eq!(images[0]["bytes"], bytes.len() as u64);
    assert!(bytes.len() < raw.len() / 2, "the hole is not stored");
    let raw_path = scratch.path().join("fixture.raw");
    let compare = run(Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "qcow2"])
        .arg(&raw_path)
        .arg(&qcow2));
    assert!(compare.status.success(), "{}", text(&compare.stdout));
    let check = run(Command::new("qemu-img").arg("check").arg(&qcow2));
    assert!(check.status.success(), "{}", text(&check.stdout));
    // The qm script boots every node from that file.
    let script = fs::read_to_string(lab.path("dist/host/create-vms.sh")).unwrap();
    assert_eq!(
        script
            .matches(&format!("import-from=local:import/{file}"))
            .count(),
        3
    );

    // Second build, --locked: a cache hit, no request, same tree.
    let before = crate::support::tree(&lab.path("dist"));
    let output = build(&["--locked"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(server.requests().len(), 3, "no new request");
    assert_eq!(crate::support::tree(&lab.path("dist")), before);

    // The factory now serves other bytes for the same URL: refused.
    fs::remove_dir_all(&cache).unwrap();
    crate::support::seed_upstream(&lab.path("blueprint.toml"), &cache);
    server.serve(image_path.clone(), fixture_other(&xz));
    let output = build(&[]);
    assert_eq!(output.status.code(), Some(5), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("does not match the lock file"), "{stderr}");
    assert!(
        stderr.contains(&sha256_hex(&xz)),
        "expected hash named: {stderr}"
    );
    assert!(stderr.contains(&image_path), "URL named: {stderr}");
}

fn fixture_other(xz: &[u8]) -> Vec<u8> {
    let mut other = xz.to_vec();
    other.extend_from_slice(b"tampered");
    other
}
