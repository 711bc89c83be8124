//! The qm script: shellcheck-clean, idempotent when run twice against a
//! stand-in `qm`/`pvesm` that keeps VM state, and every `qm create` option
//! accepted by the Proxmox API schema (`POST /nodes/{node}/qemu` in
//! `tests/data/schemas/proxmox/apidata.json`).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::{
    build, cluster_blueprints, host_dirs, host_only_blueprints, require, run, schema_file, text,
    valid_blueprints,
};

#[test]
fn generated_scripts_pass_shellcheck() {
    require("shellcheck");
    for blueprint in valid_blueprints()
        .into_iter()
        .chain(host_only_blueprints())
        .chain(cluster_blueprints())
    {
        let (_guard, out) = build(&blueprint);
        // The Teleport VM's, with Teleport.
        let teleport_node_keys = out.join("vms/teleport/waddlec-teleport-node-keys");
        let with_teleport = teleport_node_keys.exists().then_some(teleport_node_keys);
        let scripts = host_dirs(&out).into_iter().flat_map(|host| {
            [
                "create-vms.sh",
                "network/waddlec-host-network",
                "setup.sh",
                "emergency-recovery.sh",
            ]
            .map(|script| host.join(script))
        });
        for script in scripts.chain(with_teleport) {
            let script = script.strip_prefix(&out).unwrap().to_path_buf();
            let output = run(Command::new("shellcheck")
                .args(["--shell=bash", "--severity=style"])
                .arg(out.join(&script)));
            assert!(
                output.status.success(),
                "{} from {}:\n{}",
                script.display(),
                blueprint.display(),
                text(&output.stdout)
            );
        }
    }
}

const STAND_IN_QM: &str = r#"#!/bin/bash
# Stand-in for Proxmox's qm: records calls and keeps VM state in $QM_STATE.
echo "qm $*" >>"$QM_STATE/calls"
case $1 in
status)
    if [[ ! -f $QM_STATE/vm-$2 ]]; then
        echo "Configuration file 'nodes/x/qemu-server/$2.conf' does not exist" >&2
        exit 2
    fi
    echo "status: $(cat "$QM_STATE/vm-$2")" ;;
create)
    echo stopped >"$QM_STATE/vm-$2"
    printf '%s\n' "${@:2}" >"$QM_STATE/create-$2.args" ;;
config) echo "name: $(grep -A1 -x -- --name "$QM_STATE/create-$2.args" | tail -n 1)" ;;
start) echo running >"$QM_STATE/vm-$2" ;;
resize) ;;
*) echo "unexpected qm $1" >&2; exit 1 ;;
esac
"#;

/// A fake Proxmox host: stand-in `qm`, `pvesm` and `hostname` first on PATH,
/// with VM state and a call log in `state`.
struct ProxmoxStandIn {
    state: PathBuf,
    path: String,
}

impl ProxmoxStandIn {
    fn new(dir: &Path, node: &str) -> Self {
        let bin = dir.join("bin");
        let state = dir.join("state");
        fs::create_dir_all(&state).unwrap();

        fs::create_dir_all(&bin).unwrap();
        let tools = [
        ("qm", STAND_IN_QM.to_string()),
        (
            "pvesm",
            "#!/bin/bash\necho \"pvesm $*\" >>\"$QM_STATE/calls\"\n[[ $1 != path ]] || echo \"${PVESM_PATH:-/dev/null}\"\n".to_string(),
        ),
        ("hostname", format!("#!/bin/bash\necho {node}\n")),
    ];
        for (name, body) in tools {
            let path = bin.join(name);
            fs::write(&path, body).unwrap();
            run(Command::new("chmod").arg("+x").arg(&path));
        }
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        ProxmoxStandIn { state, path }
    }

    /// Runs `script` against the stand-ins, with extra environment.
    fn run(&self, script: &Path, env: &[(&str, &str)]) -> std::process::Output {
        let mut command = Command::new("bash");
        command
            .arg(script)
            .env("PATH", &self.path)
            .env("QM_STATE", &self.state);
        for (key, value) in env {
            command.env(key, value);
        }
        run(&mut command)
    }

    /// The calls recorded since the last time, cleared.
    fn take_calls(&self) -> String {
        let calls = fs::read_to_string(self.state.join("calls")).unwrap_or_default();
        fs::remove_file(self.state.join("calls")).ok();
        calls
    }
}

#[test]
fn qm_script_creates_each_vm_once_and_is_idempotent() {
    let schema = qemu_create_schema();
    let trees: Vec<_> = valid_blueprints()
        .into_iter()
        .chain(host_only_blueprints())
        .chain(cluster_blueprints())
        .map(|blueprint| (build(&blueprint), blueprint))
        .collect();
    // Each host's script on a host of its own: a cluster's hosts each
    // create only the VMs they run.
    let scripts = trees.iter().flat_map(|((guard, out), blueprint)| {
        host_dirs(out)
            .into_iter()
            .enumerate()
            .map(move |(i, host)| {
                (
                    guard.path().join(format!("host-{i}")),
                    host.join("create-vms.sh"),
                    blueprint,
                )
            })
    });
    for (dir, script, blueprint) in scripts {
        fs::create_dir_all(&dir).unwrap();
        let node = text(&fs::read(&script).unwrap())
            .lines()
            .find_map(|l| {
                l.strip_prefix("if [[ \"$(hostname)\" != '")
                    .and_then(|r| r.split('\'').next())
                    .map(String::from)
            })
            .expect("the script checks its node");
        let host = ProxmoxStandIn::new(&dir, &node);
        let state = &host.state;
        let run_script = || {
            let output = host.run(&script, &[]);
            assert!(
                output.status.success(),
                "{}: {}",
                blueprint.display(),
                text(&output.stderr)
            );
            host.take_calls()
        };
        let first = run_script();
        let creates: Vec<&str> = first
            .lines()
            .filter(|l| l.starts_with("qm create "))
            .collect();
        let vm_ids: Vec<String> = fs::read_dir(state)
            .unwrap()
            .filter_map(|e| {
                e.unwrap()
                    .file_name()
                    .into_string()
                    .ok()?
                    .strip_prefix("create-")?
                    .strip_suffix(".args")
                    .map(String::from)
            })
            .collect();
        assert!(
            !creates.is_empty() && creates.len() == vm_ids.len(),
            "{first}"
        );
        assert_eq!(
            first.lines().filter(|l| l.starts_with("qm start ")).count(),
            creates.len()
        );
        for id in &vm_ids {
            let args = fs::read_to_string(state.join(format!("create-{id}.args"))).unwrap();
            check_against_schema(&schema, &args, &format!("{} VM {id}", blueprint.display()));
        }
        let second = run_script();
        assert!(
            !second.contains("qm create") && !second.contains("qm start"),
            "second run changed something:\n{second}"
        );
    }
}

#[test]
fn qm_script_refuses_the_wrong_node() {
    let (guard, out) = build(&valid_blueprints()[0]);
    let host = ProxmoxStandIn::new(guard.path(), "some-other-host");
    let output = host.run(&out.join("host/create-vms.sh"), &[]);
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("but the blueprint is for node"),
        "{}",
        text(&output.stderr)
    );
    assert!(!host.take_calls().contains("create"));
}

/// Parameters of `POST /nodes/{node}/qemu`.
fn qemu_create_schema() -> BTreeMap<String, Value> {
    let path = schema_file("proxmox/apidata.json");
    let data: Value = serde_json::from_slice(
        &fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
    )
    .unwrap();
    fn find<'a>(nodes: &'a Value, path: &str) -> Option<&'a Value> {
        nodes.as_array()?.iter().find_map(|n| {
            if n["path"] == path {
                Some(n)
            } else {
                find(&n["children"], path)
            }
        })
    }
    let endpoint = find(&data, "/nodes/{node}/qemu").expect("endpoint in schema");
    endpoint["info"]["POST"]["parameters"]["properties"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The schema key for a CLI option: `scsi0` → `scsi[n]`.
fn schema_key<'a>(
    schema: &'a BTreeMap<String, Value>,
    option: &str,
) -> Option<(&'a str, &'a Value)> {
    if let Some((key, value)) = schema.get_key_value(option) {
        return Some((key, value));
    }
    let base = option.trim_end_matches(|c: char| c.is_ascii_digit());
    schema
        .get_key_value(&format!("{base}[n]"))
        .map(|(k, v)| (k.as_str(), v))
}

fn check_scalar(spec: &Value, value: &str, context: &str) {
    if let Some(options) = spec["enum"].as_array() {
        assert!(
            options.iter().any(|o| o == value),
            "{context}: `{value}` not in {options:?}"
        );
    }
    match spec["type"].as_str() {
        Some("boolean") => assert!(
            ["0", "1"].contains(&value),
            "{context}: `{value}` is not a boolean"
        ),
        Some("integer") => {
            let n: i64 = value
                .parse()
                .unwrap_or_else(|_| panic!("{context}: `{value}` is not an integer"));
            if let Some(min) = spec["minimum"].as_i64() {
                assert!(n >= min, "{context}: {n} < {min}");
            }
        }
        _ => {}
    }
    if let Some(pattern) = spec["pattern"].as_str() {
        let re = regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
        assert!(
            re.is_match(value),
            "{context}: `{value}` does not match {pattern}"
        );
    }
    match spec["format"].as_str() {
        Some("dns-name") => assert!(
            waddlec::resolve::check_dns_name(value).is_ok(),
            "{context}: `{value}` is not a dns-name"
        ),
        Some("address-list") => {
            for address in value.split([' ', ',', ';']).filter(|a| !a.is_empty()) {
                assert!(
                    address.parse::<std::net::IpAddr>().is_ok(),
                    "{context}: `{address}` is not an address"
                );
            }
        }
        Some("pve-tag-list") => {
            let re = regex::Regex::new(r"^[a-z0-9_][a-z0-9_\-+.]*$").unwrap();
            for tag in value.split([';', ',', ' ']).filter(|t| !t.is_empty()) {
                assert!(re.is_match(tag), "{context}: tag `{tag}`");
            }
        }
        _ => {}
    }
}

/// A property string such as `virtio,bridge=vmbr1` against its format.
fn check_property_string(format: &serde_json::Map<String, Value>, value: &str, context: &str) {
    for (i, part) in value.split(',').enumerate() {
        let (key, item) = match part.split_once('=') {
            Some((k, v)) => (k.to_string(), v),
            None => {
                assert_eq!(
                    i, 0,
                    "{context}: only the first item may omit its key: `{part}`"
                );
                let key = format
                    .iter()
                    .find(|(_, spec)| spec["default_key"] == 1)
                    .map(|(k, _)| k.clone());
                // A model name used as key (`virtio` in net0) is the alias form `model=`.
                let key = key.unwrap_or_else(|| "model".to_string());
                (key, part)
            }
        };
        let spec = format
            .get(&key)
            .or_else(|| format.values().find(|s| s["alias"] == key.as_str()));
        let spec = spec.unwrap_or_else(|| panic!("{context}: unknown key `{key}` in `{value}`"));
        check_scalar(spec, item, &format!("{context} ({key})"));
    }
}

fn check_against_schema(schema: &BTreeMap<String, Value>, args: &str, context: &str) {
    let mut items = args.lines();
    let vmid = items.next().unwrap();
    check_scalar(&schema["vmid"], vmid, &format!("{context} vmid"));
    let items: Vec<&str> = items.collect();
    assert!(
        items.len().is_multiple_of(2),
        "{context}: options come in pairs: {items:?}"
    );
    for pair in items.chunks(2) {
        let option = pair[0]
            .strip_prefix("--")
            .unwrap_or_else(|| panic!("{context}: `{}` is not an option", pair[0]));
        let (key, spec) = schema_key(schema, option).unwrap_or_else(|| {
            panic!("{context}: `--{option}` is not a parameter of POST /nodes/{{node}}/qemu")
        });
        let context = format!("{context} --{option} ({key})");
        if option == "sshkeys" {
            continue; // the qm CLI takes a file here and URL-encodes its contents itself
        }
        match &spec["format"] {
            Value::Object(format) if !format.is_empty() => {
                check_property_string(format, pair[1], &context)
            }
            _ => check_scalar(spec, pair[1], &context),
        }
    }
}

#[test]
fn qm_script_stops_before_creating_anything_when_an_image_is_missing() {
    let (guard, out) = build(&valid_blueprints()[0]);
    let host = ProxmoxStandIn::new(guard.path(), "waddle-proxmox01");
    let output = host.run(
        &out.join("host/create-vms.sh"),
        &[("PVESM_PATH", "/nonexistent/image.qcow2")],
    );
    assert!(!output.status.success());
    assert!(
        text(&output.stderr).contains("is missing; upload it first"),
        "{}",
        text(&output.stderr)
    );
    let calls = host.take_calls();
    assert!(!calls.contains("qm create"), "{calls}");
}
