//! `waddlec status` against a deployed lab: `support::deploy_lab` (the
//! Proxmox simulator `tests/pve-sim` for the API, a real sshd in a network
//! namespace for the host, the simulated Talos cluster behind stand-in
//! apids reached through the tunnel) plus, in the host's namespace, the
//! build's own `waddlec-host-network` loading the forwards' chains with
//! the real iptables, the build's firewall files under the host root, and
//! the stand-in Kubernetes API (`tests/support/kube_api_stand_in.py`) on
//! the API VIP. Every check passes (exit 0, JSON parsed, no secret value at
//! `-vvv`); then one fault at a time, each found by the check that owns
//! it: a chain unhooked, a VM stopped, a Talos node on another version
//! (exit 8); the host's ssh refused (its ssh checks and the cluster behind
//! the tunnel unreachable, 75) and an API that accepts and never answers
//! (the API and the VMs behind it unreachable, 75, in bounded time), an
//! ssh host that never speaks (unreachable in bounded time), and the API
//! token unset (exit 4, naming it).
//!
//! The edge and Teleport layers need the public side of the platform:
//! `status_edge.rs`.

use std::fs;
use std::net::TcpListener;
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::Value;
use waddlec::net::talos_api::{TalosClient, TalosIdentity, UpgradeRequest};

use crate::status_kubernetes::{write_state, State};
use crate::support::apid::pem_text;
use crate::support::deploy_lab::{waddlec_in, Lab};
use crate::support::kube_api::KubeApi;
use crate::support::pve_sim::{NODE, TOKEN};
use crate::support::talos_lab::{secret_values, GITHUB_SECRET};
use crate::support::{free_addr, run, text};

/// The lab's Talos version: the simulated nodes start on it.
const TALOS: &str = "v1.12.0";
/// The API VIP of `blueprints/waddle.toml`.
const API_VIP: &str = "10.10.0.20";

struct StatusLab {
    lab: Lab,
    _kube: KubeApi,
    _kube_dir: tempfile::TempDir,
}

impl StatusLab {
    fn start() -> StatusLab {
        let lab = Lab::deployed_with(0, |document| {
            document["versions"]
                .as_table_mut()
                .unwrap()
                .insert("talos".into(), TALOS.into());
        });
        let dist = lab.lab.path("dist");
        // The host's setup, as setup.sh does it: the forwards' chains
        // loaded and hooked by the build's own script, the firewall files
        // where Proxmox keeps them (under the host root).
        lab.host.netns.sh(&format!(
            "bash {dist}/host/network/waddlec-host-network {dist}/host/network/host-network.rules",
            dist = dist.display()
        ));
        let root = lab.host.host_root();
        fs::create_dir_all(root.join("etc/pve/firewall")).unwrap();
        fs::create_dir_all(root.join(format!("etc/pve/nodes/{NODE}"))).unwrap();
        fs::copy(
            dist.join("host/firewall/cluster.fw"),
            root.join("etc/pve/firewall/cluster.fw"),
        )
        .unwrap();
        fs::copy(
            dist.join("host/firewall/host.fw"),
            root.join(format!("etc/pve/nodes/{NODE}/host.fw")),
        )
        .unwrap();
        // The API VIP leads to the stand-in API server, ready at once.
        let bundle = lab.lab.credentials().bundle;
        let kube_dir = tempfile::tempdir().unwrap();
        let kube_addr = free_addr(&lab.host.host_side);
        // Serving a cluster where everything the blueprint implies is
        // healthy (the Kubernetes layer's own faults: status_kubernetes.rs).
        let state = kube_dir.path().join("state.json");
        write_state(
            &state,
            &State::healthy(&crate::support::model(&lab.lab.path("blueprint.toml"))),
        );
        let kube = KubeApi::serving(
            kube_dir.path(),
            kube_addr,
            (
                &pem_text(&bundle.certs.k8s.crt),
                &pem_text(&bundle.certs.k8s.key),
            ),
            &state,
        );
        lab.host.netns.sh(&format!(
            "iptables -t nat -A OUTPUT -d {API_VIP}/32 -p tcp --dport 6443 -j DNAT --to-destination {kube_addr}"
        ));
        StatusLab {
            lab,
            _kube: kube,
            _kube_dir: kube_dir,
        }
    }

    /// `waddlec status` on the lab with `extra` arguments.
    fn status(&self, extra: &[&str]) -> Output {
        let lab = &self.lab;
        let config = lab.host.config.display().to_string();
        let root = lab.host.host_root().display().to_string();
        let mut command = waddlec_in(&lab.lab);
        command.args(["status", "blueprint.toml", "--host-root", &root]);
        if !extra.contains(&"--api") {
            command.args(["--api", &lab.sim.url]);
        }
        if !extra.contains(&"--ssh-config") {
            command.args(["--ssh-config", &config]);
        }
        if !extra.contains(&"--call-timeout") {
            command.args(["--call-timeout", "5s"]);
        }
        command.args(extra);
        run(&mut command)
    }

    /// The JSON report of `status --format json` with `extra`, and its
    /// exit code.
    fn report(&self, extra: &[&str]) -> (Vec<Value>, i32, Output) {
        let mut args = vec!["--format", "json"];
        args.extend(extra);
        let output = self.status(&args);
        let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "status --format json is JSON ({e}):\n{}\n{}",
                text(&output.stdout),
                text(&output.stderr)
            )
        });
        let checks = report["checks"].as_array().unwrap().clone();
        (checks, output.status.code().unwrap_or(-1), output)
    }

    fn vmid(&self, name: &str) -> String {
        let state = self.lab.sim.state();
        state["vms"]
            .as_object()
            .unwrap()
            .iter()
            .find(|(_, vm)| vm["config"]["name"] == name)
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| panic!("no VM {name}"))
    }
}

/// The one check named `name`.
fn find<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check `{name}` in {checks:#?}"))
}

fn not_passed(checks: &[Value]) -> Vec<&Value> {
    checks.iter().filter(|c| c["result"] != "pass").collect()
}

#[test]
fn status_passes_on_a_healthy_lab_and_each_fault_fails_its_own_check() {
    let lab = StatusLab::start();
    let layers = [
        "--layer",
        "host",
        "--layer",
        "vms",
        "--layer",
        "talos",
        "--layer",
        "kubernetes",
    ];

    // Healthy: every check passes, at -vvv, and no secret value is shown.
    let before = lab.lab.sim.requests().len();
    let mut args = layers.to_vec();
    args.push("-vvv");
    let (checks, code, output) = lab.report(&args);
    assert!(
        not_passed(&checks).is_empty(),
        "{:#?}\n{}",
        not_passed(&checks),
        text(&output.stderr)
    );
    assert_eq!(code, 0);
    for (name, detail) in [
        ("node talos-cp1 version", TALOS),
        ("etcd members", "talos-cp1, talos-cp2, talos-cp3"),
        (
            "chain nat WDLC-PREROUTING",
            "5 rule(s) as built, hooked from PREROUTING",
        ),
        ("bridge vmbr1", "active, 10.10.0.1/24"),
        ("api", "ready (/readyz ok)"),
    ] {
        assert_eq!(find(&checks, name)["detail"], detail, "{name}");
    }
    for layer in ["host", "vms", "talos", "kubernetes"] {
        assert!(checks.iter().any(|c| c["layer"] == layer), "{layer}");
    }
    assert!(checks.iter().any(|c| c["name"]
        .as_str()
        .unwrap()
        .ends_with("talos-cp2 guest agent")));
    let credentials = fs::read_to_string(lab.lab.lab.path("secrets/cluster.yaml")).unwrap();
    let admin = fs::read_to_string(lab.lab.lab.path("secrets/cluster.admin.yaml")).unwrap();
    let mut secrets = secret_values(&[&credentials, &admin]);
    secrets.push(TOKEN.split_once('=').unwrap().1.to_string());
    secrets.push(GITHUB_SECRET.to_string());
    let shown = format!("{}{}", text(&output.stdout), text(&output.stderr));
    assert!(
        shown.contains("TRACE") || shown.contains("DEBUG"),
        "-vvv logs"
    );
    for secret in &secrets {
        assert!(!shown.contains(secret.as_str()), "a secret value is shown");
    }
    // No check changed the host: nothing but reads (and agent pings) in
    // the API's journal.
    let requests = lab.lab.sim.requests();
    let asked = &requests[before..];
    assert!(asked.len() > 10, "{asked:#?}");
    assert!(
        asked
            .iter()
            .all(|r| r["method"] == "GET" || r["path"].as_str().unwrap().ends_with("/agent/ping")),
        "{asked:#?}"
    );
    lab.lab.assert_no_violations();

    // The text form names each check; a pass says what it saw.
    let output = lab.status(&["--layer", "talos"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stdout).contains(&format!(
        "ok          talos  node talos-cp3 version: {TALOS}"
    )));

    // A chain loaded but not hooked: no packet reaches it.
    lab.lab
        .host
        .netns
        .sh("iptables -t nat -D PREROUTING -j WDLC-PREROUTING");
    let (checks, code, _) = lab.report(&["--layer", "host"]);
    assert_eq!(code, 8);
    let chain = find(&checks, "chain nat WDLC-PREROUTING");
    assert_eq!(chain["result"], "failed");
    assert!(chain["why"]
        .as_str()
        .unwrap()
        .contains("PREROUTING does not jump to it"));
    assert_eq!(not_passed(&checks).len(), 1, "{checks:#?}");
    lab.lab
        .host
        .netns
        .sh("iptables -t nat -I PREROUTING 1 -j WDLC-PREROUTING");

    // Access opened from the console (the emergency script, run on the
    // build's copy as the console would run the installed one) is named,
    // with the way to close it.
    let root = lab.lab.host.host_root();
    let opened = crate::support::run(
        std::process::Command::new("bash")
            .arg(lab.lab.lab.path("dist/host/emergency-recovery.sh"))
            .args(["open", "192.0.2.7", "--root"])
            .arg(&root),
    );
    assert!(opened.status.success(), "{}", text(&opened.stderr));
    let (checks, code, _) = lab.report(&["--layer", "host"]);
    assert_eq!(code, 8);
    let firewall = find(
        &checks,
        &format!("Proxmox firewall /etc/pve/nodes/{NODE}/host.fw"),
    );
    assert!(
        firewall["why"]
            .as_str()
            .unwrap()
            .contains("EMERGENCY access"),
        "{firewall:#?}"
    );
    assert!(firewall["fix"]
        .as_str()
        .unwrap()
        .contains("--close-emergency"));
    let closed = crate::support::run(
        std::process::Command::new("bash")
            .arg(lab.lab.lab.path("dist/host/emergency-recovery.sh"))
            .args(["close", "--root"])
            .arg(&root),
    );
    assert!(closed.status.success(), "{}", text(&closed.stderr));

    // The host's ssh refused: the host's ssh checks, and the cluster
    // behind the tunnel, are unreachable; the API's checks still pass.
    let refused = lab.lab.lab.path("refused.ssh_config");
    fs::write(
        &refused,
        "Host waddle-host\n  HostName 127.0.0.1\n  Port 1\n",
    )
    .unwrap();
    let mut args = layers.to_vec();
    args.extend(["--ssh-config", refused.to_str().unwrap()]);
    let (checks, code, _) = lab.report(&args);
    assert_eq!(code, 75, "{checks:#?}");
    assert_eq!(find(&checks, "ssh waddle-host")["result"], "unreachable");
    for (name, layer) in [("node talos-cp1 version", "talos"), ("api", "kubernetes")] {
        let check = find(&checks, name);
        assert_eq!(check["layer"], layer, "{name}");
        assert_eq!(check["result"], "unreachable", "{name}");
        assert!(check["why"]
            .as_str()
            .unwrap()
            .starts_with("behind the tunnel through the Proxmox host"));
    }
    assert_eq!(find(&checks, "bridge vmbr1")["result"], "pass");

    // An ssh host that accepts and never speaks: given up on in bounded
    // time, unreachable.
    let silent_ssh = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_config = lab.lab.lab.path("silent.ssh_config");
    fs::write(
        &silent_config,
        format!(
            "Host waddle-host\n  HostName 127.0.0.1\n  Port {}\n",
            silent_ssh.local_addr().unwrap().port()
        ),
    )
    .unwrap();
    let start = Instant::now();
    let (checks, code, _) = lab.report(&[
        "--layer",
        "host",
        "--call-timeout",
        "2s",
        "--ssh-config",
        silent_config.to_str().unwrap(),
    ]);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(code, 75, "{checks:#?}");
    assert_eq!(find(&checks, "ssh waddle-host")["result"], "unreachable");
    drop(silent_ssh);

    // The API token unset: no check can be made; exit 4 naming it.
    let output = run(waddlec_in(&lab.lab.lab)
        .env_remove(crate::support::deploy_lab::TOKEN_ENV)
        .args(["status", "blueprint.toml", "--layer", "host"]));
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains(crate::support::deploy_lab::TOKEN_ENV));

    // A VM stopped.
    let vmid = lab.vmid("haproxy");
    let (status, body) = lab
        .lab
        .sim
        .post_with_token(TOKEN, &format!("/nodes/{NODE}/qemu/{vmid}/status/stop"));
    assert_eq!(status, 200, "{body}");
    let start = Instant::now();
    while lab.lab.sim.state()["vms"][&vmid]["status"] == "running" {
        assert!(start.elapsed() < Duration::from_secs(10), "the VM stops");
        std::thread::sleep(Duration::from_millis(100));
    }
    let (checks, code, _) = lab.report(&["--layer", "vms"]);
    assert_eq!(code, 8);
    let running = find(&checks, &format!("VM {vmid} haproxy running"));
    assert_eq!(running["result"], "failed");
    assert_eq!(running["why"], "stopped");
    assert_eq!(not_passed(&checks).len(), 1, "{checks:#?}");

    // A Talos node on another version than the blueprint pins.
    let identity = TalosIdentity::from_credentials(&lab.lab.lab.credentials()).unwrap();
    let cluster = &lab.lab.cluster;
    TalosClient::new(&cluster.endpoint(0), &identity)
        .unwrap()
        .proxy_to(&cluster.name(1))
        .upgrade(&UpgradeRequest {
            image: "factory.talos.dev/nocloud-installer/stand-in:v1.12.1".into(),
            stage: true,
            force: true,
            ..UpgradeRequest::default()
        })
        .unwrap();
    cluster.power_on(1);
    std::thread::sleep(Duration::from_millis(300));
    TalosClient::new(&cluster.endpoint(1), &identity)
        .unwrap()
        .wait_until_version("v1.12.1", Duration::from_secs(10))
        .unwrap();
    let (checks, code, _) = lab.report(&["--layer", "talos"]);
    assert_eq!(code, 8);
    let version = find(&checks, "node talos-cp2 version");
    assert_eq!(version["result"], "failed");
    assert_eq!(
        version["why"],
        format!("runs Talos v1.12.1; versions.talos is {TALOS}")
    );
    assert_eq!(not_passed(&checks).len(), 1, "{checks:#?}");

    // An API that accepts connections and never answers: unreachable, and
    // the VMs behind it too, not failed; within the call timeout.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://{}", silent.local_addr().unwrap());
    let start = Instant::now();
    let (checks, code, _) = lab.report(&[
        "--api",
        &url,
        "--call-timeout",
        "2s",
        "--layer",
        "host",
        "--layer",
        "vms",
    ]);
    assert!(
        start.elapsed() < Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(code, 75, "{checks:#?}");
    let api = find(&checks, &format!("Proxmox API {url}"));
    assert_eq!(api["result"], "unreachable");
    let vm = find(&checks, &format!("VM {vmid} haproxy"));
    assert_eq!(vm["result"], "unreachable");
    assert!(vm["why"]
        .as_str()
        .unwrap()
        .starts_with("behind the Proxmox API"));
    // The host's ssh side still answers, and passes.
    assert_eq!(find(&checks, "chain filter WDLC-FORWARD")["result"], "pass");
    drop(silent);
}
