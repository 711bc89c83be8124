//! democratic-csi's least privilege on the host: its forced command
//! (`host/democratic-csi/waddlec-csi-gate`, rendered from the waddle
//! blueprint) run as sshd runs it, with the command the client asked for in
//! `SSH_ORIGINAL_COMMAND`; its sudoers rule checked by `visudo -c`; its
//! `authorized_keys` parsed by `ssh-keygen -l`.
//!
//! The commands allowed are the exact strings democratic-csi v1.9.4's
//! `zfs-generic-iscsi` driver sends (`src/utils/zfs.js`: `buildCommand`
//! joins words with spaces and `escapeShell` double-quotes property values
//! with `"`, `$`, `` ` `` and `\` backslash-escaped;
//! `src/driver/controller-zfs-generic/index.js`: the targetcli script and
//! its `sh -c 'echo "…" | targetcli'` wrapper), each checked to reach its
//! program with exactly the arguments (or the script) the driver meant;
//! the refused ones (other programs, shell syntax, datasets or block
//! devices outside the blueprint's dataset, an unauthenticated target)
//! must reach nothing.
//!
//! Stand-ins: `zfs` and `sudo` (this machine has neither ZFS nor the
//! host's sudo policy) are scripts that record their arguments and stdin,
//! put at `/usr/sbin` by a tmpfs mounted there in a private mount
//! namespace (`unshare --mount`), so the gate runs unmodified with its own
//! `PATH`; the machine's `/usr/sbin` is never touched. `sudo targetcli` also
//! plays LIO's part the gate checks afterwards: a portal the script creates
//! appears in a configfs-shaped tmpfs over `/sys/kernel` of that namespace
//! (targetcli-fb's `portals create IP PORT` makes
//! `target/iscsi/IQN/tpgt_1/np/IP:PORT` there). Everything else the gate
//! uses (bash, uname, logger) is real.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::support::{build, repo_root, require, run, text};

const DATASET: &str = "rpool/k8s";
const IQN: &str = "iqn.2003-01.org.linux-iscsi.waddlec.x8664";

/// Records a call: program name, each argument in brackets, then stdin.
/// As `sudo targetcli`, it also does what LIO does with a portal the script
/// creates: the portal's directory appears in configfs
/// (`/sys/kernel/config/target/iscsi/IQN/tpgt_1/np/IP:PORT`, on a tmpfs
/// over `/sys/kernel` in the test's own mount namespace).
const STAND_IN: &str = r#"#!/bin/bash
{
    printf '%s' "$(basename "$0")"
    printf ' [%s]' "$@"
    echo
} >>"$GATE_LOG"
if [[ $(basename "$0") == sudo ]]; then
    script=$(cat)
    printf '%s\n' "$script" >>"$GATE_LOG"
    while IFS= read -r line; do
        case $line in
        'cd /iscsi/'*'/tpg1/portals') iqn=${line#cd /iscsi/}; iqn=${iqn%%/*} ;;
        'create '*' '[0-9]*)
            if [[ -n ${iqn:-} && ${GATE_PORTALS:-} == yes ]]; then
                read -r _ ip port <<<"$line"
                mkdir -p "/sys/kernel/config/target/iscsi/$iqn/tpgt_1/np/$ip:$port"
            fi ;;
        esac
    done <<<"$script"
fi
"#;

struct Gate {
    path: std::path::PathBuf,
    /// Whether the stand-in LIO creates the portals a script asks for.
    portals_work: bool,
    stand_ins: std::path::PathBuf,
    log: std::path::PathBuf,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
    /// What reached `zfs` or `sudo`.
    calls: String,
}

impl Gate {
    fn new() -> Gate {
        let (scratch, out) = build(&repo_root().join("blueprints/waddle.toml"));
        let dir = tempfile::tempdir().unwrap();
        let stand_ins = dir.path().join("sbin");
        fs::create_dir(&stand_ins).unwrap();
        for tool in ["zfs", "sudo"] {
            let path = stand_ins.join(tool);
            fs::write(&path, STAND_IN).unwrap();
            fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
        }
        Gate {
            path: out.join("host/democratic-csi/waddlec-csi-gate"),
            portals_work: true,
            log: dir.path().join("calls.log"),
            stand_ins,
            _dirs: (scratch, dir),
        }
    }

    fn run(&self, command: &str) -> Ran {
        require("unshare");
        fs::write(&self.log, "").unwrap();
        let output = run(Command::new("unshare")
            .args(["--mount", "--propagation", "private", "bash", "-c"])
            .arg(
                "mount -t tmpfs -o mode=0755 waddlec-gate-test /usr/sbin \
                 && mount -t tmpfs -o mode=0755 waddlec-gate-sysfs /sys/kernel \
                 && mkdir /sys/kernel/config \
                 && cp -p \"$STAND_INS\"/* /usr/sbin/ && exec \"$GATE\"",
            )
            .env("STAND_INS", &self.stand_ins)
            .env("GATE", &self.path)
            .env("GATE_LOG", &self.log)
            .env("GATE_PORTALS", if self.portals_work { "yes" } else { "no" })
            .env("SSH_ORIGINAL_COMMAND", command));
        Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: text(&output.stdout),
            stderr: text(&output.stderr),
            calls: fs::read_to_string(&self.log).unwrap(),
        }
    }

    fn allows(&self, command: &str, calls: &str) {
        let ran = self.run(command);
        assert_eq!(ran.code, 0, "{command}\nstderr: {}", ran.stderr);
        assert_eq!(ran.calls, calls, "{command}");
    }

    fn refuses(&self, command: &str) {
        let ran = self.run(command);
        assert_eq!(
            ran.code, 126,
            "{command} must be refused\nstderr: {}",
            ran.stderr
        );
        assert!(
            ran.stderr.contains("waddlec-csi-gate: refused"),
            "{}",
            ran.stderr
        );
        assert_eq!(ran.calls, "", "{command} reached a program");
    }
}

/// The targetcli script the driver sends to share `pvc-1` (its lines as
/// `controller-zfs-generic/index.js` builds them, with the blueprint's
/// TPG attributes and CHAP credentials).
fn create_script(tpg_extra: &str, device: &str) -> String {
    format!(
        "# create target\ncd /iscsi\ncreate {IQN}:pvc-1\n\n# setup tpg\ncd /iscsi/{IQN}:pvc-1/tpg1\n\
         set attribute authentication=1\nset attribute generate_node_acls=1\n\
         set attribute cache_dynamic_acls=1\nset attribute demo_mode_write_protect=0\n\
         set auth userid=waddle-csi\nset auth password=Chap-Secret.42\n{tpg_extra}\
         # create extent\ncd /backstores/block\ncreate pvc-1 {device}\ncd /backstores/block/pvc-1\n\n\
         set attribute emulate_tpu=0\n\n# add extent to target/tpg\n\
         cd /iscsi/{IQN}:pvc-1/tpg1/luns\ncreate /backstores/block/pvc-1"
    )
}

fn wrapped(script: &str) -> String {
    format!("sh -c 'echo \"{script}\" | targetcli'")
}

#[test]
fn the_forced_command_passes_the_drivers_commands_and_nothing_else() {
    require("unshare");
    require("bash");
    let gate = Gate::new();

    // The driver's probes.
    let ran = gate.run("echo $0");
    assert_eq!((ran.code, ran.stdout.trim()), (0, "sh"), "{}", ran.stderr);
    let ran = gate.run("uname -s");
    assert_eq!(
        (ran.code, ran.stdout.trim()),
        (0, "Linux"),
        "{}",
        ran.stderr
    );

    // zfs, as the driver writes it: values arrive unquoted, escapes undone.
    let volume = format!("{DATASET}/vols/pvc-1");
    gate.allows(
        &format!("/usr/sbin/zfs get -Hp -o name,property,value,received,source volsize,refquota {volume}"),
        &format!("zfs [get] [-Hp] [-o] [name,property,value,received,source] [volsize,refquota] [{volume}]\n"),
    );
    gate.allows(
        &format!(
            "/usr/sbin/zfs create -p -o democratic-csi:csi_volume_name=\"pvc-1\" \
             -o democratic-csi:managed_resource=\"true\" -o refreservation=\"0\" \
             -o volblocksize=\"16K\" -V 1073741824 {volume}"
        ),
        &format!(
            "zfs [create] [-p] [-o] [democratic-csi:csi_volume_name=pvc-1] [-o] \
             [democratic-csi:managed_resource=true] [-o] [refreservation=0] [-o] \
             [volblocksize=16K] [-V] [1073741824] [{volume}]\n"
        ),
    );
    gate.allows(
        &format!(
            "/usr/sbin/zfs set democratic-csi:csi_share_volume_context=\"{{\\\"node_attach_driver\\\":\\\"iscsi\\\",\\\"cost\\\":\\\"\\$5\\\"}}\" {volume}"
        ),
        &format!(
            "zfs [set] [democratic-csi:csi_share_volume_context={{\"node_attach_driver\":\"iscsi\",\"cost\":\"$5\"}}] [{volume}]\n"
        ),
    );
    gate.allows(
        &format!("/usr/sbin/zfs destroy -r -f -p -d {volume}@snap-1"),
        &format!("zfs [destroy] [-r] [-f] [-p] [-d] [{volume}@snap-1]\n"),
    );
    gate.allows(
        &format!("/usr/sbin/zfs list -r -Hp -t volume -o name,volsize {DATASET}/vols"),
        &format!("zfs [list] [-r] [-Hp] [-t] [volume] [-o] [name,volsize] [{DATASET}/vols]\n"),
    );

    // targetcli: the checked script goes to targetcli as root, and only it.
    // A new target's only portal is the host's address on the nodes'
    // bridge (the driver cannot say so; the gate adds it).
    let script = create_script("", &format!("/dev/zvol/{volume}"));
    let normalised: String = script.lines().map(|l| format!("{l}\n")).collect();
    gate.allows(
        &wrapped(&script),
        &format!(
            "sudo [-n] [/usr/bin/targetcli]\n{normalised}\
             cd /iscsi/{IQN}:pvc-1/tpg1/portals\ncreate 10.10.0.1 3260\n"
        ),
    );
    let delete = format!(
        "# delete target\ncd /iscsi\ndelete {IQN}:pvc-1\n\n# delete extent\ncd /backstores/block\ndelete pvc-1"
    );
    let normalised: String = delete.lines().map(|l| format!("{l}\n")).collect();
    gate.allows(
        &wrapped(&delete),
        &format!("sudo [-n] [/usr/bin/targetcli]\n{normalised}"),
    );

    // Refused: other programs, an interactive login, shell syntax.
    for command in [
        "",
        "/bin/bash",
        "id",
        "cat /etc/pve/priv/authkey.key",
        "/usr/sbin/zfs allow -u democratic-csi destroy rpool",
        "/usr/sbin/zpool destroy rpool",
        "zfs list",
        "/usr/sbin/zfs list; id",
        "/usr/sbin/zfs list $(id)",
        "/usr/sbin/zfs list `id`",
        "/usr/sbin/zfs list\nid",
        "/usr/sbin/zfs list && id",
        "/usr/sbin/zfs list > /etc/passwd",
        "/usr/sbin/zfs set x=\"$(id)\" rpool/k8s/vols/pvc-1",
        "/usr/sbin/zfs set x=\"a\"\"$(id)\" rpool/k8s/vols/pvc-1",
        "/usr/sbin/zfs set x=\"`id`\" rpool/k8s/vols/pvc-1",
        "/usr/sbin/zfs list rpool/k8s/vols/*",
        // Outside the blueprint's dataset: another VM's disk.
        "/usr/sbin/zfs destroy -r rpool/data/vm-100-disk-0",
        "/usr/sbin/zfs snapshot rpool/k8s-other/x@s",
        // Detached clones pipe zfs send into zfs receive: not offered.
        "/bin/sh -c 'zfs send rpool/k8s/vols/a@s | zfs receive rpool/k8s/vols/b'",
        "sh -c 'echo \"cd /iscsi\" | targetcli'; id",
    ] {
        gate.refuses(command);
    }

    // Refused targetcli scripts: any block device but a zvol of the
    // dataset, an unauthenticated target, anything the driver never sends.
    for script in [
        create_script("", "/dev/sda"),
        create_script("", "/dev/zvol/rpool/data/vm-100-disk-0"),
        create_script(
            "",
            &format!("/dev/zvol/{DATASET}/vols/../../data/vm-100-disk-0"),
        ),
        create_script(
            "set attribute authentication=0\n",
            &format!("/dev/zvol/{volume}"),
        ),
        create_script(
            "set attribute demo_mode_write_protect=1\nsaveconfig /tmp/x\n",
            &format!("/dev/zvol/{volume}"),
        ),
        "cd /\nshell".to_string(),
        "cd /backstores/fileio\ncreate f /etc/shadow".to_string(),
        "cd /iscsi\ndelete iqn.2003-01.org.linux-iscsi.other.x8664:disk".to_string(),
        // A backstore the driver did not make (another tool's, by name).
        "cd /backstores/block\ndelete vm-100-disk-0".to_string(),
        format!("cd /iscsi\ndelete {IQN}:operator-share"),
        format!("cd /backstores/block\ncreate pvc-1 /dev/zvol/{volume}$(id)"),
    ] {
        gate.refuses(&wrapped(&script));
    }
}

/// The sudoers rule parses (`visudo -c`, as the host setup checks before
/// installing it) and grants targetcli without arguments only; the key
/// line parses as an authorized key with its options.
#[test]
fn the_sudoers_rule_and_the_key_parse() {
    require("visudo");
    require("ssh-keygen");
    let (_scratch, out) = build(&repo_root().join("blueprints/waddle.toml"));
    let dir = out.join("host/democratic-csi");
    let sudoers = dir.join("sudoers");
    let check = run(Command::new("visudo").arg("-cf").arg(&sudoers));
    assert!(check.status.success(), "{}", text(&check.stderr));
    let rules: Vec<String> = fs::read_to_string(&sudoers)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("Defaults") && !l.is_empty())
        .map(str::to_string)
        .collect();
    assert_eq!(
        rules,
        ["democratic-csi ALL=(root) NOPASSWD: /usr/bin/targetcli \"\""]
    );

    let keys = run(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(dir.join("authorized_keys")));
    assert!(keys.status.success(), "{}", text(&keys.stderr));
    let line = fs::read_to_string(dir.join("authorized_keys")).unwrap();
    let line = line.lines().find(|l| !l.starts_with('#')).unwrap();
    assert!(
        line.starts_with(
            "restrict,pty,from=\"10.10.0.10,10.10.0.11,10.10.0.12\",command=\"/usr/local/sbin/waddlec-csi-gate\" ssh-ed25519 "
        ),
        "{line}"
    );
    assert_mode(&dir.join("waddlec-csi-gate"), 0o755);
}

fn assert_mode(path: &Path, mode: u32) {
    let actual = fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(actual, mode, "{}", path.display());
}

/// targetcli exits 0 even when a command of its script failed: a target
/// whose portal was not made is an error the driver sees, not a volume no
/// node can reach.
#[test]
fn a_target_left_without_its_portal_fails_the_share() {
    let mut gate = Gate::new();
    gate.portals_work = false;
    let script = create_script("", &format!("/dev/zvol/{DATASET}/vols/pvc-1"));
    let ran = gate.run(&wrapped(&script));
    assert_eq!(ran.code, 1, "{}", ran.stderr);
    assert!(
        ran.stderr.contains("has no portal on 10.10.0.1:3260"),
        "{}",
        ran.stderr
    );
}
