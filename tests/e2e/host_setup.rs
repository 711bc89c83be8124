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

use crate::support::netns::Netns;
use crate::support::pve_firewall;
use crate::support::ssh_host::SshHost;
use crate::support::talos_lab::SecretLab;
use crate::support::{run, sh, text, valid_blueprints};

/// An sshd host, a lab with its deployable tree built, a scratch root the
/// setup installs under, and the way to reach the host.
fn setup_lab() -> (SshHost, SecretLab, tempfile::TempDir, Ssh) {
    setup_lab_edited(|_| {})
}

/// [`setup_lab`] with the blueprint changed by `edit`.
fn setup_lab_edited(
    edit: impl FnOnce(&mut toml::Table),
) -> (SshHost, SecretLab, tempfile::TempDir, Ssh) {
    let host = SshHost::start();
    let lab = SecretLab::edited(&valid_blueprints()[0], edit);
    lab.init();
    let output = lab.waddlec(&["build", "blueprint.toml", "--with-secrets", "--no-images"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let root = tempfile::tempdir().unwrap();
    let ssh = Ssh {
        target: "waddle-host".into(),
        config: Some(host.config.clone()),
        root: Some(root.path().display().to_string()),
        host_key: None,
        recorded_keys: Vec::new(),
        teleport: None,
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
    let planned = host_setup::run(&ssh, &tree, true, false).unwrap().changes;
    for expected in [
        "would change: /etc/sysctl.d/90-waddlec.conf",
        "would change: /etc/waddlec/host-network.rules",
        "would change: /usr/local/sbin/waddlec-host-network",
        "would change: /etc/systemd/system/waddlec-host-network.service",
        "would change: /etc/pve/nodes/waddle-proxmox01/host.fw",
        "would change: /etc/pve/firewall/cluster.fw",
        "would change: /usr/local/sbin/waddlec-emergency",
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
    let changed = host_setup::run(&ssh, &tree, false, false).unwrap().changes;
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
            "usr/local/sbin/waddlec-emergency",
            "host/emergency-recovery.sh",
            0o700,
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
    let again = host_setup::run(&ssh, &tree, false, false).unwrap();
    let calls = host.calls();
    let new_calls = &calls[before..];
    assert_eq!(again, host_setup::Report::default());
    assert!(!new_calls.contains("pvesh set"), "{new_calls}");
    assert!(!new_calls.contains("systemctl"), "{new_calls}");
    assert_eq!(
        host_setup::run(&ssh, &tree, true, false).unwrap(),
        host_setup::Report::default()
    );
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
        let err = host_setup::run(&ssh, &lab.path("dist"), check, false).unwrap_err();
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
        teleport: None,
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
            teleport: None,
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
            key_type: None,
        }),
        teleport: None,
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

/// The host's firewall as pve-firewall (the stand-in,
/// `support::pve_firewall`) would compile the files installed under
/// `root`, loaded into `host`'s INPUT chain.
fn load_firewall(host: &Netns, root: &Path) {
    let read = |file: &str| fs::read_to_string(root.join(file)).unwrap();
    let ruleset = pve_firewall::ruleset(
        &read("etc/pve/firewall/cluster.fw"),
        &read("etc/pve/nodes/waddle-proxmox01/host.fw"),
    );
    let file = root.join("pve-firewall.rules");
    fs::write(&file, ruleset).unwrap();
    host.sh(&format!(
        "iptables-restore -w --noflush {} \
         && {{ iptables -w -C INPUT -j PVEFW-INPUT 2>/dev/null || iptables -w -A INPUT -j PVEFW-INPUT; }}",
        file.display()
    ));
}

/// Whether a TCP connection from `source` (in `client`) to `port` of the
/// host gets through its firewall: a refusal (no listener) is an answer,
/// only a drop times out.
fn admitted(client: &Netns, source: &str, port: u16) -> bool {
    let verdict = client.sh(&format!(
        "python3 -c 'import socket\ns = socket.socket()\ns.settimeout(1)\ns.bind((\"{source}\", 0))\n\
         try:\n    s.connect((\"192.0.2.1\", {port})); print(\"open\")\n\
         except ConnectionRefusedError: print(\"refused\")\n\
         except (socket.timeout, TimeoutError): print(\"dropped\")'"
    ));
    verdict.trim() != "dropped"
}

/// Emergency access from the out-of-band console, as behaviour: the
/// installed `waddlec-emergency` opens SSH and the API to one address (real
/// packets from that address get through the stand-in pve-firewall's
/// ruleset, another address's do not), refuses an address that is not one,
/// and switches the firewall off as a last resort. A host setup keeps
/// every EMERGENCY line and reports it apart from the changes; only
/// `--close-emergency` removes them, back to the tree's files.
///
/// Stand-ins: pve-firewall (`support::pve_firewall`, compiling the files
/// the setup and the script leave under the scratch root); the host's
/// `pvesh`/`systemctl` (recording stand-ins of `SshHost`).
#[test]
fn emergency_access_is_kept_by_the_setup_until_closed() {
    let (_sshd, lab, root, ssh) = setup_lab();
    let tree = lab.path("dist");
    host_setup::run(&ssh, &tree, false, false).unwrap();
    let script = root.path().join("usr/local/sbin/waddlec-emergency");
    let emergency = |args: &[&str]| {
        run(std::process::Command::new("bash")
            .arg(&script)
            .args(args)
            .arg("--root")
            .arg(root.path()))
    };
    let host_fw = root.path().join("etc/pve/nodes/waddle-proxmox01/host.fw");
    let cluster_fw = root.path().join("etc/pve/firewall/cluster.fw");

    let host = Netns::new("emhost");
    let client = Netns::new("emclient");
    sh(&format!(
        "ip link add wdlc-em{pid} netns {h} type veth peer name wdlc-ec{pid} netns {c}",
        pid = std::process::id(),
        h = host.name,
        c = client.name
    ));
    host.sh(&format!(
        "ip addr add 192.0.2.1/24 dev wdlc-em{0} && ip link set wdlc-em{0} up",
        std::process::id()
    ));
    client.sh(&format!(
        "ip addr add 192.0.2.7/24 dev wdlc-ec{0} && ip addr add 192.0.2.8/24 dev wdlc-ec{0} \
         && ip link set wdlc-ec{0} up",
        std::process::id()
    ));
    load_firewall(&host, root.path());
    for source in ["192.0.2.7", "192.0.2.8"] {
        assert!(!admitted(&client, source, 22), "{source} before");
    }

    // Not an address: refused, nothing written.
    let before = fs::read(&host_fw).unwrap();
    for bad in ["300.1.2.3", "192.0.2.7/33", "operator-laptop"] {
        let refused = emergency(&["open", bad]);
        assert_eq!(refused.status.code(), Some(2), "{bad}");
        assert!(
            text(&refused.stderr).contains("is not an IPv4 address"),
            "{}",
            text(&refused.stderr)
        );
    }
    assert_eq!(fs::read(&host_fw).unwrap(), before);

    // Opened for one address: its packets reach SSH and the API.
    let opened = emergency(&["open", "192.0.2.7", "--hours", "2"]);
    assert!(opened.status.success(), "{}", text(&opened.stderr));
    let said = text(&opened.stdout);
    assert!(said.contains("undo: waddlec-emergency close"), "{said}");
    // An operator's note with backslashes on one line: the setup keeps it
    // byte for byte (no escape sequence read into it).
    let mut noted = false;
    let lines: Vec<String> = fs::read_to_string(&host_fw)
        .unwrap()
        .lines()
        .map(|line| match line.contains("# EMERGENCY until ") && !noted {
            true => {
                noted = true;
                format!("{line} (ticket C:\\ops\\t42)")
            }
            false => line.to_string(),
        })
        .collect();
    fs::write(&host_fw, lines.join("\n") + "\n").unwrap();
    let marked: Vec<String> = fs::read_to_string(&host_fw)
        .unwrap()
        .lines()
        .filter(|l| l.contains("# EMERGENCY until "))
        .map(str::to_owned)
        .collect();
    assert_eq!(marked.len(), 2, "{marked:?}");
    load_firewall(&host, root.path());
    assert!(admitted(&client, "192.0.2.7", 22));
    assert!(admitted(&client, "192.0.2.7", 8006));
    assert!(!admitted(&client, "192.0.2.8", 22));

    // A host setup keeps them, and says so apart from the changes.
    let planned = host_setup::run(&ssh, &tree, true, false).unwrap();
    assert!(planned.changes.is_empty(), "{planned:?}");
    let kept: Vec<String> = marked.iter().map(|l| format!("kept {l}")).collect();
    assert_eq!(planned.emergency, kept);
    host_setup::run(&ssh, &tree, false, false).unwrap();
    load_firewall(&host, root.path());
    assert!(admitted(&client, "192.0.2.7", 22), "kept by the setup");

    // The last resort: the firewall off, and kept off by the setup.
    let off = emergency(&["firewall-off"]);
    assert!(off.status.success(), "{}", text(&off.stderr));
    load_firewall(&host, root.path());
    assert!(admitted(&client, "192.0.2.8", 22), "firewall off");
    let planned = host_setup::run(&ssh, &tree, true, false).unwrap();
    assert!(planned.changes.is_empty(), "{planned:?}");
    assert_eq!(planned.emergency.len(), 3, "{planned:?}");
    assert!(planned.emergency[2].starts_with("kept # EMERGENCY firewall off since "));
    host_setup::run(&ssh, &tree, false, false).unwrap();
    load_firewall(&host, root.path());
    assert!(admitted(&client, "192.0.2.8", 22), "kept off by the setup");

    // Closed only when told: back to the tree's files, nobody else in.
    let closing = host_setup::run(&ssh, &tree, true, true).unwrap();
    assert!(
        closing
            .emergency
            .iter()
            .all(|l| l.starts_with("would close ")),
        "{closing:?}"
    );
    assert_eq!(
        closing.changes,
        [
            "would change: /etc/pve/nodes/waddle-proxmox01/host.fw",
            "would change: /etc/pve/firewall/cluster.fw"
        ]
    );
    let closed = host_setup::run(&ssh, &tree, false, true).unwrap();
    assert_eq!(closed.emergency.len(), 3, "{closed:?}");
    assert_eq!(
        fs::read(&host_fw).unwrap(),
        fs::read(tree.join("host/firewall/host.fw")).unwrap()
    );
    assert_eq!(
        fs::read(&cluster_fw).unwrap(),
        fs::read(tree.join("host/firewall/cluster.fw")).unwrap()
    );
    load_firewall(&host, root.path());
    for source in ["192.0.2.7", "192.0.2.8"] {
        assert!(!admitted(&client, source, 22), "{source} after closing");
    }
    assert_eq!(
        host_setup::run(&ssh, &tree, true, false).unwrap(),
        host_setup::Report::default()
    );
}

/// The console's own `close`: what `--close-emergency` does, without a
/// deploy. `status` lists what is in force.
#[test]
fn the_console_closes_what_it_opened() {
    let (_sshd, lab, root, ssh) = setup_lab();
    let tree = lab.path("dist");
    host_setup::run(&ssh, &tree, false, false).unwrap();
    let script = root.path().join("usr/local/sbin/waddlec-emergency");
    let emergency = |args: &[&str]| {
        let output = run(std::process::Command::new("bash")
            .arg(&script)
            .args(args)
            .arg("--root")
            .arg(root.path()));
        assert!(
            output.status.success(),
            "{args:?}: {}",
            text(&output.stderr)
        );
        text(&output.stdout)
    };
    emergency(&["open", "192.0.2.0/28"]);
    emergency(&["open", "192.0.2.0/28", "--hours", "8"]);
    emergency(&["firewall-off"]);
    let status = emergency(&["status"]);
    assert_eq!(status.lines().count(), 3, "re-opening replaces: {status}");
    let closed = emergency(&["close"]);
    assert_eq!(closed.matches("closed: ").count(), 3, "{closed}");
    assert_eq!(emergency(&["status"]).trim(), "no EMERGENCY rule in force");
    for (installed, source) in [
        (
            "etc/pve/nodes/waddle-proxmox01/host.fw",
            "host/firewall/host.fw",
        ),
        ("etc/pve/firewall/cluster.fw", "host/firewall/cluster.fw"),
    ] {
        assert_eq!(
            fs::read(root.path().join(installed)).unwrap(),
            fs::read(tree.join(source)).unwrap(),
            "{installed}"
        );
    }
}

/// A host whose blueprint no longer gives it democratic-csi's volumes (the
/// platform removed here; in a cluster, every host but the storage host)
/// loses what an earlier setup made for the driver: its key, forced
/// command and sudo rule, so nobody logs in as it. Its datasets stay.
#[test]
fn a_host_without_democratic_csi_loses_its_key_gate_and_sudo_rule() {
    let (_host, lab, root, ssh) = setup_lab_edited(|document| {
        document.remove("platform");
    });
    let leftovers = [
        "var/lib/democratic-csi/.ssh/authorized_keys",
        "usr/local/sbin/waddlec-csi-gate",
        "etc/sudoers.d/waddlec-democratic-csi",
    ];
    for leftover in leftovers {
        let path = root.path().join(leftover);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, "left by an earlier setup\n").unwrap();
    }
    let tree = lab.path("dist");
    let planned = host_setup::run(&ssh, &tree, true, false).unwrap();
    for leftover in leftovers {
        let line = format!("would change: /{leftover} removed (democratic-csi is not this host's)");
        assert!(planned.changes.contains(&line), "{line}: {planned:?}");
        assert!(
            root.path().join(leftover).exists(),
            "--check removed {leftover}"
        );
    }
    host_setup::run(&ssh, &tree, false, false).unwrap();
    for leftover in leftovers {
        assert!(!root.path().join(leftover).exists(), "{leftover} stayed");
    }
    let again = host_setup::run(&ssh, &tree, true, false).unwrap();
    assert!(
        !again.changes.iter().any(|c| c.contains("democratic-csi")),
        "{again:?}"
    );
}
