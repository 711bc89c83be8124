//! The platform's shared infrastructure, one function per component: what
//! it installs, pinned, and what it needs before it can work (the edges of
//! the dependency graph, each with its reason).

use serde_json::{json, Value};

use super::graph::Need;
use super::objects::{
    external_secret, helm_release, helm_repository, namespace, object, Field, STORE,
};
use super::Component;
use crate::blueprint::TsigAlgorithm;
use crate::model::{DnsProvider, Model, OnePasswordConnect, Platform, PlatformVersions, SniHost};
use crate::render::k8s::Metadata;

pub const CERT_MANAGER_NS: &str = "cert-manager";
pub const CLUSTER_ISSUER: &str = "letsencrypt";
pub const CNPG_NS: &str = "cnpg-system";
pub const EXTERNAL_DNS_NS: &str = "external-dns";
pub const GATEWAY_NS: &str = "gateway";
/// The Secret ESO's ClusterSecretStore reads Connect's token from, and the
/// Secret Connect's chart mounts: both applied by `cluster bootstrap`.
use crate::render::cluster::bootstrap_secrets::{CONNECT_CREDENTIALS, CONNECT_TOKEN};

fn need(to: &'static str, why: &'static str) -> Need {
    Need { to, why }
}

pub fn external_secrets(versions: &PlatformVersions) -> Component {
    let ns = "external-secrets";
    Component::new(
        "external-secrets",
        "infrastructure/external-secrets",
        vec![],
    )
    .file("namespace.yaml", vec![namespace(ns, false)])
    .file(
        "release.yaml",
        vec![
            helm_repository(ns, "external-secrets", "https://charts.external-secrets.io"),
            // The chart installs its CRDs (installCRDs defaults to true).
            helm_release(
                ns,
                "external-secrets",
                "external-secrets",
                &versions.external_secrets,
                "external-secrets",
                json!({}),
            ),
        ],
    )
}

pub fn onepassword(connect: &OnePasswordConnect, platform: &Platform) -> Component {
    let ns = connect.namespace.as_str();
    let store = object(
        "external-secrets.io/v1",
        "ClusterSecretStore",
        Metadata::cluster(STORE),
        json!({"spec": {"provider": {"onepassword": {
            "connectHost": format!("http://onepassword-connect.{ns}.svc.cluster.local:8080"),
            "vaults": {platform.vault.as_str(): 1},
            "auth": {"secretRef": {"connectTokenSecretRef": {
                "name": CONNECT_TOKEN, "namespace": ns, "key": "token",
            }}},
        }}}}),
    );
    Component::new(
        "onepassword",
        "infrastructure/onepassword",
        vec![need("external-secrets", "the ClusterSecretStore is an External Secrets resource")],
    )
    .file("namespace.yaml", vec![namespace(ns, false)])
    .file(
        "release.yaml",
        vec![
            helm_repository(ns, "1password", "https://1password.github.io/connect-helm-charts"),
            helm_release(
                ns,
                "connect",
                "connect",
                &platform.versions.onepassword_connect,
                "1password",
                // The credentials Secret `cluster bootstrap` applies.
                json!({"connect": {"credentialsName": CONNECT_CREDENTIALS, "credentialsKey": "1password-credentials.json"}}),
            ),
        ],
    )
    .file("cluster-secret-store.yaml", vec![store])
}

pub fn cert_manager(versions: &PlatformVersions) -> Component {
    let ns = CERT_MANAGER_NS;
    let version = format!("v{}", versions.cert_manager.trim_start_matches('v'));
    Component::new("cert-manager", "infrastructure/cert-manager", vec![])
        .file("namespace.yaml", vec![namespace(ns, false)])
        .file(
            "release.yaml",
            vec![
                helm_repository(ns, "jetstack", "https://charts.jetstack.io"),
                // The chart leaves its CRDs out unless asked.
                helm_release(
                    ns,
                    "cert-manager",
                    "cert-manager",
                    &version,
                    "jetstack",
                    json!({"crds": {"enabled": true}}),
                ),
            ],
        )
}

/// The DNS provider's credential as cert-manager and External DNS read
/// it: a Secret made by an ExternalSecret from its 1Password item, the file
/// it is in, and why a component needs the store for it.
struct DnsCredential<'a> {
    file: &'static str,
    secret: &'static str,
    key: &'static str,
    item: &'a str,
    why: &'static str,
}

fn dns_credential(platform: &Platform) -> DnsCredential<'_> {
    match platform.dns {
        DnsProvider::Cloudflare => DnsCredential {
            file: "cloudflare-api-token.yaml",
            secret: "cloudflare-api-token",
            key: "api-token",
            item: &platform.items.cloudflare_token,
            why: "the Cloudflare token comes through the ClusterSecretStore",
        },
        DnsProvider::Rfc2136 { .. } => DnsCredential {
            file: "dns-tsig-key.yaml",
            secret: "dns-tsig-key",
            key: "tsig-secret",
            item: &platform.items.dns_tsig_key,
            why: "the TSIG key's secret comes through the ClusterSecretStore",
        },
    }
}

/// The credential's ExternalSecret in `namespace`.
fn dns_secret(credential: &DnsCredential<'_>, namespace: &str) -> Value {
    external_secret(
        namespace,
        credential.secret,
        &[Field {
            secret_key: credential.key,
            item: credential.item,
            property: "credential",
        }],
        None,
    )
}

/// cert-manager's DNS-01 solver for the provider (`ACMEChallengeSolverDNS01`
/// in cert-manager's API: `cloudflare`, or `rfc2136` with the nameserver as
/// `host:port`, IPv6 in brackets, and the TSIG algorithm in its spelling).
fn dns01_solver(platform: &Platform, credential: &DnsCredential<'_>) -> Value {
    let secret = json!({"name": credential.secret, "key": credential.key});
    match &platform.dns {
        DnsProvider::Cloudflare => json!({"cloudflare": {"apiTokenSecretRef": secret}}),
        DnsProvider::Rfc2136 {
            server,
            tsig_key,
            algorithm,
        } => json!({"rfc2136": {
            "nameserver": server.to_string(),
            "tsigKeyName": tsig_key,
            "tsigAlgorithm": match algorithm {
                TsigAlgorithm::HmacSha256 => "HMACSHA256",
                TsigAlgorithm::HmacSha512 => "HMACSHA512",
            },
            "tsigSecretSecretRef": secret,
        }}),
    }
}

pub fn cert_manager_config(model: &Model, platform: &Platform) -> Component {
    let domain = &model.project.domain;
    let credential = dns_credential(platform);
    let issuer = object(
        "cert-manager.io/v1",
        "ClusterIssuer",
        Metadata::cluster(CLUSTER_ISSUER),
        json!({"spec": {"acme": {
            "server": "https://acme-v02.api.letsencrypt.org/directory",
            "email": model.operator.email,
            "privateKeySecretRef": {"name": format!("{CLUSTER_ISSUER}-account")},
            "solvers": [{
                "selector": {"dnsZones": [domain]},
                "dns01": dns01_solver(platform, &credential),
            }],
        }}}),
    );
    Component::new(
        "cert-manager-config",
        "infrastructure/cert-manager-config",
        vec![
            need("cert-manager", "ClusterIssuer is a cert-manager resource"),
            need("onepassword", credential.why),
        ],
    )
    // A ClusterIssuer reads its secrets in cert-manager's own namespace
    // (the cluster resource namespace).
    .file(
        credential.file,
        vec![dns_secret(&credential, CERT_MANAGER_NS)],
    )
    .file("cluster-issuer.yaml", vec![issuer])
}

/// External DNS's provider settings: the chart's `provider.name`, the
/// credential as an environment variable, and for RFC 2136 its flags
/// (external-dns `pkg/apis/externaldns/types.go` at chart 1.20.0: every
/// flag also reads `EXTERNAL_DNS_<FLAG>`, `app.DefaultEnvars()`, which
/// keeps the TSIG secret off the command line; `--rfc2136-tsig-axfr`: the
/// zone is listed by a TSIG-signed transfer).
fn external_dns_provider(model: &Model, platform: &Platform, values: &mut Value) {
    let credential = dns_credential(platform);
    let from_secret = json!({"secretKeyRef": {"name": credential.secret, "key": credential.key}});
    match &platform.dns {
        DnsProvider::Cloudflare => {
            values["provider"] = json!({"name": "cloudflare"});
            values["env"] = json!([{"name": "CF_API_TOKEN", "valueFrom": from_secret}]);
        }
        DnsProvider::Rfc2136 {
            server,
            tsig_key,
            algorithm,
        } => {
            values["provider"] = json!({"name": "rfc2136"});
            values["env"] =
                json!([{"name": "EXTERNAL_DNS_RFC2136_TSIG_SECRET", "valueFrom": from_secret}]);
            let algorithm = match algorithm {
                TsigAlgorithm::HmacSha256 => "hmac-sha256",
                TsigAlgorithm::HmacSha512 => "hmac-sha512",
            };
            values["extraArgs"] = json!([
                format!("--rfc2136-host={}", server.ip()),
                format!("--rfc2136-port={}", server.port()),
                format!("--rfc2136-zone={}", model.project.domain),
                format!("--rfc2136-tsig-keyname={tsig_key}"),
                format!("--rfc2136-tsig-secret-alg={algorithm}"),
                "--rfc2136-tsig-axfr",
            ]);
        }
    }
}

pub fn external_dns(model: &Model, platform: &Platform) -> Component {
    let ns = EXTERNAL_DNS_NS;
    let credential = dns_credential(platform);
    let mut values = json!({
        // `crd`: the management names, as `external-dns-records` lists them.
        "sources": ["gateway-httproute", "gateway-grpcroute", "crd"],
        "domainFilters": [model.project.domain],
        // Records it did not create are never touched or deleted.
        "policy": "upsert-only",
        "txtOwnerId": model.talos.as_ref().map(|t| t.name.clone()),
    });
    external_dns_provider(model, platform, &mut values);
    Component::new(
        "external-dns",
        "infrastructure/external-dns",
        vec![need("onepassword", credential.why)],
    )
    .file("namespace.yaml", vec![namespace(ns, false)])
    .file(credential.file, vec![dns_secret(&credential, ns)])
    .file(
        "release.yaml",
        vec![
            helm_repository(
                ns,
                "external-dns",
                "https://kubernetes-sigs.github.io/external-dns/",
            ),
            release_with_crds(helm_release(
                ns,
                "external-dns",
                "external-dns",
                &platform.versions.external_dns,
                "external-dns",
                values,
            )),
        ],
    )
}

/// The chart's `crds/` (External DNS's `DNSEndpoint`) installed with the
/// release and on every upgrade too: helm-controller skips a chart's CRDs
/// on upgrade unless told, so a release installed before the chart had them
/// would never get them.
fn release_with_crds(mut release: Value) -> Value {
    release["spec"]["install"]["crds"] = json!("Create");
    release["spec"]["upgrade"]["crds"] = json!("CreateReplace");
    release
}

/// Every name the edge routes that the Gateway's routes do not publish
/// (External DNS's gateway sources publish the names routes attach under a
/// wildcard the Gateway serves): Teleport's `teleport.`, `proxmox.`, its
/// apps' wildcard… Each an A record at the host's public address (and an
/// AAAA record at its IPv6 one when the edge is reachable over IPv6), which
/// External DNS keeps (its CRD source), so none is made by hand.
pub fn external_dns_records(model: &Model, platform: &Platform) -> Component {
    let hosts: Vec<String> = model
        .edge
        .iter()
        .flat_map(|edge| &edge.routes)
        .filter_map(|route| match &route.host {
            SniHost::Wildcard { .. } if route.backend.name == platform.gateway.name => None,
            SniHost::Wildcard { suffix } => Some(format!("*{suffix}")),
            SniHost::Exact(host) => Some(host.clone()),
        })
        .collect();
    let endpoints: Vec<Value> = hosts
        .iter()
        .flat_map(|host| {
            let aaaa = platform.public_address6.map(|address6| {
                json!({
                    "dnsName": host,
                    "recordType": "AAAA",
                    "targets": [address6.to_string()],
                })
            });
            std::iter::once(json!({
                "dnsName": host,
                "recordType": "A",
                "targets": [platform.public_address.to_string()],
            }))
            .chain(aaaa)
        })
        .collect();
    Component::new(
        "external-dns-records",
        "infrastructure/external-dns-records",
        vec![need(
            "external-dns",
            "DNSEndpoint is External DNS's CRD, installed by its chart",
        )],
    )
    .file(
        "edge-hosts.yaml",
        vec![object(
            "externaldns.k8s.io/v1alpha1",
            "DNSEndpoint",
            Metadata::namespaced(EXTERNAL_DNS_NS, "edge-hosts"),
            json!({"spec": {"endpoints": endpoints}}),
        )],
    )
}

pub fn cloudnative_pg(versions: &PlatformVersions) -> Component {
    let ns = CNPG_NS;
    let mut plugin = helm_release(
        ns,
        "plugin-barman-cloud",
        "plugin-barman-cloud",
        &versions.barman_cloud_plugin_chart,
        "cnpg",
        json!({}),
    );
    // The plugin registers with a running operator.
    plugin["spec"]["dependsOn"] = json!([{"name": "cloudnative-pg"}]);
    Component::new(
        "cloudnative-pg",
        "infrastructure/cloudnative-pg",
        vec![need(
            "cert-manager",
            "the Barman Cloud plugin's TLS certificates are cert-manager Certificates",
        )],
    )
    .file("namespace.yaml", vec![namespace(ns, false)])
    .file(
        "release.yaml",
        vec![
            helm_repository(ns, "cnpg", "https://cloudnative-pg.github.io/charts"),
            helm_release(
                ns,
                "cloudnative-pg",
                "cloudnative-pg",
                &versions.cloudnative_pg_chart,
                "cnpg",
                json!({}),
            ),
            plugin,
        ],
    )
}

pub fn spicedb_operator(versions: &PlatformVersions) -> Component {
    let tag = format!("v{}", versions.spicedb_operator.trim_start_matches('v'));
    // No chart upstream: the release's manifests are `kustomize build
    // config` of the tagged repository, which Flux builds itself.
    let source = object(
        "source.toolkit.fluxcd.io/v1",
        "GitRepository",
        Metadata::namespaced(crate::render::cluster::flux::NAMESPACE, "spicedb-operator"),
        json!({"spec": {
            "interval": "1h",
            "url": "https://github.com/authzed/spicedb-operator",
            "ref": {"tag": tag.clone()},
        }}),
    );
    // Its `config/` names the image `latest`; only the release workflow
    // pins the tag (in a copy it builds bundle.yaml from). Pin it here.
    Component::new(
        "spicedb-operator",
        "infrastructure/spicedb-operator",
        vec![],
    )
    .read_from(source, "spicedb-operator", "./config")
    .pin_image("ghcr.io/authzed/spicedb-operator", tag)
}

/// The democratic-csi driver config, with the SSH key and the CHAP
/// credentials left to the ExternalSecret's template. JSON is YAML, and
/// ESO's `toJson` quotes the multi-line key correctly inside it.
///
/// Least privilege, as the host setup arranges it: the driver logs in as
/// its own user, whose key runs only the forced command `waddlec-csi-gate`;
/// zfs runs unprivileged under ZFS delegation (no sudo), targetcli through
/// the gate, which adds sudo itself (so the driver's own `sudoEnabled` stay
/// off). Every target demands CHAP (`authentication: 1`; democratic-csi
/// v1.9.4 cannot write per-initiator ACLs, so `generate_node_acls` stays 1
/// and CHAP is the gate), and the nodes present it from the node-stage
/// Secret. Each target's only portal is the host's address on the nodes'
/// bridge (the forced command adds it); the host firewall admits 3260 there
/// from the nodes only.
fn csi_driver_config(platform: &Platform) -> String {
    const KEY: &str = "__SSH_PRIVATE_KEY__";
    const CHAP_USER: &str = "__CHAP_USERNAME__";
    const CHAP_PASSWORD: &str = "__CHAP_PASSWORD__";
    let config = json!({
        "driver": "zfs-generic-iscsi",
        "sshConnection": {
            "host": platform.storage_host.to_string(),
            "port": 22,
            "username": crate::render::host_setup::CSI_USER,
            "privateKey": KEY,
        },
        "zfs": {
            "cli": {"sudoEnabled": false, "paths": {"zfs": "/usr/sbin/zfs"}},
            "datasetParentName": format!("{}/vols", platform.dataset),
            "detachedSnapshotsDatasetParentName": format!("{}/snaps", platform.dataset),
            "zvolCompression": "",
            "zvolDedup": "",
            "zvolEnableReservation": false,
            "zvolBlocksize": "",
        },
        "iscsi": {
            "shareStrategy": "targetCli",
            "shareStrategyTargetCli": {
                "sudoEnabled": false,
                "basename": crate::render::host_setup::CSI_IQN_BASENAME,
                "tpg": {
                    "attributes": {"authentication": 1, "generate_node_acls": 1, "cache_dynamic_acls": 1, "demo_mode_write_protect": 0},
                    "auth": {"userid": CHAP_USER, "password": CHAP_PASSWORD},
                },
                "block": {"attributes": {"emulate_tpu": 0}},
            },
            "targetPortal": format!("{}:3260", platform.storage_host),
            "targetPortals": [],
            "interface": "",
            "namePrefix": "",
            "nameSuffix": "",
        },
    });
    serde_json::to_string_pretty(&config)
        .expect("plain data serialises")
        .replace(&format!("\"{KEY}\""), "{{ .privateKey | toJson }}")
        .replace(&format!("\"{CHAP_USER}\""), "{{ .chapUsername | toJson }}")
        .replace(
            &format!("\"{CHAP_PASSWORD}\""),
            "{{ .chapPassword | toJson }}",
        )
}

/// The node-stage Secret: what each node's iscsiadm sets on its session
/// record before logging in (democratic-csi `src/driver/index.js`,
/// NodeStageVolume: every `node-db.` key, prefix stripped, goes to
/// `iscsiadm -o update`).
const CSI_NODE_STAGE_SECRET: &str = "democratic-csi-node-stage";

pub fn democratic_csi(model: &Model, platform: &Platform) -> Component {
    let ns = "democratic-csi";
    let image =
        |tag: &str| json!({"registry": "ghcr.io/democratic-csi/democratic-csi", "tag": tag});
    let tag = &platform.versions.democratic_csi_image;
    let values = json!({
        "csiDriver": {"name": "org.democratic-csi.iscsi"},
        "storageClasses": [{
            "name": platform.storage_class,
            "defaultClass": true,
            "reclaimPolicy": "Delete",
            "volumeBindingMode": "Immediate",
            "allowVolumeExpansion": true,
            "parameters": {
                "fsType": "ext4",
                "csi.storage.k8s.io/node-stage-secret-name": CSI_NODE_STAGE_SECRET,
                "csi.storage.k8s.io/node-stage-secret-namespace": ns,
            },
        }],
        "driver": {
            "existingConfigSecret": "democratic-csi-driver-config",
            // Still required with an existing secret: the chart reads it.
            "config": {"driver": "zfs-generic-iscsi"},
        },
        "controller": {"driver": {"image": image(tag)}},
        "node": {
            // Talos: iscsiadm runs in iscsid's namespaces through nsenter,
            // which needs the host's PIDs; /etc is read-only, /var is not.
            "hostPID": true,
            "driver": {
                "image": image(tag),
                "extraEnv": [
                    {"name": "ISCSIADM_HOST_STRATEGY", "value": "nsenter"},
                    {"name": "ISCSIADM_HOST_PATH", "value": "/usr/local/sbin/iscsiadm"},
                ],
                "iscsiDirHostPath": "/var/iscsi",
                "iscsiDirHostPathType": "DirectoryOrCreate",
            },
        },
    });
    let chap = |secret_key| Field {
        secret_key,
        item: &platform.items.iscsi_chap,
        property: if secret_key == "chapUsername" {
            "username"
        } else {
            "password"
        },
    };
    let driver_config = external_secret(
        ns,
        "democratic-csi-driver-config",
        &[
            Field {
                secret_key: "privateKey",
                item: &platform.items.csi_ssh_key,
                property: "private key",
            },
            chap("chapUsername"),
            chap("chapPassword"),
        ],
        Some(json!({"data": {"driver-config-file.yaml": csi_driver_config(platform)}})),
    );
    let node_stage = external_secret(
        ns,
        CSI_NODE_STAGE_SECRET,
        &[chap("chapUsername"), chap("chapPassword")],
        Some(json!({"data": {
            "node-db.node.session.auth.authmethod": "CHAP",
            "node-db.node.session.auth.username": "{{ .chapUsername }}",
            "node-db.node.session.auth.password": "{{ .chapPassword }}",
        }})),
    );
    Component::new(
        "democratic-csi",
        "infrastructure/democratic-csi",
        vec![need(
            "onepassword",
            "the driver's SSH key and the iSCSI CHAP credentials come through the ClusterSecretStore",
        )],
    )
    .file("namespace.yaml", vec![namespace(ns, true)])
    .file("driver-config.yaml", vec![driver_config, node_stage])
    .file("network-policy.yaml", vec![csi_host_policy(model, ns)])
    .file(
        "release.yaml",
        vec![
            helm_repository(
                ns,
                "democratic-csi",
                "https://democratic-csi.github.io/charts/",
            ),
            helm_release(
                ns,
                "democratic-csi",
                "democratic-csi",
                &platform.versions.democratic_csi,
                "democratic-csi",
                values,
            ),
        ],
    )
}

/// Only democratic-csi's controller may reach the host from a pod: every
/// other pod is denied every address of the host (SSH, iSCSI, the API),
/// since the host sees pod traffic masqueraded as the node's address and
/// its firewall cannot tell pods apart. `enableDefaultDeny` off, so the
/// policy adds this one denial and puts no pod into default-deny. The
/// driver's node pods use the host network, which Cilium endpoint policies
/// do not cover (nor need to: iSCSI from the node is theirs).
fn csi_host_policy(model: &Model, csi_namespace: &str) -> Value {
    let host: Vec<String> = model
        .proxmox
        .hosts
        .iter()
        .flat_map(|host| host.bridges.iter())
        .map(|bridge| format!("{}/32", bridge.host_address))
        .collect();
    object(
        "cilium.io/v2",
        "CiliumClusterwideNetworkPolicy",
        Metadata::cluster("deny-pods-to-the-storage-host"),
        json!({"spec": {
            "endpointSelector": {"matchExpressions": [{
                "key": "k8s:io.kubernetes.pod.namespace",
                "operator": "NotIn",
                "values": [csi_namespace],
            }]},
            "enableDefaultDeny": {"ingress": false, "egress": false},
            "egressDeny": [{"toCIDR": host}],
        }}),
    )
}

/// Cilium after bootstrap: the release the installer Job made (`cilium` in
/// `kube-system`), from the same chart version with the same values (the
/// model's, which the Job's ConfigMap carries too), so a changed
/// `[talos.cilium] values` or `versions.cilium` reaches a running cluster.
/// helm-controller finds a release of that name in its storage namespace
/// that no HelmRelease has recorded, calls it unmanaged and upgrades it in
/// place rather than installing a second one (fluxcd/helm-controller
/// `internal/reconcile/state.go`, `DetermineReleaseState`:
/// `ReleaseStatusUnmanaged`, "found existing release in storage";
/// `atomic_release.go`: an unmanaged release gets `NewUpgrade`). Never
/// pruned: a HelmRelease Flux deletes uninstalls its release, and this one
/// is the cluster's network.
pub fn cilium(model: &Model) -> Option<Component> {
    use crate::render::cluster::cilium::{RELEASE_NAME, RELEASE_NAMESPACE};
    use crate::render::cluster::upstream::CILIUM_HELM_REPOSITORY;
    let cilium = model.cilium.as_ref()?;
    let mut release = helm_release(
        RELEASE_NAMESPACE,
        RELEASE_NAME,
        "cilium",
        &cilium.version,
        "cilium",
        cilium.values.clone(),
    );
    release["metadata"]["annotations"] = json!({"kustomize.toolkit.fluxcd.io/prune": "disabled"});
    release["spec"]["releaseName"] = json!(RELEASE_NAME);
    release["spec"]["storageNamespace"] = json!(RELEASE_NAMESPACE);
    Some(
        Component::new("cilium", "infrastructure/cilium", vec![]).file(
            "release.yaml",
            vec![
                helm_repository(RELEASE_NAMESPACE, "cilium", CILIUM_HELM_REPOSITORY),
                release,
            ],
        ),
    )
}

/// The VIPs' L2 announcements, as the machine configs carry them for day 0:
/// here Flux keeps them current (Talos only ever creates them once).
pub fn cilium_config(model: &Model) -> Component {
    Component::new("cilium-config", "infrastructure/cilium-config", vec![]).file(
        "l2-announcements.yaml",
        crate::render::cluster::cilium::l2_announcements(model),
    )
}

/// The listener and certificate Secret of the `index`th TLS host.
pub fn https_listener(index: usize) -> String {
    if index == 0 {
        "https".into()
    } else {
        format!("https-{}", index + 1)
    }
}

/// `*.apps.example.org` → `wildcard-apps-example-org`.
fn certificate_name(host: &str) -> String {
    host.replace("*.", "wildcard.").replace('.', "-")
}

pub fn cilium_gateway(platform: &Platform) -> Component {
    let gateway = &platform.gateway;
    let mut metadata = Metadata::namespaced(GATEWAY_NS, &gateway.name);
    // External DNS would publish the VIP (private); the world reaches the
    // Gateway through the host's public address and the edge. The
    // annotation takes a comma-separated list, an IPv6 address published
    // as AAAA (External DNS's annotations reference).
    let targets: Vec<String> = std::iter::once(platform.public_address.to_string())
        .chain(platform.public_address6.map(|a| a.to_string()))
        .collect();
    metadata.annotations.insert(
        "external-dns.alpha.kubernetes.io/target".into(),
        targets.join(","),
    );
    let all = json!({"namespaces": {"from": "All"}});
    let mut listeners = Vec::new();
    if let Some(port) = gateway.http_port {
        // Plain HTTP only redirects: routes of other namespaces (apps) may
        // attach to the TLS listeners alone, never be served in clear.
        listeners.push(json!({
            "name": "http", "protocol": "HTTP", "port": port,
            "allowedRoutes": {"namespaces": {"from": "Same"}},
        }));
    }
    let mut certificates = Vec::new();
    for (index, (host, port)) in gateway.https.iter().enumerate() {
        let name = certificate_name(host);
        listeners.push(json!({
            "name": https_listener(index), "protocol": "HTTPS", "port": port, "hostname": host,
            "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": format!("{name}-tls")}]},
            "allowedRoutes": all,
        }));
        certificates.push(object(
            "cert-manager.io/v1",
            "Certificate",
            Metadata::namespaced(GATEWAY_NS, &name),
            json!({"spec": {
                "secretName": format!("{name}-tls"),
                "dnsNames": [host],
                "issuerRef": {"group": "cert-manager.io", "kind": "ClusterIssuer", "name": CLUSTER_ISSUER},
                "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            }}),
        ));
    }
    let mut documents = vec![object(
        "gateway.networking.k8s.io/v1",
        "Gateway",
        metadata,
        json!({"spec": {
            "gatewayClassName": "cilium",
            "addresses": [{"type": "IPAddress", "value": gateway.address.to_string()}],
            "listeners": listeners,
        }}),
    )];
    if gateway.http_port.is_some() {
        documents.push(object(
            "gateway.networking.k8s.io/v1",
            "HTTPRoute",
            Metadata::namespaced(GATEWAY_NS, "https-redirect"),
            json!({"spec": {
                "parentRefs": [{"name": gateway.name, "sectionName": "http"}],
                "rules": [{"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 301}}]}],
            }}),
        ));
    }
    Component::new(
        "cilium-gateway",
        "infrastructure/cilium-gateway",
        vec![
            need(
                "cert-manager-config",
                "the Gateway's Certificates are issued by the ClusterIssuer",
            ),
            need(
                "cilium-config",
                "the Gateway's address comes from its VIP's pool and is announced by its L2 policy",
            ),
        ],
    )
    .file("namespace.yaml", vec![namespace(GATEWAY_NS, false)])
    .file("gateway.yaml", documents)
    .file("certificates.yaml", certificates)
}
