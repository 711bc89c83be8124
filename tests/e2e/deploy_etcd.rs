//! `waddlec deploy --allow-replace talos-cpN` against the Proxmox simulator
//! and a simulated Talos cluster (`support::talos_cluster`), reached as the
//! real one is: through a real sshd in a network namespace playing the
//! Proxmox host, where 10.10.0.10-12:50000 are DNAT'd to the stand-in
//! apids. The simulator and the cluster are tied by a watcher: when the
//! deploy destroys a control plane's VM the node powers off, and when it
//! starts the new VM the node boots with an empty etcd under the same
//! hostname (or, for a node that never comes back, stays off).
//!
//! Checked: the member leaves before its VM is destroyed, the node rejoins
//! and etcd is healthy with three members after; a replace is refused,
//! with nothing changed, while another member is unhealthy; a node that
//! does not come back stops the deploy naming it, and a re-run converges.
//! Never a dead member.
//!
//! In place, without `--allow-replace`: a new machine config reaches the
//! node through `ApplyConfiguration` with the build's bytes and the VM's
//! seed disk and description are brought current; a new Talos image is an
//! `Upgrade` to the factory installer; an upgrade is refused, nothing
//! changed, while another member is unhealthy. Never a destroy; a re-run
//! has nothing to do.

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use waddlec::net::talos_api::{TalosClient, TalosIdentity};
use waddlec::secrets::talos::TalosCredentials;

use crate::support::pve_sim::{PveSim, NODE, TOKEN, UPLINK};
use crate::support::ssh_host::SshHost;
use crate::support::talos_cluster::TalosCluster;
use crate::support::talos_lab::{SecretLab, GITHUB_SECRET, GITHUB_SECRET_ENV};
use crate::support::{free_addr, require, run, stand_in_images, text, valid_blueprints, waddlec};

const TOKEN_ENV: &str = "WADDLE_TEST_PVE_TOKEN";
const CPS: [&str; 3] = ["talos-cp1", "talos-cp2", "talos-cp3"];

/// The simulated host with the blueprint deployed, the SSH host in front
/// of the cluster's network, and the simulated cluster behind it.
struct Lab {
    sim: PveSim,
    lab: SecretLab,
    host: SshHost,
    cluster: TalosCluster,
}

impl Lab {
    fn deployed() -> Lab {
        for tool in ["qemu-img", "iptables", "curl"] {
            require(tool);
        }
        let sim = PveSim::start_with(&["--bridge", UPLINK, "--bridge", "vmbr1=10.10.0.1/24"]);
        let fingerprint = sim.fingerprint.clone();
        let lab = SecretLab::edited(&valid_blueprints()[0], |document| {
            let host = document["host"].as_table_mut().unwrap();
            host.insert("api_fingerprint".into(), fingerprint.into());
            host.insert("api_token".into(), format!("env:{TOKEN_ENV}").into());
            host.insert("ssh".into(), "waddle-host".into());
        });
        lab.init();
        let output = waddlec_in(&lab)
            .args(["build", "blueprint.toml", "--with-secrets", "--no-images"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
        stand_in_images::write(&lab.path("dist"));

        let host = SshHost::start();
        // As `host init` records it: the tunnel pins this key.
        let key: Vec<String> = host
            .host_public_key()
            .split_whitespace()
            .take(2)
            .map(str::to_string)
            .collect();
        fs::write(
            lab.path("blueprint.host.toml"),
            format!(
                "version = 1\nnode = \"{NODE}\"\nssh_host_key = \"{}\"\napi_fingerprint = \"{}\"\n",
                key.join(" "),
                sim.fingerprint
            ),
        )
        .unwrap();
        let credentials = credentials(&lab);
        let cluster = TalosCluster::start(&credentials.bundle, 3, 0);
        name_as_blueprint(&cluster, &credentials);
        // Inside the "Proxmox host": each node's Talos API leads to its
        // stand-in (through a relay: the stand-ins listen on loopback).
        let mut rules = format!("ip route add 10.10.0.0/24 via {}", host.host_side);
        for i in 0..CPS.len() {
            let relay = relay(&host.host_side, cluster.endpoint(i).connect);
            rules.push_str(&format!(
                " && iptables -t nat -A OUTPUT -d {}/32 -p tcp --dport 50000 -j DNAT --to-destination {relay}",
                cluster.name(i)
            ));
        }
        host.netns.sh(&rules);
        let lab = Lab {
            sim,
            lab,
            host,
            cluster,
        };
        // A fresh deploy creates the VMs; no etcd check (nothing replaced).
        let output = lab.deploy(&[]);
        assert!(
            output.status.success(),
            "{}\n{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        assert!(!text(&output.stdout).contains("etcd "));
        lab
    }

    fn deploy(&self, extra: &[&str]) -> Output {
        let config = self.host.config.display().to_string();
        let mut command = waddlec_in(&self.lab);
        command.args([
            "deploy",
            "blueprint.toml",
            "--tree",
            "dist",
            "--api",
            &self.sim.url,
            "--skip-host",
            "--ssh-config",
            &config,
            "--yes",
            "--agent-timeout",
            "20",
        ]);
        command.args(extra);
        run(&mut command)
    }

    /// The deploy, with the watcher playing the VM's guest: destroyed →
    /// powered off; started → boots as a new node under the same hostname
    /// if `comes_back`. Returns the output and what the watcher saw.
    fn deploy_watched(&self, extra: &[&str], comes_back: bool) -> (Output, Vec<String>) {
        let done = AtomicBool::new(false);
        let seen = Mutex::new(Vec::new());
        let output = std::thread::scope(|scope| {
            scope.spawn(|| self.watch(&done, &seen, comes_back));
            let output = self.deploy(extra);
            done.store(true, Ordering::SeqCst);
            output
        });
        (output, seen.into_inner().unwrap())
    }

    fn watch(&self, done: &AtomicBool, seen: &Mutex<Vec<String>>, comes_back: bool) {
        let mut read = self.sim.requests().len();
        while !done.load(Ordering::SeqCst) {
            let requests = self.sim.requests();
            for request in &requests[read..] {
                let (method, path) = (
                    request["method"].as_str().unwrap_or(""),
                    request["path"].as_str().unwrap_or(""),
                );
                if method == "DELETE" && path.ends_with("/qemu/111") {
                    // What etcd holds the moment the VM goes.
                    let members: Vec<String> = self
                        .cluster
                        .members()
                        .into_iter()
                        .map(|m| m.hostname)
                        .collect();
                    let leaves = self
                        .cluster
                        .calls()
                        .iter()
                        .filter(|c| c.method == "EtcdLeaveCluster" && c.target == Some(1))
                        .count();
                    seen.lock().unwrap().push(format!(
                        "destroy: members {} leaves {leaves}",
                        members.join(",")
                    ));
                    self.cluster.power_off(1);
                }
                if method == "POST" && path.ends_with("/qemu/111/status/start") {
                    seen.lock().unwrap().push("start".into());
                    if comes_back {
                        self.cluster.replace_without_leave(1, "talos-cp2");
                    }
                }
            }
            read = requests.len();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// VM 111 as if it ran an older seed: its next plan replaces it.
    fn age_seed_of_cp2(&self) {
        self.age_cp2("seed=", "talos-cp2-seed-000000000000.raw");
    }

    fn description_of_cp2(&self) -> String {
        self.sim.state()["vms"]["111"]["config"]["description"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// VM 111's description naming `file` as its `key` (`seed=`, `image=`).
    fn age_cp2(&self, key: &str, file: &str) {
        let description = self.description_of_cp2();
        let seed = description
            .split_whitespace()
            .find(|w| w.starts_with(key))
            .unwrap()
            .to_string();
        let old = description.replace(&seed, &format!("{key}{file}"));
        let output = run(Command::new("curl")
            .args(["-sS", "-k", "--fail-with-body", "-X", "PUT"])
            .arg("-H")
            .arg(format!("Authorization: PVEAPIToken={TOKEN}"))
            .arg("--data-urlencode")
            .arg(format!("description={old}"))
            .arg(format!(
                "{}/api2/json/nodes/{NODE}/qemu/111/config",
                self.sim.url
            )));
        assert!(output.status.success(), "{}", text(&output.stderr));
    }

    fn member_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .cluster
            .members()
            .into_iter()
            .map(|m| m.hostname)
            .collect();
        names.sort();
        names
    }

    fn assert_no_violations(&self) {
        let violations = self.sim.violations();
        assert!(violations.is_empty(), "schema violations: {violations:#?}");
    }
}

fn waddlec_in(lab: &SecretLab) -> Command {
    let mut command = waddlec();
    command
        .current_dir(lab.path(""))
        .env(GITHUB_SECRET_ENV, GITHUB_SECRET)
        .env(TOKEN_ENV, TOKEN)
        .env("WADDLEC_CACHE_DIR", lab.path("cache"));
    command
}

fn credentials(lab: &SecretLab) -> TalosCredentials {
    lab.credentials()
}

/// The simulated nodes start as `cp1`…; the blueprint's are `talos-cp1`…:
/// each node is rebuilt under the blueprint's name and its old member
/// removed, so the cluster starts healthy with the blueprint's members.
fn name_as_blueprint(cluster: &TalosCluster, credentials: &TalosCredentials) {
    let identity = TalosIdentity::from_credentials(credentials).unwrap();
    for (i, name) in CPS.iter().enumerate() {
        let old = cluster.member_of(i).unwrap();
        cluster.replace_without_leave(i, name);
        // The old boot's server stops first.
        std::thread::sleep(Duration::from_millis(300));
        let client = TalosClient::new(&cluster.endpoint(i), &identity).unwrap();
        client.wait_until_up(Duration::from_secs(10)).unwrap();
        client.etcd_remove_member(old).unwrap();
    }
    let mut names: Vec<String> = cluster.members().into_iter().map(|m| m.hostname).collect();
    names.sort();
    assert_eq!(names, CPS);
    assert!(cluster.members().iter().all(|m| m.healthy));
}

/// Relays connections to `listen_ip` (a free port) on to `to`; returns
/// where it listens. A connection to a node that is down is dropped, as a
/// refused one would be.
fn relay(listen_ip: &str, to: SocketAddr) -> SocketAddr {
    let addr = free_addr(listen_ip);
    let listener = TcpListener::bind(addr).unwrap();
    std::thread::spawn(move || {
        for incoming in listener.incoming() {
            let Ok(incoming) = incoming else { continue };
            let Ok(outgoing) = TcpStream::connect(to) else {
                continue;
            };
            for (mut from, mut into) in [
                (incoming.try_clone().unwrap(), outgoing.try_clone().unwrap()),
                (outgoing, incoming),
            ] {
                std::thread::spawn(move || {
                    let mut buffer = [0u8; 16384];
                    loop {
                        match from.read(&mut buffer) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if std::io::Write::write_all(&mut into, &buffer[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                    let _ = into.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    addr
}

#[test]
fn a_control_plane_leaves_etcd_before_its_vm_goes_and_rejoins_after() {
    let lab = Lab::deployed();
    lab.age_seed_of_cp2();
    let before = lab.sim.requests().len();
    let (output, seen) = lab.deploy_watched(
        &["--allow-replace", "talos-cp2", "--talos-wait", "60"],
        true,
    );
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}\n{seen:?}");
    for line in [
        "etcd     talos-cp2 leaves etcd (member ",
        "replace  VM 111 talos-cp2 (seed (configuration) talos-cp2-seed-000000000000.raw → ",
        "etcd     wait until talos-cp2 (VM 111) answers its Talos API and etcd is healthy with talos-cp1, talos-cp2, talos-cp3",
    ] {
        assert!(stdout.contains(line), "{line}\n{stdout}");
    }
    assert!(
        stderr.contains("etcd     talos-cp2 left etcd")
            && stderr.contains(
                "etcd     talos-cp2 is back; etcd is healthy with talos-cp1, talos-cp2, talos-cp3"
            ),
        "{stderr}"
    );
    // The member left (on the node itself) before the VM was destroyed.
    assert_eq!(
        seen,
        ["destroy: members talos-cp1,talos-cp3 leaves 1", "start"],
        "{stderr}"
    );
    let calls = lab.cluster.calls();
    let leave = calls
        .iter()
        .filter(|c| c.method == "EtcdLeaveCluster")
        .collect::<Vec<_>>();
    assert_eq!(leave.len(), 1);
    assert_eq!((leave[0].entry, leave[0].target), (1, Some(1)));
    assert!(leave[0].roles.contains(&"os:admin".to_string()));
    let changes = lab.sim.changes_since(before);
    let destroyed = changes
        .iter()
        .position(|c| c.starts_with("DELETE ") && c.ends_with("/qemu/111"));
    let started = changes
        .iter()
        .position(|c| c.ends_with("/qemu/111/status/start"));
    assert!(destroyed.is_some() && started > destroyed, "{changes:?}");
    // Three healthy members, the new talos-cp2 among them; no dead one.
    assert_eq!(lab.member_names(), CPS);
    assert!(lab.cluster.members().iter().all(|m| m.healthy));
    assert!(lab.cluster.has_quorum());

    // Done: the plan sees no change, and nothing is touched again.
    let before = lab.sim.requests().len();
    let calls_before = lab.cluster.calls().len();
    let output = lab.deploy(&["--allow-replace", "talos-cp2"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("nothing to do"));
    assert_eq!(lab.sim.changes_since(before), Vec::<String>::new());
    assert_eq!(lab.cluster.calls().len(), calls_before, "no Talos call");
    lab.assert_no_violations();
}

#[test]
fn a_replace_is_refused_while_another_member_is_unhealthy_and_nothing_changes() {
    let lab = Lab::deployed();
    lab.age_seed_of_cp2();
    lab.cluster.set_member_unhealthy(2, true);
    let members = lab.cluster.members();
    let before = lab.sim.requests().len();
    let calls_before = lab.cluster.calls().len();
    let (output, seen) = lab.deploy_watched(&["--allow-replace", "talos-cp2"], true);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(6), "{stdout}\n{stderr}");
    let cp3 = format!("{:016x}", lab.cluster.member_of(2).unwrap());
    assert!(
        stdout.contains(&format!(
            "CONFLICT VM 111: talos-cp2 is not replaced now: etcd member {cp3} `talos-cp3` is not healthy (etcd unhealthy: context deadline exceeded)"
        )),
        "{stdout}"
    );
    assert!(
        stderr.contains("the host conflicts with the blueprint; nothing was changed"),
        "{stderr}"
    );
    assert_eq!(lab.sim.changes_since(before), Vec::<String>::new());
    assert!(seen.is_empty(), "{seen:?}");
    assert!(!lab.cluster.calls()[calls_before..]
        .iter()
        .any(|c| c.method.starts_with("EtcdLeave") || c.method.starts_with("EtcdRemove")));
    assert_eq!(lab.cluster.members(), members);

    // Healthy again: the replace goes ahead.
    lab.cluster.set_member_unhealthy(2, false);
    let (output, _) = lab.deploy_watched(
        &["--allow-replace", "talos-cp2", "--talos-wait", "60"],
        true,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(lab.member_names(), CPS);
    lab.assert_no_violations();
}

#[test]
fn a_node_that_never_comes_back_stops_the_deploy_naming_it_and_a_rerun_converges() {
    let lab = Lab::deployed();
    lab.age_seed_of_cp2();
    let started = Instant::now();
    let (output, seen) = lab.deploy_watched(
        &["--allow-replace", "talos-cp2", "--talos-wait", "5"],
        false,
    );
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(69), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(120));
    assert!(
        stderr
            .contains("talos-cp2 did not come back within 5 s: waited for its Talos API to answer")
            && stderr.contains("run deploy again to converge"),
        "{stderr}"
    );
    assert_eq!(seen.len(), 2, "{seen:?}");
    // It left before it went: two healthy members, no dead one.
    assert_eq!(lab.member_names(), ["talos-cp1", "talos-cp3"]);
    assert!(lab.cluster.members().iter().all(|m| m.healthy));
    assert!(lab.cluster.has_quorum());

    // The node boots after all, and joins under its name.
    lab.cluster.replace_without_leave(1, "talos-cp2");
    assert_eq!(lab.member_names(), CPS);
    let before = lab.sim.requests().len();
    let output = lab.deploy(&["--allow-replace", "talos-cp2"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("nothing to do"));
    assert_eq!(lab.sim.changes_since(before), Vec::<String>::new());
    assert!(lab.cluster.members().iter().all(|m| m.healthy));
    lab.assert_no_violations();
}

/// What a deploy did to VM 111 through the API: its changes, minus reads.
fn destroyed_111(lab: &Lab, before: usize) -> bool {
    lab.sim.requests()[before..].iter().any(|r| {
        r["method"].as_str() == Some("DELETE")
            && r["path"].as_str().is_some_and(|p| p.ends_with("/qemu/111"))
    })
}

#[test]
fn a_config_change_is_applied_in_place_and_the_seed_brought_current() {
    let lab = Lab::deployed();
    let current = lab.description_of_cp2();
    lab.age_seed_of_cp2();
    lab.cluster.set_reboot_time(1, Duration::from_millis(500));
    let before = lab.sim.requests().len();
    let output = lab.deploy(&["--talos-wait", "60"]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("config   VM 111 talos-cp2 in place"),
        "{stdout}"
    );
    assert!(!destroyed_111(&lab, before), "{stdout}");
    // The diff is shown, its secrets not.
    assert!(stdout.contains("+    type: controlplane"), "{stdout}");
    assert!(stdout.contains("key: (redacted)"), "{stdout}");
    let built_text =
        String::from_utf8(fs::read(lab.lab.path("dist/vms/talos-cp2/seed/user-data")).unwrap())
            .unwrap();
    let token = built_text
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .unwrap();
    assert!(!stdout.contains(token), "{stdout}");
    // The node runs exactly the bytes the build wrote.
    let built = fs::read(lab.lab.path("dist/vms/talos-cp2/seed/user-data")).unwrap();
    assert_eq!(lab.cluster.config(1), built);
    assert!(lab.cluster.is_up(1));
    assert_eq!(lab.cluster.staged_config(1), None);
    assert!(lab
        .cluster
        .calls()
        .iter()
        .any(|c| c.method == "ApplyConfiguration" && c.target.unwrap_or(c.entry) == 1));
    // The host's copy is current: the description, one seed disk, no
    // leftover import.
    assert_eq!(lab.description_of_cp2(), current);
    let config = &lab.sim.state()["vms"]["111"]["config"];
    assert!(
        !config
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("unused")),
        "{config:#}"
    );
    assert_eq!(lab.member_names(), CPS);

    let again = lab.deploy(&[]);
    let stdout = text(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert!(!stdout.contains("in place"), "{stdout}");
    lab.assert_no_violations();
}

#[test]
fn a_new_talos_image_is_an_upgrade_in_place() {
    let lab = Lab::deployed();
    let current = lab.description_of_cp2();
    // The blueprint's version, as its image's name carries it.
    let wanted = current
        .split_whitespace()
        .find_map(|w| w.strip_prefix("image=talos-"))
        .and_then(|rest| rest.split('-').next())
        .unwrap()
        .to_string();
    assert_ne!(lab.cluster.version(1), wanted);
    lab.age_cp2("image=", "talos-v1.12.0-000000000000.qcow2");
    lab.cluster.set_reboot_time(1, Duration::from_millis(500));
    let before = lab.sim.requests().len();
    let output = lab.deploy(&["--talos-wait", "60"]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("upgrade  VM 111 talos-cp2 in place")
            && stdout.contains("factory.talos.dev/nocloud-installer/"),
        "{stdout}"
    );
    assert!(!destroyed_111(&lab, before), "{stdout}");
    assert!(lab
        .cluster
        .calls()
        .iter()
        .any(|c| c.method == "Upgrade" && c.target.unwrap_or(c.entry) == 1));
    assert_eq!(lab.cluster.version(1), wanted);
    assert_eq!(lab.description_of_cp2(), current);
    assert_eq!(lab.member_names(), CPS);

    let again = lab.deploy(&[]);
    let stdout = text(&again.stdout);
    assert!(again.status.success(), "{stdout}");
    assert!(!stdout.contains("in place"), "{stdout}");
    lab.assert_no_violations();
}

#[test]
fn an_upgrade_is_refused_while_another_member_is_unhealthy_and_nothing_changes() {
    let lab = Lab::deployed();
    lab.age_cp2("image=", "talos-v1.12.0-000000000000.qcow2");
    let aged = lab.description_of_cp2();
    lab.cluster.set_member_unhealthy(2, true);
    let version = lab.cluster.version(1);
    let before = lab.sim.requests().len();
    let output = lab.deploy(&[]);
    let (stdout, stderr) = (text(&output.stdout), text(&output.stderr));
    assert_eq!(output.status.code(), Some(6), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("CONFLICT VM 111: talos-cp2 is not taken down now")
            && stdout.contains("talos-cp3"),
        "{stdout}"
    );
    assert_eq!(lab.sim.changes_since(before), Vec::<String>::new());
    assert!(!lab.cluster.calls().iter().any(|c| c.method == "Upgrade"));
    assert_eq!(lab.cluster.version(1), version);
    assert_eq!(lab.description_of_cp2(), aged);
    lab.assert_no_violations();
}
