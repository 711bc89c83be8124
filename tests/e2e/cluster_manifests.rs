//! The cluster's bootstrap manifests — Gateway API CRDs, the Cilium
//! installer and its values, the VIPs' L2 announcements, the Flux Operator
//! and `FluxInstance`, Teleport's ServiceAccount — checked by what consumes
//! them: every object against the Kubernetes 1.35 / CRD schemas (strict),
//! the Cilium values against the chart's schema and key set, the machine
//! configs carrying them against the Talos schema. Upstream manifests and
//! the Cilium chart are the stand-ins of `tests/data/upstream/`, image
//! digests made up (GitHub, helm.cilium.io and the registries are out of
//! reach).

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

use base64::Engine;
use serde_json::Value;

use crate::support::k8s_schemas::{documents, typo_sweep, Schemas};
use crate::support::talos_lab::{assert_valid, machine_configs, talos_schema, SecretLab};
use crate::support::{
    build, chart_fixture, fixture_digest, schema_file, sha256_hex, text, upstream_fixture,
    valid_blueprints,
};

const INLINE: &[&str] = &[
    "10-gateway-api-crds",
    "15-cilium-chart",
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
    let (name, chart) = &files[1];
    assert_eq!(name, "15-cilium-chart");
    assert!(
        chart.contains("https://helm.cilium.io/cilium-1.19.0.tgz"),
        "{chart}"
    );
    assert!(documents(chart).is_empty());
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
    let (_, crds) = files
        .iter()
        .find(|(n, _)| n == "10-gateway-api-crds")
        .unwrap();
    assert_eq!(*crds, upstream_fixture("10-gateway-api-crds"));
    // The Flux Operator's manifest too, but for its image, by digest.
    let (_, operator) = files.iter().find(|(n, _)| n == "40-flux-operator").unwrap();
    let flux_image = "ghcr.io/controlplaneio-fluxcd/flux-operator:v0.40.0";
    assert_eq!(
        *operator,
        upstream_fixture("40-flux-operator").replace(
            &format!("image: {flux_image}\n"),
            &format!(
                "image: {flux_image}@sha256:{}\n",
                fixture_digest(flux_image)
            )
        )
    );
    // The chart as pinned, in a ConfigMap the Job unpacks.
    let (_, chart) = files.iter().find(|(n, _)| n == "15-cilium-chart").unwrap();
    let chart = &documents(chart)[0];
    assert_eq!(chart["kind"], "ConfigMap");
    let archive = base64::engine::general_purpose::STANDARD
        .decode(chart["binaryData"]["cilium-1.19.0.tgz"].as_str().unwrap())
        .unwrap();
    assert_eq!(archive, chart_fixture());
    let lock = fs::read_to_string(lab.path("blueprint.lock")).unwrap();
    for pinned in [
        "gateway-api/releases/download/v1.4.1/standard-install.yaml",
        "flux-operator/releases/download/v0.40.0/install.yaml",
        "https://helm.cilium.io/cilium-1.19.0.tgz",
        &sha256_hex(&chart_fixture()),
        // Tags resolved in their registries.
        "https://quay.io/v2/cilium/cilium-cli/manifests/v0.19.0",
        "https://ghcr.io/v2/controlplaneio-fluxcd/flux-operator/manifests/v0.40.0",
        // The chart's images, by the digests the chart names.
        "https://quay.io/v2/cilium/cilium/manifests/v1.19.0",
        "https://quay.io/v2/cilium/operator-generic/manifests/v1.19.0",
        "https://quay.io/v2/cilium/cilium-envoy/manifests/v1.35.9-fixture",
        &sha256_hex(b"waddlec test fixture operator-generic"),
    ] {
        assert!(lock.contains(pinned), "{pinned} not in\n{lock}");
    }
    // An image without a digest in the chart is not pinned (nor run: its
    // table is off).
    assert!(!lock.contains("startup-script"), "{lock}");
    // Every image a bootstrap object starts is pinned by digest.
    let mut images = Vec::new();
    for (_, contents) in &files {
        for document in documents(contents) {
            collect_images(&document, &mut images);
        }
    }
    assert!(images.len() >= 3, "{images:?}");
    for image in &images {
        let (_, digest) = image
            .split_once("@sha256:")
            .unwrap_or_else(|| panic!("{image} is referenced by tag alone"));
        assert_eq!(digest.len(), 64, "{image}");
    }
    assert!(
        images.contains(&format!(
            "quay.io/cilium/cilium:v1.19.0@sha256:{}",
            sha256_hex(b"waddlec test fixture cilium")
        )),
        "{images:?}"
    );
}

/// Every `image:` string of a Kubernetes object (containers, init
/// containers).
fn collect_images(value: &Value, into: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                match (key.as_str(), child) {
                    ("image", Value::String(image)) => into.push(image.clone()),
                    _ => collect_images(child, into),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_images(v, into)),
        _ => {}
    }
}

#[test]
fn the_installer_never_downloads_the_chart() {
    let (_dir, out) = build(&valid_blueprints()[0]);
    let installer =
        fs::read_to_string(out.join("cluster/bootstrap/20-cilium-install.yaml")).unwrap();
    let docs = documents(&installer);
    let job = docs.iter().find(|d| d["kind"] == "Job").unwrap();
    let pod = &job["spec"]["template"]["spec"];
    let command: Vec<&str> = pod["containers"][0]["command"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(&command[..2], ["cilium", "install"]);
    assert!(
        command.contains(&"--chart-directory=/chart/cilium"),
        "{command:?}"
    );
    for flag in ["--version", "--repository", "--helm-set", "--set"] {
        assert!(
            !command.iter().any(|a| a.starts_with(flag)),
            "{flag} in {command:?}"
        );
    }
    // The chart directory is what the init container unpacked from the
    // chart's ConfigMap, mounted read-only.
    let unpack = &pod["initContainers"][0];
    assert_eq!(unpack["command"][0], "tar");
    assert_eq!(unpack["command"][2], "/etc/cilium-chart/cilium-1.19.0.tgz");
    let volumes = pod["volumes"].as_array().unwrap();
    assert!(volumes
        .iter()
        .any(|v| v["configMap"]["name"] == "cilium-install-chart"));
    assert!(volumes
        .iter()
        .any(|v| v["name"] == "chart" && v["emptyDir"].is_object()));
    // No URL anywhere in what the Job reads.
    let config_map = docs.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let values = config_map["data"]["values.yaml"].as_str().unwrap();
    for text in [values, &command.join(" ")] {
        for needle in ["http://", "https://", "oci://", "helm.cilium.io"] {
            assert!(!text.contains(needle), "{needle} in {text}");
        }
    }
}

#[test]
fn a_tag_without_its_pinned_digest_stops_a_locked_build() {
    let lab = SecretLab::new(&valid_blueprints()[0]);
    lab.init();
    // The manifests and the chart pinned, the registries' digests not.
    let lock_path = lab.path("blueprint.lock");
    let kept: Vec<String> = fs::read_to_string(&lock_path)
        .unwrap()
        .split("\n[[input]]")
        .filter(|entry| !entry.contains("cilium-cli/manifests"))
        .map(str::to_string)
        .collect();
    fs::write(&lock_path, kept.join("\n[[input]]")).unwrap();
    let output = locked_build(&lab);
    assert_eq!(output.status.code(), Some(5), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("quay.io/cilium/cilium-cli:v0.19.0"),
        "{}",
        text(&output.stderr)
    );
    assert!(!lab.path("dist").exists());
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
    let output = locked_build(&lab);
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

/// `build --with-secrets --no-images --locked` in the lab.
fn locked_build(lab: &SecretLab) -> std::process::Output {
    lab.waddlec(&[
        "build",
        "blueprint.toml",
        "--with-secrets",
        "--no-images",
        "--locked",
    ])
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
    // Flux's HelmRelease carries the same values; both are held to the
    // chart's schema and key set.
    let release = documents(
        &fs::read_to_string(out.join("platform/infrastructure/cilium/release.yaml")).unwrap(),
    )
    .into_iter()
    .find(|d| d["kind"] == "HelmRelease")
    .unwrap();
    for (what, values) in [
        ("job", &values),
        ("helm release", &release["spec"]["values"]),
    ] {
        let errors: Vec<String> = validator
            .iter_errors(values)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{what}: {errors:?}");
        let mut unknown = Vec::new();
        unknown_keys(&schema, values, "", &mut unknown);
        assert!(
            unknown.is_empty(),
            "{what}: keys the chart does not have: {unknown:?}"
        );
    }
    // Every image of the chart keeps its digest.
    for table in waddlec::model::CILIUM_IMAGE_TABLES {
        let node = table.split('.').fold(&values, |node, part| &node[part]);
        assert_eq!(node["useDigest"], true, "{table}");
        assert_eq!(node.as_object().unwrap().len(), 1, "{table}: {node}");
    }
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
