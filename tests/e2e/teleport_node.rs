//! The Proxmox host as Teleport's agentless node, tried on a real sshd: the
//! rendered drop-in (`host/ssh/teleport-node.conf`) passes `sshd -t`, and
//! once the lab's sshd (`SshHost`, in its own namespace) reads it, a login
//! with a user certificate from the CA it trusts succeeds, the same key
//! without the certificate and a certificate from another CA are refused,
//! and the host presents a host certificate a client verifies with a
//! `@cert-authority` line, as tsh's known_hosts holds Teleport's host CA.
//!
//! The CAs are `ssh-keygen`'s, standing in for Teleport's `openssh` CA
//! (`tctl auth export --type=openssh`) and host CA (`tctl auth sign
//! --host=… --format=openssh`); the drop-in's absolute paths are moved
//! under the lab host's root, where its sshd reads its config.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::support::ssh_host::SshHost;
use crate::support::{build, require, run, text, valid_blueprints};

const KEY_DIR: &str = "/etc/ssh/waddlec-teleport";

fn keygen(args: &[&str], dir: &Path) {
    let output = run(Command::new("ssh-keygen").current_dir(dir).args(args));
    assert!(output.status.success(), "{}", text(&output.stderr));
}

/// `ssh root@host true` with `identity` (and `certificate`), trusting host
/// keys only through `known_hosts`, nothing from the lab's ssh config.
fn log_in(
    address: &str,
    dir: &Path,
    identity: &str,
    certificate: Option<&str>,
) -> std::process::Output {
    let mut ssh = Command::new("ssh");
    ssh.args([
        "-F",
        "/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "IdentitiesOnly=yes",
    ])
    .arg("-o")
    .arg(format!("IdentityFile={}", dir.join(identity).display()))
    .arg("-o")
    .arg(format!(
        "UserKnownHostsFile={}",
        dir.join("known_hosts").display()
    ))
    .args([
        "-o",
        "GlobalKnownHostsFile=/dev/null",
        "-o",
        "StrictHostKeyChecking=yes",
        // As `tsh config` writes: only certificate host keys.
        "-o",
        "HostKeyAlgorithms=ecdsa-sha2-nistp256-cert-v01@openssh.com",
        "-o",
        "HostKeyAlias=waddle-proxmox01",
        "-o",
        "ConnectTimeout=10",
    ]);
    if let Some(certificate) = certificate {
        ssh.arg("-o").arg(format!(
            "CertificateFile={}",
            dir.join(certificate).display()
        ));
    }
    run(ssh.arg(format!("root@{address}")).arg("true"))
}

#[test]
fn the_host_trusts_teleports_user_ca_and_presents_its_host_certificate() {
    require("sshd");
    let (_guard, out) = build(&valid_blueprints()[0]);
    let drop_in = fs::read_to_string(out.join("host/ssh/teleport-node.conf")).unwrap();
    let principals = drop_in
        .lines()
        .skip_while(|line| !line.contains("principals"))
        .nth(1)
        .unwrap()
        .trim_start_matches('#')
        .trim()
        .to_string();
    assert!(
        principals.starts_with("10.10.0.1,waddle-proxmox01,"),
        "{principals}"
    );

    let host = SshHost::start();
    let root = host.host_root();
    let keys = root.join(KEY_DIR.trim_start_matches('/'));
    fs::create_dir_all(&keys).unwrap();
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    for ca in ["user_ca", "host_ca", "other_ca"] {
        keygen(&["-q", "-t", "ed25519", "-N", "", "-f", ca], w);
    }
    // What the Teleport VM hands the host: the openssh CA's public key, and
    // a host key with its certificate for the rendered principals.
    fs::copy(w.join("user_ca.pub"), keys.join("openssh-ca.pub")).unwrap();
    keygen(&["-q", "-t", "ecdsa", "-N", "", "-f", "host_key"], w);
    keygen(
        &[
            "-q",
            "-s",
            "host_ca",
            "-I",
            "waddle-proxmox01",
            "-h",
            "-n",
            &principals,
            "host_key.pub",
        ],
        w,
    );
    for file in ["host_key", "host_key-cert.pub"] {
        fs::copy(w.join(file), keys.join(file)).unwrap();
        fs::set_permissions(keys.join(file), fs::Permissions::from_mode(0o600)).unwrap();
    }
    let etc_ssh = root.join("etc/ssh");
    fs::write(
        etc_ssh.join("sshd_config.d/teleport-node.conf"),
        drop_in.replace(KEY_DIR, &keys.display().to_string()),
    )
    .unwrap();
    let check = run(Command::new("/usr/sbin/sshd")
        .arg("-t")
        .arg("-f")
        .arg(etc_ssh.join("sshd_config")));
    assert!(check.status.success(), "sshd -t: {}", text(&check.stderr));
    let reload = run(Command::new("ssh").arg("-F").arg(&host.config).args([
        "-o",
        "BatchMode=yes",
        "waddle-host",
        "systemctl reload ssh",
    ]));
    assert!(reload.status.success(), "{}", text(&reload.stderr));

    // The operator: a key sshd has never seen, certified for `root`.
    keygen(&["-q", "-t", "ed25519", "-N", "", "-f", "operator"], w);
    // The same key under names without the certificate beside it (ssh
    // loads `NAME-cert.pub` by itself), and certified by another CA.
    for copy in ["bare", "stranger"] {
        fs::copy(w.join("operator"), w.join(copy)).unwrap();
        fs::copy(w.join("operator.pub"), w.join(format!("{copy}.pub"))).unwrap();
    }
    keygen(
        &[
            "-q",
            "-s",
            "user_ca",
            "-I",
            "operator",
            "-n",
            "root",
            "operator.pub",
        ],
        w,
    );
    keygen(
        &[
            "-q",
            "-s",
            "other_ca",
            "-I",
            "stranger",
            "-n",
            "root",
            "stranger.pub",
        ],
        w,
    );
    let host_ca = fs::read_to_string(w.join("host_ca.pub")).unwrap();
    fs::write(
        w.join("known_hosts"),
        format!("@cert-authority waddle-proxmox01 {host_ca}"),
    )
    .unwrap();
    let config = fs::read_to_string(&host.config).unwrap();
    let address = config
        .lines()
        .find_map(|line| line.trim().strip_prefix("HostName "))
        .unwrap();

    // sshd may take a moment to re-exec after SIGHUP.
    let mut accepted = log_in(address, w, "operator", Some("operator-cert.pub"));
    for _ in 0..50 {
        if accepted.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        accepted = log_in(address, w, "operator", Some("operator-cert.pub"));
    }
    assert!(accepted.status.success(), "{}", text(&accepted.stderr));

    let bare = log_in(address, w, "bare", None);
    assert!(!bare.status.success());
    assert!(
        text(&bare.stderr).contains("Permission denied"),
        "{}",
        text(&bare.stderr)
    );
    let other = log_in(address, w, "stranger", Some("stranger-cert.pub"));
    assert!(!other.status.success());
    assert!(
        text(&other.stderr).contains("Permission denied"),
        "{}",
        text(&other.stderr)
    );

    // A client that trusts another host CA refuses the host.
    let other_ca = fs::read_to_string(w.join("other_ca.pub")).unwrap();
    fs::write(
        w.join("known_hosts"),
        format!("@cert-authority waddle-proxmox01 {other_ca}"),
    )
    .unwrap();
    let untrusted = log_in(address, w, "operator", Some("operator-cert.pub"));
    assert!(!untrusted.status.success());
    assert!(
        text(&untrusted.stderr).contains("Host key verification failed"),
        "{}",
        text(&untrusted.stderr)
    );
}
