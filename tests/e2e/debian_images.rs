//! The deployable build's images, end to end, as `waddlec build
//! --with-secrets` makes them from the bundled blueprint: the HAProxy and
//! Teleport VMs' Debian images (mmdebstrap from Debian's mirror — the only
//! upstream reached — with a fixture Teleport release tarball) and the Talos
//! image (a fixture), both served by a local stand-in.
//!
//! Each image is checked by the tools that consume it: `qemu-img check` and
//! `info` (qcow2 v3, no backing or data file: what Proxmox accepts), then the
//! root filesystem read back with `debugfs` from the GPT partition `sfdisk`
//! finds: the rendered files, the Teleport binaries and units, no seed (every
//! Debian seed carries its VM's SSH host key, so it is only on the seed
//! disk) and no secret anywhere in the disk. Rebaking from
//! the same base gives the same bytes, the review tree plans the same image
//! names, and a build with nothing changed does no image work (its wall time
//! is printed, not asserted). A machine without the image tools gets one
//! error naming all of them.
//!
//! The Debian bases are kept between runs in the target directory
//! (`debian-bases/`), keyed by their inputs like waddlec's own cache.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

use crate::support::file_server::FileServer;
use crate::support::image_lab::{
    fixture_binary, teleport_tarball, ImageLab, TELEPORT_TARBALL_PATH,
};
use crate::support::sha256_hex;
use crate::support::talos_lab::{SecretLab, GITHUB_SECRET, GITHUB_SECRET_ENV};
use crate::support::{require, run, seed_upstream, text, valid_blueprints, waddlec};

/// The root partition of a qcow2 image, as a raw ext4 file.
fn root_filesystem(qcow2: &Path, work: &Path) -> PathBuf {
    let raw = work.join(format!(
        "{}.raw",
        qcow2.file_stem().unwrap().to_string_lossy()
    ));
    let output = run(Command::new("qemu-img")
        .args(["convert", "-f", "qcow2", "-O", "raw"])
        .arg(qcow2)
        .arg(&raw));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = run(Command::new("sfdisk").arg("--json").arg(&raw));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let table: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let table = &table["partitiontable"];
    assert_eq!(table["label"], "gpt", "{table}");
    let partitions = table["partitions"].as_array().unwrap();
    assert_eq!(partitions.len(), 2, "ESP and root: {table}");
    // The root partition type for x86-64 (Discoverable Partitions).
    let root = partitions
        .iter()
        .find(|p| p["type"] == "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709")
        .unwrap_or_else(|| panic!("no x86-64 root partition: {table}"));
    let ext4 = work.join(format!(
        "{}.ext4",
        qcow2.file_stem().unwrap().to_string_lossy()
    ));
    let output = run(Command::new("dd")
        .arg(format!("if={}", raw.display()))
        .arg(format!("of={}", ext4.display()))
        .arg("bs=512")
        .arg(format!("skip={}", root["start"]))
        .arg(format!("count={}", root["size"]))
        .arg("conv=sparse")
        .arg("status=none"));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let fsck = run(Command::new("e2fsck").args(["-fn"]).arg(&ext4));
    assert!(
        fsck.status.success(),
        "e2fsck: {}{}",
        text(&fsck.stdout),
        text(&fsck.stderr)
    );
    // The raw disk is scanned for secrets by the caller, then removed.
    ext4
}

fn debugfs(ext4: &Path, request: &str) -> Output {
    run(Command::new("debugfs").arg("-R").arg(request).arg(ext4))
}

fn file_in(ext4: &Path, path: &str) -> Vec<u8> {
    let output = debugfs(ext4, &format!("cat {path}"));
    assert!(
        output.status.success() && !text(&output.stderr).contains("not found"),
        "{path}: {}",
        text(&output.stderr)
    );
    output.stdout
}

fn exists_in(ext4: &Path, path: &str) -> bool {
    !text(&debugfs(ext4, &format!("stat {path}")).stderr).contains("not found")
}

/// `stat` output of `path` (mode, link target).
fn stat_in(ext4: &Path, path: &str) -> String {
    text(&debugfs(ext4, &format!("stat {path}")).stdout)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// True if the file at `path` holds `needle` (grep reads a large sparse
/// disk far faster than a scan in this unoptimised test binary).
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

#[test]
fn a_machine_without_the_image_tools_is_told_all_it_lacks() {
    let lab = ImageLab::new();
    let empty = tempfile::tempdir().unwrap();
    let output = lab.build(&[], Some(&empty.path().display().to_string()));
    assert_eq!(output.status.code(), Some(69), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    for needle in ["mmdebstrap", "mke2fs", "--no-images"] {
        assert!(stderr.contains(needle), "`{needle}` not named:\n{stderr}");
    }
    assert!(
        lab.server.requests().is_empty(),
        "nothing fetched before the check"
    );
    // --no-images builds everything else on the same machine.
    let output = lab.build(&["--no-images"], Some(&empty.path().display().to_string()));
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(lab.lab.path("dist/vms/haproxy/seed.img").is_file());
}

#[test]
fn debian_and_talos_images_are_baked_reproducibly_without_secrets() {
    for tool in [
        "mmdebstrap",
        "qemu-img",
        "sfdisk",
        "debugfs",
        "e2fsck",
        "xz",
        "dd",
    ] {
        require(tool);
    }
    let lab = ImageLab::new();
    let work = tempfile::tempdir().unwrap();

    let started = Instant::now();
    let output = lab.build_sharing_bases(&["-v"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    eprintln!("first deployable build: {:?}", started.elapsed());
    let stderr = text(&output.stderr);
    assert!(
        !stderr.contains(GITHUB_SECRET),
        "secret in the build's log: {stderr}"
    );

    // images.json: one entry per distinct image, its hash and size true.
    let images = lab.images();
    let files: Vec<&str> = images
        .iter()
        .map(|image| image["file"].as_str().unwrap())
        .collect();
    assert_eq!(files.len(), 3, "{images:?}");
    assert!(
        files[0].starts_with("debian-12-haproxy-haproxy-"),
        "{files:?}"
    );
    assert!(
        files[1].starts_with("debian-12-teleport-teleport-"),
        "{files:?}"
    );
    assert_eq!(files[2], "talos-v1.12.4-dc7b152cb3ea.qcow2");
    let lock = fs::read_to_string(lab.lab.path("blueprint.lock")).unwrap();
    assert!(lock.contains(TELEPORT_TARBALL_PATH), "{lock}");
    assert!(lock.contains(&sha256_hex(&teleport_tarball())), "{lock}");
    for image in &images {
        let path = lab
            .lab
            .path("dist/images")
            .join(image["file"].as_str().unwrap());
        let bytes = fs::read(&path).unwrap();
        assert_eq!(image["sha256"], sha256_hex(&bytes), "{path:?}");
        assert_eq!(image["bytes"], bytes.len() as u64);
        let check = run(Command::new("qemu-img").arg("check").arg(&path));
        assert!(check.status.success(), "{}", text(&check.stdout));
        let info = run(Command::new("qemu-img")
            .args(["info", "--output=json"])
            .arg(&path));
        let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
        assert_eq!(info["format"], "qcow2");
        assert_eq!(info["format-specific"]["data"]["compat"], "1.1");
        assert!(info.get("backing-filename").is_none(), "{info}");
        assert!(
            info["format-specific"]["data"].get("data-file").is_none(),
            "{info}"
        );
    }

    // The qm script boots each VM from its image and its seed disk.
    let script = fs::read_to_string(lab.lab.path("dist/host/create-vms.sh")).unwrap();
    for file in &files {
        assert!(
            script.contains(&format!("import-from=local:import/{file}")),
            "{file}"
        );
    }
    // The review tree plans the same Debian images: they hold no secrets.
    let review = run(waddlec().current_dir(lab.lab.path("")).args([
        "build",
        "blueprint.toml",
        "--out",
        "review",
    ]));
    assert!(review.status.success(), "{}", text(&review.stderr));
    let review_script = fs::read_to_string(lab.lab.path("review/host/create-vms.sh")).unwrap();
    for file in &files[..2] {
        assert!(
            review_script.contains(file),
            "{file} not in the review plan"
        );
    }

    // HAProxy: Debian's haproxy, the rendered config; its seed carries the
    // VM's SSH host key, so it arrives only on the seed disk.
    let dist = |path: &str| fs::read(lab.lab.path("dist").join(path)).unwrap();
    let haproxy = root_filesystem(&lab.lab.path("dist/images").join(files[0]), work.path());
    assert_eq!(
        file_in(&haproxy, "/etc/haproxy/haproxy.cfg"),
        dist("vms/haproxy/haproxy.cfg")
    );
    assert!(exists_in(&haproxy, "/usr/sbin/haproxy"));
    for name in ["user-data", "meta-data", "network-config"] {
        assert!(!exists_in(
            &haproxy,
            &format!("/var/lib/cloud/seed/nocloud/{name}")
        ));
    }
    let host_keys = lab.lab.path("secrets/cluster.ssh-host-keys.yaml");
    let host_keys =
        crate::support::talos_lab::yaml_documents(&fs::read_to_string(host_keys).unwrap())
            .remove(0);
    let host_key = |vm: &str| {
        let private = host_keys["hosts"][vm]["private"].as_str().unwrap();
        // One line of the key's base64 body is enough to spot it anywhere.
        private.lines().nth(1).unwrap().to_string()
    };
    for vm in ["haproxy", "teleport"] {
        assert!(
            contains(
                &dist(&format!("vms/{vm}/seed.img")),
                host_key(vm).as_bytes()
            ),
            "{vm}'s seed disk carries its host key"
        );
    }
    assert!(!exists_in(&haproxy, "/usr/local/bin/teleport"));

    // Teleport: the release's binaries, the units enabled, no secret.
    let teleport = root_filesystem(&lab.lab.path("dist/images").join(files[1]), work.path());
    for name in ["teleport", "tctl", "tsh"] {
        let path = format!("/usr/local/bin/{name}");
        assert_eq!(file_in(&teleport, &path), fixture_binary(name));
        assert!(
            stat_in(&teleport, &path).contains("Mode:  0755"),
            "{}",
            stat_in(&teleport, &path)
        );
    }
    assert!(!exists_in(&teleport, "/usr/local/bin/README"));
    assert!(!exists_in(&teleport, "/usr/sbin/haproxy"));
    for unit in ["teleport.service", "teleport-resources.service"] {
        assert_eq!(
            file_in(&teleport, &format!("/etc/systemd/system/{unit}")),
            dist(&format!("vms/teleport/{unit}"))
        );
        let link = stat_in(
            &teleport,
            &format!("/etc/systemd/system/multi-user.target.wants/{unit}"),
        );
        assert!(
            link.contains(&format!("\"/etc/systemd/system/{unit}\"")),
            "{unit} not enabled: {link}"
        );
    }
    assert_eq!(
        file_in(&teleport, "/etc/teleport.yaml"),
        dist("vms/teleport/teleport.yaml")
    );
    // sshd is hardened by the image itself, not only by the seed.
    assert_eq!(
        file_in(&teleport, "/etc/ssh/sshd_config.d/50-waddlec.conf"),
        dist("vms/teleport/sshd-hardening.conf")
    );
    // The resources carry the GitHub secret: they, and the seed holding
    // them, arrive only on the seed disk.
    assert!(!exists_in(&teleport, "/etc/teleport/resources.yaml"));
    assert!(!exists_in(
        &teleport,
        "/var/lib/cloud/seed/nocloud/user-data"
    ));
    assert!(contains(
        &dist("vms/teleport/seed.img"),
        GITHUB_SECRET.as_bytes()
    ));
    for image in &files {
        let path = lab.lab.path("dist/images").join(image);
        for secret in [
            GITHUB_SECRET.to_string(),
            host_key("haproxy"),
            host_key("teleport"),
        ] {
            assert!(!file_contains(&path, &secret), "{image} holds a secret");
        }
    }
    for file in &files[..2] {
        let raw = work.path().join(format!(
            "{}.raw",
            Path::new(file).file_stem().unwrap().to_string_lossy()
        ));
        for secret in [
            GITHUB_SECRET.to_string(),
            host_key("haproxy"),
            host_key("teleport"),
        ] {
            assert!(!file_contains(&raw, &secret), "{file} (raw) holds a secret");
        }
    }

    // Nothing changed: no image work, the same tree.
    let receipts: Vec<u64> = files
        .iter()
        .map(|file| {
            fs::metadata(lab.cache.join("images").join(file))
                .unwrap()
                .ino()
        })
        .collect();
    let before = crate::support::tree(&lab.lab.path("dist"));
    let started = Instant::now();
    let output = lab.build(&["--locked"], None);
    assert!(output.status.success(), "{}", text(&output.stderr));
    eprintln!("no-op deployable build: {:?}", started.elapsed());
    assert_eq!(crate::support::tree(&lab.lab.path("dist")), before);
    let after: Vec<u64> = files
        .iter()
        .map(|file| {
            fs::metadata(lab.cache.join("images").join(file))
                .unwrap()
                .ino()
        })
        .collect();
    assert_eq!(receipts, after, "an image was rebaked");

    // Rebaked from the same bases and downloads: the same bytes.
    fs::remove_dir_all(lab.cache.join("images")).unwrap();
    let output = lab.build(&["--locked"], None);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(lab.images(), images, "rebaked images differ");
}

#[test]
fn the_debian_snapshot_is_pinned_by_its_inrelease() {
    require("mmdebstrap");
    let lab = SecretLab::new(&valid_blueprints()[0]);
    lab.init();
    let scratch = tempfile::tempdir().unwrap();
    seed_upstream(&lab.path("blueprint.toml"), scratch.path());
    let server = FileServer::start();
    let in_release = "/archive/debian/20251120T000000Z/dists/bookworm/InRelease";
    let build = |extra: &[&str]| {
        run(waddlec()
            .current_dir(lab.path(""))
            .env(GITHUB_SECRET_ENV, GITHUB_SECRET)
            .env("WADDLEC_CACHE_DIR", scratch.path())
            .args(["build", "blueprint.toml", "--with-secrets"])
            .args(["--factory", &server.url])
            .args(["--teleport-cdn", &server.url])
            .args(["--debian-snapshots", &server.url])
            .args(extra))
    };

    let output = build(&["--locked"]);
    assert_eq!(output.status.code(), Some(5), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("debian snapshot 20251120T000000Z") && stderr.contains("not pinned"),
        "{stderr}"
    );

    // Pinned on first use; apt is then pointed at the snapshot (whose
    // stand-in has no packages, so mmdebstrap fails, naming itself).
    server.serve(in_release, b"-----BEGIN PGP SIGNED MESSAGE-----\n".to_vec());
    let output = build(&[]);
    assert_eq!(output.status.code(), Some(69), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("mmdebstrap"));
    let lock = fs::read_to_string(lab.path("blueprint.lock")).unwrap();
    assert!(lock.contains(in_release), "{lock}");
    assert!(
        lock.contains(&sha256_hex(b"-----BEGIN PGP SIGNED MESSAGE-----\n")),
        "{lock}"
    );
    let requests = server.requests();
    for suite in [
        "/archive/debian/20251120T000000Z/dists/bookworm-updates/",
        "/archive/debian-security/20251120T000000Z/dists/bookworm-security/",
    ] {
        assert!(
            requests.iter().any(|r| r.starts_with(suite)),
            "apt never asked for {suite}: {requests:?}"
        );
    }

    // The snapshot now serves another InRelease: refused before any work.
    server.serve(
        in_release,
        b"-----BEGIN PGP SIGNED MESSAGE-----\nother\n".to_vec(),
    );
    fs::remove_dir_all(scratch.path().join("sha256")).unwrap();
    seed_upstream(&lab.path("blueprint.toml"), scratch.path());
    let output = build(&[]);
    assert_eq!(output.status.code(), Some(5), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("debian snapshot") && stderr.contains("does not match the lock file"),
        "{stderr}"
    );
}

#[test]
fn two_full_builds_from_empty_caches_give_the_same_images() {
    require("mmdebstrap");
    let digests = |lab: &ImageLab| -> Vec<(String, String)> {
        let output = lab.build(&[], None);
        assert!(output.status.success(), "{}", text(&output.stderr));
        lab.images()
            .iter()
            .map(|image| {
                (
                    image["file"].as_str().unwrap().to_string(),
                    image["sha256"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    // Each lab has its own empty cache: mmdebstrap runs twice. (Both read the
    // live mirror, so a Debian update landing between them would differ;
    // production builds read a fixed snapshot.)
    let first = digests(&ImageLab::new());
    let second = digests(&ImageLab::new());
    assert_eq!(first, second);
}
