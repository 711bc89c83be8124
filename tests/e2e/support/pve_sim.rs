//! The launcher of the Proxmox VE API simulator (`tests/pve-sim/`): starts it
//! in a scratch directory, reads its address and certificate fingerprint,
//! sets faults, and reads back its state, request log and schema violations.

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::repo_root;

pub const NODE: &str = "waddle-proxmox01";
pub const TOKEN: &str = "root@pam!waddlec=6f1c2a7e-3b8d-4e0f-9a51-2d7c8e9b0a14";
/// A freshly installed host's network: the uplink bridge on its NIC.
pub const UPLINK: &str = "vmbr0=203.0.113.10/24,ports=eno1,gateway=203.0.113.1";

pub struct PveSim {
    pub url: String,
    pub fingerprint: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl PveSim {
    /// A freshly installed host: the uplink bridge only.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// A host with more arguments to the simulator (`--bridge …`).
    pub fn start_with(args: &[&str]) -> Self {
        Self::start_in(tempfile::tempdir().unwrap(), args)
    }

    /// Started in `dir` (so its `pvesh.sock` path is known before it
    /// starts) with more arguments (e.g. boot mode's).
    pub fn start_in(dir: tempfile::TempDir, args: &[&str]) -> Self {
        Self::start_nodes_in(dir, &[NODE], args)
    }

    /// A cluster of `nodes` (the first answers the API) with more
    /// arguments (`--storage …`, `--bridge NODE/…`).
    pub fn start_cluster(nodes: &[&str], args: &[&str]) -> Self {
        Self::start_nodes_in(tempfile::tempdir().unwrap(), nodes, args)
    }

    fn start_nodes_in(dir: tempfile::TempDir, nodes: &[&str], args: &[&str]) -> Self {
        let log = fs::File::create(dir.path().join("sim.log")).unwrap();
        let child = Command::new("/usr/bin/python3")
            .arg(repo_root().join("tests/pve-sim/pve_sim.py"))
            .arg("--dir")
            .arg(dir.path())
            .args(nodes.iter().flat_map(|node| ["--node", node]))
            .args(["--token", TOKEN])
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("python3 runs the simulator");
        let ready = dir.path().join("ready.json");
        let started = Instant::now();
        while !ready.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "simulator did not start: {}",
                fs::read_to_string(dir.path().join("sim.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let ready: Value = serde_json::from_str(&fs::read_to_string(&ready).unwrap()).unwrap();
        PveSim {
            url: ready["url"].as_str().unwrap().to_string(),
            fingerprint: ready["fingerprint"].as_str().unwrap().to_string(),
            dir,
            child,
        }
    }

    /// Replaces the faults the simulator injects (`faults.json`).
    pub fn faults(&self, faults: Value) {
        let path = self.dir.path().join("faults.json");
        let temp = self.dir.path().join("faults.json.new");
        fs::write(&temp, faults.to_string()).unwrap();
        fs::rename(temp, path).unwrap();
    }

    pub fn state(&self) -> Value {
        let text = fs::read_to_string(self.dir.path().join("state.json")).unwrap_or_default();
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    fn journal(&self, name: &str) -> Vec<Value> {
        fs::read_to_string(self.dir.path().join(name))
            .unwrap_or_default()
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| serde_json::from_str(line).unwrap())
            .collect()
    }

    /// Requests the API refused as malformed: 4xx (schema, auth) and 501
    /// (unknown path, bad upload framing). Must stay empty. A 500 is the
    /// API answering a well-formed request with a runtime error (a guest
    /// agent not up yet, a pool that exists), which deploy expects.
    pub fn violations(&self) -> Vec<Value> {
        self.journal("violations.jsonl")
            .into_iter()
            .filter(|v| v["status"] != 500)
            .collect()
    }

    pub fn requests(&self) -> Vec<Value> {
        self.journal("requests.jsonl")
    }

    /// Requests that may change state (not GET), as `METHOD path`.
    pub fn changes_since(&self, count: usize) -> Vec<String> {
        self.requests()[count..]
            .iter()
            .filter(|r| r["method"] != "GET")
            .map(|r| {
                format!(
                    "{} {}",
                    r["method"].as_str().unwrap_or(""),
                    r["path"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    /// The unix socket the simulator's `pvesh` reaches it through.
    pub fn pvesh_socket(&self) -> std::path::PathBuf {
        self.dir.path().join("pvesh.sock")
    }

    /// The simulator's working directory (state, journals, boot mode's VMs).
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The certificate the API serves (PEM).
    pub fn certificate(&self) -> std::path::PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// `GET /api2/json{path}` with API token `token` (curl, certificate not
    /// checked: the test's own simulator): the status and the body.
    pub fn get_with_token(&self, token: &str, path: &str) -> (u16, String) {
        self.call_with_token("GET", token, path)
    }

    /// `POST /api2/json{path}`, no parameters, with API token `token`.
    pub fn post_with_token(&self, token: &str, path: &str) -> (u16, String) {
        self.call_with_token("POST", token, path)
    }

    /// `POST /api2/json{path}` with the form `params`, with API token
    /// `token`: what a change made behind waddlec's back sends.
    pub fn post_form_with_token(
        &self,
        token: &str,
        path: &str,
        params: &[(&str, &str)],
    ) -> (u16, String) {
        let form: Vec<String> = params
            .iter()
            .flat_map(|(key, value)| ["--data-urlencode".to_string(), format!("{key}={value}")])
            .collect();
        self.call("POST", token, path, &form)
    }

    fn call_with_token(&self, method: &str, token: &str, path: &str) -> (u16, String) {
        self.call(method, token, path, &[])
    }

    fn call(&self, method: &str, token: &str, path: &str, form: &[String]) -> (u16, String) {
        let output = super::run(
            Command::new("curl")
                .args(["-sk", "-X", method, "-w", "\n%{http_code}", "-H"])
                .arg(format!("Authorization: PVEAPIToken={token}"))
                .args(form)
                .arg(format!("{}/api2/json{path}", self.url)),
        );
        let out = super::text(&output.stdout);
        let (body, status) = out.rsplit_once('\n').unwrap_or(("", "0"));
        (status.trim().parse().unwrap_or(0), body.to_string())
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.path().join("sim.log")).unwrap_or_default()
    }
}

impl Drop for PveSim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
