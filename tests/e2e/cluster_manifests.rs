//! The cluster's bootstrap manifests — Gateway API CRDs, the Cilium
//! installer and its values, the VIPs' L2 announcements, the Flux Operator
//! and `FluxInstance`, Teleport's ServiceAccount — checked by what consumes
//! them: every object against the Kubernetes 1.35 / CRD schemas (strict),
//! the Cilium values against the chart's schema and key set, the machine
//! configs carrying them against the Talos schema. Upstream manifests are
//! the stand-ins of `tests/data/upstream/` (GitHub is out of reach).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::support::k8s_schemas::{documents, typo_sweep, Schemas};
use crate::support::talos_lab::{assert_valid, machine_configs, talos_schema, SecretLab};
use crate::support::{build, schema_file, text, upstream_fixture, valid_blueprints};

const INLINE: &[&str] = &[
    "10-gateway-api-crds",
    "20-cilium-install",
    "30-cilium-l2-announcements",
    "40-flux-operator",
    "50-flux-instance",
    "60-teleport-access",
];

/// The `cluster/bootstrap/` files of a tree, by name.
fn bootstrap_files(tree: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = fs::read_dir(tree.join("cluster/bootstrap"))
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, fs::read_to_string(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// The v1alpha1 document's `cluster.inlineManifests` of a machine config.
fn inline_manifests(config: &str) -> Vec<(String, String)> {
    let v1alpha1 = documents(config)
        .into_iter()
        .find(|d| d["version"] == "v1alpha1")
        .expect("a v1alpha1 document");
    v1alpha1["cluster"]["inlineManifests"]
        .as_array()
        .expect("inline manifests")
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["contents"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
fn every_rendered_bootstrap_object_validates_strictly() {
    let (_dir, out) = build(&valid_blueprints()[0]);
    let mut schemas = Schemas::new();
    let mut kinds = BTreeSet::new();
    let files = bootstrap_files(&out);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, INLINE);
    for (name, contents) in &files {
        let problems = schemas.check_stream(contents);
        assert!(problems.is_empty(), "{name}:\n{}", problems.join("\n"));
        kinds.extend(
            documents(contents)
                .iter()
                .map(|d| d["kind"].as_str().unwrap().to_string()),
        );
    }
    for kind in [
        "ServiceAccount",
        "ClusterRoleBinding",
        "ConfigMap",
        "Job",
        "CiliumLoadBalancerIPPool",
        "CiliumL2AnnouncementPolicy",
        "FluxInstance",
        "Namespace",
        "Secret",
        "ClusterRole",
    ] {
        assert!(kinds.contains(kind), "no {kind} among {kinds:?}");
    }
    // The review tree names upstream manifests instead of embedding them.
    let (_, crds) = &files[0];
    assert!(
        crds.contains("releases/download/v1.4.1/standard-install.yaml"),
        "{crds}"
    );
    assert!(documents(crds).is_empty());
}

#[test]
fn the_machine_configs_embed_every_manifest_identically_and_still_validate() {
    let lab = SecretLab::new(&valid_blueprints()[0]);
    lab.init();
    let output = lab.waddlec(&["build", "blueprint.toml", "--with-secrets", "--no-images"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let dist = lab.path("dist");
    let files = bootstrap_files(&dist);
    let configs = machine_configs(&dist);
    assert_eq!(configs.len(), 3);
    let validator = talos_schema();
    let mut schemas = Schemas::new();
    for (path, config) in &configs {
        assert_valid(&validator, path, config);
        let embedded = inline_manifests(config);
        assert_eq!(
            embedded, files,
            "{path}: inline manifests differ from cluster/bootstrap/"
        );
        for (name, contents) in &embedded {
            let problems = schemas.check_stream(contents);
            assert!(
                problems.is_empty(),
                "{path} {name}:\n{}",
                problems.join("\n")
            );
        }
    }
    // Upstream manifests are embedded byte for byte, as pinned.
    for name in ["10-gateway-api-crds", "40-flux-operator"] {
        let (_, contents) = files.iter().find(|(n, _)| n == name).unwrap();
        assert_eq!(*contents, upstream_fixture(name), "{name}");
    }
    let lock = fs::read_to_string(lab.path("blueprint.lock")).unwrap();
    assert!(
        lock.contains("gateway-api/releases/download/v1.4.1/standard-install.yaml"),
        "{lock}"
    );
    assert!(
        lock.contains("flux-operator/releases/download/v0.40.0/install.yaml"),
        "{lock}"
    );
}

#[test]
fn without_its_pinned_upstream_manifests_the_deployable_build_stops() {
    let lab = SecretLab::new(&valid_blueprints()[0]);
    lab.init();
    // Pinned but no longer cached: the build must download them again.
    let cache = lab.path("cache/sha256");
    for entry in fs::read_dir(&cache).unwrap() {
        fs::remove_file(entry.unwrap().path()).unwrap();
    }
    let output = lab.waddlec(&[
        "build",
        "blueprint.toml",
        "--with-secrets",
        "--no-images",
        "--locked",
    ]);
    // Not cached and GitHub unreachable: a network failure (69), never a
    // build with something else in place of the pinned bytes.
    assert_eq!(output.status.code(), Some(69), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("github.com"),
        "{}",
        text(&output.stderr)
    );
    assert!(!lab.path("dist").exists());
}

#[test]
fn a_misspelled_field_anywhere_in_a_rendered_object_fails_validation() {
    let (_dir, out) = build(&valid_blueprints()[0]);
    let (checked, missed) = typo_sweep(&bootstrap_files(&out), &[]);
    assert!(checked > 100, "only {checked} fields checked");
    assert!(
        missed.is_empty(),
        "typos the validator accepted:\n{}",
        missed.join("\n")
    );
}

#[test]
fn cilium_values_are_schema_valid_known_keys_and_carry_no_key_material() {
    let (_dir, out) = build(&valid_blueprints()[0]);
    let installer =
        fs::read_to_string(out.join("cluster/bootstrap/20-cilium-install.yaml")).unwrap();
    let config_map = documents(&installer)
        .into_iter()
        .find(|d| d["kind"] == "ConfigMap")
        .unwrap();
    let values: Value =
        serde_saphyr::from_str(config_map["data"]["values.yaml"].as_str().unwrap()).unwrap();
    let schema: Value = serde_json::from_str(
        &fs::read_to_string(schema_file("helm/cilium-1.19.0/values.schema.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator
        .iter_errors(&values)
        .map(|e| e.to_string())
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    let mut unknown = Vec::new();
    unknown_keys(&schema, &values, "", &mut unknown);
    assert!(
        unknown.is_empty(),
        "keys the chart does not have: {unknown:?}"
    );
    // What the platform depends on, and what 1.19 no longer has.
    assert_eq!(values["kubeProxyReplacement"], true);
    assert_eq!(values["k8sServiceHost"], "localhost");
    assert_eq!(values["k8sServicePort"], 7445);
    assert_eq!(values["gatewayAPI"]["gatewayClass"]["create"], "true");
    assert_eq!(values["l2announcements"]["enabled"], true);
    assert!(values.get("externalIPs").is_none());
    let agent = values["securityContext"]["capabilities"]["ciliumAgent"]
        .as_array()
        .unwrap();
    assert!(!agent.iter().any(|c| c == "SYS_MODULE"));
    for (name, contents) in bootstrap_files(&out) {
        for needle in ["BEGIN", "PRIVATE KEY", "tls.key"] {
            assert!(!contents.contains(needle), "{name} carries {needle}");
        }
    }
}

/// An independent walk of the chart schema's `properties` (the compiler has
/// its own): keys of `values` the chart does not define.
fn unknown_keys(schema: &Value, values: &Value, prefix: &str, out: &mut Vec<String>) {
    let Value::Object(map) = values else { return };
    let mut known: Vec<&serde_json::Map<String, Value>> = Vec::new();
    let mut stack = vec![schema];
    while let Some(node) = stack.pop() {
        known.extend(node.get("properties").and_then(Value::as_object));
        stack.extend(
            node.get("anyOf")
                .and_then(Value::as_array)
                .into_iter()
                .flatten(),
        );
    }
    if known.is_empty() {
        return;
    }
    for (key, child) in map {
        let path = format!("{prefix}{key}");
        match known.iter().find_map(|props| props.get(key)) {
            Some(child_schema) => unknown_keys(child_schema, child, &format!("{path}."), out),
            None => out.push(path),
        }
    }
}

#[test]
fn the_gateway_vip_is_announced_for_the_gateway_of_its_name() {
    let (_dir, out) = build(&valid_blueprints()[0]);
    let l2 =
        fs::read_to_string(out.join("cluster/bootstrap/30-cilium-l2-announcements.yaml")).unwrap();
    let docs = documents(&l2);
    let pool = docs
        .iter()
        .find(|d| d["kind"] == "CiliumLoadBalancerIPPool")
        .unwrap();
    assert_eq!(pool["spec"]["blocks"][0]["start"], "10.10.0.30");
    assert_eq!(pool["spec"]["blocks"][0]["stop"], "10.10.0.30");
    let selector =
        &pool["spec"]["serviceSelector"]["matchLabels"]["io.cilium.gateway/owning-gateway"];
    assert_eq!(*selector, "gateway");
    let policy = docs
        .iter()
        .find(|d| d["kind"] == "CiliumL2AnnouncementPolicy")
        .unwrap();
    assert_eq!(policy["spec"]["interfaces"][0], "^eth0$");
    assert_eq!(
        policy["spec"]["serviceSelector"]["matchLabels"]["io.cilium.gateway/owning-gateway"],
        *selector
    );
    let flux = fs::read_to_string(out.join("cluster/bootstrap/50-flux-instance.yaml")).unwrap();
    let instance = &documents(&flux)[0];
    assert_eq!(instance["metadata"]["name"], "flux");
    assert_eq!(instance["spec"]["sync"]["ref"], "refs/heads/main");
    assert_eq!(instance["spec"]["sync"]["path"], "clusters/waddle-cluster");
    assert_eq!(instance["spec"]["sync"]["pullSecret"], "flux-system");
}
