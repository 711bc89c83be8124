//! The Kubernetes layer of `waddlec status`: the cluster against what the
//! blueprint makes of it. The API server is ready (`/readyz`); every node
//! `[talos]` names is registered and Ready, and no other; and every object
//! of a judged kind the platform tree has Flux apply (`render::platform::
//! applied`, with the root sync Kustomization the `FluxInstance` makes,
//! named after its namespace — flux-operator's "Flux Cluster Sync
//! Configuration") exists and is healthy, as are the ones of those kinds
//! the tree does not name (a chart's own Certificates). `kinds` lists the
//! judged kinds, `verdict` judges one object:
//!
//! | kind | healthy | judged by |
//! |---|---|---|
//! | Kustomization `kustomize.toolkit.fluxcd.io/v1`, HelmRelease `helm.toolkit.fluxcd.io/v2` (Flux 2.7, what the tree renders) | not suspended (the tree never suspends one), `Ready=True` for the current generation | `verdict::flux` |
//! | Certificate `cert-manager.io/v1` | `Ready=True` | `verdict::ready` |
//! | ExternalSecret `external-secrets.io/v1` (ESO 2.0 serves no v1beta1) | `Ready=True` (`SecretSynced`) | `verdict::ready` |
//! | Cluster `postgresql.cnpg.io/v1` (CloudNativePG 1.28) | phase `Cluster in healthy state` and `Ready=True` | `verdict::postgres` |
//! | SpiceDBCluster `authzed.com/v1alpha1` (operator v1.22.0) | rolled out, no error condition | `verdict::spicedb` |
//!
//! SpiceDB's own gRPC health is not asked directly: the API server's
//! service proxy does not carry gRPC (HTTP/2 with trailers) through to a
//! pod, and a pod port-forward is a streaming upgrade this client does not
//! speak. What is read instead stays in plain list calls and asks the same
//! question through the kubelet: the EndpointSlices of the Service the
//! operator names after the SpiceDBCluster, whose endpoints are ready when
//! the pods' readiness probe last passed — and that probe is the gRPC
//! health check, `grpc_health_probe -addr=localhost:50051`
//! (authzed/spicedb-operator v1.22.0, `pkg/config/config.go`). It lags a
//! failure by up to one probe period.
//!
//! A kind is asked for only when the blueprint renders one (a blueprint
//! without `[platform]` has no Certificates to judge). A timeout or a
//! refused connection is `unreachable` and ends the layer (every further
//! request would wait as long); a TLS failure is a failure (something
//! answered that is not this cluster's API, or refused our certificate)
//! and ends it too; a 401 or 403 is a failure with the RBAC to fix; a 404
//! for a list means the kind's CRD is not installed.

mod kinds;
mod verdict;

use std::collections::BTreeSet;

use crate::checks::Check;
use crate::model::Model;
use crate::net::kube_api::{KubeApi, KubeError, Resource};
use crate::render::cluster::flux::NAMESPACE as FLUX_NAMESPACE;
use crate::render::platform::{self, Applied};
use kinds::{
    judged_kind, kubectl_name, Kind, ENDPOINT_SLICES, KINDS, KUSTOMIZATION, NODES, SPICEDB,
};
use verdict::{EndpointSlice, Listed, Verdict};

const LAYER: &str = "kubernetes";

/// The API stopped answering, or cannot be trusted: the checks after the
/// last one were not made.
struct Stopped;

/// Every check of the layer, in order: the API, the nodes, then each
/// judged kind. Stops at the first request that gets no answer, or none
/// it can trust.
pub fn check(api: &KubeApi, model: &Model) -> Vec<Check> {
    let mut checks = Vec::new();
    // `Stopped` has done its work: the check saying why is the last one.
    let _ = run(api, model, &mut checks);
    checks
}

fn run(api: &KubeApi, model: &Model, checks: &mut Vec<Check>) -> Result<(), Stopped> {
    match api.ready() {
        Ok(true) => checks.push(Check::pass(LAYER, "api", "ready (/readyz ok)")),
        Ok(false) => checks.push(Check::failed(
            LAYER,
            "api",
            "the API server answers /readyz that it is not ready",
            "`kubectl get --raw '/readyz?verbose'` names the failing check (etcd, often); `talosctl -n <control plane> health` checks the control plane",
        )),
        Err(error) => return refused(checks, "api", "get /readyz", None, error),
    }
    nodes(api, model, checks)?;
    let applied = platform::applied(model);
    let mut expected: Vec<Expected> = Vec::new();
    if model.flux.is_some() {
        // The FluxInstance's sync: named after its namespace.
        expected.push(Expected {
            kind: KUSTOMIZATION.kind,
            namespace: Some(FLUX_NAMESPACE.to_owned()),
            name: FLUX_NAMESPACE.to_owned(),
            applied_by: AppliedBy::FluxInstance,
        });
    }
    expected.extend(applied.iter().filter_map(Expected::judged));
    for kind in &KINDS {
        objects(api, kind, &expected, checks)?;
    }
    for cluster in applied.iter().filter(|a| a.kind == SPICEDB.kind) {
        spicedb_endpoints(api, cluster, checks)?;
    }
    Ok(())
}

/// Who makes an expected object, for the fix of a missing one.
enum AppliedBy {
    FluxInstance,
    Component(&'static str),
}

struct Expected {
    kind: &'static str,
    namespace: Option<String>,
    name: String,
    applied_by: AppliedBy,
}

impl Expected {
    /// An applied object of a kind this layer judges.
    fn judged(applied: &Applied) -> Option<Expected> {
        Some(Expected {
            kind: judged_kind(applied)?.kind,
            namespace: applied.namespace.clone(),
            name: applied.name.clone(),
            applied_by: AppliedBy::Component(applied.component),
        })
    }
}

fn nodes(api: &KubeApi, model: &Model, checks: &mut Vec<Check>) -> Result<(), Stopped> {
    let expected: Vec<_> = model.talos_nodes().collect();
    if expected.is_empty() {
        return Ok(());
    }
    let registered = match api.nodes() {
        Ok(nodes) => nodes,
        Err(error) => return refused(checks, "nodes", &can_list(&NODES), None, error),
    };
    for node in &expected {
        let name = format!("node {}", node.name());
        match registered.iter().find(|n| n.name == node.name()) {
            Some(status) => checks.push(judged(
                &name,
                verdict::node(status),
                format!(
                    "`kubectl describe node {n}` shows its conditions and events; `talosctl -n {ip} service kubelet` and `talosctl -n {ip} dmesg` show the node's side (NetworkUnavailable: is Cilium running?)",
                    n = node.name(),
                    ip = node.ip()
                ),
            )),
            None => checks.push(Check::failed(
                LAYER,
                name,
                format!("node {} is not registered with the API server", node.name()),
                format!(
                    "its kubelet registers it once the node runs: is the VM running (`waddlec deploy`)? `talosctl -n {ip} service kubelet` and `talosctl -n {ip} logs kubelet` say why not",
                    ip = node.ip()
                ),
            )),
        }
    }
    for stray in registered
        .iter()
        .filter(|n| !expected.iter().any(|e| e.name() == n.name))
    {
        checks.push(Check::failed(
            LAYER,
            format!("node {}", stray.name),
            format!(
                "node {} is registered, but the blueprint names no such node",
                stray.name
            ),
            format!(
                "if its machine is gone, `kubectl delete node {}`; if it belongs, add it under [[talos.node]]",
                stray.name
            ),
        ));
    }
    Ok(())
}

/// Every object of `kind` the tree applies, and every other one listed.
fn objects(
    api: &KubeApi,
    kind: &Kind,
    expected: &[Expected],
    checks: &mut Vec<Check>,
) -> Result<(), Stopped> {
    let wanted: Vec<&Expected> = expected.iter().filter(|e| e.kind == kind.kind).collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let listed: Vec<Listed> = match api.list(&kind.resource, None, None) {
        Ok(listed) => listed,
        Err(error) => {
            return refused(
                checks,
                &format!("{}s", kind.label),
                &can_list(&kind.resource),
                Some((&kind.resource, kind.installed_by)),
                error,
            )
        }
    };
    let key = |ns: Option<&str>, name: &str| format!("{}/{name}", ns.unwrap_or(""));
    let mut seen = BTreeSet::new();
    for want in &wanted {
        let namespace = want.namespace.as_deref();
        let id = key(namespace, &want.name);
        seen.insert(id.clone());
        let name = format!("{} {}", kind.label, id.trim_start_matches('/'));
        let found = listed
            .iter()
            .find(|o| o.metadata.name == want.name && o.metadata.namespace.as_deref() == namespace);
        checks.push(match found {
            Some(object) => judged(
                &name,
                (kind.judge)(object),
                (kind.fix)(namespace.unwrap_or(""), &want.name),
            ),
            None => Check::failed(
                LAYER,
                name,
                format!(
                    "the platform tree defines {} {id}, but the cluster has none",
                    kind.kind
                ),
                missing_fix(&want.applied_by),
            ),
        });
    }
    for object in &listed {
        let namespace = object.metadata.namespace.as_deref();
        let id = key(namespace, &object.metadata.name);
        if seen.contains(&id) {
            continue;
        }
        checks.push(judged(
            &format!(
                "{} {} (not in the tree)",
                kind.label,
                id.trim_start_matches('/')
            ),
            (kind.judge)(object),
            (kind.fix)(namespace.unwrap_or(""), &object.metadata.name),
        ));
    }
    Ok(())
}

fn missing_fix(applied_by: &AppliedBy) -> String {
    match applied_by {
        AppliedBy::FluxInstance => format!(
            "the FluxInstance `flux` makes it: `kubectl -n {FLUX_NAMESPACE} get fluxinstance flux` says why not; `waddlec cluster bootstrap` applies the instance"
        ),
        AppliedBy::Component(component) => format!(
            "the Kustomization {FLUX_NAMESPACE}/{component} applies it: is that one Ready (`flux get kustomizations`)? publish the tree (`waddlec platform publish`) if the repository lacks it, then `flux reconcile kustomization {component} -n {FLUX_NAMESPACE} --with-source`"
        ),
    }
}

/// Whether the Service named after a SpiceDBCluster has ready endpoints.
fn spicedb_endpoints(
    api: &KubeApi,
    cluster: &Applied,
    checks: &mut Vec<Check>,
) -> Result<(), Stopped> {
    let namespace = cluster.namespace.as_deref().unwrap_or("default");
    let name = format!("spicedb {namespace}/{} serving", cluster.name);
    let selector = format!("kubernetes.io/service-name={}", cluster.name);
    let slices: Vec<EndpointSlice> =
        match api.list(&ENDPOINT_SLICES, Some(namespace), Some(&selector)) {
            Ok(slices) => slices,
            Err(error) => {
                let can = format!("list {} -n {namespace}", kubectl_name(&ENDPOINT_SLICES));
                return refused(checks, &name, &can, None, error);
            }
        };
    checks.push(judged(
        &name,
        verdict::endpoints(&slices),
        format!(
            "`kubectl -n {namespace} get pods -l authzed.com/cluster={c}` and `kubectl -n {namespace} describe pod …` show which probe fails and why; `kubectl -n {namespace} logs -l authzed.com/cluster={c}`",
            c = cluster.name
        ),
    ));
    Ok(())
}

fn judged(name: &str, verdict: Verdict, fix: String) -> Check {
    match verdict {
        Verdict::Healthy(detail) => Check::pass(LAYER, name, detail),
        Verdict::Unhealthy(why) => Check::failed(LAYER, name, why, fix),
    }
}

/// What `kubectl auth can-i` asks for a cluster-wide list.
fn can_list(resource: &Resource) -> String {
    format!("list {} --all-namespaces", kubectl_name(resource))
}

/// A request answered with something other than what was asked: a failed
/// check, or the end of the layer when there was no answer at all. `can`
/// is the request as `kubectl auth can-i` asks it; `list` the resource
/// and who installs its CRD, for a list.
fn refused(
    checks: &mut Vec<Check>,
    name: &str,
    can: &str,
    list: Option<(&Resource, &str)>,
    error: KubeError,
) -> Result<(), Stopped> {
    let (why, fix) = match (&error, list) {
        (KubeError::Unreachable { .. }, _) => return Err(unanswered(checks, name, &error)),
        (KubeError::Untrusted { .. }, _) => {
            // Every further request would fail the same way.
            checks.push(Check::failed(
                LAYER,
                name,
                format!("{error}; the Kubernetes checks after this one were not made"),
                "the API server's certificate must come from the Kubernetes CA of the blueprint's Talos bundle (`talos.secrets`), and it must take waddlec's admin certificate, which that CA signs: is the bundle this cluster's, and the address its API VIP (or a tunnel to it)?",
            ));
            return Err(Stopped);
        }
        (KubeError::Status { status: 401 | 403, .. }, _) => (
            error.to_string(),
            format!(
                "the client must be allowed to {can}: waddlec's admin certificate is in group system:masters, which RBAC binds to cluster-admin; `kubectl auth can-i {can}` shows whether the identity may, and a ClusterRoleBinding to a role that allows it fixes it"
            ),
        ),
        (KubeError::Status { status: 404, .. }, Some((resource, installed_by))) => (
            format!("the API serves no {}: its CRD is not installed", resource.shown()),
            format!("{installed_by} installs it: see `flux get kustomizations` and `flux get helmreleases -A`"),
        ),
        (_, _) => (
            error.to_string(),
            // Talos labels its static pods `k8s-app` (v1.12.4,
            // `controllers/k8s/control_plane_static_pod.go`).
            "`kubectl get --raw '/readyz?verbose'` and the API server's log (`kubectl -n kube-system logs -l k8s-app=kube-apiserver`) say what is wrong".to_string(),
        ),
    };
    checks.push(Check::failed(LAYER, name, why, fix));
    Ok(())
}

/// The unreachable check that ends the layer.
fn unanswered(checks: &mut Vec<Check>, name: &str, error: &KubeError) -> Stopped {
    checks.push(Check::unreachable(
        LAYER,
        name,
        format!("{error}; the Kubernetes checks after this one were not made"),
        "are the control planes up (`talosctl -n <control plane> health`)? and the way to the API open: the tunnel through the host, or port 6443 of the API VIP?",
    ));
    Stopped
}
