//! A deployed `[cluster]`'s lab: `blueprints/examples/three-hosts.toml`
//! with its secrets and the pinned API certificate, built with
//! `--with-secrets --no-images` and stand-in images (`qemu-img create`),
//! against the Proxmox VE API simulator (`tests/pve-sim/`) started as a
//! three-node cluster (pve1..pve3, each with its uplink, `local` and
//! `local-zfs`); deployed through the one API with `--skip-host`, or with
//! each host set up over ssh on [`SshCluster`]'s three real sshds.

use std::path::{Path, PathBuf};
use std::process::Output;

use serde_json::Value;

use super::pve_sim::{PveSim, TOKEN};
use super::ssh_host::SshHost;
use super::talos_lab::{SecretLab, GITHUB_SECRET, GITHUB_SECRET_ENV};
use super::{repo_root, require, run, stand_in_images, text, waddlec};

pub const TOKEN_ENV: &str = "WADDLE_TEST_PVE_TOKEN";
pub const NODES: [&str; 3] = ["pve1", "pve2", "pve3"];

pub struct ClusterLab {
    pub sim: PveSim,
    pub lab: SecretLab,
}

impl ClusterLab {
    /// The example's three nodes, each with its uplink and its own
    /// `local` and `local-zfs`, plus `storages`; the blueprint changed by
    /// `edit`.
    pub fn new(storages: &[&str], edit: impl FnOnce(&mut toml::Table)) -> Self {
        require("qemu-img");
        let mut args = vec![
            "--storage",
            "local=dir:iso,import,vztmpl,snippets",
            "--storage",
            "local-zfs=zfspool:images,rootdir",
        ];
        for storage in storages {
            args.extend(["--storage", storage]);
        }
        let bridges: Vec<String> = NODES
            .iter()
            .enumerate()
            .map(|(i, node)| {
                format!(
                    "{node}/vmbr0=203.0.113.{}/24,ports=eno1,gateway=203.0.113.1",
                    11 + i
                )
            })
            .collect();
        for bridge in &bridges {
            args.extend(["--bridge", bridge.as_str()]);
        }
        let sim = PveSim::start_cluster(&NODES, &args);
        let fingerprint = sim.fingerprint.clone();
        let lab = SecretLab::edited(
            &repo_root().join("blueprints/examples/three-hosts.toml"),
            |document| {
                let cluster = document["cluster"].as_table_mut().unwrap();
                cluster.insert("api_token".into(), format!("env:{TOKEN_ENV}").into());
                let hosts = cluster["host"].as_array_mut().unwrap();
                hosts[0]
                    .as_table_mut()
                    .unwrap()
                    .insert("api_fingerprint".into(), fingerprint.into());
                edit(document);
            },
        );
        lab.init();
        let lab = ClusterLab { sim, lab };
        lab.build();
        lab
    }

    pub fn build(&self) {
        let output = self.waddlec(&["build", "blueprint.toml", "--with-secrets", "--no-images"]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        stand_in_images::write(&self.lab.path("dist"));
    }

    pub fn waddlec(&self, args: &[&str]) -> Output {
        self.waddlec_with(&[], args)
    }

    /// [`ClusterLab::waddlec`] with `env` besides (`tsh`'s, say).
    pub fn waddlec_with(&self, env: &[(String, String)], args: &[&str]) -> Output {
        run(waddlec()
            .current_dir(self.lab.path(""))
            .env(GITHUB_SECRET_ENV, GITHUB_SECRET)
            .env(TOKEN_ENV, TOKEN)
            .env("WADDLEC_CACHE_DIR", self.lab.path("cache"))
            .envs(env.iter().map(|(name, value)| (name, value)))
            .args(args))
    }

    /// A deploy through the API only (`--skip-host`).
    pub fn deploy(&self, extra: &[&str]) -> Output {
        let mut args = vec!["--skip-host"];
        args.extend_from_slice(extra);
        self.deploy_setting_up(&args)
    }

    /// A deploy that also sets each host up, unless `extra` says
    /// `--skip-host`.
    pub fn deploy_setting_up(&self, extra: &[&str]) -> Output {
        self.deploy_setting_up_with(&[], extra)
    }

    /// [`ClusterLab::deploy_setting_up`] with `env` besides.
    pub fn deploy_setting_up_with(&self, env: &[(String, String)], extra: &[&str]) -> Output {
        let mut args = vec![
            "deploy",
            "blueprint.toml",
            "--skip-preflight",
            "--tree",
            "dist",
            "--api",
            &self.sim.url,
            "--yes",
            "--agent-timeout",
            "20",
        ];
        args.extend_from_slice(extra);
        self.waddlec_with(env, &args)
    }

    /// Rewrites the lab's blueprint.
    pub fn edit(&self, edit: impl FnOnce(&mut toml::Table)) {
        let path = self.lab.path("blueprint.toml");
        let mut document: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
        edit(&mut document);
        std::fs::write(&path, toml::to_string(&document).unwrap()).unwrap();
    }

    pub fn assert_no_violations(&self) {
        let violations = self.sim.violations();
        assert!(violations.is_empty(), "{violations:#?}");
    }

    /// `POST …/storage/STORAGE/upload` requests, as `node file`.
    pub fn uploads(&self) -> Vec<String> {
        self.sim
            .requests()
            .iter()
            .filter(|r| r["method"] == "POST")
            .filter_map(|r| {
                let path = r["path"].as_str()?;
                let rest = path.strip_prefix("/api2/json/nodes/")?;
                let (node, rest) = rest.split_once('/')?;
                rest.ends_with("/upload")
                    .then(|| format!("{node} {}", r["params"]["filename"].as_str().unwrap_or("")))
            })
            .collect()
    }
}

/// The three hosts as real sshds (`SshHost`: each in its own network
/// namespace, with the stand-ins of `tests/support/host_tools_stand_in.py`
/// and the simulator's own `pvesh`; real `iptables`, `sysctl` and `ip`),
/// each host `ssh = "NODE"` ([`over_ssh`]) through one ssh config naming
/// all three, each installing under its own root `ROOT/NODE`
/// (`--host-root ROOT`). Their VNet `vnet1` is a Linux bridge made in each
/// namespace, as applying the SDN zone makes it on a node.
pub struct SshCluster {
    /// In the order of [`NODES`].
    pub hosts: Vec<SshHost>,
    pub config: PathBuf,
    pub roots: tempfile::TempDir,
}

impl SshCluster {
    pub fn start(lab: &ClusterLab) -> Self {
        let mut config = String::new();
        let hosts: Vec<SshHost> = NODES
            .iter()
            .map(|node| {
                let host = SshHost::start_with_pve(&lab.sim.pvesh_socket());
                host.netns
                    .sh("ip link add vnet1 type bridge && ip link set vnet1 up");
                config.push_str(
                    &std::fs::read_to_string(&host.config)
                        .unwrap()
                        .replace("Host waddle-host", &format!("Host {node}")),
                );
                host
            })
            .collect();
        let path = lab.lab.path("ssh_config");
        std::fs::write(&path, config).unwrap();
        SshCluster {
            hosts,
            config: path,
            roots: tempfile::tempdir().unwrap(),
        }
    }

    /// `path` under `node`'s root.
    pub fn file(&self, node: &str, path: &str) -> PathBuf {
        self.roots.path().join(node).join(path)
    }

    /// `--ssh-config` and `--host-root`: how a command reaches the hosts.
    pub fn args(&self) -> Vec<String> {
        let path = |p: &Path| p.display().to_string();
        vec![
            "--ssh-config".into(),
            path(&self.config),
            "--host-root".into(),
            path(self.roots.path()),
        ]
    }

    /// A deploy that sets each host up, with `extra`.
    pub fn deploy(&self, lab: &ClusterLab, extra: &[&str]) -> Output {
        let args = self.args();
        let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
        args.extend_from_slice(extra);
        lab.deploy_setting_up(&args)
    }
}

/// Each host reached as the node it is (the blueprint edit for
/// [`SshCluster`]).
pub fn over_ssh(document: &mut toml::Table) {
    for host in document["cluster"]["host"].as_array_mut().unwrap() {
        let host = host.as_table_mut().unwrap();
        let node = host["node"].as_str().unwrap().to_string();
        host.insert("ssh".into(), node.into());
    }
}

/// `vm → node` as the blueprint places them.
pub fn placement(lab: &ClusterLab) -> Vec<(String, String)> {
    let placement: Value = serde_json::from_str(
        &std::fs::read_to_string(lab.lab.path("dist/hosts/placement.json")).unwrap(),
    )
    .unwrap();
    placement["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|host| {
            let node = host["node"].as_str().unwrap().to_string();
            host["vms"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |vm| (vm.as_str().unwrap().to_string(), node.clone()))
        })
        .collect()
}

/// The VM named `name` in the simulator's state.
pub fn vm<'a>(state: &'a Value, name: &str) -> (&'a str, &'a Value) {
    state["vms"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, vm)| vm["config"]["name"] == name)
        .map(|(id, vm)| (id.as_str(), vm))
        .unwrap_or_else(|| panic!("no VM {name} in {:#}", state["vms"]))
}

/// Writes `node`'s host record beside `blueprint` as `host init` would
/// (`NAME.NODE.host.toml`), pinning `key` (`TYPE BASE64`, a comment
/// dropped) and the API certificate `api_fingerprint`.
pub fn write_record(blueprint: &Path, node: &str, key: &str, api_fingerprint: &str) {
    let key: Vec<&str> = key.split_whitespace().take(2).collect();
    waddlec::host::record::HostRecord {
        version: 1,
        node: node.to_string(),
        ssh_host_key: key.join(" "),
        api_fingerprint: api_fingerprint.to_string(),
    }
    .save(&blueprint.with_extension(format!("{node}.host.toml")))
    .unwrap();
}
