//! Teleport 18 (Community): `teleport.yaml` (config `version: v3`) and the
//! dynamic resources the auth service needs — one role per blueprint role
//! (`kind: role`, `version: v7`), the GitHub connector (`kind: github`,
//! `version: v3`) and the Proxmox host as an agentless node
//! (`teleport_node`) — in one multi-document `resources.yaml`.
//!
//! Teleport parses its config strictly: every key here is one its
//! `lib/config/fileconf.go` defines (the tests hold the list). The seed's
//! troubleshooting shaped the rest: the proxy listens separately for web
//! (behind the edge, which passes TLS through by SNI), SSH and the reverse
//! tunnel (without `tunnel_listen_addr` apps cannot register: "Unable to
//! serve application requests"); ACME (TLS-ALPN-01 through the edge) issues
//! the certificates; team slugs are matched exactly.
//!
//! `resources.yaml` is applied by the image's `teleport-resources` unit
//! (`tctl create -f`) after Teleport starts.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{RenderError, Templates};
use crate::artifact::Artifact;
use crate::model::{Model, Teleport, TeleportGithub, Vm};
use crate::plan::images::Role;
use crate::secrets::{Secret, SecretValues};
use crate::yaml::{self, YamlError};

pub const CONFIG_PATH: &str = "/etc/teleport.yaml";
pub const RESOURCES_PATH: &str = "/etc/teleport/resources.yaml";
/// The config without Kubernetes access, started until the kubeconfig
/// exists.
const WITHOUT_KUBERNETES_PATH: &str = "/etc/teleport/without-kubernetes.yaml";
/// Also where the kubeconfig the blueprint names must be (E0129).
const DATA_DIR: &str = crate::model::checked::TELEPORT_DATA_DIR;
/// The auth service serves this host's own proxy and agents only.
const AUTH_LISTEN: &str = "127.0.0.1:3025";
/// The label every app carries, granted by name in roles.
const APP_LABEL: &str = "app";
/// The label the Kubernetes cluster carries, granted by name in roles.
const KUBE_LABEL: &str = "cluster";
/// Kubernetes group a role's users act as.
const KUBE_GROUP: &str = "system:masters";
pub const CONNECTOR: &str = "github";

/// The systemd units of the image, enabled in it.
const UNITS: &[&str] = &["teleport.service", "teleport-resources.service"];

/// What the Teleport VM's image needs: the release's binaries and the units
/// that run them.
pub fn role(model: &Model, vm: &Vm) -> Role {
    match &model.teleport {
        Some(teleport) if teleport.vm == vm.name => Role {
            teleport: Some(teleport.version.clone()),
            after_cloud_init: vec!["teleport.service"],
            enable: UNITS.to_vec(),
            ..Role::default()
        },
        _ => Role::default(),
    }
}

/// `teleport.service` and `teleport-resources.service`, baked into the image.
pub fn units(templates: &Templates, model: &Model) -> Result<Vec<Artifact>, RenderError> {
    let Some(teleport) = &model.teleport else {
        return Ok(Vec::new());
    };
    #[derive(Serialize)]
    struct Data<'a> {
        project: &'a str,
        version: &'a str,
        resources: &'static str,
        config: &'static str,
        /// With Kubernetes access: the kubeconfig whose presence decides
        /// between the two configs.
        kubeconfig: Option<&'a str>,
        without_kubernetes: &'static str,
        /// The host's node keys, made after the resources are applied.
        node_keys: Option<&'static str>,
    }
    let data = Data {
        project: &model.project.name,
        version: &teleport.version,
        resources: RESOURCES_PATH,
        config: CONFIG_PATH,
        kubeconfig: teleport.kubernetes.as_ref().map(|k| k.kubeconfig.as_str()),
        without_kubernetes: WITHOUT_KUBERNETES_PATH,
        node_keys: super::teleport_node::node_keys_command(model),
    };
    let dir = format!("vms/{}", teleport.vm);
    let unit = |template: &'static str, guest: &'static str| -> Result<Artifact, RenderError> {
        Ok(Artifact::file(
            format!("{dir}/{template}"),
            "systemd-unit",
            templates.render(template, &data)?,
        )
        .for_guest(&teleport.vm, guest, 0o644))
    };
    Ok(vec![
        unit("teleport.service", "/etc/systemd/system/teleport.service")?,
        unit(
            "teleport-resources.service",
            "/etc/systemd/system/teleport-resources.service",
        )?,
    ])
}

pub fn render(model: &Model, secrets: &SecretValues) -> Result<Vec<Artifact>, YamlError> {
    let Some(teleport) = &model.teleport else {
        return Ok(Vec::new());
    };
    let full = yaml::document(&config(model, teleport, true))?;
    let mut resources: Vec<String> = teleport
        .roles
        .iter()
        .map(|role| yaml::document(&role_resource(model, teleport, &role.name, &role.logins)))
        .collect::<Result<_, _>>()?;
    // SecretValues hold the client secret exactly when there is a GitHub
    // connector.
    if let (Some(github), Some(client_secret)) = (&teleport.github, &secrets.github_client_secret) {
        resources.push(yaml::document(&connector(teleport, github, client_secret))?);
    }
    for node in super::teleport_node::resources(model) {
        resources.push(yaml::document(&node)?);
    }
    let dir = format!("vms/{}", teleport.vm);
    let mut artifacts = Vec::new();
    if teleport.kubernetes.is_some() {
        // Teleport refuses to start while its kubeconfig_file is missing,
        // and the kubeconfig exists only once the cluster does (`waddlec
        // cluster bootstrap` installs it): until then the unit starts this
        // config, so SSH and apps never wait for the cluster.
        artifacts.push(
            Artifact::file(
                format!("{dir}/teleport-without-kubernetes.yaml"),
                "teleport-config",
                yaml::document(&config(model, teleport, false))?,
            )
            .for_guest(&teleport.vm, WITHOUT_KUBERNETES_PATH, 0o600),
        );
    }
    artifacts.extend([
        Artifact::file(format!("{dir}/teleport.yaml"), "teleport-config", full).for_guest(
            &teleport.vm,
            CONFIG_PATH,
            0o600,
        ),
        Artifact::file(
            format!("{dir}/teleport-resources.yaml"),
            "teleport-resources",
            yaml::stream(&resources),
        )
        .for_guest(&teleport.vm, RESOURCES_PATH, 0o600)
        .secret(),
    ]);
    Ok(artifacts)
}

#[derive(Serialize)]
struct Config<'a> {
    version: &'static str,
    teleport: Global<'a>,
    auth_service: AuthService<'a>,
    ssh_service: Enabled,
    proxy_service: ProxyService<'a>,
    app_service: AppService<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kubernetes_service: Option<KubernetesService<'a>>,
}

#[derive(Serialize)]
struct Global<'a> {
    nodename: &'a str,
    data_dir: &'static str,
    log: Log,
}

#[derive(Serialize)]
struct Log {
    output: &'static str,
    severity: &'static str,
}

#[derive(Serialize)]
struct AuthService<'a> {
    enabled: bool,
    listen_addr: &'static str,
    cluster_name: &'a str,
    proxy_listener_mode: &'static str,
    authentication: Authentication,
}

#[derive(Serialize)]
struct Authentication {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    connector_name: Option<&'static str>,
}

#[derive(Serialize)]
struct Enabled {
    enabled: bool,
}

#[derive(Serialize)]
struct ProxyService<'a> {
    enabled: bool,
    web_listen_addr: String,
    tunnel_listen_addr: String,
    listen_addr: String,
    public_addr: String,
    ssh_public_addr: String,
    tunnel_public_addr: String,
    /// With Kubernetes access: `separate` listener mode serves it apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    kube_listen_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    kube_public_addr: Option<String>,
    acme: Acme<'a>,
}

#[derive(Serialize)]
struct Acme<'a> {
    enabled: bool,
    email: &'a str,
}

#[derive(Serialize)]
struct AppService<'a> {
    enabled: bool,
    apps: Vec<App<'a>>,
}

#[derive(Serialize)]
struct App<'a> {
    name: &'a str,
    uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_addr: Option<&'a str>,
    insecure_skip_verify: bool,
    labels: BTreeMap<&'static str, &'a str>,
}

/// Every app Teleport serves: the blueprint's, then one per Talos node's
/// machine API (apid), reached by operators as a TCP app (`tsh proxy app
/// talos-cp1 --port 50000`, then talosctl against 127.0.0.1): raw TCP, so
/// talosctl's mTLS stays end to end.
fn apps<'a>(model: &'a Model, teleport: &'a Teleport) -> Vec<App<'a>> {
    let mut apps: Vec<App<'a>> = teleport
        .apps
        .iter()
        .map(|app| App {
            name: &app.name,
            uri: app.uri.to_string(),
            public_addr: Some(&app.public_host),
            insecure_skip_verify: app.insecure_skip_verify,
            labels: BTreeMap::from([(APP_LABEL, app.name.as_str())]),
        })
        .collect();
    for node in model.talos_nodes() {
        let address = node.ip();
        apps.push(App {
            name: node.name(),
            uri: format!("tcp://{address}:{}", crate::model::TALOS_API_PORT),
            public_addr: None,
            insecure_skip_verify: false,
            labels: BTreeMap::from([(APP_LABEL, node.name())]),
        });
    }
    apps
}

#[derive(Serialize)]
struct KubernetesService<'a> {
    enabled: bool,
    kubeconfig_file: &'a str,
    labels: BTreeMap<&'static str, &'a str>,
}

/// The config, with or without the `kubernetes_service` (when the
/// blueprint gives Teleport cluster access).
fn config<'a>(model: &'a Model, teleport: &'a Teleport, with_kubernetes: bool) -> Config<'a> {
    let host = &teleport.public_host;
    let kube = teleport.kubernetes.as_ref().filter(|_| with_kubernetes);
    Config {
        version: "v3",
        teleport: Global {
            nodename: &teleport.vm,
            data_dir: DATA_DIR,
            log: Log {
                output: "stderr",
                severity: "INFO",
            },
        },
        auth_service: AuthService {
            enabled: true,
            listen_addr: AUTH_LISTEN,
            cluster_name: host,
            proxy_listener_mode: "separate",
            // GitHub SSO when the blueprint has the connector, else local
            // users (`tctl users add`) with Teleport's default second factor.
            authentication: match teleport.github {
                Some(_) => Authentication {
                    kind: "github",
                    connector_name: Some(CONNECTOR),
                },
                None => Authentication {
                    kind: "local",
                    connector_name: None,
                },
            },
        },
        ssh_service: Enabled { enabled: true },
        proxy_service: ProxyService {
            enabled: true,
            web_listen_addr: format!("0.0.0.0:{}", teleport.web_port),
            tunnel_listen_addr: format!("0.0.0.0:{}", teleport.tunnel_port),
            listen_addr: format!("0.0.0.0:{}", teleport.ssh_port),
            public_addr: format!("{host}:443"),
            ssh_public_addr: format!("{host}:{}", teleport.ssh_port),
            tunnel_public_addr: format!("{host}:{}", teleport.tunnel_port),
            kube_listen_addr: kube.map(|k| format!("0.0.0.0:{}", k.port)),
            kube_public_addr: kube.map(|k| format!("{host}:{}", k.port)),
            acme: Acme {
                enabled: true,
                email: &model.operator.email,
            },
        },
        app_service: {
            let apps = apps(model, teleport);
            AppService {
                enabled: !apps.is_empty(),
                apps,
            }
        },
        kubernetes_service: teleport
            .kubernetes
            .as_ref()
            .filter(|_| with_kubernetes)
            .map(|kube| KubernetesService {
                enabled: true,
                kubeconfig_file: &kube.kubeconfig,
                labels: BTreeMap::from([(KUBE_LABEL, kube.cluster.as_str())]),
            }),
    }
}

#[derive(Serialize)]
struct Resource<'a, S> {
    kind: &'static str,
    version: &'static str,
    metadata: Metadata<'a>,
    spec: S,
}

#[derive(Serialize)]
struct Metadata<'a> {
    name: &'a str,
}

#[derive(Serialize)]
struct RoleSpec<'a> {
    allow: Allow<'a>,
}

#[derive(Serialize)]
struct Allow<'a> {
    logins: &'a [String],
    node_labels: BTreeMap<&'static str, &'static str>,
    app_labels: BTreeMap<&'static str, Vec<&'a str>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    kubernetes_labels: BTreeMap<&'static str, Vec<&'a str>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    kubernetes_groups: Vec<&'static str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    kubernetes_resources: Vec<KubernetesResource>,
}

#[derive(Serialize)]
struct KubernetesResource {
    kind: &'static str,
    namespace: &'static str,
    name: &'static str,
    verbs: Vec<&'static str>,
}

/// A role granting its logins on every node, each app by name and, with
/// Kubernetes access, the cluster by name: labels are explicit, never `*`
/// for apps or clusters.
fn role_resource<'a>(
    model: &'a Model,
    teleport: &'a Teleport,
    name: &'a str,
    logins: &'a [String],
) -> Resource<'a, RoleSpec<'a>> {
    let kube = teleport.kubernetes.as_ref();
    Resource {
        kind: "role",
        version: "v7",
        metadata: Metadata { name },
        spec: RoleSpec {
            allow: Allow {
                logins,
                node_labels: BTreeMap::from([("*", "*")]),
                app_labels: BTreeMap::from([(
                    APP_LABEL,
                    apps(model, teleport).iter().map(|a| a.name).collect(),
                )]),
                kubernetes_labels: kube
                    .map(|k| BTreeMap::from([(KUBE_LABEL, vec![k.cluster.as_str()])]))
                    .unwrap_or_default(),
                kubernetes_groups: kube.map(|_| vec![KUBE_GROUP]).unwrap_or_default(),
                kubernetes_resources: kube
                    .map(|_| {
                        vec![KubernetesResource {
                            kind: "*",
                            namespace: "*",
                            name: "*",
                            verbs: vec!["*"],
                        }]
                    })
                    .unwrap_or_default(),
            },
        },
    }
}

#[derive(Serialize)]
struct ConnectorSpec<'a> {
    client_id: &'a str,
    client_secret: &'a Secret,
    display: &'static str,
    redirect_url: String,
    teams_to_roles: Vec<TeamToRoles<'a>>,
}

#[derive(Serialize)]
struct TeamToRoles<'a> {
    organization: &'a str,
    team: &'a str,
    roles: &'a [String],
}

fn connector<'a>(
    teleport: &'a Teleport,
    github: &'a TeleportGithub,
    client_secret: &'a Secret,
) -> Resource<'a, ConnectorSpec<'a>> {
    Resource {
        kind: "github",
        version: "v3",
        metadata: Metadata { name: CONNECTOR },
        spec: ConnectorSpec {
            client_id: &github.client_id,
            client_secret,
            display: "GitHub",
            redirect_url: format!("https://{}/v1/webapi/github/callback", teleport.public_host),
            teams_to_roles: github
                .teams_to_roles
                .iter()
                .map(|(team, roles)| TeamToRoles {
                    organization: &github.org,
                    team,
                    roles,
                })
                .collect(),
        },
    }
}
