//! Everything the end-to-end tests share: here, paths (the repository, its
//! blueprints, the schemas under `tests/data/schemas/`), running waddlec,
//! building blueprints into temp dirs, requiring tools, shell helpers,
//! hashing and the upstream-manifest stand-ins; in the submodules, the labs
//! and the stand-ins for the programs waddlec talks to. Tests take their
//! fixtures from here, never from another test file.

pub mod apid;
pub mod cluster_lab;
pub mod deploy_lab;
pub mod file_server;
pub mod git_server;
pub mod image_lab;
pub mod k8s_schemas;
pub mod kube_api;
pub mod machine_proto;
pub mod netns;
pub mod op_stand_in;
pub mod pve_firewall;
pub mod pve_sim;
pub mod s3_server;
pub mod ssh_host;
pub mod stand_in_images;
pub mod stand_in_server;
pub mod talos_cluster;
pub mod talos_lab;
pub mod tsh;

use std::collections::BTreeMap;
use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("compiler/ has a parent")
        .to_path_buf()
}

/// A schema the tests check artifacts against, by its path under
/// `tests/data/schemas/` (where each comes from: `tests/data/SOURCES.toml`).
pub fn schema_file(relative: &str) -> PathBuf {
    repo_root().join("tests/data/schemas").join(relative)
}

/// The shipped blueprints without a Talos cluster: a host and Debian VMs
/// only, validated by everything that reads the host's and VMs' artifacts.
pub fn host_only_blueprints() -> Vec<PathBuf> {
    let root = repo_root();
    vec![
        root.join("blueprints/examples/host-only.toml"),
        root.join("blueprints/examples/services.toml"),
    ]
}

/// The shipped blueprints of a Proxmox cluster: each host's files under
/// `hosts/NODE/`, where a lone host's are under `host/`.
pub fn cluster_blueprints() -> Vec<PathBuf> {
    vec![repo_root().join("blueprints/examples/three-hosts.toml")]
}

/// Each host's directory of a built tree: `host/` for a lone host, each
/// `hosts/NODE/` for the hosts of a cluster (sorted).
pub fn host_dirs(out: &Path) -> Vec<PathBuf> {
    let hosts = out.join("hosts");
    if !hosts.is_dir() {
        return vec![out.join("host")];
    }
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&hosts)
        .expect("hosts/ is readable")
        .map(|entry| entry.expect("a hosts/ entry").path())
        .filter(|path| path.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Every valid blueprint shipped in the repository with a Talos cluster
/// and a platform.
pub fn valid_blueprints() -> Vec<PathBuf> {
    let root = repo_root();
    vec![
        root.join("blueprints/waddle.toml"),
        root.join("blueprints/examples/lab.toml"),
    ]
}

pub fn waddlec() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_waddlec"));
    // The operator's own widening of where secrets are read from never
    // reaches a test unless the test sets it.
    command
        .env("NO_COLOR", "1")
        .env_remove("WADDLEC_TODAY")
        .env_remove("WADDLEC_SECRET_DIRS");
    command
}

pub fn run(command: &mut Command) -> Output {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    output
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Builds `blueprint` into a fresh temp dir; returns (tempdir guard, out dir).
pub fn build(blueprint: &Path) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let output = run(waddlec().arg("build").arg(blueprint).arg("--out").arg(&out));
    assert!(
        output.status.success(),
        "build of {} failed:\n{}",
        blueprint.display(),
        text(&output.stderr)
    );
    (dir, out)
}

/// Fails the test with an install hint when a tool is missing.
pub fn require(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "`{tool}` is not installed; run tests/run-all.sh, which installs the test dependencies"
    );
}

/// Runs a shell command line, panicking with its output if it fails.
pub fn sh(script: &str) -> String {
    let output = run(Command::new("bash").arg("-c").arg(script));
    assert!(
        output.status.success(),
        "`{script}` failed:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A port on `ip` nobody listens on.
pub fn free_addr(ip: &str) -> SocketAddr {
    TcpListener::bind((ip, 0)).unwrap().local_addr().unwrap()
}

/// The paths (relative to `out`) of a tree's artifacts of `kind`, as its
/// `manifest.json` lists them.
pub fn artifacts(out: &Path, kind: &str) -> Vec<String> {
    let manifest: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(out.join("manifest.json")).unwrap()).unwrap();
    manifest["artifacts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == kind)
        .map(|a| a["path"].as_str().unwrap().to_string())
        .collect()
}

/// Every file under `root`: relative path → (contents, mode).
pub fn tree(root: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    use std::os::unix::fs::PermissionsExt;
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                let relative = path
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.insert(relative, (fs::read(&path).unwrap(), mode));
            }
        }
    }
    files
}

/// The model of a blueprint file, as renderers see it. The clock only
/// decides whether expired temporary rules are warned about.
pub fn model(blueprint: &Path) -> waddlec::model::Model {
    compiled(blueprint).model
}

/// The review build of a blueprint file, in memory.
pub fn compiled(blueprint: &Path) -> waddlec::Compiled {
    let source = waddlec::blueprint::SourceFile {
        name: blueprint.display().to_string(),
        text: fs::read_to_string(blueprint).unwrap(),
    };
    let today = waddlec::blueprint::Date {
        year: 2000,
        month: 1,
        day: 1,
    };
    waddlec::compile(&source, today).unwrap_or_else(|_| panic!("{} compiles", blueprint.display()))
}

/// The stand-in for an upstream manifest (`tests/data/upstream/NAME.yaml`).
pub fn upstream_fixture(name: &str) -> String {
    fs::read_to_string(repo_root().join(format!("tests/data/upstream/{name}.yaml"))).unwrap()
}

/// The stand-in for the Cilium chart archive
/// (`tests/data/upstream/15-cilium-chart.tgz`).
pub fn chart_fixture() -> Vec<u8> {
    fs::read(repo_root().join("tests/data/upstream/15-cilium-chart.tgz")).unwrap()
}

/// The made-up digest the tests pin for a tagged image.
pub fn fixture_digest(reference: &str) -> String {
    sha256_hex(format!("waddlec test digest {reference}").as_bytes())
}

/// Puts the stand-ins of the upstream manifests and the Cilium chart
/// `blueprint` embeds into the download cache at `cache`, and pins them and
/// made-up digests of its tagged images in the blueprint's lock file, as a
/// first online build would have (GitHub, helm.cilium.io and the
/// registries are unreachable here).
pub fn seed_upstream(blueprint: &Path, cache: &Path) {
    use waddlec::render::cluster::upstream;
    let lock_path = waddlec::lock::Lock::path_for(blueprint);
    let mut lock = waddlec::lock::Lock::load(&lock_path).unwrap();
    fs::create_dir_all(cache.join("sha256")).unwrap();
    let model = model(blueprint);
    let mut files: Vec<(upstream::UpstreamManifest, Vec<u8>)> = upstream::manifests(&model)
        .into_iter()
        .map(|m| {
            let bytes = upstream_fixture(m.name).into_bytes();
            (m, bytes)
        })
        .collect();
    files.extend(upstream::cilium_chart(&model).map(|chart| (chart, chart_fixture())));
    for (manifest, bytes) in files {
        let sha = sha256_hex(&bytes);
        fs::write(cache.join("sha256").join(&sha), &bytes).unwrap();
        lock.record(&manifest.description, &manifest.url, &sha);
    }
    for image in upstream::tagged_images(&model) {
        lock.record(
            &format!("image {}", image.reference),
            &image.manifest_url(),
            &fixture_digest(&image.reference),
        );
    }
    lock.save().unwrap();
}

/// The sha256 of `bytes`, in lower-case hex (as lock files and manifests
/// write it).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}
