//! The Proxmox host as Teleport's agentless node, tried on a real sshd: the
//! rendered drop-in (`host/ssh/teleport-node.conf`) passes `sshd -t`, and
//! once the lab's sshd (`SshHost`, in its own namespace) reads it, a login
//! with a user certificate from the CA it trusts succeeds, the same key
//! without the certificate and a certificate from another CA are refused,
//! and the host presents a host certificate a client verifies with a
//! `@cert-authority` line, as tsh's known_hosts holds Teleport's host CA.
//!
//! The host setup copies the keys from the Teleport VM through its guest
//! agent (the stand-in `qm guest exec` of `host_tools_stand_in.py`, whose
//! grammar and exec-status answer follow qemu-server), and installs the
//! drop-in only once the keys it names are there, and only if sshd loads
//! them (`sshd -t`, whose warnings about a key it cannot load count as a
//! refusal), then reloads sshd.
//!
//! A host of a `[cluster]` that does not run the Teleport VM copies its
//! keys through the cluster's API instead (the stand-in `pvesh`'s
//! `agent/exec` and `agent/exec-status`, whose grammar and answers follow
//! the API schema, `tests/data/schemas/proxmox/apidata.json`).
//!
//! The CAs are `ssh-keygen`'s, standing in for Teleport's `openssh` CA
//! (`tctl auth export --type=openssh`) and host CA (`tctl auth sign
//! --host=… --format=openssh`); the drop-in's absolute paths are moved
//! under the lab host's root, where its sshd reads its config.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use waddlec::deploy::host_setup::{self, HostFiles, Ssh};

use crate::support::ssh_host::SshHost;
use crate::support::talos_lab::SecretLab;
use crate::support::{build, repo_root, require, run, text, valid_blueprints};

const KEY_DIR: &str = "/etc/ssh/waddlec-teleport";
/// Where the Teleport VM's `waddlec-teleport-node-keys` leaves them.
const VM_KEY_DIR: &str = "/var/lib/teleport/waddlec-node";
/// The Teleport VM of `blueprints/waddle.toml`.
const TELEPORT_VMID: u32 = 101;

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

/// The certificate's principals, as the drop-in's comment lists them, of
/// `blueprints/waddle.toml`'s host.
fn principals(drop_in: &str) -> String {
    let principals = listed_principals(drop_in);
    assert!(
        principals.starts_with("10.10.0.1,waddle-proxmox01,"),
        "{principals}"
    );
    principals
}

/// The principals the drop-in's comment lists.
fn listed_principals(drop_in: &str) -> String {
    drop_in
        .lines()
        .skip_while(|line| !line.contains("principals"))
        .nth(1)
        .unwrap()
        .trim_start_matches('#')
        .trim()
        .to_string()
}

/// The CAs in `w`; under `keys`, what the Teleport VM hands the host (the
/// openssh CA's public key, a host key and its certificate for
/// `principals`); and the operator's key certified for `root`, with a
/// known_hosts trusting the host CA.
fn teleport_keys(w: &Path, keys: &Path, principals: &str) {
    for ca in ["user_ca", "host_ca", "other_ca"] {
        keygen(&["-q", "-t", "ed25519", "-N", "", "-f", ca], w);
    }
    fs::create_dir_all(keys).unwrap();
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
            principals,
            "host_key.pub",
        ],
        w,
    );
    for file in ["host_key", "host_key-cert.pub"] {
        fs::copy(w.join(file), keys.join(file)).unwrap();
        fs::set_permissions(keys.join(file), fs::Permissions::from_mode(0o600)).unwrap();
    }
    keygen(&["-q", "-t", "ed25519", "-N", "", "-f", "operator"], w);
    // The same key under names without the certificate beside it (ssh
    // loads `NAME-cert.pub` by itself); `stranger`'s from another CA.
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
}

/// The drop-in with its `/etc/ssh/` paths under the lab host's root, where
/// the host's own default keys are now: the lab's ed25519 key (so clients
/// that know the host keep knowing it), and fresh ECDSA and RSA ones.
fn relocated(drop_in: &str, host: &SshHost) -> String {
    let etc_ssh = host.host_root().join("etc/ssh");
    fs::create_dir_all(&etc_ssh).unwrap();
    let lab_key = host.host_root().parent().unwrap().join("host_key");
    fs::copy(&lab_key, etc_ssh.join("ssh_host_ed25519_key")).unwrap();
    for kind in ["ecdsa", "rsa"] {
        keygen(
            &[
                "-q",
                "-t",
                kind,
                "-N",
                "",
                "-f",
                &format!("ssh_host_{kind}_key"),
            ],
            &etc_ssh,
        );
    }
    drop_in.replace("/etc/ssh/", &format!("{}/", etc_ssh.display()))
}

/// The lab host's address.
fn address(host: &SshHost) -> String {
    fs::read_to_string(&host.config)
        .unwrap()
        .lines()
        .find_map(|line| line.trim().strip_prefix("HostName ").map(str::to_string))
        .unwrap()
}

/// The operator's certificate login, retried while sshd re-executes after
/// its SIGHUP.
fn log_in_with_certificate(address: &str, w: &Path) -> std::process::Output {
    let mut accepted = log_in(address, w, "operator", Some("operator-cert.pub"));
    for _ in 0..50 {
        if accepted.status.success() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        accepted = log_in(address, w, "operator", Some("operator-cert.pub"));
    }
    accepted
}

#[test]
fn the_host_trusts_teleports_user_ca_and_presents_its_host_certificate() {
    require("sshd");
    let (_guard, out) = build(&valid_blueprints()[0]);
    let drop_in = fs::read_to_string(out.join("host/ssh/teleport-node.conf")).unwrap();
    let host = SshHost::start();
    let root = host.host_root();
    let keys = root.join(KEY_DIR.trim_start_matches('/'));
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    teleport_keys(w, &keys, &principals(&drop_in));
    let etc_ssh = root.join("etc/ssh");
    fs::write(
        etc_ssh.join("sshd_config.d/teleport-node.conf"),
        relocated(&drop_in, &host),
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

    let address = &address(&host);
    let accepted = log_in_with_certificate(address, w);
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

/// The host setup leaves the drop-in out while the Teleport VM has no keys
/// for it, copies them from the VM through its guest agent once it has
/// (the private key 0600 in a 0700 directory, named in the report but
/// never shown) and puts the drop-in in (and reloads sshd, after which the
/// certificate login works), changes nothing the next time, and refuses a
/// host certificate sshd cannot load, removing the drop-in again.
#[test]
fn the_host_setup_installs_the_drop_in_once_the_keys_are_there() {
    require("sshd");
    let host = SshHost::start();
    let lab = SecretLab::new(&valid_blueprints()[0]);
    lab.init();
    let output = lab.waddlec(&["build", "blueprint.toml", "--with-secrets", "--no-images"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let tree = lab.path("dist");
    let root = host.host_root();
    let keys = root.join(KEY_DIR.trim_start_matches('/'));
    // The tree's drop-in, its paths moved under the lab host's root.
    let drop_in_file = tree.join("host/ssh/teleport-node.conf");
    let drop_in = fs::read_to_string(&drop_in_file).unwrap();
    fs::write(&drop_in_file, relocated(&drop_in, &host)).unwrap();
    // The host record's key, pinned as deploy pins it: it must still be
    // the one negotiated once the host also presents a certificate.
    let key: Vec<String> = host
        .host_public_key()
        .split_whitespace()
        .take(2)
        .map(str::to_string)
        .collect();
    let ssh = Ssh {
        target: "waddle-host".into(),
        config: Some(host.config.clone()),
        root: Some(root.display().to_string()),
        host_key: Some(("waddle-host".into(), key.join(" "))),
        recorded_keys: Vec::new(),
        teleport: None,
    };
    let installed = "/etc/ssh/sshd_config.d/waddlec-teleport-node.conf";
    let mentions = |changes: &[String]| changes.iter().any(|c| c.contains(installed));

    let before = host_setup::run(&ssh, &tree, false, false).unwrap().changes;
    assert!(!mentions(&before), "{before:?}");
    assert!(!root.join(installed.trim_start_matches('/')).exists());

    // The Teleport VM has made its files: the setup copies them through
    // the guest agent (the stand-in `qm guest exec`), then the drop-in.
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let teleport_vm = host.guest_root(TELEPORT_VMID);
    let vm_keys = teleport_vm.join(VM_KEY_DIR.trim_start_matches('/'));
    teleport_keys(w, &vm_keys, &principals(&drop_in));
    let copied = |verb: &str| -> Vec<String> {
        ["openssh-ca.pub", "host_key-cert.pub", "host_key"]
            .iter()
            .map(|file| format!("{verb}: {KEY_DIR}/{file}"))
            .chain([format!("{verb}: {installed}")])
            .collect()
    };
    let planned = host_setup::run(&ssh, &tree, true, false).unwrap().changes;
    assert_eq!(planned, copied("would change"));
    assert!(!keys.exists(), "--check copies nothing");
    let changed = host_setup::run(&ssh, &tree, false, false).unwrap().changes;
    assert_eq!(changed, copied("changed"));
    for (file, mode) in [("host_key", 0o600), ("openssh-ca.pub", 0o644)] {
        assert_eq!(
            fs::read(keys.join(file)).unwrap(),
            fs::read(vm_keys.join(file)).unwrap()
        );
        let actual = fs::metadata(keys.join(file)).unwrap().permissions().mode() & 0o777;
        assert_eq!(actual, mode, "{file}");
    }
    assert_eq!(
        fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
        0o700
    );
    assert!(host.calls().contains(&format!(
        "qm guest exec {TELEPORT_VMID} --timeout 10 -- cat {VM_KEY_DIR}/host_key"
    )));
    assert!(
        host.calls().contains("systemctl reload ssh"),
        "{}",
        host.calls()
    );
    let accepted = log_in_with_certificate(&address(&host), w);
    assert!(accepted.status.success(), "{}", text(&accepted.stderr));
    let again = host_setup::run(&ssh, &tree, false, false).unwrap().changes;
    assert!(again.is_empty(), "{again:?}");

    // A certificate sshd cannot load: refused, the drop-in removed.
    fs::write(vm_keys.join("host_key-cert.pub"), "not a certificate\n").unwrap();
    fs::remove_file(root.join(installed.trim_start_matches('/'))).unwrap();
    let err = host_setup::run(&ssh, &tree, false, false).unwrap_err();
    assert!(
        err.to_string()
            .contains("sshd does not accept ssh/teleport-node.conf"),
        "{err}"
    );
    assert!(!root.join(installed.trim_start_matches('/')).exists());
}

/// The Teleport VM's `waddlec-teleport-node-keys`, run against the stand-in
/// `tctl` (`tests/support/tctl_stand_in.py`, the auth service's CAs as
/// ssh-keygen keys): it leaves the OpenSSH CA without tctl's
/// `cert-authority` prefix and a host certificate for the drop-in's
/// principals, signs again only when needed, and what it made, put where
/// the drop-in names it, lets the operator's certificate from that CA in
/// and the host prove itself with the host CA.
#[test]
fn the_teleport_vms_keys_serve_the_hosts_sshd() {
    require("sshd");
    let (_guard, out) = build(&valid_blueprints()[0]);
    let drop_in = fs::read_to_string(out.join("host/ssh/teleport-node.conf")).unwrap();
    let principals = principals(&drop_in);
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let state = w.join("auth");
    let made = w.join("made");
    fs::create_dir(&state).unwrap();
    for ca in ["openssh_ca", "host_ca"] {
        keygen(&["-q", "-t", "ed25519", "-N", "", "-f", ca], &state);
    }
    let tctl = crate::support::repo_root().join("tests/support/tctl_stand_in.py");
    let script = fs::read_to_string(out.join("vms/teleport/waddlec-teleport-node-keys"))
        .unwrap()
        .replace("/usr/local/bin/tctl", &tctl.display().to_string())
        .replace(
            "dir='/var/lib/teleport/waddlec-node'",
            &format!("dir='{}'", made.display()),
        );
    fs::write(w.join("node-keys"), &script).unwrap();
    let make = || {
        let output = run(Command::new("bash")
            .arg(w.join("node-keys"))
            .env("TCTL_STAND_IN_DIR", &state));
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout)
    };
    assert!(make().contains("new host certificate"));
    assert_eq!(
        fs::read_to_string(made.join("openssh-ca.pub")).unwrap(),
        fs::read_to_string(state.join("openssh_ca.pub")).unwrap()
    );
    let listed = run(Command::new("ssh-keygen")
        .arg("-L")
        .arg("-f")
        .arg(made.join("host_key-cert.pub")));
    let listed = text(&listed.stdout);
    for principal in principals.split(',') {
        assert!(listed.contains(principal), "{principal}: {listed}");
    }
    assert!(listed.contains("host certificate"), "{listed}");
    // Nothing to sign again.
    assert_eq!(make(), "");
    let calls = fs::read_to_string(state.join("calls.log")).unwrap();
    assert_eq!(calls.matches("auth sign").count(), 1, "{calls}");

    let host = SshHost::start();
    let keys = host.host_root().join(KEY_DIR.trim_start_matches('/'));
    fs::create_dir_all(&keys).unwrap();
    for file in ["openssh-ca.pub", "host_key", "host_key-cert.pub"] {
        fs::copy(made.join(file), keys.join(file)).unwrap();
    }
    fs::write(
        host.host_root()
            .join("etc/ssh/sshd_config.d/teleport-node.conf"),
        relocated(&drop_in, &host),
    )
    .unwrap();
    let reload = run(Command::new("ssh").arg("-F").arg(&host.config).args([
        "-o",
        "BatchMode=yes",
        "waddle-host",
        "systemctl reload ssh",
    ]));
    assert!(reload.status.success(), "{}", text(&reload.stderr));
    keygen(&["-q", "-t", "ed25519", "-N", "", "-f", "operator"], w);
    let ca = state.join("openssh_ca").display().to_string();
    keygen(
        &[
            "-q",
            "-s",
            &ca,
            "-I",
            "operator",
            "-n",
            "root",
            "operator.pub",
        ],
        w,
    );
    let host_ca = fs::read_to_string(state.join("host_ca.pub")).unwrap();
    fs::write(
        w.join("known_hosts"),
        format!("@cert-authority waddle-proxmox01 {host_ca}"),
    )
    .unwrap();
    let accepted = log_in_with_certificate(&address(&host), w);
    assert!(accepted.status.success(), "{}", text(&accepted.stderr));
}

/// `blueprints/examples/three-hosts.toml` with Teleport (a minimal
/// `[teleport]`, as `blueprints/examples/services.toml` has it) on a VM of
/// pve2's, [`CLUSTER_TELEPORT_VMID`].
fn three_hosts_with_teleport() -> String {
    let example =
        fs::read_to_string(repo_root().join("blueprints/examples/three-hosts.toml")).unwrap();
    [
        (
            "[[image]]\nname = \"debian-edge\"\nos = \"debian\"\n",
            "[[image]]\nname = \"debian-edge\"\nos = \"debian\"\n\n\
             [[image]]\nname = \"debian-teleport\"\nos = \"debian\"\n",
        ),
        (
            "[talos]\n",
            "[[vm]]\nid = 3001\nname = \"teleport\"\nhost = \"pve2\"\n\
             image = \"debian-teleport\"\ncores = 2\nmemory = \"2G\"\ndisk = \"8G\"\n\
             nics = [{ bridge = \"vnet1\", address = \"10.30.0.20\" }]\n\n[talos]\n",
        ),
        (
            "[[edge.route]]\nsni = \"*.trio.example.net\"",
            "[[edge.route]]\nsni = \"teleport.trio.example.net\"\nto = \"teleport:3080\"\n\n\
             [[edge.route]]\nsni = \"*.trio.example.net\"",
        ),
        (
            "[firewall]\n",
            "[teleport]\nvm = \"teleport\"\npublic_host = \"teleport.trio.example.net\"\n\n\
             [[teleport.role]]\nname = \"ops-admin\"\nlogins = [\"deploy\"]\n\n[firewall]\n",
        ),
        (
            "cilium = \"1.19.0\"\n",
            "cilium = \"1.19.0\"\nteleport = \"18.2.1\"\n",
        ),
    ]
    .into_iter()
    .fold(example, |text, (from, to)| {
        assert_eq!(text.matches(from).count(), 1, "`{from}` is unique");
        text.replacen(from, to, 1)
    })
}

/// The Teleport VM of [`three_hosts_with_teleport`].
const CLUSTER_TELEPORT_VMID: u32 = 3001;

/// A host of a `[cluster]` that does not run the Teleport VM (pve1; the VM
/// is on pve2): its setup copies its own keys (`VM_KEY_DIR/pve1`) through
/// the cluster's API, the stand-in `pvesh`'s `agent/exec` and
/// `agent/exec-status` (grammar and answers from apidata.json; the first
/// status of each command says it is still running, so the setup's polling
/// is tried), never with `qm guest exec`, then installs its drop-in, which
/// sshd loads; a second run changes nothing. Every rendered setup passes
/// shellcheck, and pve2's, whose node runs the VM, uses `qm guest exec`.
#[test]
fn a_cluster_host_copies_its_keys_through_the_clusters_api() {
    require("sshd");
    require("shellcheck");
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let blueprint = w.join("three-hosts-teleport.toml");
    fs::write(&blueprint, three_hosts_with_teleport()).unwrap();
    let (_guard, tree) = build(&blueprint);
    for node in ["pve1", "pve2", "pve3"] {
        let script = tree.join(format!("hosts/{node}/setup.sh"));
        let output = run(Command::new("shellcheck")
            .args(["--shell=bash", "--severity=style"])
            .arg(&script));
        assert!(output.status.success(), "{node}: {}", text(&output.stdout));
    }
    let pve2 = fs::read_to_string(tree.join("hosts/pve2/setup.sh")).unwrap();
    assert!(pve2.contains(&format!("qm guest exec {CLUSTER_TELEPORT_VMID} ")));
    assert!(!pve2.contains("pvesh create"));

    let host = SshHost::start();
    // The VNet, as applying the SDN zone makes it on a node.
    host.netns
        .sh("ip link add vnet1 type bridge && ip link set vnet1 up");
    let root = host.host_root();
    let keys = root.join(KEY_DIR.trim_start_matches('/'));
    let drop_in_file = tree.join("hosts/pve1/ssh/teleport-node.conf");
    let drop_in = fs::read_to_string(&drop_in_file).unwrap();
    let principals = listed_principals(&drop_in);
    assert!(principals.starts_with("10.30.0.1,pve1,"), "{principals}");
    fs::write(&drop_in_file, relocated(&drop_in, &host)).unwrap();
    let key: Vec<String> = host
        .host_public_key()
        .split_whitespace()
        .take(2)
        .map(str::to_string)
        .collect();
    let ssh = Ssh {
        target: "waddle-host".into(),
        config: Some(host.config.clone()),
        root: Some(root.display().to_string()),
        host_key: Some(("waddle-host".into(), key.join(" "))),
        recorded_keys: Vec::new(),
        teleport: None,
    };
    let files = HostFiles::of_cluster_host(&tree, "pve1", false);
    let vm_dir = format!("{VM_KEY_DIR}/pve1");
    let vm_keys = host
        .guest_root(CLUSTER_TELEPORT_VMID)
        .join(vm_dir.trim_start_matches('/'));
    teleport_keys(w, &vm_keys, &principals);

    let installed = "/etc/ssh/sshd_config.d/waddlec-teleport-node.conf";
    let teleport_changes = |changes: Vec<String>| -> Vec<String> {
        changes
            .into_iter()
            .filter(|c| c.contains(KEY_DIR) || c.contains(installed))
            .collect()
    };
    let changed = teleport_changes(
        host_setup::run_with(&ssh, &files, false, false)
            .unwrap()
            .changes,
    );
    let expected: Vec<String> = ["openssh-ca.pub", "host_key-cert.pub", "host_key"]
        .iter()
        .map(|file| format!("changed: {KEY_DIR}/{file}"))
        .chain([format!("changed: {installed}")])
        .collect();
    assert_eq!(changed, expected);
    for file in ["host_key", "host_key-cert.pub", "openssh-ca.pub"] {
        assert_eq!(
            fs::read(keys.join(file)).unwrap(),
            fs::read(vm_keys.join(file)).unwrap(),
            "{file}"
        );
    }
    let calls = host.calls();
    assert!(
        calls.contains(&format!(
            "pvesh create /nodes/pve2/qemu/{CLUSTER_TELEPORT_VMID}/agent/exec \
             --command cat --command {vm_dir}/host_key --output-format json"
        )),
        "{calls}"
    );
    assert!(
        calls.contains(&format!(
            "pvesh get /nodes/pve2/qemu/{CLUSTER_TELEPORT_VMID}/agent/exec-status --pid "
        )),
        "{calls}"
    );
    assert!(!calls.contains("qm guest exec"), "{calls}");
    let again = teleport_changes(
        host_setup::run_with(&ssh, &files, false, false)
            .unwrap()
            .changes,
    );
    assert!(again.is_empty(), "{again:?}");
}
