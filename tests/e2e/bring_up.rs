//! The bring-up README.md documents, end to end, from a simulated bare
//! Proxmox host (no internal bridge, no API user or token, nothing pinned,
//! sshd as installed): `waddlec host init`, then `build --with-secrets`
//! and `deploy --yes` with the token host init made, converge; a second
//! `host init` and `deploy` change nothing; a deploy against a host whose
//! certificate changed sends no request at all.
//!
//! Stand-ins: the Proxmox API and `pvesh` (`tests/pve-sim/`: held to PVE's
//! API schema, with the node's network, users, roles, ACLs and privsep
//! tokens whose permissions it checks, so the token's role must really be
//! enough), the host's `systemctl`, `zfs`, `targetcli`, `useradd`,
//! `getent` (the `SshHost` lab's recording stand-ins), and the disk images
//! (small qcow2 files, `support::stand_in_images`). Real: ssh and sshd
//! (the lab's, which the hardening really reconfigures), bash running the
//! host setup, iptables and sysctl in the lab's namespace.

use std::fs;
use std::process::Output;

use serde_json::Value;

use crate::support::pve_sim::PveSim;
use crate::support::ssh_host::SshHost;
use crate::support::talos_lab::SecretLab;
use crate::support::{stand_in_images, text, valid_blueprints};

struct BareHost {
    sim: PveSim,
    host: SshHost,
    lab: SecretLab,
}

impl BareHost {
    fn new() -> BareHost {
        let sim = PveSim::start();
        let host = SshHost::start_with_pve(&sim.pvesh_socket());
        let lab = SecretLab::edited(&valid_blueprints()[0], |document| {
            let table = document["host"].as_table_mut().unwrap();
            table.insert("ssh".into(), "waddle-host".into());
            table.insert("api_token".into(), "file:pve-token".into());
            table.remove("api_fingerprint");
        });
        host.install_proxmox_files(&sim.certificate());
        BareHost { sim, host, lab }
    }

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
        self.lab.waddlec(&all)
    }

    fn host_init(&self) -> Output {
        self.waddlec(&["host", "init", "blueprint.toml"])
    }

    fn deploy(&self) -> Output {
        self.waddlec(&[
            "deploy",
            "blueprint.toml",
            "--skip-preflight",
            "--tree",
            "dist",
            "--yes",
            "--agent-timeout",
            "20",
        ])
    }

    fn assert_no_violations(&self) {
        let violations = self.sim.violations();
        assert!(
            violations.is_empty(),
            "schema or permission violations: {violations:#?}"
        );
    }
}

fn ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    format!("{}{}", text(&output.stdout), text(&output.stderr))
}

#[test]
fn from_a_bare_host_host_init_then_deploy_converge_and_a_second_run_does_nothing() {
    let bare = BareHost::new();
    let state = bare.sim.state().to_string();
    assert!(
        !state.contains("vmbr1"),
        "the simulated host is not bare: {state}"
    );

    ok(&bare.host_init());
    bare.lab.init();
    ok(&bare
        .lab
        .waddlec(&["build", "blueprint.toml", "--with-secrets", "--no-images"]));
    stand_in_images::write(&bare.lab.path("dist"));
    let report = ok(&bare.deploy());
    assert!(
        report.contains("vmbr1"),
        "the plan does not create the internal bridge: {report}"
    );

    let state = bare.sim.state();
    let vms = state["vms"].as_object().unwrap();
    assert_eq!(vms.len(), 5, "{state}");
    assert!(vms.values().all(|vm| vm["status"] == "running"), "{state}");
    // The deploy ran as the token host init made, not as root.
    let requests = bare.sim.requests();
    let token_users: Vec<&Value> = requests
        .iter()
        .filter(|r| r.get("via") != Some(&Value::from("pvesh")))
        .filter_map(|r| r.get("user"))
        .collect();
    assert!(
        !token_users.is_empty() && token_users.iter().all(|u| *u == "waddlec@pve!deploy"),
        "{token_users:?}"
    );
    bare.assert_no_violations();

    // Again: nothing to do, nowhere.
    let before = bare.sim.requests().len();
    let again = ok(&bare.host_init());
    assert!(again.contains("kept (it works)"), "{again}");
    let again = ok(&bare.deploy());
    assert!(again.contains("nothing to do"), "{again}");
    assert_eq!(bare.sim.changes_since(before), Vec::<String>::new());

    // A host whose certificate is no longer the recorded one: no request.
    let record = bare.lab.path("blueprint.host.toml");
    let text_record = fs::read_to_string(&record).unwrap();
    let recorded = text_record
        .lines()
        .find_map(|l| l.strip_prefix("api_fingerprint = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    let other: String = recorded
        .chars()
        .map(|c| {
            if c == ':' {
                ':'
            } else if c == '0' {
                '1'
            } else {
                '0'
            }
        })
        .collect();
    fs::write(&record, text_record.replace(&recorded, &other)).unwrap();
    let before = bare.sim.requests().len();
    let output = bare.deploy();
    assert!(!output.status.success());
    assert_eq!(
        bare.sim.requests().len(),
        before,
        "a request reached the host"
    );
}
