//! `waddlec status --layer edge --layer teleport` from the internet side,
//! through a namespace topology carrying the build's own artifacts:
//!
//! ```text
//!  client ns            host ns                          edge VM ns
//! ┌───────────────┐    ┌──────────────────────────┐   ┌───────────────────────────┐
//! │ c0: the       ├────┤ vmbr0 <public address>   │ ┌─┤ i0: the edge VM's address │
//! │ uplink's      │    │ WDLC-* chains loaded by  │ │ │ haproxy (the build's cfg) │
//! │ gateway       │    │ the build's own script   │ │ └───────────────────────────┘
//! │ waddlec status│    │ vmbr1 (a bridge) ────────┼─┤ backends ns
//! └───────────────┘    └──────────────────────────┘ │ ┌───────────────────────────┐
//!                                                   └─┤ i0: Teleport, the gateway │
//!                                                     │ Teleport web stand-in,    │
//!                                                     │ gateway TLS and HTTP,     │
//!                                                     │ Teleport's TCP ports      │
//!                                                     └───────────────────────────┘
//! ```
//!
//! Every address comes from the compiled `Model` of `blueprints/waddle.toml`.
//! Real TLS throughout: a test CA (openssl) signs Teleport's certificate
//! (its public names) and the gateway's (`*.apps.<domain>`), which
//! `status` trusts through `--edge-ca`. Peers: `tests/support/
//! teleport_web_stand_in.py` (Teleport's `/webapi/ping`, as
//! `webclient.PingResponse` of gravitational/teleport) and
//! `tests/support/sni_lab.py serve` (the gateway, Teleport's TCP ports).
//!
//! All pass; then Teleport on another release fails its version check;
//! the `*.apps` route sent to Teleport by a changed
//! haproxy.cfg fails its route check, naming the certificate that
//! answered; and without `--edge-ca` Teleport's certificate is not trusted
//! (failed, not unreachable).

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use waddlec::model::Model;

use crate::support::deploy_lab::TOKEN_ENV;
use crate::support::netns::{Netns, Reaped};
use crate::support::pve_sim::TOKEN;
use crate::support::talos_lab::{SecretLab, GITHUB_SECRET, GITHUB_SECRET_ENV};
use crate::support::{model, repo_root, require, run, text, valid_blueprints};

struct EdgeLab {
    lab: SecretLab,
    model: Model,
    client: Netns,
    _host: Netns,
    edge_vm: Netns,
    internal: Netns,
    certs: tempfile::TempDir,
    haproxy: Option<Reaped>,
    teleport: Option<Reaped>,
    _peers: Vec<Reaped>,
}

impl EdgeLab {
    fn start() -> EdgeLab {
        for tool in ["haproxy", "python3", "openssl", "iptables"] {
            require(tool);
        }
        let lab = SecretLab::new(&valid_blueprints()[0]);
        lab.init();
        let dist = lab.build_with_secrets("dist");
        let model = model(&lab.blueprint);
        let edge = model.edge.clone().expect("waddle has an edge");
        let edge = &edge;
        let teleport = model.teleport.clone().expect("waddle has Teleport");
        let teleport = &teleport;
        let public = &model.host().bridges.public;
        let internal_bridge = &model.host().bridges.internal[0];
        let prefix = internal_bridge.network.prefix_len();

        let client = Netns::new("st-client");
        let host = Netns::new("st-host");
        let edge_vm_ns = Netns::new("st-edge");
        let internal = Netns::new("st-back");
        let client_ip = public.gateway.expect("the uplink has a gateway");
        client.sh(&format!(
            "ip link add c0 type veth peer name {uplink} netns {host} && \
             ip addr add {client_ip}/{p} dev c0 && ip link set c0 up",
            uplink = public.name,
            host = host.name,
            p = public.network.prefix_len()
        ));
        // The internal bridge joins the host, the edge VM and the backends,
        // each machine in a namespace of its own.
        host.sh(&format!(
            "ip addr add {}/{} dev {uplink} && ip link set {uplink} up && \
             ip link add {inner} type bridge && ip addr add {}/{prefix} dev {inner} && \
             ip link set {inner} up && \
             ip link add tap-edge type veth peer name i0 netns {edge_ns} && \
             ip link set tap-edge master {inner} up && \
             ip link add tap-back type veth peer name i0 netns {back_ns} && \
             ip link set tap-back master {inner} up",
            public.host_address,
            public.network.prefix_len(),
            internal_bridge.host_address,
            uplink = public.name,
            inner = internal_bridge.name,
            edge_ns = edge_vm_ns.name,
            back_ns = internal.name,
        ));
        let edge_vm = model.vm(&edge.vm).unwrap().nics[0].address.addr();
        let gateway_route = |ns: &Netns, addresses: &[String]| {
            let mut script = String::new();
            for address in addresses {
                script.push_str(&format!("ip addr add {address}/{prefix} dev i0 && "));
            }
            ns.sh(&format!(
                "{script}ip link set i0 up && ip route add default via {}",
                internal_bridge.host_address
            ));
        };
        gateway_route(&edge_vm_ns, &[edge_vm.to_string()]);
        // Every backend: the routes' and the forwards' targets.
        let mut addresses: Vec<String> = edge
            .routes
            .iter()
            .map(|r| r.backend.address.to_string())
            .chain(model.forwards.iter().map(|f| f.to.address.to_string()))
            .filter(|a| *a != edge_vm.to_string())
            .collect();
        addresses.sort();
        addresses.dedup();
        gateway_route(&internal, &addresses);
        // The host's forwards, loaded and hooked by the build's own script.
        host.sh(&format!(
            "bash {d}/host/network/waddlec-host-network {d}/host/network/host-network.rules",
            d = dist.display()
        ));

        // Certificates: a CA, Teleport's names, the gateway's wildcard.
        let certs = tempfile::tempdir().unwrap();
        let domain = &model.project.domain;
        let teleport_names: Vec<String> = edge
            .routes
            .iter()
            .filter(|r| r.backend.name == teleport.vm)
            .map(|r| match &r.host {
                waddlec::model::SniHost::Exact(host) => host.clone(),
                waddlec::model::SniHost::Wildcard { suffix } => format!("*{suffix}"),
            })
            .collect();
        issue(certs.path(), "teleport", &teleport_names);
        issue(certs.path(), "gateway", &[format!("*.apps.{domain}")]);

        let lab_py = repo_root().join("tests/support/sni_lab.py");
        let gateway = edge
            .routes
            .iter()
            .find(|r| r.backend.name != teleport.vm)
            .expect("a route to the gateway")
            .backend
            .clone();
        let mut specs = vec![
            format!("tls:{}:{}", gateway.address, gateway.port),
            format!("http:{}:80", gateway.address),
        ];
        for forward in &model.forwards {
            if forward.to.name == teleport.vm {
                specs.push(format!("tcp:{}:{}", forward.to.address, forward.to.port));
            }
        }
        let peers = vec![spawn(
            &internal,
            Command::new("python3")
                .arg(&lab_py)
                .arg("serve")
                .arg(certs.path().join("peers.log"))
                .arg(certs.path().join("gateway.crt"))
                .arg(certs.path().join("gateway.key"))
                .args(&specs),
        )];
        let mut lab = EdgeLab {
            lab,
            model,
            client,
            _host: host,
            edge_vm: edge_vm_ns,
            internal,
            certs,
            haproxy: None,
            teleport: None,
            _peers: peers,
        };
        lab.run_teleport(&teleport.version);
        let config = fs::read_to_string(dist.join(format!("vms/{}/haproxy.cfg", edge.vm))).unwrap();
        lab.run_haproxy(&config);
        for port in [gateway.port.0, 80, teleport.web_port.0] {
            wait_for(|| lab.internal.listens(port));
        }
        lab
    }

    /// Teleport's web stand-in reporting `version`, in place of the one
    /// running.
    fn run_teleport(&mut self, version: &str) {
        self.teleport = None;
        let teleport = self.model.teleport.clone().unwrap();
        let address = self.model.vm(&teleport.vm).unwrap().nics[0].address.addr();
        let certs = self.certs.path();
        wait_for(|| !self.internal.listens(teleport.web_port.0));
        self.teleport = Some(spawn(
            &self.internal,
            Command::new("python3")
                .arg(repo_root().join("tests/support/teleport_web_stand_in.py"))
                .args(["--listen", &format!("{address}:{}", teleport.web_port.0)])
                .arg("--cert")
                .arg(certs.join("teleport.crt"))
                .arg("--key")
                .arg(certs.join("teleport.key"))
                .args(["--version", version])
                .args(["--cluster", &teleport.public_host]),
        ));
        wait_for(|| self.internal.listens(teleport.web_port.0));
    }

    /// haproxy (in the foreground, killed on drop) with `config`, in place
    /// of the one running.
    fn run_haproxy(&mut self, config: &str) {
        self.haproxy = None;
        let path = self.certs.path().join("haproxy.cfg");
        fs::write(&path, config).unwrap();
        self.edge_vm.sh("mkdir -p /run/haproxy");
        self.haproxy = Some(spawn(
            &self.edge_vm,
            Command::new("haproxy").arg("-db").arg("-f").arg(&path),
        ));
        let edge = self.model.edge.as_ref().unwrap();
        wait_for(|| self.edge_vm.listens(edge.https_port.0));
    }

    /// `waddlec status` in the client's namespace, JSON, with `extra`.
    fn status(&self, extra: &[&str]) -> (Vec<Value>, i32, Output) {
        let output = run(Command::new("ip")
            .args(["netns", "exec", &self.client.name])
            .arg(env!("CARGO_BIN_EXE_waddlec"))
            .args(["status", "blueprint.toml", "--format", "json"])
            .args(["--call-timeout", "3s"])
            .args(extra)
            .current_dir(self.lab.path(""))
            .env("NO_COLOR", "1")
            .env(GITHUB_SECRET_ENV, GITHUB_SECRET)
            .env(TOKEN_ENV, TOKEN)
            .env("WADDLEC_CACHE_DIR", self.lab.path("cache")));
        let report: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
            panic!(
                "JSON ({e}): {}\n{}",
                text(&output.stdout),
                text(&output.stderr)
            )
        });
        (
            report["checks"].as_array().unwrap().clone(),
            output.status.code().unwrap_or(-1),
            output,
        )
    }

    fn ca(&self) -> String {
        self.certs.path().join("ca.crt").display().to_string()
    }
}

/// `name.crt`/`name.key` for `names`, signed by the directory's CA (made
/// on first use).
fn issue(dir: &Path, name: &str, names: &[String]) {
    let openssl = |args: &[&str]| {
        let output = run(Command::new("openssl").current_dir(dir).args(args));
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            text(&output.stderr)
        );
    };
    if !dir.join("ca.crt").exists() {
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=status test CA",
        ]);
    }
    let sans: Vec<String> = names.iter().map(|n| format!("DNS:{n}")).collect();
    fs::write(
        dir.join(format!("{name}.ext")),
        format!("subjectAltName={}\n", sans.join(",")),
    )
    .unwrap();
    openssl(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &format!("{name}.key"),
        "-out",
        &format!("{name}.csr"),
        "-subj",
        &format!("/CN={}", names[0]),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        &format!("{name}.csr"),
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        &format!("{name}.ext"),
        "-out",
        &format!("{name}.crt"),
    ]);
}

fn spawn(ns: &Netns, command: &mut Command) -> Reaped {
    let program = command.get_program().to_owned();
    let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
    Reaped(
        Command::new("ip")
            .args(["netns", "exec", &ns.name])
            .arg(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

fn wait_for(mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < Duration::from_secs(10), "timed out");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn find<'a>(checks: &'a [Value], name: &str) -> &'a Value {
    checks
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check `{name}` in {checks:#?}"))
}

#[test]
fn status_sees_each_route_answer_from_its_backend_through_the_public_address() {
    let mut lab = EdgeLab::start();
    let domain = lab.model.project.domain.clone();
    let ca = lab.ca();
    let layers = ["--layer", "edge", "--layer", "teleport", "--edge-ca", &ca];

    let (checks, code, output) = lab.status(&layers);
    let failing: Vec<&Value> = checks.iter().filter(|c| c["result"] != "pass").collect();
    assert!(failing.is_empty(), "{failing:#?}\n{}", text(&output.stderr));
    assert_eq!(code, 0);
    let teleport = lab.model.teleport.clone().unwrap();
    assert_eq!(
        find(&checks, &format!("{} /webapi/ping", teleport.public_host))["detail"],
        format!(
            "Teleport {} (cluster {})",
            teleport.version, teleport.public_host
        )
    );
    assert_eq!(
        find(&checks, &format!("route *.apps.{domain} → gateway"))["detail"],
        format!("waddlec-status.apps.{domain} answered with a certificate for *.apps.{domain}")
    );
    assert_eq!(
        find(&checks, "an unknown name is refused")["result"],
        "pass"
    );
    for forward in &lab.model.forwards {
        let name = format!(
            "forward tcp/{} → {}:{}",
            forward.port.0, forward.to.name, forward.to.port
        );
        assert_eq!(find(&checks, &name)["result"], "pass", "{name}");
    }

    // Without the CA that issued Teleport's certificate: not trusted, and
    // that is an answer (failed), not an unreachable proxy.
    let (checks, code, _) = lab.status(&["--layer", "teleport"]);
    assert_eq!(code, 8, "{checks:#?}");
    assert_eq!(checks[0]["result"], "failed");

    // Teleport on another release than the blueprint pins.
    lab.run_teleport("18.1.0");
    let (checks, code, _) = lab.status(&["--layer", "teleport", "--edge-ca", &ca]);
    assert_eq!(code, 8, "{checks:#?}");
    assert_eq!(
        checks[0]["why"],
        format!(
            "runs Teleport 18.1.0; versions.teleport is {}",
            teleport.version
        )
    );
    lab.run_teleport(&teleport.version);

    // The gateway's route sent to Teleport instead.
    let edge = lab.model.edge.clone().unwrap();
    let gateway = edge
        .routes
        .iter()
        .find(|r| r.backend.name == "gateway")
        .unwrap();
    let teleport_web = format!(
        "{}:{}",
        lab.model.vm(&teleport.vm).unwrap().nics[0].address.addr(),
        teleport.web_port.0
    );
    let config =
        fs::read_to_string(lab.lab.path(&format!("dist/vms/{}/haproxy.cfg", edge.vm))).unwrap();
    let from = format!(
        "server gateway {}:{}",
        gateway.backend.address, gateway.backend.port
    );
    assert!(config.contains(&from));
    lab.run_haproxy(&config.replace(&from, &format!("server gateway {teleport_web}")));
    let (checks, code, _) = lab.status(&layers);
    assert_eq!(code, 8);
    let route = find(&checks, &format!("route *.apps.{domain} → gateway"));
    assert_eq!(route["result"], "failed", "{route:#}");
    assert!(
        route["why"]
            .as_str()
            .unwrap()
            .contains(&teleport.public_host),
        "{route:#}"
    );
    let failed: Vec<&Value> = checks.iter().filter(|c| c["result"] != "pass").collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");

    // --wait looks again until --timeout, then ends with the last look's
    // code and report.
    let start = Instant::now();
    let mut args = layers.to_vec();
    args.extend(["--layer", "edge", "--wait", "--timeout", "7s"]);
    let (checks, code, output) = lab.status(&args);
    assert_eq!(code, 8);
    assert!(
        start.elapsed() >= Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("1 failed, 0 unreachable; looking again in 5 s"),
        "{stderr}"
    );
    assert!(stderr.contains("not healthy after"), "{stderr}");
    assert_eq!(
        find(&checks, &format!("route *.apps.{domain} → gateway"))["result"],
        "failed"
    );
}
