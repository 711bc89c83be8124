//! cloud-init seeds of the Debian VMs, checked by cloud-init itself
//! (Debian bookworm's 22.4.2): `cloud-init schema` on every user-data, our
//! own check of top-level keys against the schema shipped in the package
//! (22.4 does not flag misspelled ones), PyYAML reading exactly what we
//! meant (YAML 1.1 traps), and `cloud-init devel net-convert` rendering each
//! network-config into the systemd-networkd files the VM will use.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{
    artifacts, build, cluster_blueprints, host_only_blueprints, model, require, run, text,
    valid_blueprints,
};

/// The Python that has cloud-init's modules (Debian's, not a pyenv one).
const SYSTEM_PYTHON: &str = "/usr/bin/python3";

fn seeds(out: &Path) -> Vec<PathBuf> {
    artifacts(out, "cloud-init-user-data")
        .iter()
        .map(|path| out.join(path).parent().unwrap().to_path_buf())
        .collect()
}

/// Every top-level key the cloud-config schema of the installed cloud-init
/// knows: the properties of each module schema it combines.
fn schema_keys() -> BTreeSet<String> {
    let listing = run(Command::new("dpkg").args(["-L", "cloud-init"]));
    let path = text(&listing.stdout)
        .lines()
        .find(|l| l.ends_with("schema-cloud-config-v1.json"))
        .expect("cloud-init ships its schema")
        .to_string();
    let schema: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(path).unwrap()).unwrap();
    let mut keys = BTreeSet::new();
    for part in schema["allOf"].as_array().unwrap() {
        let name = part["$ref"]
            .as_str()
            .unwrap()
            .trim_start_matches("#/$defs/");
        if let Some(properties) = schema["$defs"][name]["properties"].as_object() {
            keys.extend(properties.keys().cloned());
        }
    }
    assert!(
        keys.contains("write_files") && keys.contains("users"),
        "{keys:?}"
    );
    keys
}

fn pyyaml(path: &Path) -> serde_json::Value {
    let output = run(Command::new(SYSTEM_PYTHON)
        .arg("-c")
        .arg("import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))")
        .arg(path));
    assert!(output.status.success(), "{}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn every_user_data_passes_cloud_init_schema_and_uses_known_keys_only() {
    require("cloud-init");
    let known = schema_keys();
    let mut checked = 0;
    for blueprint in valid_blueprints()
        .into_iter()
        .chain(host_only_blueprints())
        .chain(cluster_blueprints())
    {
        let (_guard, out) = build(&blueprint);
        for seed in seeds(&out) {
            let user_data = seed.join("user-data");
            let output = run(Command::new("cloud-init")
                .args(["schema", "--config-file"])
                .arg(&user_data));
            assert!(
                output.status.success(),
                "{}: {}{}",
                user_data.display(),
                text(&output.stdout),
                text(&output.stderr)
            );
            assert!(
                !text(&output.stderr).contains("deprecat")
                    && !text(&output.stdout).contains("deprecat"),
                "deprecated keys: {}",
                text(&output.stderr)
            );
            let contents = fs::read_to_string(&user_data).unwrap();
            assert!(contents.starts_with("#cloud-config\n"));
            // What cloud-init's YAML 1.1 parser reads is what we meant.
            let theirs = pyyaml(&user_data);
            let ours: serde_json::Value = serde_saphyr::from_str(&contents).unwrap();
            assert_eq!(
                theirs,
                ours,
                "{}: PyYAML reads something else",
                user_data.display()
            );
            for key in theirs.as_object().unwrap().keys() {
                assert!(known.contains(key), "`{key}` is not a cloud-config key");
            }
            checked += 1;
        }
    }
    assert!(checked >= 2, "both Debian VMs of waddle checked");
}

#[test]
fn user_data_makes_a_keys_only_login_and_writes_each_vms_files() {
    let blueprint = &valid_blueprints()[0];
    let (_guard, out) = build(blueprint);
    let model = model(blueprint);
    let expected_files: [(&str, &str, &str, &str); 3] = [
        (
            "haproxy",
            "/etc/haproxy/haproxy.cfg",
            "0644",
            "vms/haproxy/haproxy.cfg",
        ),
        (
            "teleport",
            "/etc/teleport.yaml",
            "0600",
            "vms/teleport/teleport.yaml",
        ),
        (
            "teleport",
            "/etc/teleport/resources.yaml",
            "0600",
            "vms/teleport/teleport-resources.yaml",
        ),
    ];
    for vm in ["haproxy", "teleport"] {
        let user_data: serde_json::Value = serde_saphyr::from_str(
            &fs::read_to_string(out.join(format!("vms/{vm}/seed/user-data"))).unwrap(),
        )
        .unwrap();
        assert_eq!(user_data["hostname"], vm);
        assert_eq!(user_data["ssh_pwauth"], false);
        assert_eq!(user_data["disable_root"], true);
        let user = &user_data["users"][0];
        assert_eq!(user["name"], model.operator.login.as_str());
        assert_eq!(user["lock_passwd"], true);
        assert_eq!(
            user["ssh_authorized_keys"],
            serde_json::json!(model.operator.ssh_keys)
        );
        for forbidden in [
            "packages",
            "package_update",
            "package_upgrade",
            "runcmd",
            "bootcmd",
        ] {
            assert!(
                user_data.get(forbidden).is_none(),
                "{vm}: no `{forbidden}`: images are baked"
            );
        }
        let files = user_data["write_files"].as_array().unwrap();
        let sshd = files
            .iter()
            .find(|f| f["path"] == "/etc/ssh/sshd_config.d/50-waddlec.conf")
            .expect("sshd hardening drop-in");
        let sshd = sshd["content"].as_str().unwrap();
        for line in [
            "PermitRootLogin no",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
        ] {
            assert!(sshd.lines().any(|l| l == line), "{line}");
        }
        for (_, path, mode, artifact) in expected_files.iter().filter(|f| f.0 == vm) {
            let file = files
                .iter()
                .find(|f| f["path"] == *path)
                .unwrap_or_else(|| panic!("{vm} receives {path}"));
            assert_eq!(file["permissions"], *mode, "{path}");
            assert_eq!(file["owner"], "root:root");
            assert_eq!(
                file["content"].as_str().unwrap(),
                fs::read_to_string(out.join(artifact)).unwrap(),
                "{path} is the rendered artifact, byte for byte"
            );
        }
    }
}

#[test]
fn sshd_accepts_the_hardening_drop_in() {
    require("sshd");
    let (_guard, out) = build(&valid_blueprints()[0]);
    let user_data: serde_json::Value = serde_saphyr::from_str(
        &fs::read_to_string(out.join("vms/haproxy/seed/user-data")).unwrap(),
    )
    .unwrap();
    let drop_in = user_data["write_files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|file| file["path"] == "/etc/ssh/sshd_config.d/50-waddlec.conf")
        .expect("the seed writes the sshd drop-in");
    let content = drop_in["content"].as_str().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sshd_config");
    fs::write(&config, content).unwrap();
    let key = dir.path().join("host_key");
    let output = run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key));
    assert!(output.status.success());
    // sshd -t insists on its privilege-separation directory existing.
    fs::create_dir_all("/run/sshd").unwrap();
    let output = run(Command::new("sshd")
        .arg("-t")
        .arg("-f")
        .arg(&config)
        .arg("-h")
        .arg(&key));
    assert!(output.status.success(), "sshd -t: {}", text(&output.stderr));
}

#[test]
fn network_config_renders_the_static_addresses_and_route_cloud_init_will_apply() {
    require("cloud-init");
    let mut dual_stack_nics = 0;
    for blueprint in valid_blueprints()
        .into_iter()
        .chain(host_only_blueprints())
        .chain(cluster_blueprints())
    {
        let (_guard, out) = build(&blueprint);
        let model = model(&blueprint);
        for vm in &model.vms {
            let network_config = out.join(format!("vms/{}/seed/network-config", vm.name));
            let rendered = tempfile::tempdir().unwrap();
            let output = run(Command::new("cloud-init")
                .args([
                    "devel",
                    "net-convert",
                    "--kind",
                    "yaml",
                    "-O",
                    "networkd",
                    "-D",
                    "debian",
                ])
                .arg("--network-data")
                .arg(&network_config)
                .arg("-d")
                .arg(rendered.path()));
            assert!(output.status.success(), "{}", text(&output.stderr));
            for (index, nic) in vm.nics.iter().enumerate() {
                let unit = rendered.path().join(format!(
                    "etc/systemd/network/10-cloud-init-eth{index}.network"
                ));
                let unit =
                    fs::read_to_string(&unit).unwrap_or_else(|e| panic!("{}: {e}", unit.display()));
                assert!(unit.contains(&format!("MACAddress={}", nic.mac)), "{unit}");
                assert!(unit.contains(&format!("Address={}", nic.address)), "{unit}");
                match nic.gateway {
                    Some(gateway) => {
                        assert!(unit.contains(&format!("Gateway={gateway}")), "{unit}")
                    }
                    None => assert!(!unit.contains("Gateway="), "{unit}"),
                }
                let dns: Vec<String> = model.proxmox.dns.iter().map(|d| d.to_string()).collect();
                assert!(unit.contains(&format!("DNS={}", dns.join(" "))), "{unit}");
                // A dual-stack NIC: its IPv6 address and default route too.
                if let Some(address6) = nic.address6 {
                    assert!(unit.contains(&format!("Address={address6}")), "{unit}");
                    dual_stack_nics += 1;
                }
                if let Some(gateway6) = nic.gateway6 {
                    assert!(unit.contains(&format!("Gateway={gateway6}")), "{unit}");
                }
                let gateways = unit.matches("Gateway=").count();
                assert_eq!(
                    gateways,
                    usize::from(nic.gateway.is_some()) + usize::from(nic.gateway6.is_some()),
                    "{unit}"
                );
            }
        }
    }
    assert!(dual_stack_nics > 0, "some example's NICs are dual stack");
}

#[test]
fn a_changed_config_is_a_new_instance_for_its_vm_only() {
    let blueprint = &valid_blueprints()[0];
    let (_a, before) = build(blueprint);
    let dir = tempfile::tempdir().unwrap();
    let changed = dir.path().join("changed.toml");
    let text_before = fs::read_to_string(blueprint).unwrap();
    let edited = text_before
        .replace(
            "sni = \"proxmox.waddle.social\"",
            "sni = \"pve.waddle.social\"",
        )
        .replace(
            "public_host = \"proxmox.waddle.social\"",
            "public_host = \"pve.waddle.social\"",
        );
    assert_ne!(edited, text_before);
    fs::write(&changed, edited).unwrap();
    let (_b, after) = build(&changed);
    let instance = |out: &Path, vm: &str| {
        fs::read_to_string(out.join(format!("vms/{vm}/seed/meta-data"))).unwrap()
    };
    assert_ne!(
        instance(&before, "haproxy"),
        instance(&after, "haproxy"),
        "haproxy.cfg changed"
    );
    assert_ne!(
        instance(&before, "teleport"),
        instance(&after, "teleport"),
        "teleport.yaml changed"
    );
    assert_eq!(
        instance(&before, "talos-cp1"),
        instance(&after, "talos-cp1"),
        "Talos untouched"
    );
    assert!(instance(&after, "haproxy").contains("local-hostname: haproxy"));
}
