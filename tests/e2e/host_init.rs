//! `waddlec host init` against a real `sshd` (the `SshHost` lab) on a
//! simulated bare Proxmox host: the Proxmox VE API simulator
//! (`tests/pve-sim/`, held to PVE's API schema, with users, roles, ACLs,
//! tokens and their permission checks) and its own `pvesh`, which the
//! sshd's sessions run and which reaches the same simulator, so what host
//! init makes over SSH is what the API then sees. The host's files are
//! under the lab's root (`--host-root`): its SSH host key (the sshd's own
//! public key), the API certificate (the simulator's, so the fingerprint
//! recorded is the one the API serves), /etc/hosts, and the sshd config
//! the lab's sshd really runs with (the hardening drop-in takes effect,
//! and a fresh login must prove it).
//!
//! Stand-ins: the Proxmox API and `pvesh` (the simulator), `systemctl`
//! (records; `reload ssh` sends SIGHUP to the lab's sshd), the 1Password
//! CLI `op` (`tests/support/op_stand_in.py`, op 2's grammar). Everything
//! else (ssh, sshd, bash, the certificate, openssl) is real.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::op_stand_in::OpStandIn;
use crate::support::pve_sim::PveSim;
use crate::support::ssh_host::SshHost;
use crate::support::{repo_root, require, run, text, waddlec};

const NODE: &str = "waddle-proxmox01";
const TOKEN_FILE: &str = "pve-token";

struct Lab {
    sim: PveSim,
    host: SshHost,
    dir: tempfile::TempDir,
}

impl Lab {
    /// A bare host: no API user or token, no pin, no hardening.
    fn new() -> Lab {
        Lab::with(|_| {})
    }

    fn with(edit: impl FnOnce(&mut toml::Table)) -> Lab {
        require("openssl");
        let sim = PveSim::start();
        let host = SshHost::start_with_pve(&sim.pvesh_socket());
        let dir = tempfile::tempdir().unwrap();
        let mut document: toml::Table =
            fs::read_to_string(repo_root().join("blueprints/waddle.toml"))
                .unwrap()
                .parse()
                .unwrap();
        let table = document["host"].as_table_mut().unwrap();
        table.insert("ssh".into(), "waddle-host".into());
        table.insert("api_token".into(), format!("file:{TOKEN_FILE}").into());
        table.remove("api_fingerprint");
        edit(&mut document);
        fs::write(
            dir.path().join("blueprint.toml"),
            toml::to_string(&document).unwrap(),
        )
        .unwrap();
        let lab = Lab { sim, host, dir };
        lab.host.install_proxmox_files(&lab.sim.certificate());
        lab
    }

    fn root(&self) -> PathBuf {
        self.host.host_root()
    }

    fn record(&self) -> PathBuf {
        self.dir.path().join("blueprint.host.toml")
    }

    fn init(&self, extra: &[&str]) -> Output {
        self.init_with(extra, &[])
    }

    fn init_with(&self, extra: &[&str], env: &[(&str, &str)]) -> Output {
        run(waddlec()
            .current_dir(self.dir.path())
            .args(["host", "init", "blueprint.toml", "--ssh-config"])
            .arg(&self.host.config)
            .arg("--host-root")
            .arg(self.root())
            .args(["--api", &self.sim.url])
            .args(["--format", "json"])
            .args(extra)
            .envs(env.iter().copied()))
    }

    /// The JSON report of a successful run.
    fn init_ok(&self, extra: &[&str]) -> Value {
        let output = self.init(extra);
        assert!(output.status.success(), "{}", text(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    fn token(&self) -> String {
        fs::read_to_string(self.dir.path().join(TOKEN_FILE)).unwrap()
    }

    /// Changes to the simulated host (not reads) from request `since` on.
    fn host_changes(&self, since: usize) -> Vec<String> {
        self.sim.changes_since(since)
    }

    fn assert_no_violations(&self) {
        let violations = self.sim.violations();
        assert!(violations.is_empty(), "schema violations: {violations:#?}");
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

/// From a bare host: the record, the API identity with a privsep token
/// kept 0600 in the `file:` host.api_token names (and accepted by the
/// API), sshd keys-only for real, the host's name in /etc/hosts; a second
/// run changes nothing, on the host or in the files.
#[test]
fn host_init_makes_a_bare_host_ready_and_a_second_run_changes_nothing() {
    let lab = Lab::new();
    let certificate = fingerprint(&lab.root().join("etc/pve/local/pve-ssl.pem"));

    // --dry-run: says what it would do, changes nothing anywhere.
    let before = lab.sim.requests().len();
    let report = lab.init_ok(&["--dry-run"]);
    let changes: Vec<&str> = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert!(
        changes.contains(&"would change: create API user waddlec@pve"),
        "{changes:?}"
    );
    assert!(
        changes.iter().any(|c| c.starts_with("would change: sshd")),
        "{changes:?}"
    );
    assert_eq!(report["token"], "would be made");
    assert!(
        lab.host_changes(before).is_empty(),
        "{:?}",
        lab.host_changes(before)
    );
    assert!(!lab.record().exists());
    assert!(!lab.dir.path().join(TOKEN_FILE).exists());

    let report = lab.init_ok(&[]);
    assert_eq!(report["record"]["api_fingerprint"], certificate.as_str());
    let record: toml::Table = fs::read_to_string(lab.record()).unwrap().parse().unwrap();
    assert_eq!(record["node"].as_str(), Some(NODE));
    let token = lab.token();
    assert!(
        token.starts_with("waddlec@pve!deploy="),
        "the token file holds the full credential"
    );
    let mode = fs::metadata(lab.dir.path().join(TOKEN_FILE))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let state = lab.sim.state();
    let state_text = state.to_string();
    assert!(
        state_text.contains("waddlec@pve"),
        "no user in {state_text}"
    );
    // The sshd the lab runs now has the drop-in, and /etc/hosts the name.
    assert!(lab
        .root()
        .join("etc/ssh/sshd_config.d/00-waddlec.conf")
        .exists());
    let hosts = fs::read_to_string(lab.root().join("etc/hosts")).unwrap();
    assert!(hosts.contains(&format!("203.0.113.10 {NODE}")), "{hosts}");
    assert!(lab.host.calls().contains("systemctl reload ssh"));
    lab.assert_no_violations();
    // The token works against the API, and can do nothing but what deploy
    // needs: reading another user is not among it (the simulator journals
    // that refusal as the one violation).
    let version = api_get(&lab, token.trim(), "/version");
    assert_eq!(version.0, 200, "{}", version.1);
    let users = api_get(&lab, token.trim(), "/access/users/root@pam");
    assert_eq!(users.0, 403, "{}", users.1);
    assert_eq!(lab.sim.violations().len(), 1, "{:#?}", lab.sim.violations());

    // Again: nothing changes anywhere.
    let record_bytes = fs::read(lab.record()).unwrap();
    let before = lab.sim.requests().len();
    let report = lab.init_ok(&[]);
    assert_eq!(report["changes"], serde_json::json!([]));
    assert_eq!(report["token"], "kept (it works)");
    assert!(
        lab.host_changes(before).is_empty(),
        "{:?}",
        lab.host_changes(before)
    );
    assert_eq!(fs::read(lab.record()).unwrap(), record_bytes);
    assert_eq!(lab.token(), token);

    // A token whose secret is lost is replaced only with --rotate.
    fs::write(
        lab.dir.path().join(TOKEN_FILE),
        "waddlec@pve!deploy=00000000-dead-beef-0000-000000000000\n",
    )
    .unwrap();
    let output = lab.init(&[]);
    assert_eq!(output.status.code(), Some(6), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("--rotate"));
    assert!(
        !text(&output.stderr).contains("dead-beef"),
        "a secret in an error"
    );
    let report = lab.init_ok(&["--rotate"]);
    assert!(
        report["token"].as_str().unwrap().starts_with("replaced"),
        "{report}"
    );
    assert_ne!(lab.token(), token);
    assert_eq!(api_get(&lab, lab.token().trim(), "/version").0, 200);
    assert_eq!(
        api_get(&lab, token.trim(), "/version").0,
        401,
        "the old token still works"
    );
}

/// `GET path` on the simulator with `token`: (status, body).
fn api_get(lab: &Lab, token: &str, path: &str) -> (u16, String) {
    lab.sim.get_with_token(token, path)
}

/// A new certificate is refused, naming both fingerprints, until --repin;
/// nothing else is done.
#[test]
fn a_changed_certificate_is_refused_until_repinned() {
    let lab = Lab::new();
    let first = lab.init_ok(&[]);
    let recorded = first["record"]["api_fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    let written = fs::read(lab.record()).unwrap();
    let cert = lab.root().join("etc/pve/local/pve-ssl.pem");
    let output = run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=renewed", "-keyout"])
        .arg(lab.dir.path().join("renewed.key"))
        .arg("-out")
        .arg(&cert));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let renewed = fingerprint(&cert);
    let before = lab.sim.requests().len();
    let output = lab.init(&[]);
    assert_eq!(output.status.code(), Some(6), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&recorded) && stderr.contains(&renewed),
        "{stderr}"
    );
    assert!(stderr.contains("--repin"), "{stderr}");
    assert_eq!(fs::read(lab.record()).unwrap(), written);
    assert_eq!(lab.sim.requests().len(), before, "pvesh was called");

    // --repin says what it replaces, old and new.
    let output = lab.init(&["--repin", "--dry-run"]);
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "would re-pin waddle-proxmox01: API certificate {recorded} → {renewed}"
        )),
        "{stderr}"
    );
    assert_eq!(fs::read(lab.record()).unwrap(), written);
}

/// A machine that is not a Proxmox host (no API certificate) is told so,
/// and nothing is recorded or made.
#[test]
fn a_host_without_proxmox_is_refused() {
    let lab = Lab::new();
    fs::remove_dir_all(lab.root().join("etc/pve")).unwrap();
    let before = lab.sim.requests().len();
    let output = lab.init(&[]);
    assert_eq!(output.status.code(), Some(69), "{}", text(&output.stderr));
    assert!(!lab.record().exists());
    assert!(lab.host_changes(before).is_empty());
}

/// An unreachable host (75) and a refused key (77) are told apart, each
/// with its fix.
#[test]
fn an_unreachable_host_and_a_refused_key_have_their_own_exit_codes() {
    let lab = Lab::new();
    let config = fs::read_to_string(&lab.host.config).unwrap();
    // Nothing listens on port 2 of the host.
    fs::write(
        &lab.host.config,
        config.replace("Host waddle-host\n", "Host waddle-host\n  Port 2\n"),
    )
    .unwrap();
    let output = lab.init(&[]);
    assert_eq!(output.status.code(), Some(75), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("did not answer"));
    // Another key than the one root authorizes.
    let other = lab.dir.path().join("other_key");
    let keygen = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other));
    assert!(keygen.status.success());
    let with_other: String = config
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("IdentityFile") {
                format!("  IdentityFile {}\n", other.display())
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    fs::write(&lab.host.config, with_other).unwrap();
    let output = lab.init(&[]);
    assert_eq!(output.status.code(), Some(77), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("authorized_keys"));
    assert!(!lab.record().exists());
}

/// `op://`: the token is written through the 1Password CLI, in a 0600
/// template file, never on op's command line; `env:` without
/// --print-token is refused before any token exists (nothing half-done),
/// and with it the value is printed once.
#[test]
fn the_token_is_kept_in_1password_or_printed_once_for_env() {
    require("python3");
    let op = OpStandIn::with_vault("waddle-platform");
    let op_env = op.env();
    let lab = Lab::with(|document| {
        document["host"].as_table_mut().unwrap().insert(
            "api_token".into(),
            "op://waddle-platform/proxmox-api-token/credential".into(),
        );
    });
    // 1Password refuses the write: the token just made is deleted again.
    let read_only = [op_env[0], op_env[1], ("OP_STAND_IN_READ_ONLY", "1")];
    let output = lab.init_with(&[], &read_only);
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("deleted again"),
        "{}",
        text(&output.stderr)
    );
    let state = lab.sim.state().to_string();
    assert!(
        !state.contains("\"deploy\""),
        "a token outlived its failed store: {state}"
    );

    let output = lab.init_with(&[], &op_env);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let items = op.items();
    let kept = items["waddle-platform"]["proxmox-api-token"]["credential"]
        .as_str()
        .unwrap();
    assert!(kept.starts_with("waddlec@pve!deploy="));
    assert_eq!(lab.sim.get_with_token(kept, "/version").0, 200);
    let calls = op.calls();
    assert!(calls.contains("template mode 600"), "{calls}");
    assert!(
        !calls.contains(kept.split('=').nth(1).unwrap()),
        "the secret reached op's command line"
    );
    // Again: op is only read.
    let output = lab.init_with(&[], &op_env);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let again = op.calls();
    assert!(!again[calls.len()..].contains("item "), "{again}");

    let lab = Lab::with(|document| {
        document["host"]
            .as_table_mut()
            .unwrap()
            .insert("api_token".into(), "env:WADDLE_PVE_TOKEN".into());
    });
    let before = lab.sim.requests().len();
    let output = lab.init(&[]);
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("--print-token"));
    let made: Vec<String> = lab
        .host_changes(before)
        .into_iter()
        .filter(|c| c.contains("/token/"))
        .collect();
    assert!(
        made.is_empty(),
        "a token was made that could not be kept: {made:?}"
    );
    let output = lab.init(&["--print-token"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    let printed = stderr
        .lines()
        .find_map(|line| line.strip_prefix("WADDLE_PVE_TOKEN="))
        .expect("the token is printed once");
    assert_eq!(lab.sim.get_with_token(printed, "/version").0, 200);
    assert!(stderr.contains("warning"));
}

/// A scratch host root for `harden.sh` run here, without SSH: a real
/// `sshd_config` (including its drop-in directory, as Debian's does) that
/// the real `sshd -t`/`sshd -T` check, `/etc/hosts` without the host's
/// name, and a recording `systemctl` stand-in first on the PATH.
struct HardenRoot {
    dir: tempfile::TempDir,
}

impl HardenRoot {
    fn new() -> HardenRoot {
        require("sshd");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let etc_ssh = root.join("etc/ssh");
        fs::create_dir_all(etc_ssh.join("sshd_config.d")).unwrap();
        let key = etc_ssh.join("ssh_host_ed25519_key");
        let output = run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key));
        assert!(output.status.success(), "{}", text(&output.stderr));
        fs::write(
            etc_ssh.join("sshd_config"),
            format!(
                "Include {}/sshd_config.d/*.conf\nHostKey {}\nPasswordAuthentication yes\nPermitRootLogin yes\n",
                etc_ssh.display(),
                key.display()
            ),
        )
        .unwrap();
        fs::write(root.join("etc/hosts"), "127.0.0.1 localhost\n").unwrap();
        let bin = dir.path().join("bin");
        fs::create_dir_all(&bin).unwrap();
        // systemctl(1): `systemctl reload UNIT...`; this records it.
        let systemctl = bin.join("systemctl");
        fs::write(
            &systemctl,
            format!(
                "#!/bin/sh\n[ \"$1\" = reload ] && [ -n \"$2\" ] || {{ echo \"systemctl: bad call: $*\" >&2; exit 1; }}\necho \"$*\" >>{}\n",
                dir.path().join("systemctl.log").display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&systemctl, fs::Permissions::from_mode(0o755)).unwrap();
        HardenRoot { dir }
    }

    fn root(&self) -> std::path::PathBuf {
        self.dir.path().join("root")
    }

    fn harden(&self, mode: &str, seconds: &str) -> Output {
        let path = format!(
            "{}:/usr/sbin:/usr/bin:/sbin:/bin",
            self.dir.path().join("bin").display()
        );
        run(Command::new("bash")
            .arg(repo_root().join("compiler/src/host/harden.sh"))
            .arg(self.root())
            .args(["waddle-proxmox01", "203.0.113.10", mode, "n1", seconds])
            .env("PATH", path))
    }

    fn reloads(&self) -> usize {
        fs::read_to_string(self.dir.path().join("systemctl.log"))
            .unwrap_or_default()
            .lines()
            .filter(|line| *line == "reload ssh")
            .count()
    }
}

/// The sshd change undoes itself when no fresh login proves it: the
/// watchdog restores the previous configuration and reloads sshd again.
/// The real `sshd -T` confirms the drop-in's effect while it is there.
/// Stand-in: `systemctl` (records `reload ssh`).
#[test]
fn hardening_without_a_proving_login_is_undone_by_the_host() {
    let lab = HardenRoot::new();
    let shellcheck = run(Command::new("shellcheck")
        .args(["-s", "bash"])
        .arg(repo_root().join("compiler/src/host/harden.sh")));
    assert!(shellcheck.status.success(), "{}", text(&shellcheck.stdout));

    let output = lab.harden("check", "2");
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.contains("would change: ") && stdout.contains("etc/hosts"),
        "{stdout}"
    );
    assert!(stdout.contains("would change: sshd"), "{stdout}");
    assert!(!lab
        .root()
        .join("etc/ssh/sshd_config.d/00-waddlec.conf")
        .exists());

    let output = lab.harden("apply", "2");
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains("awaiting proof: "));
    let dropin = lab.root().join("etc/ssh/sshd_config.d/00-waddlec.conf");
    assert!(dropin.exists());
    let effective = run(Command::new("sshd")
        .arg("-T")
        .arg("-f")
        .arg(lab.root().join("etc/ssh/sshd_config"))
        .args(["-C", "user=root,host=h,addr=192.0.2.1"]));
    let effective = text(&effective.stdout);
    assert!(
        effective.contains("\npasswordauthentication no\n"),
        "{effective}"
    );
    assert_eq!(lab.reloads(), 1);
    let hosts = fs::read_to_string(lab.root().join("etc/hosts")).unwrap();
    assert!(
        hosts.ends_with("203.0.113.10 waddle-proxmox01\n"),
        "{hosts}"
    );

    // No proof arrives: within its 2 s the watchdog restores and reloads.
    std::thread::sleep(std::time::Duration::from_secs(5));
    assert!(!dropin.exists(), "the drop-in was not taken back");
    assert_eq!(lab.reloads(), 2);
}

/// A main config that does not include the drop-in directory would make
/// the drop-in a no-op: refused, nothing written.
#[test]
fn hardening_refuses_an_sshd_config_without_the_drop_in_directory() {
    let lab = HardenRoot::new();
    let config = lab.root().join("etc/ssh/sshd_config");
    let text_before = fs::read_to_string(&config).unwrap();
    let without: String = text_before
        .lines()
        .filter(|line| !line.starts_with("Include"))
        .map(|line| format!("{line}\n"))
        .collect();
    fs::write(&config, without).unwrap();
    let output = lab.harden("apply", "2");
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("sshd_config.d"));
    assert!(!lab
        .root()
        .join("etc/ssh/sshd_config.d/00-waddlec.conf")
        .exists());
    assert_eq!(lab.reloads(), 0);
}
