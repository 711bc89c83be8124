//! Talos workers, through the core's public pipeline: the example blueprint
//! with three control planes and a worker (`blueprints/examples/workers.toml`)
//! resolves to a model that tells them apart, renders a Talos worker config
//! for the worker (valid against the Talos 1.12 schema the e2e tests use,
//! without etcd, CA keys, control-plane components or the API VIP), and a
//! talosctl config whose endpoints are the control planes; the resolver
//! refuses a cluster of workers only (E0131) and warns on an even number of
//! control planes (W0203).

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test here

use std::path::PathBuf;

use waddlec_core::blueprint::{Date, SourceFile};
use waddlec_core::diagnostics::{report, Diagnostic, Severity};
use waddlec_core::model::{HostAccess, TalosRole};
use waddlec_core::{check, compile, CompileError, Compiled};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

const TODAY: Date = Date {
    year: 2000,
    month: 1,
    day: 1,
};

fn example() -> SourceFile {
    SourceFile {
        name: "blueprints/examples/workers.toml".into(),
        text: std::fs::read_to_string(repo_root().join("blueprints/examples/workers.toml"))
            .unwrap(),
    }
}

/// The example with `from` replaced by `to` (exactly once).
fn edited(from: &str, to: &str) -> SourceFile {
    let mut source = example();
    assert_eq!(source.text.matches(from).count(), 1, "`{from}` is unique");
    source.text = source.text.replace(from, to);
    source
}

fn compiled() -> Compiled {
    compile(&example(), TODAY).unwrap_or_else(|e| panic!("the example compiles: {e:?}"))
}

fn file<'a>(compiled: &'a Compiled, path: &str) -> &'a str {
    let artifact = compiled
        .artifacts
        .iter()
        .find(|a| a.path == path)
        .unwrap_or_else(|| panic!("no {path}"));
    std::str::from_utf8(&artifact.contents).unwrap()
}

fn documents(text: &str) -> Vec<serde_json::Value> {
    serde_saphyr::from_multiple::<serde_json::Value>(text).unwrap()
}

fn kinds(documents: &[serde_json::Value]) -> Vec<&str> {
    documents
        .iter()
        .map(|d| {
            d["kind"]
                .as_str()
                .unwrap_or_else(|| d["version"].as_str().unwrap())
        })
        .collect()
}

/// Findings of a blueprint that does not compile.
fn findings(source: &SourceFile) -> Vec<Diagnostic> {
    match check(source, TODAY) {
        Err(CompileError::Invalid(diagnostics)) => diagnostics.sorted(),
        Err(other) => panic!("{other}"),
        Ok(_) => panic!("{} compiled", source.name),
    }
}

/// Warnings of a blueprint that compiles.
fn warnings(source: &SourceFile) -> Vec<Diagnostic> {
    match check(source, TODAY) {
        Ok(checked) => checked.warnings.sorted(),
        Err(CompileError::Invalid(diagnostics)) => {
            panic!(
                "{}",
                report::render_text(source, &diagnostics.sorted(), false)
            )
        }
        Err(other) => panic!("{other}"),
    }
}

#[test]
fn the_model_tells_control_planes_from_workers() {
    let model = compiled().model;
    let names = |nodes: Vec<waddlec_core::model::TalosNode<'_>>| -> Vec<String> {
        nodes.iter().map(|n| n.name().to_string()).collect()
    };
    assert_eq!(
        names(model.control_planes().collect()),
        ["cp-a", "cp-b", "cp-c"]
    );
    assert_eq!(names(model.talos_workers().collect()), ["worker-a"]);
    assert_eq!(model.bootstrap_node().unwrap().name(), "cp-a");
    assert_eq!(
        names(model.rollout_order()),
        ["cp-a", "cp-b", "cp-c", "worker-a"]
    );
    let worker = model
        .talos_nodes()
        .find(|n| n.name() == "worker-a")
        .unwrap();
    assert_eq!(worker.role, TalosRole::Worker);
    assert!(!worker.is_control_plane());
    // Own settings over the defaults, as for any node.
    assert_eq!(worker.vm.cores, 4);
    assert_eq!(model.vm("cp-b").unwrap().cores, 2);
}

#[test]
fn a_rollout_takes_control_planes_first_whatever_the_vmids() {
    // The worker gets the lowest VMID; it still goes last, and etcd is
    // still bootstrapped on a control plane.
    let source = edited("id = 2110", "id = 2050");
    let model = check(&source, TODAY).ok().unwrap().model;
    assert_eq!(model.talos_nodes().next().unwrap().name(), "worker-a");
    assert_eq!(model.bootstrap_node().unwrap().name(), "cp-a");
    let order: Vec<&str> = model.rollout_order().iter().map(|n| n.name()).collect();
    assert_eq!(order, ["cp-a", "cp-b", "cp-c", "worker-a"]);
}

#[test]
fn a_worker_gets_a_talos_worker_config() {
    let compiled = compiled();
    let cluster = compiled.model.talos.as_ref().unwrap();
    let vip = cluster.api_vip.to_string();
    let docs = documents(file(&compiled, "vms/worker-a/seed/user-data"));
    assert_eq!(
        kinds(&docs),
        ["v1alpha1", "HostnameConfig", "LinkConfig", "ResolverConfig"],
        "no Layer2VIPConfig: Talos refuses a shared IP on a worker"
    );
    let config = &docs[0];
    let machine = &config["machine"];
    let cluster_section = config["cluster"].as_object().unwrap();
    assert_eq!(machine["type"], "worker");
    // CAs a worker trusts, without the keys Talos refuses on it.
    assert!(machine["ca"]["crt"].is_string());
    assert!(machine["ca"].get("key").is_none(), "{}", machine["ca"]);
    assert!(config["cluster"]["ca"]["crt"].is_string());
    assert!(config["cluster"]["ca"].get("key").is_none());
    // Never an etcd member, no control-plane component.
    for key in [
        "etcd",
        "apiServer",
        "controllerManager",
        "scheduler",
        "aggregatorCA",
        "serviceAccount",
        "secretboxEncryptionSecret",
        "aescbcEncryptionSecret",
        "inlineManifests",
        "allowSchedulingOnControlPlanes",
    ] {
        assert!(!cluster_section.contains_key(key), "a worker has {key}");
    }
    // What it joins with.
    assert_eq!(
        config["cluster"]["controlPlane"]["endpoint"],
        format!("https://{vip}:6443")
    );
    for key in [
        "id",
        "secret",
        "token",
        "clusterName",
        "network",
        "discovery",
    ] {
        assert!(cluster_section.contains_key(key), "a worker lacks {key}");
    }
    assert!(machine["token"].is_string());
    assert_eq!(
        machine["features"]["kubePrism"]["enabled"], true,
        "Cilium needs KubePrism on every node"
    );
    let sans: Vec<&str> = machine["certSANs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap())
        .collect();
    assert_eq!(sans, ["172.16.42.20", "127.0.0.1"]);
    assert_eq!(docs[1]["hostname"], "worker-a");
    assert_eq!(docs[2]["addresses"][0]["address"], "172.16.42.20/22");
}

#[test]
fn control_planes_keep_their_config() {
    let compiled = compiled();
    let vip = compiled.model.talos.as_ref().unwrap().api_vip.to_string();
    for node in ["cp-a", "cp-b", "cp-c"] {
        let docs = documents(file(&compiled, &format!("vms/{node}/seed/user-data")));
        assert_eq!(
            kinds(&docs),
            [
                "v1alpha1",
                "HostnameConfig",
                "LinkConfig",
                "ResolverConfig",
                "Layer2VIPConfig"
            ],
            "{node}"
        );
        let config = &docs[0];
        assert_eq!(config["machine"]["type"], "controlplane");
        assert!(config["machine"]["ca"]["key"].is_string());
        assert!(config["cluster"]["etcd"]["ca"]["key"].is_string());
        assert_eq!(config["cluster"]["allowSchedulingOnControlPlanes"], true);
        assert!(!config["cluster"]["inlineManifests"]
            .as_array()
            .unwrap()
            .is_empty());
        assert_eq!(docs[4]["name"], vip.as_str());
        assert_eq!(config["machine"]["certSANs"][0], vip.as_str());
    }
}

/// The check `tests/e2e/talos.rs` makes on every built tree, here on the
/// worker's and the control planes' configs of the example.
#[test]
fn every_document_validates_against_the_talos_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo_root().join("tests/data/schemas/talos/config.schema.json"))
            .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let compiled = compiled();
    let mut checked = 0;
    for artifact in compiled
        .artifacts
        .iter()
        .filter(|a| a.kind == "talos-machine-config")
    {
        for (index, document) in documents(std::str::from_utf8(&artifact.contents).unwrap())
            .iter()
            .enumerate()
        {
            let errors: Vec<String> = validator
                .iter_errors(document)
                .map(|e| format!("{e} at {}", e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{} document {index}: {errors:#?}",
                artifact.path
            );
        }
        checked += 1;
    }
    assert_eq!(checked, 4);
}

#[test]
fn talosctl_talks_to_control_planes_only() {
    let compiled = compiled();
    let talosconfig = &documents(file(&compiled, "talos/talosconfig"))[0];
    let context = &talosconfig["contexts"]["lab"];
    assert_eq!(
        context["endpoints"],
        serde_json::json!(["172.16.42.10", "172.16.42.11", "172.16.42.12"])
    );
    assert_eq!(context["nodes"], serde_json::json!(["172.16.42.10"]));
}

#[test]
fn workers_reach_the_storage_like_every_node() {
    // democratic-csi's node plugin runs on every node that runs pods, so a
    // worker attaches iSCSI volumes and the driver may run there.
    let model = compiled().model;
    let access = model.host_access(model.host());
    let sources = |service: &str| -> Vec<String> {
        access
            .iter()
            .find(|a: &&HostAccess| a.service == service)
            .unwrap()
            .sources
            .iter()
            .map(|s| s.vm.clone())
            .collect()
    };
    assert_eq!(sources("iscsi"), ["cp-a", "cp-b", "cp-c", "worker-a"]);
    assert!(sources("ssh").contains(&"worker-a".to_string()));
}

#[test]
fn a_route_to_a_workers_kubernetes_api_is_refused() {
    // Workers serve apid, not the Kubernetes API.
    let source = edited(
        "[[forward]]\nport = 2222\nto = \"edge:22\"",
        "[[forward]]\nport = 2222\nto = \"edge:22\"\n\n[[forward]]\nport = 6443\nto = \"worker-a:6443\"",
    );
    let found = findings(&source);
    assert!(
        found.iter().any(|d| d.rule.code == "E0111"),
        "{}",
        report::render_text(&source, &found, false)
    );
    let source = edited(
        "[[forward]]\nport = 2222\nto = \"edge:22\"",
        "[[forward]]\nport = 2222\nto = \"edge:22\"\n\n[[forward]]\nport = 6443\nto = \"cp-a:6443\"",
    );
    assert!(check(&source, TODAY).is_ok(), "a control plane serves it");
}

#[test]
fn a_worker_needs_less_memory_than_a_control_plane() {
    let source = edited(
        "role = \"worker\"\ncores = 4\nmemory = \"16G\"",
        "role = \"worker\"\ncores = 4\nmemory = \"1G\"",
    );
    assert!(check(&source, TODAY).is_ok(), "1 GiB is a worker's minimum");
    let source = edited(
        "role = \"worker\"\ncores = 4\nmemory = \"16G\"",
        "role = \"worker\"\ncores = 4\nmemory = \"512M\"",
    );
    let found = findings(&source);
    let finding = found.iter().find(|d| d.rule.code == "E0123").unwrap();
    assert!(
        finding.message.contains("at least 1G on a worker"),
        "{}",
        finding.message
    );
}

#[test]
fn a_cluster_of_workers_only_is_refused() {
    // Every node a worker through the defaults…
    let source = edited(
        "[talos.node_defaults]\n",
        "[talos.node_defaults]\nrole = \"worker\"\n",
    );
    let found = findings(&source);
    let finding = found.iter().find(|d| d.rule.code == "E0131").unwrap();
    assert_eq!(finding.rule.severity, Severity::Error);
    assert_eq!(finding.path.as_deref(), Some("talos.node_defaults.role"));
    assert!(finding.help.is_some());
    insta::assert_snapshot!(
        "no_control_plane",
        report::render_text(&source, &found, false)
    );

    // …or each one by its own role.
    let mut source = example();
    source.text = source.text.replace(
        "address = \"172.16.42.1",
        "role = \"worker\"\naddress = \"172.16.42.1",
    );
    let found = findings(&source);
    let finding = found.iter().find(|d| d.rule.code == "E0131").unwrap();
    assert_eq!(finding.path.as_deref(), Some("talos.node[0].role"));
}

#[test]
fn an_even_number_of_control_planes_is_warned_about() {
    assert!(warnings(&example()).is_empty(), "three control planes");
    // Two: the worker made nothing, one control plane made a worker.
    let source = edited(
        "name = \"cp-c\"\naddress = \"172.16.42.12\"",
        "name = \"cp-c\"\naddress = \"172.16.42.12\"\nrole = \"worker\"",
    );
    let found = warnings(&source);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].rule.code, "W0203");
    assert_eq!(found[0].rule.severity, Severity::Warning);
    assert_eq!(found[0].path.as_deref(), Some("talos.node[1].name"));
    insta::assert_snapshot!(
        "even_control_planes",
        report::render_text(&source, &found, false)
    );
    // Four: the worker made a control plane by its own role.
    let source = edited(
        "role = \"worker\"\ncores = 4",
        "role = \"controlplane\"\ncores = 4",
    );
    let found = warnings(&source);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].rule.code, "W0203");
    assert_eq!(found[0].path.as_deref(), Some("talos.node[3].role"));
    // One is odd: a single control plane is a lab, not a warning.
    let source = edited(
        "[talos.node_defaults]\n",
        "[talos.node_defaults]\nrole = \"worker\"\n",
    );
    let mut text = source.text.clone();
    text = text.replace(
        "name = \"cp-a\"\naddress = \"172.16.42.10\"",
        "name = \"cp-a\"\naddress = \"172.16.42.10\"\nrole = \"controlplane\"",
    );
    let source = SourceFile {
        name: source.name,
        text,
    };
    assert!(warnings(&source).is_empty());
}

#[test]
fn the_worker_config_is_pinned() {
    let compiled = compiled();
    insta::assert_snapshot!(
        "worker_machine_config",
        file(&compiled, "vms/worker-a/seed/user-data")
    );
}

/// The committed schema (`waddlec schema > blueprints/blueprint.schema.json`,
/// which editors read) knows `role`, and takes the example.
#[test]
fn the_committed_schema_knows_roles() {
    let committed =
        std::fs::read_to_string(repo_root().join("blueprints/blueprint.schema.json")).unwrap();
    let generated = schemars::schema_for!(waddlec_core::blueprint::Blueprint);
    assert!(
        committed == serde_json::to_string_pretty(&generated).unwrap() + "\n",
        "blueprints/blueprint.schema.json is stale: run `waddlec schema > blueprints/blueprint.schema.json`"
    );
    let schema: serde_json::Value = serde_json::from_str(&committed).unwrap();
    let validator = jsonschema::draft202012::new(&schema).unwrap();
    let document = toml_to_json(toml::from_str(&example().text).unwrap());
    let errors: Vec<String> = validator
        .iter_errors(&document)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let mut wrong = document.clone();
    wrong["talos"]["node"][0]["role"] = "master".into();
    assert!(!validator.is_valid(&wrong), "`master` is no role");
}

/// TOML as the JSON an editor's schema check sees (dates as strings).
fn toml_to_json(value: toml::Value) -> serde_json::Value {
    match value {
        toml::Value::String(s) => s.into(),
        toml::Value::Integer(i) => i.into(),
        toml::Value::Float(f) => f.into(),
        toml::Value::Boolean(b) => b.into(),
        toml::Value::Datetime(d) => d.to_string().into(),
        toml::Value::Array(a) => a.into_iter().map(toml_to_json).collect(),
        toml::Value::Table(t) => t
            .into_iter()
            .map(|(k, v)| (k, toml_to_json(v)))
            .collect::<serde_json::Map<_, _>>()
            .into(),
    }
}
