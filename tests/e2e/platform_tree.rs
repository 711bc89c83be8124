//! The GitOps tree (`platform/`): every manifest strictly valid against the
//! schema of its own apiVersion and kind, the Flux dependency graph acyclic
//! and complete with each edge's reason stated here, every chart, image and
//! source pinned, no secret in it, and the same bytes every build.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

use serde_json::{json, Value};

use crate::support::k8s_schemas::{documents, typo_sweep, Schemas};
use crate::support::talos_lab::SecretLab;
use crate::support::{build, repo_root, text, tree, valid_blueprints};

/// Each shipped blueprint's tree (each has a platform): the temp dir guard,
/// the output and the directory of its Flux Kustomizations.
fn trees() -> Vec<(tempfile::TempDir, std::path::PathBuf, String)> {
    valid_blueprints()
        .iter()
        .map(|blueprint| {
            let (guard, out) = build(blueprint);
            let flux = crate::support::model(blueprint)
                .flux
                .expect("a [flux] section");
            (guard, out, format!("platform/{}", flux.path))
        })
        .collect()
}

/// Every manifest of the tree (not README.md), by path.
fn manifests(out: &Path) -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = tree(&out.join("platform"))
        .into_iter()
        .filter(|(path, _)| path.ends_with(".yaml"))
        .map(|(path, (bytes, _))| (path, String::from_utf8(bytes).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn every_platform_manifest_validates_against_the_schema_of_its_kind() {
    let mut schemas = Schemas::new();
    let mut kinds = BTreeSet::new();
    let mut files = Vec::new();
    for (_dir, out, _) in trees() {
        files.extend(manifests(&out));
    }
    assert!(files.len() > 60, "{} manifests", files.len());
    for (path, contents) in &files {
        let problems = schemas.check_stream(contents);
        assert!(problems.is_empty(), "{path}:\n{}", problems.join("\n"));
        for document in documents(contents) {
            kinds.insert(format!(
                "{}/{}",
                document["apiVersion"].as_str().unwrap(),
                document["kind"].as_str().unwrap()
            ));
        }
    }
    for kind in [
        "kustomize.toolkit.fluxcd.io/v1/Kustomization",
        "source.toolkit.fluxcd.io/v1/HelmRepository",
        "source.toolkit.fluxcd.io/v1/GitRepository",
        "helm.toolkit.fluxcd.io/v2/HelmRelease",
        "external-secrets.io/v1/ExternalSecret",
        "external-secrets.io/v1/ClusterSecretStore",
        "cert-manager.io/v1/ClusterIssuer",
        "cert-manager.io/v1/Certificate",
        "postgresql.cnpg.io/v1/Cluster",
        "postgresql.cnpg.io/v1/ScheduledBackup",
        "barmancloud.cnpg.io/v1/ObjectStore",
        "authzed.com/v1alpha1/SpiceDBCluster",
        "gateway.networking.k8s.io/v1/Gateway",
        "gateway.networking.k8s.io/v1/HTTPRoute",
        "gateway.networking.k8s.io/v1/GRPCRoute",
        "cilium.io/v2/CiliumNetworkPolicy",
        "v1/Namespace",
        "fluxcd.controlplane.io/v1/FluxInstance",
        "cilium.io/v2/CiliumLoadBalancerIPPool",
        "cilium.io/v2alpha1/CiliumL2AnnouncementPolicy",
        "externaldns.k8s.io/v1alpha1/DNSEndpoint",
    ] {
        assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
    }
}

#[test]
fn a_misspelled_field_in_any_platform_manifest_fails_validation() {
    // Maps whose keys are data, not fields: Helm values (checked by their
    // charts, not by Kubernetes), SpiceDB's schemaless `config`, the
    // store's vault map, and CNPG plugin `parameters` (a string map the
    // plugin reads; `plugin_parameters_name_real_objects` checks them).
    const DATA: &[&str] = &["values", "config", "vaults", "parameters"];
    let files: Vec<(String, String)> = trees()
        .iter()
        .flat_map(|(_, out, _)| manifests(out))
        .collect();
    let (checked, missed) = typo_sweep(&files, DATA);
    assert!(checked > 300, "only {checked} fields checked");
    assert!(
        missed.is_empty(),
        "typos the validator accepted:\n{}",
        missed.join("\n")
    );
}

/// The Flux Kustomizations: name → dependsOn.
fn graph(out: &Path, cluster_dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for entry in fs::read_dir(out.join(cluster_dir)).unwrap() {
        let text = fs::read_to_string(entry.unwrap().path()).unwrap();
        for document in documents(&text)
            .into_iter()
            .filter(|d| d["kind"] == "Kustomization")
        {
            let needs = document["spec"]["dependsOn"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|d| d["name"].as_str().unwrap().to_string())
                        .collect()
                })
                .unwrap_or_default();
            graph.insert(
                document["metadata"]["name"].as_str().unwrap().to_string(),
                needs,
            );
        }
    }
    graph
}

#[test]
fn the_dependency_graph_is_acyclic_and_every_reference_resolves() {
    for (_dir, out, cluster_dir) in trees() {
        check_graph(&out, &cluster_dir);
    }
}

fn check_graph(out: &Path, cluster_dir: &str) {
    let graph = graph(out, cluster_dir);
    assert_eq!(graph.len(), 13, "{graph:?}");
    for (from, needs) in &graph {
        for to in needs {
            assert!(
                graph.contains_key(to),
                "{from} depends on {to}, which is no Kustomization"
            );
        }
    }
    // Kahn: everything can be ordered.
    let mut done: BTreeSet<&String> = BTreeSet::new();
    while done.len() < graph.len() {
        let ready: Vec<&String> = graph
            .iter()
            .filter(|(name, needs)| !done.contains(name) && needs.iter().all(|n| done.contains(n)))
            .map(|(name, _)| name)
            .collect();
        assert!(
            !ready.is_empty(),
            "a cycle among {:?}",
            graph
                .keys()
                .filter(|n| !done.contains(n))
                .collect::<Vec<_>>()
        );
        done.extend(ready);
    }
    // Every Kustomization's path is a directory of the tree, or the
    // operator's own repository.
    for entry in fs::read_dir(out.join(cluster_dir)).unwrap() {
        let text = fs::read_to_string(entry.unwrap().path()).unwrap();
        for document in documents(&text)
            .into_iter()
            .filter(|d| d["kind"] == "Kustomization")
        {
            let path = document["spec"]["path"].as_str().unwrap();
            if document["spec"]["sourceRef"]["name"] == "flux-system" {
                assert!(
                    out.join("platform")
                        .join(path.trim_start_matches("./"))
                        .is_dir(),
                    "{path}"
                );
            }
        }
    }
}

/// One test per edge, each saying why the edge exists; and no edge the
/// list does not give a reason for.
macro_rules! edges {
    ($($test:ident: $from:literal needs $to:literal because $why:literal;)*) => {
        $(
            #[test]
            fn $test() {
                let _why = $why;
                let (_dir, out) = build(&valid_blueprints()[0]);
                let graph = graph(&out, "platform/clusters/waddle-cluster");
                assert!(graph[$from].contains($to), "{} must depend on {}: {}", $from, $to, $why);
            }
        )*

        #[test]
        fn no_dependency_lacks_a_stated_reason() {
            let expected: BTreeSet<(&str, &str)> = [$(($from, $to)),*].into_iter().collect();
            let (_dir, out) = build(&valid_blueprints()[0]);
            for (from, needs) in graph(&out, "platform/clusters/waddle-cluster") {
                for to in needs {
                    assert!(expected.contains(&(from.as_str(), to.as_str())), "{from} → {to} has no stated reason");
                }
            }
        }
    };
}

edges! {
    onepassword_after_external_secrets: "onepassword" needs "external-secrets"
        because "the ClusterSecretStore is an External Secrets resource";
    issuer_after_cert_manager: "cert-manager-config" needs "cert-manager"
        because "ClusterIssuer is a cert-manager CRD, installed by the chart";
    issuer_after_onepassword: "cert-manager-config" needs "onepassword"
        because "the Cloudflare token is an ExternalSecret";
    external_dns_after_onepassword: "external-dns" needs "onepassword"
        because "the Cloudflare token is an ExternalSecret";
    dns_records_after_external_dns: "external-dns-records" needs "external-dns"
        because "DNSEndpoint is External DNS's CRD, installed by its chart";
    cnpg_after_cert_manager: "cloudnative-pg" needs "cert-manager"
        because "the Barman Cloud plugin's certificates are cert-manager Certificates";
    csi_after_onepassword: "democratic-csi" needs "onepassword"
        because "the driver config with the SSH key is an ExternalSecret";
    gateway_after_cilium_config: "cilium-gateway" needs "cilium-config"
        because "the Gateway's Service gets the VIP from its pool and L2 policy";
    gateway_after_issuer: "cilium-gateway" needs "cert-manager-config"
        because "the Gateway's Certificates need the ClusterIssuer";
    spicedb_after_cnpg: "spicedb" needs "cloudnative-pg"
        because "its database is a CNPG Cluster with plugin backups";
    spicedb_after_operator: "spicedb" needs "spicedb-operator"
        because "SpiceDBCluster is the operator's CRD";
    spicedb_after_storage: "spicedb" needs "democratic-csi"
        because "the database's volumes come from the default StorageClass";
    spicedb_after_secrets: "spicedb" needs "onepassword"
        because "its passwords, preshared key and S3 credentials are ExternalSecrets";
    spicedb_after_gateway: "spicedb" needs "cilium-gateway"
        because "its GRPCRoute attaches to the Gateway";
}

#[test]
fn every_chart_image_and_source_is_pinned() {
    for (_dir, out, _) in trees() {
        check_pins(&out);
    }
}

fn check_pins(out: &Path) {
    let exact = |v: &str| {
        let digits = v.trim_start_matches('v');
        !digits.is_empty()
            && digits.split('.').count() == 3
            && digits
                .split('.')
                .all(|p| p.chars().all(|c| c.is_ascii_digit()))
    };
    let mut releases = 0;
    for (path, contents) in manifests(out) {
        assert!(!contents.contains("latest"), "{path} mentions latest");
        for document in documents(&contents) {
            match document["kind"].as_str().unwrap() {
                "HelmRelease" => {
                    releases += 1;
                    let version = document["spec"]["chart"]["spec"]["version"]
                        .as_str()
                        .unwrap_or_default();
                    assert!(
                        exact(version),
                        "{path}: chart version `{version}` is not exact"
                    );
                }
                "GitRepository" => {
                    let tag = document["spec"]["ref"]["tag"].as_str().unwrap_or_default();
                    assert!(exact(tag), "{path}: git source not pinned to a release tag");
                }
                "SpiceDBCluster" => assert!(exact(document["spec"]["version"].as_str().unwrap())),
                // Manifests built from another repository: their images are
                // whatever that repository names unless pinned here.
                "Kustomization" if document["spec"]["sourceRef"]["name"] != "flux-system" => {
                    let images = document["spec"]["images"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    assert!(
                        !images.is_empty(),
                        "{path}: upstream manifests with unpinned images"
                    );
                    for image in images {
                        assert!(
                            exact(image["newTag"].as_str().unwrap_or_default()),
                            "{path}: {image}"
                        );
                    }
                }
                _ => {}
            }
            let mut images = Vec::new();
            collect_images(&document, &mut images);
            for (registry, tag) in images {
                assert!(
                    exact(&tag),
                    "{path}: image {registry} tag `{tag}` is not pinned"
                );
            }
        }
    }
    assert_eq!(releases, 8);
}

/// `{registry, tag}` image settings in Helm values.
fn collect_images(value: &Value, into: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            if let (Some(Value::String(registry)), Some(tag)) =
                (map.get("registry"), map.get("tag"))
            {
                into.push((
                    registry.clone(),
                    tag.as_str().unwrap_or_default().to_string(),
                ));
            }
            map.values().for_each(|v| collect_images(v, into));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_images(v, into)),
        _ => {}
    }
}

#[test]
fn the_tree_holds_no_secret_and_is_the_same_with_secrets_and_across_builds() {
    let lab = SecretLab::new(&valid_blueprints()[0]);
    lab.init();
    let output = lab.waddlec(&["build", "blueprint.toml", "--with-secrets", "--no-images"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let output = lab.waddlec(&["build", "blueprint.toml", "--out", "out"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let deployable = tree(&lab.path("dist/platform"));
    assert_eq!(
        deployable,
        tree(&lab.path("out/platform")),
        "secrets changed the platform tree"
    );
    let (_a, first) = build(&valid_blueprints()[0]);
    let (_b, second) = build(&valid_blueprints()[0]);
    assert_eq!(
        tree(&first.join("platform")),
        tree(&second.join("platform"))
    );
    // Credentials are ExternalSecrets; no Secret object carries data.
    for (path, contents) in manifests(&first) {
        for document in documents(&contents) {
            assert_ne!(document["kind"], "Secret", "{path} has a Secret");
        }
        assert!(
            !contents.contains(crate::support::talos_lab::GITHUB_SECRET),
            "{path}"
        );
    }
}

/// CNPG hands plugin `parameters` to the plugin as plain strings, so no
/// schema catches a wrong name there: every `barmanObjectName` must be an
/// ObjectStore of the Cluster's namespace.
#[test]
fn plugin_parameters_name_real_objects() {
    let (_dir, out) = build(&valid_blueprints()[0]);

    let all: Vec<Value> = manifests(&out)
        .iter()
        .flat_map(|(_, c)| documents(c))
        .collect();
    let stores: BTreeSet<(String, String)> = all
        .iter()
        .filter(|d| d["kind"] == "ObjectStore")
        .map(|d| {
            (
                d["metadata"]["namespace"].as_str().unwrap().into(),
                d["metadata"]["name"].as_str().unwrap().into(),
            )
        })
        .collect();
    let mut checked = 0;
    for cluster in all.iter().filter(|d| d["kind"] == "Cluster") {
        let namespace = cluster["metadata"]["namespace"]
            .as_str()
            .unwrap()
            .to_string();
        let plugins = cluster["spec"]["plugins"].as_array().into_iter().flatten();
        let external = cluster["spec"]["externalClusters"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| &e["plugin"]);
        for plugin in plugins.chain(external) {
            assert_eq!(plugin["name"], "barman-cloud.cloudnative-pg.io");
            let name = plugin["parameters"]["barmanObjectName"]
                .as_str()
                .unwrap()
                .to_string();
            assert!(
                stores.contains(&(namespace.clone(), name.clone())),
                "no ObjectStore {namespace}/{name}"
            );
            checked += 1;
        }
    }
    // The Cluster's WAL archiver (a restore's source is checked against it
    // by `each_restore_reads_the_generation_before_and_archives_as_a_new_one`).
    assert_eq!(checked, 1);
}

/// What the machine configs create once at bootstrap, Flux keeps current:
/// the same FluxInstance and the same L2 announcements, byte for byte, and
/// the Cilium release the installer Job made: same name and namespace,
/// same chart version, the same values.
#[test]
fn flux_keeps_the_bootstrap_objects_current() {
    let (_dir, out) = build(&valid_blueprints()[0]);
    let read = |path: &str| fs::read_to_string(out.join(path)).unwrap();
    assert_eq!(
        documents(&read("platform/clusters/waddle-cluster/flux-instance.yaml")),
        documents(&read("cluster/bootstrap/50-flux-instance.yaml"))
    );
    assert_eq!(
        documents(&read(
            "platform/infrastructure/cilium-config/l2-announcements.yaml"
        )),
        documents(&read("cluster/bootstrap/30-cilium-l2-announcements.yaml"))
    );
    let installer = documents(&read("cluster/bootstrap/20-cilium-install.yaml"));
    let config_map = installer.iter().find(|d| d["kind"] == "ConfigMap").unwrap();
    let job_values: Value =
        serde_saphyr::from_str(config_map["data"]["values.yaml"].as_str().unwrap()).unwrap();
    let job = installer.iter().find(|d| d["kind"] == "Job").unwrap();
    let command = &job["spec"]["template"]["spec"]["containers"][0]["command"];
    assert!(
        command
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--namespace=kube-system"),
        "{command}"
    );
    let release_file = documents(&read("platform/infrastructure/cilium/release.yaml"));
    let release = release_file
        .iter()
        .find(|d| d["kind"] == "HelmRelease")
        .unwrap();
    assert_eq!(release["metadata"]["namespace"], "kube-system");
    assert_eq!(release["spec"]["releaseName"], "cilium");
    assert_eq!(release["spec"]["storageNamespace"], "kube-system");
    assert_eq!(release["spec"]["chart"]["spec"]["chart"], "cilium");
    assert_eq!(release["spec"]["chart"]["spec"]["version"], "1.19.0");
    assert_eq!(release["spec"]["values"], job_values);
    let repository = release_file
        .iter()
        .find(|d| d["kind"] == "HelmRepository")
        .unwrap();
    assert_eq!(repository["spec"]["url"], "https://helm.cilium.io/");
}

/// Every name the edge routes has an A record at the host's public address
/// (and an AAAA one at its IPv6 address when the edge is dual stack, as in
/// `lab.toml`), kept by External DNS: the Gateway's wildcards through its routes (the
/// gateway sources), every other name through one DNSEndpoint (the CRD
/// source, enabled, with the chart's CRD installed and upgraded).
#[test]
fn external_dns_publishes_every_edge_name_the_gateway_does_not() {
    for blueprint in valid_blueprints() {
        let model = crate::support::model(&blueprint);
        let platform = model.platform.as_ref().unwrap();
        let edge = model.edge.as_ref().unwrap();
        let (_dir, out) = build(&blueprint);
        let read = |path: &str| documents(&fs::read_to_string(out.join(path)).unwrap());
        let expected: Vec<String> = edge
            .routes
            .iter()
            .filter_map(|route| match &route.host {
                waddlec::model::SniHost::Exact(host) => Some(host.clone()),
                waddlec::model::SniHost::Wildcard { suffix } => {
                    (route.backend.name != platform.gateway.name).then(|| format!("*{suffix}"))
                }
            })
            .collect();
        assert!(!expected.is_empty(), "{}", blueprint.display());
        let records = read("platform/infrastructure/external-dns-records/edge-hosts.yaml");
        let [record] = records.as_slice() else {
            panic!("{records:?}")
        };
        assert_eq!(record["kind"], "DNSEndpoint");
        let endpoints = record["spec"]["endpoints"].as_array().unwrap();
        // With IPv6 at the edge, each name's AAAA record follows its A.
        let address6 = model.edge_address6();
        let per_name = 1 + usize::from(address6.is_some());
        let names: Vec<&str> = endpoints
            .iter()
            .step_by(per_name)
            .map(|e| e["dnsName"].as_str().unwrap())
            .collect();
        assert_eq!(names, expected, "{}", blueprint.display());
        assert_eq!(endpoints.len(), expected.len() * per_name);
        if blueprint == valid_blueprints()[0] {
            assert_eq!(
                names,
                [
                    "teleport.waddle.social",
                    "proxmox.waddle.social",
                    "*.teleport.waddle.social"
                ]
            );
        }
        for pair in endpoints.chunks(per_name) {
            let endpoint = &pair[0];
            assert_eq!(endpoint["recordType"], "A");
            assert_eq!(
                endpoint["targets"],
                serde_json::json!([platform.public_address.to_string()])
            );
            if let (Some(address6), [a, aaaa]) = (address6, pair) {
                assert_eq!(aaaa["dnsName"], a["dnsName"]);
                assert_eq!(aaaa["recordType"], "AAAA");
                assert_eq!(aaaa["targets"], serde_json::json!([address6.to_string()]));
            }
        }
        // The gateway's wildcards are left to the routes under them.
        for (host, _) in &platform.gateway.https {
            if host.starts_with("*.") {
                assert!(!names.contains(&host.as_str()), "{host}");
            }
        }
        let release = read("platform/infrastructure/external-dns/release.yaml")
            .into_iter()
            .find(|d| d["kind"] == "HelmRelease")
            .unwrap();
        let sources = release["spec"]["values"]["sources"].as_array().unwrap();
        assert!(sources.iter().any(|s| s == "crd"), "{sources:?}");
        assert_eq!(release["spec"]["install"]["crds"], "Create");
        assert_eq!(release["spec"]["upgrade"]["crds"], "CreateReplace");
    }
}

/// The PostgreSQL Cluster the tree renders for the bundled blueprint with
/// `lines` added to `[platform.spicedb]`, parsed, after strict validation
/// of every document of its file.
fn database_of(schemas: &mut Schemas, lines: &str) -> Value {
    let blueprint = fs::read_to_string(repo_root().join("blueprints/waddle.toml")).unwrap();
    let anchor = "[platform.spicedb]\n";
    assert_eq!(blueprint.matches(anchor).count(), 1);
    let source = waddlec::blueprint::SourceFile {
        name: "waddle.toml".into(),
        text: blueprint.replace(anchor, &format!("{anchor}{lines}\n")),
    };
    let today = waddlec::blueprint::Date {
        year: 2000,
        month: 1,
        day: 1,
    };
    let compiled = waddlec::compile(&source, today)
        .unwrap_or_else(|_| panic!("the blueprint with {lines:?} compiles"));
    let file = compiled
        .artifacts
        .iter()
        .find(|a| a.path == "platform/apps/spicedb/postgres.yaml")
        .expect("the database's manifests");
    let contents = String::from_utf8(file.contents.clone()).unwrap();
    let problems = schemas.check_stream(&contents);
    assert!(problems.is_empty(), "{lines:?}:\n{}", problems.join("\n"));
    assert!(
        compiled
            .artifacts
            .iter()
            .all(|a| !a.path.starts_with("platform/recovery/")),
        "no hand-applied recovery manifest beside the tree"
    );
    documents(&contents)
        .into_iter()
        .find(|d| d["kind"] == "Cluster")
        .expect("a Cluster")
}

/// The server name a Cluster archives under.
fn archives_as(cluster: &Value) -> String {
    let archiver = &cluster["spec"]["plugins"][0];
    assert_eq!(archiver["isWALArchiver"], true);
    archiver["parameters"]["serverName"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Disaster after disaster: generation 1 starts empty; each rebuild raises
/// the generation and restores the one before. Every restore reads
/// exactly the server name the lost generation archived under, archives
/// under a name no earlier generation used, and starts from its backups
/// (never `initdb`). Each manifest is strictly valid against CNPG's CRD.
#[test]
fn each_restore_reads_the_generation_before_and_archives_as_a_new_one() {
    let mut schemas = Schemas::new();
    let first = database_of(&mut schemas, "");
    assert!(first["spec"]["bootstrap"]["initdb"].is_object());
    assert!(first["spec"].get("externalClusters").is_none());
    assert_eq!(
        database_of(&mut schemas, "generation = 1"),
        first,
        "generation 1 is the default"
    );
    let mut used = vec![archives_as(&first)];
    let mut lost = first;
    for generation in 2..=3 {
        let restored = database_of(
            &mut schemas,
            &format!(
                "generation = {generation}\nrestore_from = {}",
                generation - 1
            ),
        );
        let spec = &restored["spec"];
        assert!(spec["bootstrap"].get("initdb").is_none(), "{spec}");
        let recovery = &spec["bootstrap"]["recovery"];
        let origin = spec["externalClusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == recovery["source"])
            .expect("the recovery's source is an external cluster");
        assert_eq!(
            origin["plugin"]["parameters"]["serverName"]
                .as_str()
                .unwrap(),
            archives_as(&lost),
            "generation {generation} restores what generation {} archived",
            generation - 1
        );
        assert_eq!(
            origin["plugin"]["parameters"]["barmanObjectName"],
            spec["plugins"][0]["parameters"]["barmanObjectName"],
            "from the same bucket"
        );
        let name = archives_as(&restored);
        assert!(!used.contains(&name), "{name} was archived to before");
        used.push(name);
        lost = restored;
    }
    assert_eq!(used, ["spicedb-pg", "spicedb-pg-g2", "spicedb-pg-g3"]);
}

/// External DNS's Helm values, for every shipped tree (Cloudflare in the
/// waddle one, RFC 2136 in the lab's): valid against the chart's own
/// `values.schema.json` at the pinned 1.20.0, and every top-level key one
/// the chart has (its schema's root admits any key). A value of the wrong
/// type is refused, so the check is not vacuous.
#[test]
fn external_dns_values_are_valid_for_its_chart() {
    let schema: Value = serde_json::from_str(
        &fs::read_to_string(
            repo_root().join("tests/data/schemas/helm/external-dns-1.20.0/values.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let validator = jsonschema::validator_for(&schema).unwrap();
    let mut providers = BTreeSet::new();
    for (_dir, out, _) in trees() {
        let release =
            fs::read_to_string(out.join("platform/infrastructure/external-dns/release.yaml"))
                .unwrap();
        let values = documents(&release)
            .into_iter()
            .find(|d| d["kind"] == "HelmRelease")
            .expect("the external-dns HelmRelease")["spec"]["values"]
            .clone();
        let problems: Vec<String> = validator
            .iter_errors(&values)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(problems.is_empty(), "{}", problems.join("\n"));
        for key in values.as_object().unwrap().keys() {
            assert!(
                schema["properties"].get(key).is_some(),
                "`{key}` is not a value of the external-dns chart"
            );
        }
        providers.insert(values["provider"]["name"].as_str().unwrap().to_owned());
        let mut wrong = values.clone();
        wrong["extraArgs"] = json!(53);
        assert!(!validator.is_valid(&wrong), "the schema checks types");
    }
    assert_eq!(
        providers,
        BTreeSet::from(["cloudflare".into(), "rfc2136".into()])
    );
}
