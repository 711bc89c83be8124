//! The deploy lab: `blueprints/waddle.toml` (three control planes
//! `talos-cp1`…`talos-cp3`, VMs 110-112, and optionally workers
//! `talos-w1`…, VMs 113…) deployed by the real `waddlec deploy`, with every
//! peer a stand-in:
//!
//! - the Proxmox VE API: the simulator (`pve_sim`, `tests/pve-sim/`), which
//!   journals every request and refuses what the API schema refuses;
//! - the Proxmox host reached over SSH: a real sshd in a network namespace
//!   (`ssh_host`), through which deploy tunnels to the Talos API; inside it,
//!   each node's address `10.10.0.1X:50000` is DNAT'd to a relay on the
//!   veth that leads to the node's stand-in apid;
//! - the Talos cluster: `talos_cluster`'s simulated nodes behind stand-in
//!   apids (mTLS from the lab's own bundle), one simulated etcd with
//!   faults, renamed to the blueprint's hostnames before the first deploy;
//! - the secrets: a `talos_lab::SecretLab` (the bundle made by `secrets
//!   init`, the GitHub secret from the environment, upstream manifests
//!   cached and pinned), and the Proxmox token from the environment;
//! - the images: `stand_in_images`' small qcow2 files instead of baked ones
//!   (builds run with `--no-images`);
//! - the Image Factory deploy asks which Talos versions it has before an
//!   upgrade: a `file_server` answering `GET /versions` (and
//!   `?broken=true`) as siderolabs/image-factory's
//!   `internal/frontend/http/metadata/handler.go` does, a JSON array of
//!   tags (`FACTORY_VERSIONS`, changed by a test with `Lab::factory`);
//! - the VMs' guests: a watcher thread that reads the simulator's journal
//!   during a deploy and plays each Talos VM's guest on the simulated
//!   cluster ([`Guest`]) — a destroyed VM's node powers off, a started VM's
//!   node boots with an empty etcd under the blueprint's hostname (or stays
//!   off, for a node that never comes back), and, as a real VM does, with
//!   the Talos version of its image and the machine config of its seed
//!   ([`Lab::boot_from_its_files`]: what the seed disk delivers, staged
//!   through another node's apid, so the deploy's own calls, always made
//!   to the node itself, stay apart in `TalosCluster::calls`).
//!
//! The simulator and the cluster are tied only by that watcher, so a test
//! decides what a VM's guest does.

use std::fs;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use waddlec::net::talos_api::{ApplyMode, TalosClient, TalosIdentity, UpgradeRequest};
use waddlec::secrets::talos::TalosCredentials;

use super::file_server::FileServer;
use super::pve_sim::{PveSim, NODE, TOKEN, UPLINK};
use super::ssh_host::SshHost;
use super::talos_cluster::TalosCluster;
use super::talos_lab::{SecretLab, GITHUB_SECRET, GITHUB_SECRET_ENV};
use super::{free_addr, require, run, stand_in_images, text, valid_blueprints, waddlec};

pub const TOKEN_ENV: &str = "WADDLE_TEST_PVE_TOKEN";
/// The blueprint's control planes, in the simulated cluster's order.
pub const CPS: [&str; 3] = ["talos-cp1", "talos-cp2", "talos-cp3"];
/// The first control plane's VM ID; the nodes follow in order.
const FIRST_VMID: u32 = 110;
/// The Talos releases the stand-in factory lists: v1.12.0 to v1.12.11.
pub const FACTORY_VERSIONS: std::ops::RangeInclusive<u32> = 0..=11;

/// What a started Talos VM's guest does on the simulated cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guest {
    /// Boots as a new node under its hostname, running the simulation's
    /// own minimal config and the version it ran before.
    Returns,
    /// Stays off: a node that never comes back.
    NeverReturns,
    /// Boots as a new node under its hostname running its VM's files: the
    /// Talos version its image names and its seed's machine config.
    BootsItsFiles,
}

/// One Talos node of the lab: index `i` in the simulated cluster.
#[derive(Clone, Debug)]
pub struct LabNode {
    /// The VM's name and the node's hostname.
    pub name: String,
    pub vmid: u32,
}

/// The simulated host with the blueprint deployed, the SSH host in front
/// of the cluster's network, and the simulated cluster behind it.
pub struct Lab {
    pub sim: PveSim,
    pub lab: SecretLab,
    pub host: SshHost,
    pub cluster: TalosCluster,
    /// The Talos nodes, control planes first (the cluster's indices).
    pub nodes: Vec<LabNode>,
    /// The stand-in Image Factory (`--factory-url`).
    pub factory: FileServer,
    credentials: TalosCredentials,
}

impl Lab {
    /// Three control planes, no worker, deployed.
    pub fn deployed() -> Lab {
        Self::deployed_with(0, |_| {})
    }

    /// Three control planes and `workers` workers (`talos-w1`…, VMs 113…,
    /// 10.10.0.13…), deployed: the VMs exist and the nodes are etcd's
    /// healthy members under the blueprint's names. The nodes still run
    /// the simulation's own configs and `talos_cluster::START_VERSION`;
    /// the deploy compares the VMs' descriptions, not the nodes. `edit`
    /// changes the blueprint first.
    pub fn deployed_with(workers: usize, edit: impl FnOnce(&mut toml::Table)) -> Lab {
        for tool in ["qemu-img", "iptables", "curl"] {
            require(tool);
        }
        let mut nodes: Vec<LabNode> = CPS
            .iter()
            .map(|name| LabNode {
                name: name.to_string(),
                vmid: 0,
            })
            .chain((1..=workers).map(|n| LabNode {
                name: format!("talos-w{n}"),
                vmid: 0,
            }))
            .collect();
        for (i, node) in nodes.iter_mut().enumerate() {
            node.vmid = FIRST_VMID + i as u32;
        }
        let sim = PveSim::start_with(&["--bridge", UPLINK, "--bridge", "vmbr1=10.10.0.1/24"]);
        let fingerprint = sim.fingerprint.clone();
        let lab = SecretLab::edited(&valid_blueprints()[0], |document| {
            let host = document["host"].as_table_mut().unwrap();
            host.insert("api_fingerprint".into(), fingerprint.into());
            host.insert("api_token".into(), format!("env:{TOKEN_ENV}").into());
            host.insert("ssh".into(), "waddle-host".into());
            let talos_nodes = document["talos"]["node"].as_array_mut().unwrap();
            for (i, node) in nodes.iter().enumerate().skip(CPS.len()) {
                let mut worker = toml::Table::new();
                worker.insert("id".into(), i64::from(node.vmid).into());
                worker.insert("name".into(), node.name.clone().into());
                worker.insert("address".into(), format!("10.10.0.{}", 10 + i).into());
                worker.insert("role".into(), "worker".into());
                talos_nodes.push(worker.into());
            }
            edit(document);
        });
        lab.init();
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
        let cluster = TalosCluster::start(&credentials.bundle, CPS.len(), workers);
        name_as_blueprint(&cluster, &credentials, &nodes);
        // Inside the "Proxmox host": each node's Talos API leads to its
        // stand-in (through a relay: the stand-ins listen on loopback).
        let mut rules = format!("ip route add 10.10.0.0/24 via {}", host.host_side);
        for i in 0..nodes.len() {
            let relay = relay(&host.host_side, cluster.endpoint(i).connect);
            rules.push_str(&format!(
                " && iptables -t nat -A OUTPUT -d {}/32 -p tcp --dport 50000 -j DNAT --to-destination {relay}",
                cluster.name(i)
            ));
        }
        host.netns.sh(&rules);
        let factory = FileServer::start();
        let lab = Lab {
            sim,
            lab,
            host,
            cluster,
            nodes,
            factory,
            credentials,
        };
        lab.factory_lists(FACTORY_VERSIONS.map(|patch| format!("v1.12.{patch}")), []);
        lab.build();
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

    /// `build --with-secrets --no-images` of the lab's blueprint into
    /// `dist`, with the stand-in images beside it.
    pub fn build(&self) {
        let output = waddlec_in(&self.lab)
            .args(["build", "blueprint.toml", "--with-secrets", "--no-images"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output.stderr));
        stand_in_images::write(&self.lab.path("dist"));
    }

    /// The stand-in factory lists `known` Talos versions, `broken` as
    /// broken, from now on.
    pub fn factory_lists(
        &self,
        known: impl IntoIterator<Item = String>,
        broken: impl IntoIterator<Item = String>,
    ) {
        let json = |versions: Vec<String>| serde_json::to_vec(&versions).unwrap();
        self.factory
            .serve("/versions", json(known.into_iter().collect()))
            .serve("/versions?broken=true", json(broken.into_iter().collect()));
    }

    /// The deploy command line, `extra` appended, not yet run.
    pub fn deploy_command(&self, extra: &[&str]) -> Command {
        let config = self.host.config.display().to_string();
        let mut command = waddlec_in(&self.lab);
        command.args([
            "deploy",
            "blueprint.toml",
            "--skip-preflight",
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
            "--factory-url",
            &self.factory.url,
        ]);
        command.args(extra);
        command
    }

    pub fn deploy(&self, extra: &[&str]) -> Output {
        run(&mut self.deploy_command(extra))
    }

    /// The deploy, with the watcher playing the VMs' guests (see
    /// [`Lab::watched`]). Returns the output and what the watcher saw.
    pub fn deploy_watched(&self, extra: &[&str], comes_back: bool) -> (Output, Vec<String>) {
        let guest = if comes_back {
            Guest::Returns
        } else {
            Guest::NeverReturns
        };
        self.watched(guest, || self.deploy(extra))
    }

    /// Runs `during` with the watcher playing the Talos VMs' guests:
    /// destroyed → powered off; started → as `guest` says. Returns
    /// `during`'s result and what the watcher saw: `destroy: members M
    /// leaves N` (etcd's members the moment the VM went, and how many
    /// `EtcdLeaveCluster` calls its node had taken) and `start`.
    pub fn watched<T>(&self, guest: Guest, during: impl FnOnce() -> T) -> (T, Vec<String>) {
        let done = AtomicBool::new(false);
        let seen = Mutex::new(Vec::new());
        let result = std::thread::scope(|scope| {
            scope.spawn(|| self.watch(&done, &seen, guest));
            let result = during();
            done.store(true, Ordering::SeqCst);
            result
        });
        (result, seen.into_inner().unwrap())
    }

    fn watch(&self, done: &AtomicBool, seen: &Mutex<Vec<String>>, guest: Guest) {
        let mut read = self.sim.requests().len();
        loop {
            // One last look after `during` ends: nothing it did is missed.
            let last = done.load(Ordering::SeqCst);
            let requests = self.sim.requests();
            for request in &requests[read..] {
                let (method, path) = (
                    request["method"].as_str().unwrap_or(""),
                    request["path"].as_str().unwrap_or(""),
                );
                for (i, node) in self.nodes.iter().enumerate() {
                    let vm = format!("/qemu/{}", node.vmid);
                    if method == "DELETE" && path.ends_with(&vm) {
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
                            .filter(|c| c.method == "EtcdLeaveCluster" && c.target == Some(i))
                            .count();
                        seen.lock().unwrap().push(format!(
                            "destroy: members {} leaves {leaves}",
                            members.join(",")
                        ));
                        self.cluster.power_off(i);
                    }
                    if method == "POST" && path.ends_with(&format!("{vm}/status/start")) {
                        seen.lock().unwrap().push("start".into());
                        match guest {
                            Guest::Returns => self.cluster.replace_without_leave(i, &node.name),
                            Guest::NeverReturns => {}
                            Guest::BootsItsFiles => {
                                self.cluster.replace_without_leave(i, &node.name);
                                self.boot_from_its_files(i);
                            }
                        }
                    }
                }
            }
            read = requests.len();
            if last {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Node `i` boots again (its etcd member kept) running its VM's files,
    /// as a real VM does: the Talos version its image's name carries and
    /// the machine config of its seed, the build's
    /// `dist/vms/<vm>/seed/user-data`. Both are staged through another
    /// node's apid (`ApplyConfiguration` STAGED, `Upgrade` staged and
    /// forced), then the node boots into them.
    pub fn boot_from_its_files(&self, i: usize) {
        let name = &self.nodes[i].name;
        let description = self.description_of(name);
        let version = description
            .split_whitespace()
            .find_map(|w| w.strip_prefix("image=talos-"))
            .and_then(|rest| rest.split('-').next())
            .unwrap_or_else(|| panic!("no Talos image in {name}'s description {description}"))
            .to_string();
        let seed = fs::read(self.lab.path(&format!("dist/vms/{name}/seed/user-data"))).unwrap();
        let via = (0..self.nodes.len())
            .find(|j| *j != i && self.cluster.is_up(*j))
            .expect("another node is up");
        let identity = TalosIdentity::from_credentials(&self.credentials).unwrap();
        let client = TalosClient::new(&self.cluster.endpoint(via), &identity)
            .unwrap()
            .proxy_to(&self.cluster.name(i));
        client
            .apply_configuration(&seed, ApplyMode::Staged, false)
            .unwrap_or_else(|e| panic!("{name} takes its seed's config: {e}"));
        let image = UpgradeRequest {
            image: format!("factory.talos.dev/nocloud-installer/stand-in:{version}"),
            stage: true,
            force: true,
            ..UpgradeRequest::default()
        };
        client
            .upgrade(&image)
            .unwrap_or_else(|e| panic!("{name} takes its image's version: {e}"));
        self.cluster.power_on(i);
        // The old boot's server stops first; then the node answers.
        std::thread::sleep(Duration::from_millis(300));
        TalosClient::new(&self.cluster.endpoint(i), &identity)
            .unwrap()
            .wait_until_up(Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("{name} is back: {e}"));
    }

    fn vmid(&self, vm: &str) -> u32 {
        self.nodes
            .iter()
            .find(|n| n.name == vm)
            .unwrap_or_else(|| panic!("{vm} is not a node of the lab"))
            .vmid
    }

    /// VM `vm`'s description on the simulated host.
    pub fn description_of(&self, vm: &str) -> String {
        self.sim.state()["vms"][self.vmid(vm).to_string()]["config"]["description"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// VM `vm` as if it ran an older seed: its next plan changes it (in
    /// place, or by a replace when allowed).
    pub fn age_seed(&self, vm: &str) {
        self.age(vm, "seed=", &format!("{vm}-seed-000000000000.raw"));
    }

    /// VM `vm`'s description naming `file` as its `key` (`seed=`, `image=`).
    pub fn age(&self, vm: &str, key: &str, file: &str) {
        let description = self.description_of(vm);
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
                "{}/api2/json/nodes/{NODE}/qemu/{}/config",
                self.sim.url,
                self.vmid(vm)
            )));
        assert!(output.status.success(), "{}", text(&output.stderr));
    }

    /// etcd's members' hostnames, sorted.
    pub fn member_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .cluster
            .members()
            .into_iter()
            .map(|m| m.hostname)
            .collect();
        names.sort();
        names
    }

    pub fn assert_no_violations(&self) {
        let violations = self.sim.violations();
        assert!(violations.is_empty(), "schema violations: {violations:#?}");
    }
}

/// waddlec run in the lab's directory, with its secrets' environment.
pub fn waddlec_in(lab: &SecretLab) -> Command {
    let mut command = waddlec();
    command
        .current_dir(lab.path(""))
        .env(GITHUB_SECRET_ENV, GITHUB_SECRET)
        .env(TOKEN_ENV, TOKEN)
        .env("WADDLEC_CACHE_DIR", lab.path("cache"));
    command
}

/// The Talos credentials `secrets init` wrote in the lab.
pub fn credentials(lab: &SecretLab) -> TalosCredentials {
    lab.credentials()
}

/// The simulated nodes start as `cp1`…, `w1`…; the blueprint's are
/// `nodes`: each node is rebuilt under the blueprint's name and a control
/// plane's old member removed, so the cluster starts healthy with the
/// blueprint's members.
pub fn name_as_blueprint(
    cluster: &TalosCluster,
    credentials: &TalosCredentials,
    nodes: &[LabNode],
) {
    let identity = TalosIdentity::from_credentials(credentials).unwrap();
    for (i, node) in nodes.iter().enumerate() {
        let old = cluster.member_of(i);
        cluster.replace_without_leave(i, &node.name);
        let Some(old) = old else { continue };
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
pub fn relay(listen_ip: &str, to: SocketAddr) -> SocketAddr {
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
