//! Small stand-in disk images for deploy tests: for every boot image the
//! plan (`host/images.json`) names, a 64 MiB qcow2 made by `qemu-img`,
//! listed in `images.json` as a baked build lists its images, so a deploy
//! uploads real qcow2 files in seconds instead of minutes of mmdebstrap.

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use super::{require, run, sha256_hex, text};

/// Writes the stand-in images into the deployable tree `dist`.
pub fn write(dist: &Path) {
    require("qemu-img");
    let plan: Value =
        serde_json::from_str(&fs::read_to_string(dist.join("host/images.json")).unwrap()).unwrap();
    fs::create_dir_all(dist.join("images")).unwrap();
    let mut listed: Vec<Value> = Vec::new();
    for vm in plan.as_array().unwrap() {
        let file = vm["boot"]["file"].as_str().unwrap();
        if listed.iter().any(|image| image["file"] == file) {
            continue;
        }
        let path = dist.join("images").join(file);
        let output = run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&path)
            .arg("64M"));
        assert!(output.status.success(), "{}", text(&output.stderr));
        let bytes = fs::read(&path).unwrap();
        listed.push(json!({
            "file": file,
            "vms": [vm["vm"]],
            "sha256": sha256_hex(&bytes),
            "bytes": bytes.len(),
            "inputs": [],
        }));
    }
    fs::write(
        dist.join("images.json"),
        serde_json::to_string_pretty(&listed).unwrap(),
    )
    .unwrap();
}
