//! The Kubernetes layer of `waddlec status` (`status::kubernetes::check`)
//! against the stand-in Kubernetes API (`tests/support/kube_api_stand_in.py`
//! with `--state`): TLS with the bundle's Kubernetes CA, the admin client
//! certificate `secrets::kube_admin` issues required and verified, the
//! API's list envelope, 404 and 403 `Status` objects. The cluster's state
//! is the bundled blueprint's, built here with the status shapes the
//! controllers write (each builder cites its source), then broken one way
//! per test. The API down is nothing listening, or a listener that never
//! answers.

use std::fs;
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use time::OffsetDateTime;
use waddlec::blueprint::Date;
use waddlec::checks::{Check, Outcome, Report};
use waddlec::model::Model;
use waddlec::net::kube_api::KubeApi as Client;
use waddlec::secrets::kube_admin::AdminIdentity;
use waddlec::secrets::talos_bundle;
use waddlec::source::SourceFile;
use waddlec::status::kubernetes::check;

use crate::support::apid::pem_text;
use crate::support::kube_api::KubeApi;
use crate::support::{free_addr, repo_root, require};

/// The bundled blueprint's model.
fn model() -> Model {
    let path = repo_root().join("blueprints/waddle.toml");
    let source = SourceFile {
        name: "waddle.toml".into(),
        text: fs::read_to_string(path).unwrap(),
    };
    let today = Date {
        year: 2000,
        month: 1,
        day: 1,
    };
    waddlec::compile(&source, today)
        .map(|c| c.model)
        .unwrap_or_else(|_| panic!("the bundled blueprint compiles"))
}

const REVISION: &str = "refs/heads/main@sha1:5f0c2d4e8a1b";
const SINCE: &str = "2026-12-01T10:00:00Z";

fn meta(namespace: Option<&str>, name: &str) -> Value {
    let mut meta = json!({"name": name, "generation": 1, "uid": format!("uid-{name}")});
    if let Some(namespace) = namespace {
        meta["namespace"] = json!(namespace);
    }
    meta
}

/// A `metav1.Condition`.
fn condition(kind: &str, status: &str, reason: &str, message: &str) -> Value {
    json!({
        "type": kind, "status": status, "reason": reason, "message": message,
        "observedGeneration": 1, "lastTransitionTime": SINCE,
    })
}

/// A Node (core/v1 `NodeStatus`): the kubelet's `Ready` condition, reason
/// `KubeletReady` and message as kubelet's `setters.go` writes them.
fn node(name: &str) -> Value {
    json!({
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {"conditions": [
            {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory",
             "message": "kubelet has sufficient memory available", "lastHeartbeatTime": SINCE, "lastTransitionTime": SINCE},
            {"type": "Ready", "status": "True", "reason": "KubeletReady",
             "message": "kubelet is posting ready status", "lastHeartbeatTime": SINCE, "lastTransitionTime": SINCE},
        ]},
    })
}

/// A healthy object of `kind`, with the status its controller writes.
fn healthy(kind: &str, namespace: Option<&str>, name: &str) -> Value {
    let status = match kind {
        // kustomize-controller v1 (Flux 2.7): `Ready` with
        // `ReconciliationSucceeded` (fluxcd/pkg `apis/meta/conditions.go`).
        "Kustomization" => json!({
            "observedGeneration": 1,
            "lastAppliedRevision": REVISION,
            "lastAttemptedRevision": REVISION,
            "conditions": [condition("Ready", "True", "ReconciliationSucceeded",
                &format!("Applied revision: {REVISION}"))],
        }),
        // helm-controller v2: `Ready` and `Released` with
        // `InstallSucceeded` (`api/v2/condition_types.go`).
        "HelmRelease" => json!({
            "observedGeneration": 1,
            "lastAttemptedRevision": "1.0.0",
            "conditions": [
                condition("Ready", "True", "InstallSucceeded",
                    &format!("Helm install succeeded for release {}/{name}.v1", namespace.unwrap_or(""))),
                condition("Released", "True", "InstallSucceeded", "Helm install succeeded"),
            ],
        }),
        // cert-manager v1.19: `Ready`, reason `Ready`
        // (`pkg/controller/certificates/readiness`).
        "Certificate" => json!({
            "notBefore": SINCE, "notAfter": "2027-03-01T10:00:00Z",
            "renewalTime": "2027-01-30T10:00:00Z", "revision": 1,
            "conditions": [condition("Ready", "True", "Ready",
                "Certificate is up to date and has not expired")],
        }),
        // External Secrets v2.0: `Ready`, reason `SecretSynced`
        // (`apis/externalsecrets/v1/externalsecret_types.go`); its
        // conditions carry no observedGeneration.
        "ExternalSecret" => json!({
            "refreshTime": SINCE,
            "syncedResourceVersion": "1-0f3e",
            "binding": {"name": name},
            "conditions": [{"type": "Ready", "status": "True", "reason": "SecretSynced",
                "message": "secret synced", "lastTransitionTime": SINCE}],
        }),
        // CloudNativePG v1.28.1: `phase` `PhaseHealthy`, `Ready` with
        // `ClusterIsReady` (`api/v1/cluster_types.go`), message as
        // `pkg/resources/status/transactions.go` writes it.
        "Cluster" => json!({
            "instances": 2, "readyInstances": 2,
            "phase": "Cluster in healthy state",
            "currentPrimary": format!("{name}-1"), "targetPrimary": format!("{name}-1"),
            "instancesStatus": {"healthy": [format!("{name}-1"), format!("{name}-2")]},
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "ClusterIsReady",
                 "message": "Cluster is Ready", "lastTransitionTime": SINCE},
                {"type": "ContinuousArchiving", "status": "True", "reason": "ContinuousArchivingSuccess",
                 "message": "Continuous archiving is working", "lastTransitionTime": SINCE},
            ],
        }),
        // SpiceDB operator v1.22.0 `ClusterStatus` (`types.go`): no
        // condition once rolled out, migration hashes equal.
        "SpiceDBCluster" => json!({
            "observedGeneration": 1,
            "targetMigrationHash": "n5d8h9fh",
            "currentMigrationHash": "n5d8h9fh",
            "secretHash": "n66h5c8h",
            "image": "ghcr.io/authzed/spicedb:v1.47.1",
            "migration": "add-expiration-support",
            "version": {"name": "v1.47.1", "channel": "stable"},
        }),
        other => panic!("no healthy shape for {other}"),
    };
    json!({"metadata": meta(namespace, name), "status": status})
}

/// The EndpointSlice of the Service `service` (discovery.k8s.io/v1): one
/// endpoint per pod, `ready` as the readiness probe says.
fn endpoint_slice(namespace: &str, service: &str, ready: &[bool]) -> Value {
    json!({
        "metadata": {
            "name": format!("{service}-x7k2p"), "namespace": namespace, "generation": 1,
            "labels": {"kubernetes.io/service-name": service,
                       "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"},
        },
        "addressType": "IPv4",
        "endpoints": ready.iter().enumerate().map(|(i, ready)| json!({
            "addresses": [format!("10.244.0.{}", 10 + i)],
            "conditions": {"ready": ready, "serving": ready, "terminating": false},
            "targetRef": {"kind": "Pod", "namespace": namespace, "name": format!("{service}-spicedb-{i}")},
        })).collect::<Vec<_>>(),
        "ports": [{"name": "grpc", "port": 50051, "protocol": "TCP"}],
    })
}

/// The stand-in's state: resources by (group, version, plural).
pub(crate) struct State {
    resources: Vec<Value>,
}

/// Group, version, plural, kind, namespaced.
const RESOURCES: [(&str, &str, &str, &str, bool); 8] = [
    ("", "v1", "nodes", "Node", false),
    (
        "kustomize.toolkit.fluxcd.io",
        "v1",
        "kustomizations",
        "Kustomization",
        true,
    ),
    (
        "helm.toolkit.fluxcd.io",
        "v2",
        "helmreleases",
        "HelmRelease",
        true,
    ),
    ("cert-manager.io", "v1", "certificates", "Certificate", true),
    (
        "external-secrets.io",
        "v1",
        "externalsecrets",
        "ExternalSecret",
        true,
    ),
    ("postgresql.cnpg.io", "v1", "clusters", "Cluster", true),
    (
        "authzed.com",
        "v1alpha1",
        "spicedbclusters",
        "SpiceDBCluster",
        true,
    ),
    (
        "discovery.k8s.io",
        "v1",
        "endpointslices",
        "EndpointSlice",
        true,
    ),
];

impl State {
    /// Everything the blueprint expects, healthy.
    pub(crate) fn healthy(model: &Model) -> State {
        let mut state = State {
            resources: RESOURCES
                .iter()
                .map(|(group, version, plural, kind, namespaced)| {
                    json!({"group": group, "version": version, "plural": plural,
                           "kind": kind, "namespaced": namespaced, "items": []})
                })
                .collect(),
        };
        for talos in model.talos_nodes() {
            state.push("Node", node(talos.name()));
        }
        state.push(
            "Kustomization",
            healthy("Kustomization", Some("flux-system"), "flux-system"),
        );
        for applied in waddlec::render::platform::applied(model) {
            let judged = RESOURCES.iter().any(|(group, version, _, kind, _)| {
                *kind == applied.kind && applied.api_version == format!("{group}/{version}")
            });
            if judged {
                let object = healthy(&applied.kind, applied.namespace.as_deref(), &applied.name);
                state.push(&applied.kind, object);
            }
            if applied.kind == "SpiceDBCluster" {
                let namespace = applied.namespace.as_deref().unwrap();
                state.push(
                    "EndpointSlice",
                    endpoint_slice(namespace, &applied.name, &[true, true]),
                );
            }
        }
        state
    }

    fn resource(&mut self, kind: &str) -> &mut Value {
        self.resources
            .iter_mut()
            .find(|r| r["kind"] == kind)
            .unwrap()
    }

    fn push(&mut self, kind: &str, object: Value) {
        self.resource(kind)["items"]
            .as_array_mut()
            .unwrap()
            .push(object);
    }

    /// The object of `kind` named `name`.
    fn object(&mut self, kind: &str, name: &str) -> &mut Value {
        self.resource(kind)["items"]
            .as_array_mut()
            .unwrap()
            .iter_mut()
            .find(|o| o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("the state has no {kind} {name}"))
    }

    fn remove(&mut self, kind: &str, name: &str) {
        let items = self.resource(kind)["items"].as_array_mut().unwrap();
        let before = items.len();
        items.retain(|o| o["metadata"]["name"] != name);
        assert_eq!(items.len(), before - 1, "{kind} {name}");
    }
}

/// The stand-in serving a state, and a client of it as the cluster admin.
struct Cluster {
    api: KubeApi,
    client: Client,
    addr: SocketAddr,
    /// The cluster's CA, PEM.
    ca: String,
    key: String,
    state_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cluster {
    fn start(state: &State) -> Cluster {
        for tool in ["openssl", "python3"] {
            require(tool);
        }
        let bundle = talos_bundle::generate(OffsetDateTime::now_utc()).unwrap();
        let ca = pem_text(&bundle.certs.k8s.crt);
        let ca_key = pem_text(&bundle.certs.k8s.key);
        let dir = tempfile::tempdir().unwrap();
        let state_file = dir.path().join("state.json");
        write_state(&state_file, state);
        let addr = free_addr("127.0.0.1");
        let api = KubeApi::serving(dir.path(), addr, (&ca, &ca_key), &state_file);
        let identity =
            AdminIdentity::issue(&bundle, OffsetDateTime::now_utc(), time::Duration::hours(1))
                .unwrap();
        let client = Client::with_timeout(
            &format!("https://{addr}"),
            &ca,
            &identity.certificate,
            &identity.key,
            Duration::from_secs(5),
        )
        .unwrap();
        Cluster {
            api,
            client,
            addr,
            ca,
            key: identity.key.expose().to_string(),
            state_file,
            _dir: dir,
        }
    }

    fn client_base(&self) -> String {
        format!("https://{}", self.addr)
    }

    fn set(&self, state: &State) {
        write_state(&self.state_file, state);
    }
}

pub(crate) fn write_state(path: &std::path::Path, state: &State) {
    let text = serde_json::to_string(&json!({"resources": state.resources})).unwrap();
    fs::write(path, text).unwrap();
}

fn named<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name} in {}", names(checks)))
}

fn names(checks: &[Check]) -> String {
    checks
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The one check that did not pass, which must be `name`: its why and fix.
fn only_failure<'a>(checks: &'a [Check], name: &str) -> (&'a str, &'a str) {
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.passed()).collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0].name, name);
    assert_eq!(failed[0].layer, "kubernetes");
    match &failed[0].outcome {
        Outcome::Failed { why, fix } => (why, fix),
        other => panic!("{name}: {other:?}"),
    }
}

#[test]
fn a_healthy_cluster_passes_every_check_the_blueprint_implies() {
    let model = model();
    let cluster = Cluster::start(&State::healthy(&model));
    let checks = check(&cluster.client, &model);
    let report = Report {
        checks: checks.clone(),
    };
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.passed()).collect();
    assert!(failed.is_empty(), "{failed:#?}");
    // What the bundled blueprint implies, by name: not merely whatever
    // the cluster holds.
    for name in [
        "api",
        "node talos-cp1",
        "node talos-cp2",
        "node talos-cp3",
        "kustomization flux-system/flux-system",
        "kustomization flux-system/cert-manager",
        "kustomization flux-system/spicedb",
        "helmrelease cert-manager/cert-manager",
        "helmrelease cnpg-system/plugin-barman-cloud",
        "helmrelease kube-system/cilium",
        "certificate gateway/wildcard-apps-waddle-social",
        "externalsecret spicedb/spicedb-config",
        "externalsecret cert-manager/cloudflare-api-token",
        "postgres spicedb/spicedb-pg",
        "spicedb spicedb/spicedb",
        "spicedb spicedb/spicedb serving",
    ] {
        named(&checks, name);
    }
    let applied = waddlec::render::platform::applied(&model);
    let of = |kind: &str| applied.iter().filter(|a| a.kind == kind).count();
    assert_eq!(
        checks.len(),
        1 + 3
            + 1
            + of("Kustomization")
            + of("HelmRelease")
            + of("Certificate")
            + of("ExternalSecret")
            + 1
            + 1
            + 1,
        "{}",
        names(&checks)
    );
    assert_eq!(report.exit_code(), 0);
    // Every request was the admin's, over the verified client certificate.
    let requests = cluster.api.requests();
    assert!(requests
        .iter()
        .all(|r| r["subject"]["commonName"] == "waddlec-admin"));
    assert!(requests.iter().any(|r| r["path"]
        == "/apis/discovery.k8s.io/v1/namespaces/spicedb/endpointslices?labelSelector=kubernetes.io%2Fservice-name%3Dspicedb"));
    // The client's key is in no check, rendered report or Debug.
    let key_body: String = cluster
        .key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for shown in [
        report.render_text(false),
        serde_json::to_string(&report).unwrap(),
        format!("{:?} {checks:?}", cluster.client),
    ] {
        assert!(!shown.contains(&key_body[..24]));
    }
}

#[test]
fn a_helm_release_not_ready_fails_naming_it_with_its_condition() {
    let model = model();
    let mut state = State::healthy(&model);
    state.object("HelmRelease", "cert-manager")["status"]["conditions"] = json!([
        condition("Ready", "False", "InstallFailed",
            "Helm install failed for release cert-manager/cert-manager with chart cert-manager@v1.19.3: context deadline exceeded"),
        condition("Released", "False", "InstallFailed", "Helm install failed"),
    ]);
    let cluster = Cluster::start(&state);
    let checks = check(&cluster.client, &model);
    let (why, fix) = only_failure(&checks, "helmrelease cert-manager/cert-manager");
    assert_eq!(
        why,
        "Ready=False (InstallFailed): Helm install failed for release cert-manager/cert-manager with chart cert-manager@v1.19.3: context deadline exceeded"
    );
    assert!(fix.contains("flux events --for HelmRelease/cert-manager -n cert-manager"));
    assert!(fix.contains("flux reconcile helmrelease cert-manager -n cert-manager"));
    assert_eq!(Report { checks }.exit_code(), waddlec::exit::CHECK_FAILED);
}

#[test]
fn a_kustomization_the_tree_defines_but_the_cluster_lacks_fails() {
    let model = model();
    let mut state = State::healthy(&model);
    state.remove("Kustomization", "cert-manager");
    let cluster = Cluster::start(&state);
    let checks = check(&cluster.client, &model);
    let (why, fix) = only_failure(&checks, "kustomization flux-system/cert-manager");
    assert!(
        why.contains("defines Kustomization flux-system/cert-manager, but the cluster has none")
    );
    assert!(fix.contains("waddlec platform publish"));

    // An object the tree does not name is judged too, and named as such.
    state.push(
        "Kustomization",
        healthy("Kustomization", Some("flux-system"), "cert-manager"),
    );
    let mut stray = healthy("Kustomization", Some("flux-system"), "by-hand");
    stray["status"]["conditions"] = json!([condition(
        "Ready",
        "False",
        "BuildFailed",
        "kustomization path not found"
    )]);
    state.push("Kustomization", stray);
    // Suspended, its last reconciliation still Ready.
    state.object("Kustomization", "spicedb")["spec"] = json!({"suspend": true});
    cluster.set(&state);
    let checks = check(&cluster.client, &model);
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.passed()).collect();
    assert_eq!(failed.len(), 2, "{failed:#?}");
    assert!(matches!(
        &named(&checks, "kustomization flux-system/by-hand (not in the tree)").outcome,
        Outcome::Failed { why, .. } if why.contains("BuildFailed")
    ));
    assert!(matches!(
        &named(&checks, "kustomization flux-system/spicedb").outcome,
        Outcome::Failed { why, fix } if why.contains("suspended") && fix.contains("flux resume")
    ));
}

#[test]
fn a_certificate_not_ready_fails_with_cert_manager_s_reason() {
    let model = model();
    let mut state = State::healthy(&model);
    state.object("Certificate", "wildcard-apps-waddle-social")["status"] = json!({
        "conditions": [
            condition("Ready", "False", "DoesNotExist", "Issuing certificate as Secret does not exist"),
            condition("Issuing", "True", "DoesNotExist", "Issuing certificate as Secret does not exist"),
        ],
    });
    let cluster = Cluster::start(&state);
    let checks = check(&cluster.client, &model);
    let (why, fix) = only_failure(&checks, "certificate gateway/wildcard-apps-waddle-social");
    assert_eq!(
        why,
        "Ready=False (DoesNotExist): Issuing certificate as Secret does not exist"
    );
    assert!(fix.contains("describe certificate wildcard-apps-waddle-social"));
}

#[test]
fn a_node_not_ready_missing_or_unknown_to_the_blueprint_fails() {
    let model = model();
    let mut state = State::healthy(&model);
    state.object("Node", "talos-cp2")["status"]["conditions"][1] = json!({
        "type": "Ready", "status": "False", "reason": "KubeletNotReady",
        "message": "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized",
        "lastHeartbeatTime": SINCE, "lastTransitionTime": SINCE,
    });
    state.remove("Node", "talos-cp3");
    state.push("Node", node("talos-old"));
    let cluster = Cluster::start(&state);
    let checks = check(&cluster.client, &model);
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.passed())
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        failed,
        ["node talos-cp2", "node talos-cp3", "node talos-old"]
    );
    let why = |name: &str| match &named(&checks, name).outcome {
        Outcome::Failed { why, .. } => why.clone(),
        other => panic!("{other:?}"),
    };
    assert!(why("node talos-cp2")
        .starts_with("Ready=False (KubeletNotReady): container runtime network not ready"));
    assert!(why("node talos-cp3").contains("not registered"));
    assert!(why("node talos-old").contains("the blueprint names no such node"));
    assert!(named(&checks, "node talos-cp1").passed());
}

#[test]
fn postgres_and_spicedb_not_serving_fail() {
    let model = model();
    let mut state = State::healthy(&model);
    let pg = state.object("Cluster", "spicedb-pg");
    pg["status"]["phase"] = json!("Waiting for the instances to become active");
    pg["status"]["phaseReason"] = json!("Some instances are not yet active. Please wait.");
    pg["status"]["readyInstances"] = json!(1);
    pg["status"]["conditions"][0] = json!({
        "type": "Ready", "status": "False", "reason": "ClusterIsNotReady",
        "message": "Cluster Is Not Ready", "lastTransitionTime": SINCE,
    });
    state.object("EndpointSlice", "spicedb-x7k2p")["endpoints"][1]["conditions"]["ready"] =
        json!(false);
    let cluster = Cluster::start(&state);
    let checks = check(&cluster.client, &model);
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.passed())
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        failed,
        [
            "postgres spicedb/spicedb-pg",
            "spicedb spicedb/spicedb serving"
        ]
    );
    assert!(matches!(
        &named(&checks, "postgres spicedb/spicedb-pg").outcome,
        Outcome::Failed { why, .. } if why.starts_with("phase `Waiting for the instances to become active`")
    ));
    assert!(matches!(
        &named(&checks, "spicedb spicedb/spicedb serving").outcome,
        Outcome::Failed { why, .. } if why.starts_with("1 of 2 endpoints are not ready")
    ));
}

#[test]
fn a_forbidden_list_fails_with_rbac_and_a_missing_crd_names_its_installer() {
    let model = model();
    let mut state = State::healthy(&model);
    state.resource("HelmRelease")["forbidden"] = json!(true);
    state.resources.retain(|r| r["kind"] != "Certificate");
    let cluster = Cluster::start(&state);
    let checks = check(&cluster.client, &model);
    let failed: Vec<&Check> = checks.iter().filter(|c| !c.passed()).collect();
    assert_eq!(failed.len(), 2, "{failed:#?}");
    let Outcome::Failed { why, fix } = &named(&checks, "helmreleases").outcome else {
        panic!("helmreleases passed");
    };
    assert!(why.contains("HTTP 403"), "{why}");
    assert!(why.contains(r#"User "waddlec-admin" cannot list resource "helmreleases""#));
    assert!(fix.contains("system:masters"));
    assert!(fix.contains(
        "`kubectl auth can-i list helmreleases.helm.toolkit.fluxcd.io --all-namespaces`"
    ));
    let Outcome::Failed { why, fix } = &named(&checks, "certificates").outcome else {
        panic!("certificates passed");
    };
    assert_eq!(
        why,
        "the API serves no certificates.cert-manager.io/v1: its CRD is not installed"
    );
    assert!(fix.starts_with("cert-manager installs it"));
    // The checks after them were still made.
    assert!(named(&checks, "postgres spicedb/spicedb-pg").passed());
}

/// Nothing listening, then a listener that accepts and never answers: one
/// unreachable check each, never a failure, in about the timeout.
#[test]
fn an_api_down_or_silent_is_unreachable_and_ends_the_layer() {
    let model = model();
    let bundle = talos_bundle::generate(OffsetDateTime::now_utc()).unwrap();
    let identity =
        AdminIdentity::issue(&bundle, OffsetDateTime::now_utc(), time::Duration::hours(1)).unwrap();
    let ca = pem_text(&bundle.certs.k8s.crt);
    let client = |addr: SocketAddr| {
        Client::with_timeout(
            &format!("https://{addr}"),
            &ca,
            &identity.certificate,
            &identity.key,
            Duration::from_secs(2),
        )
        .unwrap()
    };

    let refused = free_addr("127.0.0.1");
    let checks = check(&client(refused), &model);
    assert_eq!(checks.len(), 1, "{checks:#?}");
    assert_eq!(checks[0].name, "api");
    assert!(
        matches!(&checks[0].outcome, Outcome::Unreachable { why, .. } if why.contains("cannot be reached")),
        "{checks:#?}"
    );

    // The kernel completes the TCP handshakes; nobody ever answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let started = Instant::now();
    let checks = check(&client(addr), &model);
    assert!(
        started.elapsed() < Duration::from_secs(6),
        "{:?}",
        started.elapsed()
    );
    assert!(started.elapsed() >= Duration::from_secs(2), "it waited");
    assert_eq!(checks.len(), 1, "{checks:#?}");
    assert!(
        matches!(&checks[0].outcome, Outcome::Unreachable { why, .. } if why.contains("timed out")),
        "{checks:#?}"
    );
    assert_eq!(Report { checks }.exit_code(), waddlec::exit::UNREACHABLE);
    drop(silent);
}

/// A list that gets no answer within the timeout after the first checks
/// passed: unreachable, and the layer ends there.
#[test]
fn a_list_that_never_answers_is_unreachable_and_ends_the_layer() {
    let model = model();
    let mut state = State::healthy(&model);
    state.resource("HelmRelease")["hang_seconds"] = json!(8);
    let cluster = Cluster::start(&state);
    let started = Instant::now();
    let checks = check(&cluster.client, &model);
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let (last, before) = checks.split_last().unwrap();
    assert!(before.iter().all(Check::passed), "{before:#?}");
    assert!(named(before, "kustomization flux-system/cert-manager").passed());
    assert_eq!(last.name, "helmreleases");
    assert!(
        matches!(&last.outcome, Outcome::Unreachable { why, .. }
            if why.contains("timed out") && why.contains("checks after this one were not made")),
        "{last:#?}"
    );
    assert!(!checks.iter().any(|c| c.name.starts_with("certificate")));
}

/// The stand-in takes only a client certificate the cluster's CA signs,
/// and the client trusts only that CA: either way round, a TLS failure is
/// a failed check (not this cluster), never unreachable, and ends the layer.
#[test]
fn a_foreign_client_certificate_or_server_fails_at_tls() {
    let model = model();
    let cluster = Cluster::start(&State::healthy(&model));
    let base = cluster.client_base();
    let other = talos_bundle::generate(OffsetDateTime::now_utc()).unwrap();
    let foreign =
        AdminIdentity::issue(&other, OffsetDateTime::now_utc(), time::Duration::hours(1)).unwrap();
    let as_foreigner = Client::with_timeout(
        &base,
        &cluster.ca,
        &foreign.certificate,
        &foreign.key,
        Duration::from_secs(5),
    )
    .unwrap();
    let trusting_other = Client::with_timeout(
        &base,
        &pem_text(&other.certs.k8s.crt),
        &foreign.certificate,
        &foreign.key,
        Duration::from_secs(5),
    )
    .unwrap();
    for (client, says) in [
        (as_foreigner, "received fatal alert"),
        (trusting_other, "invalid peer certificate"),
    ] {
        let checks = check(&client, &model);
        assert_eq!(checks.len(), 1, "{checks:#?}");
        let Outcome::Failed { why, fix } = &checks[0].outcome else {
            panic!("{checks:#?}");
        };
        assert_eq!(checks[0].name, "api");
        assert!(why.contains("TLS failed") && why.contains(says), "{why}");
        assert!(fix.contains("Talos bundle"), "{fix}");
    }
    // The stand-in logged none of those: they never got past TLS.
    assert!(cluster.api.requests().is_empty());
}
