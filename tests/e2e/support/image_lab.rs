//! The image lab: a blueprint in a `SecretLab` whose deployable build bakes
//! real images — Debian bases by mmdebstrap from Debian's mirror (the only
//! upstream reached), shared between tests through the target directory —
//! with the Image Factory and Teleport's CDN served by a local `FileServer`:
//! a Talos fixture image under the blueprint's own schematic ID, and a
//! Teleport release tarball whose `teleport` is the stand-in
//! (`tests/support/teleport_stand_in.py`: opens the proxy's ports and says
//! what reached it) and whose other binaries print `fixture NAME`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use super::file_server::FileServer;
use super::s3_server::S3Server;
use super::talos_lab::{SecretLab, GITHUB_SECRET, GITHUB_SECRET_ENV};
use super::{repo_root, run, seed_upstream, text, valid_blueprints, waddlec};

pub const TELEPORT_TARBALL_PATH: &str = "/teleport-v18.2.1-linux-amd64-bin.tar.gz";
const TALOS_VERSION: &str = "v1.12.4";

/// Held by a test while it bakes Debian bases, so two tests of this process
/// never run mmdebstrap for the same base at once: the second waits, then
/// links the first one's bases.
pub static BAKING: Mutex<()> = Mutex::new(());

/// The bytes of the fixture release's binary `name`.
pub fn fixture_binary(name: &str) -> Vec<u8> {
    if name == "teleport" {
        fs::read(repo_root().join("tests/support/teleport_stand_in.py")).unwrap()
    } else {
        format!("#!/bin/sh\necho fixture {name}\n").into_bytes()
    }
}

/// A release tarball laid out like Teleport's: `teleport/<binary>`.
pub fn teleport_tarball() -> Vec<u8> {
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for name in ["teleport", "tctl", "tsh", "fdpass-teleport", "README"] {
        let body = fixture_binary(name);
        let mut header = tar::Header::new_gnu();
        header.set_size(body.len() as u64);
        header.set_mode(0o755);
        header.set_cksum();
        builder
            .append_data(&mut header, format!("teleport/{name}"), body.as_slice())
            .unwrap();
    }
    builder.into_inner().unwrap().finish().unwrap()
}

/// A 2 MiB Talos "image", xz-compressed as the factory serves it.
fn talos_fixture(dir: &Path) -> Vec<u8> {
    let raw = dir.join("talos.raw");
    let mut bytes = vec![0u8; 2 << 20];
    bytes[..512].fill(0x42);
    fs::write(&raw, bytes).unwrap();
    let output = run(Command::new("xz").args(["-T1", "-k", "-c"]).arg(&raw));
    assert!(output.status.success(), "{}", text(&output.stderr));
    output.stdout
}

/// The schematic ID of `blueprint`'s Talos extensions, as waddlec computes
/// it offline (the factory stand-in answers with it).
fn schematic_of(blueprint: &Path) -> String {
    let document: toml::Table = fs::read_to_string(blueprint).unwrap().parse().unwrap();
    let mut command = waddlec();
    command.args(["schematic", "id"]);
    for extension in document["talos"]["extensions"].as_array().unwrap() {
        command.args(["--extension", extension.as_str().unwrap()]);
    }
    let output = run(&mut command);
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout).trim().to_string()
}

pub struct ImageLab {
    pub lab: SecretLab,
    pub server: FileServer,
    pub cache: PathBuf,
    _scratch: tempfile::TempDir,
}

impl ImageLab {
    pub fn new() -> Self {
        Self::with(|_| {})
    }

    /// The bundled blueprint changed by `edit`, secrets initialised.
    pub fn with(edit: impl FnOnce(&mut toml::Table)) -> Self {
        let lab = SecretLab::edited(&valid_blueprints()[0], |document| {
            // snapshot.debian.org is out of this machine's reach.
            document["debian"]
                .as_table_mut()
                .unwrap()
                .insert("mirror".into(), "http://deb.debian.org/debian".into());
            edit(document);
        });
        lab.init();
        let scratch = tempfile::tempdir().unwrap();
        let server = FileServer::start();
        let schematic = schematic_of(&lab.path("blueprint.toml"));
        server
            .serve(
                format!("/image/{schematic}/{TALOS_VERSION}/nocloud-amd64.raw.xz"),
                talos_fixture(scratch.path()),
            )
            .serve(TELEPORT_TARBALL_PATH, teleport_tarball())
            .serve(
                "POST /schematics",
                format!("{{\"id\":\"{schematic}\"}}").into_bytes(),
            );
        let cache = scratch.path().join("cache");
        seed_upstream(&lab.path("blueprint.toml"), &cache);
        ImageLab {
            lab,
            server,
            cache,
            _scratch: scratch,
        }
    }

    /// `build --with-secrets` with the stand-in upstreams; `path` replaces
    /// the PATH (to hide tools).
    pub fn build(&self, extra: &[&str], path: Option<&str>) -> Output {
        self.build_in(&self.cache, extra, path)
    }

    /// [`ImageLab::build`] with another cache directory (as on another
    /// machine), the artifact-store stand-in's credentials in the
    /// environment.
    pub fn build_in(&self, cache: &Path, extra: &[&str], path: Option<&str>) -> Output {
        let mut command = waddlec();
        command
            .current_dir(self.lab.path(""))
            .env(GITHUB_SECRET_ENV, GITHUB_SECRET)
            .env("WADDLEC_CACHE_DIR", cache)
            .args(["build", "blueprint.toml", "--with-secrets"])
            .args(["--factory", &self.server.url])
            .args(["--teleport-cdn", &self.server.url])
            .args(extra);
        S3Server::env(&mut command);
        if let Some(path) = path {
            command.env("PATH", path);
        }
        run(&mut command)
    }

    /// A build that bakes, sharing Debian bases with the other tests of
    /// this process and of earlier runs.
    pub fn build_sharing_bases(&self, extra: &[&str]) -> Output {
        let _baking = BAKING
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        link_bases(&shared_bases(), &self.cache.join("debian"));
        let output = self.build(extra, None);
        link_bases(&self.cache.join("debian"), &shared_bases());
        output
    }

    /// `images.json` of the deployable tree.
    pub fn images(&self) -> Vec<serde_json::Value> {
        let text = fs::read_to_string(self.lab.path("dist/images.json")).unwrap();
        serde_json::from_str::<serde_json::Value>(&text)
            .unwrap()
            .as_array()
            .unwrap()
            .clone()
    }
}

/// Debian bases from earlier runs, shared through the target directory.
pub fn shared_bases() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("debian-bases")
}

pub fn link_bases(from: &Path, to: &Path) {
    let Ok(entries) = fs::read_dir(from) else {
        return;
    };
    fs::create_dir_all(to).unwrap();
    for entry in entries {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_file() && !target.exists() {
            fs::hard_link(entry.path(), &target)
                .or_else(|_| fs::copy(entry.path(), &target).map(drop))
                .unwrap();
        }
    }
}
