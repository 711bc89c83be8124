//! The artifact store (`[artifacts]`) against a real S3 server (`s3s-fs`,
//! see `support::s3_server`): CI bakes and pushes, a machine that cannot
//! bake (no mmdebstrap, no mke2fs on its PATH) builds the same tree from
//! the store alone, byte for byte; nothing holding a secret is ever
//! pushed; an object that is not what its receipt says is refused.
//! `deploy`'s pull through Proxmox is in `deploy_store.rs`.

use std::fs;
use std::path::Path;
use std::process::Command;

use crate::support::image_lab::ImageLab;
use crate::support::s3_server::S3Server;
use crate::support::talos_lab::{yaml_documents, GITHUB_SECRET};
use crate::support::{require, run, seed_upstream, sha256_hex, text};

/// True if the file holds `needle` (grep reads a large sparse image far
/// faster than a scan in this unoptimised test binary).
fn file_contains(path: &Path, needle: &str) -> bool {
    let output = run(Command::new("grep")
        .args(["-q", "-a", "-F", "--", needle])
        .arg(path));
    match output.status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!("grep {}: {}", path.display(), text(&output.stderr)),
    }
}

/// `(file, sha256)` of every image file in `dir`.
fn image_files(dir: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().to_string(),
                sha256_hex(&fs::read(&path).unwrap()),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn ci_pushes_and_a_machine_that_cannot_bake_pulls_the_same_images() {
    for tool in [
        "mmdebstrap",
        "qemu-img",
        "sfdisk",
        "debugfs",
        "e2fsck",
        "xz",
    ] {
        require(tool);
    }
    let s3 = S3Server::start();
    let lab = ImageLab::with(|document| {
        document.insert("artifacts".into(), s3.table("waddle").into());
    });

    // CI: bake what the store lacks, push it.
    let output = lab.build_sharing_bases(&["--push"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let baked = image_files(&lab.lab.path("dist/images"));
    assert!(baked.len() >= 2, "{baked:?}");

    // The store holds exactly each image and its receipt: no seed disk,
    // nothing else of the deployable tree.
    let mut expected: Vec<String> = baked
        .iter()
        .flat_map(|(file, _)| {
            [
                format!("waddle/images/{file}"),
                format!("waddle/images/{file}.json"),
            ]
        })
        .collect();
    expected.sort();
    assert_eq!(s3.keys(), expected);
    let seeds: Vec<String> = fs::read_dir(lab.lab.path("dist/vms"))
        .unwrap()
        .map(|vm| sha256_hex(&fs::read(vm.unwrap().path().join("seed.img")).unwrap()))
        .collect();
    let mut secrets = vec![GITHUB_SECRET.to_string()];
    let host_keys = lab.lab.path("secrets/cluster.ssh-host-keys.yaml");
    let host_keys = yaml_documents(&fs::read_to_string(host_keys).unwrap()).remove(0);
    for vm in ["haproxy", "teleport"] {
        let private = host_keys["hosts"][vm]["private"].as_str().unwrap();
        // One line of the key's base64 body is enough to spot it anywhere.
        secrets.push(private.lines().nth(1).unwrap().to_string());
    }
    for key in s3.keys() {
        let path = s3.object(&key);
        assert!(
            !seeds.contains(&sha256_hex(&fs::read(&path).unwrap())),
            "{key} is a seed disk"
        );
        for secret in &secrets {
            assert!(!file_contains(&path, secret), "{key} holds a secret");
        }
    }
    for (file, sha256) in &baked {
        let receipt: serde_json::Value = serde_json::from_slice(
            &fs::read(s3.object(&format!("waddle/images/{file}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(receipt["sha256"], sha256.as_str(), "{file}");
    }

    // A second push uploads nothing.
    let object = s3.object(&format!("waddle/images/{}", baked[0].0));
    let written = fs::metadata(&object).unwrap().modified().unwrap();
    let output = lab.build(&["--push"], None);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(fs::metadata(&object).unwrap().modified().unwrap(), written);

    // An operator's machine: another cache, no image tools, no upstream
    // image fetched — the images come from the store, verified.
    let no_tools = tempfile::tempdir().unwrap();
    let no_tools = no_tools.path().display().to_string();
    let operator = tempfile::tempdir().unwrap();
    let operator_cache = operator.path().join("cache");
    seed_upstream(&lab.lab.path("blueprint.toml"), &operator_cache);
    let fetched = lab.server.requests().len();
    let output = lab.build_in(
        &operator_cache,
        &["--out", "dist-operator"],
        Some(&no_tools),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(image_files(&lab.lab.path("dist-operator/images")), baked);
    assert_eq!(
        fs::read(lab.lab.path("dist-operator/images.json")).unwrap(),
        fs::read(lab.lab.path("dist/images.json")).unwrap()
    );
    assert_eq!(lab.server.requests().len(), fetched, "no upstream fetched");

    // An object that is not what its receipt says is refused, and nothing
    // of it is kept.
    let mut bytes = fs::read(&object).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    fs::write(&object, bytes).unwrap();
    let other = tempfile::tempdir().unwrap();
    let other_cache = other.path().join("cache");
    seed_upstream(&lab.lab.path("blueprint.toml"), &other_cache);
    let output = lab.build_in(&other_cache, &["--out", "dist-other"], Some(&no_tools));
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains(&format!("waddle/images/{}", baked[0].0))
            && stderr.contains("does not match its receipt")
            && stderr.contains(&baked[0].1),
        "{stderr}"
    );
    assert!(!other_cache.join("images").join(&baked[0].0).exists());
    assert!(!lab.lab.path("dist-other").exists());
}
