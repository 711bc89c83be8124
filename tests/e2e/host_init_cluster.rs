//! `waddlec host init` of a `[cluster]` (`blueprints/examples/three-hosts.toml`)
//! against three real sshds (`support::ssh_host`, each in its own network
//! namespace, reached as `pve1`..`pve3` through one ssh config, each host's
//! files under `ROOT/NODE` with `--host-root ROOT`, a link to the root its
//! sshd really runs with, so hardening takes effect) and the Proxmox VE API
//! simulator as a three-node cluster (`tests/pve-sim/`, held to PVE's API
//! schema, users, roles, ACLs, tokens and their permission checks), whose
//! own `pvesh` every host's sessions run: one `/etc/pve` for the three, as
//! pmxcfs gives a real cluster, so the simulator's request journal shows
//! how often the identity was made.
//!
//! Each node serves its own API certificate (`/etc/pve/local/pve-ssl.pem`
//! is that node's): pve1's is the simulator's, the one `--api` reaches;
//! pve2's and pve3's are their own, made here with openssl.
//!
//! Stand-ins: the Proxmox API and `pvesh` (the simulator), `systemctl`
//! (`tests/support/host_tools_stand_in.py`: records; `reload ssh` sends
//! SIGHUP to that host's sshd). Everything else (ssh, sshd, bash,
//! openssl) is real.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::support::cluster_lab::NODES;
use crate::support::pve_sim::PveSim;
use crate::support::ssh_host::SshHost;
use crate::support::{repo_root, require, run, text, waddlec};

const TOKEN_FILE: &str = "pve-token";

struct Lab {
    sim: PveSim,
    hosts: Vec<SshHost>,
    /// `ROOT`: `ROOT/NODE` is each host's root (a link to its sshd's).
    roots: tempfile::TempDir,
    config: PathBuf,
    dir: tempfile::TempDir,
}

impl Lab {
    fn new() -> Lab {
        require("openssl");
        let sim = PveSim::start_cluster(&NODES, &[]);
        let dir = tempfile::tempdir().unwrap();
        let roots = tempfile::tempdir().unwrap();
        let mut config = String::new();
        let hosts: Vec<SshHost> = NODES
            .iter()
            .map(|node| {
                let host = SshHost::start_with_pve(&sim.pvesh_socket());
                let certificate = if *node == NODES[0] {
                    sim.certificate()
                } else {
                    own_certificate(dir.path(), node)
                };
                host.install_proxmox_files(&certificate);
                let root = roots.path().join(node);
                std::os::unix::fs::symlink(host.host_root(), &root).unwrap();
                // The drop-in directory as the host's root names it, the
                // same directory: sshd reads it on the reload.
                let sshd_config = root.join("etc/ssh/sshd_config");
                let own = fs::read_to_string(&sshd_config).unwrap().replace(
                    &format!("Include {}", host.host_root().display()),
                    &format!("Include {}", root.display()),
                );
                fs::write(&sshd_config, own).unwrap();
                config.push_str(
                    &fs::read_to_string(&host.config)
                        .unwrap()
                        .replace("Host waddle-host", &format!("Host {node}")),
                );
                host
            })
            .collect();
        let config_path = dir.path().join("ssh_config");
        fs::write(&config_path, config).unwrap();
        let mut document: toml::Table =
            fs::read_to_string(repo_root().join("blueprints/examples/three-hosts.toml"))
                .unwrap()
                .parse()
                .unwrap();
        let cluster = document["cluster"].as_table_mut().unwrap();
        cluster.insert("api_token".into(), format!("file:{TOKEN_FILE}").into());
        for host in cluster["host"].as_array_mut().unwrap() {
            let host = host.as_table_mut().unwrap();
            let node = host["node"].as_str().unwrap().to_string();
            host.insert("ssh".into(), node.into());
            host.remove("api_fingerprint");
        }
        fs::write(
            dir.path().join("blueprint.toml"),
            toml::to_string(&document).unwrap(),
        )
        .unwrap();
        Lab {
            sim,
            hosts,
            roots,
            config: config_path,
            dir,
        }
    }

    /// `path` on `node`.
    fn file(&self, node: &str, path: &str) -> PathBuf {
        self.roots.path().join(node).join(path)
    }

    fn record(&self, node: &str) -> PathBuf {
        self.dir.path().join(format!("blueprint.{node}.host.toml"))
    }

    fn init(&self, extra: &[&str]) -> Output {
        run(waddlec()
            .current_dir(self.dir.path())
            .args(["host", "init", "blueprint.toml", "--ssh-config"])
            .arg(&self.config)
            .arg("--host-root")
            .arg(self.roots.path())
            .args(["--api", &self.sim.url, "--format", "json"])
            .args(extra))
    }

    fn init_ok(&self, extra: &[&str]) -> Value {
        let output = self.init(extra);
        assert!(output.status.success(), "{}", text(&output.stderr));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// How many requests from `since` on were `METHOD path`.
    fn count(&self, since: usize, change: &str) -> usize {
        self.sim
            .changes_since(since)
            .iter()
            .filter(|c| *c == change)
            .count()
    }

    /// Makes `node` unreachable (nothing listens on port 2), or reachable
    /// again.
    fn reachable(&self, node: &str, yes: bool) {
        let config = fs::read_to_string(&self.config).unwrap();
        let host = format!("Host {node}\n");
        let unreachable = format!("Host {node}\n  Port 2\n");
        let config = if yes {
            config.replace(&unreachable, &host)
        } else {
            config.replace(&host, &unreachable)
        };
        fs::write(&self.config, config).unwrap();
    }
}

/// A certificate of `node`'s own (as `pvecm` makes each node's pve-ssl.pem).
fn own_certificate(dir: &Path, node: &str) -> PathBuf {
    let cert = dir.join(format!("{node}.pem"));
    let output = run(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "2",
            "-subj",
        ])
        .arg(format!("/CN={node}"))
        .arg("-keyout")
        .arg(dir.join(format!("{node}.key")))
        .arg("-out")
        .arg(&cert));
    assert!(output.status.success(), "{}", text(&output.stderr));
    cert
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

/// The report's entry for `node`.
fn host<'a>(report: &'a Value, node: &str) -> &'a Value {
    report["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["node"] == node)
        .unwrap_or_else(|| panic!("{node} not in {report:#}"))
}

const USER_CREATE: &str = "POST /api2/json/access/users";
const TOKEN_CREATE: &str = "POST /api2/json/access/users/waddlec@pve/token/deploy";

/// From three bare hosts: a dry run says per node what it would record
/// and change, and changes nothing; the run records each host's own key
/// and certificate in its own record, hardens each, and makes the API
/// identity once (one user, one token: the simulator's journal) with the
/// cluster's grants, whose token reads the cluster's status; a second run
/// changes nothing anywhere.
#[test]
fn host_init_of_a_cluster_pins_each_host_and_makes_the_identity_once() {
    let lab = Lab::new();

    let report = lab.init_ok(&["--dry-run"]);
    for node in NODES {
        let entry = host(&report, node);
        assert_eq!(entry["outcome"], "would record", "{report:#}");
        assert!(
            entry["changes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c.as_str().unwrap().starts_with("would change: sshd")),
            "{node}: {report:#}"
        );
    }
    let changes = report["changes"].to_string();
    assert!(
        changes.contains("would change: create API user waddlec@pve")
            && changes.contains("would change: grant WaddlecSdnZone on /sdn/zones/trio"),
        "{changes}"
    );
    assert_eq!(report["token"], "would be made");
    assert_eq!(lab.sim.changes_since(0), Vec::<String>::new());
    for node in NODES {
        assert!(!lab.record(node).exists(), "{node}");
    }

    let before = lab.sim.requests().len();
    let output = lab.init(&[]);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["identity_made_on"], "pve1");
    // pvesh ran on pve1's host alone (each sshd's own log).
    let pvesh_on = |i: usize| {
        lab.hosts[i]
            .calls()
            .lines()
            .filter(|line| line.starts_with("pvesh "))
            .count()
    };
    assert!(pvesh_on(0) > 0, "{}", lab.hosts[0].calls());
    assert_eq!((pvesh_on(1), pvesh_on(2)), (0, 0));
    // The text report: each node's record, then the cluster's identity.
    for node in NODES {
        assert!(
            stderr.contains(&format!("blueprint.{node}.host.toml recorded host {node}:")),
            "{stderr}"
        );
    }
    assert!(
        stderr.contains("the cluster's API identity (over pve1)"),
        "{stderr}"
    );
    // The ACLs were read over one host only: before the token and after.
    let acl_reads = lab.sim.requests()[before..]
        .iter()
        .filter(|r| r["method"] == "GET" && r["path"] == "/api2/json/access/acl")
        .count();
    assert_eq!(acl_reads, 2);
    for (node, ssh_host) in NODES.iter().zip(&lab.hosts) {
        let record: toml::Table = fs::read_to_string(lab.record(node))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(record["node"].as_str(), Some(*node));
        // Its own sshd's key (without the comment), its own certificate.
        let key = ssh_host.host_public_key();
        let key: Vec<&str> = key.split_whitespace().take(2).collect();
        assert_eq!(
            record["ssh_host_key"].as_str(),
            Some(key.join(" ").as_str())
        );
        let certificate = fingerprint(&lab.file(node, "etc/pve/local/pve-ssl.pem"));
        assert_eq!(
            record["api_fingerprint"].as_str(),
            Some(certificate.as_str()),
            "{node}"
        );
        assert_eq!(host(&report, node)["outcome"], "recorded");
        // Hardened: its own drop-in, its own name at its address on the
        // hosts' network (its cluster address, not its public one).
        assert!(lab
            .file(node, "etc/ssh/sshd_config.d/00-waddlec.conf")
            .exists());
        let hosts = fs::read_to_string(lab.file(node, "etc/hosts")).unwrap();
        let address = format!(
            "172.16.0.{} {node}",
            11 + NODES.iter().position(|n| n == node).unwrap()
        );
        assert!(hosts.contains(&address), "{node}: {hosts}");
        assert!(ssh_host.calls().contains("systemctl reload ssh"), "{node}");
    }
    // Each node's own certificate: three different ones.
    let mut prints: Vec<String> = NODES
        .iter()
        .map(|node| host(&report, node)["record"]["api_fingerprint"].to_string())
        .collect();
    prints.sort();
    prints.dedup();
    assert_eq!(prints.len(), 3, "{prints:?}");
    // The identity, once: one user, one token.
    assert_eq!(
        lab.count(before, USER_CREATE),
        1,
        "{:#?}",
        lab.sim.changes_since(before)
    );
    assert_eq!(lab.count(before, TOKEN_CREATE), 1);
    let token = fs::read_to_string(lab.dir.path().join(TOKEN_FILE)).unwrap();
    let token = token.trim();
    assert!(token.starts_with("waddlec@pve!deploy="));
    // A cluster deploy's first read: Sys.Audit on `/` alone.
    let status = lab.sim.get_with_token(token, "/cluster/status");
    assert_eq!(status.0, 200, "{}", status.1);
    let violations = lab.sim.violations();
    assert!(violations.is_empty(), "{violations:#?}");

    // Again: nothing changes, on any host, in the API or in the records.
    let records: Vec<Vec<u8>> = NODES
        .iter()
        .map(|n| fs::read(lab.record(n)).unwrap())
        .collect();
    let before = lab.sim.requests().len();
    let report = lab.init_ok(&[]);
    assert_eq!(report["changes"], serde_json::json!([]));
    assert_eq!(report["token"], "kept (it works)");
    for node in NODES {
        assert_eq!(host(&report, node)["outcome"], "already records");
        assert_eq!(
            host(&report, node)["changes"],
            serde_json::json!([]),
            "{node}"
        );
    }
    assert_eq!(lab.sim.changes_since(before), Vec::<String>::new());
    let again: Vec<Vec<u8>> = NODES
        .iter()
        .map(|n| fs::read(lab.record(n)).unwrap())
        .collect();
    assert_eq!(again, records);
}

/// pve2 unreachable: pve1 is recorded and the identity made, the error
/// names pve2 and says how to go on, pve3 is not touched; reachable again,
/// the next run goes on (pve1 unchanged, the identity not made again).
/// Then a changed key on pve3 is refused naming pve3, every record left as
/// it was, until --repin; and a blueprint `api_fingerprint` that is not
/// what pve2's API serves is refused on pve2.
#[test]
fn a_cluster_host_that_fails_stops_the_run_there_and_the_next_run_goes_on() {
    let lab = Lab::new();
    lab.reachable("pve2", false);
    let output = lab.init(&[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(75), "{stderr}");
    assert!(
        stderr.contains("on pve2: ") && stderr.contains("did not answer"),
        "{stderr}"
    );
    assert!(
        stderr.contains("pve1 stay recorded")
            && stderr.contains("run `waddlec host init` again: it goes on from pve2"),
        "{stderr}"
    );
    assert!(lab.record("pve1").exists());
    assert!(!lab.record("pve2").exists() && !lab.record("pve3").exists());
    assert!(!lab
        .file("pve3", "etc/ssh/sshd_config.d/00-waddlec.conf")
        .exists());
    assert_eq!(lab.count(0, USER_CREATE), 1);

    lab.reachable("pve2", true);
    let before = lab.sim.requests().len();
    let report = lab.init_ok(&[]);
    assert_eq!(host(&report, "pve1")["outcome"], "already records");
    assert_eq!(host(&report, "pve2")["outcome"], "recorded");
    assert_eq!(host(&report, "pve3")["outcome"], "recorded");
    assert_eq!(report["token"], "kept (it works)");
    assert_eq!(lab.count(before, USER_CREATE), 0);
    assert_eq!(lab.count(before, TOKEN_CREATE), 0);

    // pve3 reinstalled: another host key.
    let records: Vec<Vec<u8>> = NODES
        .iter()
        .map(|n| fs::read(lab.record(n)).unwrap())
        .collect();
    let other = lab.dir.path().join("other_key");
    let keygen = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other));
    assert!(keygen.status.success());
    fs::copy(
        other.with_extension("pub"),
        lab.file("pve3", "etc/ssh/ssh_host_ed25519_key.pub"),
    )
    .unwrap();
    let output = lab.init(&[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("on pve3: ")
            && stderr.contains("blueprint.pve3.host.toml")
            && stderr.contains("SSH host key")
            && stderr.contains("--repin=pve3"),
        "{stderr}"
    );
    // A bare --repin would re-pin whatever changed, unseen: a cluster's
    // names the node checked. Naming another node re-pins nothing.
    let bare = lab.init(&["--repin"]);
    assert_eq!(bare.status.code(), Some(2), "{}", text(&bare.stderr));
    assert!(
        text(&bare.stderr).contains("`--repin=NODE` with NODE one of pve1, pve2, pve3"),
        "{}",
        text(&bare.stderr)
    );
    let unknown = lab.init(&["--repin=pve9"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown.stderr));
    let other_node = lab.init(&["--repin=pve2"]);
    assert_eq!(
        other_node.status.code(),
        Some(6),
        "{}",
        text(&other_node.stderr)
    );
    assert!(text(&other_node.stderr).contains("--repin=pve3"));
    let after: Vec<Vec<u8>> = NODES
        .iter()
        .map(|n| fs::read(lab.record(n)).unwrap())
        .collect();
    assert_eq!(after, records);

    // The blueprint pins pve2 to another certificate (pve1's): refused on
    // pve2, before pve3.
    let pve1 = fingerprint(&lab.file("pve1", "etc/pve/local/pve-ssl.pem"));
    let path = lab.dir.path().join("blueprint.toml");
    let mut document: toml::Table = fs::read_to_string(&path).unwrap().parse().unwrap();
    document["cluster"]["host"].as_array_mut().unwrap()[1]
        .as_table_mut()
        .unwrap()
        .insert("api_fingerprint".into(), pve1.clone().into());
    fs::write(&path, toml::to_string(&document).unwrap()).unwrap();
    let output = lab.init(&[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("on pve2: ")
            && stderr.contains(&pve1)
            && stderr.contains("api_fingerprint"),
        "{stderr}"
    );
    assert!(!stderr.contains("on pve3"), "{stderr}");
}
