//! `waddlec host init` against a real `sshd` (the `SshHost` lab), whose
//! "host" files are read under a scratch root (`--host-root`): its SSH host
//! key (the sshd's own public key) and an API certificate made here with
//! openssl. The fingerprint recorded is checked against `openssl x509
//! -fingerprint -sha256` of the same certificate, not against waddlec's own
//! arithmetic.
//!
//! Stand-ins: the scratch root stands for the host's `/etc/ssh` and
//! `/etc/pve/local` (no Proxmox here); everything else (ssh, sshd, the
//! shell the script runs in) is real.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use crate::support::ssh_host::SshHost;
use crate::support::{repo_root, require, run, text, waddlec};

struct Lab {
    host: SshHost,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        require("openssl");
        let host = SshHost::start();
        let dir = tempfile::tempdir().unwrap();
        let mut document: toml::Table =
            fs::read_to_string(repo_root().join("blueprints/waddle.toml"))
                .unwrap()
                .parse()
                .unwrap();
        document["host"]
            .as_table_mut()
            .unwrap()
            .insert("ssh".into(), "waddle-host".into());
        fs::write(
            dir.path().join("blueprint.toml"),
            toml::to_string(&document).unwrap(),
        )
        .unwrap();
        let lab = Lab { host, dir };
        let ssh = lab.root().join("etc/ssh");
        fs::create_dir_all(&ssh).unwrap();
        fs::write(
            ssh.join("ssh_host_ed25519_key.pub"),
            lab.host.host_public_key(),
        )
        .unwrap();
        lab.new_certificate();
        lab
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }

    fn record(&self) -> std::path::PathBuf {
        self.dir.path().join("blueprint.host.toml")
    }

    /// A new self-signed API certificate; returns its fingerprint as
    /// openssl prints it.
    fn new_certificate(&self) -> String {
        let local = self.root().join("etc/pve/local");
        fs::create_dir_all(&local).unwrap();
        let cert = local.join("pve-ssl.pem");
        let output = run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args([
                "-nodes",
                "-days",
                "2",
                "-subj",
                "/CN=waddle-proxmox01",
                "-keyout",
            ])
            .arg(local.join("pve-ssl.key"))
            .arg("-out")
            .arg(&cert));
        assert!(output.status.success(), "{}", text(&output.stderr));
        fingerprint(&cert)
    }

    fn init(&self, extra: &[&str]) -> Output {
        run(waddlec()
            .current_dir(self.dir.path())
            .args(["host", "init", "blueprint.toml", "--ssh-config"])
            .arg(&self.host.config)
            .arg("--host-root")
            .arg(self.root())
            .args(extra))
    }
}

fn fingerprint(cert: &Path) -> String {
    let output = run(Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(cert));
    assert!(output.status.success(), "{}", text(&output.stderr));
    text(&output.stdout)
        .trim()
        .split_once('=')
        .unwrap()
        .1
        .to_string()
}

#[test]
fn host_init_records_the_hosts_key_and_certificate_and_refuses_a_change() {
    let lab = Lab::new();
    let certificate = fingerprint(&lab.root().join("etc/pve/local/pve-ssl.pem"));

    // --dry-run: says what it would record, writes nothing.
    let output = lab.init(&["--dry-run"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("would record"));
    assert!(!lab.record().exists());

    let output = lab.init(&[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let record: toml::Table = fs::read_to_string(lab.record()).unwrap().parse().unwrap();
    assert_eq!(record["node"].as_str(), Some("waddle-proxmox01"));
    assert_eq!(
        record["api_fingerprint"].as_str(),
        Some(certificate.as_str())
    );
    let presented = lab.host.host_public_key();
    let key: Vec<&str> = presented.split_whitespace().take(2).collect();
    assert_eq!(
        record["ssh_host_key"].as_str(),
        Some(key.join(" ").as_str())
    );
    let written = fs::read(lab.record()).unwrap();

    // Again: nothing changes.
    let output = lab.init(&[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("already records"));
    assert_eq!(fs::read(lab.record()).unwrap(), written);

    // A new certificate is refused, naming both, until --repin.
    let renewed = lab.new_certificate();
    let output = lab.init(&[]);
    assert_eq!(output.status.code(), Some(6), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&certificate) && stderr.contains(&renewed),
        "{stderr}"
    );
    assert!(stderr.contains("--repin"), "{stderr}");
    assert_eq!(fs::read(lab.record()).unwrap(), written);
    let output = lab.init(&["--repin"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let record: toml::Table = fs::read_to_string(lab.record()).unwrap().parse().unwrap();
    assert_eq!(record["api_fingerprint"].as_str(), Some(renewed.as_str()));
}

/// A machine that is not a Proxmox host (no API certificate) is told so,
/// and nothing is recorded.
#[test]
fn a_host_without_proxmox_is_refused() {
    let lab = Lab::new();
    fs::remove_dir_all(lab.root().join("etc/pve")).unwrap();
    let output = lab.init(&[]);
    assert_eq!(output.status.code(), Some(69), "{}", text(&output.stderr));
    assert!(!lab.record().exists());
}
