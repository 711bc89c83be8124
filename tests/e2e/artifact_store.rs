//! The artifact store (`[artifacts]`) against a real S3 server (`s3s-fs`,
//! see `support::s3_server`): CI bakes and pushes, a machine that cannot
//! bake (no mmdebstrap, no mke2fs on its PATH) builds the same tree from
//! the store alone, byte for byte; nothing holding a secret is ever
//! pushed; an object that is not what its receipt says is refused.
//! Then the operator's tree deployed: with the store the host pulls the
//! images and only seeds cross this machine; with the store emptied, an
//! empty host gets them uploaded (the bytes of each are printed for
//! `compiler/benches/artifact-store.sh`). `deploy`'s pull in detail is in
//! `deploy_store.rs`.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::support::image_lab::ImageLab;
use crate::support::pve_sim::{PveSim, TOKEN, UPLINK};
use crate::support::s3_server::S3Server;
use crate::support::talos_lab::{yaml_documents, GITHUB_SECRET, GITHUB_SECRET_ENV};
use crate::support::{require, run, seed_upstream, sha256_hex, text, waddlec};

const TOKEN_ENV: &str = "WADDLE_TEST_PVE_TOKEN";

/// A phase's wall time, for `compiler/benches/artifact-store.sh`.
fn measure(phase: &str, started: Instant) {
    eprintln!("store: {phase} {:.1} s", started.elapsed().as_secs_f64());
}

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
    let sim = PveSim::start_with(&["--bridge", UPLINK, "--bridge", "vmbr1=10.10.0.1/24"]);
    let lab = ImageLab::with(|document| {
        document.insert("artifacts".into(), s3.table("waddle").into());
        let host = document["host"].as_table_mut().unwrap();
        host.insert("api_fingerprint".into(), sim.fingerprint.clone().into());
        host.insert("api_token".into(), format!("env:{TOKEN_ENV}").into());
    });

    // CI: bake what the store lacks, push it.
    let started = Instant::now();
    let output = lab.build_sharing_bases(&["--push"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    measure("bake-and-push", started);
    let baked = image_files(&lab.lab.path("dist/images"));
    assert!(baked.len() >= 2, "{baked:?}");
    let image_bytes: u64 = baked
        .iter()
        .map(|(file, _)| {
            fs::metadata(lab.lab.path("dist/images").join(file))
                .unwrap()
                .len()
        })
        .sum();
    eprintln!("store: image-bytes {image_bytes}");

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
    let started = Instant::now();
    let output = lab.build_in(
        &operator_cache,
        &["--out", "dist-operator"],
        Some(&no_tools),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    measure("pull-into-empty-cache", started);
    assert_eq!(image_files(&lab.lab.path("dist-operator/images")), baked);
    assert_eq!(
        fs::read(lab.lab.path("dist-operator/images.json")).unwrap(),
        fs::read(lab.lab.path("dist/images.json")).unwrap()
    );
    assert_eq!(lab.server.requests().len(), fetched, "no upstream fetched");

    // An object that is not what its receipt says is refused, and nothing
    // of it is kept.
    let good = fs::read(&object).unwrap();
    let mut bytes = good.clone();
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
    fs::write(&object, good).unwrap();

    // Deploy from the operator's tree: the host pulls every image from the
    // store, and only the seeds cross this machine.
    let deploy = |sim: &PveSim| {
        let mut command = waddlec();
        command
            .current_dir(lab.lab.path(""))
            .env(GITHUB_SECRET_ENV, GITHUB_SECRET)
            .env(TOKEN_ENV, TOKEN)
            .env("WADDLEC_CACHE_DIR", &operator_cache)
            .args([
                "deploy",
                "blueprint.toml",
                "--skip-preflight",
                "--tree",
                "dist-operator",
                "--api",
                &sim.url,
            ])
            .args(["--skip-host", "--yes", "--agent-timeout", "20"]);
        S3Server::env(&mut command);
        let output = run(&mut command);
        assert!(
            output.status.success(),
            "{}{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        let uploaded: u64 = sim
            .requests()
            .iter()
            .filter_map(|request| request["upload_bytes"].as_u64())
            .sum();
        let pulled = sim
            .requests()
            .iter()
            .filter(|request| {
                request["path"]
                    .as_str()
                    .unwrap_or("")
                    .ends_with("/download-url")
            })
            .count();
        (uploaded, pulled)
    };
    let (uploaded, pulled) = deploy(&sim);
    assert_eq!(pulled, baked.len());
    assert!(uploaded < image_bytes / 100, "{uploaded} bytes uploaded");
    eprintln!("store: deploy-bytes-with-store {uploaded}");

    // Without the images in the store, an empty host gets them uploaded.
    let bare = PveSim::start_with(&["--bridge", UPLINK, "--bridge", "vmbr1=10.10.0.1/24"]);
    let blueprint = fs::read_to_string(lab.lab.path("blueprint.toml")).unwrap();
    fs::write(
        lab.lab.path("blueprint.toml"),
        blueprint.replace(&sim.fingerprint, &bare.fingerprint),
    )
    .unwrap();
    let output = lab.build_in(
        &operator_cache,
        &["--out", "dist-operator"],
        Some(&no_tools),
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    for key in s3.keys() {
        fs::remove_file(s3.object(&key)).unwrap();
    }
    let (uploaded, pulled) = deploy(&bare);
    assert_eq!(pulled, 0);
    assert!(uploaded > image_bytes, "{uploaded} bytes uploaded");
    eprintln!("store: deploy-bytes-without-store {uploaded}");
}
