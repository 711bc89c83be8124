//! `waddlec deploy` against the Proxmox VE API simulator (`tests/pve-sim/`),
//! which keeps state and rejects any request that does not match Proxmox's
//! own API schema (`tests/data/schemas/proxmox/apidata.json`): every test also
//! asserts the deploy sent nothing the schema forbids.
//!
//! The trees are real `build --with-secrets` output; only the disk images
//! are small stand-ins (`qemu-img create`), listed in `images.json` as a
//! baked build would, so these tests take seconds, not the minutes of
//! mmdebstrap.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Output};

use serde_json::{json, Value};

use crate::support::pve_sim::{PveSim, TOKEN, UPLINK};
use crate::support::sha256_hex;
use crate::support::ssh_host::SshHost;
use crate::support::talos_lab::{SecretLab, GITHUB_SECRET, GITHUB_SECRET_ENV};
use crate::support::tsh::{self, Tsh};
use crate::support::{require, run, stand_in_images, text, valid_blueprints, waddlec};

const TOKEN_ENV: &str = "WADDLE_TEST_PVE_TOKEN";

struct Lab {
    sim: PveSim,
    lab: SecretLab,
}

impl Lab {
    fn new() -> Self {
        Self::with(|_| {})
    }

    /// A host that already has the blueprint's bridges (made by hand:
    /// `--skip-host` deploys need them).
    fn with(edit: impl FnOnce(&mut toml::Table)) -> Self {
        Self::on(
            PveSim::start_with(&["--bridge", UPLINK, "--bridge", "vmbr1=10.10.0.1/24"]),
            edit,
        )
    }

    /// A freshly installed host: the uplink bridge only.
    fn bare(edit: impl FnOnce(&mut toml::Table)) -> Self {
        Self::on(PveSim::start(), edit)
    }

    fn on(sim: PveSim, edit: impl FnOnce(&mut toml::Table)) -> Self {
        require("qemu-img");
        let fingerprint = sim.fingerprint.clone();
        let lab = SecretLab::edited(&valid_blueprints()[0], |document| {
            let host = document["host"].as_table_mut().unwrap();
            host.insert("api_fingerprint".into(), fingerprint.into());
            host.insert("api_token".into(), format!("env:{TOKEN_ENV}").into());
            edit(document);
        });
        lab.init();
        let lab = Lab { sim, lab };
        lab.build();
        lab
    }

    /// The deployable tree, with small stand-in images where a baked build
    /// would have its images.
    fn build(&self) {
        let output = self.waddlec(&["build", "blueprint.toml", "--with-secrets", "--no-images"]);
        assert!(output.status.success(), "{}", text(&output.stderr));
        stand_in_images::write(&self.lab.path("dist"));
    }

    fn waddlec(&self, args: &[&str]) -> Output {
        self.waddlec_with(args, Vec::new())
    }

    /// [`Lab::waddlec`] with more environment.
    fn waddlec_with(&self, args: &[&str], env: Vec<(String, String)>) -> Output {
        run(waddlec()
            .current_dir(self.lab.path(""))
            .env(GITHUB_SECRET_ENV, GITHUB_SECRET)
            .env(TOKEN_ENV, TOKEN)
            .env("WADDLEC_CACHE_DIR", self.lab.path("cache"))
            .envs(env)
            .args(args))
    }

    fn deploy(&self, extra: &[&str]) -> Output {
        let mut args = vec![
            "deploy",
            "blueprint.toml",
            "--skip-preflight",
            "--tree",
            "dist",
            "--api",
            &self.sim.url,
            "--skip-host",
            "--yes",
            "--agent-timeout",
            "20",
        ];
        args.extend_from_slice(extra);
        self.waddlec(&args)
    }

    /// A deploy that also sets the host up, over SSH to `host`, installing
    /// under `root`.
    fn deploy_with_host(&self, host: &SshHost, root: &std::path::Path, extra: &[&str]) -> Output {
        self.deploy_through(&host.config, Vec::new(), root, extra)
    }

    /// A deploy that sets the host up with `config` as the ssh config, in
    /// `env` (the Teleport path's), installing under `root`.
    fn deploy_through(
        &self,
        config: &std::path::Path,
        env: Vec<(String, String)>,
        root: &std::path::Path,
        extra: &[&str],
    ) -> Output {
        let config = config.display().to_string();
        let root = root.display().to_string();
        let mut args = vec![
            "deploy",
            "blueprint.toml",
            "--skip-preflight",
            "--tree",
            "dist",
            "--api",
            &self.sim.url,
            "--ssh-config",
            &config,
            "--host-root",
            &root,
            "--yes",
            "--agent-timeout",
            "20",
        ];
        args.extend_from_slice(extra);
        self.waddlec_with(&args, env)
    }

    fn vms(&self) -> Value {
        self.sim.state()["vms"].clone()
    }

    fn assert_no_violations(&self) {
        let violations = self.sim.violations();
        assert!(violations.is_empty(), "schema violations: {violations:#?}");
    }

    /// The seed disks in the host's import storage.
    fn seeds_on_host(&self) -> Vec<String> {
        let mut seeds: Vec<String> = self.sim.state()["storages"]["local"]["volumes"]
            .as_object()
            .into_iter()
            .flatten()
            .filter_map(|(volid, _)| volid.strip_prefix("local:import/"))
            .filter(|file| file.contains("-seed-"))
            .map(str::to_string)
            .collect();
        seeds.sort();
        seeds
    }

    /// Uploads `path` as `name` into the host's import storage, as any
    /// API client could.
    fn upload(&self, name: &str, path: &std::path::Path) {
        let sha256 = sha256_hex(&fs::read(path).unwrap());
        let output = run(Command::new("curl")
            .args(["-sS", "-k", "--fail-with-body", "-X", "POST"])
            .arg("-H")
            .arg(format!("Authorization: PVEAPIToken={TOKEN}"))
            .args(["-F", "content=import", "-F", "checksum-algorithm=sha256"])
            .arg("-F")
            .arg(format!("checksum={sha256}"))
            .arg("-F")
            .arg(format!(
                "filename=@{};filename={name};type=application/octet-stream",
                path.display()
            ))
            .arg(format!(
                "{}/api2/json/nodes/waddle-proxmox01/storage/local/upload",
                self.sim.url
            )));
        assert!(
            output.status.success(),
            "{}{}",
            text(&output.stdout),
            text(&output.stderr)
        );
        // The upload's task moves the file in.
        let started = std::time::Instant::now();
        while !self.seeds_on_host().iter().any(|seed| seed == name) {
            assert!(
                started.elapsed() < std::time::Duration::from_secs(10),
                "{name} never arrived"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    fn image(&self, file: &str) -> PathBuf {
        self.lab.path("dist/images").join(file)
    }
}

fn vm_ids(vms: &Value) -> Vec<String> {
    let mut ids: Vec<String> = vms.as_object().unwrap().keys().cloned().collect();
    ids.sort();
    ids
}

#[test]
fn a_fresh_deploy_creates_everything_and_a_second_one_does_nothing() {
    let lab = Lab::new();
    let output = lab.deploy(&[]);
    assert!(
        output.status.success(),
        "{}\n{}\nsimulator:\n{}",
        text(&output.stdout),
        text(&output.stderr),
        lab.sim.log()
    );
    let plan = text(&output.stdout);
    assert!(plan.contains("create   VM 100 haproxy"), "{plan}");
    lab.assert_no_violations();
    let vms = lab.vms();
    assert_eq!(vm_ids(&vms), ["100", "101", "110", "111", "112"]);
    for (id, vm) in vms.as_object().unwrap() {
        assert_eq!(vm["status"], "running", "VM {id}");
        let config = &vm["config"];
        assert!(
            config["description"]
                .as_str()
                .unwrap()
                .starts_with("Managed by waddlec."),
            "VM {id}: {config}"
        );
        assert!(
            config["scsi0"].as_str().unwrap().contains("size="),
            "{config}"
        );
    }
    assert_eq!(vms["100"]["config"]["bios"], "ovmf");
    // Seeds (they can hold secrets) do not stay in the import directory.
    let local = lab.sim.state()["storages"]["local"].to_string();
    assert!(local.contains("debian-12-haproxy-haproxy-"), "{local}");
    assert!(!local.contains("-seed-"), "seed left on the host: {local}");

    let before = lab.sim.requests().len();
    let output = lab.deploy(&[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("nothing to do"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(lab.sim.changes_since(before), Vec::<String>::new());
    lab.assert_no_violations();
}

#[test]
fn a_changed_image_replaces_its_vm_only_when_allowed() {
    let lab = Lab::new();
    assert!(lab.deploy(&[]).status.success());
    let old = lab.vms()["100"]["config"]["description"].clone();

    // A new route changes haproxy.cfg, which is baked into the edge image.
    let blueprint = lab.lab.path("blueprint.toml");
    let mut text_ = fs::read_to_string(&blueprint).unwrap();
    text_.push_str("\n[[edge.route]]\nsni = \"status.waddle.social\"\nto = \"gateway:443\"\n");
    fs::write(&blueprint, text_).unwrap();
    lab.build();

    let output = lab.deploy(&[]);
    assert_eq!(output.status.code(), Some(6), "{}", text(&output.stderr));
    let plan = text(&output.stdout);
    assert!(
        plan.contains("replace  VM 100 haproxy") && plan.contains("needs --allow-replace haproxy"),
        "{plan}"
    );
    assert_eq!(lab.vms()["100"]["config"]["description"], old);

    let output = lab.deploy(&["--allow-replace", "haproxy"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let new = lab.vms()["100"]["config"]["description"].clone();
    assert_ne!(new, old);
    assert_eq!(vm_ids(&lab.vms()).len(), 5);
    lab.assert_no_violations();
}

#[test]
fn a_checksum_mismatch_fails_the_upload_and_names_both_hashes() {
    let lab = Lab::new();
    let images: Value =
        serde_json::from_str(&fs::read_to_string(lab.lab.path("dist/images.json")).unwrap())
            .unwrap();
    let file = images[0]["file"].as_str().unwrap();
    let mut bytes = fs::read(lab.image(file)).unwrap();
    bytes[100] ^= 0xff;
    fs::write(lab.image(file), &bytes).unwrap();
    let output = lab.deploy(&[]);
    assert_eq!(output.status.code(), Some(69), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("checksum mismatch"), "{stderr}");
    assert!(
        stderr.contains(images[0]["sha256"].as_str().unwrap()),
        "{stderr}"
    );
    assert!(
        stderr.contains(&sha256_hex(&bytes)),
        "the actual hash: {stderr}"
    );
    lab.assert_no_violations();
}

#[test]
fn a_failed_task_shows_its_log_and_a_rerun_converges() {
    let lab = Lab::new();
    lab.sim.faults(json!({"faults": [{
        "fail_task": {
            "type": "qmcreate",
            "exitstatus": "unable to create VM 100 - import failed",
            "log": ["importing disk 'local:import/x.qcow2'", "qemu-img: no space left on device"]
        },
        "once": true
    }]}));
    let output = lab.deploy(&[]);
    assert_eq!(output.status.code(), Some(69), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("no space left on device"), "{stderr}");
    let output = lab.deploy(&[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(vm_ids(&lab.vms()), ["100", "101", "110", "111", "112"]);
    lab.assert_no_violations();
}

#[test]
fn connections_dropped_mid_upload_and_mid_create_converge_on_rerun() {
    let lab = Lab::new();
    lab.sim
        .faults(json!({"faults": [{"drop_upload_after_bytes": 65536, "once": true}]}));
    let output = lab.deploy(&[]);
    assert!(
        !output.status.success(),
        "the dropped upload must fail the deploy"
    );
    lab.sim
        .faults(json!({"faults": [{"drop_after_create": true, "once": true}]}));
    let output = lab.deploy(&[]);
    assert!(
        !output.status.success(),
        "the dropped create must fail the deploy"
    );
    // The VM whose create answer was lost is adopted, and its seed (it
    // holds secrets) does not stay behind.
    assert!(
        lab.seeds_on_host()
            .iter()
            .any(|seed| seed.starts_with("haproxy-seed-")),
        "the lost create's seed: {:?}",
        lab.seeds_on_host()
    );
    let output = lab.deploy(&[]);
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let plan = text(&output.stdout);
    assert!(
        plan.contains("remove   haproxy-seed-")
            && plan.contains("(a seed disk no VM is being created from)"),
        "{plan}"
    );
    assert_eq!(vm_ids(&lab.vms()), ["100", "101", "110", "111", "112"]);
    assert_eq!(lab.seeds_on_host(), Vec::<String>::new());
    let before = lab.sim.requests().len();
    assert!(lab.deploy(&[]).status.success());
    assert_eq!(lab.sim.changes_since(before), Vec::<String>::new());
    lab.assert_no_violations();
}

/// A deploy killed right after a create (the seed uploaded, the VM made,
/// the seed not yet removed): the next deploy removes the seed, and only
/// seeds named as the blueprint's are.
#[test]
fn a_seed_left_by_a_killed_deploy_is_removed_and_no_file_of_someone_else() {
    let lab = Lab::new();
    assert!(lab.deploy(&[]).status.success());
    let images: Value =
        serde_json::from_str(&fs::read_to_string(lab.lab.path("dist/host/images.json")).unwrap())
            .unwrap();
    let seed = images[0]["seed"]["file"].as_str().unwrap().to_string();
    // The seed again, as the killed deploy left it, and a file the
    // blueprint does not own beside it.
    let seed_path = lab.lab.path(&format!(
        "dist/{}",
        images[0]["seed"]["artifact"].as_str().unwrap()
    ));
    let foreign = lab.lab.path("other-seed-0123456789ab.raw");
    fs::copy(&seed_path, &foreign).unwrap();
    for (name, path) in [
        (seed.as_str(), &seed_path),
        ("other-seed-0123456789ab.raw", &foreign),
    ] {
        lab.upload(name, path);
    }
    assert_eq!(lab.seeds_on_host().len(), 2);
    let output = lab.deploy(&["--dry-run", "--format", "json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(plan["changes"], true);
    assert!(
        plan["steps"]
            .as_array()
            .unwrap()
            .contains(&json!({"action": "remove-seed", "file": seed})),
        "{plan:#}"
    );
    let output = lab.deploy(&[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(lab.seeds_on_host(), ["other-seed-0123456789ab.raw"]);
    let before = lab.sim.requests().len();
    let output = lab.deploy(&[]);
    assert!(text(&output.stderr).contains("nothing to do"));
    assert_eq!(lab.sim.changes_since(before), Vec::<String>::new());
    lab.assert_no_violations();
}

/// A config value as text (the simulator keeps pending values as strings).
fn setting(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_string)
}

/// The blueprint's memory for `vm` (`"3G"`), rebuilt.
fn set_memory(lab: &Lab, vm: &str, memory: &str) {
    let path = lab.lab.path("blueprint.toml");
    let mut document: toml::Table = fs::read_to_string(&path).unwrap().parse().unwrap();
    for entry in document["vm"].as_array_mut().unwrap() {
        if entry["name"].as_str() == Some(vm) {
            entry
                .as_table_mut()
                .unwrap()
                .insert("memory".into(), memory.into());
        }
    }
    fs::write(&path, toml::to_string(&document).unwrap()).unwrap();
    lab.build();
}

#[test]
fn a_setting_held_for_the_next_start_is_pending_until_a_restart_is_allowed() {
    let lab = Lab::new();
    assert!(lab.deploy(&[]).status.success());
    // Memory without hotplug: Proxmox keeps it for the next start.
    set_memory(&lab, "haproxy", "3G");
    let output = lab.deploy(&[]);
    assert_eq!(output.status.code(), Some(6), "{}", text(&output.stderr));
    let plan = text(&output.stdout);
    let pending = "pending  VM 100 haproxy: memory 2048 → 3072 pending until its next start — needs --allow-restart haproxy, not done";
    assert!(
        plan.contains("update   VM 100 haproxy: memory 2048 → 3072") && plan.contains(pending),
        "{plan}"
    );
    let vm = &lab.vms()["100"];
    assert_eq!(setting(&vm["pending"]["memory"]), "3072", "{vm:#}");
    assert_eq!(setting(&vm["config"]["memory"]), "2048", "{vm:#}");

    // Still pending, not done: the next deploy says so and sends nothing.
    let before = lab.sim.requests().len();
    let output = lab.deploy(&[]);
    assert_eq!(output.status.code(), Some(6), "{}", text(&output.stderr));
    let plan = text(&output.stdout);
    assert!(
        plan.contains(pending) && !plan.contains("update "),
        "{plan}"
    );
    assert_eq!(lab.sim.changes_since(before), Vec::<String>::new());

    let output = lab.deploy(&["--allow-restart", "nosuch"]);
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("--allow-restart nosuch: the blueprint has no VM `nosuch`")
    );

    // A guest that ignores the shutdown is not forced off: the deploy stops.
    lab.sim.faults(json!({"faults": [{
        "fail_task": {"type": "qmshutdown", "id": "100", "exitstatus": "VM quit/powerdown failed"},
        "once": true
    }]}));
    let before = lab.sim.requests().len();
    let output = lab.deploy(&["--allow-restart", "haproxy"]);
    assert_eq!(output.status.code(), Some(69), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("VM 100 did not shut down cleanly within 180 s")
            && stderr.contains("VM quit/powerdown failed")
            && stderr.contains("it was not forced off"),
        "{stderr}"
    );
    let changes = lab.sim.changes_since(before);
    assert!(
        !changes.iter().any(|c| c.ends_with("/status/stop")),
        "never a hard stop: {changes:?}"
    );
    assert_eq!(lab.vms()["100"]["status"], "running");

    let before = lab.sim.requests().len();
    let output = lab.deploy(&["--allow-restart", "haproxy"]);
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(
        text(&output.stdout).contains(
            "restart  VM 100 haproxy: memory 2048 → 3072 pending until its next start; clean shutdown, start"
        ),
        "{}",
        text(&output.stdout)
    );
    let changes = lab.sim.changes_since(before);
    let shutdown = changes
        .iter()
        .position(|c| c.ends_with("/qemu/100/status/shutdown"));
    let start = changes
        .iter()
        .position(|c| c.ends_with("/qemu/100/status/start"));
    assert!(
        shutdown.is_some() && start > shutdown,
        "a clean shutdown, then a start: {changes:?}"
    );
    assert!(
        !changes.iter().any(|c| c.ends_with("/status/stop")),
        "never a hard stop: {changes:?}"
    );
    let vm = &lab.vms()["100"];
    assert_eq!(setting(&vm["config"]["memory"]), "3072", "{vm:#}");
    assert_eq!(vm["status"], "running");
    assert!(
        vm["pending"].as_object().is_none_or(|p| p.is_empty()),
        "{vm:#}"
    );
    let before = lab.sim.requests().len();
    let output = lab.deploy(&[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("nothing to do"));
    assert_eq!(lab.sim.changes_since(before), Vec::<String>::new());
    lab.assert_no_violations();
}

#[test]
fn skip_host_refuses_a_missing_bridge_before_any_change() {
    let lab = Lab::bare(|_| {});
    let output = lab.deploy(&[]);
    assert_eq!(output.status.code(), Some(6), "{}", text(&output.stderr));
    let plan = text(&output.stdout);
    assert!(
        plan.contains("CONFLICT bridge vmbr1: used by VM haproxy, teleport, ")
            && plan.contains("does not exist on the host: VMs on it cannot start; run `waddlec deploy` without --skip-host, which creates and applies it"),
        "{plan}"
    );
    assert!(!plan.contains("bridge   create"), "{plan}");
    assert_eq!(lab.sim.changes_since(0), Vec::<String>::new());
    lab.assert_no_violations();
}

/// From a freshly installed host (no vmbr1): the bridge is created and
/// applied before any VM, the VMs start on it, and a second deploy
/// changes nothing.
#[test]
fn a_bare_host_gets_its_bridge_before_any_vm_and_nothing_the_second_time() {
    let host = SshHost::start();
    let lab = Lab::bare(over_ssh);
    write_host_record(&lab, &host.host_public_key(), &lab.sim.fingerprint);
    let root = tempfile::tempdir().unwrap();
    let output = lab.deploy_with_host(&host, root.path(), &[]);
    assert!(
        output.status.success(),
        "{}\n{}\nsimulator:\n{}",
        text(&output.stdout),
        text(&output.stderr),
        lab.sim.log()
    );
    let plan = text(&output.stdout);
    for line in [
        "ok       bridge vmbr0",
        "bridge   create vmbr1 10.10.0.1/24 (no ports, autostart)",
        "network  apply the node's pending network configuration (vmbr1)",
    ] {
        assert!(plan.contains(line), "{line}: {plan}");
    }
    let changes = lab.sim.changes_since(0);
    let applied = changes
        .iter()
        .position(|c| c.starts_with("PUT ") && c.ends_with("/network"));
    let created = changes
        .iter()
        .position(|c| c.starts_with("POST ") && c.ends_with("/qemu"));
    assert!(
        applied.is_some() && applied < created,
        "the network before any VM: {changes:?}"
    );
    let network = lab.sim.state()["network"].clone();
    assert!(network["interfaces.new"].is_null(), "{network:#}");
    assert!(
        network["up"].as_array().unwrap().contains(&json!("vmbr1")),
        "{network:#}"
    );
    let interfaces = network["interfaces"].as_str().unwrap();
    assert!(
        interfaces.contains("iface vmbr1 inet static")
            && interfaces.contains("#managed by waddlec"),
        "{interfaces}"
    );
    for (id, vm) in lab.vms().as_object().unwrap() {
        assert_eq!(vm["status"], "running", "VM {id}");
    }
    let before = lab.sim.requests().len();
    let output = lab.deploy_with_host(&host, root.path(), &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("nothing to do"));
    assert_eq!(lab.sim.changes_since(before), Vec::<String>::new());
    lab.assert_no_violations();
}

/// A VLAN-aware bridge and a tagged NIC reach the host as the API schema
/// spells them (`bridge_vlan_aware`, `net0: …,tag=N`), and the host the
/// simulator keeps then needs nothing more.
#[test]
fn a_vlan_aware_bridge_and_a_tagged_nic_are_deployed_and_kept() {
    let host = SshHost::start();
    let lab = Lab::bare(|document| {
        over_ssh(document);
        let bridges = document["bridge"].as_array_mut().unwrap();
        bridges[1]
            .as_table_mut()
            .unwrap()
            .insert("vlan_aware".into(), true.into());
        let vms = document["vm"].as_array_mut().unwrap();
        let nic = vms[1]["nics"].as_array_mut().unwrap()[0]
            .as_table_mut()
            .unwrap();
        nic.insert("tag".into(), 20.into());
    });
    write_host_record(&lab, &host.host_public_key(), &lab.sim.fingerprint);
    let root = tempfile::tempdir().unwrap();
    let output = lab.deploy_with_host(&host, root.path(), &[]);
    assert!(
        output.status.success(),
        "{}\n{}\nsimulator:\n{}",
        text(&output.stdout),
        text(&output.stderr),
        lab.sim.log()
    );
    assert!(
        text(&output.stdout)
            .contains("bridge   create vmbr1 10.10.0.1/24 (no ports, autostart, VLAN-aware)"),
        "{}",
        text(&output.stdout)
    );
    let network = lab.sim.state()["network"].clone();
    let interfaces = network["interfaces"].as_str().unwrap();
    assert!(interfaces.contains("bridge-vlan-aware yes"), "{interfaces}");
    let vms = lab.vms();
    let teleport = vms["101"]["config"]["net0"].as_str().unwrap_or_default();
    assert!(teleport.ends_with(",tag=20"), "{vms:#}");
    let before = lab.sim.requests().len();
    let output = lab.deploy_with_host(&host, root.path(), &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("nothing to do"));
    assert_eq!(lab.sim.changes_since(before), Vec::<String>::new());
    lab.assert_no_violations();
}

/// A vmbr1 the operator made with other settings is theirs: a conflict,
/// nothing changed.
#[test]
fn a_bridge_made_by_hand_with_other_settings_is_a_conflict() {
    let host = SshHost::start();
    let lab = Lab::on(
        PveSim::start_with(&["--bridge", UPLINK, "--bridge", "vmbr1=10.99.0.1/24"]),
        over_ssh,
    );
    write_host_record(&lab, &host.host_public_key(), &lab.sim.fingerprint);
    let root = tempfile::tempdir().unwrap();
    let output = lab.deploy_with_host(&host, root.path(), &[]);
    assert_eq!(output.status.code(), Some(6), "{}", text(&output.stderr));
    let plan = text(&output.stdout);
    assert!(
        plan.contains("CONFLICT bridge vmbr1: the host's bridge differs (cidr 10.99.0.1/24 → 10.10.0.1/24) and was not made by waddlec"),
        "{plan}"
    );
    assert_eq!(lab.sim.changes_since(0), Vec::<String>::new());
    lab.assert_no_violations();
}

/// A fingerprint of the same shape that is not `pinned`.
fn another_fingerprint(pinned: &str) -> String {
    pinned
        .split(':')
        .map(|pair| if pair == "00" { "01" } else { "00" })
        .collect::<Vec<_>>()
        .join(":")
}

/// The host record `host init` would write for the lab's simulated host.
fn write_host_record(lab: &Lab, ssh_host_key: &str, api_fingerprint: &str) {
    let key: Vec<&str> = ssh_host_key.split_whitespace().take(2).collect();
    fs::write(
        lab.lab.path("blueprint.host.toml"),
        format!(
            "version = 1\nnode = \"waddle-proxmox01\"\nssh_host_key = \"{}\"\napi_fingerprint = \"{api_fingerprint}\"\n",
            key.join(" ")
        ),
    )
    .unwrap();
}

/// A key no test host presents.
const STRANGER_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRlbW9jcmF0aWMtY3NpLXdhZGRsZS1wbGFjZWhvbGRy";

#[test]
fn a_certificate_other_than_the_pinned_one_is_refused() {
    let lab = Lab::new();
    let blueprint = lab.lab.path("blueprint.toml");
    let pinned = lab.sim.fingerprint.clone();
    let other = another_fingerprint(&pinned);
    let text_ = fs::read_to_string(&blueprint)
        .unwrap()
        .replace(&pinned, &other);
    fs::write(&blueprint, text_).unwrap();
    let output = lab.deploy(&["--dry-run"]);
    assert_eq!(output.status.code(), Some(69), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&pinned) && stderr.contains(&other) && stderr.contains("not the pinned"),
        "{stderr}"
    );
    assert!(lab.sim.requests().is_empty(), "no request passed the pin");
}

#[test]
fn a_second_deploy_is_stopped_by_the_host_lock() {
    let lab = Lab::new();
    // Another deploy holds the lock.
    let output = run(Command::new("curl")
        .args(["-sS", "-k", "-X", "POST"])
        .arg("-H")
        .arg(format!("Authorization: PVEAPIToken={TOKEN}"))
        .args([
            "--data",
            "poolid=waddlec-deploy&comment=waddlec deploy by ci@runner pid 7",
        ])
        .arg(format!("{}/api2/json/pools", lab.sim.url)));
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = lab.deploy(&[]);
    assert_eq!(output.status.code(), Some(7), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("ci@runner pid 7"), "{stderr}");
    assert!(lab.vms().as_object().is_none_or(|vms| vms.is_empty()));
    let output = lab.deploy(&["--break-lock"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("breaking the host's deploy lock held by"));
    // Released when done: nothing holds the host.
    let pools = lab.sim.state()["pools"].clone();
    assert!(
        pools.as_object().is_none_or(|p| p.is_empty())
            && pools.as_array().is_none_or(|p| p.is_empty()),
        "{pools}"
    );
    lab.assert_no_violations();
}

#[test]
fn a_dry_run_shows_the_plan_as_json_and_changes_nothing() {
    let lab = Lab::new();
    let output = lab.deploy(&["--dry-run", "--format", "json"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["changes"], true);
    let actions: Vec<&str> = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|step| step["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions.iter().filter(|a| **a == "create").count(), 5);
    assert_eq!(actions.iter().filter(|a| **a == "upload").count(), 8);
    assert!(
        lab.sim.changes_since(0).is_empty(),
        "{:?}",
        lab.sim.changes_since(0)
    );
}

/// The blueprint's host reached as the test's SSH host.
fn over_ssh(document: &mut toml::Table) {
    document["host"]
        .as_table_mut()
        .unwrap()
        .insert("ssh".into(), "waddle-host".into());
}

#[test]
fn a_full_deploy_sets_up_the_host_then_finds_nothing_to_do() {
    let host = SshHost::start();
    let lab = Lab::with(over_ssh);
    // As `host init` records it: the host setup's SSH pins this key.
    write_host_record(&lab, &host.host_public_key(), &lab.sim.fingerprint);
    let root = tempfile::tempdir().unwrap();
    let output = lab.deploy_with_host(&host, root.path(), &[]);
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    let plan = text(&output.stdout);
    assert!(
        plan.contains("host     would change: /etc/pve/firewall/cluster.fw"),
        "{plan}"
    );
    assert!(root.path().join("etc/pve/firewall/cluster.fw").is_file());
    assert_eq!(vm_ids(&lab.vms()).len(), 5);
    let before = lab.sim.requests().len();
    let output = lab.deploy_with_host(&host, root.path(), &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("nothing to do"));
    assert!(
        !text(&output.stdout).contains("host "),
        "{}",
        text(&output.stdout)
    );
    assert_eq!(lab.sim.changes_since(before), Vec::<String>::new());
    lab.assert_no_violations();

    // Access opened from the console is shown above the plan and kept;
    // only --close-emergency removes it.
    let opened = run(Command::new("bash")
        .arg(root.path().join("usr/local/sbin/waddlec-emergency"))
        .args(["open", "192.0.2.7", "--root"])
        .arg(root.path()));
    assert!(opened.status.success(), "{}", text(&opened.stderr));
    let output = lab.deploy_with_host(&host, root.path(), &["--dry-run", "--format", "json"]);
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(plan["changes"], false, "{plan}");
    let kept = plan["emergency"].as_array().unwrap();
    assert_eq!(kept.len(), 2, "{plan}");
    assert!(kept[0]
        .as_str()
        .unwrap()
        .starts_with("kept IN ACCEPT -source 192.0.2.7 -p tcp -dport 22 "));
    let output = lab.deploy_with_host(&host, root.path(), &[]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("EMERGENCY access on the host's firewall"),
        "{stderr}"
    );
    assert!(
        stderr.contains("waddlec deploy --close-emergency"),
        "{stderr}"
    );
    let host_fw = root.path().join("etc/pve/nodes/waddle-proxmox01/host.fw");
    assert!(fs::read_to_string(&host_fw)
        .unwrap()
        .contains("# EMERGENCY until "));
    let output = lab.deploy_with_host(&host, root.path(), &["--close-emergency"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout)
            .contains("host     would change: /etc/pve/nodes/waddle-proxmox01/host.fw"),
        "{}",
        text(&output.stdout)
    );
    assert!(!fs::read_to_string(&host_fw).unwrap().contains("EMERGENCY"));

    // A host presenting another key than the recorded one gets no setup.
    write_host_record(&lab, STRANGER_KEY, &lab.sim.fingerprint);
    let output = lab.deploy_with_host(&host, root.path(), &[]);
    assert_eq!(output.status.code(), Some(69), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("Host key verification failed"),
        "{}",
        text(&output.stderr)
    );
}

#[test]
fn a_firewall_that_would_lock_the_operator_out_is_refused() {
    let host = SshHost::start();
    // The operator's SSH rule now admits another port: DROP would cut 22.
    let lab = Lab::with(|document| {
        over_ssh(document);
        for rule in document["firewall"]["temporary"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
        {
            if rule["name"].as_str() == Some("operator-ssh") {
                rule.as_table_mut()
                    .unwrap()
                    .insert("port".into(), 2222.into());
            }
        }
    });
    let root = tempfile::tempdir().unwrap();
    let output = lab.deploy_with_host(&host, root.path(), &[]);
    assert_eq!(output.status.code(), Some(6), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains("refusing to change the host firewall")
            && stderr.contains("SSH on port 22"),
        "{stderr}"
    );
    assert!(
        fs::read_dir(root.path()).unwrap().next().is_none(),
        "nothing installed on the host"
    );
    assert_eq!(lab.sim.changes_since(0), Vec::<String>::new());
}

/// The blueprint reaching the host through Teleport as `root@waddle-host`
/// (the stand-in's node), its firewall without the operator's direct SSH
/// rule (it admits port 2222 instead): the seed's Phase 3 lockdown.
fn through_teleport_without_ssh_rule(document: &mut toml::Table) {
    document["host"]
        .as_table_mut()
        .unwrap()
        .insert("ssh".into(), format!("teleport:root@{}", tsh::NODE).into());
    for rule in document["firewall"]["temporary"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
    {
        if rule["name"].as_str() == Some("operator-ssh") {
            rule.as_table_mut()
                .unwrap()
                .insert("port".into(), 2222.into());
        }
    }
}

/// With `host.ssh` through Teleport, the deploy logs in through `tsh proxy
/// ssh` (the stand-in `tests/support/tsh_stand_in.py`, relaying to the
/// lab's sshd) before anything else, and that login lets a firewall
/// without the direct SSH rule go out; the host setup itself goes the same
/// way. The stand-in saw `tsh config`'s ProxyCommand, every time.
#[test]
fn a_firewall_without_the_direct_ssh_rule_goes_out_after_a_login_through_teleport() {
    let host = SshHost::start();
    let lab = Lab::with(through_teleport_without_ssh_rule);
    let tsh = Tsh::for_host(&host, true);
    let root = tempfile::tempdir().unwrap();
    let output = lab.deploy_through(&tsh.config, tsh.env(), root.path(), &[]);
    assert!(
        output.status.success(),
        "{}\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    assert!(root.path().join("etc/pve/firewall/cluster.fw").is_file());
    let host_fw =
        fs::read_to_string(root.path().join("etc/pve/nodes/waddle-proxmox01/host.fw")).unwrap();
    assert!(
        !host_fw.contains("-dport 22 -log nolog # temporary") && host_fw.contains("-dport 2222 "),
        "{host_fw}"
    );
    let calls = tsh.calls();
    let expected = format!(
        "proxy ssh --cluster={} --proxy={} root@{}.{}:22",
        tsh::CLUSTER,
        tsh::PROXY,
        tsh::NODE,
        tsh::CLUSTER
    );
    // The login, the setup's check, the check again under the lock, the setup.
    assert!(calls.lines().count() >= 4, "{calls}");
    assert!(calls.lines().all(|line| line == expected), "{calls}");
}

/// A login through Teleport that fails (tsh is not logged in) stops the
/// deploy before anything changes, naming the failure and the fix; the
/// direct SSH rule is gone, so the plan could leave nothing to reach the
/// host with.
#[test]
fn a_failed_login_through_teleport_refuses_the_plan_with_the_fix() {
    let host = SshHost::start();
    let lab = Lab::with(through_teleport_without_ssh_rule);
    let tsh = Tsh::for_host(&host, false);
    let root = tempfile::tempdir().unwrap();
    let output = lab.deploy_through(&tsh.config, tsh.env(), root.path(), &[]);
    assert_eq!(output.status.code(), Some(6), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    for part in [
        "logging in through it failed",
        "Not logged in",
        "no firewall rule admits you to SSH on port 22",
        "tsh login --proxy=teleport.waddle.social:443",
    ] {
        assert!(stderr.contains(part), "{part}: {stderr}");
    }
    assert_eq!(tsh.calls().lines().count(), 1, "{}", tsh.calls());
    assert!(
        fs::read_dir(root.path()).unwrap().next().is_none(),
        "nothing installed on the host"
    );
    assert_eq!(lab.sim.changes_since(0), Vec::<String>::new());
}

/// The certificate `host init` recorded is what deploy trusts when the
/// blueprint pins none; a record naming another one lets no request out,
/// and a record that disagrees with the blueprint is a conflict.
#[test]
fn the_host_record_pins_the_api_when_the_blueprint_does_not() {
    let lab = Lab::with(|document| {
        document["host"]
            .as_table_mut()
            .unwrap()
            .remove("api_fingerprint");
    });
    let write_record = |fingerprint: &str| write_host_record(&lab, STRANGER_KEY, fingerprint);
    let output = lab.deploy(&["--dry-run"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("waddlec host init"));
    assert!(lab.sim.requests().is_empty());

    let pinned = lab.sim.fingerprint.clone();
    let other = another_fingerprint(&pinned);
    write_record(&other);
    let output = lab.deploy(&["--dry-run"]);
    assert_eq!(output.status.code(), Some(69), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("not the pinned"));
    assert!(lab.sim.requests().is_empty(), "no request passed the pin");

    write_record(&pinned);
    let output = lab.deploy(&["--dry-run"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
}
