//! The twin: a bare Proxmox host rebuilt on this machine, brought up by
//! exactly the operator's sequence from README.md (`host init` →
//! `build --with-secrets` with images baked for real → `deploy --yes`), its
//! VMs really booted, and the edge then proven by traffic from the
//! internet. Each phase's wall time is printed (`twin: PHASE N s`);
//! `compiler/benches/twin.sh` runs this test and collects them.
//!
//! ```text
//!  internet ns                 host ns (the SshHost lab's)            vip ns
//! ┌──────────────────────┐    ┌───────────────────────────────┐    ┌──────────────┐
//! │ eth0 203.0.113.1     ├────┤ eno1 ─ vmbr0 203.0.113.10     │    │ 10.10.0.30   │
//! │ clients 198.51.100.x │    │ sshd (operator: 10.254.x.1)   │    │ :443 tls     │
//! │ server 192.0.2.80    │    │ vmbr1 10.10.0.1 (deploy made) ├────┤ :80 http     │
//! └──────────────────────┘    │  tap100i0 ─ QEMU haproxy VM   │    └──────────────┘
//!                             │  tap101i0 ─ QEMU teleport VM  │
//!                             │  tap11Ni0 ─ QEMU Talos nodes  │
//!                             │ iptables: WDLC-* + pve-fw     │
//!                             └───────────────────────────────┘
//! ```
//!
//! Real: the images (mmdebstrap from Debian's mirror, shared bases), QEMU
//! with OVMF booting them under TCG (`/dev/kvm` is not usable for guests
//! here), haproxy inside the baked HAProxy VM, cloud-init, sshd and the
//! guest agent inside the VMs, Linux bridges and taps, the real sshd of
//! the host, the host setup really applied (sysctl, the forwards and NAT
//! in iptables), the real iptables.
//!
//! Stand-ins, each where the real thing cannot run here:
//! - Proxmox's daemons: the API simulator in boot mode (`tests/pve-sim/`,
//!   held to PVE's API schema and permission checks; `qmstart` runs QEMU
//!   in the host namespace from the disks the deploy imported, with memory
//!   capped at 1 GiB and one core per VM for this 2-core machine) and its
//!   `pvesh`;
//! - pve-firewall: `support::pve_firewall` compiles the host's
//!   `cluster.fw`/`host.fw` into iptables rules in the host namespace (plus
//!   one rule admitting the lab's management link, which carries the
//!   test's own SSH to the host in place of the operator's internet path);
//! - Teleport's binary: the release cannot be downloaded here, so the image
//!   carries `tests/support/teleport_stand_in.py` as `teleport`, which opens
//!   the proxy's ports and says what reached it; the rest of the Teleport
//!   VM (units, config, seed, users, sshd hardening) is the real image's;
//! - the Talos nodes boot a fixture image (no Talos here), so the twin's
//!   blueprint leaves out the guest-agent extension they could not run;
//! - the gateway VIP: a listener in its own namespace on vmbr1;
//! - the host's `systemctl`, `zfs`, `targetcli`, `useradd`, `getent`: the
//!   lab's grammar-checking stand-ins.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::support::image_lab::ImageLab;
use crate::support::netns::{Netns, Reaped};
use crate::support::pve_firewall;
use crate::support::pve_sim::{PveSim, NODE, TOKEN};
use crate::support::ssh_host::SshHost;
use crate::support::{repo_root, require, run, text};

const PUBLIC: &str = "203.0.113.10";
const UPSTREAM: &str = "203.0.113.1";
const OPERATOR: &str = "198.51.100.23";
const STRANGER: &str = "198.51.100.99";
const SERVER: &str = "192.0.2.80";
const VIP: &str = "10.10.0.30";
const HAPROXY: &str = "10.10.0.3";
const TELEPORT: &str = "10.10.0.2";

struct Twin {
    /// First to go: it stops the VMs it started.
    sim: PveSim,
    vip: Netns,
    internet: Netns,
    host: SshHost,
    images: ImageLab,
    vm_key: PathBuf,
    listeners: Vec<Reaped>,
    scratch: tempfile::TempDir,
    started: Instant,
}

impl Twin {
    fn new() -> Twin {
        for tool in [
            "qemu-system-x86_64",
            "mmdebstrap",
            "iptables-restore",
            "ssh",
        ] {
            require(tool);
        }
        let started = Instant::now();
        let scratch = tempfile::tempdir().unwrap();
        let vm_key = scratch.path().join("operator_key");
        let keygen = run(Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "operator@twin", "-f"])
            .arg(&vm_key));
        assert!(keygen.status.success(), "{}", text(&keygen.stderr));
        let public_key = fs::read_to_string(vm_key.with_extension("pub")).unwrap();
        let images = ImageLab::with(|document| {
            let host = document["host"].as_table_mut().unwrap();
            host.insert("ssh".into(), "waddle-host".into());
            host.insert("api_token".into(), "file:pve-token".into());
            host.remove("api_fingerprint");
            document["operator"].as_table_mut().unwrap().insert(
                "ssh_keys".into(),
                vec![public_key.trim().to_string()].into(),
            );
            // The fixture Talos image runs no guest agent.
            document["talos"]
                .as_table_mut()
                .unwrap()
                .insert("extensions".into(), vec!["siderolabs/iscsi-tools"].into());
        });

        let sim_dir = tempfile::tempdir().unwrap();
        let host = SshHost::start_with_pve(&sim_dir.path().join("pvesh.sock"));
        let internet = Netns::new("inet");
        host.netns.sh(&format!(
            "ip link add vmbr0 type bridge && ip addr add {PUBLIC}/24 dev vmbr0 && ip link set vmbr0 up && \
             ip link add eno1 type veth peer name eth0 netns {inet} && \
             ip link set eno1 master vmbr0 && ip link set eno1 up && \
             ip route add default via {UPSTREAM}",
            inet = internet.name
        ));
        internet.sh(&format!(
            "ip addr add {UPSTREAM}/24 dev eth0 && ip link set eth0 up && \
             for a in {OPERATOR} {STRANGER} {SERVER}; do ip addr add $a/32 dev lo; done"
        ));
        let sim = PveSim::start_in(
            sim_dir,
            &[
                "--boot",
                "--boot-netns",
                &host.netns.name,
                "--boot-memory-cap",
                "1024",
                "--boot-cores-cap",
                "1",
            ],
        );
        host.install_proxmox_files(&sim.certificate());
        Twin {
            sim,
            vip: Netns::new("vip"),
            internet,
            host,
            images,
            vm_key,
            listeners: Vec::new(),
            scratch,
            started,
        }
    }

    /// `waddlec ARGS` as the operator runs it, reaching the host through
    /// the lab (its ssh config, the simulator's API address).
    fn waddlec(&self, args: &[&str]) -> Output {
        let config = self.host.config.display().to_string();
        let root = self.host.host_root().display().to_string();
        let mut all: Vec<&str> = args.to_vec();
        all.extend([
            "--ssh-config",
            &config,
            "--host-root",
            &root,
            "--api",
            &self.sim.url,
        ]);
        self.images.lab.waddlec(&all)
    }

    fn phase(&self, name: &str, since: Instant) {
        eprintln!("twin: {name} {:.1} s", since.elapsed().as_secs_f64());
    }

    fn deploy(&self, extra: &[&str]) -> String {
        let mut args = vec![
            "deploy",
            "blueprint.toml",
            "--skip-preflight",
            "--tree",
            "dist",
            "--yes",
            "--agent-timeout",
            "1500",
        ];
        args.extend_from_slice(extra);
        ok(&self.waddlec(&args), &self.consoles())
    }

    /// The VMs' serial consoles, for a failure's message.
    fn consoles(&self) -> String {
        let mut all = String::new();
        for vmid in ["100", "101"] {
            let log = self.sim.dir().join("vms").join(vmid).join("console.log");
            let text = fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(40).collect();
            all.push_str(&format!("--- console of VM {vmid} (last lines) ---\n"));
            for line in tail.into_iter().rev() {
                all.push_str(line);
                all.push('\n');
            }
        }
        all
    }

    /// pve-firewall's part, as the stand-in compiles the files the host
    /// setup installed, plus the lab's management link.
    fn apply_pve_firewall(&self) {
        let firewall = self.images.lab.path("dist/host/firewall");
        let ruleset = pve_firewall::ruleset(
            &fs::read_to_string(firewall.join("cluster.fw")).unwrap(),
            &fs::read_to_string(firewall.join("host.fw")).unwrap(),
        );
        let file = self.scratch.path().join("pve-firewall.rules");
        fs::write(&file, &ruleset).unwrap();
        self.host.netns.sh(&format!(
            "iptables -w -F INPUT; iptables -w -X PVEFW-INPUT 2>/dev/null; \
             iptables-restore -w --noflush {} && \
             iptables -w -A INPUT -i {mgmt} -j ACCEPT && iptables -w -A INPUT -j PVEFW-INPUT",
            file.display(),
            mgmt = self.host.peer_interface()
        ));
    }

    /// The gateway VIP's stand-in on vmbr1, and a server on the internet.
    fn start_listeners(&mut self) {
        let cert = self.scratch.path().join("vip.crt");
        let key = self.scratch.path().join("vip.key");
        let made = run(Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ])
            .args(["-nodes", "-days", "2", "-subj", "/CN=gateway", "-keyout"])
            .arg(&key)
            .arg("-out")
            .arg(&cert));
        assert!(made.status.success(), "{}", text(&made.stderr));
        self.host.netns.sh(&format!(
            "ip link add vipb type veth peer name vip0 netns {vip} && \
             ip link set vipb master vmbr1 && ip link set vipb up",
            vip = self.vip.name
        ));
        self.vip.sh(&format!(
            "ip addr add {VIP}/24 dev vip0 && ip link set vip0 up && ip route add default via 10.10.0.1"
        ));
        let lab = repo_root().join("tests/support/sni_lab.py");
        for (ns, log, specs) in [
            (
                &self.vip,
                self.scratch.path().join("vip.log"),
                vec![format!("tls:{VIP}:443"), format!("http:{VIP}:80")],
            ),
            (
                &self.internet,
                self.scratch.path().join("server.log"),
                vec![format!("tcp:{SERVER}:8080")],
            ),
        ] {
            let mut child = Command::new("ip")
                .args(["netns", "exec", &ns.name, "python3"])
                .arg(&lab)
                .arg("serve")
                .arg(&log)
                .arg(&cert)
                .arg(&key)
                .args(&specs)
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            let mut ready = String::new();
            std::io::BufRead::read_line(
                &mut std::io::BufReader::new(child.stdout.take().unwrap()),
                &mut ready,
            )
            .unwrap();
            assert_eq!(ready.trim(), "ready");
            self.listeners.push(Reaped(child));
        }
    }

    /// Probes from the internet namespace, all at once: one result each.
    fn probe(&self, probes: &[String]) -> Vec<String> {
        let output = self.internet.try_sh(&format!(
            "python3 {} probe {}",
            repo_root().join("tests/support/sni_lab.py").display(),
            probes.join(" ")
        ));
        text(&output.stdout).lines().map(str::to_string).collect()
    }

    /// The edge, proven by traffic; retried until it serves (or 10 min).
    fn edge_serves(&self) {
        let domain = "waddle.social";
        let cases: Vec<(String, &str)> = vec![
            (
                format!("hello,{STRANGER},{PUBLIC},443,teleport.{domain}"),
                "reached teleport:3080 sni=teleport.waddle.social",
            ),
            (
                format!("tls,{STRANGER},{PUBLIC},443,shop.apps.{domain}"),
                "reached 10.10.0.30:443",
            ),
            (
                format!("tls,{STRANGER},{PUBLIC},443,nobody.example"),
                "closed",
            ),
            (
                format!("http,{STRANGER},{PUBLIC},80"),
                "reached 10.10.0.30:80",
            ),
            (
                format!("tcp,{STRANGER},{PUBLIC},3023"),
                "reached teleport:3023",
            ),
            (
                format!("tcp,{STRANGER},{PUBLIC},3024"),
                "reached teleport:3024",
            ),
            (
                format!("tcp,{STRANGER},{PUBLIC},3026"),
                "reached teleport:3026",
            ),
        ];
        let probes: Vec<String> = cases.iter().map(|(p, _)| p.clone()).collect();
        let wanted: Vec<&str> = cases.iter().map(|(_, w)| *w).collect();
        let start = Instant::now();
        let mut seen = self.probe(&probes);
        while seen != wanted {
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "the edge does not serve:\n{}\n{}",
                probes
                    .iter()
                    .zip(&seen)
                    .map(|(p, s)| format!("  {p} → {s}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                self.consoles()
            );
            std::thread::sleep(Duration::from_secs(3));
            seen = self.probe(&probes);
        }
        // The Teleport VM has no way in but the forwards: not its other
        // ports through the public address, not its own address.
        let closed = self.probe(&[
            format!("tcp,{STRANGER},{PUBLIC},3080"),
            format!("tcp,{STRANGER},{TELEPORT},3080"),
            format!("tcp,{OPERATOR},{TELEPORT},22"),
        ]);
        for result in &closed {
            assert!(!result.starts_with("reached"), "{closed:?}");
        }
    }

    /// A VM reaches the internet only as the host's public address.
    fn masquerade_holds(&self) {
        let known_hosts = self.images.lab.path("dist/ssh/known_hosts");
        let jump = format!(
            "ssh -F {} -o BatchMode=yes -W %h:%p waddle-host",
            self.host.config.display()
        );
        let output = run(Command::new("ssh")
            .args([
                "-F",
                "/dev/null",
                "-o",
                "BatchMode=yes",
                "-o",
                "StrictHostKeyChecking=yes",
            ])
            .arg("-o")
            .arg(format!("UserKnownHostsFile={}", known_hosts.display()))
            .args([
                "-o",
                "HostKeyAlias=haproxy",
                "-o",
                "IdentitiesOnly=yes",
                "-i",
            ])
            .arg(&self.vm_key)
            .arg("-o")
            .arg(format!("ProxyCommand={jump}"))
            .arg(format!("deploy@{HAPROXY}"))
            .arg(format!("bash -c 'exec 3<>/dev/tcp/{SERVER}/8080; cat <&3'")));
        assert!(output.status.success(), "{}", text(&output.stderr));
        assert_eq!(text(&output.stdout), format!("{SERVER}:8080"));
        let log = fs::read_to_string(self.scratch.path().join("server.log")).unwrap();
        assert!(
            log.lines()
                .all(|line| line.ends_with(&format!("peer={PUBLIC}"))),
            "the internet saw an internal address: {log}"
        );
    }

    /// POST through the API as root (the simulator's own token), waiting
    /// for the task it starts.
    fn api_task(&self, path: &str) {
        let (status, body) = self.sim.post_with_token(TOKEN, path);
        assert_eq!(status, 200, "{path}: {body}");
        let upid = serde_json::from_str::<Value>(&body).unwrap()["data"]
            .as_str()
            .unwrap()
            .to_string();
        let start = Instant::now();
        loop {
            let (_, body) = self
                .sim
                .get_with_token(TOKEN, &format!("/nodes/{NODE}/tasks/{upid}/status"));
            let status: Value = serde_json::from_str(&body).unwrap();
            if status["data"]["status"] == "stopped" {
                assert_eq!(status["data"]["exitstatus"], "OK", "{path}: {status}");
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(300),
                "{path}: {status}"
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

fn ok(output: &Output, context: &str) -> String {
    assert!(
        output.status.success(),
        "{}\n{}\n{context}",
        text(&output.stdout),
        text(&output.stderr)
    );
    format!("{}{}", text(&output.stdout), text(&output.stderr))
}

fn elapsed(since: Instant) -> f64 {
    since.elapsed().as_secs_f64()
}

#[test]
fn the_twin_brings_a_bare_host_up_to_a_serving_edge() {
    let mut twin = Twin::new();

    let phase = Instant::now();
    ok(&twin.waddlec(&["host", "init", "blueprint.toml"]), "");
    twin.phase("host-init", phase);

    let phase = Instant::now();
    ok(&twin.images.build_sharing_bases(&[]), "");
    twin.phase("bake", phase);

    let phase = Instant::now();
    let plan = twin.deploy(&[]);
    assert!(plan.contains("bridge   create vmbr1"), "{plan}");
    twin.phase("deploy", phase);

    let phase = Instant::now();
    twin.apply_pve_firewall();
    twin.start_listeners();
    twin.edge_serves();
    twin.masquerade_holds();
    twin.phase("boot-to-serving", phase);
    let bare_to_serving = elapsed(twin.started);
    eprintln!("twin: bare-host-to-serving {bare_to_serving:.1} s");

    // Again: nothing to do.
    let again = twin.deploy(&[]);
    assert!(again.contains("nothing to do"), "{again}");

    // Stopped and started through the API, the edge comes back.
    let phase = Instant::now();
    for vmid in [100, 101] {
        twin.api_task(&format!("/nodes/{NODE}/qemu/{vmid}/status/stop"));
    }
    assert!(!twin.probe(&[format!("tcp,{STRANGER},{PUBLIC},3023")])[0].starts_with("reached"));
    for vmid in [100, 101] {
        twin.api_task(&format!("/nodes/{NODE}/qemu/{vmid}/status/start"));
    }
    twin.edge_serves();
    twin.phase("restart-to-serving", phase);

    // A changed HAProxy image replaces that VM only when allowed, and the
    // edge serves the same (plus the new route).
    let phase = Instant::now();
    let blueprint = twin.images.lab.path("blueprint.toml");
    let edited = fs::read_to_string(&blueprint).unwrap().replacen(
        "[[edge.route]]",
        "[[edge.route]]\nsni = \"twin.waddle.social\"\nto = \"teleport:3080\"\n\n[[edge.route]]",
        1,
    );
    fs::write(&blueprint, edited).unwrap();
    ok(&twin.images.build_sharing_bases(&[]), "");
    let held = twin.waddlec(&[
        "deploy",
        "blueprint.toml",
        "--skip-preflight",
        "--tree",
        "dist",
        "--yes",
    ]);
    assert_eq!(held.status.code(), Some(6), "{}", text(&held.stderr));
    let replaced = twin.deploy(&["--allow-replace", "haproxy"]);
    assert!(replaced.contains("replace  VM 100 haproxy"), "{replaced}");
    twin.edge_serves();
    let added = twin.probe(&[format!("hello,{STRANGER},{PUBLIC},443,twin.waddle.social")]);
    assert_eq!(added, ["reached teleport:3080 sni=twin.waddle.social"]);
    twin.phase("replace-to-serving", phase);
    let violations = twin.sim.violations();
    assert!(violations.is_empty(), "{violations:#?}");
    eprintln!("twin: total {:.1} s", elapsed(twin.started));
}
