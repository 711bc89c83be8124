//! The GitOps tree Flux syncs (`platform/` in the output, published into
//! the `[flux]` repository by `waddlec platform publish`): one directory
//! per component under `infrastructure/` and `apps/`, and one Flux
//! `Kustomization` per component under the `[flux] path`, whose
//! `dependsOn` come from what each component needs (`graph`, checked
//! before anything is rendered). Every chart and image is pinned by the
//! blueprint's `[versions]`; every credential is an `ExternalSecret`
//! against 1Password, so the tree holds no secret and is the same in the
//! review and the deployable tree. `README.md` in the tree says where it
//! departs from the hand-written seed and why. `applied` lists what Flux
//! applies from it, for `waddlec status` to look for in the cluster.

mod apps;
pub mod graph;
mod infrastructure;
mod objects;

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use super::{RenderError, Templates};
use crate::artifact::Artifact;
use crate::model::Model;
use crate::render::k8s::Metadata;
use graph::Need;

/// Where the tree sits in the output.
pub const ROOT: &str = "platform";

/// One component: a directory of manifests and what it needs first.
pub struct Component {
    pub name: &'static str,
    /// Its directory in the repository (`infrastructure/cert-manager`).
    pub dir: &'static str,
    pub needs: Vec<Need>,
    files: Vec<(&'static str, Vec<Value>)>,
    /// Read from another repository instead: its source object and path.
    source: Option<(Value, &'static str, &'static str)>,
    /// Image tags the Flux Kustomization sets (`spec.images`): upstream
    /// kustomizations may name `latest`.
    images: Vec<(&'static str, String)>,
}

impl Component {
    fn new(name: &'static str, dir: &'static str, needs: Vec<Need>) -> Self {
        Component {
            name,
            dir,
            needs,
            files: Vec::new(),
            source: None,
            images: Vec::new(),
        }
    }

    fn file(mut self, name: &'static str, documents: Vec<Value>) -> Self {
        self.files.push((name, documents));
        self
    }

    fn read_from(mut self, source: Value, name: &'static str, path: &'static str) -> Self {
        self.source = Some((source, name, path));
        self
    }

    fn pin_image(mut self, image: &'static str, tag: String) -> Self {
        self.images.push((image, tag));
        self
    }
}

/// Every component of the model's platform.
pub fn components(model: &Model) -> Vec<Component> {
    // resolve gives a platform only with 1Password Connect.
    let (Some(platform), Some(connect)) = (&model.platform, &model.onepassword_connect) else {
        return Vec::new();
    };
    let mut all = vec![
        infrastructure::external_secrets(&platform.versions),
        infrastructure::onepassword(connect, platform),
        infrastructure::cert_manager(&platform.versions),
        infrastructure::cert_manager_config(model, platform),
        infrastructure::external_dns(model, platform),
        infrastructure::external_dns_records(model, platform),
        infrastructure::cloudnative_pg(&platform.versions),
        infrastructure::spicedb_operator(&platform.versions),
        infrastructure::democratic_csi(model, platform),
        infrastructure::cilium_config(model),
        infrastructure::cilium_gateway(platform),
        apps::spicedb(platform),
    ];
    all.extend(infrastructure::cilium(model));
    all
}

/// An object the tree has Flux apply, and the component whose
/// Kustomization applies it: what `waddlec status` expects to find.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub component: &'static str,
    pub api_version: String,
    pub kind: String,
    /// `None` for a cluster-scoped object.
    pub namespace: Option<String>,
    pub name: String,
}

/// Every object of the model's tree Flux applies: each component's
/// Kustomization (and its source, when it reads another repository) and
/// every object of its files. Not the recovery manifests, which nothing
/// applies, and not what a component reads from another repository.
pub fn applied(model: &Model) -> Vec<Applied> {
    let mut all = Vec::new();
    for component in components(model) {
        let source = component
            .source
            .as_ref()
            .map(|(source, _, _)| source.clone());
        let documents = source.into_iter().chain([kustomization(&component)]).chain(
            component
                .files
                .iter()
                .flat_map(|(_, docs)| docs.iter().cloned()),
        );
        for document in documents {
            let text = |path: &str| document.pointer(path).and_then(Value::as_str);
            let (Some(api_version), Some(kind), Some(name)) =
                (text("/apiVersion"), text("/kind"), text("/metadata/name"))
            else {
                continue;
            };
            all.push(Applied {
                component: component.name,
                api_version: api_version.to_owned(),
                kind: kind.to_owned(),
                namespace: text("/metadata/namespace").map(str::to_owned),
                name: name.to_owned(),
            });
        }
    }
    all
}

/// One field of a 1Password item that an ExternalSecret of the tree reads
/// (from the platform's vault, through Connect).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ItemField {
    pub item: String,
    pub field: String,
}

/// Every item field the tree's ExternalSecrets read, each once, sorted:
/// taken from the rendered objects themselves (`spec.data[].remoteRef`),
/// so it cannot drift from what External Secrets will ask Connect for.
pub fn external_secret_fields(model: &Model) -> Vec<ItemField> {
    let mut fields: Vec<ItemField> = components(model)
        .iter()
        .flat_map(|component| &component.files)
        .flat_map(|(_, documents)| documents)
        .filter(|document| document["kind"] == "ExternalSecret")
        .flat_map(|document| {
            document["spec"]["data"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|data| {
            let remote = &data["remoteRef"];
            Some(ItemField {
                item: remote["key"].as_str()?.to_string(),
                field: remote["property"].as_str()?.to_string(),
            })
        })
        .collect();
    fields.sort();
    fields.dedup();
    fields
}

/// The Flux Kustomization applying one component.
fn kustomization(component: &Component) -> Value {
    let mut depends: Vec<&str> = component.needs.iter().map(|n| n.to).collect();
    depends.sort_unstable();
    depends.dedup();
    let (source, path) = match &component.source {
        Some((_, name, path)) => (
            json!({"kind": "GitRepository", "name": name}),
            path.to_string(),
        ),
        None => (
            json!({"kind": "GitRepository", "name": crate::render::cluster::flux::NAMESPACE}),
            format!("./{}", component.dir),
        ),
    };
    let mut spec = json!({
        "interval": "10m",
        "retryInterval": "1m",
        "path": path,
        "prune": true,
        "wait": true,
        "timeout": "10m",
        "sourceRef": source,
    });
    if !depends.is_empty() {
        spec["dependsOn"] = json!(depends
            .iter()
            .map(|d| json!({"name": d}))
            .collect::<Vec<_>>());
    }
    if !component.images.is_empty() {
        spec["images"] = json!(component
            .images
            .iter()
            .map(|(name, tag)| json!({"name": name, "newTag": tag}))
            .collect::<Vec<_>>());
    }
    objects::object(
        "kustomize.toolkit.fluxcd.io/v1",
        "Kustomization",
        Metadata::namespaced(crate::render::cluster::flux::NAMESPACE, component.name),
        json!({ "spec": spec }),
    )
}

#[derive(Serialize)]
struct ReadmeData<'a> {
    project: &'a str,
    cluster_path: &'a str,
    database: String,
    /// The RFC 2136 server (`ADDRESS:PORT`), when the DNS provider is one.
    rfc2136: Option<String>,
    components: Vec<ReadmeComponent<'a>>,
    versions: Vec<(&'static str, &'a str)>,
}

#[derive(Serialize)]
struct ReadmeComponent<'a> {
    name: &'a str,
    location: String,
    needs: Vec<ReadmeNeed>,
}

#[derive(Serialize)]
struct ReadmeNeed {
    to: &'static str,
    why: &'static str,
}

pub fn render(templates: &Templates, model: &Model) -> Result<Vec<Artifact>, RenderError> {
    // resolve gives a platform only with the cluster, so with Cilium.
    let (Some(platform), Some(flux), Some(cilium)) = (&model.platform, &model.flux, &model.cilium)
    else {
        return Ok(Vec::new());
    };
    let components = components(model);
    let graph: BTreeMap<&'static str, Vec<Need>> = components
        .iter()
        .map(|c| (c.name, c.needs.clone()))
        .collect();
    let order = graph::order(&graph)?;
    let mut artifacts = Vec::new();
    let file = |path: String, documents: &[Value]| -> Result<Artifact, RenderError> {
        Ok(Artifact::file(
            format!("{ROOT}/{path}"),
            "flux-manifests",
            objects::file(documents)?,
        ))
    };
    for component in &components {
        let mut entry = Vec::new();
        if let Some((source, _, _)) = &component.source {
            entry.push(source.clone());
        }
        entry.push(kustomization(component));
        artifacts.push(file(
            format!("{}/{}.yaml", flux.path, component.name),
            &entry,
        )?);
        for (name, documents) in &component.files {
            artifacts.push(file(format!("{}/{name}", component.dir), documents)?);
        }
    }
    // Flux's own settings, kept current by the sync they configure (the
    // machine configs create the same object once, at bootstrap).
    if let Some(instance) = crate::render::cluster::flux::instance(model) {
        artifacts.push(file(
            format!("{}/flux-instance.yaml", flux.path),
            &[instance],
        )?);
    }
    let by_name: BTreeMap<&str, &Component> = components.iter().map(|c| (c.name, c)).collect();
    let v = &platform.versions;
    let readme = ReadmeData {
        project: &model.project.name,
        cluster_path: &flux.path,
        database: apps::archive_summary(platform.spicedb.archive),
        rfc2136: match &platform.dns {
            crate::model::DnsProvider::Rfc2136 { server, .. } => Some(format!("`{server}`")),
            crate::model::DnsProvider::Cloudflare => None,
        },
        components: order
            .iter()
            .map(|name| {
                let component = by_name[name];
                ReadmeComponent {
                    name,
                    location: match &component.source {
                        Some((source, _, path)) => format!(
                            "`{path}` of {} at `{}`",
                            source["spec"]["url"].as_str().unwrap_or_default(),
                            source["spec"]["ref"]["tag"].as_str().unwrap_or_default()
                        ),
                        None => format!("`{}/`", component.dir),
                    },
                    needs: component
                        .needs
                        .iter()
                        .map(|n| ReadmeNeed {
                            to: n.to,
                            why: n.why,
                        })
                        .collect(),
                }
            })
            .collect(),
        versions: vec![
            ("Cilium (chart)", &cilium.version),
            ("External Secrets (chart)", &v.external_secrets),
            ("1Password Connect (chart)", &v.onepassword_connect),
            ("cert-manager (chart)", &v.cert_manager),
            ("External DNS (chart)", &v.external_dns),
            ("CloudNativePG operator", &v.cloudnative_pg),
            ("CloudNativePG chart", &v.cloudnative_pg_chart),
            ("Barman Cloud plugin chart", &v.barman_cloud_plugin_chart),
            ("SpiceDB operator (git tag)", &v.spicedb_operator),
            ("SpiceDB", &v.spicedb),
            ("democratic-csi (chart)", &v.democratic_csi),
            ("democratic-csi (image)", &v.democratic_csi_image),
        ],
    };
    artifacts.push(Artifact::file(
        format!("{ROOT}/README.md"),
        "platform-readme",
        templates.render("platform-README.md", &readme)?,
    ));
    Ok(artifacts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::blueprint::{Date, SourceFile};

    /// The bundled blueprint's ExternalSecrets read exactly the fields the
    /// `platform.items` documentation names, each once.
    #[test]
    fn the_item_fields_are_those_the_external_secrets_read() {
        let source = SourceFile {
            name: "waddle.toml".into(),
            text: include_str!("../../../../blueprints/waddle.toml").into(),
        };
        let today = Date {
            year: 2000,
            month: 1,
            day: 1,
        };
        let model = crate::check(&source, today)
            .expect("the bundled blueprint")
            .model;
        let fields: Vec<String> = external_secret_fields(&model)
            .into_iter()
            .map(|f| format!("{}/{}", f.item, f.field))
            .collect();
        assert_eq!(
            fields,
            [
                "cloudflare-api-token/credential",
                "democratic-csi-iscsi-chap/password",
                "democratic-csi-iscsi-chap/username",
                "democratic-csi-ssh/private key",
                "s3-backups/access-key-id",
                "s3-backups/secret-access-key",
                "spicedb-postgres/password",
                "spicedb-preshared-key/credential",
            ]
        );
    }

    /// The bundled blueprint with IPv6 added: the public bridge's /64, a
    /// ULA prefix inside, the edge's and Teleport's VMs on it, so every
    /// forward is dual stack; `forward_443` replaces the HTTPS forward's
    /// `to` line.
    fn dual_stack_model(forward_443: &str) -> Model {
        let text = include_str!("../../../../blueprints/waddle.toml")
            .replacen("to = \"haproxy:443\"\n", forward_443, 1)
            .replacen(
                "gateway = \"203.0.113.1\"\n",
                "gateway = \"203.0.113.1\"\ncidr6 = \"2001:db8:10::/64\"\nhost_address6 = \"2001:db8:10::10\"\ngateway6 = \"fe80::1\"\n",
                1,
            )
            .replacen(
                "host_address = \"10.10.0.1\"\n",
                "host_address = \"10.10.0.1\"\ncidr6 = \"fd10:1010:1010::/64\"\nhost_address6 = \"fd10:1010:1010::1\"\n",
                1,
            )
            .replacen("address = \"10.10.0.3\" }", "address = \"10.10.0.3\", address6 = \"fd10:1010:1010::3\" }", 1)
            .replacen("address = \"10.10.0.2\" }", "address = \"10.10.0.2\", address6 = \"fd10:1010:1010::2\" }", 1);
        let source = SourceFile {
            name: "waddle.toml".into(),
            text,
        };
        let today = Date {
            year: 2000,
            month: 1,
            day: 1,
        };
        crate::check(&source, today)
            .expect("the dual-stack blueprint")
            .model
    }

    /// With the edge reachable over IPv6, every name the platform
    /// publishes gets an AAAA record beside its A record, and the
    /// Gateway's target annotation names both addresses.
    #[test]
    fn a_dual_stack_edge_publishes_aaaa_records_beside_the_a_records() {
        let model = dual_stack_model("to = \"haproxy:443\"\n");
        let platform = model.platform.as_ref().expect("a platform");
        assert_eq!(
            platform.public_address6,
            Some("2001:db8:10::10".parse().unwrap())
        );
        let records = infrastructure::external_dns_records(&model, platform);
        let endpoints = &records.files[0].1[0]["spec"]["endpoints"];
        let pairs: Vec<(String, String, String)> = endpoints
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["dnsName"].as_str().unwrap().to_string(),
                    e["recordType"].as_str().unwrap().to_string(),
                    e["targets"][0].as_str().unwrap().to_string(),
                )
            })
            .collect();
        for name in [
            "teleport.waddle.social",
            "proxmox.waddle.social",
            "*.teleport.waddle.social",
        ] {
            for (kind, target) in [("A", "203.0.113.10"), ("AAAA", "2001:db8:10::10")] {
                assert!(
                    pairs.contains(&(name.into(), kind.into(), target.into())),
                    "{name} {kind} {target} in {pairs:?}"
                );
            }
        }
        let gateway = infrastructure::cilium_gateway(platform);
        let annotation = &gateway
            .files
            .iter()
            .flat_map(|(_, objects)| objects)
            .find(|o| o["kind"] == "Gateway")
            .unwrap()["metadata"]["annotations"]["external-dns.alpha.kubernetes.io/target"];
        assert_eq!(annotation, "203.0.113.10,2001:db8:10::10");
    }

    /// A forward that keeps the edge's HTTPS port IPv4 only publishes no
    /// AAAA record: it would send IPv6 clients nowhere.
    #[test]
    fn no_aaaa_record_without_an_ipv6_path_to_the_edge() {
        let model = dual_stack_model("to = \"haproxy:443\"\nipv6 = false\n");
        let platform = model.platform.as_ref().expect("a platform");
        assert_eq!(platform.public_address6, None);
        let records = infrastructure::external_dns_records(&model, platform);
        let endpoints = records.files[0].1[0]["spec"]["endpoints"]
            .as_array()
            .unwrap()
            .clone();
        assert!(!endpoints.is_empty());
        assert!(
            endpoints.iter().all(|e| e["recordType"] == "A"),
            "{endpoints:?}"
        );
    }
}
