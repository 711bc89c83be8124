//! Teleport's config and resources, checked against the keys Teleport 18
//! itself defines (`tests/data/teleport/`, read from its source): Teleport
//! parses `teleport.yaml` strictly, so an unknown key is a VM that never
//! serves. Plus what the seed's troubleshooting paid for: the tunnel
//! listener, exact team slugs, the callback URL, and the client secret only
//! in the deployable tree.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use crate::support::{build, repo_root, run, text, valid_blueprints, waddlec};

fn key_list(name: &str) -> BTreeSet<String> {
    fs::read_to_string(repo_root().join("tests/data/teleport").join(name))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect()
}

/// Dotted paths of every key in `value` (`[]` for items of lists of maps).
fn paths(prefix: &str, value: &serde_json::Value, into: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, child) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                into.push(path.clone());
                paths(&path, child, into);
            }
        }
        serde_json::Value::Array(items) => {
            for item in items.iter().filter(|i| i.is_object()) {
                paths(&format!("{prefix}[]"), item, into);
            }
        }
        _ => {}
    }
}

fn assert_known(known: &BTreeSet<String>, prefix: &str, document: &serde_json::Value, what: &str) {
    let mut found = Vec::new();
    paths(prefix, document, &mut found);
    // Enough keys that the walk cannot have missed the document (a node
    // resource, the smallest, has ten).
    assert!(found.len() >= 10, "{what}: {found:?}");
    for path in found {
        let wildcard = path
            .rsplit_once('.')
            .map(|(parent, _)| format!("{parent}.*"))
            .unwrap_or_default();
        assert!(
            known.contains(&path) || known.contains(&wildcard),
            "{what}: `{path}` is not a key Teleport 18 knows"
        );
    }
}

fn load(path: &Path) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple(&fs::read_to_string(path).unwrap()).unwrap()
}

/// A variant of the waddle blueprint, changed by `edit`.
fn variant(edit: impl FnOnce(&mut toml::Table)) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let mut document: toml::Table = fs::read_to_string(&valid_blueprints()[0])
        .unwrap()
        .parse()
        .unwrap();
    edit(&mut document);
    let path = dir.path().join("variant.toml");
    fs::write(&path, toml::to_string(&document).unwrap()).unwrap();
    (dir, path)
}

/// Without Teleport's Kubernetes access.
fn without_kubernetes() -> (tempfile::TempDir, std::path::PathBuf) {
    variant(|document| {
        document["teleport"]
            .as_table_mut()
            .unwrap()
            .remove("kubernetes");
        // Nothing listens on the Kubernetes proxy's port any more.
        document["forward"]
            .as_array_mut()
            .unwrap()
            .retain(|f| f["to"].as_str() != Some("teleport:3026"));
    })
}

#[test]
fn teleport_yaml_and_resources_use_only_keys_teleport_knows() {
    let fileconf = key_list("fileconf-keys.txt");
    let resources = key_list("resource-keys.txt");
    let (_dir, without) = without_kubernetes();
    let local_users = repo_root().join("blueprints/examples/services.toml");
    for blueprint in [valid_blueprints()[0].clone(), without, local_users] {
        let (_guard, out) = build(&blueprint);
        for file in ["teleport.yaml", "teleport-without-kubernetes.yaml"] {
            let path = out.join("vms/teleport").join(file);
            if path.exists() {
                let config = load(&path).remove(0);
                assert_known(&fileconf, "", &config, file);
            }
        }
        for document in load(&out.join("vms/teleport/teleport-resources.yaml")) {
            let kind = document["kind"].as_str().unwrap().to_string();
            let mut found = Vec::new();
            paths(&kind, &document, &mut found);
            assert_known(&resources, &kind, &document, &format!("{kind} resource"));
        }
    }
}

/// Without `[teleport.github]` (the services example): Teleport
/// authenticates local users (`type: local`, no connector named), no
/// `github` resource is rendered, and no client secret is wanted, not even
/// as a placeholder of the review tree; with it (the bundled blueprint),
/// GitHub is the connector.
#[test]
fn without_a_github_connector_teleport_has_local_users_only() {
    let (_guard, out) = build(&repo_root().join("blueprints/examples/services.toml"));
    let config = load(&out.join("vms/teleport/teleport.yaml")).remove(0);
    assert_eq!(
        config["auth_service"]["authentication"],
        serde_json::json!({"type": "local"})
    );
    let resources = load(&out.join("vms/teleport/teleport-resources.yaml"));
    assert!(resources.iter().all(|r| r["kind"] != "github"));
    assert!(resources.iter().any(|r| r["kind"] == "role"));
    let manifest = fs::read_to_string(out.join("manifest.json")).unwrap();
    assert!(!manifest.contains("github"), "{manifest}");
    let (_guard, out) = build(&valid_blueprints()[0]);
    let config = load(&out.join("vms/teleport/teleport.yaml")).remove(0);
    assert_eq!(
        config["auth_service"]["authentication"],
        serde_json::json!({"type": "github", "connector_name": "github"})
    );
}

#[test]
fn teleport_listens_where_the_edge_and_forwards_send_traffic() {
    let (_guard, out) = build(&valid_blueprints()[0]);
    let config = load(&out.join("vms/teleport/teleport.yaml")).remove(0);
    assert_eq!(config["version"], "v3");
    let proxy = &config["proxy_service"];
    assert_eq!(proxy["web_listen_addr"], "0.0.0.0:3080");
    assert_eq!(
        proxy["tunnel_listen_addr"], "0.0.0.0:3024",
        "apps need the reverse tunnel"
    );
    assert_eq!(proxy["listen_addr"], "0.0.0.0:3023");
    assert_eq!(proxy["public_addr"], "teleport.waddle.social:443");
    assert_eq!(proxy["ssh_public_addr"], "teleport.waddle.social:3023");
    assert_eq!(proxy["acme"]["enabled"], true);
    // `tsh kube` reaches the proxy's own Kubernetes listener, forwarded.
    assert_eq!(proxy["kube_listen_addr"], "0.0.0.0:3026");
    assert_eq!(proxy["kube_public_addr"], "teleport.waddle.social:3026");
    assert_eq!(proxy["acme"]["email"], "ops@waddle.social");
    assert_eq!(config["auth_service"]["authentication"]["type"], "github");
    let app = &config["app_service"]["apps"][0];
    assert_eq!(app["uri"], "https://10.10.0.1:8006");
    assert_eq!(app["public_addr"], "proxmox.waddle.social");
    assert_eq!(app["insecure_skip_verify"], true);
    // talosctl reaches apid through a TCP app per node (raw TCP keeps its
    // mTLS end to end); `tsh proxy kube` could not carry it.
    let talos_apps: Vec<(&str, &str)> = config["app_service"]["apps"]
        .as_array()
        .unwrap()
        .iter()
        .skip(1)
        .map(|a| (a["name"].as_str().unwrap(), a["uri"].as_str().unwrap()))
        .collect();
    assert_eq!(
        talos_apps,
        [
            ("talos-cp1", "tcp://10.10.0.10:50000"),
            ("talos-cp2", "tcp://10.10.0.11:50000"),
            ("talos-cp3", "tcp://10.10.0.12:50000"),
        ]
    );
    assert_eq!(
        config["kubernetes_service"]["kubeconfig_file"],
        "/var/lib/teleport/kubeconfig.yaml"
    );

    let resources = load(&out.join("vms/teleport/teleport-resources.yaml"));
    let role = resources.iter().find(|r| r["kind"] == "role").unwrap();
    assert_eq!(role["version"], "v7");
    assert_eq!(role["metadata"]["name"], "infra-admin");
    let allow = &role["spec"]["allow"];
    assert_eq!(allow["logins"], serde_json::json!(["deploy", "root"]));
    // Each app by name: the blueprint's, then one per Talos node's machine API.
    assert_eq!(
        allow["app_labels"],
        serde_json::json!({"app": ["proxmox", "talos-cp1", "talos-cp2", "talos-cp3"]})
    );
    assert_eq!(
        allow["kubernetes_labels"],
        serde_json::json!({"cluster": ["waddle-cluster"]})
    );
    let github = resources.iter().find(|r| r["kind"] == "github").unwrap();
    assert_eq!(github["version"], "v3");
    assert_eq!(
        github["spec"]["redirect_url"],
        "https://teleport.waddle.social/v1/webapi/github/callback"
    );
    assert_eq!(
        github["spec"]["teams_to_roles"],
        serde_json::json!([{"organization": "waddle-social", "team": "infra", "roles": ["infra-admin"]}])
    );
    assert!(github["spec"]["client_secret"]
        .as_str()
        .unwrap()
        .starts_with("<redacted sha256:"));
}

#[test]
fn app_subdomains_need_a_route_to_teleport() {
    let blueprint = &valid_blueprints()[0];
    let dir = tempfile::tempdir().unwrap();
    let edited = fs::read_to_string(blueprint).unwrap().replace(
        "sni = \"*.teleport.waddle.social\"",
        "sni = \"*.other.waddle.social\"",
    );
    let path = dir.path().join("b.toml");
    fs::write(&path, edited).unwrap();
    let output = run(waddlec().arg("validate").arg(&path));
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("E0117"), "{stderr}");
    assert!(stderr.contains("*.teleport.waddle.social"), "{stderr}");
}

/// The units the Teleport image runs, checked by systemd's own parser
/// (`systemd-analyze verify`). The binaries live only in the image and the
/// node keys script only in the VM (cloud-init writes it), so the one
/// complaint allowed is that `/usr/local/bin/…` or that script is not on
/// this host.
#[test]
fn teleport_units_pass_systemd_analyze_verify() {
    crate::support::require("systemd-analyze");
    let mut checked = 0;
    for blueprint in valid_blueprints() {
        let (_guard, out) = build(&blueprint);
        let units: Vec<_> = ["teleport.service", "teleport-resources.service"]
            .iter()
            .map(|unit| out.join("vms/teleport").join(unit))
            .filter(|path| path.exists())
            .collect();
        if units.is_empty() {
            continue;
        }
        assert_eq!(units.len(), 2, "{}", blueprint.display());
        checked += 1;
        let output = run(std::process::Command::new("systemd-analyze")
            .arg("verify")
            .args(&units));
        let stderr = text(&output.stderr);
        let unexpected: Vec<&str> = stderr
            .lines()
            .filter(|line| {
                !((line.contains("Command /usr/local/bin/")
                    || line.contains("Command /usr/local/sbin/waddlec-teleport-node-keys "))
                    && line.contains("is not executable"))
            })
            .collect();
        assert!(
            unexpected.is_empty(),
            "{}: systemd-analyze verify:\n{stderr}",
            blueprint.display()
        );
    }
    assert!(checked > 0, "no blueprint has a Teleport VM");
}

/// Teleport refuses to start while its `kubeconfig_file` is missing, and the
/// kubeconfig only exists once the cluster does: the unit runs the config
/// without Kubernetes access until `cluster bootstrap` installs it. The
/// unit's own start command is run, with `echo` standing in for teleport.
#[test]
fn teleport_starts_without_kubernetes_until_its_kubeconfig_exists() {
    // The kubeconfig's place on the VM (Teleport's data directory, E0129);
    // the unit's script runs here with a scratch file in its place.
    const ON_THE_VM: &str = "/var/lib/teleport/cluster-kubeconfig.yaml";
    let scratch = tempfile::tempdir().unwrap();
    let kubeconfig = scratch.path().join("kubeconfig.yaml");
    let (_dir, blueprint) = variant(|document| {
        document["teleport"]["kubernetes"]
            .as_table_mut()
            .unwrap()
            .insert("kubeconfig".into(), ON_THE_VM.into());
    });
    let (_guard, out) = build(&blueprint);
    let full = load(&out.join("vms/teleport/teleport.yaml")).remove(0);
    assert_eq!(full["kubernetes_service"]["kubeconfig_file"], ON_THE_VM);
    let without = load(&out.join("vms/teleport/teleport-without-kubernetes.yaml")).remove(0);
    assert!(without.get("kubernetes_service").is_none());
    assert_eq!(without["app_service"], full["app_service"]);
    let unit = fs::read_to_string(out.join("vms/teleport/teleport.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart=/bin/sh -c '"))
        .and_then(|l| l.strip_suffix('\''))
        .expect("a shell ExecStart");
    // systemd turns `$$` into `$` before the shell sees it.
    assert!(exec.contains(ON_THE_VM), "{exec}");
    let script = exec
        .replace("$$", "$")
        .replace(ON_THE_VM, &kubeconfig.display().to_string())
        .replace("exec /usr/local/bin/teleport", "echo");
    let start = || {
        let output = run(std::process::Command::new("sh").args(["-c", &script]));
        assert!(output.status.success());
        text(&output.stdout)
    };
    assert!(
        start().contains("--config=/etc/teleport/without-kubernetes.yaml"),
        "{}",
        start()
    );
    fs::write(&kubeconfig, "").unwrap();
    assert!(
        start().contains("--config=/etc/teleport/without-kubernetes.yaml"),
        "an empty file is not a kubeconfig"
    );
    fs::write(&kubeconfig, "apiVersion: v1\n").unwrap();
    assert!(
        start().contains("--config=/etc/teleport.yaml "),
        "{}",
        start()
    );
    // The image carries both configs where the unit looks for them.
    let plan = fs::read_to_string(out.join("host/images.json")).unwrap();
    assert!(
        plan.contains("/etc/teleport/without-kubernetes.yaml"),
        "{plan}"
    );
}
