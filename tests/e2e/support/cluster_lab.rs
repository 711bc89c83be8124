//! A deployed `[cluster]`'s lab: `blueprints/examples/three-hosts.toml`
//! with its secrets and the pinned API certificate, built with
//! `--with-secrets --no-images` and stand-in images (`qemu-img create`),
//! against the Proxmox VE API simulator (`tests/pve-sim/`) started as a
//! three-node cluster (pve1..pve3, each with its uplink, `local` and
//! `local-zfs`); deployed through the one API with `--skip-host`.

use std::process::Output;

use serde_json::Value;

use super::pve_sim::{PveSim, TOKEN};
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
        run(waddlec()
            .current_dir(self.lab.path(""))
            .env(GITHUB_SECRET_ENV, GITHUB_SECRET)
            .env(TOKEN_ENV, TOKEN)
            .env("WADDLEC_CACHE_DIR", self.lab.path("cache"))
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
        self.waddlec(&args)
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
