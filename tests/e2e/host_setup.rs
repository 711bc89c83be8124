//! Host setup over SSH against a real `sshd`, started by the test in its own
//! network namespace with throwaway keys, reached by the real `ssh` client
//! through a veth pair. `sysctl` and iptables changes land in that namespace;
//! files are installed under a scratch root (`--root`), not the machine's
//! `/`. The Proxmox and systemd tools the script calls (`pvesh`,
//! `systemctl`) are stand-ins on the remote PATH that record their
//! arguments; everything else (bash, install, cmp, sysctl, iptables) is real.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use waddlec::deploy::host_setup::{self, Ssh};

use crate::support::ssh_host::SshHost;
use crate::support::talos_lab::SecretLab;
use crate::support::{text, valid_blueprints};

/// An sshd host, a lab with its deployable tree built, a scratch root the
/// setup installs under, and the way to reach the host.
fn setup_lab() -> (SshHost, SecretLab, tempfile::TempDir, Ssh) {
    let host = SshHost::start();
    let lab = SecretLab::new(&valid_blueprints()[0]);
    lab.init();
    let output = lab.waddlec(&["build", "blueprint.toml", "--with-secrets", "--no-images"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let root = tempfile::tempdir().unwrap();
    let ssh = Ssh {
        target: "waddle-host".into(),
        config: Some(host.config.clone()),
        root: Some(root.path().display().to_string()),
        host_key: None,
    };
    (host, lab, root, ssh)
}

#[test]
fn host_setup_over_ssh_installs_applies_and_then_changes_nothing() {
    let (host, lab, root, ssh) = setup_lab();
    let tree = lab.path("dist");

    // Proxmox keeps root's authorized_keys in /etc/pve, behind a link. An
    // earlier setup let democratic-csi in as root: that line must go.
    let operator_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOperatorKeyStaysPut operator@laptop";
    let old_csi_line = "from=\"10.10.0.10\",no-pty ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOldCsi waddlec:democratic-csi";
    fs::create_dir_all(root.path().join("etc/pve/priv")).unwrap();
    fs::write(
        root.path().join("etc/pve/priv/authorized_keys"),
        format!("{operator_key}\n{old_csi_line}\n"),
    )
    .unwrap();
    fs::create_dir_all(root.path().join("root/.ssh")).unwrap();
    std::os::unix::fs::symlink(
        "/etc/pve/priv/authorized_keys",
        root.path().join("root/.ssh/authorized_keys"),
    )
    .unwrap();
    let entries = |dir: &Path| -> Vec<String> {
        let mut found = Vec::new();
        let mut dirs = vec![dir.to_path_buf()];
        while let Some(d) = dirs.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if fs::symlink_metadata(&path).unwrap().is_dir() {
                    dirs.push(path.clone());
                }
                found.push(format!("{} {:?}", path.display(), fs::read(&path).ok()));
            }
        }
        found.sort();
        found
    };
    // A target made before portals were bound listens on every address.
    let wildcard = root.path().join(
        "sys/kernel/config/target/iscsi/iqn.2003-01.org.linux-iscsi.waddlec.x8664:pvc-old/tpgt_1/np/0.0.0.0:3260",
    );
    fs::create_dir_all(&wildcard).unwrap();
    let untouched = entries(root.path());

    // --check: says what it would do, does nothing.
    let planned = host_setup::run(&ssh, &tree, true).unwrap();
    for expected in [
        "would change: /etc/sysctl.d/90-waddlec.conf",
        "would change: /etc/waddlec/host-network.rules",
        "would change: /usr/local/sbin/waddlec-host-network",
        "would change: /etc/systemd/system/waddlec-host-network.service",
        "would change: /etc/pve/nodes/waddle-proxmox01/host.fw",
        "would change: /etc/pve/firewall/cluster.fw",
        "would change: storage local content +import",
        "would change: zfs dataset rpool/k8s/vols",
        "would change: zfs dataset rpool/k8s/snaps",
        "would change: targetcli auto_add_default_portal=false",
        "would change: user democratic-csi",
        "would change: /var/lib/democratic-csi/.ssh/authorized_keys",
        "would change: /usr/local/sbin/waddlec-csi-gate",
        "would change: /etc/sudoers.d/waddlec-democratic-csi",
        "would change: zfs allow democratic-csi on rpool/k8s/vols",
        "would change: /root/.ssh/authorized_keys (democratic-csi as root removed)",
        "would change: iSCSI portals of 1 target(s) to 10.10.0.1:3260",
        "would change: zfs quota of rpool/k8s/vols 214748364800 bytes",
    ] {
        assert!(
            planned.iter().any(|l| l == expected),
            "{expected}: {planned:?}"
        );
    }
    assert_eq!(entries(root.path()), untouched);
    // The stand-in targetcli keeps no configfs: the move itself is not
    // replayed here, only its detection.
    fs::remove_dir_all(root.path().join("sys")).unwrap();
    let planned: Vec<String> = planned
        .into_iter()
        .filter(|l| !l.contains("iSCSI portals"))
        .collect();
    assert!(!host.calls().contains("pvesh set"), "{}", host.calls());
    assert!(!host.calls().contains("zfs create"), "{}", host.calls());
    assert!(!host.calls().contains("useradd"), "{}", host.calls());
    assert!(!host.calls().contains("zfs allow"), "{}", host.calls());

    // Applied: files in place, forwarding on, chains loaded, in the namespace.
    let changed = host_setup::run(&ssh, &tree, false).unwrap();
    assert!(
        changed.iter().all(|l| l.starts_with("changed: ")),
        "{changed:?}"
    );
    assert_eq!(changed.len(), planned.len(), "{changed:?} vs {planned:?}");
    for (dest, source, mode) in [
        (
            "etc/sysctl.d/90-waddlec.conf",
            "host/network/90-waddlec.conf",
            0o644,
        ),
        (
            "etc/waddlec/host-network.rules",
            "host/network/host-network.rules",
            0o644,
        ),
        (
            "usr/local/sbin/waddlec-host-network",
            "host/network/waddlec-host-network",
            0o755,
        ),
        (
            "etc/pve/nodes/waddle-proxmox01/host.fw",
            "host/firewall/host.fw",
            0o640,
        ),
        (
            "etc/pve/firewall/cluster.fw",
            "host/firewall/cluster.fw",
            0o640,
        ),
        (
            "var/lib/democratic-csi/.ssh/authorized_keys",
            "host/democratic-csi/authorized_keys",
            0o644,
        ),
        (
            "usr/local/sbin/waddlec-csi-gate",
            "host/democratic-csi/waddlec-csi-gate",
            0o755,
        ),
        (
            "etc/sudoers.d/waddlec-democratic-csi",
            "host/democratic-csi/sudoers",
            0o440,
        ),
    ] {
        let installed = root.path().join(dest);
        assert_eq!(
            fs::read(&installed).unwrap(),
            fs::read(tree.join(source)).unwrap()
        );
        let actual = fs::metadata(&installed).unwrap().permissions().mode() & 0o777;
        assert_eq!(actual, mode, "{dest}");
    }
    assert_eq!(host.netns.sh("sysctl -n net.ipv4.ip_forward").trim(), "1");
    let nat = host.netns.sh("iptables -w -t nat -S");
    assert!(nat.contains("-A PREROUTING -j WDLC-PREROUTING"), "{nat}");
    assert!(nat.contains("--to-destination 10.10.0.3:443"), "{nat}");
    let calls = host.calls();
    assert!(calls.contains("systemctl daemon-reload"), "{calls}");
    assert!(
        calls.contains("systemctl enable waddlec-host-network.service"),
        "{calls}"
    );
    assert!(
        calls.contains("pvesh set /storage/local --content iso,vztmpl,backup,import"),
        "{calls}"
    );
    assert!(!calls.contains("pvesh set /storage/vmdata"), "{calls}");
    assert!(calls.contains("zfs create -p rpool/k8s/vols"), "{calls}");
    assert!(calls.contains("zfs create -p rpool/k8s/snaps"), "{calls}");
    assert!(
        calls.contains("zfs set quota=214748364800 rpool/k8s/vols"),
        "{calls}"
    );
    // democratic-csi's own user, limited by ZFS delegation to its dataset;
    // its home and key file are root's, so it cannot lift its own limits.
    assert!(
        calls.contains("useradd --system --user-group --no-create-home --home-dir /var/lib/democratic-csi --shell /bin/sh --password * democratic-csi"),
        "{calls}"
    );
    assert!(
        calls.contains("zfs allow -l -u democratic-csi create,mount rpool/k8s/vols"),
        "{calls}"
    );
    assert!(
        calls.contains("zfs allow -d -u democratic-csi clone,create,destroy,mount,refreservation,snapshot,userprop,volblocksize,volsize rpool/k8s/vols"),
        "{calls}"
    );
    for dir in ["var/lib/democratic-csi", "var/lib/democratic-csi/.ssh"] {
        let meta = fs::metadata(root.path().join(dir)).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 0, "{dir}");
        assert_eq!(meta.permissions().mode() & 0o777, 0o755, "{dir}");
    }
    // root's authorized_keys: the old root login of the driver is gone, the
    // operator's key stays, written through the link.
    assert!(
        fs::symlink_metadata(root.path().join("root/.ssh/authorized_keys"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    let keys = fs::read_to_string(root.path().join("etc/pve/priv/authorized_keys")).unwrap();
    assert_eq!(keys, format!("{operator_key}\n"));

    // Again: nothing to change, nothing changed.
    let before = host.calls().len();
    let again = host_setup::run(&ssh, &tree, false).unwrap();
    let calls = host.calls();
    let new_calls = &calls[before..];
    assert!(again.is_empty(), "{again:?}");
    assert!(!new_calls.contains("pvesh set"), "{new_calls}");
    assert!(!new_calls.contains("systemctl"), "{new_calls}");
    assert!(host_setup::run(&ssh, &tree, true).unwrap().is_empty());
}

/// A root `authorized_keys` the setup cannot read (here a directory where
/// the file should be) stops the setup with the reason; it is never
/// rewritten from what a failed read returned (nothing).
#[test]
fn an_unreadable_authorized_keys_stops_the_setup_and_is_left_alone() {
    let (_host, lab, root, ssh) = setup_lab();
    let keys = root.path().join("root/.ssh/authorized_keys");
    fs::create_dir_all(keys.join("not-a-file")).unwrap();

    for check in [true, false] {
        let err = host_setup::run(&ssh, &lab.path("dist"), check).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("cannot read"), "{message}");
        assert!(message.contains("left as it is"), "{message}");
    }
    assert!(keys.join("not-a-file").is_dir());
    assert_eq!(fs::read_dir(&keys).unwrap().count(), 1);
    let siblings: Vec<String> = fs::read_dir(root.path().join("root/.ssh"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(siblings, ["authorized_keys"], "no temporary file left");
}

/// A command through a jump host with real `ssh` (the jump is a
/// `ProxyCommand` carrying waddlec's strict options), and a pinned host key
/// that is not the host's refused before the command runs.
#[test]
fn ssh_through_a_jump_host_and_a_wrong_pinned_key_refused() {
    use waddlec::net::ssh::{run, KnownHost, PinnedKeys, Remote};
    let host = SshHost::start();
    let through_jump = Remote {
        target: "waddle-host",
        config: Some(&host.config),
        jump: Some("waddle-host"),
        jump_known_host: None,
        known_host: None,
    };
    let output = run(&through_jump, "echo through-the-jump", Vec::new()).unwrap();
    assert_eq!(output.trim(), "through-the-jump");

    // The jump host pinned: its own key passes, another is refused.
    let presented = host.host_public_key();
    let key: Vec<&str> = presented.split_whitespace().take(2).collect();
    let right = PinnedKeys::new([("pve1", key.join(" ").as_str())]).unwrap();
    let wrong_key =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRlbW9jcmF0aWMtY3NpLXdhZGRsZS1wbGFjZWhvbGRy";
    let wrong = PinnedKeys::new([("pve1", wrong_key)]).unwrap();
    for (pins, works) in [(&right, true), (&wrong, false)] {
        let pinned_jump = Remote {
            target: "waddle-host",
            config: Some(&host.config),
            jump: Some("waddle-host"),
            jump_known_host: Some(pins.known("pve1")),
            known_host: None,
        };
        let result = run(&pinned_jump, "echo pinned-jump", Vec::new());
        assert_eq!(result.is_ok(), works, "{result:?}");
    }

    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("known_hosts");
    fs::write(
        &known,
        "waddle-host ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRlbW9jcmF0aWMtY3NpLXdhZGRsZS1wbGFjZWhvbGRy\n",
    )
    .unwrap();
    let pinned_wrong = Remote {
        target: "waddle-host",
        config: Some(&host.config),
        jump: None,
        jump_known_host: None,
        known_host: Some(KnownHost {
            file: &known,
            alias: "waddle-host",
        }),
    };
    let ran = dir.path().join("ran");
    let touch = format!("touch {}", ran.display());
    let err = run(&pinned_wrong, &touch, Vec::new()).unwrap_err();
    assert!(
        err.to_string().contains("Host key verification failed")
            || err
                .to_string()
                .contains("REMOTE HOST IDENTIFICATION HAS CHANGED"),
        "{err}"
    );
    assert!(!ran.exists(), "the command ran on a host with another key");
}
